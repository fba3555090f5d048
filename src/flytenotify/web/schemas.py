"""The HTTP contract: every shape the API takes or returns, in one place.

Pydantic models. Requests are validated by them (a mistake is a 400 whose
problems name each field), responses are made from them, the CLI prints the
same shapes, and ``/openapi.json`` is generated from them and the route table
(:mod:`flytenotify.web.openapi`, :mod:`flytenotify.web.api`).

A response that shows a domain object is a :func:`view` of its dataclass: its
fields as their types serialise, except those it hides and the few it shows in
another form. The dataclass stays the one source: a field added to
``Delivery`` is in the API, the CLI's JSON and the OpenAPI document with
nothing changed here.

Shapes that mirror flyteidl's JSON mapping (events, cloud events, notifications)
are read by the intake's own parsers, which name each mistake's field as
flyteidl spells it; their schemas are written by hand, in
:mod:`flytenotify.web.flyteidl_json`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, TypeAlias, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
)

from flytenotify.actions import MAX_TEXT_VALUE
from flytenotify.channels import registry
from flytenotify.channels._url_policy import display_url
from flytenotify.config import DeadlineSpec
from flytenotify.domain import (
    RULE_PHASES,
    Acknowledgement,
    ActionKind,
    ActionRecord,
    Attempt,
    Deadline,
    DeadlineAlert,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    NamedRule,
    NotificationSource,
    Recurrence,
    RunRule,
    Silence,
    phase_name,
)
from flytenotify.engine import silences
from flytenotify.errors import InputError, Problem
from flytenotify.intake.limits import (
    IDENTIFIER_LIMITS,
    MAX_INT,
    NO_CONTROL,
    RECIPIENT,
    id_problems,
    identifier_pattern,
    identifier_problems,
    parse_int,
)
from flytenotify.intake.source import SourceStatus
from flytenotify.schedules import DURATION_PATTERN, format_duration
from flytenotify.store.base import DeliveryFilter, EventOutcome, EventResult, InboxMessage

_S = TypeVar("_S", bound=BaseModel)

# The most rows one page of a list holds.
MAX_LIMIT = 1000
# A message id is "digest:<uuid>" or "single:<idempotency key>"; keys are bounded
# by the identifier limits, so anything longer names no message.
MAX_MESSAGE_ID = 4096
MESSAGE_KINDS = ("digest:", "single:")


# -- the building blocks ---------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# Times as Python writes them (``+00:00``), as they always were.
Time = Annotated[datetime, PlainSerializer(_iso, return_type=str)]


def _from_epoch(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None


def _identifier_rule(part: str, shortest: int = 1) -> AfterValidator:
    """The identifier rule of ``part``, its messages the intake's own."""

    def check(value: str) -> str:
        problems = identifier_problems(value, "", part, required=shortest > 0)
        if problems:
            raise ValueError(problems[0].message)
        return value

    return AfterValidator(check)


def _identifier_schema(part: str, shortest: int = 1) -> WithJsonSchema:
    # The length is in the pattern: schemathesis generates such strings fast.
    return WithJsonSchema({"type": "string", "pattern": identifier_pattern(part, shortest)})


Project = Annotated[str, _identifier_rule("project"), _identifier_schema("project")]
Domain = Annotated[str, _identifier_rule("domain"), _identifier_schema("domain")]
Name = Annotated[str, _identifier_rule("name"), _identifier_schema("name")]
Version = Annotated[str, _identifier_rule("version"), _identifier_schema("version")]
# A launch plan's version in a request: empty for the latest registered.
AnyVersion = Annotated[str, _identifier_rule("version", 0), _identifier_schema("version", 0)]
# A scope part: a project or domain, or empty for every one.
ScopePart = Annotated[str, _identifier_rule("project", 0), _identifier_schema("project", 0)]
# Channel names follow the identifier rules (no NUL for PostgreSQL).
ChannelName = Annotated[str, _identifier_rule("project"), _identifier_schema("project")]
# A recipient starts with a visible character; the Notifier checks the rest.
Recipient = Annotated[str, WithJsonSchema(RECIPIENT)]


