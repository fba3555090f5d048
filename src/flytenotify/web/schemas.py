"""The JSON form of what the ledger holds: one shape for the HTTP API, the CLI and the console."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flytenotify.channels import registry
from flytenotify.channels._url_policy import display_url
from flytenotify.domain import (
    Attempt,
    Delivery,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    NamedRule,
    RunRule,
    phase_name,
)
from flytenotify.intake.source import SourceStatus
from flytenotify.store.base import EventOutcome, InboxMessage

# The most rows one page of a list holds.
MAX_LIMIT = 1000
# A message id is "digest:<uuid>" or "single:<idempotency key>"; keys are bounded
# by the identifier limits, so anything longer names no message.
MAX_MESSAGE_ID = 4096
MESSAGE_KINDS = ("digest:", "single:")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "execution": str(delivery.execution_id),
        "phase": phase_name(delivery.phase),
        "channel": delivery.channel,
        "kind": delivery.kind,
        "recipient": delivery.recipient,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_reply": delivery.last_reply,
        "created_at": _iso(delivery.created_at),
        "next_attempt_at": _iso(delivery.next_attempt_at),
        # The message that carried it (a digest carries many) and how many it named.
        "group_key": delivery.group_key,
        "message_id": delivery.message_id or None,
        "message_size": delivery.message_size or None,
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": _iso(attempt.started_at),
        "finished_at": _iso(attempt.finished_at),
        "outcome": attempt.outcome,
        "reply": attempt.reply,
    }


def execution_json(
    execution: Execution,
    events: list[tuple[ExecutionEvent, str]],
    deliveries: list[Delivery],
) -> dict[str, Any]:
    """An execution, where its notifications came from, its events and deliveries."""
    return {
        "id": id_json(execution.id),
        "launch_plan": entity_json(execution.launch_plan),
        "workflow": entity_json(execution.workflow),
        "created_at": _iso(execution.created_at),
        "notifications_source": execution.source.value,
        "lookup_error": execution.lookup_error or None,
        "notifications": [n.to_dict() for n in execution.notifications],
        "rules": [rule_json(rule) for rule in execution.rules],
        "events": [_event_json(execution, event, outcome) for event, outcome in events],
        "deliveries": [delivery_json(d) for d in deliveries],
    }


def rule_json(rule: RunRule) -> dict[str, Any]:
    """A Flyte 2 run's rule as frozen with it. A webhook's URL and header values are
    credentials as often as not (Slack's and Teams' URLs are): shown without them."""
    shown: dict[str, Any] = {
        "phases": sorted(phase_name(phase) for phase in rule.phases),
        "name": rule.name or None,
        "recipients": list(rule.recipients),
        "problem": rule.problem or None,
        "email": None,
        "webhook": None,
    }
    if rule.email is not None:
        envelope = rule.email.envelope.to_json()
        shown["email"] = {**envelope, "subject": rule.email.subject}
    if rule.webhook is not None:
        shown["webhook"] = {
            "method": rule.webhook.method,
            "url": display_url(rule.webhook.url),
            "headers": sorted(name for name, _ in rule.webhook.headers),
        }
    return shown


def named_rule_json(entry: NamedRule) -> dict[str, Any]:
    """A named rule or named delivery: what a name in Flyte 2 users' code means."""
    return {
        "kind": entry.kind.value,
        "name": entry.name,
        "project": entry.project,
        "domain": entry.domain,
        "phases": sorted(phase_name(phase) for phase in entry.phases),
        "recipients": list(entry.recipients),
        "source": entry.source,
        "updated_at": _iso(entry.updated_at),
    }


def _event_json(execution: Execution, event: ExecutionEvent, outcome: str) -> dict[str, Any]:
    error = event.error
    return {
        "phase": event.phase_name,
        "occurred_at": _iso(event.occurred_at),
        "outcome": outcome,
        # Why a terminal event sent nothing (no_notifications), else null.
        "reason": (
            execution.no_notifications_reason(event.phase)
            if outcome == EventOutcome.NO_NOTIFICATIONS
            else None
        ),
        "error": (
            {"message": error.message, "code": error.code, "kind": error.kind.value}
            if error is not None
            else None
        ),
    }


def inbox_json(message: InboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "delivery_id": message.delivery_id,
        "kind": message.kind,
        # The channel whose form the message is in: what a reader needs
        # (an Email notification to webhook:ops is a webhook's JSON).
        "channel": registry.standing_in_for(message.kind, message.recipient).name,
        "recipient": message.recipient,
        "subject": message.subject,
        "body": message.body,
        "received_at": datetime.fromtimestamp(message.received_at, UTC).isoformat(),
    }


def source_json(status: SourceStatus) -> dict[str, Any]:
    def when(stamp: float | None) -> str | None:
        return _iso(datetime.fromtimestamp(stamp, UTC)) if stamp is not None else None

    return {
        "state": status.state,
        "detail": status.detail,
        "backlog": status.backlog,
        "last_error": status.last_error or None,
        "last_error_at": when(status.last_error_at),
        "last_message_at": when(status.last_message_at),
    }


def id_json(execution_id: ExecutionId) -> dict[str, str]:
    return {
        "project": execution_id.project,
        "domain": execution_id.domain,
        "name": execution_id.name,
    }


def entity_json(entity: EntityId | None) -> dict[str, str] | None:
    if entity is None:
        return None
    return {
        "project": entity.project,
        "domain": entity.domain,
        "name": entity.name,
        "version": entity.version,
    }


def plan_json(plan_id: EntityId, notifications: Any) -> dict[str, Any]:
    return {"id": entity_json(plan_id), "notifications": [n.to_dict() for n in notifications]}
