"""Settings from TOML and FLYTENOTIFY_* variables; ``flytenotify check-config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flytenotify.cli import main
from flytenotify.settings_loader import ConfigError, load_config, load_settings

TOKEN_A = "a" * 32
TOKEN_B = "b" * 40

CONFIG = """
[database]
url = "ledger.db"

[smtp]
host = "mail.example.com"
port = 587
tls = "starttls"
username = "notifier"
password_file = "{password_file}"

[slack]
bot_token = "xoxb-very-secret"

[pagerduty]
routing_keys = {{ oncall = "pd-routing-secret" }}

[webhooks.ops]
url = "https://hooks.example.com/ops"
secret = "hook-secret"

[retry]
max_attempts = 5

[server]
port = 9000
api_tokens = ["token-secret-0123456789abcdefghijklmnop"]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    password = tmp_path / "smtp-password"
    password.write_text("file-secret\n", encoding="utf-8")
    path = tmp_path / "flytenotify.toml"
    path.write_text(CONFIG.format(password_file=password), encoding="utf-8")
    return path


def test_toml_with_env_overrides(config_file: Path) -> None:
    env = {
        "FLYTENOTIFY_SMTP__PORT": "2525",
        "FLYTENOTIFY_DATABASE__URL": "sqlite:////var/lib/flytenotify.db",
        "FLYTENOTIFY_WEBHOOKS__AUDIT__URL": "https://audit.example.com/",
        "FLYTENOTIFY_SERVER__API_TOKENS": f"{TOKEN_A},{TOKEN_B}",
        "FLYTENOTIFY_DISPATCH__PER_CHANNEL": '{"email": 2}',
        "UNRELATED": "ignored",
    }
    loaded = load_config(config_file, env)
    settings = loaded.settings
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls) == (
        "mail.example.com",
        2525,
        "starttls",
    )
    assert settings.smtp.resolved_password() == "file-secret"
    assert settings.database.sqlite_path == Path("/var/lib/flytenotify.db")
    assert sorted(settings.webhooks) == ["audit", "ops"]
    assert settings.dispatch.per_channel == {"email": 2}
    assert settings.retry.max_attempts == 5
    assert loaded.server.port == 9000
    assert loaded.server.tokens() == [TOKEN_A, TOKEN_B]
    assert load_settings(config_file, {}).smtp.port == 587  # type: ignore[union-attr]


def test_defaults_without_a_file() -> None:
    loaded = load_config(None, {})
    assert loaded.settings.database.sqlite_path == Path("flytenotify.db")
    assert (loaded.server.host, loaded.server.port) == ("127.0.0.1", 8080)
    assert loaded.server.max_body_bytes == 1024 * 1024
    assert loaded.server.dev_inbox is True
    assert loaded.server.tokens() == []


def test_tokens_from_a_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# deploy tokens\n{TOKEN_A}\n\n{TOKEN_B}\n", encoding="utf-8")
    loaded = load_config(None, {"FLYTENOTIFY_SERVER__API_TOKENS_FILE": str(tokens)})
    assert loaded.server.tokens() == [TOKEN_A, TOKEN_B]
    with pytest.raises(ConfigError, match=r"server\.api_tokens_file: cannot read"):
        load_config(None, {"FLYTENOTIFY_SERVER__API_TOKENS_FILE": str(tmp_path / "missing")})


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[smtp]\nport = "many"\ntsl = "starttls"\n[retry]\nmax_attempts = 0\n'
        "[server]\nport = 70000\nlisten = 1\n[bogus]\nx = 1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"FLYTENOTIFY_DISPATCH__CONCURRENCY": "lots"})
    fields = sorted(problem.split(":", 1)[0] for problem in caught.value.problems)
    assert fields == [
        "bogus",
        "dispatch.concurrency",
        "retry.max_attempts",
        "server.listen",
        "server.port",
        "smtp.port",
        "smtp.tsl",
    ]
    assert "smtp.tsl: unknown key" in caught.value.problems


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[smtp\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", {})


def test_check_config_summarises_without_secrets(config_file: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(config_file)], env={})
    assert result.exit_code == 0, result.output
    for secret in (
        "file-secret",
        "xoxb-very-secret",
        "pd-routing-secret",
        "hook-secret",
        "token-secret",
    ):
        assert secret not in result.output
    assert "email: configured" in result.output
    assert "webhook: configured (ops)" in result.output
    as_json = CliRunner().invoke(main, ["check-config", "--json", str(config_file)], env={})
    assert as_json.exit_code == 0
    assert "token-secret" not in as_json.output
    assert json.loads(as_json.output)["channels"]["slack"] == "configured (bot token)"


def test_check_config_fails_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nport = 0\npasword = "oops-secret"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", str(path)], env={})
    assert result.exit_code == 1
    assert "smtp.port" in result.output
    assert "smtp.pasword: unknown key" in result.output
    assert "oops-secret" not in result.output


def test_unconfigured_channels_are_dev_inbox(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", str(path)], env={})
    assert result.exit_code == 0
    assert "slack: dev-inbox" in result.output


def test_client_variables_are_left_to_the_cli() -> None:
    env = {
        "FLYTENOTIFY_CLIENT__URL": "http://127.0.0.1:8080",
        "FLYTENOTIFY_CLIENT__TOKEN": "t",
        "FLYTENOTIFY_SMTP__PORT": "2525",
    }
    loaded = load_config(None, env)
    assert loaded.settings.smtp is not None
    assert loaded.settings.smtp.port == 2525
