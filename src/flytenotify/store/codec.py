"""Conversions between domain objects and database columns.

Kept apart from the SQL so every backend stores values the same way: times as
Unix seconds, ids and notifications as JSON text. JSON goes through orjson:
a delivery row is encoded at intake and decoded at every claim.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from flytenotify.core.notification import Notification
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
    EmailEnvelope,
    EntityId,
    ErrorKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionId,
    InlineEmail,
    InlineWebhook,
    LaunchPlan,
    NamedKind,
    NamedRule,
    NotificationSource,
    PausedAction,
    Recurrence,
    RenderedMessage,
    RunRule,
    Silence,
    SlowerThan,
    Timer,
    TimerKind,
)

if TYPE_CHECKING:
    from flytenotify.store.base import EventWrite, NewAction, NewDelivery


def now() -> float:
    return time.time()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else now()


def from_timestamp(value: float) -> datetime:
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, ValueError, OSError):
        # Beyond what a datetime holds: before event times were bounded at intake,
        # 9999-12-31T23:59:59.999999 was stored and rounded up to year 10000. The
        # nearest moment a datetime holds, so that reading a row never fails.
        return _LATEST if value > 0 else _EARLIEST


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def dump_notifications(notifications: Iterable[Notification]) -> str:
    """JSON for a list of notifications; cached per tuple, which executions share.

    Every execution created from one launch plan holds the plan's very tuple,
    and turning it into JSON goes through protobuf each time: a batch of events
    would otherwise pay that once per event.
    """
    if isinstance(notifications, tuple):
        cached = _NOTIFICATIONS_JSON.get(id(notifications))
        # Holding the tuple in the cache keeps its id from being reused.
        if cached is not None and cached[0] is notifications:
            return cached[1]
        text = _dumps([n.to_dict() for n in notifications])
        if len(_NOTIFICATIONS_JSON) >= _CACHE_SIZE:
            _NOTIFICATIONS_JSON.pop(next(iter(_NOTIFICATIONS_JSON)))
        _NOTIFICATIONS_JSON[id(notifications)] = (notifications, text)
        return text
    return _dumps([n.to_dict() for n in notifications])


_CACHE_SIZE = 256
_NOTIFICATIONS_JSON: dict[int, tuple[tuple[Notification, ...], str]] = {}


def load_notifications(text: str) -> tuple[Notification, ...]:
    return tuple(Notification.from_dict(item) for item in orjson.loads(text))


def dump_rules(rules: Iterable[RunRule]) -> str:
    """JSON for a Flyte 2 run's rules (``executions.rules``)."""
    return _dumps([_rule_json(rule) for rule in rules])


def _rule_json(rule: RunRule) -> dict[str, Any]:
    data: dict[str, Any] = {"phases": sorted(rule.phases)}
    if rule.name:
        data["name"] = rule.name
    if rule.recipients:
        data["recipients"] = list(rule.recipients)
    if rule.email is not None:
        email = rule.email
        data["email"] = {
            "envelope": email.envelope.to_json(),
            "subject": email.subject,
            "text": email.text,
            "html": email.html,
        }
    if rule.webhook is not None:
        hook = rule.webhook
        data["webhook"] = {
            "url": hook.url,
            "method": hook.method,
            "headers": [list(pair) for pair in hook.headers],
            "body": hook.body,
        }
    if rule.problem:
        data["problem"] = rule.problem
    return data


def load_rules(text: str) -> tuple[RunRule, ...]:
    return tuple(_rule_from_json(item) for item in orjson.loads(text))


def _rule_from_json(data: Mapping[str, Any]) -> RunRule:
    email = data.get("email")
    hook = data.get("webhook")
    return RunRule(
        phases=frozenset(int(phase) for phase in data["phases"]),
        name=data.get("name", ""),
        recipients=tuple(data.get("recipients", ())),
        email=InlineEmail(
            envelope=EmailEnvelope.from_json(email["envelope"]),
            subject=email["subject"],
            text=email["text"],
            html=email.get("html", ""),
        )
        if email
        else None,
        webhook=InlineWebhook(
            url=hook["url"],
            method=hook["method"],
            headers=tuple((name, value) for name, value in hook.get("headers", ())),
            body=hook.get("body", ""),
        )
        if hook
        else None,
        problem=data.get("problem", ""),
    )


