"""TeamsChannel against a loopback Teams webhook, both flavours (tests/servers/teams_webhook.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from flytenotify import Email, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.channels.base import Channel, Outcome
from flytenotify.channels.teams import MAX_PAYLOAD_BYTES, TeamsChannel, TeamsTarget, teams_message
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, RetryConfig, Settings, TemplateConfig
from flytenotify.domain import DeliveryStatus
from flytenotify.engine.resolve import Route, RoutingError, route
from flytenotify.settings_loader import ConfigError, load_config
from tests.helpers import CONSOLE_BASE, event_json, execution, rendered_delivery, write_config
from tests.servers.teams_webhook import TeamsWebhookServer

CONSOLE = f"{CONSOLE_BASE}/projects/proj/domains/dev/executions/e1"
RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=4, lease=10.0)


def delivery(error: str | None = "division by zero", phase: int = P.FAILED, **kw: Any) -> Any:
    return rendered_delivery("email", "teams", "ops", error=error, phase=phase, **kw)


@pytest.fixture
async def teams() -> AsyncIterator[TeamsWebhookServer]:
    async with TeamsWebhookServer() as server:
        yield server


async def send(url: str, *deliveries: Any, **target: Any) -> list[Any]:
    channel = TeamsChannel({"ops": TeamsTarget(url=SecretStr(url), **target)})
    try:
        return [await channel.send(d) for d in deliveries]
    finally:
        await channel.close()


def texts(card: dict[str, Any]) -> list[str]:
    return [block["text"] for block in card["body"] if block["type"] == "TextBlock"]


@pytest.mark.parametrize("flavour", ["workflow_url", "connector_url"])
async def test_both_flavours_get_the_same_adaptive_card(
    teams: TeamsWebhookServer, flavour: str
) -> None:
    (result,) = await send(getattr(teams, flavour), delivery())
    assert result.outcome is Outcome.DELIVERED, result.reply
    assert result.reply == ("200 OK: 1" if flavour == "connector_url" else "202 Accepted")
    (request,) = teams.posted
    assert request.headers["Content-Type"] == "application/json"
    message = request.json()
    assert message["type"] == "message"
    assert message["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = request.card
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title = card["body"][0]
    assert (title["text"], title["color"]) == ("Execution proj/dev/e1 failed", "attention")
    facts = next(block["facts"] for block in card["body"] if block["type"] == "FactSet")
    assert {f["title"]: f["value"] for f in facts} == {
        "Project": "proj",
        "Domain": "dev",
        "Execution": "e1",
        "Launch plan": "proj/dev/daily\\_etl@v7",
        "Workflow": "proj/dev/etl.wf@v7",
    }
    error = next(b for b in card["body"] if b.get("fontType") == "Monospace")
    assert error["text"] == "division by zero"
    assert "Ended 2024-05-01T12:03:12Z · ran for 3m 12s" in texts(card)
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "View in Flyte console", "url": CONSOLE}
    ]


@pytest.mark.parametrize(
    ("phase", "colour"),
    [(P.SUCCEEDED, "good"), (P.TIMED_OUT, "attention"), (P.ABORTED, "warning")],
)
async def test_the_title_is_coloured_by_phase(
    teams: TeamsWebhookServer, phase: int, colour: str
) -> None:
    await send(teams.workflow_url, delivery(error=None, phase=phase))
    assert teams.posted[0].card["body"][0]["color"] == colour


async def test_no_console_action_without_a_console_url(teams: TeamsWebhookServer) -> None:
    await send(teams.workflow_url, delivery(console_base=None))
    assert teams.posted[0].card["actions"] == []


async def test_values_are_text_not_markdown(teams: TeamsWebhookServer) -> None:
    error = "**boom** [click](https://evil.example) _x_ `y`\n- not a list\n1. nor this"
    await send(teams.workflow_url, delivery(error=error))
    shown = next(b for b in teams.posted[0].card["body"] if b.get("fontType") == "Monospace")
    assert shown["text"] == (
        "\\*\\*boom\\*\\* \\[click\\](https://evil.example) \\_x\\_ \\`y\\`"
        "\n\n\\- not a list\n\n1\\. nor this"
    )


async def test_a_huge_error_is_cut_visibly_to_teams_limit(teams: TeamsWebhookServer) -> None:
    (result,) = await send(teams.workflow_url, delivery(error="é" * 40_000 + " END"))
    assert result.outcome is Outcome.DELIVERED, result.reply
    (request,) = teams.posted
    assert len(request.body) <= MAX_PAYLOAD_BYTES
    shown = next(b for b in request.card["body"] if b.get("fontType") == "Monospace")
    assert shown["text"].endswith("… (truncated)")
    assert len(shown["text"]) > 5_000  # cut as little as needed, not dropped
    assert request.card["actions"][0]["url"] == CONSOLE  # the rest is whole


def test_the_limit_is_kept_whatever_the_text() -> None:
    message = teams_message(delivery(error="*" * 50_000), limit=4_000)
    assert len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()) <= 4_000


@pytest.mark.parametrize(
    ("status", "retry_after", "outcome"),
    [
        (400, None, Outcome.PERMANENT),
        (404, None, Outcome.PERMANENT),
        (413, None, Outcome.PERMANENT),
        (429, 7.0, Outcome.TRANSIENT),
        (500, None, Outcome.TRANSIENT),
        (503, None, Outcome.TRANSIENT),
    ],
)
async def test_http_answers(
    teams: TeamsWebhookServer, status: int, retry_after: float | None, outcome: Outcome
) -> None:
    teams.script(status, body=f"Teams says {status}", retry_after="7" if retry_after else None)
    (result,) = await send(teams.workflow_url, delivery())
    assert (result.outcome, result.retry_after) == (outcome, retry_after)
    assert result.reply.startswith(str(status))
    assert f"Teams says {status}" in result.reply


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(429, Outcome.TRANSIENT), (502, Outcome.TRANSIENT), (400, Outcome.PERMANENT)],
)
async def test_a_connector_200_carrying_an_error_is_no_delivery(
    teams: TeamsWebhookServer, status: int, outcome: Outcome
) -> None:
    teams.connector_refuses(status)
    (result,) = await send(teams.connector_url, delivery())
    assert result.outcome is outcome
    assert f"returned HTTP error {status}" in result.reply


async def test_a_connector_200_without_a_count_is_no_delivery(teams: TeamsWebhookServer) -> None:
    teams.script(200, body="")
    (result,) = await send(teams.connector_url, delivery())
    assert result.outcome is Outcome.PERMANENT
    assert "answers 1" in result.reply


async def test_the_url_never_shows(teams: TeamsWebhookServer) -> None:
    async with TeamsWebhookServer() as gone:
        url = gone.connector_url
    (refused,) = await send(url, delivery())
    assert refused.outcome is Outcome.TRANSIENT
    assert "S3CR3T" not in refused.reply
    assert "webhookb2" not in refused.reply
    channel = TeamsChannel({"ops": TeamsTarget(url=SecretStr(teams.connector_url))})
    assert await channel.check() == "teams: ops -> 127.0.0.1 (connector)"
    with pytest.raises(ValidationError) as caught:
        TeamsTarget(url=SecretStr("ftp://S3CR3T"))
    assert "S3CR3T" not in str(caught.value)


async def test_sends_to_one_webhook_are_spaced(teams: TeamsWebhookServer) -> None:
    results = await send(
        teams.workflow_url, delivery(), delivery(), delivery(), per_webhook_interval=0.2
    )
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    gaps = [b.at - a.at for a, b in zip(teams.requests, teams.requests[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps


def test_is_a_channel() -> None:
    assert isinstance(TeamsChannel({}), Channel)


# -- through the registry, the dispatcher, the CLI ------------------------------------


def settings(tmp_path: Path, url: str, **extra: Any) -> Settings:
    return Settings(
        database=DatabaseConfig(url=str(tmp_path / "ledger.db")),
        teams={"ops": TeamsTarget(url=SecretStr(url), per_webhook_interval=0)},
        templates=TemplateConfig(console_url=CONSOLE_BASE),
        retry=RETRY,
        **extra,
    )


def test_routing(tmp_path: Path) -> None:
    configured = settings(tmp_path, "https://example.webhook.office.com/webhookb2/x")
    assert route("slack", "teams:ops", configured) == Route("teams", "ops")
    assert route("email", "teams:ops", configured) == Route("teams", "ops")
    with pytest.raises(RoutingError, match="no Teams webhook named 'dev' is configured"):
        route("email", "teams:dev", configured)
    # The dev inbox stands in for Teams only where no Teams webhook is configured.
    with pytest.raises(RoutingError, match="no Teams webhook named 'dev' is configured"):
        route("email", "teams:dev", configured, dev_inbox=True)
    unconfigured = Settings()
    assert route("email", "teams:dev", unconfigured, dev_inbox=True) == Route("inbox", "teams:dev")


async def test_a_429_then_success_is_delivered_on_the_second_attempt(
    tmp_path: Path, teams: TeamsWebhookServer
) -> None:
    teams.script(429, retry_after="0.2")
    async with Notifier(settings(tmp_path, teams.workflow_url)) as n:
        await n.create_execution(execution("e1"), notifications=[Slack([P.FAILED], ["teams:ops"])])
        await n.report_event(event_json("e1", "FAILED", error="boom"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (done,) = await n.deliveries()
        assert (done.status, done.attempts) == (DeliveryStatus.DELIVERED, 2)
        outcomes = [a.outcome for a in await n.attempts(done.id)]
    assert outcomes == ["transient", "delivered"]
    assert teams.requests[1].at - teams.requests[0].at >= 0.2  # Retry-After honoured
    card = teams.posted[0].card
    assert card["actions"][0]["url"] == f"{CONSOLE_BASE}/projects/proj/domains/prod/executions/e1"


async def test_a_400_ends_dead_with_teams_words(tmp_path: Path, teams: TeamsWebhookServer) -> None:
    teams.script(400, body='{"error":{"code":"InvalidRequestContent","message":"bad card"}}')
    async with Notifier(settings(tmp_path, teams.workflow_url)) as n:
        await n.create_execution(execution("e1"), notifications=[Email([P.FAILED], ["teams:ops"])])
        await n.report_event(event_json("e1", "FAILED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (dead,) = await n.deliveries()
    assert (dead.status, dead.attempts) == (DeliveryStatus.DEAD, 1)
    assert "InvalidRequestContent" in dead.last_reply
    assert "bad card" in dead.last_reply


async def test_an_unknown_name_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    async with Notifier(settings(tmp_path, "https://x.example/workflows/1")) as n:
        await n.create_execution(execution("e1"), notifications=[Email([P.FAILED], ["teams:dev"])])
        await n.report_event(event_json("e1", "FAILED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (dead,) = await n.deliveries()
    assert dead.status is DeliveryStatus.DEAD
    assert "no Teams webhook named 'dev' is configured" in dead.last_reply


async def test_the_dev_inbox_shows_the_card(tmp_path: Path) -> None:
    plain = Settings(
        database=DatabaseConfig(url=str(tmp_path / "ledger.db")),
        templates=TemplateConfig(console_url=CONSOLE_BASE),
    )
    async with Notifier(plain, dev_inbox=True) as n:
        await n.create_execution(execution("e1"), notifications=[Email([P.FAILED], ["teams:ops"])])
        await n.report_event(event_json("e1", "FAILED", error="boom"))
        await n.run_until_idle()
        (message,) = await n.inbox()
    card = json.loads(message.body)["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["actions"][0]["title"] == "View in Flyte console"


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            write_config(
                tmp_path,
                '[teams.ops]\nurl = "ftp://S3CR3T"\n[teams.dev]\ntimeout = 5\n'
                '[teams.ci]\nurl = "https://a.example"\ntimeout = 0\n'
                '[teams.qa]\nurl = "https://a.example"\nurl_file = "/x"\n',
            ),
            {},
        )
    problems = caught.value.problems
    assert (
        "teams.ops.url: must be an http:// or https:// URL (the value is not shown: a secret)"
        in problems
    )
    assert "teams.ci.timeout: Input should be greater than 0" in problems
    assert "teams.dev: give url or url_file" in problems
    assert "teams.qa: give url or url_file, not both" in problems
    assert "S3CR3T" not in str(problems)


def test_url_file_from_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "teams-url"
    secret.write_text("https://x.webhook.office.com/webhookb2/S3CR3T\n")
    loaded = load_config(
        write_config(tmp_path, ""), {"FLYTENOTIFY_TEAMS__OPS__URL_FILE": str(secret)}
    )
    (target,) = loaded.settings.channel("teams").values()
    assert target.resolved_url("teams.ops").endswith("/S3CR3T")


def test_allow_lists_name_configured_webhooks(tmp_path: Path) -> None:
    body = '[teams.ops]\nurl = "https://a.example/workflows/1"\n'
    loaded = load_config(write_config(tmp_path, body + '[allow]\nteams = ["ops"]\n'), {})
    assert loaded.settings.allow.entries("teams") == ["ops"]
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, body + '[allow]\nteams = ["dev"]\n'), {})
    assert caught.value.problems == ["allow.teams: 'dev' is not configured in [teams]"]


def test_check_config_and_send_test(tmp_path: Path) -> None:
    import asyncio

    async def scenario() -> tuple[Any, Any, list[Any]]:
        async with TeamsWebhookServer() as server:
            config = write_config(tmp_path, f'[teams.ops]\nurl = "{server.connector_url}"\n')
            runner = CliRunner()
            loop = asyncio.get_running_loop()
            checked = await loop.run_in_executor(
                None,
                lambda: runner.invoke(main, ["check-config", str(config), "--connect", "--json"]),
            )
            sent = await loop.run_in_executor(
                None,
                lambda: runner.invoke(main, ["send-test", "teams", "ops", "--config", str(config)]),
            )
            return checked, sent, server.posted

    checked, sent, posted = asyncio.run(scenario())
    assert checked.exit_code == 0, checked.output
    answer = json.loads(checked.output)
    assert answer["channels"]["teams"] == "configured (ops)"
    assert "teams: ops -> 127.0.0.1 (connector)" in answer["connected"]
    assert "S3CR3T" not in checked.output
    assert sent.exit_code == 0, sent.output
    assert sent.output.strip() == "delivered: 200 OK: 1"
    (request,) = posted
    assert "Execution flytenotify/test/send-test succeeded" in request.card["body"][0]["text"]