def _rule_phase(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    number = RULE_PHASES.get(value.upper()) if value.isascii() else None
    if number is None:
        raise ValueError(f"must be one of {', '.join(RULE_PHASES)}, got {value!r}")
    return number


# A phase a rule may select, by name in any case: read as the ledger's number.
RulePhase = Annotated[
    int,
    BeforeValidator(_rule_phase),
    WithJsonSchema({"enum": [*RULE_PHASES, *(name.lower() for name in RULE_PHASES)]}),
]


class Shape(BaseModel):
    """A shape of the HTTP contract."""

    model_config = ConfigDict(frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: what the API answers and the CLI prints."""
        return self.model_dump(mode="json", exclude=self._left_out())

    def _left_out(self) -> set[str]:
        # Optional parts of an answer (warnings, a cloud event) are left out when absent.
        return {name for name in self._absent_when_none if getattr(self, name) is None}

    _absent_when_none: ClassVar[frozenset[str]] = frozenset()


class Request(Shape):
    """A request body or query: unknown fields are mistakes."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# -- views of domain objects -------------------------------------------------------------


class View(Shape):
    """A domain object as the API shows it; made by :func:`view`."""

    _derived: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    _extras: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def of(cls, obj: Any, **extra: Any) -> Self:
        """The view of ``obj``; ``extra`` gives the fields the object does not hold."""
        values = {
            name: getattr(obj, name)
            for name in cls.model_fields
            if name not in cls._derived and name not in cls._extras
        }
        values.update({name: derive(obj) for name, derive in cls._derived.items()})
        values.update(extra)
        # An optional extra not given (a named rule's warnings outside a PUT) is absent.
        values.update({name: None for name in cls._absent_when_none if name not in values})
        return cls.model_construct(**values)


def view(
    source: type,
    *,
    name: str,
    hide: Collection[str] = (),
    show: Mapping[str, tuple[Any, Callable[[Any], Any]]] | None = None,
    extra: Mapping[str, Any] | None = None,
    doc: str,
) -> type[View]:
    """The view of dataclass ``source``: its fields but ``hide``, as their types serialise.

    ``show`` gives a field (new, or replacing one of ``source``'s) its type and how
    it is computed from the object; ``extra`` names fields given to ``of``.
    """
    hints = typing.get_type_hints(source)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(source):
        if field.name not in hide and field.name not in (show or {}):
            fields[field.name] = (_api_type(hints[field.name]), ...)
    # The loops name their variable apart from ``name``: reusing it named the model after
    # its last field, and two views ending in the same field shared a name in the document.
    for shown, (annotation, _) in (show or {}).items():
        fields[shown] = (annotation, ...)
    for given, annotation in (extra or {}).items():
        fields[given] = (annotation, ...)
    model: type[View] = create_model(
        name, __base__=View, __doc__=doc, __module__=__name__, **fields
    )
    model._derived = {shown: derive for shown, (_, derive) in (show or {}).items()}
    model._extras = frozenset(extra or ())
    return model


def _api_type(annotation: Any) -> Any:
    """A field's type as the API writes it: times as they always were."""
    if annotation is datetime:
        return Time
    if annotation == datetime | None:
        return Time | None
    return annotation


class Ids(Shape):
    """A name that identifies an execution: project, domain, name."""

    project: str
    domain: str
    name: str


class Entity(Ids):
    """A launch plan or workflow: project, domain, name and version ("" for the latest)."""

    version: str


class MessageText(Shape):
    subject: str
    text: str


class EmailRuleView(Shape):
    to: list[dict[str, str]]
    cc: list[dict[str, str]]
    bcc: list[dict[str, str]]
    subject: str


class WebhookRuleView(Shape):
    method: str
    url: str  # without its secret parts
    headers: list[str]  # names only: values are credentials as often as not


class RuleView(Shape):
    """A Flyte 2 run's rule as frozen with it; a webhook's URL and header values,
    credentials as often as not (Slack's and Teams' URLs are), are not shown."""

    phases: list[str]
    name: str | None
    recipients: list[str]
    problem: str | None
    email: EmailRuleView | None
    webhook: WebhookRuleView | None

    @classmethod
    def of(cls, rule: RunRule) -> RuleView:
        email = webhook = None
        if rule.email is not None:
            envelope = rule.email.envelope.to_json()
            email = EmailRuleView(**envelope, subject=rule.email.subject)
        if rule.webhook is not None:
            webhook = WebhookRuleView(
                method=rule.webhook.method,
                url=display_url(rule.webhook.url),
                headers=sorted(name for name, _ in rule.webhook.headers),
            )
        return cls(
            phases=sorted(phase_name(phase) for phase in rule.phases),
            name=rule.name or None,
            recipients=list(rule.recipients),
            problem=rule.problem or None,
            email=email,
            webhook=webhook,
        )


class ErrorView(Shape):
    message: str
    code: str
    kind: str


class EventView(Shape):
    """An event as recorded, with its outcome (and why a terminal one sent nothing)."""

    phase: str
    occurred_at: Time
    outcome: str
    reason: str | None = Field(description="Why a terminal event sent nothing (no_notifications)")
    error: ErrorView | None

    @classmethod
    def of(cls, execution: Execution, event: ExecutionEvent, outcome: str) -> EventView:
        error = event.error
        return cls(
            phase=event.phase_name,
            occurred_at=event.occurred_at,
            outcome=outcome,
            reason=(
                execution.no_notifications_reason(event.phase)
                if outcome == EventOutcome.NO_NOTIFICATIONS
                else None
            ),
            error=(
                ErrorView(message=error.message, code=error.code, kind=error.kind.value)
                if error is not None
                else None
            ),
        )


def ids_view(ident: ExecutionId) -> Ids:
    return Ids(project=ident.project, domain=ident.domain, name=ident.name)


def entity_view(entity: EntityId | None) -> Entity | None:
    if entity is None:
        return None
    return Entity(
        project=entity.project, domain=entity.domain, name=entity.name, version=entity.version
    )


# The views themselves. mypy cannot follow classes made at run time, so it is
# told each is a View; what runs is the view of its dataclass, made here.
def _duration_or_none(seconds: float | None) -> str | None:
    return format_duration(seconds) if seconds is not None else None


if TYPE_CHECKING:
    ActionView: TypeAlias = View
    AcknowledgementView: TypeAlias = View
    DeliveryView: TypeAlias = View
    AttemptView: TypeAlias = View
    DeliveryDetail: TypeAlias = View
    InboxView: TypeAlias = View
    NamedRuleView: TypeAlias = View
    SilenceView: TypeAlias = View
    SourceView: TypeAlias = View
    ExecutionDetail: TypeAlias = View
    DeadlineView: TypeAlias = View
    DeadlineAlertView: TypeAlias = View
else:
    DeliveryView = view(
        Delivery,
        name="Delivery",
        hide={
            "idempotency_key",
            "execution_id",
            "notification_index",
            "message",
            "launch_plan",
            "digest",
            "thread",
        },
        show={
            "execution": (str, lambda d: str(d.execution_id)),
            "phase": (str, lambda d: phase_name(d.phase)),
            # The message that carried it (a digest carries many) and how many it named.
            "message_id": (str | None, lambda d: d.message_id or None),
            "message_size": (int | None, lambda d: d.message_size or None),
        },
        doc="One message to one recipient over one channel: a row of the ledger.",
    )

    AttemptView = view(
        Attempt,
        name="Attempt",
        hide={"delivery_id"},
        doc="One try at sending a delivery: the audit trail.",
    )

    DeliveryDetail = view(
        Delivery,
        name="DeliveryDetail",
        hide={
            "idempotency_key",
            "execution_id",
            "notification_index",
            "launch_plan",
            "digest",
            "thread",
        },
        show={
            "execution": (str, lambda d: str(d.execution_id)),
            "phase": (str, lambda d: phase_name(d.phase)),
            "message_id": (str | None, lambda d: d.message_id or None),
            "message_size": (int | None, lambda d: d.message_size or None),
            "message": (
                MessageText,
                lambda d: MessageText(subject=d.message.subject, text=d.message.text),
            ),
        },
        # The attempts themselves rather than their count.
        extra={"attempts": list[AttemptView]},
        doc="A delivery with its audit trail and what its message says.",
    )

    InboxView = view(
        InboxMessage,
        name="InboxMessage",
        show={
            # The channel whose form the message is in: what a reader needs
            # (an Email notification to webhook:ops is a webhook's JSON).
            "channel": (str, lambda m: registry.standing_in_for(m.kind, m.recipient).name),
            "received_at": (Time, lambda m: _from_epoch(m.received_at)),
        },
        doc="A message the dev inbox holds instead of sending it.",
    )

    NamedRuleView = view(
        NamedRule,
        name="NamedRule",
        show={
            "kind": (str, lambda e: e.kind.value),
            "phases": (list[str], lambda e: sorted(phase_name(phase) for phase in e.phases)),
        },
        extra={"warnings": list[Problem] | None},
        doc="What a name in Flyte 2 users' code means (NamedRule, NamedDelivery), for a scope.",
    )
    NamedRuleView._absent_when_none = frozenset({"warnings"})

    SilenceView = view(
        Silence,
        name="Silence",
        show={"phases": (list[str], lambda e: sorted(phase_name(phase) for phase in e.phases))},
        extra={
            "state": Literal["active", "scheduled", "expired", "ended"],
            "next_start": Time | None,
            "held": int | None,
            "released": int | None,
        },
        doc="A silence: what it matches (a matcher left null matches everything), when it"
        " is in effect, and its state now (next_start: when it next comes into effect)."
        " held: the waiting deliveries it held when created; released: those ending it"
        " released.",
    )
    SilenceView._absent_when_none = frozenset({"held", "released"})

    ActionView = view(
        ActionRecord,
        name="Action",
        hide={"execution_id", "decision"},
        show={
            "execution": (str, lambda a: str(a.execution_id)),
            "action": (ActionKind, lambda a: a.action),
            "outcome": (str, lambda a: a.outcome.value),
            # One line for people: "approved by slack:U1 at ...", or why nothing was done.
            "summary": (str, lambda a: a.summary()),
        },
        doc="An action asked of Flyte through flytenotify, and what came of it.",
    )

    AcknowledgementView = view(
        Acknowledgement,
        name="Acknowledgement",
        hide={"execution_id", "id"},
        show={"execution": (str, lambda a: str(a.execution_id))},
        doc="A person said they are on the execution, from a chat message's button"
        " (message: the provider's id of that message).",
    )

    SourceView = view(
        SourceStatus,
        name="SourceStatus",
        show={
            "state": (str, lambda s: str(s.state)),
            "last_error": (str | None, lambda s: s.last_error or None),
            "last_error_at": (Time | None, lambda s: _from_epoch(s.last_error_at)),
            "last_message_at": (Time | None, lambda s: _from_epoch(s.last_message_at)),
        },
        doc="What an intake source reports: connected or not, and its last error.",
    )

    DeadlineView = view(
        Deadline,
        name="Deadline",
        hide={"id"},
        show={
            "project": (str, lambda d: d.id.project),
            "domain": (str, lambda d: d.id.domain),
            "name": (str, lambda d: d.id.name),
            # Durations as they are written (10m, 1h30m), schedules as given.
            "max_queued": (str | None, lambda d: _duration_or_none(d.max_queued)),
            "max_running": (str | None, lambda d: _duration_or_none(d.max_running)),
            "start_within": (str | None, lambda d: _duration_or_none(d.start_within)),
            "schedule": (str | None, lambda d: d.schedule or None),
        },
        extra={"warnings": list[Problem] | None},
        doc="A deadline: how long the executions it selects may queue and run, when a"
        " schedule must start, and who hears when they do not.",
    )
    DeadlineView._absent_when_none = frozenset({"warnings"})

    DeadlineAlertView = view(
        DeadlineAlert,
        name="DeadlineAlert",
        hide={"id"},
        show={
            "deadline": (str, lambda a: str(a.deadline)),
            "execution": (str, lambda a: str(a.execution)),
            "breach": (str, lambda a: a.breach.value),
            "phase": (str, lambda a: phase_name(a.phase)),
            "allowed": (str, lambda a: format_duration(a.allowed)),
            "ended_phase": (
                str | None,
                lambda a: phase_name(a.ended_phase) if a.ended_phase is not None else None,
            ),
        },
        doc="A breach a deadline alerted about, and how its execution ended.",
    )

    ExecutionDetail = view(
        Execution,
        name="ExecutionDetail",
        hide={"terminal_phase", "source"},
        show={
            "id": (Ids, lambda e: ids_view(e.id)),
            "launch_plan": (Entity | None, lambda e: entity_view(e.launch_plan)),
            "workflow": (Entity | None, lambda e: entity_view(e.workflow)),
            "notifications_source": (NotificationSource, lambda e: e.source),
            "lookup_error": (str | None, lambda e: e.lookup_error or None),
            "notifications": (
                list[dict[str, Any]],
                lambda e: [n.to_dict() for n in e.notifications],
            ),
            "rules": (list[RuleView], lambda e: [RuleView.of(rule) for rule in e.rules]),
        },
        extra={
            "events": list[EventView],
            "deliveries": list[DeliveryView],
            "actions": list[ActionView],
            "acknowledgements": list[AcknowledgementView],
        },
        doc="An execution: where its notifications came from, its events, deliveries, the"
        " actions asked on it and who acknowledged it.",
    )


def silence_view(silence: Silence, now: datetime, **extra: Any) -> View:
    """The view of ``silence`` with its state at ``now`` (and when it next starts)."""
    return SilenceView.of(
        silence,
        state=silences.state(silence, now).value,
        next_start=silences.next_start(silence, now),
        **extra,
    )


class LaunchPlanView(Shape):
    """A launch plan version's notifications as registered (their JSON form), and, when
    just registered, the recipients no configured channel can reach."""

    id: Entity
    notifications: list[dict[str, Any]]
    warnings: list[Problem] | None = Field(
        default=None, description="Recipients no configured channel can reach, or [allow] refuses"
    )
    _absent_when_none = frozenset({"warnings"})


class ExecutionView(Shape):
    """An execution as created: its notifications, frozen now."""

    id: Ids
    launch_plan: Entity | None
    workflow: Entity | None
    notifications: list[dict[str, Any]]
    created_at: Time
    warnings: list[Problem] = Field(
        description="Recipients no configured channel can reach, or [allow] refuses"
    )


class CloudEventView(Shape):
    id: str
    type: str
    source: str


class EventResultView(Shape):
    """What an event did: its outcome, and the deliveries a first terminal phase enqueued."""

    outcome: Literal[
        "enqueued", "duplicate", "after_terminal", "no_notifications", "recorded", "ignored"
    ]
    delivery_ids: list[int] | None = None
    cloud_event: CloudEventView | None = None
    _absent_when_none = frozenset({"delivery_ids", "cloud_event"})

    @classmethod
    def of(cls, result: EventResult, cloud_event: CloudEventView | None = None) -> EventResultView:
        enqueued = result.outcome is EventOutcome.ENQUEUED
        return cls(
            outcome=result.outcome.value,
            delivery_ids=list(result.delivery_ids) if enqueued else None,
            cloud_event=cloud_event,
        )


class Rejected(Shape):
    """An event of a batch that was not recorded, and why."""

    outcome: Literal["rejected"] = "rejected"
    problems: list[Problem] = Field(min_length=1)


class BatchResults(Shape):
    results: list[EventResultView | Rejected]


class ErrorBody(Shape):
    """Every 4xx and 5xx: what went wrong, and each problem with the field it names."""

    error: str
    problems: list[Problem]


class Health(Shape):
    status: Literal["ok"] = "ok"


class DatabaseState(Shape):
    schema_version: int | None = None
    schema_expected: int | None = None
    error: str | None = None
    _absent_when_none = frozenset({"schema_version", "schema_expected", "error"})


class WorkersState(Shape):
    """The processes dispatching for ``serve``: this one and its workers (``[server] workers``)."""

    running: int
    wanted: int


class Readiness(Shape):
    """Whether this process can do its work: its database, channels and intake sources.

    ``workers`` says how many dispatching processes run; fewer than wanted (a
    worker being restarted) leaves the service ready: this process dispatches too.
    """

    status: Literal["ready", "unavailable"]
    database: DatabaseState
    channels: dict[str, str]  # configured, dev-inbox or unconfigured
    intake: dict[str, SourceView] | None = None
    workers: WorkersState | None = None
    _absent_when_none = frozenset({"intake", "workers"})


class DeliveryPage(Shape):
    """A page of deliveries: ``next`` is the cursor of the next page (None: the last)."""

    items: list[DeliveryView]
    next: str | None


class InboxPage(Shape):
    """A page of the dev inbox: ``next`` is the cursor of the next page (None: the last)."""

    items: list[InboxView]
    next: str | None


class NamedRuleList(Shape):
    items: list[NamedRuleView]


class SilencePage(Shape):
    """A page of silences, newest first: ``next`` is the cursor of the next page
    (None: the last)."""

    items: list[SilenceView]
    next: str | None


class ActionList(Shape):
    """An execution's actions, in the order they were asked, whatever came of them."""

    items: list[ActionView]


class DeadlineList(Shape):
    items: list[DeadlineView]


# -- requests ------------------------------------------------------------------------------


# A notification in flyteidl's JSON mapping: its parser (notification_files) checks
# it and names each mistake's field; its schema is written by hand.
NotificationJson = Annotated[
    dict[str, Any], WithJsonSchema({"$ref": "#/components/schemas/Notification"})
]


class ExecutionIdBody(Request):
    project: Project
    domain: Domain
    name: Name


class EntityIdBody(ExecutionIdBody):
    version: AnyVersion = ""


def _not_null(schema: dict[str, Any]) -> None:
    """An optional field that, given, must not be null: its schema says so too."""
    choices = schema.pop("anyOf", None)
    if choices is not None:
        schema.update(next(choice for choice in choices if choice.get("type") != "null"))
    schema.pop("default", None)


class LaunchPlanBody(Request):
    """A launch plan version's notifications, in the JSON form of flytekit's objects."""

    version: Version
    notifications: list[NotificationJson] = []


class ExecutionBody(Request):
    """An execution to create; its notifications are frozen now, as FlyteAdmin does."""

    id: ExecutionIdBody
    # Absent: none. A field given must be valid: null is not "left out" here.
    launch_plan: EntityIdBody | None = Field(default=None, json_schema_extra=_not_null)
    workflow: EntityIdBody | None = Field(default=None, json_schema_extra=_not_null)
    notifications: list[NotificationJson] = []
    disable_all: StrictBool = False

    @field_validator("launch_plan", "workflow", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must be an object with project, domain and name, got None")
        return value


class ApprovalBody(Request):
    """Approve or reject a boolean gate."""

    action: Literal["approve", "reject"]
    signal_id: Name = Field(
        description="The gate: a Flyte 1 signal id, a Flyte 2 condition (its action's name"
        " or its own)"
    )


GateText = Annotated[StrictStr, Field(max_length=MAX_TEXT_VALUE, pattern=f"^[^{NO_CONTROL[:6]}]*$")]


class SignalBody(Request):
    """Give a gate a value of its type (bool, int, float, str)."""

    action: Literal["signal"]
    signal_id: Name = Field(
        description="The gate: a Flyte 1 signal id, a Flyte 2 condition (its action's name"
        " or its own)"
    )
    value: StrictBool | StrictInt | StrictFloat | GateText


class ExecutionActionBody(Request):
    """Act on the whole execution: relaunch, recover or abort it."""

    action: Literal["relaunch", "recover", "abort"]


_ACTION_BODIES: dict[str, type[Request]] = {
    **dict.fromkeys(("approve", "reject"), ApprovalBody),
    "signal": SignalBody,
    **dict.fromkeys(("relaunch", "recover", "abort"), ExecutionActionBody),
}


class ActionBody(RootModel[Annotated[
    ApprovalBody | SignalBody | ExecutionActionBody, Field(discriminator="action")
]]):  # fmt: skip
    """What to do on Flyte: its shape depends on ``action`` (the document's one of)."""


class SlackInteraction(Request):
    """Slack's interactivity callback, form-encoded: ``payload`` is the JSON of a
    ``block_actions`` interaction (a click on a message's button)."""

    payload: str


class MattermostAction(Request):
    """Mattermost's call when someone clicks a message button: who clicked, on which
    post, and the button's ``context`` (what it asks, until when, and its HMAC)."""

    model_config = ConfigDict(frozen=True, extra="allow")  # Mattermost adds fields over time

    user_id: str
    user_name: str = ""
    post_id: str = ""
    channel_id: str = ""
    context: dict[str, Any]


class SlackAnswer(Shape):
    """What Slack is answered: nothing when the message was updated; otherwise an
    ephemeral text for the person who clicked; for a form's submission with a wrong
    value, the error to show under its field (``response_action`` ``errors``)."""

    response_type: Literal["ephemeral"] | None = None
    replace_original: bool | None = None
    text: str | None = None
    response_action: Literal["errors"] | None = None
    errors: dict[str, str] | None = None

    _absent_when_none: ClassVar[frozenset[str]] = frozenset(
        {"response_type", "replace_original", "text", "response_action", "errors"}
    )

    @classmethod
    def ephemeral(cls, text: str) -> SlackAnswer:
        return cls(response_type="ephemeral", replace_original=False, text=text)


class MattermostUpdate(Shape):
    message: str
    props: dict[str, Any] = Field(default_factory=dict)


class MattermostAnswer(Shape):
    """What Mattermost is answered: the post as it now reads (``update``), or a text
    only the person who clicked sees (``ephemeral_text``)."""

    update: MattermostUpdate | None = None
    ephemeral_text: str | None = None

    _absent_when_none: ClassVar[frozenset[str]] = frozenset({"update", "ephemeral_text"})


def parse_action(data: Any) -> ApprovalBody | SignalBody | ExecutionActionBody:
    """A request to act, by the shape its ``action`` names: each mistake named by its field
    (``value``, not the union's branch)."""
    if not isinstance(data, dict):
        raise InputError(Problem("body", f"must be an object, got {type(data).__name__}"))
    action = data.get("action")
    model = _ACTION_BODIES.get(action) if isinstance(action, str) else None
    if model is None:
        names = ", ".join(kind.value for kind in ActionKind)
        raise InputError(Problem("action", f"must be one of {names}, got {data.get('action')!r}"))
    found: ApprovalBody | SignalBody | ExecutionActionBody = parse(model, data)  # type: ignore[assignment]
    return found


class NamedDeliveryBody(Request):
    """What ``NamedDelivery(name=NAME)`` means for a scope: to whom."""

    recipients: list[Recipient] = Field(min_length=1)
    project: ScopePart = ""
    domain: ScopePart = ""


class NamedRuleBody(NamedDeliveryBody):
    """What ``NamedRule(NAME)`` means for a scope: when, and to whom."""

    phases: list[RulePhase] = Field(min_length=1)


def _checked(check: Callable[[str], list[Problem]]) -> AfterValidator:
    def run(value: str) -> str:
        found = check(value)
        if found:
            raise ValueError(found[0].message)
        return value

    return AfterValidator(run)


def _time(raw: Any) -> datetime:
    # A string only: a number would be read as Unix seconds, which the schema does not say.
    if not isinstance(raw, str):
        raise ValueError(f"must be an ISO 8601 time with a time zone, got {type(raw).__name__}")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"must be an ISO 8601 time with a time zone, got {raw!r}") from None


def _duration(raw: Any) -> int:
    if isinstance(raw, float):  # JSON 28800.0 is a number of seconds too, not a mistake
        raise ValueError(f"must be whole seconds or a duration such as 8h, got {raw!r}")
    return silences.parse_duration(raw)


AUTHOR = {
    "type": "string",
    "pattern": f"^[^\\s{NO_CONTROL}][^{NO_CONTROL}]{{0,{silences.AUTHOR_LIMIT - 1}}}$",
    "description": "who: a name or an address",
}
Author = Annotated[str, _checked(silences.author_problems), WithJsonSchema(AUTHOR)]
Comment = Annotated[
    str,
    _checked(silences.comment_problems),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": silences.COMMENT_LIMIT,
            "pattern": "^[^\\u0000]*\\S[^\\u0000]*$",
        }
    ),
]
AwareTime = Annotated[
    datetime,
    BeforeValidator(_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Duration = Annotated[
    int,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "integer",
                    "minimum": silences.MIN_DURATION,
                    "maximum": silences.MAX_DURATION,
                },
                {"type": "string", "pattern": "^[0-9]{1,10}$"},
                {"type": "string", "pattern": DURATION_PATTERN},
            ],
            "description": "seconds, or a duration such as 8h, 90m, 1h30m",
        }
    ),
]


