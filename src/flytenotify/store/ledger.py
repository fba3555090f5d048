"""The ledger's decisions, made once for every backend.

Pure functions: a store reads what they need (an execution's terminal phase,
which leases a process still holds), asks them, and writes what they decided.
So SQLite and PostgreSQL decide alike by construction, and a third backend is
only its SQL and its I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flytenotify.domain import (
    EXECUTION_TIMERS,
    FAILURE_PHASES,
    PAUSED,
    Delivery,
    EntityId,
    ExecutionEvent,
    ExecutionId,
    Timer,
    TimerKind,
)
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.store.base import (
    Completion,
    DeliveryFilter,
    EventOutcome,
    EventResult,
    EventWrite,
    NewDelivery,
    TimerVerdict,
    channel_key,
)

ExecutionKey = tuple[str, str, str]  # project, domain, name: an execution's primary key

_MOVES_TO_TERMINAL = frozenset({EventOutcome.ENQUEUED, EventOutcome.NO_NOTIFICATIONS})


def execution_key(execution_id: ExecutionId) -> ExecutionKey:
    return (execution_id.project, execution_id.domain, execution_id.name)


# -- events ---------------------------------------------------------------------------------


def advance(
    terminal_phase: int | None, event: ExecutionEvent, has_deliveries: bool
) -> EventOutcome:
    """What ``event`` means for an execution whose terminal phase so far is ``terminal_phase``.

    An execution becomes terminal once, with its first terminal event: that
    one enqueues its deliveries (or says none apply). The same terminal phase
    again is a replay; anything after a different terminal phase is late. One
    non-terminal event enqueues: a Flyte 2 action waiting for input (PAUSED),
    when a rule asks about it; its deliveries' keys name the action, so a
    replay writes none (see :meth:`IntakePlan.event_results`).
    """
    if terminal_phase is not None:
        same = terminal_phase == event.phase
        return EventOutcome.DUPLICATE if same else EventOutcome.AFTER_TERMINAL
    if not event.is_terminal:
        paused = event.phase == PAUSED and has_deliveries
        return EventOutcome.ENQUEUED if paused else EventOutcome.RECORDED
    return EventOutcome.ENQUEUED if has_deliveries else EventOutcome.NO_NOTIFICATIONS


@dataclass(frozen=True)
class IntakePlan:
    """What a batch of events does, decided before anything is written."""

    outcomes: list[EventOutcome]  # per event, in input order
    moves: list[tuple[ExecutionKey, int]]  # executions that become terminal, with that phase
    enqueued: list[int]  # the events whose deliveries are written, by position
    ended: frozenset[int] = frozenset()  # the events that made their execution terminal

    def event_results(
        self, writes: Sequence[EventWrite], inserted: Mapping[str, int]
    ) -> list[EventResult]:
        """Each event's result, given the delivery ids written by idempotency key.

        A key already in the ledger was not written and gives no id; a key
        listed twice gives its id to the first event that listed it, as if
        the events had been recorded one after another.
        """
        ids: dict[int, tuple[int, ...]] = {}
        given: set[str] = set()
        for position in self.enqueued:
            keys = [d.idempotency_key for d in writes[position].deliveries]
            fresh = {key for key in keys if key in inserted and key not in given}
            given |= fresh
            ids[position] = tuple(sorted(inserted[key] for key in fresh))
        return [
            _result(outcome, ids.get(position, ()), writes[position])
            for position, outcome in enumerate(self.outcomes)
        ]


def _result(outcome: EventOutcome, ids: tuple[int, ...], write: EventWrite) -> EventResult:
    # A non-terminal event whose every delivery was written before (the same
    # paused action seen again) is a replay, whatever it enqueued the first time.
    if outcome is EventOutcome.ENQUEUED and not ids and not write.event.is_terminal:
        return EventResult(EventOutcome.DUPLICATE)
    return EventResult(outcome, ids)


def held_by(writes: Sequence[EventWrite]) -> list[int]:
    """The silences a batch's deliveries were marked with, each once, in id order."""
    return silences_of([d for write in writes for d in write.deliveries])


def unless_ended(writes: Sequence[EventWrite], live: Collection[int]) -> list[EventWrite]:
    """``writes`` with every delivery whose silence is no longer ``live`` pending again.

    The silences were read before the batch's transaction; one ended meanwhile
    (and what it held perhaps released) must not hold what this batch writes.
    The store reads which are live in the transaction, locked against ending.
    """
    return [replace(write, deliveries=still_held(write.deliveries, live)) for write in writes]


def still_held(deliveries: Sequence[NewDelivery], live: Collection[int]) -> list[NewDelivery]:
    """``deliveries`` with those whose silence is no longer ``live`` pending again."""
    return [
        d if d.silence_id is None or d.silence_id in live else replace(d, silence_id=None)
        for d in deliveries
    ]


