"""What every configuration section shares: strict keys and secrets kept in files,
and the credentials keys of the sections for Flyte's own APIs.

Lives apart from :mod:`flytenotify.config` so that each channel module and
each intake can declare its own section (see :mod:`flytenotify.channels.registry`
and :mod:`flytenotify.intake.registry`) without importing the whole configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Section(BaseModel):
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


class FlyteAuth(Section):
    """How flytenotify authenticates to a Flyte API: the keys FlyteAdmin's and
    Flyte 2's sections share. No key: no credentials (a cluster without auth)."""

    ca_cert_file: Path | None = None  # trust this CA for the server's TLS certificate
    client_id: str | None = None  # OAuth2 client credentials ...
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None  # ... the secret, inline or from a file
    token_file: Path | None = None  # or a static bearer token read from this file
    # or a flyte SDK API key (client credentials packed in base64), inline or from a file
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    scopes: list[str] = Field(default_factory=list)  # OAuth2 scopes (default: the server's)
    timeout: float = Field(default=10.0, gt=0)  # seconds per call

    _secret_pairs = (("client_secret", "client_secret_file"), ("api_key", "api_key_file"))

    @field_validator("ca_cert_file", "client_secret_file", "token_file", "api_key_file")
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
        modes = [
            name
            for name, given in (
                ("client_id (OAuth2 client credentials)", self.client_id is not None),
                ("token_file", self.token_file is not None),
                ("api_key", self.api_key is not None or self.api_key_file is not None),
            )
            if given
        ]
        if len(modes) > 1:
            many = "both" if len(modes) == 2 else "several"
            raise ValueError(f"give {' or '.join(modes)}, not {many}")
        return self

    def resolved_client_secret(self) -> str | None:
        return read_secret(self.client_secret, self.client_secret_file)

    def resolved_api_key(self) -> str | None:
        return read_secret(self.api_key, self.api_key_file)


def http_url(url: str) -> str:
    """``url`` if it is an http(s) URL; the check every webhook-style target shares."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    return url


def secret_http_url(url: SecretStr) -> SecretStr:
    """A URL that is a credential (a chat webhook): checked like :func:`http_url`,
    but the error never repeats it, since error messages end up in logs."""
    if not url.get_secret_value().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL (the value is not shown: a secret)")
    return url


def read_secret_url(value: SecretStr | None, file: Path | None, where: str) -> str:
    """A secret URL given inline or in a file; a file's content is checked when it is read."""
    url = read_secret(value, file) or ""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}: url_file must hold an http:// or https:// URL")
    return url