class RecurrenceBody(Request):
    """When a recurring silence is in effect: a window opens whenever ``cron`` fires on
    the wall clock of ``timezone`` and lasts ``duration`` of that wall clock."""

    cron: str = Field(
        max_length=silences.CRON_LIMIT,
        description="five fields (minute hour day-of-month month day-of-week), or @daily...",
    )
    duration: Duration
    timezone: str = Field(max_length=64, description="an IANA name: Europe/Paris, UTC")


class SilenceBody(Request):
    """A silence to create. Every matcher is optional; one that matches everything
    must say ``all: true``. One-off: ``ends_at`` (``starts_at``: now if left out);
    recurring: ``recurring``, between ``starts_at`` and ``ends_at`` when given."""

    project: Project | None = None
    domain: Domain | None = None
    launch_plan: Name | None = Field(
        default=None, description="a launch plan's name, any version (a Flyte 2 run's task)"
    )
    trigger: Name | None = Field(default=None, description="a Flyte 2 trigger: the runs it started")
    phases: Annotated[list[RulePhase], Field(min_length=1)] | None = None
    recipient: Recipient | None = Field(
        default=None, description="exact, or a form an [allow] entry names (a domain)"
    )
    all: StrictBool = False
    starts_at: AwareTime | None = None
    ends_at: AwareTime | None = None
    recurring: RecurrenceBody | None = None
    comment: Comment
    author: Author

    def silence(self, now: datetime) -> Silence:
        recurring = self.recurring
        return Silence(
            project=self.project,
            domain=self.domain,
            launch_plan=self.launch_plan,
            trigger=self.trigger,
            phases=frozenset(self.phases or ()),
            recipient=self.recipient,
            all=self.all,
            starts_at=self.starts_at or now,
            ends_at=self.ends_at,
            recurring=Recurrence(recurring.cron, recurring.duration, recurring.timezone)
            if recurring is not None
            else None,
            comment=self.comment,
            author=self.author,
        )