def silences_of(deliveries: Sequence[NewDelivery]) -> list[int]:
    """The silences ``deliveries`` were marked with, each once, in id order."""
    return sorted({d.silence_id for d in deliveries if d.silence_id is not None})


def plan_intake(
    writes: Sequence[EventWrite], terminal_phases: Mapping[ExecutionKey, int | None]
) -> IntakePlan:
    """Decide every event of a batch in input order, given each execution's
    terminal phase before the batch (missing: not terminal).

    Exactly as if the events came one after another: an earlier event of the
    batch that made its execution terminal counts for the later ones.
    """
    phases = dict(terminal_phases)
    outcomes: list[EventOutcome] = []
    moves: list[tuple[ExecutionKey, int]] = []
    enqueued: list[int] = []
    ended: set[int] = set()
    for position, write in enumerate(writes):
        key = execution_key(write.event.execution_id)
        outcome = advance(phases.get(key), write.event, bool(write.deliveries))
        outcomes.append(outcome)
        if outcome in _MOVES_TO_TERMINAL and write.event.is_terminal:
            phases[key] = write.event.phase
            moves.append((key, write.event.phase))
            ended.add(position)
        if outcome is EventOutcome.ENQUEUED:
            enqueued.append(position)
    return IntakePlan(outcomes, moves, enqueued, frozenset(ended))


# -- deadlines' timers ----------------------------------------------------------------------

# A run counts as started in a schedule's window this long before the fire time
# too: producers' clocks and the scheduler's are not the ledger's. Short: a run
# late for one fire time must not count for the next (schedules can be a minute
# apart).
START_TOLERANCE = 10.0


def timer_steps(writes: Sequence[EventWrite], plan: IntakePlan) -> list[tuple[EventWrite, bool]]:
    """The events whose timer work applies, in input order, each with whether it
    ended its execution.

    A replay, or anything after the execution ended, changes no timer: only
    news does (a non-terminal event recorded, or the first terminal one).
    """
    steps = []
    for position, (write, outcome) in enumerate(zip(writes, plan.outcomes, strict=True)):
        if not write.timers:
            continue
        if position in plan.ended:
            steps.append((write, True))
        elif not write.event.is_terminal and outcome in _NEWS:
            steps.append((write, False))
    return steps


_NEWS = frozenset({EventOutcome.RECORDED, EventOutcome.ENQUEUED})

# The kinds of timer an execution's end drops (its schedule's timers are not its own).
ENDED_TIMERS = sorted(EXECUTION_TIMERS)


def timer_holds(
    timer: Timer,
    terminal_phase: int | None,
    moved_past_queued: bool,
    satisfied_at: float | None,
) -> bool:
    """Whether a timer that came due still has something to say, as the ledger
    stands when it is settled.

    An execution's timer says nothing once the execution ended (its end may
    have been recorded while the timer was being fired), and ``max_queued``
    nothing once any later phase was recorded (events may come out of order).
    A schedule's timer says nothing once a run started in its window. A
    follow-up always has something to say.
    """
    if timer.kind is TimerKind.START_WITHIN:
        return satisfied_at is None
    if timer.kind is TimerKind.RESOLVE:
        return True
    if terminal_phase is not None:
        return False
    return not (timer.kind is TimerKind.MAX_QUEUED and moved_past_queued)


def quiet_or_moved_on(timer: Timer) -> TimerVerdict:
    """What a timer that no longer holds came to: a schedule whose run started, or an
    execution that moved on."""
    return TimerVerdict.QUIET if timer.kind is TimerKind.START_WITHIN else TimerVerdict.MOVED_ON


# -- dispatch -------------------------------------------------------------------------------


class ClaimRoom:
    """How many more rows each claim limit allows while channels are claimed in turn,
    and the rows claimed so far.

    A channel named in the limits has its own; every other channel draws on
    the shared ``OTHER_CHANNELS`` limit, so what one of them takes the next
    cannot.
    """

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._room = dict(limits)
        self.claimed: list[Delivery] = []

    def __bool__(self) -> bool:
        return any(left > 0 for left in self._room.values())

    def limit(self, channel: str) -> int:
        """How many rows of ``channel`` to claim now (0: none)."""
        return max(0, self._room.get(channel_key(channel, self._room), 0))

    def rounds(self, channels: Iterable[str]) -> Iterator[tuple[str, int]]:
        """Each channel worth claiming and how many rows, judged after the rounds before."""
        for channel in channels:
            if limit := self.limit(channel):
                yield channel, limit

    def took(self, channel: str, deliveries: Sequence[Delivery], max_size: int = 1) -> None:
        """Count ``deliveries`` against ``channel``'s limit, as the messages they make."""
        key = channel_key(channel, self._room)
        self._room[key] = self._room.get(key, 0) - message_count(deliveries, max_size)
        self.claimed.extend(deliveries)


