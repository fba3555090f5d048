"""Deadlines: which executions they watch, which timers an event arms, what an alert says.

Pure decisions over the nouns of :mod:`flytenotify.domain`; the ledger keeps
the timers (:mod:`flytenotify.store`), :mod:`flytenotify.engine.timers` fires
them.

- :class:`DeadlineBook` holds the deadlines in force in memory, indexed by
  project and domain: an event of an execution no deadline selects costs one
  dictionary look-up, and intake drops its non-terminal events as before.
- :func:`timer_work` is what one event of a selected execution does to the
  timers: QUEUED arms ``max_queued``; RUNNING drops it and arms ``max_running``
  and ``slower_than`` (the percentile of the series' past durations, once
  ``min_runs`` are known); the end drops them all, closes the alerts and
  learns the run's duration; any event of an execution that began in a
  schedule's window satisfies that window.
- :func:`plan_alert` and :func:`plan_follow_up` say it: one delivery per
  recipient, routed and rendered as notifications are (``[allow]``, the dev
  inbox, grouping), with ``reason`` ``deadline`` or ``deadline_resolved``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from flytenotify.channels import pagerduty
from flytenotify.channels.registry import recipient_kind
from flytenotify.config import Settings
from flytenotify.domain import (
    Deadline,
    DeadlineAlert,
    DeadlineId,
    DeliveryReason,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    NotificationSource,
    Timer,
    TimerKind,
    phase_name,
)
from flytenotify.engine.render import render_message, template_variables
from flytenotify.engine.render_runs import run_variables
from flytenotify.engine.resolve import group_key, media_for, route_or_unroutable
from flytenotify.models.core.execution import WorkflowExecutionPhase as P
from flytenotify.schedules import Schedule, format_duration, spoken_duration
from flytenotify.store.base import NO_TIMER_WORK, NewDelivery, TimerWork

__all__ = [
    "DeadlineBook",
    "Planned",
    "missed_start_id",
    "next_schedule_timer",
    "percentile",
    "plan_alert",
    "plan_follow_up",
    "plan_late_start",
    "schedule_timer",
    "timer_work",
]


class DeadlineBook:
    """The deadlines in force: the configuration file's, then those the ledger holds
    (a configuration file's entry wins over a stored one of the same name)."""

    def __init__(self, configured: Iterable[Deadline] = ()) -> None:
        self._configured = list(configured)
        self._stored: list[Deadline] = []
        self._by_id: dict[DeadlineId, Deadline] = {}
        self._by_scope: dict[tuple[str, str], list[Deadline]] = {}
        self._index()

    def replace_stored(self, stored: Iterable[Deadline]) -> None:
        """What the ledger holds now (read again after a change, and now and then:
        other replicas change it too)."""
        self._stored = list(stored)
        self._index()

    def _index(self) -> None:
        by_id = {deadline.id: deadline for deadline in self._stored}
        by_id.update({deadline.id: deadline for deadline in self._configured})
        scopes: dict[tuple[str, str], list[Deadline]] = defaultdict(list)
        for deadline in by_id.values():
            scopes[(deadline.id.project, deadline.id.domain)].append(deadline)
        self._by_id, self._by_scope = by_id, dict(scopes)

    @property
    def configured(self) -> list[Deadline]:
        return list(self._configured)

    def all(self) -> list[Deadline]:
        """Every deadline, by project, domain and name."""
        return sorted(self._by_id.values(), key=lambda deadline: deadline.id)

    def get(self, ident: DeadlineId) -> Deadline | None:
        return self._by_id.get(ident)

    def follows(
        self,
        project: str,
        domain: str,
        *,
        launch_plan: str | None = None,
        task: str | None = None,
        trigger: str | None = None,
    ) -> bool:
        """Whether a deadline may select an execution of ``project``/``domain`` with
        these names: ``None`` is "not known here" (any may match), ``""`` "none"."""
        for deadline in self._by_scope.get((project, domain), ()):
            if _mismatch(deadline.launch_plan, launch_plan):
                continue
            if _mismatch(deadline.task, task) or _mismatch(deadline.trigger, trigger):
                continue
            return True
        return False

    def selecting(self, execution: Execution) -> list[Deadline]:
        """The deadlines that watch ``execution``."""
        scope = self._by_scope.get((execution.id.project, execution.id.domain), ())
        return [deadline for deadline in scope if deadline.selects(execution)]


def _mismatch(wanted: str, given: str | None) -> bool:
    return bool(wanted) and given is not None and wanted != given


# -- what an event does to the timers -------------------------------------------------


def timer_work(
    deadlines: Sequence[Deadline],
    execution: Execution,
    event: ExecutionEvent,
    typical: Mapping[str, float | None],
) -> TimerWork:
    """What ``event`` of ``execution`` does to the timers of the ``deadlines`` selecting
    it. ``typical`` gives each ``slower_than`` series' percentile duration (None:
    fewer runs known than it asks for)."""
    if not deadlines:
        return NO_TIMER_WORK
    at = event.occurred_at.timestamp()
    arm: list[Timer] = []
    cancel: set[TimerKind] = set()
    series: list[str] = []
    if event.phase == P.QUEUED:
        for d in deadlines:
            if d.max_queued is not None:
                arm.append(
                    _execution_timer(d, TimerKind.MAX_QUEUED, d.max_queued, execution, event, at)
                )
    elif event.phase == P.RUNNING:
        cancel.add(TimerKind.MAX_QUEUED)
        for d in deadlines:
            if d.max_running is not None:
                arm.append(
                    _execution_timer(d, TimerKind.MAX_RUNNING, d.max_running, execution, event, at)
                )
            usual = typical.get(d.series) if d.slower_than is not None else None
            if usual is not None:
                arm.append(_execution_timer(d, TimerKind.SLOWER_THAN, usual, execution, event, at))
    elif event.phase == P.SUCCEEDED:
        series = sorted({d.series for d in deadlines if d.slower_than is not None})
    starts = tuple(d.id for d in deadlines if d.start_within is not None)
    return TimerWork(
        arm=tuple(arm),
        cancel=frozenset(cancel),
        series=tuple(series),
        starts=starts,
        started_at=execution.created_at.timestamp(),
        ends=event.is_terminal,
    )


def _execution_timer(
    deadline: Deadline,
    kind: TimerKind,
    allowed: float,
    execution: Execution,
    event: ExecutionEvent,
    since: float,
) -> Timer:
    return Timer(
        kind=kind,
        deadline=deadline.id,
        due_at=since + allowed,
        since=since,
        allowed=allowed,
        phase=event.phase,
        execution=execution.id,
    )


def percentile(durations: Sequence[float], share: float) -> float:
    """The ``share`` percentile of ``durations`` by nearest rank: the smallest of them
    that at least ``share`` percent are no longer than (the 95th of 20 runs is the 19th
    fastest)."""
    ordered = sorted(durations)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


# -- schedules ------------------------------------------------------------------------


def schedule_timer(deadline: Deadline, schedule: Schedule, now: float) -> Timer:
    """The first timer of ``deadline``'s schedule: its next fire time after ``now``.

    A fixed rate has no fire times of its own: its window opens now and lasts
    a period and ``start_within``.
    """
    assert deadline.start_within is not None
    if schedule.cron:
        fire = schedule.next_after(now)
        return _schedule_timer(deadline.id, schedule, fire, deadline.start_within)
    return _schedule_timer(deadline.id, schedule, now, schedule.every + deadline.start_within)


def next_schedule_timer(timer: Timer, now: float) -> Timer:
    """The timer after ``timer`` fired: the next fire time whose window is still open
    (those that passed while nobody watched are not alerted one by one), or for a
    fixed rate, a period after the run that started (or from now, none having)."""
    schedule = Schedule.parse(timer.schedule)
    if schedule.cron:
        fire = schedule.next_after(max(timer.since, now - timer.allowed))
        return _schedule_timer(timer.deadline, schedule, fire, timer.allowed)
    opened = timer.satisfied_at if timer.satisfied_at is not None else now
    return _schedule_timer(timer.deadline, schedule, opened, timer.allowed)


def _schedule_timer(
    deadline: DeadlineId, schedule: Schedule, since: float, allowed: float
) -> Timer:
    return Timer(
        kind=TimerKind.START_WITHIN,
        deadline=deadline,
        due_at=since + allowed,
        since=since,
        allowed=allowed,
        schedule=schedule.text,
    )


def missed_start_id(deadline: DeadlineId, plan: str, fire: float) -> ExecutionId:
    """What a missed start is filed under: the launch plan's (or the deadline's) name and
    the fire time, so its alert and follow-up have an execution of their own."""
    stamp = datetime.fromtimestamp(fire, UTC).strftime("%Y%m%dT%H%M%SZ")
    return ExecutionId(deadline.project, deadline.domain, f"{plan or deadline.name}@{stamp}")


# -- what an alert says ---------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """An alert or follow-up, ready to be written with its timer's settlement."""

    subject: ExecutionId
    phase: int
    launch_plan: EntityId | None
    deliveries: tuple[NewDelivery, ...]
    alert: DeadlineAlert | None = None
    reason: DeliveryReason = DeliveryReason.DEADLINE


_HEAD = "Deadline {{ deadline.name }}: "
_SUBJECTS = {
    TimerKind.MAX_QUEUED: _HEAD + "{{ execution }} queued for {{ elapsed }}",
    TimerKind.MAX_RUNNING: _HEAD + "{{ execution }} running for {{ elapsed }}",
    TimerKind.SLOWER_THAN: _HEAD + "{{ execution }} running for {{ elapsed }}, slower than usual",
    TimerKind.START_WITHIN: _HEAD + "{{ selection }} did not start",
}
_WHAT = {
    TimerKind.MAX_QUEUED: (
        "Flyte execution {execution} of {plan} has been QUEUED for {elapsed}; deadline"
        " {deadline} allows {allowed}."
    ),
    TimerKind.MAX_RUNNING: (
        "Flyte execution {execution} of {plan} has been RUNNING for {elapsed}; deadline"
        " {deadline} allows {allowed}."
    ),
    TimerKind.SLOWER_THAN: (
        "Flyte execution {execution} of {plan} has been RUNNING for {elapsed}, longer than"
        " the {share} percentile of its last {runs} successful runs ({allowed})."
    ),
    TimerKind.START_WITHIN: (
        "{selection} did not start: no run began within {allowed} of its scheduled time"
        " {fire} ({schedule})."
    ),
}
# A fixed rate has no fire times: its window opens with the run before (or when armed).
_NO_RUN_SINCE = (
    "{selection} did not start: no run began within {allowed} of {fire} ({schedule}, and"
    " {start_within} to start in)."
)
ALERT_BODY = (
    "{{ what }}\n"
    "\n"
    "Deadline: {{ deadline }} ({{ rule }})\n"
    "Execution: {{ execution }}\n"
    "Launch plan: {{ launch_plan }}\n"
    "{{ phase_upper }} since: {{ occurred_at }}"
    "{{ console_link }}"
    "{{ deadline_link }}\n"
)
MISSED_START_BODY = (
    "{{ what }}\n"
    "\n"
    "Deadline: {{ deadline }} ({{ rule }})\n"
    "Scheduled: {{ occurred_at }}"
    "{{ deadline_link }}\n"
)
FOLLOW_UP_SUBJECT = (
    "Deadline {{ deadline.name }}: {{ execution }} ended {{ phase_text }} after {{ duration }}"
)
FOLLOW_UP_BODY = (
    "{{ what }}\n"
    "\n"
    "Deadline: {{ deadline }}\n"
    "Launch plan: {{ launch_plan }}\n"
    "Ended: {{ occurred_at }}"
    "{{ console_link }}"
    "{{ deadline_link }}\n"
)


def plan_alert(
    deadline: Deadline,
    timer: Timer,
    execution: Execution | None,
    now: float,
    settings: Settings,
    dev_inbox: bool,
) -> Planned:
    """The alert ``timer`` gives when it still holds: the breach, named, and its messages."""
    if timer.kind is TimerKind.START_WITHIN:
        return _missed_start(deadline, timer, now, settings, dev_inbox)
    assert execution is not None
    event = ExecutionEvent(
        execution.id, timer.phase, datetime.fromtimestamp(timer.since, UTC), launch_plan=None
    )
    variables = _variables(event, execution, settings)
    plan = execution.launch_plan
    facts = {
        "execution": str(execution.id),
        "plan": f"{'task' if execution.source is NotificationSource.FLYTE2 else 'launch plan'}"
        f" {plan.name}"
        if plan is not None
        else "an unknown launch plan",
        "elapsed": spoken_duration(now - timer.since),
        "allowed": spoken_duration(timer.allowed),
        "deadline": str(deadline.id),
        "share": _ordinal(deadline.slower_than.percentile) if deadline.slower_than else "",
        "runs": str(deadline.slower_than.of_last) if deadline.slower_than else "",
    }
    variables.update(_deadline_variables(deadline, timer.kind, facts, settings))
    words = _Words(_SUBJECTS[timer.kind], ALERT_BODY, variables)
    alert = DeadlineAlert(
        deadline=deadline.id,
        execution=execution.id,
        breach=timer.kind,
        phase=timer.phase,
        since=event.occurred_at,
        allowed=timer.allowed,
        breached_at=datetime.fromtimestamp(now, UTC),
        recipients=deadline.recipients,
        resolve=deadline.resolve,
    )
    deliveries = _deliveries(
        deadline.recipients,
        f"deadline/{deadline.id}/{timer.kind.value}/{execution.id}",
        words,
        settings,
        dev_inbox,
        grouped=(execution, event, deadline.id),
    )
    return Planned(execution.id, timer.phase, plan, deliveries, alert)


def _missed_start(
    deadline: Deadline, timer: Timer, now: float, settings: Settings, dev_inbox: bool
) -> Planned:
    schedule = Schedule.parse(timer.schedule)
    subject = missed_start_id(deadline.id, deadline.launch_plan, timer.since)
    plan = (
        EntityId(deadline.id.project, deadline.id.domain, deadline.launch_plan)
        if deadline.launch_plan
        else None
    )
    fire = datetime.fromtimestamp(timer.since, UTC)
    event = ExecutionEvent(subject, P.UNDEFINED, fire, launch_plan=plan)
    variables = template_variables(event, None, None)
    facts = {
        "selection": _capital(deadline.selection),
        "allowed": spoken_duration(timer.allowed),
        "fire": variables["occurred_at"],
        "schedule": schedule.describe(),
        "start_within": spoken_duration(timer.allowed - schedule.every),
    }
    variables.update(_deadline_variables(deadline, timer.kind, facts, settings))
    if not schedule.cron:
        variables["what"] = _NO_RUN_SINCE.format(**facts)
    variables["selection"] = deadline.selection
    words = _Words(_SUBJECTS[timer.kind], MISSED_START_BODY, variables)
    alert = DeadlineAlert(
        deadline=deadline.id,
        execution=subject,
        breach=timer.kind,
        phase=P.UNDEFINED,
        since=fire,
        allowed=timer.allowed,
        breached_at=datetime.fromtimestamp(now, UTC),
        recipients=deadline.recipients,
        resolve=deadline.resolve,
    )
    deliveries = _deliveries(
        deadline.recipients,
        f"deadline/{deadline.id}/{timer.kind.value}/{subject}",
        words,
        settings,
        dev_inbox,
    )
    return Planned(subject, P.UNDEFINED, plan, deliveries, alert)


def plan_follow_up(
    timer: Timer,
    alerts: Sequence[DeadlineAlert],
    execution: Execution,
    settings: Settings,
    dev_inbox: bool,
) -> Planned:
    """The one follow-up of a deadline's alerts about an execution that ended: how it
    ended and after how long, to whoever the alerts went to."""
    ended = next((a for a in alerts if a.ended_at is not None), None)
    phase = (
        ended.ended_phase if ended is not None and ended.ended_phase is not None else timer.phase
    )
    ended_at = ended.ended_at if ended is not None and ended.ended_at else datetime.now(UTC)
    event = ExecutionEvent(execution.id, phase, ended_at)
    variables = _variables(event, execution, settings)
    breaches = ", ".join(
        f"{alert.breach.value} {format_duration(alert.allowed)}" for alert in alerts
    )
    deadline = alerts[0].deadline if alerts else timer.deadline
    took = spoken_duration(ended_at.timestamp() - execution.created_at.timestamp())
    what = (
        f"Flyte execution {execution.id}, which was over deadline {deadline} ({breaches}),"
        f" ended {phase_name(phase)} after {took}."
    )
    variables.update(
        {
            "deadline": str(deadline),
            "deadline.name": deadline.name,
            "what": what,
            "duration": took,
            **_links(deadline, settings),
        }
    )
    recipients = tuple(dict.fromkeys(r for alert in alerts for r in alert.recipients))
    words = _Words(FOLLOW_UP_SUBJECT, FOLLOW_UP_BODY, variables)
    deliveries = _deliveries(
        recipients, f"deadline_resolved/{deadline}/{execution.id}", words, settings, dev_inbox
    )
    return Planned(
        execution.id,
        phase,
        execution.launch_plan,
        deliveries,
        reason=DeliveryReason.DEADLINE_RESOLVED,
    )


LATE_START_SUBJECT = "Deadline {{ deadline.name }}: {{ execution }} started late, after {{ late }}"
LATE_START_BODY = (
    "{{ what }}\n\nDeadline: {{ deadline }}\nStarted: {{ occurred_at }}{{ deadline_link }}\n"
)


def plan_late_start(
    alert: DeadlineAlert, deadline: Deadline | None, settings: Settings, dev_inbox: bool
) -> Planned:
    """The follow-up of a missed start once a run began after all: how late, to whoever
    heard it did not start."""
    started = alert.ended_at or datetime.now(UTC)
    phase = alert.ended_phase if alert.ended_phase is not None else P.UNDEFINED
    late = spoken_duration(started.timestamp() - alert.since.timestamp())
    plan = (
        EntityId(alert.deadline.project, alert.deadline.domain, deadline.launch_plan)
        if deadline is not None and deadline.launch_plan
        else None
    )
    event = ExecutionEvent(alert.execution, phase, started, launch_plan=plan)
    variables = template_variables(event, None, None)
    scheduled = template_variables(dataclasses.replace(event, occurred_at=alert.since), None, None)
    variables.update(
        {
            "deadline": str(alert.deadline),
            "deadline.name": alert.deadline.name,
            "late": late,
            "what": f"A run began {late} after the scheduled time {scheduled['occurred_at']},"
            f" which deadline {alert.deadline} had said did not start"
            f" (start_within {format_duration(alert.allowed)}).",
            **_links(alert.deadline, settings),
        }
    )
    words = _Words(LATE_START_SUBJECT, LATE_START_BODY, variables)
    key = f"deadline_resolved/{alert.deadline}/{alert.execution}"
    deliveries = _deliveries(alert.recipients, key, words, settings, dev_inbox)
    return Planned(
        alert.execution, phase, plan, deliveries, reason=DeliveryReason.DEADLINE_RESOLVED
    )


def _variables(event: ExecutionEvent, execution: Execution, settings: Settings) -> dict[str, str]:
    if execution.source is NotificationSource.FLYTE2:
        return run_variables(event, execution, settings)
    return template_variables(event, execution, settings.templates.console_url)


def _deadline_variables(
    deadline: Deadline, kind: TimerKind, facts: Mapping[str, str], settings: Settings
) -> dict[str, str]:
    return {
        "deadline": str(deadline.id),
        "deadline.name": deadline.id.name,
        "breach": kind.value,
        "rule": _rule(deadline, kind),
        "what": _WHAT[kind].format(**facts),
        "elapsed": facts.get("elapsed", ""),
        "allowed": facts.get("allowed", ""),
        **_links(deadline.id, settings),
    }


def _rule(deadline: Deadline, kind: TimerKind) -> str:
    """The rule that was broken, as written: ``max_queued 10m``."""
    if kind is TimerKind.MAX_QUEUED and deadline.max_queued is not None:
        return f"max_queued {format_duration(deadline.max_queued)}"
    if kind is TimerKind.MAX_RUNNING and deadline.max_running is not None:
        return f"max_running {format_duration(deadline.max_running)}"
    if kind is TimerKind.SLOWER_THAN and deadline.slower_than is not None:
        slower = deadline.slower_than
        return f"slower_than the {_ordinal(slower.percentile)} percentile of {slower.of_last} runs"
    if deadline.start_within is not None:
        return f"start_within {format_duration(deadline.start_within)}"
    return kind.value


def _links(deadline: DeadlineId, settings: Settings) -> dict[str, str]:
    """The deadline's page in flytenotify's console, when ``templates.public_url`` says
    where people reach it."""
    public = (settings.templates.public_url or "").strip().rstrip("/")
    if not public:
        return {"deadline_url": "", "deadline_link": ""}
    parts = "/".join(
        quote(part, safe="") for part in (deadline.project, deadline.domain, deadline.name)
    )
    url = f"{public}/ui/deadlines/{parts}"
    return {"deadline_url": url, "deadline_link": f"\nDeadline: {url}"}


@dataclass(frozen=True)
class _Words:
    """What a message says: its templates and their values."""

    subject: str
    body: str
    variables: dict[str, str]


def _deliveries(
    recipients: Sequence[str],
    key: str,
    words: _Words,
    settings: Settings,
    dev_inbox: bool,
    grouped: tuple[Execution, ExecutionEvent, DeadlineId] | None = None,
) -> tuple[NewDelivery, ...]:
    """One delivery per recipient, routed as a notification's (an unroutable one is
    recorded and dead-lettered with the reason); alerts of one deadline to one
    destination fold into digests where the channel's grouping says so."""
    kinds = [recipient_kind(recipient) for recipient in dict.fromkeys(recipients)]
    routes = [
        (kind, route_or_unroutable(kind, address, settings, dev_inbox)) for kind, address in kinds
    ]
    media = media_for(where.channel for _, where in routes)
    shown = render_message(words.subject, words.body, words.variables, media)
    planned = []
    for kind, where in routes:
        group = None
        if grouped is not None and where.channel != pagerduty.CHANNEL.name:
            # PagerDuty keeps one incident per execution: its follow-up resolves it.
            execution, event, deadline = grouped
            base = group_key(where, execution, event, settings)
            group = f"{base}|deadline={deadline}" if base is not None else None
        planned.append(
            NewDelivery(
                idempotency_key=f"{key}/{where.channel}/{where.recipient}",
                notification_index=0,
                kind=kind,
                channel=where.channel,
                recipient=where.recipient,
                message=shown,
                group_key=group,
            )
        )
    return tuple(planned)


def _ordinal(share: float) -> str:
    number = f"{share:g}"
    if not number.isdigit():
        return number
    value = int(number)
    suffix = "th" if 10 <= value % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
    return f"{value}{suffix}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
