"""What every configuration section shares: strict keys and secrets kept in files.

Lives apart from :mod:`flytenotify.config` so that each channel module can
declare its own section (see :mod:`flytenotify.channels.registry`) without
importing the whole configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator


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