class SilenceEndBody(Request):
    """Ending a silence: who ends it, and whether what it held is sent now."""

    author: Author
    release: StrictBool = Field(
        default=False, description="send what it held now (pending again, due at once)"
    )


class DeadlineBody(DeadlineSpec):
    """A deadline's definition, as ``PUT /api/v1/deadlines/{project}/{domain}/{name}`` takes it
    (the configuration file's ``[deadlines.NAME]`` says the same, with its project and
    domain). Durations are written ``90s``, ``10m``, ``2h``, ``1d`` or ``1h30m``;
    ``schedule`` is a cron expression in UTC; at most one of ``launch_plan``, ``task``
    and ``trigger`` selects the executions (none: every one of the project and
    domain)."""


# -- queries (strings, as query parameters come) ---------------------------------------------


class Query(Shape):
    """Query parameters: others are ignored. One given empty is a mistake, not an absent one."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def _digits(name: str, low: int, high: int) -> BeforeValidator:
    """ASCII digits within ``low``..``high``: what ``str.isdigit`` would also accept is refused."""

    def read(raw: Any) -> int:
        try:
            return parse_int(str(raw), name, low, high)
        except InputError as error:
            raise ValueError(error.problems[0].message) from None

    return BeforeValidator(read)


class PartError(ValueError):
    """A mistake in one part of a field's value (``execution.name``)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


