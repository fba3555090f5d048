"""The in-process entry point: register, create executions, report events, dispatch.

    async with Notifier(Settings(smtp=SmtpConfig(host="127.0.0.1", port=2525))) as notifier:
        await notifier.register_launch_plan(EntityId("proj", "prod", "nightly", "v1"), [...])
        await notifier.create_execution(ExecutionId("proj", "prod", "e1"), launch_plan=...)
        await notifier.report_event({"executionId": {...}, "phase": "FAILED", ...})
        await notifier.run_until_idle()

:class:`SyncNotifier` offers the same calls to plain synchronous scripts. The
HTTP service and the CLI are thin layers over :class:`Notifier`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from cachetools import TTLCache

from flytenotify.actions import ActionAnswer, Actions
from flytenotify.channels import registry
from flytenotify.channels.base import (
    AnswersFromChat,
    Channel,
    ChannelSpec,
    SendResult,
    Unreachable,
)
from flytenotify.channels.inbox import InboxChannel
from flytenotify.config import Settings
from flytenotify.domain import (
    PAUSED,
    Acknowledgement,
    ActionKind,
    ActionRecord,
    Actor,
    Attempt,
    Deadline,
    DeadlineAlert,
    DeadlineId,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    GateReached,
    LaunchPlan,
    LedgerState,
    NamedKind,
    NamedRule,
    NotificationSource,
    PausedAction,
    RenderedMessage,
    Silence,
    Timer,
)
from flytenotify.engine import recovery, resolve
from flytenotify.engine import silences as silencing
from flytenotify.engine.coalesce import Coalescer
from flytenotify.engine.deadlines import DeadlineBook, percentile, schedule_timer, timer_work
from flytenotify.engine.dispatch import AttemptObserver, Dispatcher
from flytenotify.engine.render import template_variables
from flytenotify.engine.resolve_runs import plan_run_deliveries, recipient_kind
from flytenotify.engine.timers import TimerLoop
from flytenotify.engine.waiting import plan_waiting_deliveries
from flytenotify.errors import (
    Conflict,
    InputError,
    Problem,
    UnknownReference,
    UpstreamUnavailable,
)
from flytenotify.intake.events import (
    check_entity_id,
    check_execution_id,
    checked_event,
    event_from_bytes,
    event_from_json,
    event_from_proto,
)
from flytenotify.intake.gates import GateWatch
from flytenotify.intake.limits import (
    check_deadline,
    check_named_rule,
    recipient_problems,
    template_problems,
)
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.schedules import Schedule
from flytenotify.store import store_for_url
from flytenotify.store.base import (
    NO_TIMER_WORK,
    DeliveryFilter,
    EventOutcome,
    EventResult,
    EventWrite,
    FailureStreak,
    InboxMessage,
    NewDelivery,
    Store,
    TimerWork,
)
from flytenotify.wire import NotificationLike, launch_plan_notifications, to_notifications

# A notification as callers give it: our object, a protobuf message, or its JSON form.
NotificationInput = NotificationLike | Mapping[str, Any]

_T = TypeVar("_T")

log = logging.getLogger("flytenotify.app")

# Executions looked up in FlyteAdmin at once for one batch of events.
LOOKUP_CONCURRENCY = 8
LOOKUP_CACHE_SIZE = 10_000
# Waiting deliveries a new silence looks at per read, when it holds those it matches.
HOLD_PAGE = 1_000
# How often the deadlines the ledger holds are read again (other replicas change
# them too), and a configuration file's schedules armed again if that failed.
DEADLINES_REFRESH = 10.0


class ExecutionLookup(Protocol):
    """Where executions flytenotify never saw are looked up (FlyteAdmin)."""

    @property
    def description(self) -> str:
        """Where it looks, for the start-up log."""
        ...

    async def get_execution(self, execution_id: ExecutionId) -> Execution:
        """The execution, or one recorded with no notifications and the refusal.

        Raises :class:`~flytenotify.errors.UpstreamUnavailable` when it cannot answer now.
        """
        ...

    async def launch_plan_schedule(self, plan: EntityId) -> tuple[Schedule | None, str]:
        """The schedule the launch plan runs by, or None and why it has none.

        Raises :class:`~flytenotify.errors.UpstreamUnavailable` when it cannot answer now.
        """
        ...

    async def close(self) -> None: ...


EventInput = ExecutionEvent | Mapping[str, Any] | bytes | Any  # Any: a protobuf message


def build_channels(
    settings: Settings, store: Store | None = None, dev_inbox: bool = False
) -> dict[str, Channel]:
    """One channel object per configured channel (plus the dev inbox, kept in ``store``).

    ``store`` also paces providers across replicas (Slack per channel,
    PagerDuty per routing key).
    """
    channels: dict[str, Channel] = {
        spec.name: spec.build(settings.channel(spec.name), store)
        for spec in registry.specs()
        if settings.configured(spec.name)
    }
    for channel in channels.values():
        if isinstance(channel, AnswersFromChat):
            channel.offer_answers(settings)
    if dev_inbox and store is not None:
        channels[registry.INBOX] = InboxChannel(store)
    return channels


def open_store(settings: Settings) -> Store:
    """SQLite for ``sqlite:///`` URLs, PostgreSQL for ``postgresql://``/``postgres://``."""
    return store_for_url(settings.database.url)


