"""Which deliveries a Flyte 2 run's rules cause, and over which transport.

A run's rules were frozen when flytenotify first saw it (:mod:`flytenotify.intake.flyte2_runs`).
An event fires every rule whose phases hold its phase: the four terminal ones,
or PAUSED for an action waiting for input. One delivery per (run, phase, rule,
recipient), whatever the stream replays: the ledger's idempotency keys make it so.

- A named rule's or named delivery's recipients are routed as Flyte 1's are,
  their kind read from their syntax (``#channel`` is Slack's, ``pagerduty:KEY``
  PagerDuty's routing key, ``webhook:``/``teams:``/``mattermost:`` a configured
  target, an address email's), rendered from flytenotify's own templates.
- An inline email is one message to its to + cc + bcc through the SMTP relay
  (the dev inbox when no relay is configured and the service runs with it).
- An inline webhook is one request through the ``inline_webhook`` channel,
  which sends it only where ``[allow] inline_webhook_urls`` permits.
- A rule with a problem (a named delivery nobody defined) is recorded as one
  delivery that is dead-lettered with the problem: visible, never silent.

Inline rules are never folded into digests: their authors wrote the message
(and, for webhooks, the body an endpoint parses).
"""

from __future__ import annotations

from flytenotify.channels import inline_webhook
from flytenotify.channels._url_policy import display_url
from flytenotify.channels.registry import INBOX, UNROUTABLE, recipient_kind
from flytenotify.config import Settings
from flytenotify.domain import EmailEnvelope, Execution, ExecutionEvent, RenderedMessage, RunRule
from flytenotify.engine import render_runs
from flytenotify.engine.resolve import (
    group_key,
    idempotency_key,
    media_for,
    route_or_unroutable,
)
from flytenotify.store.base import NewDelivery

__all__ = ["INLINE_WEBHOOK", "plan_run_deliveries", "recipient_kind"]

INLINE_WEBHOOK = inline_webhook.CHANNEL.name  # the channel of webhooks written in users' code
EMAIL = "email"


def plan_run_deliveries(
    execution: Execution, event: ExecutionEvent, settings: Settings, dev_inbox: bool = False
) -> list[NewDelivery]:
    """Resolve and render every delivery ``event`` causes for a Flyte 2 run."""
    planned: list[NewDelivery] = []
    for index, rule in enumerate(execution.rules):
        if event.phase not in rule.phases:
            continue
        if rule.problem:
            planned.append(_refused(rule, index, event, execution, settings))
        elif rule.email is not None:
            planned.append(_inline_email(rule, index, event, execution, settings, dev_inbox))
        elif rule.webhook is not None:
            planned.append(_inline_webhook(rule, index, event, execution, settings))
        else:
            planned += _named(rule, index, event, execution, settings, dev_inbox)
    return planned


def _named(
    rule: RunRule,
    index: int,
    event: ExecutionEvent,
    execution: Execution,
    settings: Settings,
    dev_inbox: bool,
) -> list[NewDelivery]:
    kinds = [recipient_kind(recipient) for recipient in dict.fromkeys(rule.recipients)]
    routes = [
        (kind, route_or_unroutable(kind, recipient, settings, dev_inbox))
        for kind, recipient in kinds
    ]
    media = media_for(where.channel for _, where in routes)
    message = render_runs.render_named(event, execution, settings, media)
    return [
        NewDelivery(
            idempotency_key=idempotency_key(event, index, where.channel, where.recipient),
            notification_index=index,
            kind=kind,
            channel=where.channel,
            recipient=where.recipient,
            message=message,
            group_key=group_key(where, execution, event, settings),
        )
        for kind, where in routes
    ]


def _inline_email(
    rule: RunRule,
    index: int,
    event: ExecutionEvent,
    execution: Execution,
    settings: Settings,
    dev_inbox: bool,
) -> NewDelivery:
    assert rule.email is not None
    message = render_runs.render_email(rule.email, event, execution, settings)
    channel = INBOX if dev_inbox and not settings.configured(EMAIL) else EMAIL
    # The key names no address: a Message-ID derived from it reveals no Bcc.
    return NewDelivery(
        idempotency_key=idempotency_key(event, index, channel, "inline"),
        notification_index=index,
        kind=EMAIL,
        channel=channel,
        recipient=_shown_recipients(rule.email.envelope),
        message=message,
    )


def _shown_recipients(envelope: EmailEnvelope) -> str:
    """What the ledger shows as an inline email's recipient: its To (else Cc) addresses."""
    shown = envelope.to or envelope.cc
    if shown:
        return ", ".join(box.address for box in shown)
    return f"(bcc only: {len(envelope.bcc)} address{'es' if len(envelope.bcc) != 1 else ''})"


def _inline_webhook(
    rule: RunRule, index: int, event: ExecutionEvent, execution: Execution, settings: Settings
) -> NewDelivery:
    assert rule.webhook is not None
    message = render_runs.render_webhook(rule.webhook, event, execution, settings)
    shown = message.request.url if message.request is not None else rule.webhook.url
    return NewDelivery(
        idempotency_key=idempotency_key(event, index, INLINE_WEBHOOK, "inline"),
        notification_index=index,
        kind="webhook",
        channel=INLINE_WEBHOOK,
        recipient=display_url(shown),
        message=message,
    )


def _refused(
    rule: RunRule, index: int, event: ExecutionEvent, execution: Execution, settings: Settings
) -> NewDelivery:
    """The one delivery a rule that cannot deliver leaves: dead-lettered with its problem."""
    message = render_runs.render_named(event, execution, settings, frozenset())
    return NewDelivery(
        idempotency_key=idempotency_key(event, index, UNROUTABLE, rule.kind),
        notification_index=index,
        kind=rule.kind,
        channel=UNROUTABLE,
        recipient=rule.kind,
        message=RenderedMessage(
            subject=message.subject,
            text=message.text,
            html="",
            slack_text="",
            variables=message.variables,
            problem=rule.problem,
        ),
    )