def dump_entity(entity: EntityId | None) -> str | None:
    if entity is None:
        return None
    fields = {"project": entity.project, "domain": entity.domain, "name": entity.name}
    return _dumps({**fields, "version": entity.version})


def load_entity(text: str | None) -> EntityId | None:
    return EntityId(**orjson.loads(text)) if text else None


def dump_error(error: ExecutionError | None) -> str | None:
    if error is None:
        return None
    return _dumps(
        {
            "message": error.message,
            "code": error.code,
            "kind": error.kind.value,
            "error_uri": error.error_uri,
        }
    )


def load_error(text: str | None) -> ExecutionError | None:
    if not text:
        return None
    data = orjson.loads(text)
    return ExecutionError(
        message=data["message"],
        code=data.get("code", ""),
        kind=ErrorKind(data.get("kind", "UNKNOWN")),
        error_uri=data.get("error_uri", ""),
    )


def event_columns(event: ExecutionEvent, received_at: float, outcome: str) -> tuple[Any, ...]:
    """An ``events`` row: project, domain, name, phase, occurred_at, producer_id,
    error, received_at, outcome, paused."""
    return (
        event.execution_id.project,
        event.execution_id.domain,
        event.execution_id.name,
        event.phase,
        timestamp(event.occurred_at),
        event.producer_id,
        dump_error(event.error),
        received_at,
        outcome,
        _dumps(event.paused.to_json()) if event.paused is not None else None,
    )


def launch_plan_from_row(row: Mapping[str, Any]) -> LaunchPlan:
    return LaunchPlan(
        id=EntityId(row["project"], row["domain"], row["name"], row["version"]),
        notifications=load_notifications(row["notifications"]),
        registered_at=from_timestamp(row["registered_at"]),
    )


def execution_from_row(row: Mapping[str, Any]) -> Execution:
    return Execution(
        id=ExecutionId(row["project"], row["domain"], row["name"]),
        launch_plan=load_entity(row["launch_plan"]),
        workflow=load_entity(row["workflow"]),
        notifications=load_notifications(row["notifications"]),
        created_at=from_timestamp(row["created_at"]),
        source=NotificationSource(row["notifications_source"]),
        lookup_error=row["lookup_error"],
        rules=load_rules(row["rules"]),
        terminal_phase=row["terminal_phase"],
        trigger=row["trigger_name"],
    )


def execution_columns(execution: Execution) -> tuple[Any, ...]:
    """An ``executions`` row as inserted: project, domain, name, launch_plan, workflow,
    notifications, created_at, notifications_source, lookup_error, rules, plan, trigger_name."""
    plan = execution.launch_plan
    return (
        execution.id.project,
        execution.id.domain,
        execution.id.name,
        dump_entity(execution.launch_plan),
        dump_entity(execution.workflow),
        dump_notifications(execution.notifications),
        timestamp(execution.created_at),
        execution.source.value,
        execution.lookup_error,
        dump_rules(execution.rules),
        # Its launch plan (or task) without the version: a streak of failures
        # does not stop at a new version.
        f"{plan.project}/{plan.domain}/{plan.name}" if plan is not None else None,
        execution.trigger,
    )


def event_from_row(row: Mapping[str, Any]) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=ExecutionId(row["project"], row["domain"], row["name"]),
        phase=row["phase"],
        occurred_at=from_timestamp(row["occurred_at"]),
        producer_id=row["producer_id"],
        error=load_error(row["error"]),
        paused=PausedAction.from_json(orjson.loads(row["paused"])) if row["paused"] else None,
    )