class Notifier:
    """Everything flytenotify does, in one process, without the HTTP service.

    ``dev_inbox=True`` delivers what no channel is configured for into the
    local inbox instead of failing it (the service's zero-config mode).
    ``channels`` replaces the channels built from ``settings``. ``clock`` (Unix
    seconds) is what silences and deadlines are judged by (when a silence is in
    effect, when one is created or ended; when a timer is due, when a schedule
    fires); the current time unless a test gives its own. Leases and delivery
    due times keep to the time itself.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        dev_inbox: bool = False,
        channels: Mapping[str, Channel] | None = None,
        store: Store | None = None,
        observer: AttemptObserver | None = None,
        lookup: ExecutionLookup | None = None,
        clock: Callable[[], float] = time.time,
        deadlines_refresh: float = DEADLINES_REFRESH,
    ) -> None:
        self.settings = settings or Settings()
        self.now: Callable[[], datetime] = lambda: datetime.fromtimestamp(clock(), UTC)
        self.dev_inbox = dev_inbox
        self.store = store or open_store(self.settings)
        self.channels = (
            dict(channels)
            if channels is not None
            else build_channels(self.settings, self.store, dev_inbox)
        )
        self.dispatcher = Dispatcher(self.store, self.channels, self.settings, observer=observer)
        self.lookup = lookup if lookup is not None else build_lookup(self.settings)
        ttl = self.settings.flyteadmin.cache_ttl if self.settings.flyteadmin else 0.0
        self._looked_up: TTLCache[ExecutionId, Execution] | None = (
            TTLCache(LOOKUP_CACHE_SIZE, ttl) if ttl > 0 else None
        )
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.actions = Actions(self.store, self.settings)
        self._gates: GateWatch | None = None
        # Deadlines: the book in memory (intake asks it of every event), the timers in
        # the ledger, fired by the timer loop beside the dispatcher.
        self.clock = clock
        self.deadline_book = DeadlineBook(self.settings.deadline_entries())
        self.timers = TimerLoop(
            self.store,
            self.deadline_book,
            self.settings,
            owner=self.dispatcher.owner,
            dev_inbox=dev_inbox,
            clock=clock,
            enqueued=self.dispatcher.wake,
        )
        self._deadlines_refresh = deadlines_refresh
        self._refresher: asyncio.Task[None] | None = None
        self._timer_runner: asyncio.Task[None] | None = None
        self._unarmed: list[Deadline] = []  # configured schedules not armed yet (FlyteAdmin away)
        # Concurrent small intakes (one event per request) share one pass: one
        # transaction, one read of their launch plans and of the silences.
        self._grouped: Coalescer[ExecutionEvent, EventResult] = Coalescer(self._record_now)

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, *, retry: bool = True) -> None:
        """Open the ledger; ``retry=False`` tries a database server once (see Store.open)."""
        await self.store.open(retry=retry)
        # Work enqueued by another process (a replica, the CLI) wakes the
        # dispatcher at once; its poll remains the fallback.
        await self.store.listen(self.dispatcher.wake)
        await self.store.listen_timers(self.timers.wake)
        await self.refresh_deadlines()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._keep_deadlines_fresh())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self.stop_dispatching()
        for channel in self.channels.values():
            await channel.close()
        if self.lookup is not None:
            await self.lookup.close()
        await self.actions.close()
        await self.store.close()

    # -- registering ---------------------------------------------------------------

    async def register_launch_plan(
        self, plan: EntityId | Any, notifications: Iterable[NotificationInput] | None = None
    ) -> LaunchPlan:
        """Register a launch plan version's notifications.

        ``plan`` is an :class:`EntityId` with ``notifications`` given, or a
        flyteidl ``LaunchPlan`` message (its id and notifications are read).
        Notifications may be our objects, their JSON form, or protobuf messages.
        """
        if isinstance(plan, EntityId):
            plan_id = plan
            found = _notifications_from(notifications or ())
        else:
            plan_id, found = _from_launch_plan_message(plan)
        _check_storable(found)
        check_entity_id(plan_id, "launch_plan", version_required=True)
        registered = LaunchPlan(plan_id, tuple(found), datetime.now(UTC))
        await self.store.register_launch_plan(registered)
        return registered

    async def create_execution(
        self,
        execution_id: ExecutionId,
        launch_plan: EntityId | None = None,
        *,
        notifications: Iterable[NotificationInput] | None = None,
        disable_all: bool = False,
        workflow: EntityId | None = None,
    ) -> Execution:
        """Create an execution and freeze its effective notifications.

        Creating an execution that exists returns the stored one unchanged.
        """
        check_execution_id(execution_id, "id")
        if launch_plan is not None:
            check_entity_id(launch_plan, "launch_plan")
        if workflow is not None:
            check_entity_id(workflow, "workflow")
        overrides = _notifications_from(notifications or ())
        _check_storable(overrides)
        plan_notifications: Sequence[Any] = ()
        if launch_plan is not None:
            plan = await self.store.get_launch_plan(launch_plan)
            if plan is None and not overrides:
                raise UnknownReference(
                    Problem("launch_plan", f"no launch plan {launch_plan} is registered")
                )
            if plan is not None:
                launch_plan = plan.id  # pin the version that was latest now
                plan_notifications = plan.notifications
        execution = Execution(
            id=execution_id,
            launch_plan=launch_plan,
            workflow=workflow,
            notifications=resolve.effective_notifications(
                plan_notifications, overrides, disable_all
            ),
            created_at=datetime.now(UTC),
        )
        stored, _created = await self.store.create_execution(execution)
        return stored

    async def launch_plans(self) -> list[tuple[LaunchPlan, list[Problem]]]:
        """The latest version of every registered launch plan, each with the
        recipients in it that no configured channel can reach."""
        return [
            (plan, resolve.routing_problems(plan.notifications, self.settings, self.dev_inbox))
            for plan in await self.store.latest_launch_plans()
        ]

    async def routing_problems(self) -> list[Problem]:
        """Recipients of registered launch plans, of Flyte 2's named rules and
        deliveries, and of deadlines, that no configured channel can reach."""
        problems = [
            Problem(f"launch plan {plan.id}: {problem.field}", problem.message)
            for plan, found in await self.launch_plans()
            for problem in found
        ]
        for entry in await self.named_rules():
            scope = f"{entry.project or '*'}/{entry.domain or '*'}"
            problems += [
                Problem(
                    f"flyte2 named {entry.kind.value} {entry.name} ({scope}): {p.field}", p.message
                )
                for p in self.named_routing_problems(entry)
            ]
        for deadline in self.deadlines():
            problems += [
                Problem(f"deadline {deadline.id}: {p.field}", p.message)
                for p in self.deadline_routing_problems(deadline)
            ]
        return problems

    # -- Flyte 2's named rules and deliveries ------------------------------------------

    async def named_rules(self, kind: NamedKind | None = None) -> list[NamedRule]:
        """What the names in users' code mean: the configuration file's entries, then
        those managed over the API (of one ``kind``, or both)."""
        kinds = [kind] if kind is not None else list(NamedKind)
        found = [entry for entry in self._configured_names() if entry.kind in kinds]
        for each in kinds:
            found += await self.store.list_named_rules(each)
        return found

    def _configured_names(self) -> list[NamedRule]:
        return self.settings.flyte2.named_entries() if self.settings.flyte2 is not None else []

    async def put_named_rule(self, entry: NamedRule) -> tuple[NamedRule, list[Problem]]:
        """Create or replace an entry managed over the API; the recipients no configured
        channel can reach come back as warnings.

        Raises :class:`InputError` naming the field for a bad entry, and
        :class:`Conflict` for a name and scope the configuration file defines
        (the file is that entry's source).
        """
        problems = check_named_rule(entry)
        if problems:
            raise InputError(problems)
        configured = [
            known
            for known in self._configured_names()
            if (known.kind, known.name, known.project, known.domain)
            == (entry.kind, entry.name, entry.project, entry.domain)
        ]
        if configured:
            section = "rules" if entry.kind is NamedKind.RULE else "deliveries"
            raise Conflict(
                Problem(
                    "name",
                    f"[flyte2.{section}.{entry.name}] in the configuration file defines this"
                    " name for this scope; change it there",
                )
            )
        stored = dataclasses.replace(entry, source="api", updated_at=datetime.now(UTC))
        await self.store.put_named_rule(stored)
        return stored, self.named_routing_problems(stored)

    async def delete_named_rule(
        self, kind: NamedKind, name: str, project: str = "", domain: str = ""
    ) -> bool:
        """Whether an entry managed over the API existed (it no longer does)."""
        return await self.store.delete_named_rule(kind, name, project, domain)

    def named_routing_problems(self, entry: NamedRule) -> list[Problem]:
        """The recipients of ``entry`` no configured channel can reach."""
        return self._routing_problems(entry.recipients)

    def _routing_problems(self, recipients: Sequence[str]) -> list[Problem]:
        problems: list[Problem] = []
        for i, recipient in enumerate(recipients):
            kind, address = recipient_kind(recipient)
            try:
                resolve.route(kind, address, self.settings, self.dev_inbox)
            except resolve.RoutingError as error:
                problems.append(Problem(f"recipients[{i}]", str(error)))
        return problems

    # -- silences --------------------------------------------------------------------

    async def create_silence(self, silence: Silence) -> tuple[Silence, int]:
        """Store a silence; when it is in effect now, hold the waiting deliveries it
        matches too (those not being sent at this moment).

        Returns the silence as stored and how many waiting deliveries it held.
        Raises :class:`InputError` naming every field that is wrong.
        """
        now = self.now()
        problems = silencing.problems(silence, now)
        if problems:
            raise InputError(problems)
        stored = await self.store.create_silence(
            dataclasses.replace(silence, created_at=now, ended_at=None, ended_by="")
        )
        held = await self._hold_waiting(stored) if silencing.in_effect(stored, now) else 0
        log.info(
            "silence %d created by %s: %s", stored.id, stored.author, silencing.describe(stored)
        )
        return stored, held

    async def _trigger(self, silence: Silence, delivery: Delivery) -> str:
        """The Flyte 2 trigger that started ``delivery``'s run, when ``silence`` asks
        (deliveries do not carry it; their execution does)."""
        if silence.trigger is None:
            return ""
        execution = await self.store.get_execution(delivery.execution_id)
        return execution.trigger if execution is not None else ""

    async def _hold_waiting(self, silence: Silence) -> int:
        """Silence the pending and retrying deliveries ``silence`` matches, page by page."""
        held = 0
        reply = f"held by silence {silence.id} ({silence.author})"
        for status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
            after: int | None = None
            while True:
                page = await self.store.list_deliveries(
                    DeliveryFilter(
                        status=status,
                        project=silence.project,
                        domain=silence.domain,
                        launch_plan=silence.launch_plan,
                        after_id=after,
                        limit=HOLD_PAGE,
                    )
                )
                matched = [
                    d.id
                    for d in page
                    if silencing.holds(silence, d, await self._trigger(silence, d))
                ]
                if matched:
                    # Leases are judged by the time itself, whatever clock judges silences.
                    now = datetime.now(UTC).timestamp()
                    held += await self.store.hold_deliveries(silence.id, matched, now, reply)
                if len(page) < HOLD_PAGE:
                    break
                after = page[-1].id
        return held

    async def silence(self, silence_id: int) -> Silence | None:
        return await self.store.get_silence(silence_id)

    async def silences(
        self, active: bool | None = None, before_id: int | None = None, limit: int = 100
    ) -> tuple[list[Silence], int | None]:
        """A page of silences, newest first, and the cursor of the next page (None:
        the last). ``active=True`` keeps those in effect now, ``False`` the others."""
        now = self.now()
        not_over = now.timestamp() if active else None
        page = await self.store.list_silences(before_id, limit, not_over)
        more = page[-1].id if len(page) == limit else None
        if active is not None:
            page = [s for s in page if silencing.in_effect(s, now) is active]
        return page, more

    def silence_state(self, silence: Silence) -> silencing.State:
        return silencing.state(silence, self.now())

    async def end_silence(
        self, silence_id: int, author: str, release: bool = False
    ) -> tuple[Silence, int]:
        """End a silence now; with ``release``, what it held becomes pending and is
        sent at once. Returns the silence as ended and how many deliveries were
        released. Raises :class:`UnknownReference` for no such silence and
        :class:`Conflict` for one ended already."""
        problems = silencing.author_problems(author)
        if problems:
            raise InputError(problems)
        reply = f"released when {author} ended silence {silence_id}"
        now = self.now().timestamp()
        ended = await self.store.end_silence(silence_id, author, now, release, reply)
        if ended is None:
            known = await self.store.get_silence(silence_id)
            if known is None:
                raise UnknownReference(Problem("id", f"no silence {silence_id}"))
            raise Conflict(
                Problem("id", f"silence {silence_id} was ended by {known.ended_by} already")
            )
        silence, released = ended
        if released:
            self.dispatcher.wake()
        log.info(
            "silence %d ended by %s%s",
            silence_id,
            author,
            f"; {released} deliveries it held released" if release else "",
        )
        return silence, released

    # -- events --------------------------------------------------------------------

    async def report_event(self, event: EventInput) -> EventResult:
        return (await self.report_events([event]))[0]

    async def report_events(self, events: Sequence[EventInput]) -> list[EventResult]:
        """Record events; terminal ones enqueue their deliveries in the same transaction.

        An execution flytenotify does not know is looked up in FlyteAdmin first
        (when configured); if FlyteAdmin cannot answer now this raises
        :class:`~flytenotify.errors.UpstreamUnavailable` and records nothing.
        A bad event raises :class:`InputError` naming every bad one; nothing is recorded.
        """
        normalised, problems = [], []
        for i, given in enumerate(events):
            try:
                normalised.append(_as_event(given, f"events[{i}]"))
            except InputError as error:
                problems += error.problems
        if problems:
            raise InputError(problems)
        return await self.record_checked_events(normalised)

    async def record_checked_events(
        self,
        events: Sequence[ExecutionEvent],
        known: Mapping[ExecutionId, Execution] | None = None,
    ) -> list[EventResult]:
        """:meth:`report_events` for events that are through the intake's checks
        already: made by ``event_from_json``, ``event_from_bytes``,
        ``event_from_proto`` or ``checked_event``, as the HTTP API and the broker
        intake make them. Checking them again cost a third as much as parsing them.

        ``known`` gives executions the caller read from where they live (a
        Flyte 2 run and its rules): used for those the ledger does not hold yet;
        one it holds keeps what was frozen when it was first recorded.

        Calls without ``known`` that arrive while another is being recorded are
        recorded together, in one transaction (engine/coalesce.py).
        """
        if known:
            return await self._record_now(events, known)
        return await self._grouped(events)

    async def _record_now(
        self,
        events: Sequence[ExecutionEvent],
        known: Mapping[ExecutionId, Execution] | None = None,
    ) -> list[EventResult]:
        executions = await self._executions_for(events, known or {})
        streaks = await self._failure_streaks(events, executions)
        writes = []
        for event in events:
            execution = executions[event.execution_id]
            deliveries = _planner(execution, event)(execution, event, self.settings, self.dev_inbox)
            if recovery.is_success(event) and recovery.recovery_applies(execution, self.settings):
                streak = streaks.get(recovery.plan_of(execution) or "")
                if streak is not None:
                    deliveries += recovery.plan_recoveries(execution, event, streak, self.settings)
            timers = await self._timer_work(execution, event)
            writes.append(EventWrite(event, execution, deliveries, timers))
        writes = await self._silenced(writes)
        results = await self.store.record_events(writes)
        if any(r.delivery_ids for r in results):
            self.dispatcher.wake()
        if any(write.timers for write in writes):
            self.timers.wake()
        for write, result in zip(writes, results, strict=True):
            if result.outcome is EventOutcome.NO_NOTIFICATIONS:  # once: a replay is a duplicate
                _log_no_notifications(write)
        return results

    async def _silenced(self, writes: list[EventWrite]) -> list[EventWrite]:
        """``writes`` with the deliveries a silence in effect now holds marked so.

        The silences are read once per batch, and only for a batch that plans a
        delivery (most events plan none): every replica reads the ledger's own
        table, so one created anywhere applies everywhere at once.
        """
        if not any(write.deliveries for write in writes):
            return writes
        now = self.now()
        found = await self.store.silences_in_effect(now.timestamp())
        quiet = [silence for silence in found if silencing.in_effect(silence, now)]
        if not quiet:
            return writes
        return [
            dataclasses.replace(
                write,
                deliveries=silencing.hold(
                    write.deliveries, silencing.Subject.of(write.event, write.execution), quiet
                ),
            )
            for write in writes
        ]

    async def _failure_streaks(
        self, events: Sequence[ExecutionEvent], executions: Mapping[ExecutionId, Execution]
    ) -> dict[str, FailureStreak]:
        """The failures since their last success of the launch plans whose executions
        succeed in ``events`` and may send recovery messages, read once per plan."""
        plans = {
            recovery.plan_of(executions[event.execution_id])
            for event in events
            if recovery.is_success(event)
            and recovery.recovery_applies(executions[event.execution_id], self.settings)
        }
        streaks: dict[str, FailureStreak] = {}
        for plan in sorted(p for p in plans if p is not None):
            streak = await self.store.failure_streak(plan, recovery.LOOK_BACK)
            if streak is not None:
                streaks[plan] = streak
        return streaks

    async def execution_for(self, event: ExecutionEvent) -> Execution:
        """The execution ``event`` would be recorded with (the ledger's, a registered launch
        plan's, FlyteAdmin's): what the gate watch judges a node event by."""
        return (await self._executions_for([event], {}))[event.execution_id]

    # -- Flyte 1 gates -------------------------------------------------------------

    def waits_for_gates(self) -> bool:
        """Whether a ``[waiting.*]`` rule wants to hear of Flyte 1 gates."""
        return bool(self.settings.waiting)

    async def gates_reached(self, reached: Sequence[GateReached]) -> int:
        """Announce the gates these node events may have reached, once per gate
        (flytenotify.intake.gates); how many were announced now."""
        if self._gates is None:
            admin = self.actions.flyteadmin()
            self._gates = GateWatch(self.settings, self, admin.signals)
        return await self._gates.reached(reached)

    async def _executions_for(
        self, events: Sequence[ExecutionEvent], known: Mapping[ExecutionId, Execution]
    ) -> dict[ExecutionId, Execution]:
        """Every event's execution: the ledger's, else the caller's, else a registered
        launch plan's, else FlyteAdmin's (cached), else one with no notifications."""
        # One ledger look-up for the whole batch; an execution first seen in
        # this batch is created once and shared by its later events.
        executions = await self.store.get_executions([e.execution_id for e in events])
        plans: dict[EntityId, LaunchPlan | None] = {}
        unknown: dict[ExecutionId, ExecutionEvent] = {}
        for event in events:
            if event.execution_id in executions or event.execution_id in unknown:
                continue
            if event.execution_id in known:
                executions[event.execution_id] = known[event.execution_id]
                continue
            registered = await self._from_registered_plan(event, plans)
            if registered is not None:
                executions[event.execution_id] = registered
            else:
                unknown[event.execution_id] = event
        executions.update(await self._look_up(list(unknown.values())))
        return executions

    async def _from_registered_plan(
        self, event: ExecutionEvent, plans: dict[EntityId, LaunchPlan | None]
    ) -> Execution | None:
        # A launch plan registered with us wins over FlyteAdmin: the event names it.
        if event.launch_plan is None:
            return None
        if event.launch_plan not in plans:
            plans[event.launch_plan] = await self.store.get_launch_plan(event.launch_plan)
        plan = plans[event.launch_plan]
        if plan is None:
            return None
        return Execution(
            id=event.execution_id,
            launch_plan=plan.id,
            notifications=plan.notifications,
            created_at=event.occurred_at,
        )

    async def _look_up(self, events: Sequence[ExecutionEvent]) -> dict[ExecutionId, Execution]:
        """Executions nobody registered: from the cache or FlyteAdmin, all or none.

        Without a look-up configured they are recorded with no notifications, as before.
        """
        found: dict[ExecutionId, Execution] = {}
        wanted: list[ExecutionEvent] = []
        for event in events:
            cached = self._looked_up.get(event.execution_id) if self._looked_up else None
            if cached is not None:
                found[event.execution_id] = cached
            elif self.lookup is None:
                found[event.execution_id] = _unknown_execution(event)
            else:
                wanted.append(event)
        if not wanted or self.lookup is None:
            return found
        lookup = self.lookup
        limit = asyncio.Semaphore(LOOKUP_CONCURRENCY)

        async def one(event: ExecutionEvent) -> Execution:
            async with limit:
                execution = await lookup.get_execution(event.execution_id)
            if execution.launch_plan is None and event.launch_plan is not None:
                execution = dataclasses.replace(execution, launch_plan=event.launch_plan)
            return execution

        answers = await asyncio.gather(*(one(e) for e in wanted), return_exceptions=True)
        failures = [a for a in answers if isinstance(a, BaseException)]
        for execution in answers:
            if isinstance(execution, Execution):
                found[execution.id] = execution
                if self._looked_up is not None:  # kept even if the batch fails: asked once
                    self._looked_up[execution.id] = execution
        if failures:
            # Nothing is written: the caller retries the whole batch later.
            raise failures[0]
        return found

    # -- acting on Flyte ------------------------------------------------------------

    async def act(
        self,
        execution_id: ExecutionId,
        action: ActionKind | str,
        actor: Actor,
        *,
        signal_id: str = "",
        value: Any = None,
        from_text: bool = False,
    ) -> ActionAnswer:
        """Do ``action`` (approve, reject, signal, relaunch, recover, abort) on an execution
        for ``actor``, recorded in the ledger; or answer with the decision an earlier
        request made (``new`` False). ``signal_id`` names the gate to answer (a Flyte 1
        signal id; a Flyte 2 condition, by its action's name or its own), ``value`` what a
        ``signal`` sends (JSON types; ``from_text`` reads them from text).

        Raises :class:`InputError` naming the field (a wrong value for the gate's
        type), :class:`~flytenotify.errors.Forbidden` for an actor ``[actions]`` does
        not allow, :class:`UnknownReference` for an unknown execution or gate,
        :class:`~flytenotify.errors.UpstreamRefused` when Flyte refuses and
        :class:`~flytenotify.errors.UpstreamUnavailable` when it cannot be reached;
        each of them recorded first (flytenotify.actions).
        """
        return await self.actions.act(
            execution_id, action, actor, target=signal_id, value=value, from_text=from_text
        )

    async def acknowledge(
        self, execution_id: ExecutionId, actor: Actor, message: str = ""
    ) -> tuple[Acknowledgement, bool]:
        """Record that ``actor`` is on the execution (a chat message's Acknowledge, on the
        message whose provider id is ``message``): once per person, a repeat returns the
        first (``False``). The execution's deadlines alert about it no more."""
        check_execution_id(execution_id, "execution")
        found, new = await self.store.acknowledge(execution_id, actor, message, self.now())
        if new:
            log.info("%s acknowledged by %s", execution_id, actor.identity)
        return found, new

    async def use_link(self, nonce: str, actor: Actor) -> tuple[str, datetime, bool]:
        """Record the first use of a signed link (once across replicas): who, when, and
        whether this is the first use (else who used it first, and when)."""
        return await self.store.use_link(nonce, actor.identity, self.now())

    async def release_link(self, nonce: str) -> None:
        """A use that could not be carried out: the link works again."""
        await self.store.release_link(nonce)

    async def acknowledgements(self, execution_id: ExecutionId) -> list[Acknowledgement]:
        """Who acknowledged the execution, and when, first first."""
        return await self.store.list_acknowledgements(execution_id)

    async def action_history(self, execution_id: ExecutionId) -> list[ActionRecord]:
        """Every action asked on the execution, in order, whatever came of it."""
        return await self.actions.history(execution_id)

    async def waiting_gates(self, execution_id: ExecutionId) -> list[PausedAction]:
        """The gates the execution was announced waiting at (PAUSED events) that no action
        here has decided, by the name they were announced with. The ledger's view: one
        answered in Flyte directly shows here until an action finds it answered."""
        decided = {
            record.target
            for record in await self.action_history(execution_id)
            if record.decision is not None and record.action.answers_gate
        }
        gates = [event.paused for event, _ in await self.events(execution_id) if event.paused]
        return list({gate.name: gate for gate in gates if gate.name not in decided}.values())

    async def _timer_work(self, execution: Execution, event: ExecutionEvent) -> TimerWork:
        """What ``event`` does to the timers of the deadlines selecting its execution."""
        selecting = self.deadline_book.selecting(execution)
        if not selecting:
            return NO_TIMER_WORK
        typical: dict[str, float | None] = {}
        if event.phase == WorkflowExecutionPhase.RUNNING:
            for deadline in selecting:
                if deadline.slower_than is not None:
                    typical[deadline.series] = await self._typical(deadline)
        return timer_work(selecting, execution, event, typical)

    async def _typical(self, deadline: Deadline) -> float | None:
        """The ``slower_than`` percentile of the deadline's series, once enough runs are known."""
        slower = deadline.slower_than
        assert slower is not None
        durations = await self.store.recent_durations(deadline.series, slower.of_last)
        if len(durations) < slower.min_runs:
            return None
        return percentile(durations, slower.percentile)

    def follows(
        self,
        project: str,
        domain: str,
        *,
        launch_plan: str | None = None,
        task: str | None = None,
        trigger: str | None = None,
    ) -> bool:
        """Whether a deadline may select an execution of ``project``/``domain``: intake
        keeps its non-terminal events then (``None``: not known, ``""``: none)."""
        return self.deadline_book.follows(
            project, domain, launch_plan=launch_plan, task=task, trigger=trigger
        )

    # -- deadlines -------------------------------------------------------------------

    async def refresh_deadlines(self) -> None:
        """Read the deadlines the ledger holds into the book (other replicas change them)."""
        self.deadline_book.replace_stored(await self.store.list_deadlines())

    async def _keep_deadlines_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._deadlines_refresh)
            try:
                await self.refresh_deadlines()
                if self._unarmed:
                    await self._arm_configured(self._unarmed)
            except Exception as error:  # the database is away: the book stays as it was
                log.warning("could not read the deadlines again: %s", error)

    def deadlines(self) -> list[Deadline]:
        """Every deadline: the configuration file's and those managed over the API."""
        return self.deadline_book.all()

    def deadline(self, ident: DeadlineId) -> Deadline | None:
        return self.deadline_book.get(ident)

    async def put_deadline(self, deadline: Deadline) -> tuple[Deadline, list[Problem]]:
        """Create or replace a deadline managed over the API; the recipients no configured
        channel can reach come back as warnings.

        A schedule not given is read from FlyteAdmin (the launch plan's active
        version). Raises :class:`InputError` naming the field for a bad deadline
        or a launch plan with no schedule, :class:`Conflict` for a name the
        configuration file defines, and
        :class:`~flytenotify.errors.UpstreamUnavailable` when FlyteAdmin cannot
        answer now.
        """
        problems = check_deadline(deadline)
        if problems:
            raise InputError(problems)
        if any(known.id == deadline.id for known in self.deadline_book.configured):
            raise Conflict(
                Problem(
                    "name",
                    f"[deadlines.{deadline.id.name}] in the configuration file defines this"
                    " deadline; change it there",
                )
            )
        stored = dataclasses.replace(deadline, source="api", updated_at=datetime.now(UTC))
        schedule = await self._schedule_timer(stored)
        await self.store.put_deadline(stored, schedule)
        await self.refresh_deadlines()
        self.timers.wake()
        return stored, self.deadline_routing_problems(stored)

    async def delete_deadline(self, ident: DeadlineId) -> bool:
        """Whether a deadline managed over the API existed (it, and its timers, no longer do)."""
        deleted = await self.store.delete_deadline(ident)
        await self.refresh_deadlines()
        return deleted

    def deadline_routing_problems(self, deadline: Deadline) -> list[Problem]:
        """The recipients of ``deadline`` no configured channel can reach."""
        return self._routing_problems(deadline.recipients)

    async def deadline_alerts(
        self, ident: DeadlineId, before_id: int | None = None, limit: int = 100
    ) -> list[DeadlineAlert]:
        """What a deadline alerted about, newest first."""
        return await self.store.deadline_alerts(ident, before_id, limit)

    async def open_alerts(
        self, before_id: int | None = None, limit: int = 100
    ) -> list[DeadlineAlert]:
        """Alerts whose execution has not ended: what is over a deadline now."""
        return await self.store.open_alerts(before_id, limit)

    async def deadline_timers(self, ident: DeadlineId) -> dict[str, tuple[int, float]]:
        """What a deadline waits for: per kind, how many timers and the next one due."""
        return await self.store.deadline_timers(ident)

    async def _schedule_timer(self, deadline: Deadline) -> Timer | None:
        """The first timer of the deadline's schedule (None: it watches no schedule)."""
        if deadline.start_within is None:
            return None
        return schedule_timer(deadline, await self._schedule_of(deadline), self.clock())

    async def _schedule_of(self, deadline: Deadline) -> Schedule:
        if deadline.schedule:
            return Schedule(cron=deadline.schedule)
        plan = EntityId(deadline.id.project, deadline.id.domain, deadline.launch_plan)
        if self.lookup is None:
            raise InputError(
                Problem(
                    "schedule",
                    f"is required: no [flyteadmin] is configured to read launch plan {plan}'s"
                    " own schedule",
                )
            )
        schedule, why = await self.lookup.launch_plan_schedule(plan)
        if schedule is None:
            raise InputError(Problem("schedule", f"is required: {why}"))
        return schedule

    async def _arm_configured(self, deadlines: Sequence[Deadline]) -> None:
        """Arm the configuration file's schedules (kept as they are if unchanged); those
        whose schedule FlyteAdmin cannot give now are tried again later."""
        unarmed = []
        for deadline in deadlines:
            try:
                timer = await self._schedule_timer(deadline)
            except UpstreamUnavailable as error:
                log.warning("deadline %s: its schedule cannot be read now: %s", deadline.id, error)
                unarmed.append(deadline)
                continue
            except InputError as error:
                log.error("deadline %s watches no schedule: %s", deadline.id, error)
                continue
            if timer is not None:
                await self.store.put_schedule_timer(timer)
        self._unarmed = unarmed
        self.timers.wake()

    # -- dispatching ---------------------------------------------------------------

    def start_dispatching(self) -> None:
        """Run the dispatcher and the timer loop in the background until
        :meth:`stop_dispatching`."""
        if self._runner is None:
            self._stop = asyncio.Event()
            self._runner = asyncio.create_task(self.dispatcher.run(self._stop))
            self._timer_runner = asyncio.create_task(self._run_timers(self._stop))

    async def _run_timers(self, stop: asyncio.Event) -> None:
        try:
            await self._arm_configured(self.deadline_book.configured)
        except Exception as error:  # the database is away: armed at the next refresh
            log.warning("could not arm the configuration file's schedules: %s", error)
            self._unarmed = self.deadline_book.configured
        await self.timers.run(stop)

    async def stop_dispatching(self) -> None:
        if self._runner is not None:
            self._stop.set()
            await self._runner
            self._runner = None
        if self._timer_runner is not None:
            await self._timer_runner
            self._timer_runner = None

    async def run_until_idle(self, max_wait: float = 60.0, include_retries: bool = False) -> None:
        """Deliver everything due now (or everything, with ``include_retries``)."""
        await self.dispatcher.run_until_idle(max_wait, include_retries)

    # -- queries -------------------------------------------------------------------

    async def execution(self, execution_id: ExecutionId) -> Execution | None:
        """The execution as recorded: its notifications and where they came from."""
        return await self.store.get_execution(execution_id)

    async def executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        """Those of ``ids`` the ledger holds, in one round trip."""
        return await self.store.get_executions(ids)

    async def watch_position(self, source: str) -> float | None:
        """Up to when the watch ``source`` has recorded every run that ended (None: never)."""
        return await self.store.watch_position(source)

    async def advance_watch_position(self, source: str, position: float) -> None:
        """Move the watch ``source``'s position to ``position`` if that is later."""
        await self.store.advance_watch_position(source, position)

    async def events(self, execution_id: ExecutionId) -> list[tuple[ExecutionEvent, str]]:
        """The execution's events in arrival order, each with its outcome."""
        return await self.store.list_events(execution_id)

    async def deliveries(self, query: DeliveryFilter | None = None) -> list[Delivery]:
        return await self.store.list_deliveries(query or DeliveryFilter())

    async def delivery(self, delivery_id: int) -> Delivery | None:
        return await self.store.get_delivery(delivery_id)

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        return await self.store.list_attempts(delivery_id)

    async def counts(self) -> dict[str, int]:
        return await self.store.count_by_status()

    async def ledger_state(self) -> LedgerState:
        """Deliveries per status and the oldest still waiting (metrics, status pages)."""
        counts = await self.store.count_by_status()
        oldest: datetime | None = None
        for status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
            if not counts.get(status.value):
                continue
            # Ids grow with creation time, so the first row is the oldest one.
            first = await self.store.list_deliveries(DeliveryFilter(status=status, limit=1))
            if first and (oldest is None or first[0].created_at < oldest):
                oldest = first[0].created_at
        return LedgerState(counts, oldest)

    async def schema_version(self) -> int:
        """The ledger's schema version (raises if the database cannot answer)."""
        return await self.store.schema_version()

    def ledger_full(self) -> str | None:
        """Why the ledger refuses writes for lack of space now, or None (store/space.py)."""
        return self.store.space.problem()

    async def launch_plan(self, plan_id: EntityId) -> LaunchPlan | None:
        """The newest registration of ``plan_id`` (any version when its version is empty)."""
        return await self.store.get_launch_plan(plan_id)

    def channel_states(self) -> dict[str, str]:
        """Each channel: configured, dev-inbox (its messages kept locally) or unconfigured."""
        unset = "dev-inbox" if self.dev_inbox else "unconfigured"
        return {name: "configured" if name in self.channels else unset for name in registry.names()}

    async def inbox(self, after_id: int | None = None, limit: int = 100) -> list[InboxMessage]:
        return await self.store.list_inbox(after_id, limit)

    async def redrive(self, delivery_id: int) -> Delivery | None:
        """Send a dead-lettered (or silenced) delivery again; None if it is neither."""
        delivery = await self.store.redrive(delivery_id, datetime.now(UTC).timestamp())
        if delivery is not None:
            self.dispatcher.wake()
        return delivery

    # -- reaching the providers ------------------------------------------------------

    async def send_test(self, channel: str, recipient: str) -> SendResult:
        """One real attempt through ``channel`` to ``recipient``, outside the ledger.

        Raises :class:`InputError` naming ``channel`` or ``recipient`` when the
        channel is unknown or not configured, or does not take that recipient.
        """
        spec = registry.get(channel)
        if spec is None:
            known = ", ".join(registry.names())
            raise InputError([Problem("channel", f"unknown channel {channel!r}; one of {known}")])
        config = self.settings.channel(channel)
        if not spec.is_configured(config):
            raise InputError(
                [Problem("channel", f"the {channel} channel is not configured; see check-config")]
            )
        address = _test_address(spec, recipient, config)
        # A test message is one send: no ledger paces it.
        target = spec.build(config, None)
        try:
            return await target.send(self._test_delivery(spec, address))
        finally:
            await target.close()

    def _test_delivery(self, spec: ChannelSpec[Any], address: str) -> Delivery:
        now = datetime.now(UTC)
        execution = ExecutionId("flytenotify", "test", "send-test")
        event = ExecutionEvent(execution_id=execution, phase=4, occurred_at=now)  # SUCCEEDED
        variables = template_variables(event, None, self.settings.templates.console_url)
        text = (
            "This is a test message from flytenotify send-test: the "
            f"{spec.name} channel can reach {address}. Nothing needs doing."
        )
        return Delivery(
            id=0,
            idempotency_key=f"send-test/{spec.name}/{address}/{now.timestamp()}",
            execution_id=execution,
            phase=4,
            notification_index=0,
            kind=spec.test_kind,
            channel=spec.name,
            recipient=address,
            message=RenderedMessage(
                subject="flytenotify test message",
                text=text,
                html=f"<p>{html.escape(text)}</p>",
                slack_text=text,
                variables=variables,
            ),
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=now,
        )

    async def check_channels(self) -> tuple[list[str], list[str]]:
        """Reach every configured channel's provider without sending: (found, problems)."""
        found: list[str] = []
        problems: list[str] = []
        for spec in registry.specs():
            config = self.settings.channel(spec.name)
            if not spec.is_configured(config):
                continue
            channel = spec.build(config, None)
            try:
                found.append(await channel.check())
            except Exception as error:  # whatever the provider's client raised
                problems.append(f"{spec.name}: cannot connect: {error}")
            finally:
                await channel.close()
        return found, problems


def _test_address(spec: ChannelSpec[Any], recipient: str, config: Any) -> str:
    """Where ``spec`` sends a test to ``recipient`` (``ops`` or ``webhook:ops`` alike)."""
    if spec.prefix is not None and not recipient.startswith(spec.prefix):
        recipient = spec.prefix + recipient
    try:
        address = spec.takes(spec.test_kind, recipient, config)
    except Unreachable as why:
        raise InputError([Problem("recipient", str(why))]) from None
    if address is None:
        raise InputError(
            [Problem("recipient", f"the {spec.name} channel does not take {recipient!r}")]
        )
    return address


def build_lookup(settings: Settings) -> ExecutionLookup | None:
    """A FlyteAdmin client when ``[flyteadmin]`` is configured."""
    if settings.flyteadmin is None:
        return None
    from flytenotify.flyteadmin import FlyteAdmin

    return FlyteAdmin(settings.flyteadmin)


def _planner(execution: Execution, event: ExecutionEvent) -> Planner:
    """Who plans ``event``'s deliveries: a Flyte 2 run's own rules, the ``[waiting.*]``
    rules for a Flyte 1 gate, or a Flyte 1 execution's notifications."""
    if execution.rules:
        return plan_run_deliveries
    if event.phase == PAUSED:
        return plan_waiting_deliveries
    return resolve.plan_deliveries


Planner = Callable[[Execution, ExecutionEvent, Settings, bool], list[NewDelivery]]


def _log_no_notifications(write: EventWrite) -> None:
    """Say why a terminal event sends nothing; a warning when nobody knew its execution."""
    execution, event = write.execution, write.event
    unknown = execution.source is NotificationSource.NONE
    log.log(
        logging.WARNING if unknown else logging.INFO,
        "%s %s recorded with no notifications: %s",
        event.execution_id,
        event.phase_name,
        execution.no_notifications_reason(event.phase),
    )


def _unknown_execution(event: ExecutionEvent) -> Execution:
    # As FlyteAdmin does for an execution it has no record of: nothing to notify.
    return Execution(
        id=event.execution_id,
        launch_plan=event.launch_plan,
        notifications=(),
        created_at=event.occurred_at,
        source=NotificationSource.NONE,
    )


def _notifications_from(items: Iterable[NotificationInput]) -> list[Any]:
    """Our objects, protobuf messages or JSON dicts, validated together."""
    items = list(items)
    forms = [item for item in items if isinstance(item, Mapping)]
    if len(forms) == len(items):
        from flytenotify.notification_files import parse_notifications

        return list(parse_notifications(forms))
    if forms:
        raise InputError(
            Problem("notifications", "give objects or their JSON form, not some of each")
        )
    return list(to_notifications(item for item in items if not isinstance(item, Mapping)))


def _check_storable(notifications: Sequence[Any]) -> None:
    """Refuse recipients and templates no store can hold (length, NUL, lone surrogates)."""
    problems: list[Problem] = []
    for i, notification in enumerate(notifications):
        settings = notification.channel_settings
        if settings is None:
            continue
        where = f"notifications[{i}].{notification.channel}"
        for j, recipient in enumerate(settings.recipients_email):
            problems += recipient_problems(recipient, f"{where}.recipients_email[{j}]")
        if settings.template:
            problems += template_problems(settings.template, f"{where}.template")
    if problems:
        raise InputError(problems)


def _from_launch_plan_message(message: Any) -> tuple[EntityId, list[Any]]:
    found = launch_plan_notifications(message)
    ident = message.id if hasattr(message, "id") else None
    if ident is None or not ident.name:
        raise InputError(
            Problem("id", "a LaunchPlan message with an id is needed (a LaunchPlanSpec has none)")
        )
    return EntityId(ident.project, ident.domain, ident.name, ident.version), found


def _as_event(event: EventInput, field: str) -> ExecutionEvent:
    try:
        if isinstance(event, ExecutionEvent):
            return checked_event(event)  # built by a caller: the same limits as every form
        if isinstance(event, Mapping):
            return event_from_json(event)
        if isinstance(event, bytes):
            return event_from_bytes(event)
        return event_from_proto(event)
    except InputError as error:
        problems = [Problem(f"{field}.{p.field}".rstrip("."), p.message) for p in error.problems]
        raise InputError(problems) from None


class SyncNotifier:
    """:class:`Notifier` for synchronous scripts: same calls, no ``await``.

    A private event loop runs in a background thread; the dispatcher keeps
    delivering there while the script goes on. Use as a context manager.
    """

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._notifier: Notifier = self._call(_make_notifier(settings, kwargs))

    def _call(self, coro: Awaitable[_T]) -> _T:
        future: Future[_T] = asyncio.run_coroutine_threadsafe(_await(coro), self._loop)
        return future.result()

    def __enter__(self) -> SyncNotifier:
        self._call(self._notifier.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._notifier.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        target = getattr(self._notifier, name)
        if not callable(target):
            return target  # type: ignore[no-any-return]

        def call(*args: Any, **kwargs: Any) -> Any:
            # Everything runs on the notifier's own loop thread.
            return self._call(_invoke(target, args, kwargs))

        return call


async def _invoke(target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = target(*args, **kwargs)
    if asyncio.iscoroutine(result):
        return await result
    return result


async def _make_notifier(settings: Settings | None, kwargs: dict[str, Any]) -> Notifier:
    return Notifier(settings, **kwargs)


async def _await(coro: Awaitable[_T]) -> _T:
    return await coro
