"""The nouns every stage shares: executions, events, deliveries and outcomes.

Plain frozen dataclasses, free of I/O, so that ingest, resolve, render, the
ledger, the dispatcher and the channels can pass them around without knowing
about each other.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from flytenotify.core.notification import Notification
from flytenotify.models.core.execution import TERMINAL_PHASES, WorkflowExecutionPhase

# Phases beyond Flyte 1's workflow phases (0-9), kept in the same ledger column.
# Flyte 2's terminal phases map onto Flyte 1's (SUCCEEDED, FAILED, ABORTED,
# TIMED_OUT); these two have no Flyte 1 counterpart.
PAUSED = 100  # an action waiting for a person's input (Flyte 2's ACTION_PHASE_PAUSED)
RECOVERED = 101  # Flyte 2's ACTION_PHASE_RECOVERED: terminal, and no rule can select it

_EXTRA_NAMES = {PAUSED: "PAUSED", RECOVERED: "RECOVERED"}

# The phases a Flyte 2 rule may select, by name: the terminal ones the SDK
# allows, and PAUSED, which only named rules can ask for.
RULE_PHASES: dict[str, int] = {
    "SUCCEEDED": WorkflowExecutionPhase.SUCCEEDED,
    "FAILED": WorkflowExecutionPhase.FAILED,
    "ABORTED": WorkflowExecutionPhase.ABORTED,
    "TIMED_OUT": WorkflowExecutionPhase.TIMED_OUT,
    "PAUSED": PAUSED,
}

# Every phase after which an execution never changes again.
ENDED_PHASES: frozenset[int] = TERMINAL_PHASES | {RECOVERED}
# The ended phases that are a failure: a streak of them ends with a success.
FAILURE_PHASES: frozenset[int] = frozenset(
    {
        WorkflowExecutionPhase.FAILED,
        WorkflowExecutionPhase.TIMED_OUT,
        WorkflowExecutionPhase.ABORTED,
    }
)


def phase_name(phase: int) -> str:
    """``FAILED`` for 6, ``PAUSED`` for :data:`PAUSED`; an unknown value gives ``str(value)``."""
    return _EXTRA_NAMES.get(phase) or WorkflowExecutionPhase.enum_to_string(phase)


@dataclass(frozen=True, order=True)
class ExecutionId:
    """``flyteidl.core.WorkflowExecutionIdentifier``: project, domain, name."""

    project: str
    domain: str
    name: str

    def __str__(self) -> str:
        return f"{self.project}/{self.domain}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ExecutionId:
        """``"project/domain/name"`` back into an id."""
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"expected project/domain/name, got {text!r}")
        return cls(*parts)


@dataclass(frozen=True)
class EntityId:
    """A launch plan or workflow: project, domain, name and version.

    An empty ``version`` means "the latest registered" where a version is looked up.
    """

    project: str
    domain: str
    name: str
    version: str = ""

    def __str__(self) -> str:
        base = f"{self.project}/{self.domain}/{self.name}"
        return f"{base}@{self.version}" if self.version else base


class ErrorKind(enum.StrEnum):
    """``flyteidl.core.ExecutionError.ErrorKind``."""

    UNKNOWN = "UNKNOWN"
    USER = "USER"
    SYSTEM = "SYSTEM"


@dataclass(frozen=True)
class ExecutionError:
    """Why an execution failed, as ``flyteidl.core.ExecutionError`` says it."""

    message: str
    code: str = ""
    kind: ErrorKind = ErrorKind.UNKNOWN
    error_uri: str = ""


@dataclass(frozen=True)
class ExecutionEvent:
    """One ``flyteidl.event.WorkflowExecutionEvent``, normalised.

    ``launch_plan`` is not part of flyteidl's event; producers may add it so an
    event for an execution we never saw can still be resolved.
    """

    execution_id: ExecutionId
    phase: int
    occurred_at: datetime
    producer_id: str = ""
    error: ExecutionError | None = None
    output_uri: str = ""
    launch_plan: EntityId | None = None

    # The action that paused, for a PAUSED event (a run has one per paused action).
    paused: PausedAction | None = None

    @property
    def is_terminal(self) -> bool:
        return self.phase in ENDED_PHASES

    @property
    def phase_name(self) -> str:
        return phase_name(self.phase)


@dataclass(frozen=True)
class PausedAction:
    """Something waiting for a person, and what it asks: a Flyte 2 condition action,
    or a Flyte 1 gate node's signal (``approve()``, ``wait_for_input()``).

    ``name`` is what an answer names: the condition action's name (Flyte 2), or
    the signal id (Flyte 1). ``expects`` is the kind of value it wants (a
    :class:`ValueKind`, or ``""`` when its type is none of them).
    """

    name: str
    prompt: str = ""
    description: str = ""
    prompt_type: str = ""  # "text" or "markdown"
    condition: str = ""  # Flyte 2: the condition's own name (flyte.new_condition's first argument)
    parent: str = ""  # Flyte 2: the action waiting on the condition
    expects: str = ""  # ValueKind: "bool", "int", "float", "str"; "" for any other type

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PausedAction:
        return cls(**{f.name: str(data.get(f.name, "")) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class GateReached:
    """A Flyte 1 node that may be a gate waiting for a person (a node event said so):
    which signals wait is FlyteAdmin's to say."""

    execution_id: ExecutionId
    node_id: str
    node_name: str  # flytekit names a gate node after its signal id
    occurred_at: datetime


