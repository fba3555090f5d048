"""Flyte 2 runs as flytenotify reads them: phases, errors, and the rules of a RunSpec.

Pure functions over flyteidl2's messages, so the watch (``intake/flyte2.py``)
only does I/O. A run's rules are read once, when flytenotify first sees the
run, and frozen with it: what a ``NamedRule`` or ``NamedDelivery`` meant then
is what it means for that run, as FlyteAdmin freezes a Flyte 1 execution's
notifications at creation.

Where the SDK (``flyte.notify``) and the proto leave room, this module checks
each part and keeps what it can, with a reason for what it cannot:

- ``notification_rule_name`` and ``notification_rules`` are a oneof: a named
  rule, or a list of inline rules.
- An inline rule's ``on_phases`` may name the four terminal phases and
  PAUSED; any other phase (RECOVERED, RUNNING...) can never be selected and
  is left out, said in the rule's ``problem`` if nothing is left.
- A ``DeliveryConfigTemplate`` may carry both an ``email`` and a ``webhook``
  (they are not a oneof): each becomes a rule of its own.
- The SDK writes the literal ``"No HTML body"`` as ``html_template`` when the
  user gave none: that is no HTML part, not a message saying so.
- A provider email template (``template_id``) names a template in a commercial
  provider's account: flytenotify cannot render it, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flyteidl2.common import phase_pb2
from flyteidl2.notification import definition_pb2
from flyteidl2.task import run_pb2
from flyteidl2.workflow import run_definition_pb2

from flytenotify.domain import (
    PAUSED,
    RECOVERED,
    EmailEnvelope,
    ErrorKind,
    ExecutionError,
    InlineEmail,
    InlineWebhook,
    Mailbox,
    NamedKind,
    NamedRule,
    RunRule,
)
from flytenotify.models.core.execution import WorkflowExecutionPhase as P

# ActionPhase -> the ledger's phase (Flyte 1's numbers where Flyte 1 has the phase).
_PHASES: dict[int, int] = {
    phase_pb2.ACTION_PHASE_QUEUED: P.QUEUED,
    phase_pb2.ACTION_PHASE_WAITING_FOR_RESOURCES: P.QUEUED,
    phase_pb2.ACTION_PHASE_INITIALIZING: P.QUEUED,
    phase_pb2.ACTION_PHASE_RUNNING: P.RUNNING,
    phase_pb2.ACTION_PHASE_SUCCEEDED: P.SUCCEEDED,
    phase_pb2.ACTION_PHASE_FAILED: P.FAILED,
    phase_pb2.ACTION_PHASE_ABORTED: P.ABORTED,
    phase_pb2.ACTION_PHASE_TIMED_OUT: P.TIMED_OUT,
    phase_pb2.ACTION_PHASE_PAUSED: PAUSED,
    phase_pb2.ACTION_PHASE_RECOVERED: RECOVERED,
}

# What a rule's on_phases may select.
_SELECTABLE = frozenset({P.SUCCEEDED, P.FAILED, P.ABORTED, P.TIMED_OUT, PAUSED})

# The html_template the flyte SDK writes when the user gave no HTML body.
SDK_NO_HTML = "No HTML body"

_METHODS = {
    value.number: value.name.removeprefix("HTTP_METHOD_")
    for value in definition_pb2.HttpMethod.DESCRIPTOR.values
    if value.number != definition_pb2.HTTP_METHOD_UNSPECIFIED
}

_ERROR_KINDS = {
    run_definition_pb2.ErrorInfo.KIND_USER: ErrorKind.USER,
    run_definition_pb2.ErrorInfo.KIND_SYSTEM: ErrorKind.SYSTEM,
}


def ledger_phase(action_phase: int) -> int | None:
    """The ledger's phase for an ``ActionPhase`` (None for UNSPECIFIED or unknown)."""
    return _PHASES.get(action_phase)


