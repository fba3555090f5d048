"""Slack pacing holds across replicas: two channels, one ledger, one Slack channel.

Each "replica" here is its own SlackChannel over its own store connection to
the same database (SQLite file or PostgreSQL), which is all replicas share.
"""

from __future__ import annotations

import asyncio
import itertools

from pydantic import SecretStr

from flytenotify.channels.base import Outcome
from flytenotify.channels.slack import SlackChannel
from flytenotify.config import SlackConfig
from flytenotify.store import store_for_url
from tests.helpers import rendered_delivery
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer

INTERVAL = 0.2


async def test_two_replicas_together_keep_one_message_per_interval(database_url: str) -> None:
    stores = [store_for_url(database_url) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        async with SlackApiServer() as slack:
            config = SlackConfig(
                bot_token=SecretStr(DEFAULT_TOKEN),
                base_url=slack.base_url,
                per_channel_interval=INTERVAL,
            )
            replicas = [SlackChannel(config, shared_pacing=store) for store in stores]
            deliveries = [rendered_delivery("slack", "slack", "#general") for _ in range(10)]
            sends = [
                replica.send(delivery)
                for replica, delivery in zip(itertools.cycle(replicas), deliveries, strict=False)
            ]
            results = await asyncio.gather(*sends)
            for replica in replicas:
                await replica.close()
    finally:
        for store in stores:
            await store.close()

    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    arrivals = sorted(call.at for call in slack.posts())
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 10
    # Within one replica alone, two replicas would each send at the full rate and
    # the channel would see pairs arriving together.
    assert min(gaps) >= INTERVAL * 0.8, gaps


async def test_pagerduty_routing_key_pacing_holds_across_replicas(database_url: str) -> None:
    from flytenotify.channels.pagerduty import PagerDutyChannel
    from flytenotify.config import PagerDutyConfig
    from tests.servers.pagerduty_api import PagerDutyApiServer

    stores = [store_for_url(database_url) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        async with PagerDutyApiServer() as pagerduty:
            config = PagerDutyConfig(
                events_url=pagerduty.events_url,
                routing_keys={"oncall": SecretStr("R" * 32)},
                per_key_interval=INTERVAL,
            )
            replicas = [PagerDutyChannel(config, shared_pacing=store) for store in stores]
            deliveries = [
                rendered_delivery("pager_duty", "pagerduty", "oncall", name=f"e{i}")
                for i in range(6)
            ]
            sends = [
                replica.send(delivery)
                for replica, delivery in zip(itertools.cycle(replicas), deliveries, strict=False)
            ]
            results = await asyncio.gather(*sends)
            for replica in replicas:
                await replica.close()
    finally:
        for store in stores:
            await store.close()

    assert {r.outcome for r in results} == {Outcome.DELIVERED}, [r.reply for r in results]
    arrivals = sorted(event.at for event in pagerduty.events)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 6
    assert min(gaps) >= INTERVAL * 0.8, gaps
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