class ValueKind(enum.StrEnum):
    """The values a person can give a gate: Flyte's simple literal types, as Python names them.

    Flyte 1 signals and Flyte 2 conditions both declare a ``LiteralType``;
    flyteidl and flyteidl2 number their ``SimpleType`` alike (INTEGER 1,
    FLOAT 2, STRING 3, BOOLEAN 4), which :meth:`of_simple` reads.
    """

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STR = "str"

    @classmethod
    def of_simple(cls, simple: int) -> ValueKind | None:
        """The kind of a ``SimpleType`` number; None for NONE and the others."""
        return _SIMPLE_KINDS.get(simple)


_SIMPLE_KINDS = {1: ValueKind.INT, 2: ValueKind.FLOAT, 3: ValueKind.STR, 4: ValueKind.BOOL}


class ActionKind(enum.StrEnum):
    """What a person can ask of Flyte from a message."""

    APPROVE = "approve"  # a boolean gate: true
    REJECT = "reject"  # a boolean gate: false (a Flyte 1 approve() gate then fails the run)
    SIGNAL = "signal"  # a gate: a typed value
    RELAUNCH = "relaunch"  # the execution again, from its spec and inputs
    RECOVER = "recover"  # Flyte 1: again from where it failed
    ABORT = "abort"  # stop the run

    @property
    def answers_gate(self) -> bool:
        return self in (ActionKind.APPROVE, ActionKind.REJECT, ActionKind.SIGNAL)

    @property
    def past(self) -> str:
        """``approved``, ``signalled``... as a sentence says what was done."""
        return _PAST[self]


_PAST = {
    ActionKind.APPROVE: "approved",
    ActionKind.REJECT: "rejected",
    ActionKind.SIGNAL: "signalled",
    ActionKind.RELAUNCH: "relaunched",
    ActionKind.RECOVER: "recovered",
    ActionKind.ABORT: "aborted",
}


class ActionOutcome(enum.StrEnum):
    PENDING = "pending"  # being asked of Flyte now: the decision is held for this request
    DONE = "done"  # Flyte took it
    ANSWERED = "answered"  # answered (or ended) elsewhere already: nothing was sent
    REFUSED = "refused"  # refused by flytenotify: not allowed, a wrong value, not possible
    FAILED = "failed"  # Flyte refused it, or could not be reached