def delivery_from_row(row: Mapping[str, Any]) -> Delivery:
    next_at = row["next_attempt_at"]
    return Delivery(
        id=int(row["id"]),
        idempotency_key=row["idempotency_key"],
        execution_id=ExecutionId(row["project"], row["domain"], row["name"]),
        phase=int(row["phase"]),
        notification_index=int(row["notification_index"]),
        kind=row["kind"],
        channel=row["channel"],
        recipient=row["recipient"],
        message=RenderedMessage.from_json(orjson.loads(row["message"])),
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        created_at=from_timestamp(row["created_at"]),
        next_attempt_at=from_timestamp(next_at) if next_at is not None else None,
        last_reply=row["last_reply"],
        launch_plan=load_entity(row["launch_plan"]),
        group_key=row["group_key"],
        message_id=row["message_id"] or "",
        message_size=int(row["message_size"] or 0),
        silence_id=int(row["silence_id"]) if row["silence_id"] is not None else None,
        provider_message_id=row["provider_message_id"] or "",
        in_reply_to=row["in_reply_to"] or "",
        follows=row["follows"] or "",
        reason=DeliveryReason(row["reason"]),
    )


def attempt_from_row(row: Mapping[str, Any]) -> Attempt:
    return Attempt(
        delivery_id=int(row["delivery_id"]),
        number=int(row["number"]),
        started_at=from_timestamp(row["started_at"]),
        finished_at=from_timestamp(row["finished_at"]),
        outcome=row["outcome"],
        reply=row["reply"],
    )


def named_rule_columns(rule: NamedRule) -> tuple[Any, ...]:
    """A ``named_rules`` row: kind, name, project, domain, phases, recipients, updated_at."""
    return (
        rule.kind.value,
        rule.name,
        rule.project,
        rule.domain,
        _dumps(sorted(rule.phases)),
        _dumps(list(rule.recipients)),
        timestamp(rule.updated_at),
    )


def named_rule_from_row(row: Mapping[str, Any]) -> NamedRule:
    return NamedRule(
        kind=NamedKind(row["kind"]),
        name=row["name"],
        recipients=tuple(orjson.loads(row["recipients"])),
        phases=frozenset(int(phase) for phase in orjson.loads(row["phases"])),
        project=row["project"],
        domain=row["domain"],
        source="api",
        updated_at=from_timestamp(row["updated_at"]),
    )


def launch_plan_columns(plan: LaunchPlan) -> tuple[Any, ...]:
    """A ``launch_plans`` row as registered: project, domain, name, version,
    notifications, registered_at."""
    return (
        plan.id.project,
        plan.id.domain,
        plan.id.name,
        plan.id.version,
        dump_notifications(plan.notifications),
        timestamp(plan.registered_at),
    )


def delivery_columns(write: EventWrite, delivery: NewDelivery, now: float) -> tuple[Any, ...]:
    """A ``deliveries`` row as enqueued: idempotency_key, project, domain, name, phase,
    notification_index, kind, channel, recipient, message, launch_plan, status
    (silenced when a silence holds it), created_at, updated_at, next_attempt_at
    (due at once), group_key, silence_id, follows."""
    execution_id = write.event.execution_id
    held = delivery.silence_id is not None
    return (
        delivery.idempotency_key,
        execution_id.project,
        execution_id.domain,
        execution_id.name,
        write.event.phase,
        delivery.notification_index,
        delivery.kind,
        delivery.channel,
        delivery.recipient,
        delivery.message.json_text,
        dump_entity(write.execution.launch_plan),
        (DeliveryStatus.SILENCED if held else DeliveryStatus.PENDING).value,
        now,
        now,
        now,
        delivery.group_key,
        delivery.silence_id,
        delivery.follows or None,
    )


def silence_columns(silence: Silence) -> tuple[Any, ...]:
    """A ``silences`` row as created: project, domain, launch_plan, trigger_name, phases,
    recipient, match_all, starts_at, ends_at, cron, duration, timezone, comment,
    author, created_at."""
    recurring = silence.recurring
    return (
        silence.project,
        silence.domain,
        silence.launch_plan,
        silence.trigger,
        _dumps(sorted(silence.phases)),
        silence.recipient,
        int(silence.all),
        timestamp(silence.starts_at),
        silence.ends_at.timestamp() if silence.ends_at is not None else None,
        recurring.cron if recurring is not None else "",
        recurring.duration if recurring is not None else 0,
        recurring.timezone if recurring is not None else "",
        silence.comment,
        silence.author,
        timestamp(silence.created_at),
    )


