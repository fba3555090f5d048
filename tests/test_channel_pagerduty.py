"""PagerDutyChannel against a loopback Events API v2 (tests/servers/pagerduty_api.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from flytenotify.channels.base import Channel, Outcome
from flytenotify.channels.pagerduty import PagerDutyChannel
from flytenotify.config import PagerDutyConfig
from flytenotify.domain import Delivery, EntityId
from tests.helpers import CONSOLE_BASE, rendered_delivery
from tests.servers.pagerduty_api import PagerDutyApiServer

ONCALL = "oncall@example.pagerduty.com"
KEY = "R0UT1NGKEY0123456789abcdef012345"  # 32 characters, as PagerDuty's are
CONSOLE = "https://flyte.example.com/console/projects/proj/domains/dev/executions/e1"
LAUNCH_PLAN = EntityId("proj", "dev", "daily_etl", "v7")


def make_delivery(
    *,
    phase: int = 6,
    execution: str = "e1",
    recipient: str = ONCALL,
    launch_plan: EntityId | None = LAUNCH_PLAN,
    subject: str | None = None,
    console_url: str = CONSOLE,
) -> Delivery:
    delivery = rendered_delivery(
        "pager_duty",
        "pagerduty",
        recipient,
        phase=phase,
        name=execution,
        error="division by zero" if phase == 6 else None,
        launch_plan=launch_plan,
        console_base=CONSOLE_BASE if console_url else None,
        key=f"{execution}-{phase}",
    )
    if subject is None:
        return delivery
    return dataclasses.replace(
        delivery, message=dataclasses.replace(delivery.message, subject=subject)
    )


def pd_config(server: PagerDutyApiServer, **overrides: Any) -> PagerDutyConfig:
    settings: dict[str, Any] = {
        "events_url": server.events_url,
        "routing_keys": {ONCALL: SecretStr(KEY)},
        "source": "flyte-test",
        "timeout": 5.0,
        **overrides,
    }
    return PagerDutyConfig(**settings)


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyApiServer]:
    async with PagerDutyApiServer() as server:
        yield server


@pytest.fixture
async def channel(pagerduty: PagerDutyApiServer) -> AsyncIterator[PagerDutyChannel]:
    chan = PagerDutyChannel(pd_config(pagerduty))
    yield chan
    await chan.close()


async def send_with(config: PagerDutyConfig, *deliveries: Delivery) -> list[Any]:
    chan = PagerDutyChannel(config)
    try:
        return [await chan.send(d) for d in deliveries]
    finally:
        await chan.close()


async def test_is_a_channel(channel: PagerDutyChannel) -> None:
    assert isinstance(channel, Channel)
    assert channel.name == "pagerduty"


async def test_trigger_then_resolve_share_the_dedup_key(
    pagerduty: PagerDutyApiServer, channel: PagerDutyChannel
) -> None:
    failed = await channel.send(make_delivery(phase=6, execution="e1"))
    succeeded = await channel.send(make_delivery(phase=4, execution="e2"))
    assert failed.outcome is succeeded.outcome is Outcome.DELIVERED
    trigger, resolve = pagerduty.accepted
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "proj/dev/daily_etl"
    assert trigger["routing_key"] == resolve["routing_key"] == KEY
    assert "payload" not in resolve
    assert "Event processed" in failed.reply
    assert "dedup_key=proj/dev/daily_etl" in failed.reply


async def test_trigger_payload(pagerduty: PagerDutyApiServer, channel: PagerDutyChannel) -> None:
    await channel.send(make_delivery(phase=6))
    (event,) = pagerduty.accepted
    payload = event["payload"]
    assert payload["summary"] == "Flyte execution proj/dev/e1 failed"
    assert payload["source"] == "flyte-test"
    assert payload["severity"] == "error"
    assert payload["timestamp"].startswith("2024-05-01T12:03:12")
    assert payload["component"] == "daily_etl"
    assert payload["group"] == "proj/dev"
    details = payload["custom_details"]
    assert details["execution"] == "proj/dev/e1"
    assert details["launch_plan"] == "proj/dev/daily_etl@v7"
    assert details["phase"] == "FAILED"
    assert details["error"] == "division by zero"
    assert event["links"] == [{"href": CONSOLE, "text": "Execution in the Flyte console"}]


async def test_no_links_without_a_console_url(
    pagerduty: PagerDutyApiServer, channel: PagerDutyChannel
) -> None:
    await channel.send(make_delivery(console_url=""))
    (event,) = pagerduty.accepted
    assert "links" not in event
    assert "client_url" not in event


async def test_per_execution_dedup_key(pagerduty: PagerDutyApiServer) -> None:
    config = pd_config(pagerduty, dedup="execution")
    await send_with(config, make_delivery(execution="e1"), make_delivery(execution="e2", phase=4))
    assert [e["dedup_key"] for e in pagerduty.accepted] == ["proj/dev/e1", "proj/dev/e2"]


async def test_unknown_launch_plan_falls_back_to_the_execution(
    pagerduty: PagerDutyApiServer, channel: PagerDutyChannel
) -> None:
    await channel.send(make_delivery(launch_plan=None))
    assert pagerduty.accepted[0]["dedup_key"] == "proj/dev/e1"


@pytest.mark.parametrize(("phase", "severity"), [(6, "error"), (8, "error"), (7, "warning")])
async def test_default_severity(
    pagerduty: PagerDutyApiServer, channel: PagerDutyChannel, phase: int, severity: str
) -> None:
    result = await channel.send(make_delivery(phase=phase))
    assert result.outcome is Outcome.DELIVERED
    (event,) = pagerduty.accepted
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == severity


async def test_configured_severity(pagerduty: PagerDutyApiServer) -> None:
    config = pd_config(pagerduty, severity={"FAILED": "critical", "ABORTED": "info"})
    await send_with(config, make_delivery(phase=6), make_delivery(phase=7), make_delivery(phase=8))
    # TIMED_OUT is not in the configured map: "error" is the fallback.
    assert [e["payload"]["severity"] for e in pagerduty.accepted] == ["critical", "info", "error"]


async def test_long_summary_is_truncated(
    pagerduty: PagerDutyApiServer, channel: PagerDutyChannel
) -> None:
    result = await channel.send(make_delivery(subject="s" * 5000))
    assert result.outcome is Outcome.DELIVERED, result.reply
    summary = pagerduty.accepted[0]["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("… (truncated)")


async def test_400_is_permanent_and_keeps_the_errors(pagerduty: PagerDutyApiServer) -> None:
    config = pd_config(pagerduty, routing_keys={ONCALL: SecretStr("too-short")})
    (result,) = await send_with(config, make_delivery())
    assert result.outcome is Outcome.PERMANENT
    assert result.reply.startswith("400 Event object is invalid")
    assert "Length of 'routing_key' is incorrect" in result.reply
    assert "too-short" not in result.reply  # a routing key is a secret


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"), [(429, "7", 7.0), (429, None, None), (500, None, None)]
)
async def test_throttling_and_server_errors_are_transient(
    pagerduty: PagerDutyApiServer,
    channel: PagerDutyChannel,
    status: int,
    retry_after: str | None,
    expected: float | None,
) -> None:
    pagerduty.script(status, retry_after=retry_after)
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after == expected
    assert result.reply.startswith(str(status))


async def test_recipient_without_routing_key_is_permanent(
    pagerduty: PagerDutyApiServer, channel: PagerDutyChannel
) -> None:
    result = await channel.send(make_delivery(recipient="someone@example.com"))
    assert result.outcome is Outcome.PERMANENT
    assert result.reply == "no routing key configured for recipient someone@example.com"
    assert pagerduty.events == []


async def test_timeout_is_transient(pagerduty: PagerDutyApiServer) -> None:
    pagerduty.delay = 0.5
    (result,) = await send_with(pd_config(pagerduty, timeout=0.1), make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert "Timeout" in result.reply


async def test_connection_refused_is_transient() -> None:
    async with PagerDutyApiServer() as gone:
        config = pd_config(gone)
    (result,) = await send_with(config, make_delivery())
    assert result.outcome is Outcome.TRANSIENT


async def test_check_describes_without_secrets(channel: PagerDutyChannel) -> None:
    description = await channel.check()
    assert ONCALL in description
    assert KEY not in description