@dataclass(frozen=True)
class Actor:
    """Who asks for an action, and how that was proven.

    ``identity`` is ``KIND:VALUE`` (``api-token:3f2a9c1e0b7d4a56``,
    ``slack:U0123ABC``, ``email:alice@example.com``, ``mattermost:jdoe``,
    ``cli:alice``); ``proof`` says what vouches for it (``api-token``,
    ``local``, a chat platform's signed request). ``groups`` are groups the
    proving layer vouches the actor belongs to (``slack-group:S0456``).
    """

    identity: str
    proof: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionRecord:
    """One action asked of flytenotify and what came of it: a row of the ``actions`` table.

    ``decision`` is set on the one record that decided (done, or answered
    elsewhere): a second request for the same decision is answered with it.
    """

    id: int
    execution_id: ExecutionId
    action: ActionKind
    target: str  # the gate (signal id, condition action); "" for the whole execution
    value: bool | int | float | str | None
    actor: str
    proof: str
    outcome: ActionOutcome
    detail: str
    result: str
    requested_at: datetime
    decision: str | None = None

    def summary(self) -> str:
        """One line: ``approved by slack:U1 at 2025-...``, or why nothing was done."""
        when = self.requested_at.isoformat(timespec="seconds")
        if self.outcome is ActionOutcome.PENDING:
            return f"being {self.action.past} by {self.actor} since {when}"
        if self.outcome is ActionOutcome.DONE:
            done = f"{self.action.past} by {self.actor} at {when}"
            return f"{done}: {self.result}" if self.result else done
        return f"{self.outcome.value} at {when}: {self.detail}"


@dataclass(frozen=True)
class Acknowledgement:
    """A person said "I'm on it" about an execution, from a chat message's button: a
    row of the ``acknowledgements`` table, one per execution and person.

    ``message`` is the provider's id of the message the button was on (Slack
    ``CHANNEL/ts``, a Mattermost post id); empty when not known.
    """

    id: int
    execution_id: ExecutionId
    actor: str
    proof: str
    acknowledged_at: datetime
    message: str = ""


class NotificationSource(enum.StrEnum):
    """Where an execution's notifications came from."""

    REGISTERED = "registered"  # our API: the execution, or a launch plan registered with us
    FLYTEADMIN = "flyteadmin"  # FlyteAdmin's GetExecution (the closure's notifications)
    FLYTE2 = "flyte2"  # a Flyte 2 run's own rules (its RunSpec, read from the control plane)
    NONE = "none"  # nobody knew the execution: recorded with no notifications


@dataclass(frozen=True)
class InlineEmail:
    """A Flyte 2 inline email rule's templates: one message to to + cc + bcc.

    The templates are Go templates (``{{.Run.Name}}``), rendered when the rule fires.
    """

    envelope: EmailEnvelope
    subject: str
    text: str
    html: str = ""  # empty: the message has no HTML part


@dataclass(frozen=True)
class InlineWebhook:
    """A Flyte 2 inline webhook rule (``Webhook``, and ``Slack``/``Teams``, which
    the SDK writes as webhooks): every part may hold Go templates."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""


@dataclass(frozen=True)
class RunRule:
    """One notification rule of a Flyte 2 run, frozen when flytenotify first saw the run.

    It delivers to ``recipients`` (a named rule's or named delivery's, in the
    recipient syntax notifications use: ``#channel``, ``pagerduty:KEY``,
    ``webhook:NAME``, an email address), or by its own ``email`` or ``webhook``
    template. ``problem`` says why it can deliver nothing (a named delivery
    nobody configured): its deliveries are recorded and dead-lettered with it.
    """

    phases: frozenset[int]
    name: str = ""  # the named rule or named delivery it came from; empty when inline
    recipients: tuple[str, ...] = ()
    email: InlineEmail | None = None
    webhook: InlineWebhook | None = None
    problem: str = ""

    @property
    def kind(self) -> str:
        """What it delivers through, for people: ``email``, ``webhook`` or its name."""
        if self.email is not None:
            return "email"
        if self.webhook is not None:
            return "webhook"
        return f"named:{self.name}"


class NamedKind(enum.StrEnum):
    """Which name in a Flyte 2 user's code a :class:`NamedRule` gives meaning to."""

    RULE = "rule"  # flyte.notify.NamedRule("oncall"): its phases and recipients
    DELIVERY = "delivery"  # NamedDelivery(name="chat"): recipients; phases from the user's rule


