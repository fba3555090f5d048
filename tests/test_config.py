"""Typed configuration: mistakes are refused with the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flytenotify.config import DatabaseConfig, SlackConfig, SmtpConfig, WebhookTarget


@pytest.mark.parametrize(
    ("model", "values", "message"),
    [
        (SmtpConfig, {"password": "a", "password_file": "/p"}, "password or password_file"),
        (SmtpConfig, {"sender": "not an address"}, "must be one email address"),
        (SmtpConfig, {"sender": "a@x\r\nBcc: evil@x"}, "must be one email address"),
        (SmtpConfig, {"tls": "ssl"}, "none"),
        (SmtpConfig, {"port": 0}, "greater than or equal to 1"),
        (SmtpConfig, {"tsl": "starttls"}, "Extra inputs are not permitted"),
        (SlackConfig, {"bot_token": "x", "bot_token_file": "/t"}, "bot_token or bot_token_file"),
        (SlackConfig, {"webhook_url": "x", "webhook_url_file": "/t"}, "webhook_url or"),
        (WebhookTarget, {"url": "ftp://x"}, "http:// or https://"),
        (WebhookTarget, {"url": "https://x", "secret": "a", "secret_file": "/s"}, "secret or"),
        (DatabaseConfig, {"url": "mysql://x"}, "postgresql://"),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    model: type[Any], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        model(**values)


def test_secret_files_lose_their_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    assert SmtpConfig(password_file=tmp_path / "pw").resolved_password() == "hunter2"
    assert SmtpConfig(password="inline").resolved_password() == "inline"  # type: ignore[arg-type]


def test_database_urls() -> None:
    assert DatabaseConfig(url="data/x.db").sqlite_path == Path("data/x.db")
    assert DatabaseConfig(url="sqlite:////var/x.db").sqlite_path == Path("/var/x.db")
    assert DatabaseConfig(url="postgresql://h/db").sqlite_path is None
