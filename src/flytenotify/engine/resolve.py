"""Which notifications apply, and which transport carries each recipient.

FlyteAdmin's rules, kept exactly: the effective list is decided
once, when the execution is created, then frozen. A non-empty per-execution
list replaces the launch plan's (no merge); otherwise ``disable_all`` empties
it; an empty override list falls back to the launch plan's. On a terminal
event every notification whose ``phases`` holds that phase fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flytenotify.channels import registry
from flytenotify.channels.base import Unreachable
from flytenotify.channels.registry import INBOX, UNROUTABLE
from flytenotify.config import Settings
from flytenotify.core.notification import Notification
from flytenotify.domain import Execution, ExecutionEvent
from flytenotify.engine.render import ALL_MEDIA, render
from flytenotify.errors import Problem
from flytenotify.store.base import NewDelivery

__all__ = ["INBOX", "UNROUTABLE", "Route", "RoutingError", "route", "routing_problems"]


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

    Entries match without regard to case; each channel says which forms of a
    recipient an entry may name (an address's domain; a Slack channel with or
    without ``#``).
    """
    allowed = settings.allow.entries(channel)
    spec = registry.get(channel)
    if allowed is None or spec is None:
        return None
    if spec.allow_forms(recipient).isdisjoint(allowed):
        return (
            f"{channel} recipient {recipient!r} is not allowed: it is not in allow.{channel}"
            " (no message is sent to it)"
        )
    return None


def _pick_transport(kind: str, recipient: str, settings: Settings, dev_inbox: bool) -> Route:
    """Offer one recipient of one notification kind to each channel in turn.

    ``webhook:NAME`` (and every other prefixed form) goes to that configured
    target whatever the kind. Slack and PagerDuty use their native APIs when
    configured; otherwise an email-shaped recipient is emailed, exactly as
    FlyteAdmin does (Slack channel emails, PagerDuty email integrations).

    With ``dev_inbox`` the local inbox stands in for the channel a recipient
    needs when that channel is not configured at all. It never stands in for a
    mistake: a malformed recipient, or one its configured channel cannot reach
    (``webhook:nope`` beside ``[webhooks.ops]``), is refused in every mode.
    """
    malformed = registry.malformed(recipient)
    if malformed is not None:
        raise RoutingError(f"{kind} recipient {recipient!r} is not one address: {malformed}")
    for spec in registry.routing_order():
        config = settings.channel(spec.name)
        try:
            taken = spec.takes(kind, recipient, config)
        except Unreachable as why:
            if dev_inbox and not spec.is_configured(config):
                return Route(INBOX, recipient)
            raise RoutingError(str(why)) from None
        if taken is not None:
            return Route(spec.name, taken)
    if dev_inbox and not _native_channel_configured(kind, settings):
        return Route(INBOX, recipient)
    raise RoutingError(
        f"{kind} recipient {recipient!r} is not an email address and no {kind} API"
        " configuration can reach it"
    )


def _native_channel_configured(kind: str, settings: Settings) -> bool:
    """Whether a channel that carries ``kind`` natively (Slack for ``slack``) is configured."""
    return any(kind in spec.kinds and settings.configured(spec.name) for spec in registry.specs())


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
    ``Message-ID`` basis and the webhook delivery id. A paused action's
    deliveries name the action: a run may pause more than once.
    """
    phase = f"{event.phase}:{event.paused.name}" if event.paused is not None else event.phase
    return f"{event.execution_id}/{phase}/{index}/{channel}/{recipient}"


def plan_deliveries(
    execution: Execution, event: ExecutionEvent, settings: Settings, dev_inbox: bool = False
) -> list[NewDelivery]:
    """Resolve and render every delivery a terminal event causes (a Flyte 2 run's
    rules: :func:`flytenotify.engine.resolve_runs.plan_run_deliveries`)."""
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
        # A recipient listed twice is one person: message them once.
        routes = [
            route_or_unroutable(kind, recipient, settings, dev_inbox)
            for recipient in dict.fromkeys(settings_of_channel.recipients_email)
        ]
        media = media_for(where.channel for where in routes)
        message = render(notification, event, execution, settings.templates, media)
        for where in routes:
            planned.append(
                NewDelivery(
                    idempotency_key=idempotency_key(event, index, where.channel, where.recipient),
                    notification_index=index,
                    kind=kind,
                    channel=where.channel,
                    recipient=where.recipient,
                    message=message,
                    group_key=group_key(where, execution, event, settings),
                )
            )
    return planned


def route_or_unroutable(kind: str, recipient: str, settings: Settings, dev_inbox: bool) -> Route:
    try:
        return route(kind, recipient, settings, dev_inbox)
    except RoutingError:
        # Recorded anyway, and dead-lettered by the dispatcher with the reason:
        # visible and re-drivable once configuration is fixed.
        return Route(UNROUTABLE, recipient)


def media_for(channels: Iterable[str]) -> frozenset[str]:
    """The message forms the channels send. Every form for the dev inbox (it shows
    the form of the channel it stands for) and for an unroutable recipient (it is
    routed again when re-driven, perhaps to email)."""
    needed: frozenset[str] = frozenset()
    for channel in channels:
        spec = registry.get(channel)
        if spec is None:
            return ALL_MEDIA
        needed |= spec.media
    return needed


def group_key(
    where: Route, execution: Execution, event: ExecutionEvent, settings: Settings
) -> str | None:
    """The group a delivery joins: its destination and the configured key parts.

    None (never grouped) when grouping is off for its channel, or the channel
    has no digest form. The launch plan counts without its version: a storm
    does not stop at a new version.
    """
    parts = settings.grouping.key_parts(where.channel)
    if not parts or not _digests(where.channel, settings):
        return None
    plan = execution.launch_plan or event.launch_plan
    error = event.error
    values = {
        "launch_plan": f"{plan.project}/{plan.domain}/{plan.name}" if plan else "",
        "phase": event.phase_name,
        "project": event.execution_id.project,
        "domain": event.execution_id.domain,
        "error_kind": error.kind.value if error is not None else "",
    }
    named = "|".join(f"{part}={values[part]}" for part in parts)
    return f"{where.channel}|{where.recipient}|{named}"


def _digests(channel: str, settings: Settings) -> bool:
    """Whether ``channel``, as configured, folds deliveries into digests."""
    if channel == INBOX:
        return True  # shown in the digest form of the channel it stands for
    spec = registry.get(channel)
    return spec is not None and spec.digests is not None and spec.digests(settings.channel(channel))