@dataclass(frozen=True)
class NamedRule:
    """What ``NamedRule(NAME)`` or ``NamedDelivery(name=NAME)`` means, for a scope.

    An empty ``project`` or ``domain`` matches every one; of the entries of one
    name that match a run, the most specific wins (project and domain, then
    project, then domain, then neither). ``source`` is ``config`` for the
    configuration file's ``[flyte2.rules.NAME]`` / ``[flyte2.deliveries.NAME]``
    (read-only over the API), ``api`` for those managed over the API or the CLI.
    """

    kind: NamedKind
    name: str
    recipients: tuple[str, ...]
    phases: frozenset[int] = frozenset()  # a rule's; empty for a delivery
    project: str = ""
    domain: str = ""
    source: str = "api"
    updated_at: datetime | None = None

    def applies_to(self, project: str, domain: str) -> bool:
        return self.project in ("", project) and self.domain in ("", domain)

    @property
    def specificity(self) -> int:
        return 2 * bool(self.project) + bool(self.domain)


@dataclass(frozen=True)
class Execution:
    """An execution and the notifications frozen for it at creation.

    ``lookup_error`` is FlyteAdmin's refusal (``NOT_FOUND: ...``) when a
    look-up was refused and the execution recorded with no notifications.
    """

    id: ExecutionId
    launch_plan: EntityId | None
    notifications: tuple[Notification, ...]
    created_at: datetime
    workflow: EntityId | None = None
    source: NotificationSource = NotificationSource.REGISTERED
    lookup_error: str = ""
    rules: tuple[RunRule, ...] = ()  # a Flyte 2 run's rules (its notifications are empty)
    # The terminal phase the ledger recorded for it, once it has one (read back, never written).
    terminal_phase: int | None = None
    trigger: str = ""  # the Flyte 2 trigger that started the run, if one did

    def no_notifications_reason(self, phase: int) -> str:
        """Why no notification of this execution fires for ``phase``, in one sentence.

        Everything it needs is recorded: an execution nobody knew (``none``)
        was looked up only if ``[flyteadmin]`` was configured, and a refusal
        is then kept in ``lookup_error``.
        """
        if self.source is NotificationSource.NONE:
            if self.lookup_error:
                return f"FlyteAdmin refused to look the execution up ({self.lookup_error})"
            if self.launch_plan is None:
                return (
                    "nobody registered the execution and its event named no launch plan"
                    " (FlyteAdmin's v2 cloud events name it for every phase only with"
                    " enrichAllWorkflowEventTypes: true), and no [flyteadmin] was configured"
                    " to look it up"
                )
            return (
                f"its launch plan {self.launch_plan} is not registered here, and no"
                " [flyteadmin] was configured to look the execution up"
            )
        if self.source is NotificationSource.FLYTE2:
            return self._run_reason(phase)
        if not self.notifications and self.lookup_error:
            return f"FlyteAdmin's notifications for it could not be read ({self.lookup_error})"
        if not self.notifications:
            where = "in FlyteAdmin" if self.source is NotificationSource.FLYTEADMIN else "here"
            return f"it has no notifications {where} (none declared, or disable_all)"
        covered = sorted({p for n in self.notifications for p in n.phases})
        named = ", ".join(phase_name(p) for p in covered)
        return f"none of its notifications is for {phase_name(phase)} (only for {named})"

    def _run_reason(self, phase: int) -> str:
        # A Flyte 2 run: lookup_error says why it has no rules, when it has none.
        if not self.rules:
            return f"the Flyte 2 run has no notification rules: {self.lookup_error or 'none'}"
        covered = sorted({p for rule in self.rules for p in rule.phases})
        named = ", ".join(phase_name(p) for p in covered)
        return f"none of its rules is for {phase_name(phase)} (only for {named})"


@dataclass(frozen=True)
class LaunchPlan:
    id: EntityId
    notifications: tuple[Notification, ...]
    registered_at: datetime | None = None


class DeliveryReason(enum.StrEnum):
    """Why a delivery was written: what its message is about."""

    PHASE = "phase"  # the execution reached a phase one of its notifications selects
    DEADLINE = "deadline"  # the execution (or a schedule) broke a deadline
    DEADLINE_RESOLVED = "deadline_resolved"  # an execution that broke a deadline ended


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its first attempt
    RETRYING = "retrying"  # failed transiently, waiting for the next attempt
    DELIVERED = "delivered"  # the provider accepted it
    DEAD = "dead"  # given up on: permanent error, or too many attempts / too old
    # Held by a silence (``silence_id``): never claimed. Pending again when an
    # operator releases it (ending the silence with release) or re-drives it.
    SILENCED = "silenced"


