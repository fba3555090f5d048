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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


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
    pool_size: int = Field(default=16, ge=1, le=256)  # connections kept open and reused

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

    def resolved_secret(self) -> str | None:
        return read_secret(self.secret, self.secret_file)


class RetryConfig(_Section):
    """When to try a failed delivery again, and when to give up."""

    max_attempts: int = Field(default=12, ge=1)
    max_age: float = Field(default=24 * 3600.0, gt=0)  # seconds since the delivery was created
    base_delay: float = Field(default=2.0, gt=0)
    max_delay: float = Field(default=600.0, gt=0)
    lease: float = Field(default=120.0, gt=0)  # a claim older than this is claimable again


class DispatchConfig(_Section):
    """How much is sent at once."""

    concurrency: int = Field(default=64, ge=1)
    # Slack sends to one channel are paced (about 1/s), so a paced send holds
    # a slot while it waits: cap Slack so it cannot starve the other channels.
    per_channel: dict[str, int] = Field(default_factory=lambda: {"email": 16, "slack": 8})
    batch_size: int = Field(default=100, ge=1)
    shutdown_grace: float = Field(default=10.0, ge=0)


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
