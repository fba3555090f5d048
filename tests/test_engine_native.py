"""Native channels through the whole engine: events in, provider APIs called.

The loopback Slack, PagerDuty and webhook servers record what they were asked;
these tests check the engine's side of the contract (routing, retries after a
429, trigger/resolve across executions, nothing lost).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from flytenotify import Email, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.channels.webhook import SIGNATURE_HEADER, verify_signature
from flytenotify.config import (
    DatabaseConfig,
    PagerDutyConfig,
    RetryConfig,
    Settings,
    SlackConfig,
    WebhookTarget,
)
from flytenotify.domain import Delivery, DeliveryStatus
from tests.helpers import PLAN, event_json, execution
from tests.servers.http_sink import HttpSink
from tests.servers.pagerduty_api import PagerDutyApiServer
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer

ROUTING_KEY = "r" * 32
RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=6, lease=10.0)


def native_settings(
    database_url: str, slack: SlackApiServer, pagerduty: PagerDutyApiServer, sink: HttpSink
) -> Settings:
    return Settings(
        database=DatabaseConfig(url=database_url),
        slack=SlackConfig(
            bot_token=SecretStr(DEFAULT_TOKEN), base_url=slack.base_url, per_channel_interval=0.0
        ),
        pagerduty=PagerDutyConfig(
            events_url=pagerduty.events_url,
            routing_keys={"data-oncall": SecretStr(ROUTING_KEY)},
        ),
        webhooks={"ops": WebhookTarget(url=sink.url("/flyte"), secret=SecretStr("hook-secret"))},
        retry=RETRY,
    )


def count_claims(n: Notifier) -> Callable[[], int]:
    """From now on, count the store's claims (each still runs): how often the loop looks."""
    calls = 0
    claim = n.store.claim

    async def counted(*args: Any, **kwargs: Any) -> list[Delivery]:
        nonlocal calls
        calls += 1
        return await claim(*args, **kwargs)

    n.store.claim = counted  # type: ignore[method-assign]
    return lambda: calls


async def test_slack_pagerduty_and_webhook_deliveries_end_to_end(database_url: str) -> None:
    async with (
        SlackApiServer(users={"john.doe@example.com": "U0JOHNDOE1"}) as slack,
        PagerDutyApiServer() as pagerduty,
        HttpSink() as sink,
    ):
        settings = native_settings(database_url, slack, pagerduty, sink)
        async with Notifier(settings) as n:
            await n.register_launch_plan(
                PLAN,
                [
                    Slack([P.FAILED], ["#alerts", "john.doe@example.com"]),
                    PagerDuty([P.FAILED, P.SUCCEEDED], ["data-oncall"]),
                    Email([P.FAILED], ["webhook:ops"]),
                ],
            )
            await n.create_execution(execution("nightly-1"), PLAN)
            await n.report_event(event_json("nightly-1", "FAILED", error="<!channel> disk full"))
            await n.run_until_idle(include_retries=True, max_wait=20)

            # Slack: the channel and the person (looked up by email, then a DM).
            posted = {call.body["channel"] for call in slack.posts()}
            assert posted == {"#alerts", slack.dms["U0JOHNDOE1"]}
            assert all("&lt;!channel&gt;" in str(call.body["blocks"]) for call in slack.posts())
            # PagerDuty: a trigger on the launch plan's dedup key.
            (trigger,) = pagerduty.accepted
            assert trigger["event_action"] == "trigger"
            assert trigger["dedup_key"] == "proj/prod/nightly"
            assert trigger["routing_key"] == ROUTING_KEY
            # The webhook: signed, verifiable.
            (hook,) = sink.requests
            assert verify_signature("hook-secret", hook.headers[SIGNATURE_HEADER], hook.body)
            assert hook.json()["event"]["phase"] == "FAILED"

            # The next run of the same launch plan succeeds: the incident resolves.
            await n.create_execution(execution("nightly-2"), PLAN)
            await n.report_event(event_json("nightly-2", "SUCCEEDED"))
            await n.run_until_idle(include_retries=True, max_wait=20)
            resolve = pagerduty.accepted[-1]
            assert (resolve["event_action"], resolve["dedup_key"]) == (
                "resolve",
                "proj/prod/nightly",
            )
            assert {d.status for d in await n.deliveries()} == {DeliveryStatus.DELIVERED}


