"""The storage protocol: everything the engine asks of the ledger.

One protocol, one implementation per database (SQLite, PostgreSQL), each only
I/O: the ledger's own decisions are ``ledger.py``'s, its SQL the named
statements of ``queries/``. The engine never writes SQL; a store never decides
which notifications apply or how a message reads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from flytenotify.domain import (
    Acknowledgement,
    ActionKind,
    ActionOutcome,
    ActionRecord,
    Actor,
    Attempt,
    Deadline,
    DeadlineAlert,
    DeadlineId,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    GroupRule,
    LaunchPlan,
    NamedKind,
    NamedRule,
    RenderedMessage,
    Silence,
    Timer,
    TimerKind,
)

if TYPE_CHECKING:
    from flytenotify.store.space import SpaceWatch

# The claim key for rows of every channel not named otherwise: a process still
# claims rows it has no channel for, so they are dead-lettered visibly instead
# of waiting forever.
OTHER_CHANNELS = "*"


class EventOutcome(enum.StrEnum):
    ENQUEUED = "enqueued"  # a first terminal phase: deliveries written
    DUPLICATE = "duplicate"  # the same terminal phase again
    AFTER_TERMINAL = "after_terminal"  # anything after a different terminal phase
    NO_NOTIFICATIONS = "no_notifications"  # terminal, but nothing applies
    RECORDED = "recorded"  # a non-terminal phase, kept for the audit trail


def channel_key(channel: str, limits: dict[str, int]) -> str:
    """The claim limit a row of ``channel`` counts against: its own, or OTHER_CHANNELS."""
    return channel if channel in limits else OTHER_CHANNELS


@dataclass(frozen=True)
class NewDelivery:
    """A delivery the engine wants written with its event."""

    idempotency_key: str
    notification_index: int
    kind: str
    channel: str
    recipient: str
    message: RenderedMessage
    group_key: str | None = None  # None: never folded into a digest
    silence_id: int | None = None  # a silence in effect holds it: recorded silenced
    follows: str = ""  # a recovery's: the failed execution whose conversation it joins


@dataclass(frozen=True)
class TimerWork:
    """What one event does to the deadlines' timers (none for an execution no deadline
    selects), decided before it is recorded.

    Applied in the event's own transaction, and only if the ledger records it
    as news (not a replay, nothing after the execution ended): a non-terminal
    event arms ``arm`` and drops the execution's timers of the ``cancel``
    kinds; the event that ends the execution drops all its timers, closes its
    alerts (arming their follow-ups) and, having succeeded, adds how long it
    ran to each of ``series``. Either may satisfy the schedule's timer of each
    deadline of ``starts``, when the execution began (``started_at``) in its
    window, and closes that deadline's missed starts before then (arming
    their follow-ups: it started late).
    """

    arm: tuple[Timer, ...] = ()
    cancel: frozenset[TimerKind] = frozenset()
    series: tuple[str, ...] = ()
    starts: tuple[DeadlineId, ...] = ()
    started_at: float = 0.0
    ends: bool = False  # a deadline selects the execution: its end closes what it opened

    def __bool__(self) -> bool:
        return bool(self.arm or self.cancel or self.series or self.starts or self.ends)


NO_TIMER_WORK = TimerWork()


@dataclass(frozen=True)
class EventWrite:
    """An event plus what it enqueues if it is the execution's first terminal phase.

    ``execution`` is written first if the store does not have it yet (an
    event for an execution created on the fly).
    """

    event: ExecutionEvent
    execution: Execution
    deliveries: Sequence[NewDelivery]
    timers: TimerWork = NO_TIMER_WORK


@dataclass(frozen=True)
class EventResult:
    outcome: EventOutcome
    delivery_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class NewAction:
    """An action to record: what was asked, by whom, and what came of it.

    ``decision`` is set when it decides (done, or answered elsewhere): the
    store then writes it only if no action decided the same thing before.
    """

    execution_id: ExecutionId
    action: ActionKind
    actor: Actor
    outcome: ActionOutcome
    requested_at: datetime
    target: str = ""
    value: bool | int | float | str | None = None
    detail: str = ""
    result: str = ""
    decision: str | None = None


@dataclass(frozen=True)
class Completion:
    """What the dispatcher learned from one attempt, to be written back."""

    delivery_id: int
    lease_owner: str
    started_at: float
    finished_at: float
    outcome: str  # "delivered" | "transient" | "permanent"
    reply: str
    status: DeliveryStatus  # the delivery's status after this attempt
    next_attempt_at: float | None  # for RETRYING
    message_id: str = ""  # the message that carried it: single:<key> or digest:<uuid>
    message_size: int = 1  # how many executions that message carried
    provider_message_id: str = ""  # the provider's id of what it went out as
    in_reply_to: str = ""  # the conversation's first message it updated or followed
    # It sent the first message of this conversation ("" none), as ``thread``:
    # written with the outcome, what the conversation's later messages follow.
    opened: str = ""
    thread: str = ""


@dataclass(frozen=True)
class Conversation:
    """The deliveries of one execution to one destination: who sends the first message.

    ``thread`` is the provider's id of that message once it was sent; None while
    ``root_delivery`` is sending it (``root_status`` is that delivery's status).
    """

    root_delivery: int
    thread: str | None
    root_status: DeliveryStatus | None


@dataclass(frozen=True)
class FailureStreak:
    """The failures of a launch plan since its last success, and where the last
    one that notified anybody went (its deliveries, delivered)."""

    failures: int
    last_failure: ExecutionId
    deliveries: tuple[Delivery, ...]


class TimerVerdict(enum.StrEnum):
    """What settling a fired timer came to."""

    FIRED = "fired"  # its alert (or follow-up) was written, with its deliveries
    QUIET = "quiet"  # nothing to say: a schedule whose run started; re-armed
    MOVED_ON = "moved_on"  # the execution moved on (or ended) before it fired
    REPEATED = "repeated"  # this breach was alerted before: nothing written again
    GONE = "gone"  # cancelled meanwhile, or its lease passed to another process


@dataclass(frozen=True)
class TimerSettlement:
    """What a fired timer leads to, written in one transaction with its removal.

    ``alert`` and ``deliveries`` (messages about ``subject`` in ``phase`` of
    ``launch_plan``, written with ``reason``) are written only if the timer
    still holds when settled (the ledger decides: ``ledger.timer_holds``);
    ``rearm`` is a schedule's next timer, armed whatever was said.
    """

    timer: Timer
    owner: str
    subject: ExecutionId
    phase: int
    launch_plan: EntityId | None = None
    alert: DeadlineAlert | None = None
    deliveries: Sequence[NewDelivery] = ()
    reason: DeliveryReason = DeliveryReason.DEADLINE
    rearm: Timer | None = None


@dataclass(frozen=True)
class InboxMessage:
    id: int
    delivery_id: int
    kind: str
    recipient: str
    subject: str
    body: str
    received_at: float


@dataclass(frozen=True)
class DeliveryFilter:
    execution: ExecutionId | None = None
    status: DeliveryStatus | None = None
    channel: str | None = None
    since: float | None = None  # created at or after (Unix seconds)
    after_id: int | None = None  # cursor: ids greater than this
    message: str | None = None  # the deliveries one message (a digest) carried
    silence: int | None = None  # the deliveries one silence held
    limit: int = 100
    # The web console's filters and its newest-first keyset paging.
    recipient: str | None = None
    project: str | None = None
    domain: str | None = None
    launch_plan: str | None = None  # the launch plan's name, any version
    before_id: int | None = None  # cursor: ids less than this
    newest_first: bool = False  # ORDER BY id DESC


class Store(Protocol):
    # Whether the database is refusing writes for lack of space (store/space.py).
    space: SpaceWatch

    async def open(self, *, retry: bool = True) -> None:
        """Connect and bring the schema up to date.

        A database server that cannot be reached is retried for a while, or,
        with ``retry=False``, not at all: for a caller that waits in its own way.
        """
        ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another process may have enqueued work.

        A hint to look now: the dispatcher keeps its slow poll, so a missed
        call costs latency, never a delivery.
        """
        ...

    async def listen_timers(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another process may have armed a timer (a hint, as
        :meth:`listen`'s)."""
        ...

    # -- launch plans and executions --------------------------------------

    async def register_launch_plan(self, plan: LaunchPlan) -> None:
        """Insert or replace the notifications of one launch plan version."""
        ...

    async def get_launch_plan(self, plan_id: EntityId) -> LaunchPlan | None:
        """The given version, or the latest registered when ``version`` is empty."""
        ...

    async def latest_launch_plans(self) -> list[LaunchPlan]:
        """The latest version of every registered launch plan."""
        ...

    async def create_execution(self, execution: Execution) -> tuple[Execution, bool]:
        """Insert unless it exists; returns the stored execution and whether it is new."""
        ...

    async def get_execution(self, execution_id: ExecutionId) -> Execution | None: ...

    async def get_executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        """Those of ``ids`` that exist, in one round trip (a batch of events needs them all)."""
        ...

    # -- events: the transactional outbox ---------------------------------

    async def record_events(self, writes: Sequence[EventWrite]) -> list[EventResult]:
        """Record events and enqueue their deliveries, each event atomically.

        The first terminal event of an execution enqueues its deliveries; a
        later one (or a replay) enqueues nothing and says why.
        """
        ...

    # -- dispatch ---------------------------------------------------------

    async def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limits: dict[str, int],
        completions: Sequence[Completion] = (),
        groups: Mapping[str, GroupRule] | None = None,
    ) -> list[Delivery]:
        """Write ``completions`` as :meth:`complete` does, then lease up to
        ``limits[channel]`` messages' worth of due deliveries of each channel.

        A due row without a group key is one message. A due row with one is
        claimable only while its group is closed; claiming it takes every due
        row of the group (up to ``limits[channel] * max_size``) and opens the
        group for ``groups[channel].window`` seconds, atomically, so one
        process folds a group however many claim at once. Those rows are
        ``ceil(n / max_size)`` messages.

        All in one round trip: the dispatcher's loop pays one commit for the
        outcomes it gathered and the work it takes next.
        """
        ...

    async def complete(self, completions: Sequence[Completion]) -> None:
        """Write attempt outcomes; ignored for rows whose lease was lost."""
        ...

    async def renew_leases(
        self, owner: str, delivery_ids: Sequence[int], now: float, lease: float
    ) -> int:
        """Extend ``owner``'s leases on ``delivery_ids`` to ``lease`` seconds from now.

        The dispatcher calls this while sends are in flight, so a lease can be
        short (a dead process's rows come back soon) without a slow but live
        send being claimed by another process. A row whose lease passed to
        another owner is left alone. Returns how many leases were extended.
        """
        ...

    async def release(self, owner: str) -> int:
        """Drop every lease ``owner`` holds (graceful stop); returns how many."""
        ...

    # -- conversations: one message per execution and destination ----------

    async def join_conversation(self, key: str, delivery_id: int) -> Conversation:
        """The conversation ``key``, opened with ``delivery_id`` as its first message
        when nobody opened it, or when its first message is not sent and not being
        sent (its delivery failed and waits for a retry, or is dead).

        Atomic across replicas: of several joining at once, exactly one is the first.
        """
        ...

    async def join_conversations(
        self, joining: Sequence[tuple[str, int]]
    ) -> dict[str, Conversation]:
        """:meth:`join_conversation` for a claim's deliveries at once, ``(key, delivery
        id)`` each, at most one per key: one or two statements, not two per delivery."""
        ...

    async def conversation_sent(self, key: str, delivery_id: int, thread: str) -> None:
        """``delivery_id`` sent the first message of ``key`` (or a new one in place of
        a deleted one); ``thread`` is its provider id, what later messages follow."""
        ...

    async def latest_of_message(self, message_id: str) -> list[Delivery]:
        """For each execution the message ``message_id`` carried (a digest), the
        newest delivery delivered to its channel and recipient: what a digest
        updated in place says of each, read in one statement."""
        ...

    async def failure_streak(self, plan: str, look_back: int) -> FailureStreak | None:
        """The failures of ``plan`` ("project/domain/name") since its last success,
        among its ``look_back`` latest ended executions, when one of them notified
        anybody; None otherwise."""
        ...

    async def prune_groups(self, closed_before: float) -> int:
        """Delete the groups whose window closed before ``closed_before``; returns how many."""
        ...

    async def next_due_at(self) -> float | None:
        """When the earliest pending/retrying delivery becomes claimable, if any
        (a row held by an open group: when the group closes)."""
        ...

    async def redrive(self, delivery_id: int, now: float) -> Delivery | None:
        """Make a dead or silenced delivery pending again; None if it is neither."""
        ...

    async def add_to_inbox(self, delivery: Delivery, body: str, now: float) -> None: ...

    # -- pacing shared by replicas ------------------------------------------------

    async def reserve_slot(self, key: str, interval: float) -> float:
        """Reserve the next send slot of ``key``; seconds to wait until it starts.

        Slots are ``interval`` apart on the database's clock, whichever
        replica reserves them.
        """
        ...

    async def block_slots(self, key: str, seconds: float) -> None:
        """No slot of ``key`` starts within ``seconds`` (a provider's Retry-After)."""
        ...

    # -- Flyte 2's named rules and deliveries (those managed over the API) --

    async def put_named_rule(self, rule: NamedRule) -> None:
        """Create or replace the entry of ``rule``'s kind, name and scope."""
        ...

    async def list_named_rules(self, kind: NamedKind) -> list[NamedRule]: ...

    async def delete_named_rule(
        self, kind: NamedKind, name: str, project: str, domain: str
    ) -> bool:
        """Whether an entry of that kind, name and scope existed (it no longer does)."""
        ...

    # -- silences -------------------------------------------------------------

    async def create_silence(self, silence: Silence) -> Silence:
        """Store a new silence; returns it with its id."""
        ...

    async def get_silence(self, silence_id: int) -> Silence | None: ...

    async def list_silences(
        self, before_id: int | None = None, limit: int = 100, not_over_at: float | None = None
    ) -> list[Silence]:
        """Silences newest first, below ``before_id`` when given; with ``not_over_at``
        only those neither ended nor past their end at that time."""
        ...

    async def silences_in_effect(self, now: float) -> list[Silence]:
        """The silences started by ``now`` and neither ended nor over then, oldest
        first: one read for a batch of events. A recurring one's window is the
        caller's to judge."""
        ...

    async def end_silence(
        self, silence_id: int, ended_by: str, ended_at: float, release: bool, reply: str
    ) -> tuple[Silence, int] | None:
        """End a silence that is not ended yet (``ended_at``: the caller's time, as
        every time of a silence), and with ``release`` make what it held pending,
        due at once by the store's clock (each with an attempt row saying
        ``reply``), in one transaction. The silence as ended and how many rows
        were released; None when there is no such silence or it was ended already."""
        ...

    async def hold_deliveries(
        self, silence_id: int, delivery_ids: Sequence[int], now: float, reply: str
    ) -> int:
        """Silence those of ``delivery_ids`` still waiting and not leased (each gets
        an attempt row saying ``reply``); how many it held."""
        ...

    # -- watches without a resume cursor (Flyte 2's runs) -----------------

    async def watch_position(self, source: str) -> float | None:
        """Up to when ``source`` has recorded every run that ended (None: never watched)."""
        ...

    async def advance_watch_position(self, source: str, position: float) -> None:
        """Move ``source``'s position to ``position`` if that is later."""
        ...

    # -- actions on Flyte (the audit trail) --------------------------------

    async def record_action(self, action: NewAction) -> tuple[ActionRecord, bool]:
        """Write ``action``; with a decision key already taken, write nothing and return
        the action that took it. Whether ``action`` was written."""
        ...

    async def finish_action(
        self,
        action_id: int,
        outcome: ActionOutcome,
        *,
        detail: str = "",
        result: str = "",
        value: bool | int | float | str | None = None,
        decision: str | None = None,
    ) -> ActionRecord:
        """Write what came of a pending action; ``decision`` None frees its key."""
        ...

    async def abandon_action(self, decision: str, pending_before: float) -> bool:
        """Free ``decision`` if the request holding it has been pending since before
        ``pending_before`` (Unix seconds): its row is kept as failed."""
        ...

    async def decided_action(self, decision: str) -> ActionRecord | None:
        """The action that holds or took ``decision``, if one does."""
        ...

    async def list_actions(self, execution_id: ExecutionId) -> list[ActionRecord]:
        """The execution's actions, in the order they were asked."""
        ...

    # -- acknowledgements (people on it, from chat) ----------------------------

    async def acknowledge(
        self, execution_id: ExecutionId, actor: Actor, message: str, at: datetime
    ) -> tuple[Acknowledgement, bool]:
        """Record that ``actor`` acknowledged the execution (from the message whose
        provider id is ``message``), once per person: a second time writes nothing and
        returns the first. Whether this one was written."""
        ...

    async def list_acknowledgements(self, execution_id: ExecutionId) -> list[Acknowledgement]:
        """The execution's acknowledgements, first first."""
        ...

    async def use_link(self, nonce: str, actor: str, at: datetime) -> tuple[str, datetime, bool]:
        """Record the first use of the signed link ``nonce``: who used it and when,
        and whether this use is the first (else who used it first, and when)."""
        ...

    async def release_link(self, nonce: str) -> None:
        """Forget a use that could not be carried out: the link works again."""
        ...

    # -- deadlines and their timers ---------------------------------------

    async def put_deadline(self, deadline: Deadline, schedule: Timer | None) -> None:
        """Create or replace a deadline managed over the API, with its schedule's timer
        (armed unless an alike one waits; None: its schedule's timer is dropped)."""
        ...

    async def list_deadlines(self) -> list[Deadline]: ...

    async def delete_deadline(self, deadline: DeadlineId) -> bool:
        """Whether it existed; its timers go with it (not the follow-ups of its alerts)."""
        ...

    async def put_schedule_timer(self, timer: Timer) -> None:
        """Arm a schedule's timer unless an alike one (same schedule and allowance) waits."""
        ...

    async def drop_timer(self, key: str) -> None: ...

    async def claim_timers(
        self, owner: str, due_by: float, lease: float, limit: int
    ) -> list[Timer]:
        """Lease up to ``limit`` timers due by ``due_by`` (the caller's clock) for
        ``lease`` seconds; on PostgreSQL, replicas claiming at once take disjoint
        ones and leases are judged by the database's clock."""
        ...

    async def next_timer_in(self, due_by: float) -> float | None:
        """Seconds until a timer can next be claimed, given that ``due_by`` is now on
        the caller's clock (negative: one is overdue); None when none waits."""
        ...

    async def settle_timer(self, settlement: TimerSettlement) -> TimerVerdict:
        """Take a claimed timer out and write what it leads to, in one transaction."""
        ...

    async def release_timers(self, owner: str) -> int:
        """Drop every timer lease ``owner`` holds (graceful stop); returns how many."""
        ...

    async def recent_durations(self, series: str, limit: int) -> list[float]:
        """How long the newest ``limit`` successful runs of ``series`` ran, newest first."""
        ...

    async def alerts_of(self, deadline: DeadlineId, execution: ExecutionId) -> list[DeadlineAlert]:
        """What ``deadline`` alerted about ``execution``, oldest first."""
        ...

    async def deadline_alerts(
        self, deadline: DeadlineId, before_id: int | None = None, limit: int = 100
    ) -> list[DeadlineAlert]:
        """A deadline's alerts, newest first, below ``before_id`` when given."""
        ...

    async def open_alerts(
        self, before_id: int | None = None, limit: int = 100
    ) -> list[DeadlineAlert]:
        """Alerts whose execution has not ended, newest first: what is over a deadline."""
        ...

    async def deadline_timers(self, deadline: DeadlineId) -> dict[str, tuple[int, float]]:
        """What a deadline waits for: per kind, how many timers and the next one due."""
        ...

    # -- queries ----------------------------------------------------------

    async def get_delivery(self, delivery_id: int) -> Delivery | None: ...

    async def list_deliveries(self, query: DeliveryFilter) -> list[Delivery]: ...

    async def list_attempts(self, delivery_id: int) -> list[Attempt]: ...

    async def count_by_status(self) -> dict[str, int]: ...

    async def list_inbox(
        self, after_id: int | None = None, limit: int = 100
    ) -> list[InboxMessage]: ...

    async def list_inbox_newest(
        self, before_id: int | None = None, limit: int = 100
    ) -> list[InboxMessage]:
        """The dev inbox newest first, below ``before_id`` when given."""
        ...

    async def get_inbox_message(self, message_id: int) -> InboxMessage | None: ...

    async def list_events(self, execution_id: ExecutionId) -> list[tuple[ExecutionEvent, str]]: ...

    # -- the web console's sessions -------------------------------------------

    async def start_console_session(self, session_id: str, now: float, expires_at: float) -> None:
        """Record a login (``session_id``: a digest of the cookie's secret part), and
        forget the sessions that expired by ``now``."""
        ...

    async def console_session_live(self, session_id: str, now: float) -> bool:
        """Whether the session was started and has neither ended nor expired."""
        ...

    async def end_console_session(self, session_id: str) -> bool:
        """Log a session out for every process that shares the ledger; False if unknown."""
        ...