def trigger_name(metadata: run_definition_pb2.ActionMetadata) -> str:
    """The name of the trigger that started a run ("" when none did): ``trigger_name``,
    else the name in ``trigger_id``."""
    return str(metadata.trigger_name or metadata.trigger_id.name.name)


def action_phase_name(action_phase: int) -> str:
    """``FAILED`` for ``ACTION_PHASE_FAILED``; the number for an unknown value."""
    try:
        name: str = phase_pb2.ActionPhase.Name(action_phase)
    except ValueError:
        return str(action_phase)
    return name.removeprefix("ACTION_PHASE_")


# -- errors ------------------------------------------------------------------------------


def run_error(details: run_definition_pb2.ActionDetails) -> ExecutionError | None:
    """Why the run's root action ended badly: its error, its abort, else its last attempt's.

    ``error_info`` and ``abort_info`` are alternatives; ``error_info`` is filled
    on the action once its last attempt has caught up, so a run seen just as it
    failed may carry its error only on that attempt.
    """
    result = details.WhichOneof("result")
    if result == "error_info":
        return _error(details.error_info)
    if result == "abort_info":
        return _abort(details.abort_info)
    for attempt in reversed(details.attempts):
        if attempt.HasField("error_info"):
            return _error(attempt.error_info)
    return None


def _error(info: run_definition_pb2.ErrorInfo) -> ExecutionError:
    return ExecutionError(
        message=info.message, code=info.code, kind=_ERROR_KINDS.get(info.kind, ErrorKind.UNKNOWN)
    )


def _abort(info: run_definition_pb2.AbortInfo) -> ExecutionError:
    who = _identity(info.aborted_by)
    reason = info.reason or "aborted"
    return ExecutionError(message=f"{reason} (aborted by {who})" if who else reason, code="Aborted")


def _identity(identity: object) -> str:
    """A person's or an application's name from an ``EnrichedIdentity``, if any."""
    user = getattr(identity, "user", None)
    if user is not None and user.ByteSize():
        spec = user.spec
        return str(spec.email or " ".join(p for p in (spec.first_name, spec.last_name) if p))
    application = getattr(identity, "application", None)
    if application is not None and application.ByteSize():
        return str(application.id.subject or application.spec.name)
    return ""


# -- rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadRules:
    """A run's rules, and why it has none when it has none (shown to operators)."""

    rules: tuple[RunRule, ...]
    why_none: str = ""


def read_rules(
    spec: run_pb2.RunSpec, project: str, domain: str, named: Sequence[NamedRule]
) -> ReadRules:
    """The rules of ``spec`` for a run of ``project``/``domain``, names resolved in ``named``."""
    which = spec.WhichOneof("notification_settings")
    if which == "notification_rule_name":
        return _named_rule(spec.notification_rule_name, project, domain, named)
    if which == "notification_rules":
        rules = [
            rule
            for inline in spec.notification_rules.rules
            for rule in _inline(inline, project, domain, named)
        ]
        return ReadRules(tuple(rules), "" if rules else "its list of notification rules is empty")
    return ReadRules((), "the run declares no notifications")


def pick_named(
    named: Iterable[NamedRule], kind: NamedKind, name: str, project: str, domain: str
) -> NamedRule | None:
    """The entry ``name`` of ``kind`` that applies to ``project``/``domain``, the most
    specific first; a configuration file's entry before the API's of the same scope."""
    found = [
        entry
        for entry in named
        if entry.kind is kind and entry.name == name and entry.applies_to(project, domain)
    ]
    found.sort(key=lambda entry: (entry.specificity, entry.source == "config"), reverse=True)
    return found[0] if found else None


def _named_rule(name: str, project: str, domain: str, named: Sequence[NamedRule]) -> ReadRules:
    entry = pick_named(named, NamedKind.RULE, name, project, domain)
    if entry is None:
        return ReadRules(
            (),
            f"it names the rule {name!r}, and no named rule {name!r} applies to"
            f" {project}/{domain} (define [flyte2.rules.{name}]"
            f" or PUT /api/v1/flyte2/rules/{name})",
        )
    return ReadRules((RunRule(entry.phases, name=name, recipients=entry.recipients),))