def silence_from_row(row: Mapping[str, Any]) -> Silence:
    ends_at, ended_at = row["ends_at"], row["ended_at"]
    return Silence(
        id=int(row["id"]),
        project=row["project"],
        domain=row["domain"],
        launch_plan=row["launch_plan"],
        trigger=row["trigger_name"],
        phases=frozenset(int(phase) for phase in orjson.loads(row["phases"])),
        recipient=row["recipient"],
        all=bool(row["match_all"]),
        starts_at=from_timestamp(row["starts_at"]),
        ends_at=from_timestamp(ends_at) if ends_at is not None else None,
        recurring=Recurrence(row["cron"], int(row["duration"]), row["timezone"])
        if row["cron"]
        else None,
        comment=row["comment"],
        author=row["author"],
        created_at=from_timestamp(row["created_at"]),
        ended_at=from_timestamp(ended_at) if ended_at is not None else None,
        ended_by=row["ended_by"],
    )


def dump_value(value: bool | int | float | str | None) -> str | None:
    """A gate's value as the ledger keeps it (JSON), or NULL."""
    return _dumps(value) if value is not None else None


def action_columns(action: NewAction) -> tuple[Any, ...]:
    """An ``actions`` row as inserted: project, domain, name, action, target, value, actor,
    proof, outcome, detail, result, requested_at, decision."""
    return (
        action.execution_id.project,
        action.execution_id.domain,
        action.execution_id.name,
        action.action.value,
        action.target,
        dump_value(action.value),
        action.actor.identity,
        action.actor.proof,
        action.outcome.value,
        action.detail,
        action.result,
        timestamp(action.requested_at),
        action.decision,
    )


def action_from_row(row: Mapping[str, Any]) -> ActionRecord:
    return ActionRecord(
        id=int(row["id"]),
        execution_id=ExecutionId(row["project"], row["domain"], row["name"]),
        action=ActionKind(row["action"]),
        target=row["target"],
        value=orjson.loads(row["value"]) if row["value"] is not None else None,
        actor=row["actor"],
        proof=row["proof"],
        outcome=ActionOutcome(row["outcome"]),
        detail=row["detail"],
        result=row["result"],
        requested_at=from_timestamp(row["requested_at"]),
        decision=row["decision"],
    )


def acknowledgement_columns(
    execution_id: ExecutionId, actor: Actor, message: str, at: datetime
) -> tuple[Any, ...]:
    """An ``acknowledgements`` row as inserted: project, domain, name, actor, proof,
    message, acknowledged_at."""
    return (
        execution_id.project,
        execution_id.domain,
        execution_id.name,
        actor.identity,
        actor.proof,
        message,
        timestamp(at),
    )


def acknowledgement_from_row(row: Mapping[str, Any]) -> Acknowledgement:
    return Acknowledgement(
        id=int(row["id"]),
        execution_id=ExecutionId(row["project"], row["domain"], row["name"]),
        actor=row["actor"],
        proof=row["proof"],
        acknowledged_at=from_timestamp(row["acknowledged_at"]),
        message=row["message"],
    )


# -- deadlines ------------------------------------------------------------------------------


def deadline_columns(deadline: Deadline) -> tuple[Any, ...]:
    """A ``deadlines`` row: project, domain, name, spec, updated_at."""
    slower = deadline.slower_than
    slower_than = (
        None
        if slower is None
        else {
            "percentile": slower.percentile,
            "of_last": slower.of_last,
            "min_runs": slower.min_runs,
        }
    )
    spec = {
        "launch_plan": deadline.launch_plan,
        "task": deadline.task,
        "trigger": deadline.trigger,
        "max_queued": deadline.max_queued,
        "max_running": deadline.max_running,
        "schedule": deadline.schedule,
        "start_within": deadline.start_within,
        "slower_than": slower_than,
        "recipients": list(deadline.recipients),
        "resolve": deadline.resolve,
    }
    ident = deadline.id
    return (ident.project, ident.domain, ident.name, _dumps(spec), timestamp(deadline.updated_at))


