"""The one small protocol every channel implements, and what each channel declares.

Like Alertmanager's ``Notifier``, a channel answers a single question per
delivery: did the provider accept it, and if not, is it worth trying again?
The channel alone knows its provider's error codes, so the "is this retryable"
answer lives here and not in the dispatcher.

Everything else the service needs to know about a channel (its configuration
section, how it is built, which recipients it takes, what it would send, how
it is summarised) is one :class:`ChannelSpec` in the channel's own module,
collected by :mod:`flytenotify.channels.registry`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from flytenotify.domain import Delivery, Digest, phase_name

C = TypeVar("C")


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"  # the provider accepted it
    TRANSIENT = "transient"  # try again later (4xx SMTP, 429, 5xx, timeouts, refused)
    PERMANENT = "permanent"  # never going to work (5xx SMTP, channel_not_found, 400)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    reply: str  # the provider's answer, kept in the audit trail
    retry_after: float | None = None  # seconds the provider asked us to wait
    # When the channel built the message, if the message carries that time (an
    # email's Date): recorded as the attempt's start, so the message can be
    # built again from the ledger exactly as it was sent.
    sent_at: float | None = None
    # The provider's id of the message sent (Slack channel/ts, a post id, a
    # Message-ID...), and for one that continued a conversation the id of the
    # conversation's first message it updated or followed. A delivery handed a
    # ``thread`` that comes back without ``in_reply_to`` went out as a new first
    # message (the first one was deleted): the conversation continues from it.
    provider_message_id: str = ""
    in_reply_to: str = ""

    @classmethod
    def delivered(
        cls, reply: str, provider_message_id: str = "", in_reply_to: str = ""
    ) -> SendResult:
        return cls(
            Outcome.DELIVERED,
            reply,
            provider_message_id=provider_message_id,
            in_reply_to=in_reply_to,
        )

    @classmethod
    def transient(cls, reply: str, retry_after: float | None = None) -> SendResult:
        return cls(Outcome.TRANSIENT, reply, retry_after)

    @classmethod
    def permanent(cls, reply: str) -> SendResult:
        return cls(Outcome.PERMANENT, reply)


@runtime_checkable
class Channel(Protocol):
    """Sends deliveries of one transport (``email``, ``slack``, ...).

    The dispatcher reads ``max_in_flight`` and ``destination`` to keep sends
    within what the provider takes; ``check-config`` asks ``check``.
    :class:`ChannelDefaults` holds the answers of a channel with
    nothing more specific to say.
    """

    name: str

    @property
    def max_in_flight(self) -> int | None:
        """The most of its sends in flight at once, where the channel itself bounds
        them (email: its pool of SMTP sessions); None leaves it to ``[dispatch]``."""
        ...

    def destination(self, delivery: Delivery) -> str:
        """Where ``delivery`` goes (a host, a relay): sends in flight are limited per
        destination. "" where the channel's sends share one limit."""
        ...

    async def send(self, delivery: Delivery) -> SendResult:
        """Try once. Never raises for a provider fault: returns the outcome."""
        ...

    async def check(self) -> str:
        """One line on what it reaches, for people, sending nothing: the provider's
        answer where it has a call that sends nothing, else what is configured.
        Raises, saying why, when the provider cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections; called once when the dispatcher stops."""
        ...


@runtime_checkable
class AnswersFromChat(Protocol):
    """A chat channel whose messages carry buttons people answer with (flytenotify.chat):
    it learns from the settings which buttons to offer (``[[actions.allow]]``, the
    public URL its callbacks come to)."""

    def offer_answers(self, settings: Any) -> None: ...


class ChannelDefaults:
    """The answers of a :class:`Channel` with nothing more specific to say."""

    # No bound of its own: [dispatch] limits its sends in flight.
    max_in_flight: int | None = None

    def destination(self, delivery: Delivery) -> str:
        """One destination for all its sends: they are limited together."""
        return ""


