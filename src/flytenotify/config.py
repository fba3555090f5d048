"""Typed configuration, validated in one place.

Every section is a pydantic model: a bad value is reported with the dotted
path of its key (``smtp.port``) and what is wrong with it. The service loads
the same objects from a TOML file and the environment; a script builds them
in Python.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_origin

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    SecretStr,
    StrictBool,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from flytenotify import store
from flytenotify.channels import registry
from flytenotify.channels._url_policy import UrlPattern
from flytenotify.channels.base import ChannelSpec
from flytenotify.channels.registry import recipient_kind
from flytenotify.domain import (
    ActionKind,
    Actor,
    Deadline,
    DeadlineId,
    EntityId,
    ExecutionId,
    GroupRule,
    SlowerThan,
)
from flytenotify.intake import registry as intakes
from flytenotify.intake.limits import (
    RECIPIENT,
    identifier_pattern,
    identifier_problems,
    recipient_problems,
)
from flytenotify.intake.source import IntakeSpec
from flytenotify.schedules import (
    CRON_MAX_LENGTH,
    CRON_PATTERN,
    DURATION_EXAMPLES,
    DURATION_PATTERN,
    check_cron,
    format_duration,
    parse_duration,
)
from flytenotify.sections import FlyteAuth, Section, read_secret


class TemplateConfig(Section):
    """Subject and body templates (FlyteAdmin's ``{{ key }}`` syntax).

    None means the built-in default of :mod:`flytenotify.engine.render`. A
    notification's own ``template`` replaces ``body`` for that notification.
    """

    subject: str | None = None
    body: str | None = None
    console_url: str | None = None  # e.g. https://flyte.example.com/console
    # Where people reach this flytenotify: digests link to the list of what they carried.
    public_url: str | None = None  # e.g. https://flytenotify.example.com


class RetryConfig(Section):
    """When to try a failed delivery again, and when to give up."""

    max_attempts: int = Field(default=12, ge=1)
    max_age: float = Field(default=24 * 3600.0, gt=0)  # seconds since the delivery was created
    base_delay: float = Field(default=2.0, gt=0)
    max_delay: float = Field(default=600.0, gt=0)
    # Seconds a claim holds a delivery; renewed while its send is in progress, so
    # only a dead process's rows become claimable again, this long after it died.
    lease: float = Field(default=10.0, gt=0)


class DispatchConfig(Section):
    """How much is sent at once.

    Under latency the delivery rate is (sends in flight) / (provider latency),
    so the limits are sized from the rate wanted times the worst latency
    expected: 1,000 deliveries/s at 300 ms is 300 in flight. Per destination (a
    channel and its host or relay) the number in flight adapts (AIMD): it
    starts at ``initial_per_destination``, grows while the destination answers
    2xx, halves on 429, 5xx, timeouts and refused connections, and never
    exceeds ``max_per_destination``, the channel's own cap (``per_channel``,
    ``smtp.pool_size``) or, over every destination, ``max_in_flight``.
    """

    model_config = ConfigDict(populate_by_name=True)

    # Every send in flight holds a socket and a task (a few KiB each): the budget
    # for the whole process. ``concurrency`` is its earlier name.
    max_in_flight: int = Field(
        default=2048, ge=1, validation_alias=AliasChoices("max_in_flight", "concurrency")
    )
    # 1,024 in flight carry 3,400 deliveries/s from a provider 300 ms away,
    # more than one process's CPU allows; beyond it, add replicas (each has its
    # own). A burst gets all of them at once: starting at 512 held a burst's
    # second half back for a whole round trip (2,000 webhooks at 200 ms from
    # two processes: 2,700/s at 512, 3,600-4,000/s at 1,024). A provider that
    # cannot take that many answers 429/5xx or times out, and the limit halves,
    # then grows back while it answers 2xx. Each webhook in flight costs about
    # 17 KiB: 1,024 of them, 17 MiB.
    initial_per_destination: int = Field(default=1024, ge=1)
    max_per_destination: int = Field(default=1024, ge=1)
    adaptive: bool = True  # false: every destination gets max_per_destination from the start
    # Slack sends to one channel are paced (about 1/s), so a paced send holds
    # a slot while it waits: cap Slack so it cannot starve the other channels.
    per_channel: dict[str, int] = Field(default_factory=lambda: {"slack": 8})
    # The most rows of one channel claimed in one round trip; a claim asks for
    # only as many as there is room for in flight, up to this.
    batch_size: int = Field(default=512, ge=1)
    shutdown_grace: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _initial_within_max(self) -> Self:
        if self.initial_per_destination > self.max_per_destination:
            raise ValueError(
                f"initial_per_destination ({self.initial_per_destination}) is above "
                f"max_per_destination ({self.max_per_destination})"
            )
        return self


# What a group key may be made of, besides the destination (channel + recipient).
GroupPart = Literal["launch_plan", "phase", "project", "domain", "error_kind"]
DEFAULT_GROUP_BY: tuple[GroupPart, ...] = ("launch_plan", "phase")


class RecoveryConfig(Section):
    """``[recovery]``: "nightly_etl succeeded again after 3 failures".

    When an execution of a launch plan (a Flyte 2 run of a task) succeeds after
    failures that notified somebody, one message goes to each destination the
    last of them went to, in its conversation. ``exclude`` names launch plans
    (tasks) that send none: ``name`` for every project and domain, or
    ``project/domain/name``.
    """

    enabled: bool = True
    exclude: list[str] = Field(default_factory=list)

    @field_validator("exclude")
    @classmethod
    def _plan_names(cls, names: list[str]) -> list[str]:
        for name in names:
            parts = name.split("/")
            if len(parts) not in (1, 3) or not all(part.strip() for part in parts):
                raise ValueError(f"expected NAME or PROJECT/DOMAIN/NAME, got {name!r}")
        return names

    def excludes(self, project: str, domain: str, name: str) -> bool:
        """Whether the launch plan (task) ``project/domain/name`` sends no recovery messages."""
        return name in self.exclude or f"{project}/{domain}/{name}" in self.exclude


class GroupingOverride(Section):
    """``[grouping.channels.NAME]``: one channel's grouping, where it differs."""

    enabled: bool = True
    by: list[GroupPart] | None = None
    window: float | None = Field(default=None, gt=0)
    max_size: int | None = Field(default=None, ge=1, le=1000)