def deadline_from_row(row: Mapping[str, Any]) -> Deadline:
    spec = orjson.loads(row["spec"])
    slower = spec.get("slower_than")
    return Deadline(
        id=DeadlineId(row["project"], row["domain"], row["name"]),
        recipients=tuple(spec["recipients"]),
        launch_plan=spec.get("launch_plan", ""),
        task=spec.get("task", ""),
        trigger=spec.get("trigger", ""),
        max_queued=spec.get("max_queued"),
        max_running=spec.get("max_running"),
        schedule=spec.get("schedule", ""),
        start_within=spec.get("start_within"),
        slower_than=SlowerThan(slower["percentile"], slower["of_last"], slower["min_runs"])
        if slower
        else None,
        resolve=bool(spec.get("resolve", True)),
        source="api",
        updated_at=from_timestamp(row["updated_at"]),
    )


def timer_columns(timer: Timer) -> tuple[Any, ...]:
    """A ``timers`` row as armed: key, kind, due_at, the deadline's project, domain and
    name, the execution's (empty for a schedule's), since, allowed, phase, schedule."""
    execution = timer.execution
    deadline = timer.deadline
    return (
        timer.key,
        timer.kind.value,
        timer.due_at,
        deadline.project,
        deadline.domain,
        deadline.name,
        execution.project if execution is not None else "",
        execution.domain if execution is not None else "",
        execution.name if execution is not None else "",
        timer.since,
        timer.allowed,
        timer.phase,
        timer.schedule,
    )


def timer_from_row(row: Mapping[str, Any]) -> Timer:
    execution = ExecutionId(row["project"], row["domain"], row["name"]) if row["name"] else None
    satisfied = row["satisfied_at"]
    return Timer(
        kind=TimerKind(row["kind"]),
        deadline=DeadlineId(row["deadline_project"], row["deadline_domain"], row["deadline_name"]),
        due_at=float(row["due_at"]),
        since=float(row["since"]),
        allowed=float(row["allowed"]),
        phase=int(row["phase"]),
        execution=execution,
        schedule=row["schedule"],
        satisfied_at=float(satisfied) if satisfied is not None else None,
        id=int(row["id"]),
    )


def alert_columns(alert: DeadlineAlert) -> tuple[Any, ...]:
    """A ``deadline_alerts`` row as inserted: the deadline's project, domain and name,
    the execution's, breach, phase, since, allowed, breached_at, recipients, resolve."""
    return (
        alert.deadline.project,
        alert.deadline.domain,
        alert.deadline.name,
        alert.execution.project,
        alert.execution.domain,
        alert.execution.name,
        alert.breach.value,
        alert.phase,
        timestamp(alert.since),
        alert.allowed,
        timestamp(alert.breached_at),
        _dumps(list(alert.recipients)),
        int(alert.resolve),
    )


def alert_from_row(row: Mapping[str, Any]) -> DeadlineAlert:
    ended_at = row["ended_at"]
    return DeadlineAlert(
        deadline=DeadlineId(row["deadline_project"], row["deadline_domain"], row["deadline_name"]),
        execution=ExecutionId(row["project"], row["domain"], row["name"]),
        breach=TimerKind(row["breach"]),
        phase=int(row["phase"]),
        since=from_timestamp(row["since"]),
        allowed=float(row["allowed"]),
        breached_at=from_timestamp(row["breached_at"]),
        recipients=tuple(orjson.loads(row["recipients"])),
        resolve=bool(row["resolve"]),
        ended_phase=row["ended_phase"],
        ended_at=from_timestamp(ended_at) if ended_at is not None else None,
        id=int(row["id"]),
    )


def deadline_delivery_columns(
    execution_id: ExecutionId,
    phase: int,
    launch_plan: EntityId | None,
    delivery: NewDelivery,
    reason: DeliveryReason,
    now: float,
) -> tuple[Any, ...]:
    """A ``deliveries`` row a deadline writes (``insert_deadline_delivery``): as
    :func:`delivery_columns` but for ``follows``, then its reason."""
    held = delivery.silence_id is not None
    return (
        delivery.idempotency_key,
        execution_id.project,
        execution_id.domain,
        execution_id.name,
        phase,
        delivery.notification_index,
        delivery.kind,
        delivery.channel,
        delivery.recipient,
        delivery.message.json_text,
        dump_entity(launch_plan),
        (DeliveryStatus.SILENCED if held else DeliveryStatus.PENDING).value,
        now,
        now,
        now,
        delivery.group_key,
        delivery.silence_id,
        reason.value,
    )
