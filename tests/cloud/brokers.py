"""Test-side broker clients: set up topics and queues, publish as FlyteAdmin does.

FlyteAdmin publishes through gizmo: to Pub/Sub with the bytes as the data and
the key in the ``key`` attribute; to SNS with the key as the ``Subject`` and
the bytes base64-encoded as the ``Message``. The helpers below do the same.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiobotocore.session import get_session
from google.pubsub_v1 import PublisherAsyncClient, SubscriberAsyncClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport
from google.pubsub_v1.types import PubsubMessage

from flytenotify.intake.source import Received, Verdict

PROJECT = "flytenotify-test"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(
    condition: Callable[[], bool], within: float = 60.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` holds, polling; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.1)


@dataclass
class RecordingHandler:
    """A handler that records every batch and answers a verdict per body.

    ``retry_first`` bodies get RETRY the first time they arrive and ACK after.
    """

    retry_first: set[bytes] = field(default_factory=set)
    batches: list[list[Received]] = field(default_factory=list)
    acked: list[bytes] = field(default_factory=list)
    on_batch: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, batch: Sequence[Received]) -> list[Verdict]:
        self.batches.append(list(batch))
        if self.on_batch is not None:
            await self.on_batch(len(self.batches))
        verdicts = []
        for message in batch:
            if message.body in self.retry_first:
                self.retry_first.discard(message.body)
                verdicts.append(Verdict.RETRY)
            else:
                self.acked.append(message.body)
                verdicts.append(Verdict.ACK)
        return verdicts

    @property
    def received(self) -> list[Received]:
        return [m for batch in self.batches for m in batch]

    def bodies(self) -> list[bytes]:
        return [m.body for m in self.received]


class PubSub:
    """Topic and subscription administration and publishing against one emulator."""

    def __init__(self, host: str) -> None:
        self.publisher = PublisherAsyncClient(
            transport=PublisherGrpcAsyncIOTransport(channel=grpc.aio.insecure_channel(host))
        )
        self.subscriber = SubscriberAsyncClient(
            transport=SubscriberGrpcAsyncIOTransport(channel=grpc.aio.insecure_channel(host))
        )

    async def close(self) -> None:
        await self.publisher.transport.close()
        await self.subscriber.transport.close()

    async def topic_with_subscription(self, ack_deadline: int = 10) -> tuple[str, str]:
        """A new topic and a subscription on it: (topic path, subscription name)."""
        topic = self.publisher.topic_path(PROJECT, unique("flyte-events"))
        name = unique("flytenotify")
        await self.publisher.create_topic(name=topic)
        await self.subscriber.create_subscription(
            name=self.subscriber.subscription_path(PROJECT, name),
            topic=topic,
            ack_deadline_seconds=ack_deadline,
        )
        return topic, name

    async def publish(self, topic: str, bodies: Sequence[bytes], key: str) -> list[str]:
        """Publish as gizmo's PublishRaw does; returns the message ids."""
        return await self.publish_keyed(topic, [(body, key) for body in bodies])

    async def publish_keyed(self, topic: str, messages: Sequence[tuple[bytes, str]]) -> list[str]:
        """Publish (body, key) pairs, up to 500 per request."""
        ids: list[str] = []
        for start in range(0, len(messages), 500):
            chunk = [
                PubsubMessage(data=body, attributes={"key": key})
                for body, key in messages[start : start + 500]
            ]
            answer = await self.publisher.publish(topic=topic, messages=chunk)
            ids.extend(answer.message_ids)
        return ids


class SnsSqs:
    """SNS topics, SQS queues and subscriptions in moto."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    @asynccontextmanager
    async def _client(self, service: str) -> Any:
        async with get_session().create_client(
            service, region_name="us-east-1", endpoint_url=self.endpoint
        ) as client:
            yield client

    async def queue(self, visibility_timeout: int = 30) -> str:
        async with self._client("sqs") as sqs:
            answer = await sqs.create_queue(
                QueueName=unique("flytenotify"),
                Attributes={"VisibilityTimeout": str(visibility_timeout)},
            )
            return str(answer["QueueUrl"])

    async def topic_to_queues(self, raw: Sequence[bool]) -> tuple[str, list[str]]:
        """An SNS topic with one new SQS queue subscribed per ``raw`` flag."""
        async with self._client("sns") as sns, self._client("sqs") as sqs:
            topic = (await sns.create_topic(Name=unique("flyte-events")))["TopicArn"]
            urls = []
            for raw_delivery in raw:
                url = await self.queue()
                arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
                    "Attributes"
                ]["QueueArn"]
                await sns.subscribe(
                    TopicArn=topic,
                    Protocol="sqs",
                    Endpoint=arn,
                    Attributes={"RawMessageDelivery": "true" if raw_delivery else "false"},
                )
                urls.append(url)
            return str(topic), urls

    async def publish(self, topic: str, bodies: Sequence[bytes], key: str) -> None:
        """Publish as gizmo's PublishRaw does: Subject = key, Message = base64(bytes)."""
        async with self._client("sns") as sns:
            for body in bodies:
                await sns.publish(
                    TopicArn=topic, Subject=key, Message=base64.b64encode(body).decode()
                )

    async def publish_batch(self, topic: str, messages: Sequence[tuple[bytes, str]]) -> None:
        """(body, key) pairs as gizmo publishes them, ten per PublishBatch call."""
        async with self._client("sns") as sns:
            for start in range(0, len(messages), 10):
                entries = [
                    {
                        "Id": str(i),
                        "Subject": key,
                        "Message": base64.b64encode(body).decode(),
                    }
                    for i, (body, key) in enumerate(messages[start : start + 10])
                ]
                answer = await sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
                assert not answer.get("Failed"), answer["Failed"]

    async def send_batch(self, queue_url: str, texts: Sequence[str]) -> None:
        """Bodies straight into a queue, ten per SendMessageBatch call."""
        async with self._client("sqs") as sqs:
            for start in range(0, len(texts), 10):
                entries = [
                    {"Id": str(i), "MessageBody": text}
                    for i, text in enumerate(texts[start : start + 10])
                ]
                answer = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                assert not answer.get("Failed"), answer["Failed"]

    async def send_raw(self, queue_url: str, texts: Sequence[str]) -> None:
        async with self._client("sqs") as sqs:
            for text in texts:
                await sqs.send_message(QueueUrl=queue_url, MessageBody=text)

    async def counts(self, queue_url: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue, as SQS reports them."""
        async with self._client("sqs") as sqs:
            answer = await sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        attributes = answer["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


def sns_notification_json(message: str, subject: str) -> str:
    """An SNS envelope as SQS would hold it without raw delivery."""
    return json.dumps(
        {"Type": "Notification", "MessageId": unique("m"), "Subject": subject, "Message": message}
    )
