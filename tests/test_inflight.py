"""The adaptive in-flight limit as a rule (engine/inflight.py), and the dispatcher under it.

The rule: a destination's limit grows while it answers 2xx, halves on a
429, 5xx or timeout (once per window of sends), never leaves [1, cap]. The
integration test runs the dispatcher against a loopback HTTP receiver that
answers slowly, then with 429s, then slowly again, and checks what the
receiver saw: how many requests it had open at once, and that every delivery
arrived.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from flytenotify import Email
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.channels.base import SendResult
from flytenotify.config import (
    DatabaseConfig,
    DispatchConfig,
    GroupingConfig,
    RetryConfig,
    Settings,
    WebhookTarget,
)
from flytenotify.domain import DeliveryStatus, EntityId
from flytenotify.engine.inflight import AimdRule, InflightLimiter, Signal, Ticket, signal_of
from tests.helpers import event_json
from tests.servers.http_sink import HttpSink

OK = SendResult.delivered("200 OK")
TOO_MANY = SendResult.transient("429 Too Many Requests", retry_after=1.0)
TIMED_OUT = SendResult.transient("TimeoutError: no complete answer within 10s")
REFUSED = SendResult.permanent("400 Bad Request")


async def take(limiter: InflightLimiter, count: int, cap: int = 1000) -> list[Ticket]:
    return [await limiter.acquire("webhook", "http://a:80", cap) for _ in range(count)]


def limit(limiter: InflightLimiter) -> int | None:
    return limiter.limit("webhook", "http://a:80")


def test_outcomes_map_to_signals() -> None:
    assert signal_of(OK) is Signal.GROW
    assert signal_of(TOO_MANY) is Signal.BACK_OFF
    assert signal_of(TIMED_OUT) is Signal.BACK_OFF
    assert signal_of(REFUSED) is Signal.HOLD  # a bad request says nothing about load
    assert signal_of(None) is Signal.HOLD  # cancelled


async def test_grows_by_one_per_success_while_in_use() -> None:
    limiter = InflightLimiter(AimdRule(initial=4, maximum=100))
    tickets = await take(limiter, 4)
    for ticket in tickets:
        limiter.release(ticket, Signal.GROW)
    assert limit(limiter) == 8  # slow start: one more per success, doubling per round trip


async def test_a_trickle_does_not_grow_it() -> None:
    limiter = InflightLimiter(AimdRule(initial=8, maximum=100))
    for _ in range(20):  # one at a time: never half the limit in flight
        (ticket,) = await take(limiter, 1)
        limiter.release(ticket, Signal.GROW)
    assert limit(limiter) == 8


async def test_halves_on_429_or_timeout_once_per_window() -> None:
    limiter = InflightLimiter(AimdRule(initial=16, maximum=100))
    tickets = await take(limiter, 16)
    # Sixteen sends under way meet an overloaded receiver: one halving, not sixteen.
    limiter.release(tickets[0], signal_of(TOO_MANY))
    assert limit(limiter) == 8
    for ticket in tickets[1:]:
        limiter.release(ticket, signal_of(TIMED_OUT))
    assert limit(limiter) == 8
    # A send started after the halving that fails too halves it again.
    (late,) = await take(limiter, 1)
    limiter.release(late, Signal.BACK_OFF)
    assert limit(limiter) == 4


async def test_after_a_back_off_it_grows_by_one_per_round_trip() -> None:
    limiter = InflightLimiter(AimdRule(initial=8, maximum=100))
    first = await take(limiter, 8)
    for ticket in first:
        limiter.release(ticket, Signal.BACK_OFF)
    assert limit(limiter) == 4
    for _ in range(3):  # three full windows of successes: +1 each
        tickets = await take(limiter, limit(limiter) or 0)
        for ticket in tickets:
            limiter.release(ticket, Signal.GROW)
    assert limit(limiter) == 7


async def test_never_below_one_nor_above_its_caps() -> None:
    limiter = InflightLimiter(AimdRule(initial=2, maximum=6))
    for _ in range(10):
        (ticket,) = await take(limiter, 1)
        limiter.release(ticket, Signal.BACK_OFF)
    assert limit(limiter) == 1
    for _ in range(20):
        tickets = await take(limiter, limit(limiter) or 0)
        for ticket in tickets:
            limiter.release(ticket, Signal.GROW)
    assert limit(limiter) == 6  # the rule's maximum
    small = InflightLimiter(AimdRule(initial=4, maximum=100))
    for _ in range(20):
        tickets = await take(small, 3, cap=3)  # the channel's own bound (a pool of 3)
        for ticket in tickets:
            small.release(ticket, Signal.GROW)
    assert limit(small) == 3


async def test_a_full_destination_queues_sends_in_order() -> None:
    limiter = InflightLimiter(AimdRule(initial=2, maximum=2))
    held = await take(limiter, 2)
    order: list[int] = []

    async def wait(n: int) -> Ticket:
        ticket = await limiter.acquire("webhook", "http://a:80", 1000)
        order.append(n)
        return ticket

    waiting = [asyncio.create_task(wait(n)) for n in range(4)]
    await asyncio.sleep(0)
    assert order == []  # none started past the limit
    waiting[1].cancel()  # a waiter that gives up takes no slot
    waiting[3].cancel()  # nor does one that gives up just before the slots free
    limiter.release(held[0], Signal.HOLD)
    limiter.release(held[1], Signal.HOLD)
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert order == [0, 2]
    assert [type(o) for o in outcomes[1::2]] == [asyncio.CancelledError] * 2
    # Another destination has slots of its own.
    other = await limiter.acquire("webhook", "http://b:80", 1000)
    assert limiter.limit("webhook", "http://b:80") == 2
    limiter.release(other, Signal.HOLD)


async def test_capacity_sums_the_destinations_in_use() -> None:
    limiter = InflightLimiter(AimdRule(initial=4, maximum=100))
    assert limiter.capacity("webhook", cap=1000) == 4  # nothing sent yet: the initial limit
    a = await limiter.acquire("webhook", "http://a:80", 1000)
    b = await limiter.acquire("webhook", "http://b:80", 1000)
    assert limiter.capacity("webhook", cap=1000) == 8
    assert limiter.capacity("webhook", cap=6) == 6
    limiter.release(a, Signal.HOLD)
    limiter.release(b, Signal.HOLD)
    assert limiter.capacity("webhook", cap=1000) == 4  # idle: what one destination may take


async def test_fixed_limits_when_not_adaptive() -> None:
    limiter = InflightLimiter(AimdRule(initial=4, maximum=50, adaptive=False))
    tickets = await take(limiter, 50)
    assert limit(limiter) == 50
    limiter.release(tickets[0], Signal.BACK_OFF)
    for ticket in tickets[1:]:
        limiter.release(ticket, Signal.GROW)
    assert limit(limiter) == 50
    assert limiter.capacity("pagerduty", cap=20) == 20


def test_initial_above_maximum_is_refused() -> None:
    with pytest.raises(ValueError, match="initial_per_destination"):
        DispatchConfig(initial_per_destination=100, max_per_destination=10)


# --- the dispatcher against a real receiver ---------------------------------------------------

PLAN = EntityId("proj", "prod", "hooks", "v1")
EVENTS = 600  # more than are sent during the 429s: the receiver never runs dry
SLOW = 0.05  # seconds the receiver takes to answer
INITIAL = 4
MAXIMUM = 32


async def test_in_flight_grows_while_answered_then_backs_off_on_429(tmp_path: Path) -> None:
    async with HttpSink() as sink:
        sink.delay = SLOW
        # Requests in the order answered: 120 accepted, 120 refused with 429
        # (the first of them were all under way at once), then accepted again
        # (the refused ones come back as retries).
        sink.script(200, count=120)
        sink.script(429, count=120)
        settings = Settings(
            database=DatabaseConfig(url=str(tmp_path / "ledger.db")),
            webhooks={"ops": WebhookTarget(url=sink.url())},
            dispatch=DispatchConfig(initial_per_destination=INITIAL, max_per_destination=MAXIMUM),
            retry=RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=50),
            # Each delivery its own request: what the limits are measured on.
            grouping=GroupingConfig(by=[]),
        )
        async with Notifier(settings) as notifier:
            await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["webhook:ops"])])
            events = [event_json(f"run-{i}", "FAILED", launch_plan=PLAN) for i in range(EVENTS)]
            await notifier.report_events(events)
            await notifier.run_until_idle(max_wait=120, include_retries=True)
            counts = await notifier.counts()

    seen = sink.requests
    accepted_first = [r.concurrent for r in seen[:120]]
    refused = [r for r in seen if r.status == 429]
    assert len(refused) == 120
    # Answered 2xx, the receiver was given more at once than the start allowed,
    # but never more than the maximum.
    peak = max(accepted_first)
    assert 4 * INITIAL <= peak <= MAXIMUM
    # Refused, it was given fewer: by the last 429s, a quarter of the peak or less.
    assert max(r.concurrent for r in refused[-20:]) <= peak // 4
    assert max(r.concurrent for r in seen) <= MAXIMUM
    # Nothing lost, nothing accepted twice.
    accepted = Counter(r.json()["delivery_id"] for r in seen if r.status == 200)
    assert len(accepted) == EVENTS
    assert set(accepted.values()) == {1}
    assert {k: n for k, n in counts.items() if n} == {DeliveryStatus.DELIVERED.value: EVENTS}