def message_count(deliveries: Iterable[Delivery], max_size: int) -> int:
    """How many messages ``deliveries`` make: one per row without a group key,
    and per group one per ``max_size`` rows (a digest)."""
    groups: Counter[str] = Counter()
    alone = 0
    for delivery in deliveries:
        if delivery.group_key is None:
            alone += 1
        else:
            groups[delivery.group_key] += 1
    return alone + sum(-(-size // max(1, max_size)) for size in groups.values())


def split_due(candidates: Iterable[tuple[int, str | None]]) -> tuple[list[int], list[str]]:
    """Due candidates (id, group key) in due order: the ids without a group key,
    and each group key once, in the order its first row came due."""
    alone: list[int] = []
    keys: dict[str, None] = {}
    for delivery_id, group_key in candidates:
        if group_key is None:
            alone.append(delivery_id)
        else:
            keys.setdefault(group_key)
    return alone, list(keys)


def held_completions(
    completions: Iterable[Completion], attempts_held: Mapping[tuple[int, str], int]
) -> list[tuple[Completion, int]]:
    """The completions to write, each with its attempt number.

    ``attempts_held`` maps (delivery id, lease owner) to the attempts so far of
    every row still pending or retrying. A completion counts only while its
    sender still holds the lease (a row whose lease passed to another process
    is that process's now); its attempt is the row's next.
    """
    held = []
    for completion in completions:
        attempts = attempts_held.get((completion.delivery_id, completion.lease_owner))
        if attempts is not None:
            held.append((completion, attempts + 1))
    return held


# -- recoveries ----------------------------------------------------------------------------


def failures_since_success(
    ended: Iterable[tuple[ExecutionId, int]],
) -> list[tuple[ExecutionId, int]]:
    """Of a launch plan's ended executions (latest first, with their phases), the
    failures before the latest success: FAILED, TIMED_OUT and ABORTED count; a
    phase that is neither (Flyte 2's RECOVERED) neither counts nor ends the streak."""
    streak: list[tuple[ExecutionId, int]] = []
    for execution_id, phase in ended:
        if phase == WorkflowExecutionPhase.SUCCEEDED:
            break
        if phase in FAILURE_PHASES:
            streak.append((execution_id, phase))
    return streak


# -- queries --------------------------------------------------------------------------------


def launch_plan_query(plan_id: EntityId) -> tuple[str, tuple[str, ...]]:
    """The named query and arguments for a launch plan: the version asked for, or,
    when ``version`` is empty, the one registered last."""
    name = (plan_id.project, plan_id.domain, plan_id.name)
    if plan_id.version:
        return "launch_plan_version", (*name, plan_id.version)
    return "launch_plan_latest", name


def delivery_filter(
    query: DeliveryFilter, mark: Callable[[int], str], launch_plan_name: str | None = None
) -> tuple[str, list[Any]]:
    """The WHERE, ORDER BY and LIMIT clauses for ``query``, and their arguments.

    ``mark(n)`` writes the n-th parameter (from 1) in the store's style:
    ``?`` for SQLite, ``$n`` for PostgreSQL. Ordered by id (newest first with
    ``newest_first``), so ``after_id`` and ``before_id`` page through without
    gaps or repeats. ``launch_plan_name`` is the dialect's expression for the
    name inside the ``launch_plan`` JSON column, needed for that filter.
    """
    conditions: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return mark(len(args))

    if query.execution is not None:
        execution = query.execution
        conditions.append(
            f"project = {arg(execution.project)} AND domain = {arg(execution.domain)}"
            f" AND name = {arg(execution.name)}"
        )
    if query.launch_plan is not None and launch_plan_name is None:
        raise ValueError("a launch plan filter needs the dialect's launch_plan_name expression")
    columns = (
        ("status", query.status.value if query.status is not None else None),
        ("channel", query.channel),
        ("recipient", query.recipient),
        ("project", query.project),
        ("domain", query.domain),
        (launch_plan_name, query.launch_plan),
    )
    conditions += [f"{column} = {arg(value)}" for column, value in columns if value is not None]
    if query.since is not None:
        conditions.append(f"created_at >= {arg(query.since)}")
    if query.after_id is not None:
        conditions.append(f"id > {arg(query.after_id)}")
    if query.message is not None:
        conditions.append(f"message_id = {arg(query.message)}")
    if query.silence is not None:
        conditions.append(f"silence_id = {arg(query.silence)}")
    if query.before_id is not None:
        conditions.append(f"id < {arg(query.before_id)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order = "id DESC" if query.newest_first else "id"
    return f"{where} ORDER BY {order} LIMIT {arg(query.limit)}", args