async def test_slack_429_is_waited_out_and_nothing_is_lost(database_url: str) -> None:
    async with SlackApiServer() as slack, PagerDutyApiServer() as pd, HttpSink() as sink:
        slack.rate_limit(retry_after=2, count=1)
        async with Notifier(native_settings(database_url, slack, pd, sink)) as n:
            await n.create_execution(execution("e"), notifications=[Slack([P.FAILED], ["#alerts"])])
            await n.report_event(event_json("e", "FAILED"))
            started = time.monotonic()
            await n.run_until_idle(include_retries=True, max_wait=20)
            (delivery,) = await n.deliveries()
            assert delivery.status is DeliveryStatus.DELIVERED
            outcomes = [(a.outcome, a.reply) for a in await n.attempts(delivery.id)]
            assert outcomes[0][0] == "transient"
            assert "ratelimited" in outcomes[0][1] or "429" in outcomes[0][1]
            assert outcomes[-1][0] == "delivered"
            limited, *later = slack.calls_to("chat.postMessage")
            assert limited.status == 429
            assert later[0].at - limited.at >= 2.0  # Retry-After honoured
            assert time.monotonic() - started >= 2.0


async def test_permanent_slack_error_dead_letters_with_slacks_words(database_url: str) -> None:
    async with (
        SlackApiServer() as slack,
        PagerDutyApiServer() as pd,
        HttpSink() as sink,
        Notifier(native_settings(database_url, slack, pd, sink)) as n,
    ):
        await n.create_execution(
            execution("e"), notifications=[Slack([P.FAILED], ["#no-such-channel"])]
        )
        await n.report_event(event_json("e", "FAILED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (dead,) = await n.deliveries()
        assert (dead.status, dead.attempts) == (DeliveryStatus.DEAD, 1)
        assert "channel_not_found" in dead.last_reply


async def test_pagerduty_outage_is_retried_until_accepted(database_url: str) -> None:
    async with SlackApiServer() as slack, PagerDutyApiServer() as pd, HttpSink() as sink:
        pd.script(500, count=2)
        async with Notifier(native_settings(database_url, slack, pd, sink)) as n:
            await n.create_execution(
                execution("e"), notifications=[PagerDuty([P.TIMED_OUT], ["data-oncall"])]
            )
            await n.report_event(event_json("e", "TIMED_OUT"))
            await n.run_until_idle(include_retries=True, max_wait=20)
            (delivery,) = await n.deliveries()
            assert delivery.status is DeliveryStatus.DELIVERED
            assert [a.outcome for a in await n.attempts(delivery.id)] == [
                "transient",
                "transient",
                "delivered",
            ]
            assert [e.status for e in pd.events] == [500, 500, 202]


async def test_an_attempt_that_hangs_is_abandoned_and_retried(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher's own guard, for a channel whose timeout is longer (or missing)."""
    monkeypatch.setattr("flytenotify.engine.dispatch._ATTEMPT_TIMEOUT", 0.3)
    async with SlackApiServer() as slack, PagerDutyApiServer() as pd, HttpSink() as sink:
        settings = native_settings(database_url, slack, pd, sink)
        settings.webhooks["ops"] = WebhookTarget(url=sink.url("/flyte"), timeout=30.0)
        # A retry due 1-2 s later: on a busy machine a shorter one came due
        # before the first look found nothing due, and was attempted too.
        settings = settings.model_copy(
            update={"retry": RETRY.model_copy(update={"base_delay": 2.0})}
        )
        sink.delay = 20.0  # far longer than the guard
        async with Notifier(settings) as n:
            await n.create_execution(
                execution("e"), notifications=[Email([P.FAILED], ["webhook:ops"])]
            )
            await n.report_event(event_json("e", "FAILED"))
            await n.run_until_idle(max_wait=20)
            (delivery,) = await n.deliveries()
            assert delivery.status is DeliveryStatus.RETRYING
            (attempt,) = await n.attempts(delivery.id)
            assert attempt.outcome == "transient"
            assert "took too long" in attempt.reply
            assert (attempt.finished_at - attempt.started_at).total_seconds() < 10.0

            sink.delay = 0.0
            await n.run_until_idle(include_retries=True, max_wait=20)
            assert (await n.delivery(delivery.id)).status is DeliveryStatus.DELIVERED  # type: ignore[union-attr]


async def test_the_dispatcher_does_not_spin_while_idle_or_waiting_on_a_send(
    database_url: str,
) -> None:
    """Free slots and nothing due mean sleep, not a claim after claim."""
    async with SlackApiServer() as slack, PagerDutyApiServer() as pd, HttpSink() as sink:
        sink.delay = 1.0  # one send in flight for a second
        async with Notifier(native_settings(database_url, slack, pd, sink)) as n:
            claims = count_claims(n)
            n.start_dispatching()
            await asyncio.sleep(1.0)  # idle: nothing enqueued
            idle_claims = claims()
            await n.create_execution(
                execution("e"), notifications=[Email([P.FAILED], ["webhook:ops"])]
            )
            (delivery_id,) = (await n.report_event(event_json("e", "FAILED"))).delivery_ids
            for _ in range(200):  # until recorded as delivered (20 s at most)
                if (await n.delivery(delivery_id)).status is DeliveryStatus.DELIVERED:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.1)
            busy_claims = claims() - idle_claims
            await n.stop_dispatching()
            assert len(sink.requests) == 1
            # The poll is every 2 s; then one look per wake-up (the enqueue, the
            # finished send) and one more after each look that found something.
            assert idle_claims <= 2
            assert busy_claims <= 6


async def test_a_process_without_the_rows_channel_dead_letters_it_visibly(
    database_url: str,
) -> None:
    """Rows of a channel this process has not configured are claimed too, then dead-lettered."""
    async with SlackApiServer() as slack, PagerDutyApiServer() as pd, HttpSink() as sink:
        async with Notifier(native_settings(database_url, slack, pd, sink)) as enqueuer:
            await enqueuer.create_execution(
                execution("e"), notifications=[Email([P.FAILED], ["webhook:ops"])]
            )
            await enqueuer.report_event(event_json("e", "FAILED"))
        without_webhooks = Settings(database=DatabaseConfig(url=database_url), retry=RETRY)
        async with Notifier(without_webhooks) as other:
            await other.run_until_idle(max_wait=20)
            (delivery,) = await other.deliveries()
            assert delivery.channel == "webhook"
            assert delivery.status is DeliveryStatus.DEAD
            assert "no 'webhook' channel is configured" in delivery.last_reply
        assert sink.requests == []


async def test_run_until_idle_beside_a_running_dispatcher_waits_for_it(
    database_url: str,
) -> None:
    """One loop per dispatcher: a second shared its stop event and spun once it ended."""
    async with (
        SlackApiServer() as slack,
        PagerDutyApiServer() as pd,
        HttpSink() as sink,
        Notifier(native_settings(database_url, slack, pd, sink)) as n,
    ):
        n.start_dispatching()
        await n.create_execution(execution("e"), notifications=[Email([P.FAILED], ["webhook:ops"])])
        await n.report_event(event_json("e", "FAILED"))
        await n.run_until_idle(max_wait=20)
        assert len(sink.requests) == 1

        claims = count_claims(n)
        await asyncio.sleep(1.0)
        assert claims() <= 1  # asleep until its 2 s poll, not spinning
        with pytest.raises(RuntimeError, match="already running"):
            await n.dispatcher.run(asyncio.Event())
        await n.stop_dispatching()
