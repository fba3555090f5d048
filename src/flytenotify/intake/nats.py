"""FlyteAdmin's cloud events from NATS (``cloudEvents.type: nats``).

FlyteAdmin publishes each cloud event with a plain core-NATS publish on
``eventsPublisher.topicName``. Two ways to read them:

- JetStream (``stream`` set, the default): a stream on the subject keeps what is
  published (created here if no stream covers the subject yet), and a durable
  pull consumer remembers what was acknowledged. A message is acknowledged only
  after its verdict is ``ACK``; ``RETRY`` naks it with a delay. Nothing published
  while flytenotify is down or restarting is lost.
- core NATS (``stream = ""``): a plain subscription. Whatever is published while
  flytenotify is not subscribed is lost; start-up says so in a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from flytenotify.intake.nats_spec import NatsIntakeConfig
from flytenotify.intake.source import (
    Handler,
    Received,
    SourceState,
    SourceStatus,
    Verdict,
    keep_running,
)

log = logging.getLogger("flytenotify.intake")

CONNECT_TIMEOUT = 5.0
POLL = 1.0  # seconds a fetch waits for messages before looking at ``stop`` again
RETRY_DELAY = 5.0  # seconds before a RETRY message comes back
STREAM_MAX_AGE = 7 * 24 * 3600.0  # a stream created here keeps a week of events
CORE_RETRIES = 5  # core NATS cannot redeliver: a RETRY batch is tried this often in-process
FLUSH_TIMEOUT = 5  # seconds


class NatsSource:
    """One NATS subscription (JetStream durable consumer, or core NATS)."""

    name = "nats"
    retry_delay = RETRY_DELAY  # seconds before a RETRY message comes back

    def __init__(self, config: NatsIntakeConfig) -> None:
        self.config = config
        self.status = SourceStatus()

    def describe(self) -> str:
        """What this source consumes, for the start-up log (credentials left out)."""
        servers = ", ".join(_without_credentials(url) for url in self.config.servers)
        if self.config.stream:
            return (
                f"NATS {servers}: subject {self.config.subject!r} through JetStream stream "
                f"{self.config.stream!r} (created if missing), durable consumer "
                f"{self.config.durable!r}"
            )
        return f"NATS {servers}: subject {self.config.subject!r}, core NATS subscription"

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        if not self.config.stream:
            log.warning(
                'intake nats: core NATS mode (stream = ""): events FlyteAdmin publishes on '
                "%r while flytenotify is not running or reconnecting are LOST; set "
                "[intake.nats] stream to consume through JetStream instead",
                self.config.subject,
            )
        await keep_running(self, lambda: self._session(handle, stop), stop)

    async def check(self) -> str:
        client = await self._connect()
        try:
            if not self.config.stream:
                return (
                    f"connected to {_where(client)}; "
                    f"core NATS subscription on {self.config.subject!r} (events published while "
                    "flytenotify is down are lost)"
                )
            return await self._describe_jetstream(client)
        finally:
            await client.close()

    # -- one connection ----------------------------------------------------------------

    async def _connect(self) -> Client:
        async def on_error(error: Exception) -> None:
            self.status.last_error = str(error) or type(error).__name__
            self.status.last_error_at = time.time()

        # No reconnecting inside the client: keep_running reconnects with
        # backoff and re-creates the subscription, one log line per failure.
        return await nats.connect(
            servers=self.config.servers,
            name="flytenotify",
            connect_timeout=CONNECT_TIMEOUT,
            allow_reconnect=False,
            # The client would otherwise retry the first connection for minutes.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
        )

    async def _session(self, handle: Handler, stop: asyncio.Event) -> None:
        client = await self._connect()
        try:
            if self.config.stream:
                await self._consume_jetstream(client, handle, stop)
            else:
                await self._consume_core(client, handle, stop)
        finally:
            # Acks still in the write buffer must reach the server before we go.
            with contextlib.suppress(Exception):
                await client.flush(timeout=FLUSH_TIMEOUT)
            with contextlib.suppress(Exception):
                await client.close()

    def _connected(self, detail: str) -> None:
        self.status.state = SourceState.CONNECTED
        self.status.detail = detail
        log.info("intake nats: connected: %s", detail)

    # -- JetStream ---------------------------------------------------------------------

    async def _stream_for(self, client: Client) -> str:
        """The stream that covers the subject: an existing one, or ours, created now."""
        jetstream = client.jetstream()
        try:
            found: str = await jetstream.find_stream_name_by_subject(self.config.subject)
        except nats.js.errors.NotFoundError:
            await jetstream.add_stream(
                StreamConfig(
                    name=self.config.stream,
                    subjects=[self.config.subject],
                    max_age=STREAM_MAX_AGE,
                )
            )
            log.info(
                "intake nats: created JetStream stream %r on subject %r",
                self.config.stream,
                self.config.subject,
            )
            return self.config.stream
        if found != self.config.stream:
            log.info(
                "intake nats: subject %r is already in JetStream stream %r; using it",
                self.config.subject,
                found,
            )
        return found

    async def _consume_jetstream(
        self, client: Client, handle: Handler, stop: asyncio.Event
    ) -> None:
        stream = await self._stream_for(client)
        subscription = await client.jetstream().pull_subscribe(
            self.config.subject,
            durable=self.config.durable,
            stream=stream,
            config=ConsumerConfig(
                durable_name=self.config.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.config.ack_wait,
                max_ack_pending=max(1000, 2 * self.config.batch_size),
                filter_subject=self.config.subject,
            ),
        )
        self._connected(
            f"JetStream stream {stream}, durable consumer {self.config.durable}, "
            f"subject {self.config.subject}"
        )
        await self._refresh_backlog(subscription)
        while not stop.is_set():
            self._check_open(client)
            try:
                batch = await subscription.fetch(self.config.batch_size, timeout=POLL)
            except TimeoutError:  # nats.errors.TimeoutError, or asyncio's from inside fetch
                await self._refresh_backlog(subscription)
                continue
            await self._settle_jetstream(batch, handle)

    async def _settle_jetstream(self, batch: list[Msg], handle: Handler) -> None:
        verdicts = await handle([_received(message) for message in batch])
        for message, verdict in zip(batch, verdicts, strict=True):
            if verdict is Verdict.ACK:
                await message.ack()
            else:
                await message.nak(delay=self.retry_delay)
        self.status.last_message_at = time.time()
        self.status.backlog = batch[-1].metadata.num_pending

    async def _refresh_backlog(self, subscription: Any) -> None:
        # Best effort: a slow answer about the backlog is no reason to reconnect.
        try:
            info = await subscription.consumer_info()
        except (nats.errors.Error, TimeoutError) as error:
            log.debug("intake nats: consumer info unavailable: %s", error)
            return
        self.status.backlog = int(info.num_pending or 0)

    async def _describe_jetstream(self, client: Client) -> str:
        jetstream = client.jetstream()
        where = f"NATS {_where(client)}"
        try:
            stream = await jetstream.find_stream_name_by_subject(self.config.subject)
        except nats.js.errors.NotFoundError:
            return (
                f"{where}: no JetStream stream covers subject {self.config.subject!r} yet; "
                f"serve will create stream {self.config.stream!r}"
            )
        info = await jetstream.stream_info(stream)
        found = (
            f"{where}: JetStream stream {stream!r} covers subject {self.config.subject!r} "
            f"({info.state.messages} messages)"
        )
        try:
            consumer = await jetstream.consumer_info(stream, self.config.durable)
        except nats.js.errors.NotFoundError:
            return f"{found}; durable consumer {self.config.durable!r} will be created"
        return (
            f"{found}; durable consumer {self.config.durable!r}: {consumer.num_pending} "
            f"waiting, {consumer.num_ack_pending} unacknowledged"
        )

    # -- core NATS ---------------------------------------------------------------------

    async def _consume_core(self, client: Client, handle: Handler, stop: asyncio.Event) -> None:
        # A queue group: replicas share the messages instead of each taking every one.
        subscription = await client.subscribe(
            self.config.subject,
            queue=self.config.durable,
            pending_msgs_limit=max(65536, self.config.batch_size),
        )
        self._connected(f"core NATS subscription on {self.config.subject} (no redelivery)")
        while not stop.is_set():
            self._check_open(client)
            batch = await _next_batch(subscription, self.config.batch_size)
            if batch:
                await self._settle_core(batch, handle, stop)

    async def _settle_core(self, batch: list[Msg], handle: Handler, stop: asyncio.Event) -> None:
        # The broker keeps nothing: a batch the ledger could not take is tried
        # again here, a bounded number of times, and what is still not recorded
        # is reported as lost rather than dropped silently.
        pending = [_received(message) for message in batch]
        for attempt in range(CORE_RETRIES):
            verdicts = await handle(pending)
            pending = [m for m, v in zip(pending, verdicts, strict=True) if v is Verdict.RETRY]
            if not pending or stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_delay * (attempt + 1) / CORE_RETRIES)
        for message in pending:
            log.error(
                "intake nats: event at %s could not be recorded and core NATS cannot "
                "redeliver it: LOST",
                message.position,
            )
        self.status.last_message_at = time.time()

    @staticmethod
    def _check_open(client: Client) -> None:
        if client.is_closed or not client.is_connected:
            raise ConnectionError(f"connection to NATS lost ({client.last_error or 'closed'})")


async def _next_batch(subscription: Any, size: int) -> list[Msg]:
    """Up to ``size`` messages: wait ``POLL`` for the first, then take what has arrived."""
    try:
        batch = [await subscription.next_msg(timeout=POLL)]
    except TimeoutError:
        return []
    while len(batch) < size and subscription.pending_msgs:
        batch.append(await subscription.next_msg(timeout=POLL))
    return batch


def _where(client: Client) -> str:
    url = client.connected_url
    return _without_credentials(url.geturl()).removeprefix("nats://") if url else "?"


def _without_credentials(url: str) -> str:
    """``nats://user:secret@host:4222`` as ``nats://host:4222``: URLs may carry credentials."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"nats://{url}")
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _received(message: Msg) -> Received:
    return Received(
        body=message.data,
        attributes=dict(message.headers or {}),
        position=_position(message),
    )


def _position(message: Msg) -> str:
    try:
        sequence = message.metadata.sequence.stream
    except (nats.errors.NotJSMessageError, AttributeError):
        return f"nats subject={message.subject}"
    return f"nats subject={message.subject} stream_seq={sequence}"