def _inline(
    rule: run_pb2.InlineRule, project: str, domain: str, named: Sequence[NamedRule]
) -> list[RunRule]:
    phases, left_out = _phases(rule.on_phases)
    problem = "" if phases else _no_phase(left_out)
    delivery = rule.WhichOneof("delivery")
    if delivery == "delivery_config_name":
        return [_named_delivery(rule.delivery_config_name, phases, problem, project, domain, named)]
    if delivery == "delivery_template":
        template = rule.delivery_template
        found: list[RunRule] = []
        if template.HasField("email"):
            found.append(_email(template.email, phases, problem))
        if template.HasField("webhook"):
            found.append(RunRule(phases, webhook=_webhook(template.webhook), problem=problem))
        if found:
            return found
    return [RunRule(phases, problem=problem or "the rule names no delivery (no template, no name)")]


def _phases(on_phases: Iterable[int]) -> tuple[frozenset[int], list[str]]:
    phases: set[int] = set()
    left_out: list[str] = []
    for action_phase in on_phases:
        phase = _PHASES.get(action_phase)
        if phase in _SELECTABLE:
            phases.add(phase)
        else:
            left_out.append(action_phase_name(action_phase))
    return frozenset(phases), left_out


def _no_phase(left_out: list[str]) -> str:
    named = ", ".join(left_out) if left_out else "none"
    return (
        f"the rule selects no phase a notification can follow ({named}); rules may name"
        " SUCCEEDED, FAILED, ABORTED, TIMED_OUT or PAUSED"
    )


def _named_delivery(
    name: str,
    phases: frozenset[int],
    problem: str,
    project: str,
    domain: str,
    named: Sequence[NamedRule],
) -> RunRule:
    entry = pick_named(named, NamedKind.DELIVERY, name, project, domain)
    if entry is None:
        problem = problem or (
            f"no named delivery {name!r} applies to {project}/{domain} (define"
            f" [flyte2.deliveries.{name}] or PUT /api/v1/flyte2/deliveries/{name})"
        )
        return RunRule(phases, name=name, problem=problem)
    return RunRule(phases, name=name, recipients=entry.recipients, problem=problem)


def _email(
    template: definition_pb2.EmailDeliveryTemplate, phases: frozenset[int], problem: str
) -> RunRule:
    envelope = EmailEnvelope(
        to=_mailboxes(template.to), cc=_mailboxes(template.cc), bcc=_mailboxes(template.bcc)
    )
    if not envelope.to and not envelope.cc and not envelope.bcc:
        problem = problem or "the email rule names no recipient (to, cc and bcc are empty)"
    content = template.WhichOneof("content")
    if content == "provider_template":
        problem = problem or (
            f"the email names a provider template ({template.provider_template.template_id!r}),"
            " which only the provider's own service can render; write the subject and body"
            " in the rule instead"
        )
        return RunRule(phases, email=InlineEmail(envelope, "", ""), problem=problem)
    inline = template.inline
    html = "" if inline.html_template in ("", SDK_NO_HTML) else inline.html_template
    email = InlineEmail(envelope, subject=inline.subject, text=inline.text_template, html=html)
    if content is None:
        problem = problem or "the email rule has no content (no subject or body template)"
    return RunRule(phases, email=email, problem=problem)


def _mailboxes(recipients: Iterable[definition_pb2.EmailRecipient]) -> tuple[Mailbox, ...]:
    return tuple(Mailbox(r.address.strip(), r.name) for r in recipients if r.address.strip())


def _webhook(template: definition_pb2.WebhookDeliveryTemplate) -> InlineWebhook:
    return InlineWebhook(
        url=template.url,
        # UNSPECIFIED is what a client that never set the method sends: POST, as the SDK's default.
        method=_METHODS.get(template.method, "POST"),
        headers=tuple(sorted(template.headers.items())),
        body=template.body_template,
    )
