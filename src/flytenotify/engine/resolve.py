"""Which notifications apply, and which transport carries each recipient.

FlyteAdmin's rules, kept exactly: the effective list is decided
once, when the execution is created, then frozen. A non-empty per-execution
list replaces the launch plan's (no merge); otherwise ``disable_all`` empties
it; an empty override list falls back to the launch plan's. On a terminal
event every notification whose ``phases`` holds that phase fires.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from flytenotify.config import Settings
from flytenotify.core.notification import Notification
from flytenotify.domain import Execution, ExecutionEvent
from flytenotify.engine.render import render
from flytenotify.errors import Problem
from flytenotify.store.base import NewDelivery

# A deliberately loose test: "something@something". Real validation is the
# SMTP server's job; this only decides whether an address can be emailed.
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+$")
WEBHOOK_PREFIX = "webhook:"

# Transport names: what the dispatcher keys its channels by.
EMAIL, SLACK, PAGERDUTY, WEBHOOK, INBOX = "email", "slack", "pagerduty", "webhook", "inbox"
UNROUTABLE = "unroutable"


def effective_notifications(
    launch_plan: Sequence[Notification],
    overrides: Sequence[Notification] = (),
    disable_all: bool = False,
) -> tuple[Notification, ...]:
    """The notifications an execution keeps for its whole life."""
    if overrides:
        return tuple(overrides)
    if disable_all:
        return ()
    return tuple(launch_plan)


def is_email(recipient: str) -> bool:
    return bool(_EMAIL_SHAPE.match(recipient))


@dataclass(frozen=True)
class Route:
    channel: str  # the transport
    recipient: str  # the address that transport understands


class RoutingError(ValueError):
    """A recipient no configured transport can reach, or one ``[allow]`` refuses."""


def route(kind: str, recipient: str, settings: Settings, dev_inbox: bool = False) -> Route:
    """The transport for one recipient of one notification kind, if ``[allow]`` permits.

    Every delivery is routed here when it is planned (and an unroutable one
    again at each attempt), so this is where the allow-lists are enforced.
    """
    where = _pick_transport(kind, recipient, settings, dev_inbox)
    refused = refusal(where.channel, where.recipient, settings)
    if refused is not None:
        raise RoutingError(refused)
    return where


def refusal(channel: str, recipient: str, settings: Settings) -> str | None:
    """Why ``[allow]`` forbids sending to ``recipient`` over ``channel``, or None.

    Entries match without regard to case; an email-shaped recipient also
    matches its domain, and Slack channels match with or without ``#``.
    """
    allowed = settings.allow.entries(channel)
    if allowed is None:
        return None
    wanted = recipient.strip().lower()
    candidates = {wanted}
    if is_email(wanted):
        candidates.add(wanted.rpartition("@")[2])
    if channel == SLACK:
        candidates |= {c.removeprefix("#") for c in candidates}
        allowed = [*allowed, *(entry.removeprefix("#") for entry in allowed)]
    if candidates.isdisjoint(allowed):
        return (
            f"{channel} recipient {recipient!r} is not allowed: it is not in allow.{channel}"
            " (no message is sent to it)"
        )
    return None


def _pick_transport(kind: str, recipient: str, settings: Settings, dev_inbox: bool) -> Route:
    """Pick the transport for one recipient of one notification kind.

    ``webhook:NAME`` goes to that configured webhook whatever the kind. Slack
    and PagerDuty use their native APIs when configured; otherwise an
    email-shaped recipient is emailed, exactly as FlyteAdmin does (Slack
    channel emails, PagerDuty email integrations). With ``dev_inbox`` a channel
    with no configuration delivers into the local inbox instead.
    """
    if recipient.startswith(WEBHOOK_PREFIX):
        name = recipient.removeprefix(WEBHOOK_PREFIX)
        if name in settings.webhooks:
            return Route(WEBHOOK, name)
        if dev_inbox:
            return Route(INBOX, recipient)
        raise RoutingError(f"no webhook named {name!r} is configured")
    if kind == "slack" and settings.slack is not None and settings.slack.enabled:
        return Route(SLACK, recipient)
    pagerduty = settings.pagerduty
    if kind == "pager_duty" and pagerduty is not None and recipient in pagerduty.routing_keys:
        return Route(PAGERDUTY, recipient)
    if dev_inbox and (settings.smtp is None or not is_email(recipient)):
        return Route(INBOX, recipient)
    if not is_email(recipient):
        raise RoutingError(
            f"{kind} recipient {recipient!r} is not an email address and no {kind} API"
            " configuration can reach it"
        )
    if settings.smtp is None:
        raise RoutingError(
            f"{kind} recipient {recipient!r} needs email, and no [smtp] is configured"
        )
    return Route(EMAIL, recipient)


def routing_problems(
    notifications: Sequence[Notification],
    settings: Settings,
    dev_inbox: bool = False,
    field: str = "notifications",
) -> list[Problem]:
    """Every recipient no configured transport can reach, named by its field.

    Found when a launch plan is registered and when the service starts, so a
    PagerDuty recipient without a routing key is a configuration error seen
    in daylight rather than a dead letter at 3 a.m.
    """
    problems: list[Problem] = []
    for i, notification in enumerate(notifications):
        kind, settings_of_channel = notification.channel, notification.channel_settings
        if kind is None or settings_of_channel is None:
            continue
        for j, recipient in enumerate(settings_of_channel.recipients_email):
            try:
                route(kind, recipient, settings, dev_inbox)
            except RoutingError as error:
                problems.append(Problem(f"{field}[{i}].{kind}.recipients_email[{j}]", str(error)))
    return problems


def idempotency_key(event: ExecutionEvent, index: int, channel: str, recipient: str) -> str:
    """Unique per (execution, phase, notification index, channel, recipient).

    Readable on purpose: it shows up in the audit trail, the email
    ``Message-ID`` basis and the webhook delivery id.
    """
    return f"{event.execution_id}/{event.phase}/{index}/{channel}/{recipient}"


def plan_deliveries(
    execution: Execution, event: ExecutionEvent, settings: Settings, dev_inbox: bool = False
) -> list[NewDelivery]:
    """Resolve and render every delivery a terminal event causes."""
    if not event.is_terminal:
        return []
    planned: list[NewDelivery] = []
    for index, notification in enumerate(execution.notifications):
        if event.phase not in notification.phases:
            continue
        settings_of_channel = notification.channel_settings
        kind = notification.channel
        if settings_of_channel is None or kind is None:
            continue
        message = render(notification, event, execution, settings.templates)
        # A recipient listed twice is one person: message them once.
        for recipient in dict.fromkeys(settings_of_channel.recipients_email):
            try:
                where = route(kind, recipient, settings, dev_inbox)
            except RoutingError:
                # Recorded anyway, and dead-lettered by the dispatcher with the
                # reason: visible and re-drivable once configuration is fixed.
                where = Route(UNROUTABLE, recipient)
            planned.append(
                NewDelivery(
                    idempotency_key=idempotency_key(event, index, where.channel, where.recipient),
                    notification_index=index,
                    kind=kind,
                    channel=where.channel,
                    recipient=where.recipient,
                    message=message,
                )
            )
    return planned
