"""FlyteAdmin's cloud events of ``type: aws``: an SQS queue subscribed to its SNS topic.

FlyteAdmin publishes each CloudEvent (protobuf event format) to SNS with the
publisher's key as the ``Subject`` and the bytes base64-encoded as the
``Message``, because SNS messages are text. What reaches the queue depends on
the subscription:

- without raw message delivery, the SQS body is SNS's JSON envelope
  (``{"Type": "Notification", "Subject": ..., "Message": <base64>, ...}``);
- with raw message delivery, the SQS body is the ``Message`` itself: the
  base64 text, and the subject is lost.

Either way this source hands the handler the decoded CloudEvent bytes, with
the subject as the ``key`` attribute (the name Pub/Sub uses for the same
value). A body that is neither is handed over as it came: the handler reports
it as malformed and answers ACK, so it is deleted rather than stalling the
queue.

Messages are deleted only after an ``ACK`` verdict. On ``RETRY`` they come back
after ``visibility_timeout`` when it is set, otherwise after
:data:`RETRY_DELAY` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from flytenotify.intake.aws_spec import AwsIntakeConfig
from flytenotify.intake.source import (
    Handler,
    Received,
    SourceState,
    SourceStatus,
    Verdict,
    keep_running,
)

log = logging.getLogger("flytenotify.intake.aws")

RETRY_DELAY = 10  # seconds a RETRY message stays invisible when the config sets no timeout
_BACKLOG_EVERY = 15.0  # seconds between ApproximateNumberOfMessages reads

# What SQS answers for a queue URL that names no queue (query and JSON protocols).
_NO_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}

Message = Mapping[str, Any]  # one entry of ReceiveMessage's "Messages"


class SqsSource:
    """Long-polls one SQS queue; deletes a message once its verdict is ACK."""

    name = "aws"

    def __init__(self, config: AwsIntakeConfig) -> None:
        self.config = config
        self.status = SourceStatus()
        self._backlog_read_at = 0.0

    def describe(self) -> str:
        """What this source consumes, for the start-up log."""
        return (
            f"SQS queue {self.config.queue_url} (region {self.config.region}), "
            f"long polls of {self.config.wait_time} s"
        )

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        await keep_running(self, lambda: self._session(handle, stop), stop)

    async def check(self) -> str:
        async with self._client() as sqs:
            attributes = await self._queue_attributes(sqs)
        return (
            f"SQS queue {self.config.queue_url}: "
            f"{attributes.get('ApproximateNumberOfMessages', '?')} messages waiting, "
            f"visibility timeout {attributes.get('VisibilityTimeout', '?')} s"
        )

    def _client(self) -> Any:
        # The read timeout outlasts the long poll, or every empty poll would fail.
        config = AioConfig(
            connect_timeout=10,
            read_timeout=self.config.wait_time + 20,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        return get_session().create_client(
            "sqs",
            region_name=self.config.region,
            endpoint_url=self.config.endpoint_url,
            config=config,
        )

    async def _session(self, handle: Handler, stop: asyncio.Event) -> None:
        async with self._client() as sqs:
            attributes = await self._queue_attributes(sqs)
            self._note_backlog(attributes)
            self.status.state = SourceState.CONNECTED
            self.status.detail = f"SQS queue {self.config.queue_url}"
            log.info("intake aws: polling %s", self.config.queue_url)
            while not stop.is_set():
                messages = await self._receive(sqs, stop)
                if messages:
                    self.status.last_message_at = time.time()
                    await self._settle(sqs, messages, await handle(_received(messages, self)))
                await self._refresh_backlog(sqs)

    async def _receive(self, sqs: Any, stop: asyncio.Event) -> list[Message]:
        """One long poll, abandoned when ``stop`` is set (the messages then come back)."""
        request: dict[str, Any] = {
            "QueueUrl": self.config.queue_url,
            "MaxNumberOfMessages": self.config.batch_size,
            "WaitTimeSeconds": self.config.wait_time,
            "MessageAttributeNames": ["All"],
        }
        if self.config.visibility_timeout is not None:
            request["VisibilityTimeout"] = self.config.visibility_timeout
        poll = asyncio.ensure_future(sqs.receive_message(**request))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return []
        return list(poll.result().get("Messages", []))

    async def _settle(self, sqs: Any, messages: Sequence[Message], verdicts: list[Verdict]) -> None:
        if len(verdicts) != len(messages):
            raise RuntimeError(
                f"handler gave {len(verdicts)} verdicts for {len(messages)} messages"
            )
        done = [m for m, v in zip(messages, verdicts, strict=True) if v is Verdict.ACK]
        again = [m for m, v in zip(messages, verdicts, strict=True) if v is not Verdict.ACK]
        if done:
            answer = await sqs.delete_message_batch(
                QueueUrl=self.config.queue_url, Entries=_entries(done)
            )
            _log_failed("delete", answer)
        if again and self.config.visibility_timeout is None:
            entries = [{**e, "VisibilityTimeout": RETRY_DELAY} for e in _entries(again)]
            answer = await sqs.change_message_visibility_batch(
                QueueUrl=self.config.queue_url, Entries=entries
            )
            _log_failed("change visibility of", answer)

    async def _queue_attributes(self, sqs: Any) -> dict[str, str]:
        try:
            answer = await sqs.get_queue_attributes(
                QueueUrl=self.config.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "VisibilityTimeout"],
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _NO_QUEUE:
                raise LookupError(
                    f"SQS queue {self.config.queue_url} does not exist ({error})"
                ) from error
            raise
        return dict(answer.get("Attributes", {}))

    async def _refresh_backlog(self, sqs: Any) -> None:
        if time.monotonic() - self._backlog_read_at >= _BACKLOG_EVERY:
            self._note_backlog(await self._queue_attributes(sqs))

    def _note_backlog(self, attributes: Mapping[str, str]) -> None:
        self._backlog_read_at = time.monotonic()
        waiting = attributes.get("ApproximateNumberOfMessages")
        self.status.backlog = int(waiting) if waiting is not None else None


def _entries(messages: Sequence[Message]) -> list[dict[str, str]]:
    # Batch entry ids must be unique within the call; the position in the batch is.
    return [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]


def _log_failed(action: str, answer: Mapping[str, Any]) -> None:
    # A failed delete is not a lost notification: the message comes back and
    # the ledger recognises the event it already holds.
    for failure in answer.get("Failed", []):
        log.warning(
            "intake aws: could not %s a message: %s %s",
            action,
            failure.get("Code"),
            failure.get("Message"),
        )


def _received(messages: Sequence[Message], source: SqsSource) -> list[Received]:
    received = []
    for message in messages:
        body, attributes = unwrap(message)
        position = f"aws queue={source.config.queue_url} message_id={message.get('MessageId', '')}"
        received.append(Received(body=body, attributes=attributes, position=position))
    return received


def unwrap(message: Message) -> tuple[bytes, dict[str, str]]:
    """The CloudEvent bytes and attributes of one SQS message, SNS envelope or raw."""
    text = str(message.get("Body", ""))
    attributes = _sqs_attributes(message)
    envelope = _sns_envelope(text)
    if envelope is not None:
        attributes.update(_sns_attributes(envelope))
        if isinstance(envelope.get("Subject"), str):
            attributes["key"] = envelope["Subject"]
        text = envelope["Message"]
    return _base64_or_text(text), attributes


def _sns_envelope(text: str) -> dict[str, Any] | None:
    """SNS's JSON envelope of a notification, or None when the body is something else."""
    if not text.startswith("{"):
        return None
    try:
        envelope = json.loads(text)
    except ValueError:
        return None
    if (
        isinstance(envelope, dict)
        and envelope.get("Type") == "Notification"
        and isinstance(envelope.get("Message"), str)
    ):
        return envelope
    return None


def _base64_or_text(text: str) -> bytes:
    """FlyteAdmin's base64; anything else as the text's bytes, for the decoder to judge."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


def _sqs_attributes(message: Message) -> dict[str, str]:
    return {
        name: str(value["StringValue"])
        for name, value in message.get("MessageAttributes", {}).items()
        if "StringValue" in value
    }


def _sns_attributes(envelope: Mapping[str, Any]) -> dict[str, str]:
    attributes = envelope.get("MessageAttributes")
    if not isinstance(attributes, dict):
        return {}
    return {
        name: str(value["Value"])
        for name, value in attributes.items()
        if isinstance(value, dict) and "Value" in value
    }