class GroupingConfig(Section):
    """``[grouping]``: alert storms folded into digests.

    Deliveries to one destination whose key parts (``by``) agree form a group.
    The first of a quiet group goes out at once; those due while its window is
    open wait, then go out together as digests of at most ``max_size``
    executions. ``by = []`` turns grouping off.
    """

    by: list[GroupPart] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    window: float = Field(default=10.0, gt=0)  # seconds
    max_size: int = Field(default=100, ge=1, le=1000)  # executions per digest message
    channels: dict[str, GroupingOverride] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, channels: dict[str, GroupingOverride]) -> dict[str, GroupingOverride]:
        known = {*registry.names(), registry.INBOX}
        unknown = sorted(set(channels) - known)
        if unknown:
            raise ValueError(
                f"no channel named {', '.join(map(repr, unknown))}; channels: {sorted(known)}"
            )
        return channels

    def key_parts(self, channel: str) -> tuple[str, ...]:
        """The key parts of ``channel``'s groups; empty: its deliveries are not grouped."""
        override = self.channels.get(channel)
        if override is None:
            return tuple(self.by)
        if not override.enabled:
            return ()
        return tuple(self.by if override.by is None else override.by)

    def rule(self, channel: str) -> GroupRule:
        """How ``channel``'s groups are claimed: their window and digest size."""
        override = self.channels.get(channel) or GroupingOverride()
        return GroupRule(
            window=self.window if override.window is None else override.window,
            max_size=self.max_size if override.max_size is None else override.max_size,
        )


# -- deadlines ------------------------------------------------------------------------------


def _scoped(part: str) -> Callable[[str], str]:
    """The identifier rule of a project or domain (required), its messages the intake's."""

    def check(value: str) -> str:
        problems = identifier_problems(value, "", part)
        if problems:
            raise ValueError(problems[0].message)
        return value

    return check


def _selector(value: str) -> str:
    problems = identifier_problems(value, "", "name", required=False)
    if problems:
        raise ValueError(problems[0].message)
    return value


# A launch plan's, task's or trigger's name (empty: not given).
SelectorName = Annotated[
    str,
    AfterValidator(_selector),
    WithJsonSchema({"type": "string", "pattern": identifier_pattern("name", 0)}),
]


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError(
            f"must be a duration string such as {DURATION_EXAMPLES}, got {type(value).__name__}"
        )
    return parse_duration(value)


# A duration as written (``10m``), read as seconds.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a cron expression string, got {type(value).__name__}")
    return check_cron(value)


Cron = Annotated[
    str,
    BeforeValidator(_cron),
    WithJsonSchema({"type": "string", "pattern": CRON_PATTERN, "maxLength": CRON_MAX_LENGTH}),
]


_RECIPIENT = re.compile(str(RECIPIENT["pattern"]))


