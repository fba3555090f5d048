"""Recipient allow-lists: who each transport may message.

The engine tests run over the real loopback SMTP and Slack servers: the truth is
what those servers received, and what the ledger says about the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from flytenotify import Email, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import (
    AllowConfig,
    DatabaseConfig,
    RetryConfig,
    ServerConfig,
    Settings,
    SlackConfig,
    SmtpConfig,
)
from flytenotify.domain import DeliveryStatus
from flytenotify.settings_loader import ConfigError, load_config
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.api import create_app
from tests.helpers import event_json, execution
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer, smtp_servers_fixture

__all__ = ["smtp_servers_fixture"]  # the fixture is used by name

RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=3, lease=5.0)

# -- allow-list configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        ({"email": ["ops@"]}, "allow.email: "),
        ({"email": ["localhost"]}, "allow.email: "),
        ({"email": ["a@b@example.com"]}, "allow.email: "),
        ({"slack": [" "]}, "allow.slack: "),
        ({"webhook": ["nope"]}, "allow.webhook: 'nope' is not configured in [webhooks]"),
        ({"pagerduty": ["oncall"]}, "allow.pagerduty: 'oncall' is not configured"),
    ],
)
def test_bad_allow_lists_name_the_key(allow: dict[str, list[str]], expected: str) -> None:
    raw = {"FLYTENOTIFY_ALLOW__" + k.upper(): str(v).replace("'", '"') for k, v in allow.items()}
    with pytest.raises(ConfigError) as caught:
        load_config(None, raw)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_allow_lists_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        '[allow]\nemail = ["Example.com", "ops@partner.org"]\nslack = ["#data-alerts"]\n',
        encoding="utf-8",
    )
    allow = load_config(path, {}).settings.allow
    assert allow.entries("email") == ["example.com", "ops@partner.org"]
    assert allow.entries("slack") == ["#data-alerts"]
    assert allow.entries("pagerduty") is None
    assert allow.entries("webhook") is None


# -- allow-lists in the engine, over real servers -------------------------------------


def _email_settings(db: Path, server: SmtpServer, allow: AllowConfig) -> Settings:
    return Settings(
        database=DatabaseConfig(url=str(db)),
        smtp=server.smtp_config(),
        retry=RETRY,
        allow=allow,
    )


async def _fail(n: Notifier, name: str, notifications: list[Email] | list[Slack]) -> None:
    await n.create_execution(execution(name), notifications=notifications)
    await n.report_event(event_json(name, "FAILED", error="boom"))


async def test_refused_email_recipients_are_never_sent(
    tmp_path: Path, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    allow = AllowConfig(email=["example.com", "ops@partner.org"])
    recipients = ["dev@example.com", "ops@partner.org", "boss@partner.org", "x@evil.org"]
    async with Notifier(_email_settings(tmp_path / "a.db", server, allow)) as n:
        await _fail(n, "e1", [Email([P.FAILED], recipients)])
        await n.run_until_idle()
        assert sorted(m.recipient for m in server.messages) == [
            "dev@example.com",
            "ops@partner.org",
        ]
        dead = await n.deliveries(DeliveryFilter(status=DeliveryStatus.DEAD))
        assert sorted(d.recipient for d in dead) == ["boss@partner.org", "x@evil.org"]
        for delivery in dead:
            assert delivery.attempts == 1
            assert "is not in allow.email" in delivery.last_reply
        # A re-drive routes again and is refused again: still nothing sent.
        await n.redrive(dead[0].id)
        await n.run_until_idle()
        again = await n.delivery(dead[0].id)
        assert again is not None
        assert again.status is DeliveryStatus.DEAD
        assert len(server.messages) == 2


async def test_a_redrive_after_the_list_narrows_sends_nothing(
    tmp_path: Path, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    db = tmp_path / "narrow.db"
    async with Notifier(_email_settings(db, server, AllowConfig())) as n:
        await _fail(n, "e1", [Email([P.FAILED], ["x@evil.org"])])  # planned, not yet sent
    async with Notifier(_email_settings(db, server, AllowConfig(email=["example.com"]))) as n:
        await n.run_until_idle()
        (delivery,) = await n.deliveries()
        assert delivery.status is DeliveryStatus.DEAD
        assert "is not in allow.email" in delivery.last_reply
    assert server.messages == []


async def test_refused_slack_channels_are_never_posted(tmp_path: Path) -> None:
    async with SlackApiServer() as slack:
        settings = Settings(
            database=DatabaseConfig(url=str(tmp_path / "s.db")),
            slack=SlackConfig(
                bot_token=SecretStr(DEFAULT_TOKEN),
                base_url=slack.base_url,
                per_channel_interval=0.0,
            ),
            retry=RETRY,
            allow=AllowConfig(slack=["#alerts"]),
        )
        async with Notifier(settings) as n:
            await _fail(n, "e1", [Slack([P.FAILED], ["alerts", "#ops", "#general"])])
            await n.run_until_idle()
            assert [p.answer_field("channel") for p in slack.posts()] == ["C0ALERTS01"]
            dead = await n.deliveries(DeliveryFilter(status=DeliveryStatus.DEAD))
            assert sorted(d.recipient for d in dead) == ["#general", "#ops"]
            assert all("is not in allow.slack" in d.last_reply for d in dead)


async def test_the_dev_inbox_is_not_restricted(tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseConfig(url=str(tmp_path / "d.db")), allow=AllowConfig(email=["a.org"])
    )
    async with Notifier(settings, dev_inbox=True) as n:
        await _fail(n, "e1", [Email([P.FAILED], ["x@evil.org"])])
        await n.run_until_idle()
        assert [m.recipient for m in await n.inbox()] == ["x@evil.org"]


async def test_refused_overrides_are_reported_when_the_execution_is_created(
    tmp_path: Path, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    settings = _email_settings(tmp_path / "w.db", server, AllowConfig(email=["example.com"]))
    async with Notifier(settings) as notifier:
        app = create_app(notifier, ServerConfig())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            override = Email([P.FAILED], ["dev@example.com", "x@evil.org"]).to_dict()
            body = {"id": {"project": "p", "domain": "d", "name": "e1"}}
            created = await client.post(
                "/api/v1/executions", json={**body, "notifications": [override]}
            )
    assert created.status_code == 201, created.text
    (warning,) = created.json()["warnings"]
    assert warning["field"] == "notifications[0].email.recipients_email[1]"
    assert "'x@evil.org' is not allowed" in warning["message"]


def test_check_config_reports_refused_recipients_of_registered_plans(tmp_path: Path) -> None:
    from flytenotify.app import SyncNotifier
    from tests.helpers import PLAN

    db = tmp_path / "c.db"
    with SyncNotifier(Settings(database=DatabaseConfig(url=str(db)))) as n:
        n.register_launch_plan(PLAN, [Email([P.FAILED], ["dev@example.com", "x@evil.org"])])
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        f'[database]\nurl = "{db}"\n[smtp]\nhost = "127.0.0.1"\n[allow]\nemail = ["example.com"]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["check-config", str(path)], env={})
    assert result.exit_code == 1
    assert "recipients_email[1]" in result.output
    assert "'x@evil.org' is not allowed" in result.output
    assert "dev@example.com" not in result.output


def test_a_misspelt_allow_key_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"unknown|Extra"):
        AllowConfig.model_validate({"emails": ["example.com"]})


@pytest.mark.parametrize(("allow", "warned"), [({}, True), ({"email": ["example.com"]}, False)])
def test_a_public_bind_warns_about_transports_without_a_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, allow: dict[str, list[str]], warned: bool
) -> None:
    from flytenotify.service import _log_startup
    from flytenotify.settings_loader import LoadedConfig

    settings = Settings(
        database=DatabaseConfig(url=str(tmp_path / "x.db")),
        smtp=SmtpConfig(),
        allow=AllowConfig(**allow),
    )
    server = ServerConfig(host="0.0.0.0", api_tokens=[SecretStr("k" * 32)])
    with caplog.at_level(logging.INFO, logger="flytenotify.service"):
        _log_startup(LoadedConfig(settings, server, None), Notifier(settings, dev_inbox=True))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == (
        [
            "no [allow] list for email: any API token holder can have them"
            " message any recipient; see docs/deployment.md#security"
        ]
        if warned
        else []
    )
