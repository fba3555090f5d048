"""The timer loop: fire the deadlines' timers the ledger holds, each once, when due.

Timers live in the ledger (``timers``), armed and dropped in the transactions
that record events (:mod:`flytenotify.engine.deadlines` decides which). This
loop claims due ones with a lease (on PostgreSQL ``FOR UPDATE SKIP LOCKED``:
one replica takes each), plans what each says (an alert, a follow-up, or for
a schedule nothing when its run started; for an execution someone acknowledged
from chat, nothing more either: they are on it) and settles it: the timer is taken
out and its alert and deliveries written in one transaction, which first
checks, under the execution's lock, that it still holds. A silence in effect
holds a deadline's messages as it holds any other (recorded silenced, never
lost), matched on the run's facts and the phase it was in. A process killed
while a timer is pending or claimed leaves it in the ledger: it fires after a
restart, or on another replica once the lease passes.

Between timers it sleeps until the earliest is due (one index probe, however
many wait), or until woken: a timer armed in this process, or in another one
(``LISTEN``/``NOTIFY`` on PostgreSQL, ``data_version`` on SQLite). 100,000
pending timers cost nothing while idle.

"Now" comes from ``clock`` (``time.time`` unless a test moves time): due
times are judged by it; on PostgreSQL by the database's clock moved by as
much as ``clock`` runs ahead of this host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flytenotify.config import Settings
from flytenotify.domain import EXECUTION_TIMERS, ExecutionId, Timer, TimerKind
from flytenotify.engine import silences as silencing
from flytenotify.engine.deadlines import (
    DeadlineBook,
    Planned,
    next_schedule_timer,
    plan_alert,
    plan_follow_up,
    plan_late_start,
)
from flytenotify.store.base import Store, TimerSettlement, TimerVerdict

log = logging.getLogger("flytenotify.timers")

Clock = Callable[[], float]

LEASE = 30.0  # seconds a claimed timer is ours: settling one takes milliseconds
BATCH = 64  # timers claimed at once
# A fallback look, in case a wake-up was missed: wake-ups are hints, the ledger the truth.
IDLE_POLL = 60.0
_RECHECK = 0.05  # the shortest sleep, when something is due that the last claim left
_RETRY_MIN, _RETRY_MAX = 1.0, 30.0  # backoff while the ledger is unreachable


class TimerLoop:
    """Fires due timers until stopped; one per process that dispatches."""

    def __init__(
        self,
        store: Store,
        book: DeadlineBook,
        settings: Settings,
        *,
        owner: str,
        dev_inbox: bool = False,
        clock: Clock = time.time,
        enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.book = book
        self.settings = settings
        self.owner = owner
        self.dev_inbox = dev_inbox
        self.clock = clock
        self._enqueued = enqueued  # deliveries were written: the dispatcher looks now
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A timer was armed: look again now rather than at the next due time."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Fire timers until ``stop`` is set, then hand back the leases held."""
        stopper = asyncio.create_task(self._wake_on(stop))
        pause = _RETRY_MIN
        try:
            while not stop.is_set():
                try:
                    if not await self.fire_due():
                        await self._sleep(stop)
                    pause = _RETRY_MIN
                except Exception:
                    log.exception("the timer loop cannot reach the ledger; again in %.0f s", pause)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), pause)
                    pause = min(pause * 2, _RETRY_MAX)
        finally:
            stopper.cancel()
            with contextlib.suppress(Exception):
                await self.store.release_timers(self.owner)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def fire_due(self) -> int:
        """Claim the timers due now and settle each; how many were claimed."""
        self._wake.clear()  # a wake-up from here on means something changed after this look
        timers = await self.store.claim_timers(self.owner, self.clock(), LEASE, BATCH)
        for timer in timers:
            try:
                await self._fire(timer)
            except Exception:
                # Left leased: it is claimed again once the lease passes.
                log.exception(
                    "timer %s could not be fired; trying again in %.0f s", timer.key, LEASE
                )
        return len(timers)

    async def _sleep(self, stop: asyncio.Event) -> None:
        if stop.is_set():
            return
        wait = await self.store.next_timer_in(self.clock())
        timeout = IDLE_POLL if wait is None else min(IDLE_POLL, max(wait, _RECHECK))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    # -- one timer ----------------------------------------------------------------------

    async def _fire(self, timer: Timer) -> None:
        now = self.clock()
        settlement = await self._silenced(await self._settlement(timer, now), now)
        verdict = await self.store.settle_timer(settlement)
        if verdict is TimerVerdict.FIRED and (settlement.alert or settlement.deliveries):
            if settlement.deliveries:
                self._enqueued()
            log.info(
                "deadline %s: %s %s, %d message(s)",
                timer.deadline,
                "followed up on" if timer.kind is TimerKind.RESOLVE else timer.kind.value,
                settlement.subject,
                len(settlement.deliveries),
            )
        elif verdict is TimerVerdict.QUIET and settlement.rearm is not None:
            log.debug("deadline %s: a run started in time", timer.deadline)

    async def _settlement(self, timer: Timer, now: float) -> TimerSettlement:
        """What ``timer`` leads to, planned before the transaction that settles it."""
        if timer.kind is TimerKind.RESOLVE:
            return await self._follow_up(timer)
        deadline = self.book.get(timer.deadline)
        rearm = next_schedule_timer(timer, now) if timer.kind is TimerKind.START_WITHIN else None
        if deadline is None:
            # Deleted (or left the configuration file) since it was armed: nothing to say.
            log.info("timer %s dropped: deadline %s no longer exists", timer.key, timer.deadline)
            subject = timer.execution or _nobody(timer)
            return TimerSettlement(timer, self.owner, subject=subject, phase=timer.phase)
        if rearm is not None and deadline.start_within is None:
            rearm = None  # the deadline no longer asks for its schedule to be kept
        execution = None
        if timer.execution is not None:
            if timer.kind in EXECUTION_TIMERS and await self._acknowledged(timer.execution):
                # Someone said they are on it: no more alerts for this run.
                log.info("timer %s dropped: %s was acknowledged", timer.key, timer.execution)
                return TimerSettlement(
                    timer, self.owner, subject=timer.execution, phase=timer.phase
                )
            execution = await self.store.get_execution(timer.execution)
            if execution is None:
                return TimerSettlement(
                    timer, self.owner, subject=timer.execution, phase=timer.phase
                )
        planned = plan_alert(deadline, timer, execution, now, self.settings, self.dev_inbox)
        return _settle(timer, self.owner, planned, rearm)

    async def _silenced(self, settlement: TimerSettlement, now: float) -> TimerSettlement:
        """``settlement`` with the deliveries a silence in effect holds marked so (the
        ledger checks again, in the settling transaction, that it has not ended)."""
        if not settlement.deliveries:
            return settlement
        moment = datetime.fromtimestamp(now, UTC)
        found = await self.store.silences_in_effect(now)
        quiet = [silence for silence in found if silencing.in_effect(silence, moment)]
        if not quiet:
            return settlement
        subject = silencing.Subject(
            settlement.subject,
            settlement.launch_plan,
            settlement.phase,
            await self._trigger(settlement),
        )
        held = silencing.hold(settlement.deliveries, subject, quiet)
        return dataclasses.replace(settlement, deliveries=held)

    async def _trigger(self, settlement: TimerSettlement) -> str:
        """The Flyte 2 trigger of the run an alert is about; a missed start's: the one
        its deadline watches, if any."""
        execution = await self.store.get_execution(settlement.subject)
        if execution is not None:
            return execution.trigger
        deadline = self.book.get(settlement.timer.deadline)
        return deadline.trigger if deadline is not None else ""

    async def _acknowledged(self, execution: ExecutionId) -> bool:
        return bool(await self.store.list_acknowledgements(execution))

    async def _follow_up(self, timer: Timer) -> TimerSettlement:
        assert timer.execution is not None
        nothing = TimerSettlement(timer, self.owner, subject=timer.execution, phase=timer.phase)
        alerts = await self.store.alerts_of(timer.deadline, timer.execution)
        if not alerts:
            return nothing
        if alerts[0].breach is TimerKind.START_WITHIN:  # a missed start: a run began late
            deadline = self.book.get(timer.deadline)
            late = plan_late_start(alerts[0], deadline, self.settings, self.dev_inbox)
            return _settle(timer, self.owner, late, None)
        execution = await self.store.get_execution(timer.execution)
        if execution is None:
            return nothing
        planned = plan_follow_up(timer, alerts, execution, self.settings, self.dev_inbox)
        return _settle(timer, self.owner, planned, None)


def _settle(timer: Timer, owner: str, planned: Planned, rearm: Timer | None) -> TimerSettlement:
    return TimerSettlement(
        timer,
        owner,
        subject=planned.subject,
        phase=planned.phase,
        launch_plan=planned.launch_plan,
        alert=planned.alert,
        deliveries=planned.deliveries,
        reason=planned.reason,
        rearm=rearm,
    )


def _nobody(timer: Timer) -> ExecutionId:
    return ExecutionId(timer.deadline.project, timer.deadline.domain, timer.deadline.name)
