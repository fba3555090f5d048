"""Load generator: N terminal events to flytenotify (or N alerts to Alertmanager) over HTTP.

Records, for every event, when its request was sent and when it was accepted
(the answer arrived), so latency can be measured from either point. aiohttp is
used rather than httpx because it costs the client less CPU per request, and
the client shares the machine's two cores with what it measures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PROJECT, DOMAIN = "bench", "development"


@dataclass
class Intake:
    """Per event n: send and acceptance times (time.time()); refused events counted."""

    sent: dict[int, float] = field(default_factory=dict)
    accepted: dict[int, float] = field(default_factory=dict)
    refused: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def rate(self) -> float:
        took = self.finished - self.started
        return len(self.accepted) / took if took > 0 else 0.0


def failed_event(n: int, launch_plan: str) -> dict[str, Any]:
    """A FAILED event for execution run-<n>, naming its launch plan (no execution needed)."""
    return {
        "executionId": {"project": PROJECT, "domain": DOMAIN, "name": f"run-{n}"},
        "phase": "FAILED",
        "occurredAt": "2024-05-01T12:00:00Z",
        "error": {"code": "USER:Error", "message": f"task failed in run-{n}", "kind": "USER"},
        "launch_plan": {"project": PROJECT, "domain": DOMAIN, "name": launch_plan},
    }


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


async def send_single(
    base_url: str, numbers: Sequence[int], launch_plan: str, concurrency: int
) -> Intake:
    """One event per POST /api/v1/events, ``concurrency`` requests in flight."""
    intake = Intake(started=time.time())
    queue = iter(numbers)
    url = f"{base_url}/api/v1/events"

    async def worker(session: aiohttp.ClientSession) -> None:
        for n in queue:  # a shared iterator: each worker takes the next event
            intake.sent[n] = time.time()
            async with session.post(url, json=failed_event(n, launch_plan)) as response:
                await response.read()
                if response.status == 202:
                    intake.accepted[n] = time.time()
                else:
                    intake.refused += 1

    return await _drive(intake, worker, concurrency)


async def _drive(
    intake: Intake,
    worker: Callable[[aiohttp.ClientSession], Awaitable[None]],
    concurrency: int,
) -> Intake:
    """``concurrency`` workers on one session until the shared queue is empty."""
    async with _session(concurrency) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    intake.finished = time.time()
    return intake


# (batch size, HTTP status, JSON answer or None) -> accepted, per item
Accepts = Callable[[int, int, Any], list[bool]]


async def post_batches(
    url: str,
    numbers: Sequence[int],
    make: Callable[[int], dict[str, Any]],
    accepts: Accepts,
    batch_size: int,
    concurrency: int,
) -> Intake:
    """Items in batches (a JSON array per POST), ``concurrency`` batches in flight."""
    intake = Intake(started=time.time())
    batches = iter([numbers[i : i + batch_size] for i in range(0, len(numbers), batch_size)])

    async def worker(session: aiohttp.ClientSession) -> None:
        for batch in batches:
            body = [make(n) for n in batch]
            sent = time.time()
            async with session.post(url, json=body) as response:
                text = await response.text()
                status = response.status
            accepted = time.time()
            flags = accepts(len(batch), status, json.loads(text) if text.strip() else None)
            flags = flags if len(flags) == len(batch) else [False] * len(batch)
            for n, ok in zip(batch, flags, strict=True):
                intake.sent[n] = sent
                if ok:
                    intake.accepted[n] = accepted
                else:
                    intake.refused += 1

    return await _drive(intake, worker, concurrency)


def flytenotify_accepts(size: int, status: int, answer: Any) -> list[bool]:
    results = answer.get("results", []) if isinstance(answer, dict) else []
    return [r.get("outcome") == "enqueued" for r in results] or [False] * size


async def send_batched(
    base_url: str, numbers: Sequence[int], launch_plan: str, batch_size: int, concurrency: int
) -> Intake:
    """Events through POST /api/v1/events:batch."""
    return await post_batches(
        f"{base_url}/api/v1/events:batch",
        numbers,
        lambda n: failed_event(n, launch_plan),
        flytenotify_accepts,
        batch_size,
        concurrency,
    )


def alertmanager_accepts(size: int, status: int, answer: Any) -> list[bool]:
    """Alertmanager answers 200 for a whole batch of alerts, or an error for all of it."""
    return [status == 200] * size
