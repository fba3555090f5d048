"""MattermostChannel against a loopback Mattermost (tests/servers/mattermost_api.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from flytenotify import Email, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.channels.base import Channel, Outcome
from flytenotify.channels.mattermost import (
    MAX_POST_CHARS,
    MattermostChannel,
    MattermostConfig,
    MattermostWebhook,
    mattermost_text,
)
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, RetryConfig, Settings, TemplateConfig
from flytenotify.domain import DeliveryStatus
from flytenotify.engine.resolve import Route, RoutingError, route
from flytenotify.settings_loader import ConfigError, load_config
from tests.helpers import CONSOLE_BASE, event_json, execution, rendered_delivery, write_config
from tests.servers.mattermost_api import BOT_TOKEN, MattermostServer

CONSOLE = f"{CONSOLE_BASE}/projects/proj/domains/dev/executions/e1"
RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=4, lease=10.0)
ZWJ = "\u200d"


def delivery(
    recipient: str = "ops/alerts", error: str | None = "division by zero", **kw: Any
) -> Any:
    return rendered_delivery("email", "mattermost", recipient, error=error, **kw)


def config(server: MattermostServer, **overrides: Any) -> MattermostConfig:
    values: dict[str, Any] = {
        "url": server.base,
        "bot_token": SecretStr(BOT_TOKEN),
        "team": "ops",
        "per_channel_interval": 0,
        "webhooks": {
            "town": MattermostWebhook(
                url=SecretStr(server.hook_url()), username="flyte", icon_url="https://x/i.png"
            )
        },
        **overrides,
    }
    return MattermostConfig(**values)


@pytest.fixture
async def mattermost() -> AsyncIterator[MattermostServer]:
    async with MattermostServer() as server:
        yield server


async def send(cfg: MattermostConfig, *deliveries: Any) -> list[Any]:
    channel = MattermostChannel(cfg)
    try:
        return [await channel.send(d) for d in deliveries]
    finally:
        await channel.close()


async def test_a_channel_post_through_the_rest_api(mattermost: MattermostServer) -> None:
    (result,) = await send(config(mattermost), delivery())
    assert result.outcome is Outcome.DELIVERED, result.reply
    assert result.reply.startswith("201 post ")
    lookup, post = mattermost.requests
    assert lookup.path == "/api/v4/teams/name/ops/channels/name/alerts"
    assert post.path == "/api/v4/posts"
    assert post.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    body = post.json()
    assert body["channel_id"] == "chan0alerts"
    assert body["props"] == {"flytenotify_delivery": "proj/dev/e1/6/0/mattermost/ops/alerts"}
    message = body["message"]
    assert message.startswith("#### :x: Execution proj/dev/e1 failed\n")
    assert "**Launch plan:** proj/dev/daily\\_etl@v7" in message
    assert "**Error** (USER:ZeroDivision)\n```\ndivision by zero\n```" in message
    assert "Ended 2024-05-01T12:03:12Z · ran for 3m 12s" in message
    assert message.endswith(f"[View in Flyte console]({CONSOLE})")


async def test_channel_ids_are_looked_up_once(mattermost: MattermostServer) -> None:
    results = await send(config(mattermost), delivery(), delivery(), delivery())
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert len(mattermost.calls_to("/api/v4/teams/")) == 1
    assert len(mattermost.calls_to("/api/v4/posts")) == 3


async def test_a_webhook_post(mattermost: MattermostServer) -> None:
    (result,) = await send(config(mattermost), delivery("town"))
    assert result.outcome is Outcome.DELIVERED, result.reply
    assert result.reply == "webhook town (127.0.0.1): 200 OK: ok"
    (request,) = mattermost.requests
    assert request.path == "/hooks/h00k"
    assert "Authorization" not in request.headers
    body = request.json()
    assert (body["username"], body["icon_url"]) == ("flyte", "https://x/i.png")
    assert "channel" not in body
    assert body["text"].startswith("#### :x: Execution proj/dev/e1 failed")


async def test_a_webhook_channel_override(mattermost: MattermostServer) -> None:
    hook = MattermostWebhook(url=SecretStr(mattermost.hook_url()), channel="other")
    await send(config(mattermost, webhooks={"town": hook}), delivery("town"))
    assert mattermost.requests[0].json()["channel"] == "other"


async def test_mentions_and_markdown_in_values_do_nothing(mattermost: MattermostServer) -> None:
    error = "@channel @all look: **boom** [x](https://evil.example) ``` ```` done"
    await send(config(mattermost), delivery(error=error))
    message = mattermost.posts()[0]["message"]
    assert "@channel" not in message
    assert "@all" not in message
    assert f"@{ZWJ}channel @{ZWJ}all" in message
    assert "\\*\\*boom\\*\\* \\[x\\](https://evil.example)" in message  # the body's sentence
    # The error's code block is fenced longer than any backtick run inside it.
    assert f"`````\n@{ZWJ}channel @{ZWJ}all look: **boom**" in message
    assert message.count("`````") == 2


def test_a_huge_error_is_cut_visibly() -> None:
    text = mattermost_text(delivery(error="x" * 40_000))
    assert len(text) <= MAX_POST_CHARS
    assert "… (truncated)\n```" in text
    assert text.endswith(f"[View in Flyte console]({CONSOLE})")


async def test_a_post_at_the_limit_is_accepted(mattermost: MattermostServer) -> None:
    (result,) = await send(config(mattermost), delivery(error="y" * 40_000))
    assert result.outcome is Outcome.DELIVERED, result.reply
    assert len(mattermost.posts()[0]["message"]) <= MAX_POST_CHARS


@pytest.mark.parametrize(
    ("recipient", "outcome", "words"),
    [
        ("ops/nowhere", Outcome.PERMANENT, "no channel 'nowhere' in team 'ops'"),
        ("ops/private", Outcome.PERMANENT, "403 api.context.permissions.app_error"),
    ],
)
async def test_refusals_are_permanent(
    mattermost: MattermostServer, recipient: str, outcome: Outcome, words: str
) -> None:
    (result,) = await send(config(mattermost), delivery(recipient))
    assert result.outcome is outcome
    assert words in result.reply


async def test_a_bad_token_is_permanent(mattermost: MattermostServer) -> None:
    (result,) = await send(config(mattermost, bot_token=SecretStr("wrong")), delivery())
    assert result.outcome is Outcome.PERMANENT
    assert "401 api.context.session_expired.app_error" in result.reply


async def test_an_unknown_webhook_is_permanent(mattermost: MattermostServer) -> None:
    hook = MattermostWebhook(url=SecretStr(mattermost.hook_url("n0pe")))
    (result,) = await send(config(mattermost, webhooks={"town": hook}), delivery("town"))
    assert result.outcome is Outcome.PERMANENT
    assert "400 web.incoming_webhook.invalid.app_error: Invalid webhook." in result.reply
    assert "n0pe" not in result.reply


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"reset": "3"}, 3.0), ({"reset": "9", "retry_after": "2"}, 2.0)],
)
async def test_a_429_is_transient_with_its_wait(
    mattermost: MattermostServer, headers: dict[str, str], expected: float
) -> None:
    mattermost.rate_limit(**headers)
    (result,) = await send(config(mattermost), delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after == expected
    assert "429" in result.reply


async def test_a_429_holds_every_rest_call(mattermost: MattermostServer) -> None:
    channel = MattermostChannel(config(mattermost))
    try:
        mattermost.rate_limit(reset="30")
        limited = await channel.send(delivery())
        held = await channel.send(delivery("ops/nowhere"))
    finally:
        await channel.close()
    assert limited.outcome is held.outcome is Outcome.TRANSIENT
    assert "Mattermost rate limit" in held.reply
    assert len(mattermost.requests) == 1  # the second send did not call Mattermost


async def test_a_refused_connection_is_transient_and_keeps_the_url_secret() -> None:
    async with MattermostServer() as gone:
        cfg = config(gone)
    results = await send(cfg, delivery("town"), delivery())
    assert {r.outcome for r in results} == {Outcome.TRANSIENT}
    assert all("h00k" not in r.reply for r in results)


async def test_check(mattermost: MattermostServer) -> None:
    channel = MattermostChannel(config(mattermost))
    try:
        described = await channel.check()
    finally:
        await channel.close()
    assert described == (
        "mattermost: bot flytenotify-bot at 127.0.0.1, default team ops; "
        "webhooks town -> 127.0.0.1 (cannot be checked without posting)"
    )
    assert mattermost.requests[0].path == "/api/v4/users/me"
    bad = MattermostChannel(config(mattermost, bot_token=SecretStr("wrong")))
    try:
        with pytest.raises(RuntimeError, match="users/me failed: 401"):
            await bad.check()
    finally:
        await bad.close()


def test_is_a_channel() -> None:
    assert isinstance(MattermostChannel(MattermostConfig()), Channel)


# -- routing ------------------------------------------------------------------------


def settings(tmp_path: Path, cfg: MattermostConfig | None, **extra: Any) -> Settings:
    return Settings(
        database=DatabaseConfig(url=str(tmp_path / "ledger.db")),
        templates=TemplateConfig(console_url=CONSOLE_BASE),
        retry=RETRY,
        mattermost=cfg,
        **extra,
    )


def test_routing(tmp_path: Path) -> None:
    server = MattermostServer()
    server.port = 1
    full = settings(tmp_path, config(server))
    assert route("slack", "mattermost:town", full) == Route("mattermost", "town")
    assert route("email", "mattermost:alerts", full) == Route("mattermost", "ops/alerts")
    assert route("email", "mattermost:data/alerts", full) == Route("mattermost", "data/alerts")
    assert route("email", "mattermost:x", full, dev_inbox=True) == Route("mattermost", "ops/x")

    hooks_only = settings(tmp_path, config(server, bot_token=None))
    with pytest.raises(RoutingError, match=r"no Mattermost webhook named 'alerts' .*bot_token"):
        route("email", "mattermost:alerts", hooks_only)
    with pytest.raises(RoutingError, match="needs the REST API"):
        route("email", "mattermost:data/alerts", hooks_only)
    no_team = settings(tmp_path, config(server, team=None))
    with pytest.raises(RoutingError, match=r"no default team .* mattermost:TEAM/alerts"):
        route("email", "mattermost:alerts", no_team)
    with pytest.raises(RoutingError, match="Mattermost is not configured"):
        route("email", "mattermost:alerts", settings(tmp_path, None))
    assert route("email", "mattermost:alerts", settings(tmp_path, None), dev_inbox=True) == Route(
        "inbox", "mattermost:alerts"
    )


async def test_a_429_then_success_is_delivered_on_the_second_attempt(
    tmp_path: Path, mattermost: MattermostServer
) -> None:
    mattermost.rate_limit(reset="1")
    async with Notifier(settings(tmp_path, config(mattermost))) as n:
        await n.create_execution(
            execution("e1"), notifications=[Slack([P.FAILED], ["mattermost:alerts"])]
        )
        await n.report_event(event_json("e1", "FAILED", error="@here it broke"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (done,) = await n.deliveries()
        assert (done.status, done.attempts) == (DeliveryStatus.DELIVERED, 2)
    limited, *later = mattermost.requests
    assert limited.status == 429
    assert later[0].at - limited.at >= 1.0  # X-Ratelimit-Reset honoured
    message = mattermost.posts()[0]["message"]
    assert f"@{ZWJ}here it broke" in message
    assert f"({CONSOLE_BASE}/projects/proj/domains/prod/executions/e1)" in message


async def test_a_400_ends_dead_with_mattermosts_words(
    tmp_path: Path, mattermost: MattermostServer
) -> None:
    hook = MattermostWebhook(url=SecretStr(mattermost.hook_url("n0pe")))
    async with Notifier(settings(tmp_path, config(mattermost, webhooks={"town": hook}))) as n:
        await n.create_execution(
            execution("e1"), notifications=[Email([P.FAILED], ["mattermost:town"])]
        )
        await n.report_event(event_json("e1", "FAILED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (dead,) = await n.deliveries()
    assert (dead.status, dead.attempts) == (DeliveryStatus.DEAD, 1)
    assert "Invalid webhook." in dead.last_reply


async def test_an_unreachable_name_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    server = MattermostServer()
    server.port = 1
    cfg = config(server, bot_token=None)
    async with Notifier(settings(tmp_path, cfg)) as n:
        await n.create_execution(
            execution("e1"), notifications=[Email([P.FAILED], ["mattermost:x"])]
        )
        await n.report_event(event_json("e1", "FAILED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (dead,) = await n.deliveries()
    assert dead.status is DeliveryStatus.DEAD
    assert "no Mattermost webhook named 'x' is configured" in dead.last_reply


async def test_the_dev_inbox_shows_the_markdown(tmp_path: Path) -> None:
    async with Notifier(settings(tmp_path, None), dev_inbox=True) as n:
        await n.create_execution(
            execution("e1"), notifications=[Email([P.FAILED], ["mattermost:ops/alerts"])]
        )
        await n.report_event(event_json("e1", "FAILED", error="@all boom"))
        await n.run_until_idle()
        (message,) = await n.inbox()
    assert message.body.startswith("#### :x: Execution proj/prod/e1 failed")
    assert f"@{ZWJ}all boom" in message.body
    assert "[View in Flyte console](" in message.body


# -- configuration and the CLI ------------------------------------------------------------


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            write_config(
                tmp_path,
                '[mattermost]\nurl = "chat.example.com"\nbot_token = "t"\nbot_token_file = "/t"\n'
                '[mattermost.webhooks.a]\nurl = "h00k"\n[mattermost.webhooks.b]\nchanel = "x"\n',
            ),
            {},
        )
    problems = caught.value.problems
    assert "mattermost.url: must be an http:// or https:// URL, got 'chat.example.com'" in problems
    secret_url = "must be an http:// or https:// URL (the value is not shown: a secret)"
    assert f"mattermost.webhooks.a.url: {secret_url}" in problems
    assert "mattermost.webhooks.b.chanel: unknown key" in problems
    assert "h00k" not in str(problems)


def test_environment_overrides(tmp_path: Path) -> None:
    secret = tmp_path / "hook-url"
    secret.write_text("https://chat.example.com/hooks/h00k\n")
    env = {
        "FLYTENOTIFY_MATTERMOST__WEBHOOKS__TOWN__URL_FILE": str(secret),
        "FLYTENOTIFY_MATTERMOST__TEAM": "ops",
    }
    loaded = load_config(write_config(tmp_path, ""), env)
    cfg = loaded.settings.channel("mattermost")
    assert cfg.team == "ops"
    assert cfg.webhooks["town"].resolved_url("x").endswith("/hooks/h00k")


def test_allow_lists(tmp_path: Path) -> None:
    hooks = '[mattermost.webhooks.town]\nurl = "https://chat.example.com/hooks/h"\n'
    api = '[mattermost]\nurl = "https://chat.example.com"\nbot_token = "t"\nteam = "ops"\n'
    loaded = load_config(
        write_config(tmp_path, api + hooks + '[allow]\nmattermost = ["town", "ops/alerts"]\n'), {}
    )
    assert loaded.settings.allow.entries("mattermost") == ["town", "ops/alerts"]
    assert route("email", "mattermost:alerts", loaded.settings) == Route("mattermost", "ops/alerts")
    with pytest.raises(RoutingError, match=r"not in allow\.mattermost"):
        route("email", "mattermost:ops/random", loaded.settings)
    for body, entry in ((api + hooks, "nope"), (hooks, "ops/alerts")):
        with pytest.raises(ConfigError) as caught:
            load_config(write_config(tmp_path, body + f'[allow]\nmattermost = ["{entry}"]\n'), {})
        assert caught.value.problems == [
            f"allow.mattermost: '{entry}' is not configured in [mattermost]"
        ]


def test_check_config_and_send_test(tmp_path: Path) -> None:
    async def scenario() -> tuple[Any, Any, Any, list[Any]]:
        async with MattermostServer() as server:
            path = write_config(
                tmp_path,
                f'[mattermost]\nurl = "{server.base}"\nbot_token = "{BOT_TOKEN}"\nteam = "ops"\n'
                f'[mattermost.webhooks.town]\nurl = "{server.hook_url()}"\n',
            )
            runner = CliRunner()
            loop = asyncio.get_running_loop()

            def run(*args: str) -> Any:
                return loop.run_in_executor(None, lambda: runner.invoke(main, list(args)))

            checked = await run("check-config", str(path), "--connect", "--json")
            by_name = await run("send-test", "mattermost", "alerts", "--config", str(path))
            by_hook = await run("send-test", "mattermost", "mattermost:town", "--config", str(path))
            return checked, by_name, by_hook, server.posts()

    checked, by_name, by_hook, posts = asyncio.run(scenario())
    assert checked.exit_code == 0, checked.output
    answer = json.loads(checked.output)
    assert (
        answer["channels"]["mattermost"]
        == "configured (bot token, default team ops; webhooks town)"
    )
    assert any(line.startswith("mattermost: bot flytenotify-bot") for line in answer["connected"])
    assert "h00k" not in checked.output
    assert by_name.exit_code == 0, by_name.output
    assert by_name.output.startswith("delivered: 201 post ")
    assert by_hook.exit_code == 0, by_hook.output
    assert by_hook.output.strip() == "delivered: webhook town (127.0.0.1): 200 OK: ok"
    rest, hook = posts
    assert rest["channel_id"] == "chan0alerts"
    assert "send-test" in hook["text"]
