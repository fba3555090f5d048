"""Typed configuration, validated in one place.

Every section is a pydantic model: a bad value is reported with the dotted
path of its key (``smtp.port``) and what is wrong with it. The service loads
the same objects from a TOML file and the environment; a script builds them
in Python.
"""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path
from typing import ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)


class _Section(BaseModel):
    # Unknown keys are mistakes (a typo must not silently disable TLS).
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Secrets that may be given inline or as a file: (inline key, file key).
    _secret_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="after")
    def _secret_given_once(self) -> Self:
        for inline, file in self._secret_pairs:
            if getattr(self, inline) is not None and getattr(self, file) is not None:
                raise ValueError(f"give {inline} or {file}, not both")
        return self


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret given inline or in a file (a trailing newline is stripped)."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    return None


class SmtpConfig(_Section):
    """How to reach the SMTP server that sends email."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    tls: Literal["none", "starttls", "implicit"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    verify_certificates: bool = True  # off only for tests against a self-signed server
    ca_file: Path | None = None  # trust this CA bundle in addition to the system's
    timeout: float = Field(default=30.0, gt=0)
    sender: str = "flytenotify@localhost"
    # Sessions open at once: the most emails in flight to this relay. The
    # dispatcher opens them as the relay keeps up (dispatch.initial_per_destination,
    # then AIMD); at 300 ms a message, 300 sessions carry 1,000 emails/s. Set it
    # to the relay's own limit per client (Postfix: 50) if it has one.
    pool_size: int = Field(default=512, ge=1, le=16384)

    _secret_pairs = (("password", "password_file"),)

    @field_validator("sender")
    @classmethod
    def _one_address(cls, sender: str) -> str:
        _name, address = parseaddr(sender)
        if "@" not in address or any(c in sender for c in "\r\n"):
            raise ValueError(f"must be one email address, got {sender!r}")
        return sender

    def resolved_password(self) -> str | None:
        return read_secret(self.password, self.password_file)


class TemplateConfig(_Section):
    """Subject and body templates (FlyteAdmin's ``{{ key }}`` syntax).

    None means the built-in default of :mod:`flytenotify.engine.render`. A
    notification's own ``template`` replaces ``body`` for that notification.
    """

    subject: str | None = None
    body: str | None = None
    console_url: str | None = None  # e.g. https://flyte.example.com/console


class SlackConfig(_Section):
    """Slack Web API (bot token) or an incoming webhook."""

    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    webhook_url: SecretStr | None = None  # incoming-webhook mode, for teams without a bot
    webhook_url_file: Path | None = None
    base_url: str = "https://slack.com/api/"  # tests point this at a loopback server
    per_channel_interval: float = Field(default=1.0, ge=0)  # Slack allows ~1 msg/s/channel
    lookup_cache_ttl: float = Field(default=3600.0, ge=0)  # users.lookupByEmail results
    timeout: float = Field(default=10.0, gt=0)

    _secret_pairs = (("bot_token", "bot_token_file"), ("webhook_url", "webhook_url_file"))

    def resolved_bot_token(self) -> str | None:
        return read_secret(self.bot_token, self.bot_token_file)

    def resolved_webhook_url(self) -> str | None:
        return read_secret(self.webhook_url, self.webhook_url_file)

    @property
    def enabled(self) -> bool:
        return any(
            v is not None
            for v in (self.bot_token, self.bot_token_file, self.webhook_url, self.webhook_url_file)
        )


PagerDutySeverity = Literal["critical", "error", "warning", "info"]


def _default_severity() -> dict[str, PagerDutySeverity]:
    return {"FAILED": "error", "TIMED_OUT": "error", "ABORTED": "warning"}


class PagerDutyConfig(_Section):
    """PagerDuty Events API v2. Recipients map to integration routing keys."""

    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    routing_keys: dict[str, SecretStr] = Field(default_factory=dict)  # recipient -> routing key
    dedup: Literal["launch_plan", "execution"] = "launch_plan"
    severity: dict[str, PagerDutySeverity] = Field(default_factory=_default_severity)
    source: str = "flytenotify"
    timeout: float = Field(default=10.0, gt=0)
    # Seconds between events to one routing key, kept across replicas; PagerDuty
    # allows about 120 events a minute per key (0.5). 0 sends as fast as it can.
    per_key_interval: float = Field(default=0.0, ge=0)


class WebhookTarget(_Section):
    """A named webhook destination, addressed by recipients ``webhook:NAME``."""

    url: str
    secret: SecretStr | None = None
    secret_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0)

    _secret_pairs = (("secret", "secret_file"),)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url

    @field_validator("headers")
    @classmethod
    def _one_kind_of_credentials(
        cls, headers: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        # The HTTP client turns user:password@ in the URL into an Authorization
        # header and refuses a request that has both: every send would fail.
        parts = urlsplit(info.data.get("url", ""))
        has_userinfo = parts.username is not None or parts.password is not None
        if has_userinfo and any(k.lower() == "authorization" for k in headers):
            raise ValueError(
                "an Authorization header cannot be combined with user:password@ in url "
                "(no request could be sent); keep the credentials in one of the two"
            )
        return headers

    def resolved_secret(self) -> str | None:
        return read_secret(self.secret, self.secret_file)


class RetryConfig(_Section):
    """When to try a failed delivery again, and when to give up."""

    max_attempts: int = Field(default=12, ge=1)
    max_age: float = Field(default=24 * 3600.0, gt=0)  # seconds since the delivery was created
    base_delay: float = Field(default=2.0, gt=0)
    max_delay: float = Field(default=600.0, gt=0)
    # Seconds a claim holds a delivery; renewed while its send is in progress, so
    # only a dead process's rows become claimable again, this long after it died.
    lease: float = Field(default=10.0, gt=0)


class DispatchConfig(_Section):
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
    # 512 in flight carry 1,700 deliveries/s from a provider 300 ms away, and one
    # process's CPU allows about that many; beyond it, add replicas (each has
    # its own). A burst starts at 256 and reaches 512 after one round trip; a
    # provider that cannot take that many answers 429/5xx or times out, and
    # the limit halves.
    initial_per_destination: int = Field(default=256, ge=1)
    max_per_destination: int = Field(default=512, ge=1)
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


class DatabaseConfig(_Section):
    """Where the ledger lives: a SQLite file path, or a database URL."""

    url: str = "sqlite:///flytenotify.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if "://" not in url:
            return f"sqlite:///{url}"  # a bare path is a SQLite file
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be a file path, sqlite:///PATH or postgresql://...")
        return url

    @property
    def sqlite_path(self) -> Path | None:
        """``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute."""
        if not self.url.startswith("sqlite:///"):
            return None
        return Path(self.url.removeprefix("sqlite:///"))


class FlyteAdminConfig(_Section):
    """Where FlyteAdmin's gRPC API is, and how to authenticate to it.

    An event for an execution flytenotify has not seen is resolved by asking
    FlyteAdmin (``AdminService.GetExecution``) for the notifications it stored
    for that execution.
    """

    endpoint: str  # host:port of FlyteAdmin's gRPC API, e.g. "flyteadmin:81"
    insecure: bool = False  # plaintext gRPC (no TLS)
    ca_cert_file: Path | None = None  # trust this CA for FlyteAdmin's TLS certificate
    client_id: str | None = None  # OAuth2 client credentials ...
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None  # ... the secret, inline or from a file
    token_file: Path | None = None  # or a static bearer token read from this file
    scopes: list[str] = Field(default_factory=list)  # OAuth2 scopes (default: FlyteAdmin's)
    timeout: float = Field(default=10.0, gt=0)  # seconds per call
    cache_ttl: float = Field(default=3600.0, ge=0)  # how long a looked-up execution is kept

    _secret_pairs = (("client_secret", "client_secret_file"),)

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, endpoint: str) -> str:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port, got {endpoint!r}")
        return endpoint

    @field_validator("ca_cert_file", "client_secret_file", "token_file")
    @classmethod
    def _empty_is_unset(cls, path: Path | None) -> Path | None:
        # ``ca_cert_file = ""`` in a file means "not set", as in FlyteAdmin's own config.
        return None if path is None or str(path) in ("", ".") else path

    @field_validator("client_id")
    @classmethod
    def _empty_id_is_unset(cls, client_id: str | None) -> str | None:
        return client_id or None

    @model_validator(mode="after")
    def _one_auth_mode(self) -> Self:
        has_secret = self.client_secret is not None or self.client_secret_file is not None
        if self.client_id is not None and not has_secret:
            raise ValueError("client_id needs client_secret or client_secret_file")
        if self.client_id is None and has_secret:
            raise ValueError("client_secret needs client_id")
        if self.client_id is not None and self.token_file is not None:
            raise ValueError("give client_id (OAuth2 client credentials) or token_file, not both")
        return self

    def resolved_client_secret(self) -> str | None:
        return read_secret(self.client_secret, self.client_secret_file)


class NatsIntakeConfig(_Section):
    """FlyteAdmin's ``cloudEvents`` of ``type: nats``, read from NATS."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    subject: str = "flyte-events"  # FlyteAdmin's eventsPublisher.topicName
    # JetStream stream (created if missing) for at-least-once; "" = plain core NATS,
    # which loses whatever is published while flytenotify is not running.
    stream: str = "FLYTE_EVENTS"
    durable: str = "flytenotify"  # the durable consumer's name
    batch_size: int = Field(default=100, ge=1, le=10_000)
    ack_wait: float = Field(default=60.0, gt=0)  # redelivered if not acked within this


class GcpIntakeConfig(_Section):
    """FlyteAdmin's ``cloudEvents`` of ``type: gcp``: a Pub/Sub subscription on its topic.

    ``PUBSUB_EMULATOR_HOST`` and Google's application default credentials
    work as the client library defines them.
    """

    project_id: str
    subscription: str  # a subscription on FlyteAdmin's topic
    batch_size: int = Field(default=100, ge=1, le=1000)
    # Seconds a message the handler could not record now (RETRY) stays hidden
    # before Pub/Sub delivers it again (its ack deadline; Pub/Sub allows 0-600).
    retry_delay: int = Field(default=10, ge=0, le=600)


class AwsIntakeConfig(_Section):
    """FlyteAdmin's ``cloudEvents`` of ``type: aws``: an SQS queue subscribed to its SNS topic.

    Credentials come from the standard AWS variables, files and roles.
    """

    queue_url: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # another SQS endpoint (tests, private endpoints)
    batch_size: int = Field(default=10, ge=1, le=10)  # SQS returns at most 10 per call
    wait_time: int = Field(default=20, ge=0, le=20)  # long polling, seconds
    visibility_timeout: int | None = Field(default=None, ge=0, le=43200)  # None: the queue's

    @field_validator("endpoint_url")
    @classmethod
    def _empty_is_unset(cls, url: str | None) -> str | None:
        return url or None


class IntakeConfig(_Section):
    """Message brokers FlyteAdmin publishes its cloud events to; any number at once."""

    nats: NatsIntakeConfig | None = None
    gcp: GcpIntakeConfig | None = None
    aws: AwsIntakeConfig | None = None


class AllowConfig(_Section):
    """Who may be messaged, per transport; a list that is not set allows anyone.

    Any API token holder can give an execution its own notifications, so
    without these lists the token is a licence to use the SMTP relay, the
    Slack bot and PagerDuty for any recipient. A recipient outside a set list
    is reported when notifications are registered and its delivery is
    dead-lettered with the reason, never sent. The dev inbox is not restricted
    (nothing leaves it).
    """

    email: list[str] | None = None  # domains ("example.com") or addresses ("ops@partner.org")
    slack: list[str] | None = None  # channels ("#data-alerts", "C0123ABC"), user emails, domains
    pagerduty: list[str] | None = None  # names in [pagerduty.routing_keys]
    webhook: list[str] | None = None  # names of [webhooks.NAME]

    @field_validator("email", "slack", "pagerduty", "webhook")
    @classmethod
    def _plain_entries(cls, entries: list[str] | None) -> list[str] | None:
        if entries is None:
            return None
        for i, entry in enumerate(entries):
            if not entry.strip() or any(c.isspace() for c in entry):
                raise ValueError(
                    f"entry {i} must be a non-empty name without spaces, got {entry!r}"
                )
        return [entry.lower() for entry in entries]

    @field_validator("email")
    @classmethod
    def _domains_or_addresses(cls, entries: list[str] | None) -> list[str] | None:
        for i, entry in enumerate(entries or []):
            local, at, domain = entry.rpartition("@")
            if (at and not local) or "@" in local or "." not in domain:
                raise ValueError(
                    f"entry {i} must be a domain (example.com) or an address "
                    f"(ops@example.com), got {entry!r}"
                )
        return entries

    def entries(self, transport: str) -> list[str] | None:
        """The allow-list of ``transport``, or None when it allows anyone."""
        if transport in ("email", "slack", "pagerduty", "webhook"):
            found: list[str] | None = getattr(self, transport)
            return found
        return None


class Settings(_Section):
    """Everything the engine needs. Empty means: SQLite in the working directory."""

    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig | None = None
    slack: SlackConfig | None = None
    pagerduty: PagerDutyConfig | None = None
    webhooks: dict[str, WebhookTarget] = Field(default_factory=dict)
    templates: TemplateConfig = TemplateConfig()
    retry: RetryConfig = RetryConfig()
    dispatch: DispatchConfig = DispatchConfig()
    flyteadmin: FlyteAdminConfig | None = None
    intake: IntakeConfig = IntakeConfig()
    allow: AllowConfig = AllowConfig()

    @model_validator(mode="after")
    def _allowed_names_exist(self) -> Self:
        # A misspelt name would refuse every delivery it was meant to allow.
        known = {
            "pagerduty": set(self.pagerduty.routing_keys) if self.pagerduty else set(),
            "webhook": set(self.webhooks),
        }
        for transport, names in known.items():
            for entry in self.allow.entries(transport) or []:
                if entry not in {name.lower() for name in names}:
                    where = "pagerduty.routing_keys" if transport == "pagerduty" else "webhooks"
                    raise ValueError(f"allow.{transport}: {entry!r} is not configured in [{where}]")
        return self