def _deadline_recipient(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError("must not be empty")
    problems = recipient_problems(value, "")
    if problems:
        raise ValueError(problems[0].message)
    if not _RECIPIENT.match(value):
        raise ValueError(f"must start with a visible character, got {value!r}")
    _, address = recipient_kind(value)
    malformed = registry.malformed(address)
    if malformed is not None:
        raise ValueError(f"{value!r} is no recipient: {malformed}")
    return value


# A recipient in the syntax notifications use, checked to be one address.
DeadlineRecipient = Annotated[str, BeforeValidator(_deadline_recipient), WithJsonSchema(RECIPIENT)]
MAX_DEADLINE_RECIPIENTS = 50
MAX_OF_LAST = 1000  # runs a series keeps (store: prune_durations)


class SlowerThanConfig(Section):
    """Slower than the ``percentile`` of the last ``of_last`` successful runs' durations,
    judged once ``min_runs`` of them are known."""

    percentile: Annotated[float, Field(strict=True, gt=0, le=100)]
    of_last: Annotated[int, Field(strict=True, ge=1, le=MAX_OF_LAST)] = 20
    min_runs: Annotated[int, Field(strict=True, ge=1, le=MAX_OF_LAST)] = 5

    @model_validator(mode="after")
    def _enough_runs_asked(self) -> Self:
        if self.min_runs > self.of_last:
            raise _field_error(
                type(self),
                "min_runs",
                self.min_runs,
                f"is more than of_last ({self.of_last}): it could never be reached",
            )
        return self

    def value(self) -> SlowerThan:
        return SlowerThan(self.percentile, self.of_last, self.min_runs)


def _field_error(model: type[Any], field: str, value: Any, message: str) -> ValidationError:
    """A mistake between fields, named by the one to change (not the whole section)."""
    error = InitErrorDetails(
        type="value_error", loc=(field,), input=value, ctx={"error": ValueError(message)}
    )
    return ValidationError.from_exception_data(model.__name__, [error])


# At most one of these selects which executions a deadline watches.
_SELECTORS = ("launch_plan", "task", "trigger")


class DeadlineSpec(Section):
    """What a deadline says, wherever it is written: the HTTP API's body, the CLI's
    options, the configuration file's ``[deadlines.NAME]`` (with its project and
    domain). See :class:`flytenotify.domain.Deadline`."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "not": {
                "anyOf": [
                    {"required": list(pair)}
                    for pair in (
                        ("launch_plan", "task"),
                        ("launch_plan", "trigger"),
                        ("task", "trigger"),
                    )
                ]
            }
        },
    )

    launch_plan: SelectorName = ""
    task: SelectorName = ""
    trigger: SelectorName = ""
    max_queued: Duration | None = None
    max_running: Duration | None = None
    schedule: Cron | None = None
    start_within: Duration | None = None
    slower_than: SlowerThanConfig | None = None
    recipients: list[DeadlineRecipient] = Field(min_length=1, max_length=MAX_DEADLINE_RECIPIENTS)
    resolve: StrictBool = True

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        """The rules between fields, each mistake named by the field to change."""
        selected = [name for name in _SELECTORS if getattr(self, name)]
        if len(selected) > 1:
            raise _field_error(
                type(self),
                selected[-1],
                getattr(self, selected[-1]),
                f"give one of launch_plan, task and trigger, not {' and '.join(selected)}",
            )
        if self.schedule is not None and self.start_within is None:
            raise _field_error(
                type(self),
                "start_within",
                None,
                "is required with schedule: how soon after each fire time a run must start",
            )
        if self.start_within is not None and self.schedule is None and not self.launch_plan:
            raise _field_error(
                type(self),
                "schedule",
                None,
                "is required with start_within, unless a Flyte 1 launch_plan is named"
                " (whose own schedule FlyteAdmin has)",
            )
        watched = (self.max_queued, self.max_running, self.start_within, self.slower_than)
        if all(value is None for value in watched):
            raise _field_error(
                type(self),
                "max_queued",
                None,
                "a deadline needs at least one of max_queued, max_running, start_within"
                " and slower_than",
            )
        return self

    def deadline(self, ident: DeadlineId, source: str = "api") -> Deadline:
        """The deadline this says, named ``ident``."""
        return Deadline(
            id=ident,
            recipients=tuple(dict.fromkeys(self.recipients)),
            launch_plan=self.launch_plan,
            task=self.task,
            trigger=self.trigger,
            max_queued=self.max_queued,
            max_running=self.max_running,
            schedule=self.schedule or "",
            start_within=self.start_within,
            slower_than=self.slower_than.value() if self.slower_than is not None else None,
            resolve=self.resolve,
            source=source,
        )


class DeadlineConfig(DeadlineSpec):
    """``[deadlines.NAME]``: a deadline defined in the configuration file (read-only
    over the API and the CLI), for the executions of ``project`` and ``domain``."""

    project: Annotated[str, AfterValidator(_scoped("project"))]
    domain: Annotated[str, AfterValidator(_scoped("domain"))]


class DatabaseConfig(Section):
    """Where the ledger lives: a SQLite file path, or a database URL."""

    url: str = "sqlite:///flytenotify.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        return store.database_url(url)

    @property
    def sqlite_path(self) -> Path | None:
        return store.sqlite_path(self.url)


class FlyteAdminConfig(FlyteAuth):
    """Where FlyteAdmin's gRPC API is, and how to authenticate to it.

    An event for an execution flytenotify has not seen is resolved by asking
    FlyteAdmin (``AdminService.GetExecution``) for the notifications it stored
    for that execution.
    """

    endpoint: str  # host:port of FlyteAdmin's gRPC API, e.g. "flyteadmin:81"
    insecure: bool = False  # plaintext gRPC (no TLS)
    cache_ttl: float = Field(default=3600.0, ge=0)  # how long a looked-up execution is kept

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, endpoint: str) -> str:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, got {endpoint!r}")
        return endpoint


class AllowConfig(Section):
    """Who may be messaged, per channel; a list that is not set allows anyone.

    Keys are channel names (``email``, ``slack``, ``pagerduty``, ``webhook``,
    ``teams``, ``mattermost``). Any API token holder can give an execution its
    own notifications, so without these lists the token is a licence to use the
    SMTP relay, the Slack bot and PagerDuty for any recipient. A recipient
    outside a set list is reported when notifications are registered and its
    delivery is dead-lettered with the reason, never sent. The dev inbox is not
    restricted (nothing leaves it).

    ``inline_webhook_urls`` is the exception: URL patterns a webhook written in
    users' own code (Flyte 2's ``flyte.notify.Slack``, ``Teams``, ``Webhook``)
    may be sent to, and an empty list sends none.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    # scheme://host[:port]/path with * wildcards (channels/_url_policy.py).
    inline_webhook_urls: list[str] = Field(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _channel_lists(cls, data: Any, handler: ModelWrapValidatorHandler[AllowConfig]) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        errors: list[InitErrorDetails] = []
        lists: dict[str, list[str] | None] = {}
        named: dict[str, Any] = {}
        for name, entries in data.items():
            if name in cls.model_fields:
                named[name] = entries
                errors += _url_pattern_errors(name, entries)
                continue
            spec = registry.get(name)
            if spec is None:
                errors.append(_unknown_key(name, entries))
                continue
            if spec.allow_key is not None:
                problem = ValueError(f"{spec.name} is restricted by allow.{spec.allow_key}")
                errors.append(_value_error((name,), entries, problem))
                continue
            try:
                lists[name] = _allow_entries(spec, _ENTRY_LIST.validate_python(entries))
            except ValidationError as error:
                errors += _nested(error, (name,))
            except ValueError as error:
                errors.append(_value_error((name,), entries, error))
        allow: AllowConfig | None = None
        try:
            allow = handler(named)
        except ValidationError as error:
            errors += _nested(error, ())
        if errors or allow is None:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        allow.__pydantic_extra__ = dict(lists)
        return allow

    def entries(self, channel: str) -> list[str] | None:
        """The allow-list of ``channel``, or None when it allows anyone."""
        found: list[str] | None = (self.__pydantic_extra__ or {}).get(channel)
        return found

    @functools.cached_property
    def url_patterns(self) -> tuple[UrlPattern, ...]:
        """``inline_webhook_urls``, parsed (each was checked when the settings were loaded)."""
        return tuple(UrlPattern.parse(text) for text in self.inline_webhook_urls)


def _url_pattern_errors(key: str, entries: Any) -> list[InitErrorDetails]:
    """Each bad pattern of ``[allow] inline_webhook_urls``, named ``key[i]``; what is
    not a list of strings is left to the field's own type."""
    if not isinstance(entries, list | tuple):
        return []
    errors = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            continue
        try:
            UrlPattern.parse(entry)
        except ValueError as error:
            errors.append(_value_error((f"{key}[{i}]",), entry, error))
    return errors


_ENTRY_LIST: TypeAdapter[list[str] | None] = TypeAdapter(list[str] | None)


def _allow_entries(spec: ChannelSpec[Any], entries: list[str] | None) -> list[str] | None:
    if entries is None:
        return None
    for i, entry in enumerate(entries):
        if not entry.strip() or any(c.isspace() for c in entry):
            raise ValueError(f"entry {i} must be a non-empty name without spaces, got {entry!r}")
        problem = spec.allow_entry_problem(entry.lower()) if spec.allow_entry_problem else None
        if problem is not None:
            raise ValueError(f"entry {i} {problem}, got {entry!r}")
    return [entry.lower() for entry in entries]


# What an [[actions.allow]] entry may name: an identity's kind (KIND:VALUE, VALUE "*"
# for any of that kind), or "anonymous" (the API without api_tokens, loopback only).
ACTOR_KINDS = ("api-token", "slack", "slack-group", "mattermost", "email", "teams", "cli")
ANONYMOUS = "anonymous"


def _scope(value: str) -> str:
    if value != value.strip() or "/" in value:
        raise ValueError(f"must be a project or domain name (no spaces or '/'), got {value!r}")
    return value


class ActionGrant(Section):
    """``[[actions.allow]]``: who may do which actions on the executions of a scope.

    ``project`` and ``domain`` empty match every one. ``actors`` are identities
    as actions record them: ``KIND:VALUE`` with KIND one of ``api-token`` (the
    first 16 hex digits of the token's SHA-256), ``slack`` (a user id),
    ``slack-group`` (a user group id: anyone the chat layer vouches is in it),
    ``mattermost`` (a user name), ``email`` (the one person a signed link was
    mailed to), ``teams`` (a ``[teams.NAME]`` webhook's name: whoever reads that
    channel follows its card's signed links), ``cli`` (the local user running
    ``flytenotify act`` on the database); VALUE ``*`` is anyone of that kind.
    ``anonymous`` is whoever calls an API that has no ``api_tokens``.
    """

    project: str = ""
    domain: str = ""
    actions: list[ActionKind] = Field(default_factory=lambda: list(ActionKind), min_length=1)
    actors: list[str] = Field(min_length=1)

    _scopes = field_validator("project", "domain")(_scope)

    @field_validator("actors")
    @classmethod
    def _known_kinds(cls, actors: list[str]) -> list[str]:
        for i, actor in enumerate(actors):
            kind, colon, value = actor.partition(":")
            if actor == ANONYMOUS:
                continue
            if not colon or kind not in ACTOR_KINDS or not value or value != value.strip():
                raise ValueError(
                    f"actor {i} must be {ANONYMOUS!r} or KIND:VALUE with KIND one of"
                    f" {', '.join(ACTOR_KINDS)} (VALUE * for any), got {actor!r}"
                )
        return actors

    def grants(self, actor: Actor, action: ActionKind, execution: ExecutionId) -> bool:
        if not self._covers(action, execution):
            return False
        return any(_names(entry, who) for entry in self.actors for who in _claims(actor))

    def names_kind(
        self, action: ActionKind, execution: ExecutionId, kinds: Collection[str]
    ) -> bool:
        """Whether it lets someone of one of ``kinds`` do ``action`` on ``execution``."""
        if not self._covers(action, execution):
            return False
        return any(entry.partition(":")[0] in kinds for entry in self.actors)

    def _covers(self, action: ActionKind, execution: ExecutionId) -> bool:
        if self.project not in ("", execution.project) or self.domain not in ("", execution.domain):
            return False
        return action in self.actions


def _claims(actor: Actor) -> tuple[str, ...]:
    return (actor.identity, *actor.groups)


def _names(entry: str, identity: str) -> bool:
    """Whether allow entry ``entry`` names ``identity`` (``slack:*`` names every Slack user)."""
    kind, _, value = entry.partition(":")
    if value == "*":
        return identity.partition(":")[0] == kind and bool(identity.partition(":")[2])
    return entry.lower() == identity.lower() if kind == "email" else entry == identity


class ActionsConfig(Section):
    """``[actions]``: who may act on Flyte from flytenotify. No entry: nobody may.

    ``link_secret`` (with ``[templates] public_url``) puts signed links in emails
    sent to one person and in Teams cards: the answer buttons chat messages
    carry, as links to a confirmation page in the console (``/ui/act``), each
    usable once, until ``link_ttl`` seconds after the message was written, as
    ``email:<recipient>`` or ``teams:<webhook name>``.
    """

    allow: list[ActionGrant] = Field(default_factory=list)
    # Acknowledge and Mute from a message: "anyone" who can see it, or "allowed":
    # only people some [[actions.allow]] entry names, for any action, in the
    # execution's scope (a stranger in a shared channel mutes nothing).
    acknowledge_and_mute: Literal["anyone", "allowed"] = "anyone"
    link_secret: SecretStr | None = None
    link_secret_file: Path | None = None
    link_ttl: float = Field(default=7 * 24 * 3600.0, gt=0)

    _secret_pairs = (("link_secret", "link_secret_file"),)

    def resolved_link_secret(self) -> str | None:
        return read_secret(self.link_secret, self.link_secret_file)

    def permits(self, actor: Actor, action: ActionKind, execution: ExecutionId) -> bool:
        return any(grant.grants(actor, action, execution) for grant in self.allow)

    def offers(self, action: ActionKind, execution: ExecutionId, kinds: Collection[str]) -> bool:
        """Whether some identity of ``kinds`` (``slack``, ``mattermost``...) may do
        ``action`` on ``execution``: a chat message offers its button then."""
        return any(grant.names_kind(action, execution, kinds) for grant in self.allow)

    def permits_answer(self, actor: Actor, execution: ExecutionId) -> bool:
        """Whether ``actor`` may acknowledge ``execution`` or mute its launch plan."""
        if self.acknowledge_and_mute == "anyone":
            return True
        return any(grant.grants(actor, a, execution) for grant in self.allow for a in grant.actions)

    def offers_answers(self, execution: ExecutionId, kinds: Collection[str]) -> bool:
        """Whether a message about ``execution`` on a platform whose users are of
        ``kinds`` offers Acknowledge and Mute."""
        if self.acknowledge_and_mute == "anyone":
            return True
        return any(
            grant.names_kind(a, execution, kinds) for grant in self.allow for a in grant.actions
        )

    def named(self, kind: str) -> set[str]:
        """The values of every entry of ``kind`` (``slack-group`` -> the group IDs
        named anywhere): what a chat platform is asked an actor's membership of."""
        return {
            value
            for grant in self.allow
            for actor in grant.actors
            for found_kind, _, value in [actor.partition(":")]
            if found_kind == kind and value and value != "*"
        }


class WaitingRule(Section):
    """``[waiting.NAME]``: who is told a Flyte 1 execution waits at a gate (``approve()``,
    ``wait_for_input()``), once per gate.

    ``project``, ``domain`` and ``launch_plan`` (its name) select the executions;
    empty matches every one. ``recipients`` are in the syntax notifications use
    (``#channel``, ``pagerduty:KEY``, ``webhook:NAME``, an email address...).
    """

    project: str = ""
    domain: str = ""
    launch_plan: str = ""
    recipients: list[str] = Field(min_length=1)

    _scopes = field_validator("project", "domain", "launch_plan")(_scope)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, recipients: list[str]) -> list[str]:
        for i, recipient in enumerate(recipients):
            if not recipient.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in recipient):
                raise ValueError(
                    f"recipient {i} must be a non-empty name without control characters,"
                    f" got {recipient!r}"
                )
        return recipients

    def scoped(self, project: str, domain: str) -> bool:
        return self.project in ("", project) and self.domain in ("", domain)

    def applies_to(self, execution: ExecutionId, launch_plan: EntityId | None) -> bool:
        plan = launch_plan.name if launch_plan is not None else ""
        return self.scoped(execution.project, execution.domain) and self.launch_plan in ("", plan)