class SharedPacing(Protocol):
    """Send slots per destination, shared by every replica (the ledger provides them).

    A channel that paces a provider (Slack's ~1 message per second per channel)
    reserves each send's slot here too, so several replicas together keep the
    provider's rate rather than each keeping it on its own.
    """

    async def reserve_slot(self, key: str, interval: float) -> float:
        """Seconds to wait until this send's slot starts."""
        ...

    async def block_slots(self, key: str, seconds: float) -> None:
        """No slot of ``key`` starts within ``seconds``."""
        ...


@dataclass(frozen=True)
class DigestLine:
    """What a digest says of each execution it carries, whatever the channel's form."""

    execution: str  # project/domain/name
    phase: str  # FAILED, TIMED_OUT, ...
    error: str  # the first line of the error message, or empty
    error_code: str
    console_url: str  # empty when no console is configured

    @classmethod
    def of(cls, delivery: Delivery) -> DigestLine:
        variables = delivery.message.variables
        lines = variables.get("error.message", "").strip().splitlines()
        return cls(
            execution=str(delivery.execution_id),
            phase=phase_name(delivery.phase),
            error=lines[0] if lines else "",
            error_code=variables.get("error.code", ""),
            console_url=variables.get("console_url", ""),
        )


def digest_lines(digest: Digest) -> list[DigestLine]:
    return [DigestLine.of(delivery) for delivery in digest.deliveries]


def follows_earlier(delivery: Delivery) -> str | None:
    """The execution whose earlier message ``delivery`` follows (its own, or the
    failed one a recovery is about), when it continues a conversation: handed a
    ``thread`` to send, or recorded as having followed one. None otherwise.

    What a channel that cannot edit its first message says instead.
    """
    if delivery.thread is None and not delivery.in_reply_to:
        return None
    return delivery.follows or str(delivery.execution_id)


def error_label(variables: Mapping[str, str]) -> str:
    """The error's kind and code as one label, e.g. ``USER:ValueError``.

    Flyte's codes usually begin with their kind already (``USER:``, ``SYSTEM:``):
    ``USER USER:ValueError`` would say it twice.
    """
    kind, code = variables.get("error.kind", ""), variables.get("error.code", "")
    if kind and code.startswith(f"{kind}:"):
        return code
    return " ".join(part for part in (kind, code) if part)


def always(_config: object) -> bool:
    return True


class Unreachable(Exception):
    """The recipient is this channel's, but the channel cannot reach it (the reason)."""


def plain_allow_forms(recipient: str) -> set[str]:
    """The forms of ``recipient`` an ``[allow]`` entry may name: itself and an address's domain."""
    wanted = recipient.strip().lower()
    forms = {wanted}
    local, at, domain = wanted.rpartition("@")
    if at and local and domain:
        forms.add(domain)
    return forms


def named_target(
    prefix: str, what: str
) -> Callable[[str, str, Mapping[str, Any] | None], str | None]:
    """The routing rule of channels whose recipients ``PREFIX:NAME`` name a configured target.

    Whatever the notification kind; the target's name is what is sent to.
    """

    def takes(kind: str, recipient: str, targets: Mapping[str, Any] | None) -> str | None:
        if not recipient.startswith(prefix):
            return None
        name = recipient.removeprefix(prefix)
        if name in (targets or {}):
            return name
        raise Unreachable(f"no {what} named {name!r} is configured")

    return takes


