"""The Pub/Sub source against Google's emulator, with a recording handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flytenotify.config import GcpIntakeConfig
from flytenotify.intake.gcp import PubSubSource
from flytenotify.intake.source import Handler
from tests.cloud.brokers import PROJECT, PubSub, RecordingHandler, eventually
from tests.servers.cloud_brokers import FaultyProxy

# Not UTF-8, with NULs: the body must arrive byte for byte.
BODIES = [bytes([0x0A, i, 0x00, 0xFF, 0xFE]) + b"event-%d" % i for i in range(5)]
KEY = "cloudevents.WorkflowExecution"


@pytest.fixture
async def pubsub(pubsub_env: str) -> AsyncIterator[PubSub]:
    admin = PubSub(pubsub_env)
    try:
        yield admin
    finally:
        await admin.close()


def source_for(subscription: str, **settings: int) -> PubSubSource:
    return PubSubSource(GcpIntakeConfig(project_id=PROJECT, subscription=subscription, **settings))


async def stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 60)


def running(source: PubSubSource, handler: Handler) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    return asyncio.create_task(source.run(handler, stop)), stop


async def test_messages_arrive_with_their_bytes_attributes_and_position(pubsub: PubSub) -> None:
    topic, subscription = await pubsub.topic_with_subscription()
    ids = await pubsub.publish(topic, BODIES, KEY)
    handler = RecordingHandler()
    source = source_for(subscription)
    task, stop = running(source, handler)
    try:
        await eventually(lambda: len(handler.received) >= len(BODIES), what="5 messages")
        assert source.status.ready
        assert subscription in source.status.detail
        assert topic in source.status.detail
        assert source.status.last_message_at is not None
    finally:
        await stopped(task, stop)
    assert sorted(handler.bodies()) == sorted(BODIES)
    by_body = {m.body: m for m in handler.received}
    for body, message_id in zip(BODIES, ids, strict=True):
        assert by_body[body].attributes == {"key": KEY}
        assert by_body[body].position == (
            f"gcp subscription=projects/{PROJECT}/subscriptions/{subscription} "
            f"message_id={message_id}"
        )
    assert source.status.state == "stopped"


async def test_ack_is_final_and_retry_comes_back(pubsub: PubSub) -> None:
    topic, subscription = await pubsub.topic_with_subscription(ack_deadline=10)
    await pubsub.publish(topic, BODIES[:2], KEY)
    handler = RecordingHandler(retry_first={BODIES[1]})
    task, stop = running(source_for(subscription, retry_delay=1), handler)
    try:
        await eventually(lambda: handler.bodies().count(BODIES[1]) == 2, what="the retry")
        # Past the subscription's 10 s ack deadline: an unacknowledged message
        # would have come back by now.
        await asyncio.sleep(12)
    finally:
        await stopped(task, stop)
    assert sorted(handler.bodies()) == sorted([BODIES[0], BODIES[1], BODIES[1]])
    assert sorted(handler.acked) == sorted(BODIES[:2])


async def test_stop_mid_stream_leaves_the_unhandled_for_the_next_run(pubsub: PubSub) -> None:
    topic, subscription = await pubsub.topic_with_subscription()
    bodies = [b"message-%d" % i for i in range(30)]
    await pubsub.publish(topic, bodies, KEY)
    stop_first = asyncio.Event()

    async def stop_during_first_batch(batch: int) -> None:
        stop_first.set()  # a SIGTERM while the first batch is being recorded

    first = RecordingHandler(on_batch=stop_during_first_batch)
    source = source_for(subscription, batch_size=10)
    await asyncio.wait_for(source.run(first, stop_first), 60)
    assert 1 <= len(first.acked) <= 10

    second = RecordingHandler()
    task, stop = running(source_for(subscription, batch_size=10), second)
    try:
        await eventually(
            lambda: len(second.acked) >= 30 - len(first.acked), what="the rest of the stream"
        )
    finally:
        await stopped(task, stop)
    # Each message handled exactly once across the two runs: none acked unhandled,
    # none handed over twice.
    assert sorted(first.acked + second.acked) == sorted(bodies)


async def test_reconnects_when_the_broker_comes_back(pubsub: PubSub, pubsub_env: str) -> None:
    topic, subscription = await pubsub.topic_with_subscription()
    proxy = FaultyProxy(int(pubsub_env.rsplit(":", 1)[1]))
    await proxy.open()
    source = source_for(subscription)
    handler = RecordingHandler()
    with pytest.MonkeyPatch.context() as env:
        # The source reaches the emulator through the proxy; the test publishes directly.
        env.setenv("PUBSUB_EMULATOR_HOST", proxy.host)
        task, stop = running(source, handler)
        try:
            await pubsub.publish(topic, [b"before"], KEY)
            await eventually(lambda: b"before" in handler.bodies(), what="the first message")
            await proxy.cut()
            await eventually(lambda: source.status.state == "reconnecting", what="the failure")
            assert source.status.last_error
            await pubsub.publish(topic, [b"while away"], KEY)
            await proxy.open()
            await eventually(
                lambda: b"while away" in handler.bodies(), within=90, what="the reconnection"
            )
            assert source.status.ready
        finally:
            await stopped(task, stop)
            await proxy.cut()


async def test_check_names_the_subscription_and_its_topic(pubsub: PubSub) -> None:
    topic, subscription = await pubsub.topic_with_subscription()
    found = await source_for(subscription).check()
    assert subscription in found
    assert topic in found


async def test_check_of_a_missing_subscription_says_which(pubsub: PubSub) -> None:
    missing = f"projects/{PROJECT}/subscriptions/no-such-subscription"
    with pytest.raises(LookupError, match=f"Pub/Sub subscription {missing} does not exist"):
        await source_for("no-such-subscription").check()