# A bearer token is the only thing between the network and the SMTP relay, so
# it must resist guessing: 32 characters of secrets.token_urlsafe(32) carry
# about 190 bits. The rule holds on loopback binds too: other local users and
# processes reach 127.0.0.1, and a config file moves to production unchanged.
MIN_TOKEN_LENGTH = 32
TOKEN_ADVICE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def token_problem(token: str) -> str | None:
    """Why ``token`` is not acceptable as an API token, or None; never echoes the token."""
    if not token.strip():
        return "is blank"
    if any(c.isspace() for c in token):
        return "contains whitespace, which a 'Bearer <token>' header cannot carry"
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"is {len(token)} characters long; at least {MIN_TOKEN_LENGTH} are required"
            " so that it cannot be guessed"
        )
    return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the platform
    tells it (a container limited to 2 of 64 cores gets 2), else every core."""
    process_cpu_count: Callable[[], int | None] | None = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:  # Python 3.13+
        return process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class ServerConfig(Section):
    """``[server]``: how the HTTP service listens and who may call it."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Processes ``serve`` runs (role ``all``): one serves the API and dispatches,
    # the others only dispatch. One process's event loop uses one core.
    workers: int = Field(default_factory=usable_cores, ge=1)
    api_tokens: list[SecretStr] = Field(default_factory=list)
    api_tokens_file: Path | None = None  # one token per line; blank lines and # comments skipped
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    dev_inbox: bool = True

    @field_validator("api_tokens")
    @classmethod
    def _strong_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        problems = [
            f"token {i + 1} {problem}"
            for i, token in enumerate(tokens)
            if (problem := token_problem(token.get_secret_value())) is not None
        ]
        if problems:
            raise ValueError(f"{'; '.join(problems)}; {TOKEN_ADVICE}")
        return tokens

    def file_token_problems(self) -> list[str]:
        """Weak tokens in ``api_tokens_file``, by line number (raises OSError if unreadable)."""
        if self.api_tokens_file is None:
            return []
        problems = []
        lines = self.api_tokens_file.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            token = line.strip()
            if token and not token.startswith("#") and (problem := token_problem(token)):
                problems.append(
                    f"server.api_tokens_file: line {number}: the token {problem}; {TOKEN_ADVICE}"
                )
        return problems

    def tokens(self) -> list[str]:
        """Every accepted bearer token, inline and from ``api_tokens_file``."""
        found = [t.get_secret_value() for t in self.api_tokens]
        if self.api_tokens_file is not None:
            for line in self.api_tokens_file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(line)
        return found