def _execution(raw: str) -> ExecutionId:
    execution = ExecutionId.parse(raw)
    parts = {"project": execution.project, "domain": execution.domain, "name": execution.name}
    found = id_problems(parts, "")
    if found:
        raise PartError(found[0].field, found[0].message)
    return execution


def _since(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise ValueError(f"must be a finite number of seconds, got {raw!r}")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"must be an ISO 8601 time or Unix seconds, got {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _status(raw: str) -> DeliveryStatus:
    try:
        return DeliveryStatus(raw)
    except ValueError:
        raise ValueError(f"must be one of {', '.join(s.value for s in DeliveryStatus)}") from None


def _message_id(raw: str) -> str:
    if not 0 < len(raw) <= MAX_MESSAGE_ID or "\x00" in raw:
        raise ValueError(f"must be a message id (1 to {MAX_MESSAGE_ID} characters, no NUL)")
    return raw


Cursor = Annotated[
    int,
    _digits("cursor", 0, MAX_INT),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_INT}),
]
Limit = Annotated[
    int,
    _digits("limit", 1, MAX_LIMIT),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
]
SilenceId = Annotated[
    int,
    _digits("silence", 1, MAX_INT),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_INT}),
]


def _boolean(raw: Any) -> bool:
    # "true" or "false" as a query says them; not every spelling pydantic would take.
    if raw in ("true", "false"):
        return bool(raw == "true")
    raise ValueError(f"must be true or false, got {raw!r}")