@dataclass(frozen=True)
class Mailbox:
    """An email address and the display name shown with it (may be empty)."""

    address: str
    name: str = ""


@dataclass(frozen=True)
class EmailEnvelope:
    """Who one message goes to when its rule names them all (a Flyte 2 inline email).

    One message reaches every address; ``bcc`` is in the SMTP envelope only,
    never in a header or anything derived from the message.
    """

    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()

    @property
    def everyone(self) -> tuple[Mailbox, ...]:
        return (*self.to, *self.cc, *self.bcc)

    def to_json(self) -> dict[str, Any]:
        return {
            part: [{"address": m.address, "name": m.name} for m in getattr(self, part)]
            for part in ("to", "cc", "bcc")
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmailEnvelope:
        def boxes(part: str) -> tuple[Mailbox, ...]:
            return tuple(Mailbox(m["address"], m.get("name", "")) for m in data.get(part, ()))

        return cls(boxes("to"), boxes("cc"), boxes("bcc"))


@dataclass(frozen=True)
class HttpRequest:
    """A request written by the user's own rule (a Flyte 2 inline webhook), rendered.

    The URL comes from users' code: it is sent only where ``[allow]
    inline_webhook_urls`` permits, and never to a private address unless a
    pattern names it.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HttpRequest:
        return cls(
            method=data["method"],
            url=data["url"],
            headers=tuple((name, value) for name, value in data.get("headers", ())),
            body=data.get("body", ""),
        )


@dataclass(frozen=True)
class RenderedMessage:
    """What a notification says, rendered once at enqueue time and stored.

    ``subject`` is a single line (no CR/LF). ``text`` is the plain-text body;
    ``html`` the same body for an HTML part (values HTML-escaped);
    ``slack_text`` the same body as Slack mrkdwn (control sequences escaped).
    ``variables`` are the raw template variables, for channels that lay out
    structured messages themselves (Slack blocks, PagerDuty custom_details,
    webhook JSON).
    """

    subject: str
    text: str
    html: str
    slack_text: str
    variables: dict[str, str] = field(default_factory=dict)
    # Set when the rule itself says who receives it (one email to to + cc + bcc) ...
    envelope: EmailEnvelope | None = None
    # ... or what to request (a webhook URL, method, headers and body of its own).
    request: HttpRequest | None = None
    # Why it could not be rendered (an unsupported template construct): such a
    # delivery is recorded and dead-lettered with this reason, never sent blank.
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "slack_text": self.slack_text,
            "variables": dict(self.variables),
        }
        if self.envelope is not None:
            data["envelope"] = self.envelope.to_json()
        if self.request is not None:
            data["request"] = self.request.to_json()
        if self.problem:
            data["problem"] = self.problem
        return data

    @functools.cached_property
    def json_text(self) -> str:
        """:meth:`to_json` encoded once: every recipient's delivery row stores it."""
        return orjson.dumps(self.to_json()).decode("utf-8")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RenderedMessage:
        return cls(
            subject=data["subject"],
            text=data["text"],
            html=data["html"],
            slack_text=data["slack_text"],
            variables=dict(data.get("variables", {})),
            envelope=EmailEnvelope.from_json(data["envelope"]) if "envelope" in data else None,
            request=HttpRequest.from_json(data["request"]) if "request" in data else None,
            problem=data.get("problem", ""),
        )


@dataclass(frozen=True)
class Delivery:
    """One message to one recipient over one channel: a row of the ledger."""

    id: int
    idempotency_key: str
    execution_id: ExecutionId
    phase: int
    notification_index: int
    kind: str  # the notification's channel: "email", "slack" or "pager_duty"
    channel: (
        str  # the transport that delivers it: "email", "slack", "pagerduty", "webhook", "inbox"
    )
    recipient: str
    message: RenderedMessage
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    last_reply: str = ""
    launch_plan: EntityId | None = None
    group_key: str | None = None  # deliveries sharing one are folded into digests
    message_id: str = ""  # the message that carried it, once attempted
    message_size: int = 0  # how many executions that message carried
    # The provider's id of the message it went out as (Slack channel/ts, a
    # Mattermost post id, an email Message-ID, a PagerDuty dedup key, a
    # webhook's delivery id), once delivered.
    provider_message_id: str = ""
    # The first message of its conversation that it updated or followed (that
    # message's provider id); empty when it was the first, or stood alone.
    in_reply_to: str = ""
    # A recovery message's: the failed execution ("project/domain/name") whose
    # conversation it joins. Empty: its own execution's.
    follows: str = ""
    # Set on the delivery handed to a channel when it stands for a digest: the
    # channel sends one message naming every delivery the digest carries.
    digest: Digest | None = None
    silence_id: int | None = None  # the silence that held it, if one did (kept once released)
    # Set on the delivery handed to a channel when it continues a conversation
    # whose first message was sent: the channel updates or follows that message.
    thread: Thread | None = None
    reason: DeliveryReason = DeliveryReason.PHASE

    @property
    def members(self) -> tuple[Delivery, ...]:
        """The deliveries one send carries: the digest's, or this one alone."""
        return self.digest.deliveries if self.digest is not None else (self,)

    @property
    def conversation(self) -> str:
        """The conversation it belongs to: its execution's (or, for a recovery, the
        failed execution's) with its destination, the channel and recipient."""
        return f"{self.follows or self.execution_id}|{self.channel}|{self.recipient}"

    @property
    def is_recovery(self) -> bool:
        return bool(self.follows)


@dataclass(frozen=True)
class Thread:
    """The conversation a delivery continues: its first message, as the provider knows it.

    ``root`` is the delivery that sent that message (for a channel that shows
    it again, updated); None when the ledger no longer has it. When that
    message was a digest (an alert storm folded into one message), ``digest``
    is it again with each execution it names in its latest state sent to this
    destination: a channel that updates the first message updates the digest.
    """

    root_id: str  # the provider's id of the first message (see Delivery.provider_message_id)
    root: Delivery | None = None
    digest: Digest | None = None
    # What people did from the messages about the execution the first message is
    # about (acknowledged it, approved its gate, relaunched it), first first: a
    # channel that rewrites that message says them again, and offers no button
    # they answered.
    answers: tuple[Answer, ...] = ()


@dataclass(frozen=True)
class Answer:
    """Something a person did about an execution from one of its messages: an
    acknowledgement (``action`` None) or an action on Flyte that was done."""

    actor: str  # their identity: slack:U1, mattermost:ana, email:a@b, teams:oncall
    at: datetime
    action: ActionKind | None = None
    target: str = ""  # the gate an approve, reject or signal answered
    result: str = ""  # what Flyte said was done (a relaunch's new execution)

    @classmethod
    def of(cls, found: Acknowledgement | ActionRecord) -> Answer:
        if isinstance(found, Acknowledgement):
            return cls(found.actor, found.acknowledged_at)
        return cls(found.actor, found.requested_at, found.action, found.target, found.result)

    @property
    def done(self) -> str:
        """``Acknowledged``, ``Approved``...: what the person did, as a note begins."""
        return "Acknowledged" if self.action is None else self.action.past.capitalize()


_DIGEST_WORDING = {
    WorkflowExecutionPhase.SUCCEEDED: "succeeded",
    WorkflowExecutionPhase.FAILED: "failed",
    WorkflowExecutionPhase.ABORTED: "were aborted",
    WorkflowExecutionPhase.TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class GroupRule:
    """How the grouped rows of one channel are claimed.

    A claim that takes a group's rows opens its window for ``window`` seconds;
    the rows are sent in digests of at most ``max_size`` executions.
    """

    window: float = 10.0
    max_size: int = 100


DEFAULT_GROUP_RULE = GroupRule()


@dataclass(frozen=True)
class Digest:
    """One message carrying the deliveries of one group that were due together.

    ``link`` is where a reader sees the whole list (flytenotify's own API for
    this message) when ``templates.public_url`` is set, else empty: the
    channel then names the CLI command that lists them.
    """

    id: str  # "digest:<uuid>", the deliveries' message_id
    deliveries: tuple[Delivery, ...]
    link: str = ""

    @property
    def count(self) -> int:
        return len(self.deliveries)

    @property
    def title(self) -> str:
        """What happened to how many, e.g. ``37 executions of nightly failed``."""
        plans = {d.launch_plan.name if d.launch_plan else "" for d in self.deliveries}
        phases = {d.phase for d in self.deliveries}
        plan = next(iter(plans)) if len(plans) == 1 else ""
        how = _DIGEST_WORDING.get(next(iter(phases)), "ended") if len(phases) == 1 else "ended"
        if all(d.reason is DeliveryReason.DEADLINE for d in self.deliveries):
            how = "are over a deadline"
        return f"{self.count} executions{f' of {plan}' if plan else ''} {how}"

    @property
    def list_command(self) -> str:
        return f"flytenotify deliveries list --message {self.id}"


@dataclass(frozen=True)
class Recurrence:
    """When a recurring silence is in effect: a window opens whenever ``cron`` fires,
    read on the wall clock of ``timezone``, and lasts ``duration`` seconds of that
    wall clock (so a window of 8 h from 22:00 closes at 06:00 on the night the
    clocks change too)."""

    cron: str  # five fields (minute hour day-of-month month day-of-week), or @daily...
    duration: int  # seconds
    timezone: str  # an IANA name: Europe/Paris


@dataclass(frozen=True, kw_only=True)
class Silence:
    """ "Quiet, I'm on it": deliveries it matches are recorded as silenced, not sent.

    Each matcher left None matches everything; a silence with none at all is
    one that says ``all`` explicitly. A one-off silence is in effect from
    ``starts_at`` until ``ends_at``; a recurring one during each window of
    ``recurring`` between them (``ends_at`` None: until someone ends it).
    ``ended_at`` and ``ended_by`` say who ended it early. ``trigger`` names a
    Flyte 2 trigger: it matches the runs that trigger started.
    """

    id: int = 0  # given by the ledger
    project: str | None = None
    domain: str | None = None
    launch_plan: str | None = None  # the name (any version); a Flyte 2 run's task
    trigger: str | None = None
    phases: frozenset[int] = frozenset()  # empty: every phase
    recipient: str | None = None  # exact, or a form an [allow] entry would name (a domain)
    all: bool = False
    starts_at: datetime
    ends_at: datetime | None = None
    recurring: Recurrence | None = None
    comment: str
    author: str
    created_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str = ""

    @property
    def matchers(self) -> dict[str, object]:
        """The matchers given, by name."""
        given = {
            "project": self.project,
            "domain": self.domain,
            "launch_plan": self.launch_plan,
            "trigger": self.trigger,
            "phases": self.phases or None,
            "recipient": self.recipient,
        }
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery: the audit trail users see."""

    delivery_id: int
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str  # "delivered", "transient", "permanent"
    reply: str


@dataclass(frozen=True)
class LedgerState:
    """How much is waiting: deliveries per status and the oldest one still to send."""

    counts: dict[str, int]
    oldest_waiting: datetime | None  # created_at of the oldest pending or retrying delivery

    @property
    def waiting(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("retrying", 0)


# -- deadlines --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class DeadlineId:
    """A deadline's name in its project and domain."""

    project: str
    domain: str
    name: str

    def __str__(self) -> str:
        return f"{self.project}/{self.domain}/{self.name}"


@dataclass(frozen=True)
class SlowerThan:
    """Slower than the ``percentile`` of the last ``of_last`` successful runs' durations,
    judged once ``min_runs`` of them are known."""

    percentile: float
    of_last: int
    min_runs: int


@dataclass(frozen=True)
class Deadline:
    """How long the executions a deadline selects may queue and run, and when a
    scheduled launch plan must start; who hears when they do not.

    It selects the executions of its project and domain: of one Flyte 1
    ``launch_plan``, or the Flyte 2 runs of one ``task`` or ``trigger``, or
    all of them when none is named. Durations are seconds. ``schedule`` is a
    cron expression in UTC; without it a Flyte 1 launch plan's own schedule is
    read from FlyteAdmin. ``source`` is ``config`` for the configuration
    file's ``[deadlines.NAME]`` (read-only over the API), ``api`` otherwise.
    """

    id: DeadlineId
    recipients: tuple[str, ...]
    launch_plan: str = ""
    task: str = ""
    trigger: str = ""
    max_queued: float | None = None
    max_running: float | None = None
    schedule: str = ""
    start_within: float | None = None
    slower_than: SlowerThan | None = None
    resolve: bool = True
    source: str = "api"
    updated_at: datetime | None = None

    def selects(self, execution: Execution) -> bool:
        """Whether ``execution`` is one this deadline watches."""
        if (execution.id.project, execution.id.domain) != (self.id.project, self.id.domain):
            return False
        plan = execution.launch_plan.name if execution.launch_plan is not None else ""
        flyte2 = execution.source is NotificationSource.FLYTE2
        if self.launch_plan:
            return not flyte2 and plan == self.launch_plan
        if self.task:
            return flyte2 and plan == self.task  # a run's task is kept as its launch plan
        if self.trigger:
            return flyte2 and execution.trigger == self.trigger
        return True

    @property
    def series(self) -> str:
        """The runs whose durations ``slower_than`` learns from: those it selects.

        Named by what selects them, not by the deadline, so two deadlines of
        one launch plan share what was learnt, and a deadline made again
        starts from it.
        """
        if self.launch_plan:
            picked = f"launch_plan:{self.launch_plan}"
        elif self.task:
            picked = f"task:{self.task}"
        elif self.trigger:
            picked = f"trigger:{self.trigger}"
        else:
            picked = "*"
        return f"{self.id.project}/{self.id.domain}/{picked}"

    @property
    def selection(self) -> str:
        """What it selects, for people: ``launch plan nightly``, ``every execution``."""
        if self.launch_plan:
            return f"launch plan {self.launch_plan}"
        if self.task:
            return f"Flyte 2 task {self.task}"
        if self.trigger:
            return f"Flyte 2 trigger {self.trigger}"
        return "every execution"


class TimerKind(enum.StrEnum):
    """What a timer watches for; the first four are breaches an alert names."""

    MAX_QUEUED = "max_queued"  # queued longer than allowed
    MAX_RUNNING = "max_running"  # running longer than allowed
    SLOWER_THAN = "slower_than"  # running longer than its past runs took
    START_WITHIN = "start_within"  # a scheduled run did not start
    RESOLVE = "resolve"  # an alerted execution ended: say how


# The timers of one execution, dropped when it ends.
EXECUTION_TIMERS = frozenset({TimerKind.MAX_QUEUED, TimerKind.MAX_RUNNING, TimerKind.SLOWER_THAN})


@dataclass(frozen=True)
class Timer:
    """A moment the ledger waits for: a row of ``timers``.

    ``since`` is when what it times began (queued, running, a scheduled
    fire time, or for a fixed-rate schedule the run before), ``allowed`` how
    many seconds that may last, ``due_at`` when it runs out. A schedule's
    timer carries the schedule (``cron:EXPR`` or ``every:SECONDS``) to be
    armed again from, and ``satisfied_at`` once a run started in its window.
    """

    kind: TimerKind
    deadline: DeadlineId
    due_at: float
    since: float
    allowed: float
    phase: int = 0
    execution: ExecutionId | None = None
    schedule: str = ""
    satisfied_at: float | None = None
    id: int = 0

    @property
    def key(self) -> str:
        """One timer per kind, deadline and execution: arming it again changes nothing."""
        base = f"{self.kind.value}/{self.deadline}"
        return f"{base}/{self.execution}" if self.execution is not None else base

    @staticmethod
    def schedule_key(deadline: DeadlineId) -> str:
        """The key of ``deadline``'s schedule timer (it has one at a time)."""
        return f"{TimerKind.START_WITHIN.value}/{deadline}"


@dataclass(frozen=True)
class DeadlineAlert:
    """A breach that was alerted: one per deadline, execution and kind of breach.

    ``execution`` is the execution; for a missed start, the launch plan's
    (or the deadline's) name and the fire time it missed. ``ended_phase`` and
    ``ended_at`` are set when the execution ends (a follow-up then says so
    when ``resolve`` was on).
    """

    deadline: DeadlineId
    execution: ExecutionId
    breach: TimerKind
    phase: int
    since: datetime
    allowed: float
    breached_at: datetime
    recipients: tuple[str, ...]
    resolve: bool = True
    ended_phase: int | None = None
    ended_at: datetime | None = None
    id: int = 0
