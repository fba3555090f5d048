"""Recoveries: "nightly_etl succeeded again after 3 failures", sent where the failure went.

When an execution of a launch plan (a Flyte 2 run of a task) succeeds after
one or more failures (FAILED, TIMED_OUT, ABORTED) of it since its last
success, and one of them notified somebody, the last that did is followed up:
one message to each destination it was delivered to, in its conversation (a
reply in its Slack or Mattermost thread with the first message marked
recovered, its PagerDuty incident resolved, an email In-Reply-To it, a Teams
card or webhook body naming it). It is a delivery like any other (retries,
dead letters), enqueued with the success's event.

Once per recovery: its idempotency key is the success's, so a replay of that
event writes nothing, and the next success finds no failure before it.
"""

from __future__ import annotations

from flytenotify.config import Settings
from flytenotify.domain import Delivery, Execution, ExecutionEvent, RenderedMessage
from flytenotify.engine.render import render_message, template_variables
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.store.base import FailureStreak, NewDelivery

# How many of a launch plan's latest ended executions are looked at for its
# failures since its last success: a longer streak is said as this many.
LOOK_BACK = 100

# Channels whose messages cannot be followed up: a Flyte 2 user's own HTTP
# request says nothing flytenotify could add to.
_NOT_FOLLOWED = frozenset({"inline_webhook"})

SUBJECT = "{{ recovery.plan }} succeeded again after {{ recovery.failures_text }}"
BODY = (
    "{{ recovery.plan }} succeeded again after {{ recovery.failures_text }}: execution"
    " {{ execution }} succeeded; the last failure was {{ recovery.last_failure }}"
    " ({{ recovery.last_failure_phase }}).{{ console_link }}"
)


def plan_of(execution: Execution) -> str | None:
    """The launch plan (a Flyte 2 run's task) whose streak ``execution`` is part of,
    as the ledger keys it (``project/domain/name``, any version); None when unknown."""
    plan = execution.launch_plan
    return f"{plan.project}/{plan.domain}/{plan.name}" if plan is not None else None


def recovery_applies(execution: Execution, settings: Settings) -> bool:
    """Whether a success of ``execution`` may send recovery messages: its launch
    plan (task) is known, and ``[recovery]`` is on and does not exclude it.

    The one place that decides it: a switch of its own elsewhere (a Flyte 2 run's
    named rule, ``execution.rules``; a deadline's) is one more condition here.
    """
    plan = execution.launch_plan
    if plan is None:
        return False
    recovery = settings.recovery
    return recovery.enabled and not recovery.excludes(plan.project, plan.domain, plan.name)


def is_success(event: ExecutionEvent) -> bool:
    """Whether ``event`` ends its execution well: the end of a streak of failures."""
    return event.phase == WorkflowExecutionPhase.SUCCEEDED


def plan_recoveries(
    execution: Execution, event: ExecutionEvent, streak: FailureStreak, settings: Settings
) -> list[NewDelivery]:
    """One recovery message per destination the streak's last notifying failure went to."""
    planned: dict[tuple[str, str], NewDelivery] = {}
    for failed in streak.deliveries:
        where = (failed.channel, failed.recipient)
        if failed.channel in _NOT_FOLLOWED or where in planned:
            continue
        planned[where] = NewDelivery(
            # The success's, not the failure's: a later success is a recovery of its own.
            idempotency_key=(
                f"{event.execution_id}/{event.phase}/recovery/{failed.channel}/{failed.recipient}"
            ),
            notification_index=failed.notification_index,
            kind=failed.kind,
            channel=failed.channel,
            recipient=failed.recipient,
            message=recovery_message(execution, event, streak, failed, settings),
            follows=str(streak.last_failure),
        )
    return list(planned.values())


def recovery_message(
    execution: Execution,
    event: ExecutionEvent,
    streak: FailureStreak,
    failed: Delivery,
    settings: Settings,
) -> RenderedMessage:
    """The recovery's subject and body in every form, to the failure's own envelope
    (an inline email's To, Cc and Bcc)."""
    variables = template_variables(event, execution, settings.templates.console_url)
    plan = execution.launch_plan
    count = streak.failures
    variables.update(
        {
            "recovery.plan": plan.name if plan is not None else "",
            "recovery.failures": str(count),
            "recovery.failures_text": f"{count} failure{'s' if count != 1 else ''}",
            "recovery.last_failure": str(streak.last_failure),
            "recovery.last_failure_phase": phase_text(failed.phase),
        }
    )
    message = render_message(SUBJECT, BODY, variables)
    return RenderedMessage(
        subject=message.subject,
        text=message.text,
        html=message.html,
        slack_text=message.slack_text,
        variables=message.variables,
        envelope=failed.message.envelope,
    )


def phase_text(phase: int) -> str:
    return WorkflowExecutionPhase.enum_to_string(phase).lower().replace("_", " ")