class DeliveryQuery(Query):
    """Which deliveries to list, a page at a time (``cursor``: the previous page's ``next``)."""

    execution: (
        Annotated[
            ExecutionId,
            BeforeValidator(_execution),
            WithJsonSchema(
                {
                    "type": "string",
                    "pattern": "^"
                    + "/".join(
                        f"[^{NO_CONTROL}/]{{1,{IDENTIFIER_LIMITS[part]}}}"
                        for part in ("project", "domain", "name")
                    )
                    + "$",
                    "description": "project/domain/name",
                }
            ),
        ]
        | None
    ) = None
    status: (
        Annotated[
            DeliveryStatus,
            BeforeValidator(_status),
            WithJsonSchema({"type": "string", "enum": [s.value for s in DeliveryStatus]}),
        ]
        | None
    ) = None
    # Channel names follow the identifier rules (no NUL for PostgreSQL).
    channel: ChannelName | None = None
    message: (
        Annotated[
            str,
            AfterValidator(_message_id),
            WithJsonSchema(
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_MESSAGE_ID,
                    "pattern": "^[^\\x00]*$",
                    "description": "a message id (digest:... or single:...):"
                    " the deliveries it carried",
                }
            ),
        ]
        | None
    ) = None
    since: (
        Annotated[
            float,
            BeforeValidator(_since),
            WithJsonSchema(
                {
                    "anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}],
                    "description": "ISO 8601 time or Unix seconds",
                }
            ),
        ]
        | None
    ) = None
    silence: SilenceId | None = Field(default=None, description="the deliveries it held")
    cursor: Cursor = 0
    limit: Limit = 100

    def store_filter(self) -> DeliveryFilter:
        return DeliveryFilter(
            execution=self.execution,
            status=self.status,
            channel=self.channel,
            since=self.since,
            after_id=self.cursor or None,
            message=self.message,
            silence=self.silence,
            limit=self.limit,
        )


