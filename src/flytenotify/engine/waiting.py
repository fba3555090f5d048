"""Who hears that a Flyte 1 execution waits at a gate, and what they are told.

A gate (flytekit's ``approve()`` or ``wait_for_input()``) that FlyteAdmin
holds a pending signal for is recorded as a PAUSED event naming the signal
(:mod:`flytenotify.intake.gates`). The ``[waiting.NAME]`` rules whose
project, domain and launch plan match the execution say who hears of it;
each recipient once per gate, whichever rules name them (the idempotency key
holds the signal id and not the rule), so a repeat or a replica writes
nothing more. A Flyte 2 run's waiting conditions follow its own rules
(:mod:`flytenotify.engine.resolve_runs`).

Waiting messages are never folded into digests: each gate is its own question,
answered on its own.
"""

from __future__ import annotations

from flytenotify.config import Settings
from flytenotify.domain import Execution, ExecutionEvent
from flytenotify.engine.render import render_message, template_variables
from flytenotify.engine.render_runs import paused_variables
from flytenotify.engine.resolve import idempotency_key, media_for, route_or_unroutable
from flytenotify.engine.resolve_runs import recipient_kind
from flytenotify.store.base import NewDelivery

__all__ = ["WAITING_BODY", "WAITING_SUBJECT", "plan_waiting_deliveries", "waiting_recipients"]

WAITING_SUBJECT = (
    "Flyte execution {{ project }}/{{ domain }}/{{ name }} is waiting for {{ waits_for }}"
)
WAITING_BODY = (
    "Flyte execution {{ project }}/{{ domain }}/{{ name }} is waiting at gate {{ gate }}.\n"
    "\n"
    "Expects: {{ expects_text }}\n"
    "Launch plan: {{ launch_plan }}\n"
    "At: {{ occurred_at }}"
    "{{ console_link }}\n"
)


def waiting_recipients(execution: Execution, settings: Settings) -> tuple[str, ...]:
    """Everyone the ``[waiting.*]`` rules that match ``execution`` name, each once."""
    eid = execution.id
    found = [
        recipient
        for _, rule in settings.waiting_rules(eid.project, eid.domain)
        if rule.applies_to(eid, execution.launch_plan)
        for recipient in rule.recipients
    ]
    return tuple(dict.fromkeys(found))


def plan_waiting_deliveries(
    execution: Execution, event: ExecutionEvent, settings: Settings, dev_inbox: bool = False
) -> list[NewDelivery]:
    """One delivery per recipient of the matching rules, for a gate's PAUSED event."""
    if event.paused is None:
        return []
    kinds = [recipient_kind(recipient) for recipient in waiting_recipients(execution, settings)]
    routes = [
        (kind, route_or_unroutable(kind, recipient, settings, dev_inbox))
        for kind, recipient in kinds
    ]
    variables = template_variables(event, execution, settings.templates.console_url)
    variables.update(paused_variables(event))
    variables["waits_for"] = "approval" if event.paused.expects == "bool" else "input"
    message = render_message(
        WAITING_SUBJECT, WAITING_BODY, variables, media_for(where.channel for _, where in routes)
    )
    return [
        NewDelivery(
            idempotency_key=idempotency_key(event, 0, where.channel, where.recipient),
            notification_index=0,
            kind=kind,
            channel=where.channel,
            recipient=where.recipient,
            message=message,
        )
        for kind, where in routes
    ]
