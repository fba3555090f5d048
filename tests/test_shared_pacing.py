"""Slack pacing holds across replicas: two channels, one ledger, one Slack channel.

Each "replica" here is its own SlackChannel over its own store connection to
the same database (SQLite file or PostgreSQL), which is all replicas share.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from pydantic import SecretStr

from flytenotify.channels.base import Channel, Outcome, SendResult
from flytenotify.channels.email import EmailChannel
from flytenotify.channels.pagerduty import PagerDutyChannel
from flytenotify.channels.slack import SlackChannel
from flytenotify.config import PagerDutyConfig, SlackConfig
from flytenotify.domain import Delivery
from flytenotify.store import store_for_url
from flytenotify.store.base import Store
from tests.helpers import rendered_delivery
from tests.servers.pagerduty_api import PagerDutyApiServer
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer

INTERVAL = 0.2
JITTER = 0.15  # how late the first request may arrive: less than an interval


async def send_through_replicas(
    database_url: str, channel: Callable[[Store], Channel], deliveries: list[Delivery]
) -> list[SendResult]:
    """Two replicas, each a channel over its own store connection, sending in turn."""
    stores = [store_for_url(database_url) for _ in range(2)]
    for store in stores:
        await store.open()
    replicas = [channel(store) for store in stores]
    try:
        sends = [
            replica.send(delivery)
            for replica, delivery in zip(itertools.cycle(replicas), deliveries, strict=False)
        ]
        return list(await asyncio.gather(*sends))
    finally:
        for replica in replicas:
            await replica.close()
        for store in stores:
            await store.close()


def assert_spaced(arrivals: list[float], count: int) -> None:
    """The i-th arrival is at least i intervals after the first's slot.

    A loaded machine can only delay a request, never send it early, so this
    holds whatever the jitter but the first request's own delay (JITTER). Each
    replica pacing only itself would send pairs together: the sixth of six
    would arrive about two intervals after the first, not five.
    """
    ordered = sorted(arrivals)
    assert len(ordered) == count
    early = [ordered[0] + i * INTERVAL - JITTER - at for i, at in enumerate(ordered)]
    assert max(early) <= 0, [round(at - ordered[0], 3) for at in ordered]


async def test_two_replicas_together_keep_one_message_per_interval(database_url: str) -> None:
    async with SlackApiServer() as slack:
        config = SlackConfig(
            bot_token=SecretStr(DEFAULT_TOKEN),
            base_url=slack.base_url,
            per_channel_interval=INTERVAL,
        )
        results = await send_through_replicas(
            database_url,
            lambda store: SlackChannel(config, shared_pacing=store),
            [rendered_delivery("slack", "slack", "#general") for _ in range(10)],
        )
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert_spaced([call.at for call in slack.posts()], 10)


async def test_pagerduty_routing_key_pacing_holds_across_replicas(database_url: str) -> None:
    async with PagerDutyApiServer() as pagerduty:
        config = PagerDutyConfig(
            events_url=pagerduty.events_url,
            routing_keys={"oncall": SecretStr("R" * 32)},
            per_key_interval=INTERVAL,
        )
        deliveries = [
            rendered_delivery("pager_duty", "pagerduty", "oncall", name=f"e{n}") for n in range(6)
        ]
        results = await send_through_replicas(
            database_url,
            lambda store: PagerDutyChannel(config, shared_pacing=store),
            deliveries,
        )
    assert {r.outcome for r in results} == {Outcome.DELIVERED}, [r.reply for r in results]
    assert_spaced([event.at for event in pagerduty.events], 6)
    # The routing key itself never reaches the ledger's pacing table.
    keys = await _pacing_keys(database_url)
    assert keys
    assert all("R" * 32 not in key for key in keys)


async def _pacing_keys(database_url: str) -> list[str]:
    import sqlite3

    import asyncpg

    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return [row[0] for row in conn.execute("SELECT key FROM pacing")]
    conn = await asyncpg.connect(database_url)
    try:
        return [row["key"] for row in await conn.fetch("SELECT key FROM pacing")]
    finally:
        await conn.close()


async def test_an_email_budget_holds_across_replicas(database_url: str) -> None:
    """smtp.max_per_minute: two replicas together send no faster than the budget."""
    with SmtpServer() as smtp:
        config = smtp.smtp_config().model_copy(update={"max_per_minute": int(60 / INTERVAL)})
        deliveries = [
            rendered_delivery("email", "email", f"ops{n}@example.com", name=f"e{n}")
            for n in range(6)
        ]
        started = time.monotonic()
        results = await send_through_replicas(
            database_url, lambda store: EmailChannel(config, shared_pacing=store), deliveries
        )
        elapsed = time.monotonic() - started
        assert len(smtp.messages) == 6
    assert {r.outcome for r in results} == {Outcome.DELIVERED}, [r.reply for r in results]
    # Six sends in one budget take five intervals; each replica pacing only its
    # own three would take two. (A lower bound: a slow machine only adds time.)
    assert elapsed >= 5 * INTERVAL * 0.9, elapsed
    assert any(key.startswith("smtp:") for key in await _pacing_keys(database_url))