class PageQuery(Query):
    cursor: Cursor = 0
    limit: Limit = 100


class SilenceQuery(Query):
    """Which silences to list, newest first (``cursor``: the previous page's ``next``);
    ``active``: only those in effect now (true) or only the others (false)."""

    active: (
        Annotated[bool, BeforeValidator(_boolean), WithJsonSchema({"type": "boolean"})] | None
    ) = None
    cursor: Cursor = 0
    limit: Limit = 100


class ScopeQuery(Query):
    """The scope of one named rule or delivery: empty is every project (domain)."""

    project: ScopePart = ""
    domain: ScopePart = ""


# -- mistakes, named -------------------------------------------------------------------------


def parse(model: type[_S], data: Any) -> _S:
    """``data`` as ``model``, or :class:`~flytenotify.errors.InputError` naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputError(problems_of(error)) from None


def problems_of(error: ValidationError) -> list[Problem]:
    """pydantic's errors as the API says them: ``recipients[1]``, one message each."""
    problems = []
    for item in error.errors():
        field = _field_path(item["loc"])
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, PartError):
            field = f"{field}.{cause.part}"
        problems.append(Problem(field, _message(item)))
    return problems


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith(("function-", "constrained-")):
            path += f".{part}" if path else str(part)
    return path


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "extra_forbidden": lambda given: "unknown field",
    "missing": lambda given: "is required",
    "string_type": lambda given: f"must be a string, got {type(given).__name__}",
    "bool_type": lambda given: f"must be true or false, got {given!r}",
    "list_type": lambda given: f"must be a list, got {type(given).__name__}",
    "too_short": lambda given: "must not be empty",
    "dict_type": lambda given: f"must be an object, got {type(given).__name__}",
    "model_type": lambda given: f"must be an object, got {type(given).__name__}",
    "model_attributes_type": lambda given: f"must be an object, got {type(given).__name__}",
}


def _message(item: Any) -> str:
    kind = item["type"]
    if kind == "value_error":
        return str(item["ctx"]["error"])
    said = _MESSAGES.get(kind)
    return said(item.get("input")) if said is not None else str(item["msg"])