class Settings(Section):
    """Everything the engine needs. Empty means: SQLite in the working directory.

    Besides the sections below, each channel of :mod:`flytenotify.channels.registry`
    has its own (``smtp``, ``slack``, ``pagerduty``, ``webhooks``, ``teams``,
    ``mattermost``, ``inline_webhooks``): ``Settings(smtp=SmtpConfig(...))`` or
    ``[smtp]`` in the file, read back with :meth:`channel`. So has each intake of
    :mod:`flytenotify.intake.registry` (``flyte2``, ``intake.nats``, ``intake.gcp``,
    ``intake.aws``): ``Settings(intake={"nats": NatsIntakeConfig(...)})`` or
    ``[intake.nats]`` in the file, read back with :meth:`intake_section`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    database: DatabaseConfig = DatabaseConfig()
    templates: TemplateConfig = TemplateConfig()
    retry: RetryConfig = RetryConfig()
    dispatch: DispatchConfig = DispatchConfig()
    flyteadmin: FlyteAdminConfig | None = None
    allow: AllowConfig = AllowConfig()
    grouping: GroupingConfig = GroupingConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    actions: ActionsConfig = ActionsConfig()
    waiting: dict[str, WaitingRule] = Field(default_factory=dict)

    def waiting_rules(self, project: str, domain: str) -> list[tuple[str, WaitingRule]]:
        """The ``[waiting.*]`` rules that may apply to ``project``/``domain``, by name."""
        return [(n, r) for n, r in sorted(self.waiting.items()) if r.scoped(project, domain)]

    deadlines: dict[str, DeadlineConfig] = Field(default_factory=dict)

    @field_validator("deadlines")
    @classmethod
    def _deadline_names(cls, deadlines: dict[str, DeadlineConfig]) -> dict[str, DeadlineConfig]:
        for name in deadlines:
            problems = identifier_problems(name, "", "name")
            if problems:
                raise ValueError(f"deadline {name!r}: {problems[0].message}")
        return deadlines

    def deadline_entries(self) -> list[Deadline]:
        """The configuration file's deadlines (``[deadlines.NAME]``), read-only elsewhere."""
        return [
            spec.deadline(DeadlineId(spec.project, spec.domain, name), source="config")
            for name, spec in self.deadlines.items()
        ]

    @model_validator(mode="wrap")
    @classmethod
    def _channel_sections(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Any:
        """Each channel's and each intake's section validated by the type it declares."""
        if not isinstance(data, dict):
            return handler(data)
        rest = dict(data)
        errors: list[InitErrorDetails] = []
        sections: dict[str, Any] = {}
        for spec in registry.specs():
            raw = rest.pop(spec.section, None)
            try:
                sections[spec.section] = _validate_section(spec, raw)
            except ValidationError as error:
                errors += _nested(error, (spec.section,))
        intake = _IntakeSections(rest)
        for key in [k for k in rest if k not in cls.model_fields]:
            errors.append(_unknown_key(key, rest.pop(key)))
        settings: Settings | None = None
        try:
            settings = handler(rest)
        except ValidationError as error:
            errors += _nested(error, ())
        errors += intake.errors
        if errors or settings is None:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for spec in registry.specs():
            if spec.from_settings is not None:
                sections[spec.section] = spec.from_settings(sections[spec.section], settings)
        settings.__pydantic_extra__ = sections | intake.sections
        settings._allowed_names_exist()
        settings._waiting_can_ask()
        return settings

    def channel(self, name: str) -> Any:
        """The configuration section of channel ``name`` (None or {} when not configured)."""
        spec = registry.get(name)
        if spec is None:
            raise KeyError(f"no channel named {name!r}")
        found = (self.__pydantic_extra__ or {}).get(spec.section)
        return found if found is not None else _validate_section(spec, None)

    def intake_section(self, name: str) -> Any:
        """The configuration section of intake ``name`` (None when not configured)."""
        spec = intakes.get(name)
        if spec is None:
            raise KeyError(f"no intake named {name!r}")
        found: Any = self.__pydantic_extra__ or {}
        for part in spec.section.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return found

    @property
    def flyte2(self) -> Flyte2Config | None:
        """``[flyte2]``: besides its watches, the named rules users' code refers to and
        the control plane runs' links point to."""
        section: Flyte2Config | None = self.intake_section("flyte2")
        return section

    def configured(self, name: str) -> bool:
        """Whether channel ``name`` has what it needs to send."""
        spec = registry.get(name)
        return spec is not None and spec.is_configured(self.channel(name))

    def _waiting_can_ask(self) -> None:
        # Which gates wait is FlyteAdmin's to say (ListSignals).
        if self.waiting and self.flyteadmin is None:
            raise ValidationError.from_exception_data(
                "Settings",
                [
                    _value_error(
                        ("waiting",),
                        sorted(self.waiting),
                        ValueError(
                            "needs [flyteadmin]: which gates wait is asked of FlyteAdmin"
                            " (SignalService.ListSignals)"
                        ),
                    )
                ],
            )

    def _allowed_names_exist(self) -> None:
        # A misspelt name would refuse every delivery it was meant to allow.
        for spec in registry.specs():
            if spec.allow_names is None:
                continue
            config = self.channel(spec.name)
            known: Collection[str] = spec.allow_names(config) if config else ()
            names = {n.lower() for n in known}
            for entry in self.allow.entries(spec.name) or []:
                # A channel may know names it cannot list (any "team/channel"): ask it too.
                if entry not in names and entry not in known:
                    raise ValidationError.from_exception_data(
                        "Settings",
                        [
                            _value_error(
                                ("allow", spec.name),
                                entry,
                                ValueError(f"{entry!r} is not configured in [{spec.section}]"),
                            )
                        ],
                    )


class _IntakeSections:
    """Each intake's section, taken out of the raw settings and validated by the type
    its intake declares, kept nested as in the file (``{"intake": {"nats": ...}}``).

    What else the tables holding them contain (``[intake.kafka]``) is an unknown key.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self.sections: dict[str, Any] = {}
        self.errors: list[InitErrorDetails] = []
        self._tables: dict[tuple[str, ...], dict[str, Any] | None] = {(): raw}
        for spec in intakes.specs():
            self._take(spec)
        for path, table in self._tables.items():
            if path and table:  # what is left at the top level is Settings' to judge
                self.errors += [
                    InitErrorDetails(type="extra_forbidden", loc=(*path, key), input=value)
                    for key, value in table.items()
                ]

    def _take(self, spec: IntakeSpec[Any, Any]) -> None:
        *parents, key = path = tuple(spec.section.split("."))
        table = self._table(tuple(parents))
        raw = table.pop(key, None) if table is not None else None
        try:
            value = _validate_section(spec, raw)
        except ValidationError as error:
            self.errors += _nested(error, path)
            return
        found = self.sections
        for part in parents:
            found = found.setdefault(part, {})
        found[key] = value

    def _table(self, path: tuple[str, ...]) -> dict[str, Any] | None:
        """The table at ``path``, taken out of the one holding it; None when it is not one."""
        if path not in self._tables:
            holder = self._table(path[:-1])
            value = holder.pop(path[-1], None) if holder is not None else None
            if value is not None and not isinstance(value, dict):
                self.errors.append(InitErrorDetails(type="dict_type", loc=path, input=value))
                self._tables[path] = None
            else:
                self._tables[path] = dict(value or {})
        return self._tables[path]


def _validate_section(spec: ChannelSpec[Any] | IntakeSpec[Any, Any], raw: Any) -> Any:
    """A channel's or an intake's section: None (or {} for named targets) when it is absent."""
    if raw is None:
        return {} if get_origin(spec.config) is dict else None
    return _section_type(spec).validate_python(raw)


@functools.cache
def _section_type(spec: ChannelSpec[Any] | IntakeSpec[Any, Any]) -> TypeAdapter[Any]:
    return TypeAdapter(spec.config)


def _nested(error: ValidationError, prefix: tuple[str | int, ...]) -> list[InitErrorDetails]:
    """``error``'s problems, located under ``prefix``."""
    return [
        InitErrorDetails(
            type=item["type"],
            loc=(*prefix, *item["loc"]),
            input=item["input"],
            ctx=item.get("ctx", {}),
        )
        for item in error.errors()
    ]


def _unknown_key(key: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type="extra_forbidden", loc=(key,), input=value)


def _value_error(loc: tuple[str | int, ...], value: Any, error: ValueError) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": error})


# The channels' own sections, importable from here as before.
from flytenotify.channels.email import SmtpConfig  # noqa: E402
from flytenotify.channels.pagerduty import PagerDutyConfig  # noqa: E402
from flytenotify.channels.slack import SlackConfig  # noqa: E402
from flytenotify.channels.webhook import WebhookTarget  # noqa: E402

# The intakes' own sections, importable from here as before.
from flytenotify.intake.aws_spec import AwsIntakeConfig  # noqa: E402
from flytenotify.intake.flyte2_spec import (  # noqa: E402
    Flyte2Config,
    NamedDeliveryConfig,
    NamedRuleConfig,
)
from flytenotify.intake.gcp_spec import GcpIntakeConfig  # noqa: E402
from flytenotify.intake.nats_spec import NatsIntakeConfig  # noqa: E402

__all__ = [
    "ActionGrant",
    "ActionsConfig",
    "AllowConfig",
    "AwsIntakeConfig",
    "DatabaseConfig",
    "DeadlineConfig",
    "DeadlineSpec",
    "DispatchConfig",
    "Flyte2Config",
    "FlyteAdminConfig",
    "FlyteAuth",
    "GcpIntakeConfig",
    "NamedDeliveryConfig",
    "NamedRuleConfig",
    "NatsIntakeConfig",
    "PagerDutyConfig",
    "RetryConfig",
    "Settings",
    "SlackConfig",
    "SlowerThanConfig",
    "SmtpConfig",
    "TemplateConfig",
    "WaitingRule",
    "WebhookTarget",
    "read_secret",
]
