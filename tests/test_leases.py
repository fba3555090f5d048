"""Leases: short enough that a crashed node's work resumes in seconds, renewed so
that a slow but live send is never taken over by another replica.

On both backends: the store's renewal contract, and two dispatchers sharing one
ledger while a provider takes longer than the lease. Then ``flytenotify serve``
with its default settings, SIGKILLed while a send is held open and started
again: the held delivery goes out again within 15 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
from aiohttp import web

from flytenotify import Email
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, RetryConfig, Settings, WebhookTarget
from flytenotify.store import store_for_url
from flytenotify.store.base import OTHER_CHANNELS
from tests.helpers import PLAN, event_json, execution
from tests.servers.http_sink import HttpSink
from tests.test_serve import start_serve, stop

DELIVERY_HEADER = "X-Flytenotify-Delivery"
STARTUP = 60.0  # seconds a serve process may take to answer on a busy machine


class ArrivalSink(HttpSink):
    """An :class:`HttpSink` that also notes when each request arrives (before any delay)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), delivery id)

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrivals.append((time.monotonic(), request.headers.get(DELIVERY_HEADER, "")))
        return await super()._handle(request)


async def _enqueue(url: str, recipients: list[str]) -> None:
    async with Notifier(Settings(database=DatabaseConfig(url=url))) as notifier:
        await notifier.register_launch_plan(PLAN, [Email([P.FAILED], recipients)])
        await notifier.report_event(event_json("e1", "FAILED", launch_plan=PLAN))


async def test_a_renewed_lease_holds_and_a_lost_one_is_not_renewed(database_url: str) -> None:
    await _enqueue(database_url, ["a@x.io", "b@x.io"])
    store = store_for_url(database_url)
    await store.open()
    try:
        kept, dropped = await store.claim("a", time.time(), 0.5, {OTHER_CHANNELS: 10})
        for _ in range(4):  # one second in all: twice the lease
            await asyncio.sleep(0.25)
            assert await store.renew_leases("a", [kept.id], time.time(), 0.5) == 1
        taken = await store.claim("b", time.time(), 30.0, {OTHER_CHANNELS: 10})
        assert [d.id for d in taken] == [dropped.id]  # only the lease left to pass
        # "b" holds it now: "a" renewing it changes nothing.
        assert await store.renew_leases("a", [dropped.id], time.time(), 0.5) == 0
        assert await store.claim("c", time.time(), 30.0, {OTHER_CHANNELS: 10}) == []
        assert await store.renew_leases("a", [], time.time(), 0.5) == 0
    finally:
        await store.close()


async def test_a_send_slower_than_the_lease_is_not_taken_over(database_url: str) -> None:
    async with HttpSink() as sink:
        sink.delay = 3.0  # five leases: without renewal the other replica sends it again
        settings = Settings(
            database=DatabaseConfig(url=database_url),
            webhooks={"ops": WebhookTarget(url=sink.url())},
            retry=RetryConfig(lease=0.6),
        )
        async with Notifier(settings) as first, Notifier(settings) as second:
            await first.register_launch_plan(PLAN, [Email([P.FAILED], ["webhook:ops"])])
            await first.create_execution(execution("slow-1"), PLAN)
            await first.report_event(event_json("slow-1", "FAILED"))
            first.start_dispatching()
            second.start_dispatching()
            deadline = time.monotonic() + 20
            while (await first.counts())["delivered"] < 1:
                assert time.monotonic() < deadline, await first.deliveries()
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a second send, were there one, would have arrived
            await first.stop_dispatching()
            await second.stop_dispatching()
            (delivery,) = await first.deliveries()
            assert [a.outcome for a in await first.attempts(delivery.id)] == ["delivered"]
        assert len(sink.requests) == 1


def _write_config(tmp_path: Path, sink: HttpSink) -> Path:
    config = tmp_path / "flytenotify.toml"
    # A provider this slow is still alive: the send must not time out meanwhile.
    config.write_text(f'[webhooks.ops]\nurl = "{sink.url()}"\ntimeout = 80.0\n')
    return config


async def test_a_killed_nodes_held_send_resumes_within_fifteen_seconds(tmp_path: Path) -> None:
    """Default settings; the first node dies with a send the provider holds open.

    The node that takes over is started before the kill and measured from it:
    what is bounded is the lease, not how long Python takes to start on a
    busy machine. Until the kill it must not take the held send over either.
    """
    async with ArrivalSink() as sink:
        sink.delay = 75.0  # hold the first node's request until it is killed
        config = _write_config(tmp_path, sink)
        serve = [tmp_path, "--config", str(config)]
        first, base = await asyncio.to_thread(start_serve, *serve, within=STARTUP)
        second: subprocess.Popen[str] | None = None
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                plan = {
                    "version": "v1",
                    "notifications": [
                        {"phases": ["FAILED"], "email": {"recipientsEmail": ["webhook:ops"]}}
                    ],
                }
                response = await client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
                assert response.status_code == 200, response.text
                event = event_json("run-1", "FAILED", launch_plan=PLAN)
                response = await client.post("/api/v1/events", json=event)
                assert response.status_code == 202, response.text
            deadline = time.monotonic() + STARTUP
            while not sink.arrivals:
                assert time.monotonic() < deadline, "the first node never sent"
                await asyncio.sleep(0.05)
            second, _ = await asyncio.to_thread(start_serve, *serve, within=STARTUP)
            await asyncio.sleep(1.0)  # both up: the live node's send stays its own
            assert len(sink.arrivals) == 1
            sink.delay = 0.0
            os.kill(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            while len(sink.arrivals) < 2:
                assert time.monotonic() < killed_at + 20, "the held send was not resumed"
                await asyncio.sleep(0.05)
            resumed_after = sink.arrivals[1][0] - killed_at
            assert resumed_after < 15.0, f"resumed {resumed_after:.1f} s after the kill"
            assert sink.arrivals[1][1] == sink.arrivals[0][1]  # the same delivery, again
        finally:
            await asyncio.to_thread(stop, first)
            if second is not None:
                await asyncio.to_thread(stop, second)
