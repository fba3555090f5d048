"""WebhookChannel against a loopback receiver (tests/servers/http_sink.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from flytenotify.channels._http import parse_retry_after
from flytenotify.channels.base import Channel, Outcome
from flytenotify.channels.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    encode_body,
    sign,
    verify_signature,
    webhook_payload,
)
from flytenotify.config import WebhookTarget
from flytenotify.domain import Delivery
from tests.helpers import rendered_delivery
from tests.servers.http_sink import HttpSink, SinkRequest

SECRET = "s3cret-for-tests"


def make_delivery(recipient: str = "ops", *, extra: dict[str, str] | None = None) -> Delivery:
    # A Slack notification whose recipient was "webhook:ops": any kind may use a webhook.
    delivery = rendered_delivery("slack", "webhook", recipient, key="proj/dev/e1#6#0#webhook#ops")
    message = dataclasses.replace(
        delivery.message, text="body ✓", variables={**delivery.message.variables, **(extra or {})}
    )
    return dataclasses.replace(delivery, message=message)


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as server:
        yield server


def targets(sink: HttpSink, **extra: WebhookTarget) -> dict[str, WebhookTarget]:
    ops = WebhookTarget(
        url=sink.url("/hooks/flyte"),
        secret=SecretStr(SECRET),
        headers={"Authorization": "Bearer t0ken", SIGNATURE_HEADER: "forged"},
        timeout=5.0,
    )
    return {"ops": ops, **extra}


@pytest.fixture
async def channel(sink: HttpSink) -> AsyncIterator[WebhookChannel]:
    chan = WebhookChannel(targets(sink))
    yield chan
    await chan.close()


async def send_one(sink: HttpSink, channel: WebhookChannel) -> tuple[Outcome, SinkRequest]:
    result = await channel.send(make_delivery())
    (request,) = sink.requests
    return result.outcome, request


def test_a_body_in_flight_holds_no_more_memory_than_its_bytes() -> None:
    """Every webhook in flight holds its body: 1,000 of them must not hold 16 MiB."""
    payload = webhook_payload(rendered_delivery("email", "webhook", "ops"))
    tracemalloc.start()
    try:
        bodies = [encode_body(payload) for _ in range(100)]
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = len(bodies[0])
    assert size > 1000
    assert held < 100 * (size + 200)  # the bytes and a bytes object's header, not a spare buffer


async def test_is_a_channel(channel: WebhookChannel) -> None:
    assert isinstance(channel, Channel)
    assert channel.name == "webhook"


async def test_posts_signed_json_to_the_configured_url(
    sink: HttpSink, channel: WebhookChannel
) -> None:
    outcome, request = await send_one(sink, channel)
    assert outcome is Outcome.DELIVERED
    assert (request.method, request.path) == ("POST", "/hooks/flyte")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers[DELIVERY_HEADER] == "proj/dev/e1#6#0#webhook#ops"
    assert request.headers[SIGNATURE_HEADER].startswith(f"t={request.headers[TIMESTAMP_HEADER]},")
    assert verify_signature(SECRET, request.headers[SIGNATURE_HEADER], request.body)


async def test_payload(sink: HttpSink, channel: WebhookChannel) -> None:
    _, request = await send_one(sink, channel)
    body = request.json()
    assert body["delivery_id"] == "proj/dev/e1#6#0#webhook#ops"
    event = body["event"]
    assert event["execution_id"] == {"project": "proj", "domain": "dev", "name": "e1"}
    assert (event["phase"], event["phase_code"]) == ("FAILED", 6)
    assert event["occurred_at"] == "2024-05-01T12:03:12Z"
    assert event["error"]["message"] == "division by zero"
    assert event["error"]["kind"] == "USER"
    assert body["execution"]["workflow"]["name"] == "etl.wf"
    assert body["execution"]["console_url"].startswith("https://flyte.example.com/")
    assert body["launch_plan"] == {
        "project": "proj",
        "domain": "dev",
        "name": "daily_etl",
        "version": "v7",
    }
    assert body["subject"] == "Flyte execution proj/dev/e1 failed"
    assert body["text"] == "body ✓"
    assert body["variables"]["duration"] == "3m 12s"


async def test_signature_follows_the_documented_recipe(
    sink: HttpSink, channel: WebhookChannel
) -> None:
    _, request = await send_one(sink, channel)
    timestamp = request.headers[TIMESTAMP_HEADER]
    signed = f"{timestamp}.".encode() + request.body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"t={timestamp},v1={expected}"


async def test_tampered_body_or_wrong_secret_fails(sink: HttpSink, channel: WebhookChannel) -> None:
    _, request = await send_one(sink, channel)
    header = request.headers[SIGNATURE_HEADER]
    tampered = request.body.replace(b"FAILED", b"SUCCEEDED")
    assert not verify_signature(SECRET, header, tampered)
    assert not verify_signature("another-secret", header, request.body)


async def test_old_or_future_timestamp_fails(sink: HttpSink, channel: WebhookChannel) -> None:
    _, request = await send_one(sink, channel)
    header = request.headers[SIGNATURE_HEADER]
    sent = int(request.headers[TIMESTAMP_HEADER])
    assert verify_signature(SECRET, header, request.body, now=sent + 299)
    assert not verify_signature(SECRET, header, request.body, now=sent + 301)
    assert not verify_signature(SECRET, header, request.body, now=sent - 301)
    assert not verify_signature(SECRET, header, request.body, tolerance_s=10, now=sent + 11)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1700000000"])
def test_malformed_signature_header_fails(header: str) -> None:
    assert not verify_signature(SECRET, header, b"{}", now=1_700_000_000)


def test_a_rotated_secret_can_be_accepted_alongside() -> None:
    header = sign("new", 1_700_000_000, b"{}") + ",v1=" + "0" * 64
    assert verify_signature("new", header, b"{}", now=1_700_000_000)


@given(st.binary(), st.text(min_size=1), st.integers(min_value=0, max_value=2**40))
def test_sign_verify_round_trip(body: bytes, secret: str, timestamp: int) -> None:
    header = sign(secret, timestamp, body)
    assert verify_signature(secret, header, body, now=timestamp)
    assert not verify_signature(secret, header, body + b"x", now=timestamp)


async def test_unsigned_target_has_no_signature(sink: HttpSink) -> None:
    chan = WebhookChannel({"plain": WebhookTarget(url=sink.url())})
    try:
        result = await chan.send(make_delivery("plain"))
    finally:
        await chan.close()
    assert result.outcome is Outcome.DELIVERED
    assert SIGNATURE_HEADER not in sink.requests[0].headers
    assert TIMESTAMP_HEADER in sink.requests[0].headers


async def test_urls_in_the_payload_are_never_followed(
    sink: HttpSink, channel: WebhookChannel
) -> None:
    await channel.send(make_delivery(extra={"url": "http://127.0.0.1:1/evil"}))
    assert [r.path for r in sink.requests] == ["/hooks/flyte"]


async def test_unknown_target_is_permanent(sink: HttpSink, channel: WebhookChannel) -> None:
    result = await channel.send(make_delivery("nope"))
    assert result.outcome is Outcome.PERMANENT
    assert "nope" in result.reply
    assert sink.requests == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (204, Outcome.DELIVERED),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (408, Outcome.TRANSIENT),
        (404, Outcome.PERMANENT),
        (400, Outcome.PERMANENT),
        (401, Outcome.PERMANENT),
    ],
)
async def test_status_classification(
    sink: HttpSink, channel: WebhookChannel, status: int, outcome: Outcome
) -> None:
    sink.script(status, body="" if status == 204 else "receiver says no")
    result = await channel.send(make_delivery())
    assert result.outcome is outcome
    assert result.reply.startswith(str(status))
    if status != 204:
        assert "receiver says no" in result.reply


async def test_429_honours_retry_after(sink: HttpSink, channel: WebhookChannel) -> None:
    sink.script(429, headers={"Retry-After": "5"})
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after == 5


async def test_redirect_is_not_followed(sink: HttpSink, channel: WebhookChannel) -> None:
    sink.script(302, headers={"Location": sink.url("/elsewhere")})
    result = await channel.send(make_delivery())
    assert result.outcome is Outcome.PERMANENT
    assert "redirects are not followed" in result.reply
    assert len(sink.requests) == 1


async def test_timeout_is_transient(sink: HttpSink) -> None:
    sink.delay = 0.5
    chan = WebhookChannel({"slow": WebhookTarget(url=sink.url(), timeout=0.1)})
    try:
        result = await chan.send(make_delivery("slow"))
    finally:
        await chan.close()
    assert result.outcome is Outcome.TRANSIENT
    assert "Timeout" in result.reply


async def test_connection_refused_is_transient() -> None:
    async with HttpSink() as gone:
        url = gone.url()
    chan = WebhookChannel({"gone": WebhookTarget(url=url)})
    try:
        result = await chan.send(make_delivery("gone"))
    finally:
        await chan.close()
    assert result.outcome is Outcome.TRANSIENT


async def test_check_describes_targets(channel: WebhookChannel) -> None:
    description = await channel.check()
    assert "ops" in description
    assert "signed" in description
    assert SECRET not in description


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    seconds = parse_retry_after(later)
    assert seconds is not None
    assert 55 <= seconds <= 60


async def test_check_keeps_url_credentials_out() -> None:
    chan = WebhookChannel(
        {"basic": WebhookTarget(url="https://hook:s3cret-pw@hooks.example.com/x")}
    )
    try:
        description = await chan.check()
    finally:
        await chan.close()
    assert "hooks.example.com" in description
    assert "s3cret-pw" not in description
    assert "hook:s3cret-pw@" not in description
