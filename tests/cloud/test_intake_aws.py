"""The SQS source against moto's SNS and SQS, with a recording handler."""

from __future__ import annotations

import asyncio
import base64

import pytest

from flytenotify.config import AwsIntakeConfig
from flytenotify.intake.aws import SqsSource
from flytenotify.intake.source import Handler
from tests.cloud.brokers import RecordingHandler, SnsSqs, eventually, sns_notification_json
from tests.servers.cloud_brokers import FaultyProxy

# Not UTF-8, with NULs: SNS carries it as base64, the handler must get the bytes.
BODIES = [bytes([0x0A, i, 0x00, 0xFF, 0xFE]) + b"event-%d" % i for i in range(5)]
KEY = "flyteidl.admin.WorkflowExecutionEventRequest"


@pytest.fixture
def aws(aws_env: str) -> SnsSqs:
    return SnsSqs(aws_env)


def source_for(
    aws: SnsSqs, queue_url: str, endpoint: str | None = None, **settings: int
) -> SqsSource:
    config = AwsIntakeConfig(
        queue_url=queue_url, endpoint_url=endpoint or aws.endpoint, wait_time=1, **settings
    )
    return SqsSource(config)


def running(source: SqsSource, handler: Handler) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    return asyncio.create_task(source.run(handler, stop)), stop


async def stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 60)


@pytest.mark.parametrize("raw", [False, True], ids=["sns-envelope", "raw-delivery"])
async def test_sns_messages_arrive_as_the_published_bytes(aws: SnsSqs, raw: bool) -> None:
    topic, [queue] = await aws.topic_to_queues(raw=[raw])
    await aws.publish(topic, BODIES, KEY)
    handler = RecordingHandler()
    source = source_for(aws, queue)
    task, stop = running(source, handler)
    try:
        await eventually(lambda: len(handler.received) >= len(BODIES), what="5 messages")
        assert source.status.ready
        assert queue in source.status.detail
        assert source.status.last_message_at is not None
    finally:
        await stopped(task, stop)
    assert sorted(handler.bodies()) == sorted(BODIES)
    for message in handler.received:
        assert message.position.startswith(f"aws queue={queue} message_id=")
        # Raw delivery drops SNS's envelope, and with it the subject.
        assert message.attributes.get("key") == (None if raw else KEY)
    assert await aws.counts(queue) == (0, 0)  # every ACK deleted its message


async def test_retry_comes_back_after_the_visibility_timeout(aws: SnsSqs) -> None:
    topic, [queue] = await aws.topic_to_queues(raw=[False])
    await aws.publish(topic, BODIES[:2], KEY)
    handler = RecordingHandler(retry_first={BODIES[1]})
    task, stop = running(source_for(aws, queue, visibility_timeout=1), handler)
    try:
        await eventually(lambda: handler.bodies().count(BODIES[1]) == 2, what="the retry")
    finally:
        await stopped(task, stop)
    assert sorted(handler.bodies()) == sorted([BODIES[0], BODIES[1], BODIES[1]])
    assert await aws.counts(queue) == (0, 0)


async def test_retry_without_a_configured_timeout_hides_the_message(aws: SnsSqs) -> None:
    queue = await aws.queue(visibility_timeout=1)
    await aws.send_raw(queue, [base64.b64encode(BODIES[0]).decode()])
    handler = RecordingHandler(retry_first={BODIES[0]})
    task, stop = running(source_for(aws, queue), handler)
    try:
        await eventually(lambda: len(handler.received) == 1, what="the first delivery")
        # The queue's own timeout is 1 s; the source hid the message for longer.
        await asyncio.sleep(3)
        assert len(handler.received) == 1
    finally:
        await stopped(task, stop)
    assert await aws.counts(queue) == (0, 1)


async def test_bodies_that_are_not_flyteadmin_messages_reach_the_handler(aws: SnsSqs) -> None:
    queue = await aws.queue()
    texts = [
        "not base64 {and not json",
        '{"Type": "SubscriptionConfirmation", "Message": "confirm"}',
        sns_notification_json("%%% not base64 %%%", KEY),
        '{"specversion": "1.0", "id": "x"}',
        base64.b64encode(b"after the bad ones").decode(),
    ]
    await aws.send_raw(queue, texts)
    handler = RecordingHandler()
    task, stop = running(source_for(aws, queue), handler)
    try:
        await eventually(lambda: len(handler.received) == len(texts), what="every message")
    finally:
        await stopped(task, stop)
    assert sorted(handler.bodies()) == sorted(
        [
            b"not base64 {and not json",
            b'{"Type": "SubscriptionConfirmation", "Message": "confirm"}',
            b"%%% not base64 %%%",
            b'{"specversion": "1.0", "id": "x"}',
            b"after the bad ones",
        ]
    )
    assert await aws.counts(queue) == (0, 0)  # the handler's ACK deleted them: no stall


async def test_stop_mid_stream_leaves_the_unhandled_for_the_next_run(aws: SnsSqs) -> None:
    queue = await aws.queue()
    bodies = [b"message-%d" % i for i in range(30)]
    await aws.send_raw(queue, [base64.b64encode(b).decode() for b in bodies])
    stop_first = asyncio.Event()

    async def stop_during_first_batch(batch: int) -> None:
        stop_first.set()  # a SIGTERM while the first batch is being recorded

    first = RecordingHandler(on_batch=stop_during_first_batch)
    await asyncio.wait_for(source_for(aws, queue).run(first, stop_first), 60)
    assert 1 <= len(first.acked) <= 10

    second = RecordingHandler()
    task, stop = running(source_for(aws, queue), second)
    try:
        await eventually(
            lambda: len(second.acked) >= 30 - len(first.acked), what="the rest of the queue"
        )
    finally:
        await stopped(task, stop)
    assert sorted(first.acked + second.acked) == sorted(bodies)
    assert await aws.counts(queue) == (0, 0)


async def test_reconnects_when_the_broker_comes_back(aws: SnsSqs) -> None:
    queue = await aws.queue()
    proxy = FaultyProxy(int(aws.endpoint.rsplit(":", 1)[1]))
    await proxy.open()
    handler = RecordingHandler()
    source = source_for(aws, queue, endpoint=f"http://{proxy.host}")
    task, stop = running(source, handler)
    try:
        await aws.send_raw(queue, [base64.b64encode(b"before").decode()])
        await eventually(lambda: b"before" in handler.bodies(), what="the first message")
        await proxy.cut()
        await eventually(lambda: source.status.state == "reconnecting", what="the failure")
        assert source.status.last_error
        await aws.send_raw(queue, [base64.b64encode(b"while away").decode()])
        await proxy.open()
        await eventually(
            lambda: b"while away" in handler.bodies(), within=90, what="the reconnection"
        )
        assert source.status.ready
    finally:
        await stopped(task, stop)
        await proxy.cut()


async def test_check_reads_the_queue(aws: SnsSqs) -> None:
    queue = await aws.queue(visibility_timeout=7)
    await aws.send_raw(queue, ["one", "two"])
    found = await source_for(aws, queue).check()
    assert queue in found
    assert "2 messages waiting" in found
    assert "visibility timeout 7 s" in found


async def test_check_of_a_missing_queue_fails(aws: SnsSqs) -> None:
    missing = f"{aws.endpoint}/123456789012/no-such-queue"
    with pytest.raises(LookupError, match=f"SQS queue {missing} does not exist"):
        await source_for(aws, missing).check()
