"""SlackChannel against a loopback Slack Web API (tests/servers/slack_api.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from flytenotify.channels.base import Channel, Outcome
from flytenotify.channels.slack import SlackChannel, escape_mrkdwn, slack_message, truncate
from flytenotify.config import SlackConfig
from flytenotify.domain import (
    Delivery,
)
from tests.helpers import CONSOLE_BASE, rendered_delivery
from tests.servers.slack_api import DEFAULT_TOKEN, WEBHOOK, SlackApiServer, SlackCall

GENERAL = "C0GENERAL1"
ALERTS = "C0ALERTS01"
ADA = "ada@example.com"
ADA_ID = "U0ADA0001"
CONSOLE = "https://flyte.example.com/console/projects/proj/domains/dev/executions/e1"


def make_delivery(
    recipient: str = "#general",
    *,
    phase: int = 6,
    error: str = "division by zero",
    console_url: str = CONSOLE,
    slack_text: str | None = None,
) -> Delivery:
    delivery = rendered_delivery(
        "slack",
        "slack",
        recipient,
        phase=phase,
        error=error or None,
        console_base=CONSOLE_BASE if console_url else None,
        key="key-1",
    )
    if slack_text is None:
        return delivery
    message = dataclasses.replace(delivery.message, text=slack_text, slack_text=slack_text)
    return dataclasses.replace(delivery, message=message)


def bot_config(server: SlackApiServer, **overrides: Any) -> SlackConfig:
    settings: dict[str, Any] = {
        "bot_token": SecretStr(DEFAULT_TOKEN),
        "base_url": server.base_url,
        "per_channel_interval": 0.0,
        "timeout": 5.0,
        **overrides,
    }
    return SlackConfig(**settings)


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiServer]:
    async with SlackApiServer(users={ADA: ADA_ID}) as server:
        yield server


@pytest.fixture
async def channel(slack: SlackApiServer) -> AsyncIterator[SlackChannel]:
    chan = SlackChannel(bot_config(slack))
    yield chan
    await chan.close()


def blocks_of(call: SlackCall) -> list[dict[str, Any]]:
    blocks = call.body["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def error_block_text(call: SlackCall) -> str:
    texts = [
        str(b["text"]["text"]) for b in blocks_of(call) if b["type"] == "section" and "text" in b
    ]
    return next(t for t in texts if t.startswith("*Error*"))


# -- recipients ---------------------------------------------------------------


def test_is_a_channel() -> None:
    assert isinstance(SlackChannel(SlackConfig(bot_token=SecretStr("x"))), Channel)
    assert SlackChannel.name == "slack"


@pytest.mark.parametrize(
    ("recipient", "channel_id"),
    [("#general", GENERAL), ("C0ALERTS01", ALERTS), ("ops", "C0OPS00001")],
)
async def test_posts_to_a_channel_by_name_or_id(
    slack: SlackApiServer, channel: SlackChannel, recipient: str, channel_id: str
) -> None:
    result = await channel.send(make_delivery(recipient))
    assert result.outcome is Outcome.DELIVERED, result.reply
    assert channel_id in result.reply
    assert len(slack.posts(channel_id)) == 1


async def test_emails_a_person_by_direct_message_and_caches_the_lookup(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    first = await channel.send(make_delivery(ADA))
    second = await channel.send(make_delivery(ADA))
    assert first.outcome is second.outcome is Outcome.DELIVERED
    assert len(slack.posts("D0ADA0001")) == 2
    assert len(slack.calls_to("users.lookupByEmail")) == 1
    assert len(slack.calls_to("conversations.open")) == 1
    assert slack.calls_to("users.lookupByEmail")[0].body["email"] == ADA


async def test_lookup_cache_can_be_disabled(slack: SlackApiServer) -> None:
    chan = SlackChannel(bot_config(slack, lookup_cache_ttl=0))
    try:
        for _ in range(2):
            assert (await chan.send(make_delivery(ADA))).outcome is Outcome.DELIVERED
    finally:
        await chan.close()
    assert len(slack.calls_to("users.lookupByEmail")) == 2


async def test_unknown_person_is_permanent(slack: SlackApiServer, channel: SlackChannel) -> None:
    result = await channel.send(make_delivery("nobody@example.com"))
    assert result.outcome is Outcome.PERMANENT
    assert "users_not_found" in result.reply
    assert slack.posts() == []


async def test_unrecognised_recipient_is_permanent(channel: SlackChannel) -> None:
    result = await channel.send(make_delivery("Not A Channel!"))
    assert result.outcome is Outcome.PERMANENT
    assert "Not A Channel!" in result.reply


# -- message content ----------------------------------------------------------


async def test_block_kit_content_as_received(slack: SlackApiServer, channel: SlackChannel) -> None:
    await channel.send(make_delivery("#general"))
    (call,) = slack.posts(GENERAL)
    assert call.body["channel"] == "#general"
    blocks = blocks_of(call)
    header = blocks[0]
    assert header["type"] == "header"
    assert "proj/dev/e1" in header["text"]["text"]
    assert "failed" in header["text"]["text"]
    fields = next(b["fields"] for b in blocks if "fields" in b)
    shown = "\n".join(f["text"] for f in fields)
    for expected in ("*Project*\nproj", "*Domain*\ndev", "*Execution*\ne1", "daily_etl@v7"):
        assert expected in shown
    error = error_block_text(call)
    assert "```\ndivision by zero\n```" in error
    assert "USER" in error
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["url"] == CONSOLE
    assert call.body["text"].startswith(":x: Execution proj/dev/e1 failed")
    assert "Flyte execution proj/dev/e1 failed." in call.body["text"]


async def test_success_has_no_error_block_and_no_button_without_console_url(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    await channel.send(make_delivery(phase=4, error="", console_url=""))
    (call,) = slack.posts(GENERAL)
    blocks = blocks_of(call)
    assert "succeeded" in blocks[0]["text"]["text"]
    assert all(b["type"] != "actions" for b in blocks)
    assert "*Error*" not in json.dumps(blocks)


async def test_mentions_in_an_error_never_ping(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    await channel.send(make_delivery(error="<!channel> <@U123> & <https://evil|click>"))
    (call,) = slack.posts(GENERAL)
    sent = json.dumps(call.body)
    assert "<!channel>" not in sent
    assert "<@U123>" not in sent
    escaped = "&lt;!channel&gt; &lt;@U123&gt; &amp; &lt;https://evil|click&gt;"
    assert escaped in error_block_text(call)


async def test_long_error_and_body_are_truncated_not_failed(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    delivery = make_delivery(error="x<" * 50_000, slack_text="y" * 20_000)
    result = await channel.send(delivery)
    assert result.outcome is Outcome.DELIVERED, result.reply
    (call,) = slack.posts(GENERAL)
    error = error_block_text(call)
    assert len(error) <= 3000
    assert error.endswith("… (truncated)\n```")
    assert len(call.body["text"]) <= 4000
    assert call.body["text"].endswith("… (truncated)")


def test_code_fence_in_an_error_cannot_close_the_block() -> None:
    message = slack_message(make_delivery(error="a ``` b"))
    error = next(b for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("*E"))
    assert error["text"]["text"].count("```") == 2


@given(st.text(), st.integers(min_value=20, max_value=200))
def test_truncate_never_exceeds_the_limit(text: str, limit: int) -> None:
    cut = truncate(escape_mrkdwn(text), limit)
    assert len(cut) <= limit
    if len(escape_mrkdwn(text)) <= limit:
        assert cut == escape_mrkdwn(text)
    else:
        assert cut.endswith("… (truncated)")


# -- incoming webhook mode ----------------------------------------------------


@pytest.fixture
async def hook_channel(slack: SlackApiServer) -> AsyncIterator[SlackChannel]:
    config = SlackConfig(webhook_url=SecretStr(slack.webhook_url), per_channel_interval=0.0)
    chan = SlackChannel(config)
    yield chan
    await chan.close()


async def test_webhook_mode_posts_blocks(slack: SlackApiServer, hook_channel: SlackChannel) -> None:
    result = await hook_channel.send(make_delivery("#ignored"))
    assert result.outcome is Outcome.DELIVERED, result.reply
    (call,) = slack.calls_to(WEBHOOK)
    assert call.body["blocks"][0]["type"] == "header"
    assert call.body["text"].startswith(":x: Execution")
    assert slack.calls_to("chat.postMessage") == []


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (404, "channel_not_found", Outcome.PERMANENT),
        (403, "action_prohibited", Outcome.PERMANENT),
        (500, "rollup_error", Outcome.TRANSIENT),
    ],
)
async def test_webhook_mode_errors(
    slack: SlackApiServer, hook_channel: SlackChannel, status: int, body: str, outcome: Outcome
) -> None:
    slack.script_webhook(status, body)
    result = await hook_channel.send(make_delivery())
    assert result.outcome is outcome
    assert body in result.reply


async def test_webhook_mode_429(slack: SlackApiServer, hook_channel: SlackChannel) -> None:
    slack.rate_limit(1, method=WEBHOOK)
    result = await hook_channel.send(make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after == 1


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        "account_inactive",
        "token_revoked",
        "no_permission",
        "missing_scope",
        "msg_too_long",
        "invalid_auth",
    ],
)
async def test_scripted_permanent_errors(
    slack: SlackApiServer, channel: SlackChannel, error: str
) -> None:
    slack.fail("chat.postMessage", error)
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.PERMANENT
    assert result.reply == f"chat.postMessage: {error}"


async def test_channel_state_errors_are_permanent(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    slack.archived.add(ALERTS)
    slack.not_in_channel.add("C0OPS00001")
    replies = [(await channel.send(make_delivery(r))) for r in ("#nope", "#alerts", "#ops")]
    assert [r.outcome for r in replies] == [Outcome.PERMANENT] * 3
    assert [r.reply for r in replies] == [
        "chat.postMessage: channel_not_found",
        "chat.postMessage: is_archived",
        "chat.postMessage: not_in_channel",
    ]


async def test_wrong_token_is_permanent_invalid_auth(slack: SlackApiServer) -> None:
    chan = SlackChannel(bot_config(slack, bot_token=SecretStr("xoxb-wrong")))
    try:
        result = await chan.send(make_delivery())
    finally:
        await chan.close()
    assert result.outcome is Outcome.PERMANENT
    assert "invalid_auth" in result.reply


@pytest.mark.parametrize(
    ("status", "error"), [(500, "internal_error"), (503, "service_unavailable")]
)
async def test_server_errors_are_transient(
    slack: SlackApiServer, channel: SlackChannel, status: int, error: str
) -> None:
    slack.fail("chat.postMessage", error, status=status)
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert str(status) in result.reply


async def test_an_unknown_slack_error_is_transient(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    slack.fail("chat.postMessage", "some_new_error")
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert "some_new_error" in result.reply


async def test_http_404_is_permanent(slack: SlackApiServer, channel: SlackChannel) -> None:
    slack.fail("chat.postMessage", "unknown_method", status=404)  # e.g. a wrong base_url
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.PERMANENT
    assert "404" in result.reply


async def test_timeout_is_transient(slack: SlackApiServer) -> None:
    slack.delay = 0.5
    chan = SlackChannel(bot_config(slack, timeout=0.1))
    try:
        result = await chan.send(make_delivery())
    finally:
        await chan.close()
    assert result.outcome is Outcome.TRANSIENT
    assert "Timeout" in result.reply


async def test_connection_refused_is_transient() -> None:
    async with SlackApiServer() as gone:
        config = bot_config(gone)
    chan = SlackChannel(config)
    try:
        result = await chan.send(make_delivery())
    finally:
        await chan.close()
    assert result.outcome is Outcome.TRANSIENT


# -- rate limits and pacing ---------------------------------------------------


async def test_429_blocks_that_channel_for_retry_after(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    slack.rate_limit(2)
    limited = await channel.send(make_delivery("#general"))
    assert limited.outcome is Outcome.TRANSIENT
    assert limited.retry_after == 2
    assert "ratelimited" in limited.reply

    # Another channel is not held up by #general's limit.
    started = time.monotonic()
    other = await channel.send(make_delivery("#alerts"))
    assert other.outcome is Outcome.DELIVERED
    assert time.monotonic() - started < 1.0

    again = await asyncio.wait_for(channel.send(make_delivery("#general")), timeout=10)
    assert again.outcome is Outcome.DELIVERED
    calls = [c for c in slack.calls_to("chat.postMessage") if c.body["channel"] == "#general"]
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.95


async def test_long_retry_after_returns_transient_without_calling(
    slack: SlackApiServer, channel: SlackChannel
) -> None:
    slack.rate_limit(30)
    await channel.send(make_delivery())
    started = time.monotonic()
    result = await channel.send(make_delivery())
    assert time.monotonic() - started < 0.5
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after is not None
    assert 28 < result.retry_after <= 30
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_lookup_429_is_transient(slack: SlackApiServer, channel: SlackChannel) -> None:
    slack.rate_limit(1, method="users.lookupByEmail")
    result = await channel.send(make_delivery(ADA))
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after == 1
    assert "users.lookupByEmail" in result.reply


async def test_burst_is_paced_per_channel(slack: SlackApiServer) -> None:
    interval = 0.1
    chan = SlackChannel(bot_config(slack, per_channel_interval=interval))
    started = time.monotonic()
    try:
        sends = [chan.send(make_delivery(r)) for r in ["#general"] * 20 + ["#alerts"] * 20]
        results = await asyncio.wait_for(asyncio.gather(*sends), timeout=15)
    finally:
        await chan.close()
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    general = [c.at for c in slack.posts(GENERAL)]
    alerts = [c.at for c in slack.posts(ALERTS)]
    assert len(general) == len(alerts) == 20
    gaps = [b - a for a, b in itertools.pairwise(general)]
    # Each post starts `interval` after the previous one finished: the server sees the spacing.
    assert min(gaps) >= interval * 0.99
    # #alerts ran alongside #general, not queued behind its 20 messages.
    assert alerts[0] < general[1]
    assert alerts[-1] - started < 19 * interval + 1.0


async def test_a_flooded_channel_answers_transient_beyond_max_wait(slack: SlackApiServer) -> None:
    chan = SlackChannel(bot_config(slack, per_channel_interval=0.1), max_wait=0.25)
    try:
        sends = [chan.send(make_delivery("#general")) for _ in range(8)]
        results = await asyncio.wait_for(asyncio.gather(*sends), timeout=10)
    finally:
        await chan.close()
    outcomes = [r.outcome for r in results]
    assert Outcome.DELIVERED in outcomes
    assert Outcome.TRANSIENT in outcomes
    busy = [r for r in results if r.outcome is Outcome.TRANSIENT]
    assert all(r.retry_after is not None and r.retry_after > 0.25 for r in busy)
    assert len(slack.posts(GENERAL)) == outcomes.count(Outcome.DELIVERED)


# -- check --------------------------------------------------------------------


async def test_check_runs_auth_test(slack: SlackApiServer, channel: SlackChannel) -> None:
    assert "flytenotify-test" in await channel.check()
    assert len(slack.calls_to("auth.test")) == 1


async def test_check_reports_a_bad_token(slack: SlackApiServer) -> None:
    chan = SlackChannel(bot_config(slack, bot_token=SecretStr("xoxb-wrong")))
    try:
        with pytest.raises(RuntimeError, match="invalid_auth"):
            await chan.check()
    finally:
        await chan.close()


def test_needs_a_token_or_a_webhook() -> None:
    with pytest.raises(ValueError, match="bot_token"):
        SlackChannel(SlackConfig())
