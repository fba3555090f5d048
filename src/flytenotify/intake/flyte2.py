"""Intake from Flyte 2: watch each project's runs and record those that end (or pause).

Open-source Flyte 2 publishes no events: its control plane's
``RunService.WatchRuns`` is the one push there is, and it is lossy (a
subscriber that falls behind loses updates), has no resume cursor, sends
only the root action of each run, shows each run's state when the update
is read (not the transition), and sends nothing at all, not even headers,
for a project with no runs. So one :class:`RunWatch` per ``PROJECT/DOMAIN``:

- **reconciles** on every (re)connect and every ``RECONCILE_EVERY`` seconds:
  ``ListRuns`` of the runs that ended since its position (kept in the ledger,
  less a margin for late writes), oldest end first, page by page; every one
  the ledger does not hold as ended is recorded; then the position moves on.
  A watch's very first start records its position as now: runs that ended
  before flytenotify watched are history, not alerts;
- **watches** ``WatchRuns`` and records each run that reaches a terminal
  phase, at once, and each phase a run that a deadline may watch (by its
  task or trigger, asked of the deadlines in memory) moves to: QUEUED,
  RUNNING (once per run and phase);
- **polls** ``ListRuns(paused_actions_only)`` every ``PAUSED_EVERY`` seconds:
  a run waiting for input never shows on the watch (only its condition
  action pauses), and a rule may ask for PAUSED;
- is **ready** once its first ``ListRuns`` answered: the stream proves nothing
  until its first message, which may never come.

Recording a run reads its rules and error with ``GetRunDetails`` (once: a
run the ledger holds as ended is skipped before any call), freezes its rules
with it (:mod:`flytenotify.intake.flyte2_runs`), and goes through the
:class:`~flytenotify.intake.source.Recorder`'s ``record_checked_events`` (the
Notifier's) like every event: one delivery per (run, phase, rule, recipient),
whatever is replayed, across restarts and replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

from flyteidl2.common import phase_pb2
from flyteidl2.workflow import run_definition_pb2, run_service_pb2

from flytenotify.controlplane import ControlPlane, RunNotFound
from flytenotify.domain import (
    PAUSED,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    NotificationSource,
    PausedAction,
    ValueKind,
)
from flytenotify.intake.events import checked_event
from flytenotify.intake.flyte2_runs import ledger_phase, read_rules, run_error, trigger_name
from flytenotify.intake.source import Counters, Recorder, SourceState, SourceStatus, keep_running
from flytenotify.models.core.execution import WorkflowExecutionPhase as P

log = logging.getLogger("flytenotify.intake")

RECONCILE_EVERY = 60.0  # seconds between reconciliations while the stream is up
PAUSED_EVERY = 15.0  # seconds between looks for runs waiting for input
MARGIN = 300.0  # seconds before the position a reconciliation looks back (late writes)
PAGE = 200  # runs per ListRuns page (the server's maximum)
MAX_PAGES = 500  # a reconciliation pass reads at most this many pages (100,000 runs)
CONCURRENCY = 8  # GetRunDetails calls at once
READ_AHEAD = 5_000  # runs read from the stream and not yet recorded, at most
PROGRESS_KEPT = 10_000  # runs whose last recorded phase is remembered (more are asked again)
# A run seen FAILED may not carry its error yet (the control plane writes phases
# and errors separately): read it again after these pauses before recording it bare.
ERROR_RETRIES = (0.5, 1.0, 2.0)

_ENDED = frozenset(
    {
        phase_pb2.ACTION_PHASE_SUCCEEDED,
        phase_pb2.ACTION_PHASE_FAILED,
        phase_pb2.ACTION_PHASE_ABORTED,
        phase_pb2.ACTION_PHASE_TIMED_OUT,
        phase_pb2.ACTION_PHASE_RECOVERED,
    }
)
_PROMPT_TYPES = {
    run_definition_pb2.CONDITION_PROMPT_TYPE_TEXT: "text",
    run_definition_pb2.CONDITION_PROMPT_TYPE_MARKDOWN: "markdown",
}


class RunWatch:
    """One project/domain of Flyte 2, watched (a :class:`~flytenotify.intake.source.Source`).

    It makes the events of the runs it reads itself, so it runs given the
    :class:`~flytenotify.intake.source.Recorder` to record them through.
    """

    def __init__(
        self,
        plane: ControlPlane,
        project: str,
        domain: str,
        *,
        reconcile_every: float = RECONCILE_EVERY,
        paused_every: float = PAUSED_EVERY,
    ) -> None:
        self.plane = plane
        self.project = project
        self.domain = domain
        self._recorder: Recorder | None = None
        self.counters: Counters | None = None
        self.name = f"flyte2:{project}/{domain}"
        self.status = SourceStatus()
        self.reconcile_every = reconcile_every
        self.paused_every = paused_every
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._paused_seen: set[tuple[str, str]] = set()  # (run, action) already recorded
        # The phase last recorded of each run a deadline watches, newest last (bounded).
        self._progress: dict[ExecutionId, int] = {}
        # Runs that ended before this (Unix seconds) are history: set by each reconciliation.
        self._horizon = float("inf")

    def describe(self) -> str:
        return f"runs of {self.project}/{self.domain} at {self.plane.description}"

    async def check(self) -> str:
        return await self.plane.check(self.project, self.domain)

    async def run(
        self, recorder: Recorder, stop: asyncio.Event, *, counters: Counters | None = None
    ) -> None:
        """Watch until ``stop``, recording through ``recorder`` (counted in ``counters``)."""
        self._recorder, self.counters = recorder, counters
        try:
            await keep_running(self, lambda: self._session(stop), stop)
        finally:
            await self.plane.close()

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RuntimeError(f"{self.name}: records only while it runs")
        return self._recorder

    # -- one connection ----------------------------------------------------------------

    async def _session(self, stop: asyncio.Event) -> None:
        self.status.state = SourceState.STARTING
        await self.reconcile()
        self.status.state = SourceState.CONNECTED
        self.status.detail = f"watching {self.project}/{self.domain} at {self.plane.url}"
        tasks = [
            asyncio.create_task(self._watch(), name=f"{self.name} watch"),
            asyncio.create_task(self._every(self.reconcile_every, self.reconcile), name="recon"),
            asyncio.create_task(self._every(self.paused_every, self.poll_paused), name="paused"),
            asyncio.create_task(stop.wait(), name="stop"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            # Every outcome is collected (none is left "never retrieved"); the first
            # task to end decides how the session ends.
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            failure = task.exception()
            if failure is not None:
                raise failure

    async def _watch(self) -> None:
        """Record what the stream says, in batches: the stream carries about one run
        per message, and recording an ended run waits for a ``GetRunDetails``
        round trip, so one at a time a control plane 40 ms away caps a busy
        project at 25 ended runs a second. What arrives while a batch is being
        recorded goes in the next one, whose runs are asked about together."""
        stream = _Batches(self.plane.watch_runs(self.project, self.domain), self.status)
        async with stream:
            while (batch := await stream.next()) is not None:
                await self._record_batch(batch)
        raise ConnectionError("the control plane ended the WatchRuns stream")

    async def _record_batch(self, runs: Sequence[run_definition_pb2.Run]) -> None:
        # Every state before a run's end comes before it in the stream: the
        # phases in progress first keeps each run's order.
        moving = [run for run in runs if run.action.status.phase not in _ENDED]
        if moving:
            await self.record_progress(moving)
        ended = [run for run in runs if run.action.status.phase in _ENDED]
        if ended:
            await self.record_ended(ended)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await work()

    # -- runs that ended -----------------------------------------------------------------

    async def reconcile(self) -> None:
        """Record every run that ended since the position, then move the position on."""
        recorder = self.recorder
        position = await recorder.watch_position(self.name)
        now = time.time()
        if position is None:
            # Asked all the same: ready means the control plane answered us.
            await self.plane.list_runs(self.project, self.domain, limit=1)
            await recorder.advance_watch_position(self.name, now)
            self._horizon = now
            log.info(
                "intake %s: first watch; runs that ended before now are not notified", self.name
            )
            return
        self._horizon = position - MARGIN
        since = _iso(self._horizon)
        newest, token = position, ""
        for _ in range(MAX_PAGES):
            page = await self.plane.list_runs(
                self.project, self.domain, token=token, limit=PAGE, ended_since=since
            )
            ended = [run for run in page.runs if run.action.status.phase in _ENDED]
            await self.record_ended(ended)
            for run in ended:
                status = run.action.status
                if status.HasField("end_time"):
                    newest = max(newest, status.end_time.ToDatetime(tzinfo=UTC).timestamp())
            token = page.token
            if not token:
                break
        else:
            log.warning("intake %s: reconciliation stopped after %d pages", self.name, MAX_PAGES)
        # Never past now: a run ending "in the future" by a skewed clock must not hide others.
        await recorder.advance_watch_position(self.name, min(newest, now))

    async def record_ended(self, runs: Sequence[run_definition_pb2.Run]) -> None:
        """Record the runs among ``runs`` the ledger does not hold as ended yet.

        A run that ended before the watch's horizon is history (the stream's
        snapshot carries old runs too): before flytenotify first watched, or
        long enough ago that it was recorded then if it was ever to be.
        """
        wanted = {_execution_id(run): run for run in runs if self._recent(run)}
        held = await self.recorder.executions(list(wanted))
        todo = [
            run
            for eid, run in wanted.items()
            if eid not in held or held[eid].terminal_phase is None
        ]
        if not todo:
            return
        found = await asyncio.gather(*(self._ended(run, held) for run in todo))
        pairs = [pair for pair in found if pair is not None]
        if pairs:
            await self._record(pairs)

    def _recent(self, run: run_definition_pb2.Run) -> bool:
        ended = _time(run.action.status, "end_time")
        return ended is None or ended.timestamp() >= self._horizon

    async def _ended(
        self, run: run_definition_pb2.Run, held: dict[ExecutionId, Execution]
    ) -> tuple[ExecutionEvent, Execution] | None:
        eid = _execution_id(run)
        phase = ledger_phase(run.action.status.phase)
        assert phase is not None
        async with self._limit:
            try:
                details = await self._details(eid, run.action.status.phase)
            except RunNotFound as gone:
                log.warning("intake %s: %s; not recorded", self.name, gone)
                return None
        status = details.details.action.status
        event = checked_event(
            ExecutionEvent(
                execution_id=eid,
                phase=phase,
                occurred_at=_time(status, "end_time") or datetime.now(UTC),
                producer_id="flyte2",
                error=run_error(details.details.action) if phase != 4 else None,
            )
        )
        return event, held.get(eid) or await self._execution(eid, details)

    async def _details(
        self, eid: ExecutionId, action_phase: int
    ) -> run_service_pb2.GetRunDetailsResponse:
        details = await self.plane.run_details(eid.project, eid.domain, eid.name)
        if action_phase != phase_pb2.ACTION_PHASE_FAILED:
            return details
        for pause in ERROR_RETRIES:
            if run_error(details.details.action) is not None:
                break
            await asyncio.sleep(pause)
            details = await self.plane.run_details(eid.project, eid.domain, eid.name)
        return details

    async def _execution(
        self, eid: ExecutionId, details: run_service_pb2.GetRunDetailsResponse
    ) -> Execution:
        """The run as it is frozen with its first event: its rules, names resolved now."""
        found = details.details
        named = await self.recorder.named_rules()
        read = read_rules(found.run_spec, eid.project, eid.domain, named)
        if read.why_none:
            log.info("intake %s: run %s has no notifications: %s", self.name, eid, read.why_none)
        task = found.action.metadata.task.id
        return Execution(
            id=eid,
            launch_plan=EntityId(task.project, task.domain, task.name, task.version)
            if task.name
            else None,
            notifications=(),
            created_at=_time(found.action.status, "start_time") or datetime.now(UTC),
            source=NotificationSource.FLYTE2,
            lookup_error=read.why_none,
            rules=read.rules,
            trigger=trigger_name(found.action.metadata),
        )

    async def _record(self, pairs: list[tuple[ExecutionEvent, Execution]]) -> None:
        events = [event for event, _ in pairs]
        known = {execution.id: execution for _, execution in pairs}
        results = await self.recorder.record_checked_events(events, known)
        if self.counters is not None:
            for result in results:
                self.counters.event_received(result.outcome.value)
            self.counters.intake_outcome(self.name, "recorded", len(events))

    # -- runs a deadline watches -----------------------------------------------------------

    async def record_progress(self, runs: Sequence[run_definition_pb2.Run]) -> None:
        """Record the phase each run a deadline may watch is in now, once per phase.

        Only these: every other run's phases before its end are of no use, and
        recording one costs a ``GetRunDetails`` the first time. A QUEUED run
        is queued since it was created; a RUNNING one is recorded as running
        from now (the stream says a phase was written, not when).
        """
        fresh = []
        for run in runs:
            phase = ledger_phase(run.action.status.phase)
            eid = _execution_id(run)
            if phase is None or phase == PAUSED or self._progress.get(eid) == phase:
                continue
            if self.recorder.follows(
                eid.project, eid.domain, launch_plan="", task=_task(run), trigger=_trigger(run)
            ):
                fresh.append((eid, phase, run))
        if not fresh:
            return
        held = await self.recorder.executions([eid for eid, _, _ in fresh])
        pairs = []
        for eid, phase, run in fresh:
            known = held.get(eid)
            if known is not None and known.terminal_phase is not None:
                continue
            try:
                execution = known or await self._execution(
                    eid, await self.plane.run_details(eid.project, eid.domain, eid.name)
                )
            except RunNotFound as gone:
                log.warning("intake %s: %s; not recorded", self.name, gone)
                continue
            created = _time(run.action.status, "start_time")
            occurred = created if phase == P.QUEUED and created else datetime.now(UTC)
            event = ExecutionEvent(eid, phase, occurred, producer_id="flyte2")
            pairs.append((checked_event(event), execution))
        if pairs:
            await self._record(pairs)
        for eid, phase, _ in fresh:
            self._progress.pop(eid, None)
            self._progress[eid] = phase
        while len(self._progress) > PROGRESS_KEPT:
            self._progress.pop(next(iter(self._progress)))

    # -- runs waiting for input ----------------------------------------------------------

    async def poll_paused(self) -> None:
        """Record each action newly waiting for input (once per action)."""
        still: set[tuple[str, str]] = set()
        token = ""
        for _ in range(MAX_PAGES):
            page = await self.plane.list_runs(
                self.project, self.domain, token=token, limit=PAGE, paused_only=True
            )
            for run in page.runs:
                still |= await self._paused_run(run)
            token = page.token
            if not token:
                break
        self._paused_seen &= still  # forget actions that were answered

    async def _paused_run(self, run: run_definition_pb2.Run) -> set[tuple[str, str]]:
        eid = _execution_id(run)
        actions = (await self.plane.paused_actions(run.action.id.run)).actions
        keys = {(eid.name, action.id.name) for action in actions}
        fresh = [a for a in actions if (eid.name, a.id.name) not in self._paused_seen]
        if not fresh:
            return keys
        held = (await self.recorder.executions([eid])).get(eid)
        if held is not None and held.terminal_phase is not None:
            return keys
        try:
            execution = held or await self._execution(
                eid, await self.plane.run_details(eid.project, eid.domain, eid.name)
            )
            pairs = [(await self._paused_event(eid, action), execution) for action in fresh]
        except RunNotFound as gone:
            log.warning("intake %s: %s; not recorded", self.name, gone)
            return keys
        await self._record(pairs)
        self._paused_seen |= {(eid.name, action.id.name) for action in fresh}
        return keys

    async def _paused_event(
        self, eid: ExecutionId, action: run_definition_pb2.Action
    ) -> ExecutionEvent:
        details = (await self.plane.action_details(action.id)).details
        condition = details.condition
        # What an answer needs: the action to signal, its parent, the type it takes.
        expects = ValueKind.of_simple(condition.type.simple)
        return checked_event(
            ExecutionEvent(
                execution_id=eid,
                phase=PAUSED,
                occurred_at=_time(action.status, "start_time") or datetime.now(UTC),
                producer_id="flyte2",
                paused=PausedAction(
                    name=action.id.name,
                    prompt=condition.prompt,
                    description=condition.description,
                    prompt_type=_PROMPT_TYPES.get(condition.prompt_type, ""),
                    condition=details.metadata.condition.name or condition.name,
                    parent=details.metadata.parent,
                    expects=expects.value if expects is not None else "",
                ),
            )
        )


class _Batches:
    """A ``WatchRuns`` stream read ahead by a task of its own: :meth:`next` returns
    every run read since the last call (waiting for one), None once the stream
    ended, or raises what ended it. At most :data:`READ_AHEAD` runs wait: then
    the reader waits too, and the control plane's stream with it."""

    def __init__(
        self, messages: AsyncIterator[run_service_pb2.WatchRunsResponse], status: SourceStatus
    ) -> None:
        self._messages = messages
        self._status = status
        self._runs: list[run_definition_pb2.Run] = []
        self._changed = asyncio.Event()  # runs arrived, or were taken, or the stream ended
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Batches:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader  # its error, if any, was raised by next()

    async def _read(self) -> None:
        async for message in self._messages:
            self._status.last_message_at = time.time()
            while len(self._runs) >= READ_AHEAD:
                self._changed.clear()
                await self._changed.wait()
            self._runs.extend(message.runs)
            self._changed.set()

    async def next(self) -> list[run_definition_pb2.Run] | None:
        assert self._reader is not None
        while not self._runs and not self._reader.done():
            self._changed.clear()
            waiting = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({waiting, self._reader}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
        if self._runs:
            batch, self._runs = self._runs, []
            self._changed.set()  # room again for a reader waiting on READ_AHEAD
            return batch
        self._reader.result()  # raises what ended the stream
        return None


def _task(run: run_definition_pb2.Run) -> str:
    return str(run.action.metadata.task.id.name)


def _trigger(run: run_definition_pb2.Run) -> str:
    return trigger_name(run.action.metadata)


def _execution_id(run: run_definition_pb2.Run) -> ExecutionId:
    ident = run.action.id.run
    return ExecutionId(ident.project, ident.domain, ident.name)


def _time(status: run_definition_pb2.ActionStatus, field: str) -> datetime | None:
    if not status.HasField(field):
        return None
    moment: datetime = getattr(status, field).ToDatetime(tzinfo=UTC)
    return moment


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(max(seconds, 0.0), UTC).isoformat()