@dataclass(frozen=True)
class ChannelSpec(Generic[C]):
    """Everything flytenotify knows about one channel, declared in the channel's module.

    ``config`` is the type of its configuration section ``[section]`` (a
    pydantic model, or ``dict[str, Model]`` for named targets such as
    ``[webhooks.NAME]``); the section's value is None (or an empty dict) when
    the channel is not configured.
    """

    name: str  # the transport: ledger rows, [dispatch.per_channel] and [allow] keys, send-test
    section: str  # its configuration section in flytenotify.toml and Settings
    config: Any  # the section's type, validated with pydantic.TypeAdapter
    # The channel object from its configuration; the ledger (SharedPacing) paces
    # providers across replicas, and is None where no ledger is open (send-test).
    build: Callable[[C, SharedPacing | None], Channel]
    # Which recipients it takes: the address to send to, None when the recipient
    # is not this channel's, or Unreachable with the reason when it is but cannot be
    # reached (e.g. webhook:NAME with no such webhook). ``config`` is None when the
    # channel is not configured.
    takes: Callable[[str, str, C | None], str | None]
    # What it sends for a delivery, shown by the dev inbox, the API and the console.
    preview: Callable[[Delivery], str]
    # One line for start-up and check-config, for people: never a secret.
    summary: Callable[[C], str]
    # The notification kinds it carries natively ("slack" -> the Slack channel);
    # a dev-inbox delivery of such a kind is previewed in this channel's form.
    kinds: frozenset[str] = frozenset()
    prefix: str | None = None  # recipients "PREFIX:NAME" name one of its targets
    test_kind: str = "email"  # the notification kind a send-test message claims to be
    route_order: int = 50  # lower is asked first; prefixed channels first, email last
    # Why a recipient in this channel's form can be no address at all (two email
    # addresses with a comma, a display name), or None. Asked of every recipient
    # not in another channel's prefixed form, before any channel takes it: a
    # malformed recipient is refused whatever is configured, dev inbox or not.
    malformed: Callable[[str], str | None] | None = None
    # Names an [allow] entry must be one of (routing keys, webhook names); None: any.
    # Entries are compared lower-cased with what it lists, and asked of its
    # ``in`` too, so a collection can accept names it cannot list.
    allow_names: Callable[[C], Collection[str]] | None = None
    # The forms of a recipient an [allow] entry may match.
    allow_forms: Callable[[str], set[str]] = field(default=plain_allow_forms)
    # Why an [allow] entry can never match this channel's recipients, or None.
    allow_entry_problem: Callable[[str], str | None] | None = None

    # The message forms it sends beyond the subject, text and variables every
    # delivery has: "html" (email), "slack_text" (Slack mrkdwn). A message is
    # rendered only in the forms its deliveries' channels send.
    media: frozenset[str] = frozenset()

    # Whether a section that is present is enough to send (Slack needs a token or URL).
    usable: Callable[[C], bool] | None = None
    # Set when ``send`` (and ``preview``) honour ``Delivery.digest``, one message
    # naming every delivery the digest carries: whether the channel, as
    # configured, folds its deliveries into digests. Only then are they grouped.
    digests: Callable[[C], bool] | None = None
    # Set when ``send`` honours ``Delivery.thread``: the deliveries of one
    # execution to one destination are a conversation, its first message
    # updated in place where the provider allows it (Slack, Mattermost,
    # PagerDuty's dedup key), followed by messages that say what they follow
    # where it does not (email's In-Reply-To, Teams, webhooks).
    threads: bool = False
    # Set when ``send`` shows what people did from an execution's messages
    # (``Thread.answers``): notes on a rewritten message, and no button or
    # link for what was answered. Only then does a follow-up read them.
    answers: bool = False

    # The configuration it is built with, from its section (None when absent)
    # and the whole ``Settings``, for a channel that needs more than its own
    # section or none at all (inline webhooks: their defaults, and the URL
    # patterns of ``[allow] inline_webhook_urls``). Applied once, when the
    # settings are validated; ``Settings.channel`` returns what it gives.
    from_settings: Callable[[C | None, Any], C | None] | None = None
    # The ``[allow]`` key that restricts it when that is not a list of its
    # recipients under its own name (inline webhooks: ``inline_webhook_urls``,
    # URL patterns, where nothing listed means nothing is sent).
    allow_key: str | None = None
    # Messages only this channel can show, whatever their delivery's recipient
    # or kind (one carrying its own HTTP request): a dev-inbox delivery of such
    # a message is previewed in this channel's form.
    shows: Callable[[Delivery], bool] | None = None

    def is_configured(self, config: C | None) -> bool:
        if not config:  # absent, or no named targets
            return False
        return self.usable is None or self.usable(config)


class InboxWriter(Protocol):
    """Where the dev inbox keeps what it would have sent (the ledger provides it)."""

    async def add_to_inbox(self, delivery: Delivery, body: str, now: float) -> None: ...
