"""FlyteAdmin's cloud events of ``type: gcp``: one Pub/Sub subscription on its topic.

FlyteAdmin publishes each CloudEvent in the protobuf event format as the
message data, with the publisher's key in the ``key`` attribute. This source
pulls batches with the asyncio Pub/Sub client (no callback threads to bridge),
hands them to the handler, acknowledges the ``ACK`` ones and hides the
``RETRY`` ones for ``retry_delay`` seconds before Pub/Sub delivers them again.
While a batch is being handled its ack deadline is extended, so a slow ledger
does not make Pub/Sub hand the same messages to another replica meanwhile.

``PUBSUB_EMULATOR_HOST`` and the application default credentials work as the
client library defines them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence

from google.api_core import exceptions as google_errors
from google.pubsub_v1 import SubscriberAsyncClient
from google.pubsub_v1.types import ReceivedMessage, Subscription

from flytenotify.intake.gcp_spec import GcpIntakeConfig
from flytenotify.intake.source import (
    Handler,
    Received,
    SourceState,
    SourceStatus,
    Verdict,
    keep_running,
)

log = logging.getLogger("flytenotify.intake.gcp")

_PULL_TIMEOUT = 30.0  # seconds one pull may wait for messages before asking again
_CALL_TIMEOUT = 30.0  # seconds for acknowledge, modify_ack_deadline, get_subscription


class PubSubSource:
    """Pulls one Pub/Sub subscription; acknowledges a message once its verdict is ACK."""

    name = "gcp"

    def __init__(self, config: GcpIntakeConfig) -> None:
        self.config = config
        self.status = SourceStatus()
        self.subscription = SubscriberAsyncClient.subscription_path(
            config.project_id, config.subscription
        )

    def describe(self) -> str:
        """What this source consumes, for the start-up log."""
        return f"Pub/Sub subscription {self.subscription}, up to {self.config.batch_size} per pull"

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        await keep_running(self, lambda: self._session(handle, stop), stop)

    async def check(self) -> str:
        async with SubscriberAsyncClient() as client:
            found = await self._subscription(client)
        return (
            f"Pub/Sub subscription {found.name} on topic {found.topic}, "
            f"ack deadline {found.ack_deadline_seconds} s"
        )

    async def _session(self, handle: Handler, stop: asyncio.Event) -> None:
        async with SubscriberAsyncClient() as client:
            found = await self._subscription(client)
            lease = _Lease(client, self.subscription, found.ack_deadline_seconds)
            self.status.state = SourceState.CONNECTED
            self.status.detail = f"Pub/Sub subscription {found.name} on topic {found.topic}"
            log.info("intake gcp: pulling %s", found.name)
            while not stop.is_set():
                messages = await self._pull(client, stop)
                if messages:
                    self.status.last_message_at = time.time()
                    verdicts = await lease.held_while(messages, handle(self._received(messages)))
                    await self._settle(client, messages, verdicts)

    async def _subscription(self, client: SubscriberAsyncClient) -> Subscription:
        try:
            return await client.get_subscription(
                subscription=self.subscription, timeout=_CALL_TIMEOUT
            )
        except google_errors.NotFound as error:
            # Pub/Sub's own message does not say which subscription it looked for.
            raise LookupError(
                f"Pub/Sub subscription {self.subscription} does not exist ({error})"
            ) from error

    async def _pull(
        self, client: SubscriberAsyncClient, stop: asyncio.Event
    ) -> list[ReceivedMessage]:
        """One pull, abandoned when ``stop`` is set (what it took comes back later)."""
        pull = asyncio.ensure_future(
            client.pull(
                subscription=self.subscription,
                max_messages=self.config.batch_size,
                # No retries inside the library: a broker that went away should
                # show in the status and go through keep_running's backoff.
                retry=None,
                timeout=_PULL_TIMEOUT,
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({pull, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not pull.done():
            pull.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pull
            return []
        try:
            return list(pull.result().received_messages)
        except google_errors.DeadlineExceeded:
            return []  # nothing arrived within the pull's time: ask again

    def _received(self, messages: Sequence[ReceivedMessage]) -> list[Received]:
        return [
            Received(
                body=bytes(m.message.data),
                attributes=dict(m.message.attributes),
                position=f"gcp subscription={self.subscription} message_id={m.message.message_id}",
            )
            for m in messages
        ]

    async def _settle(
        self,
        client: SubscriberAsyncClient,
        messages: Sequence[ReceivedMessage],
        verdicts: Sequence[Verdict],
    ) -> None:
        if len(verdicts) != len(messages):
            raise RuntimeError(
                f"handler gave {len(verdicts)} verdicts for {len(messages)} messages"
            )
        done = [m.ack_id for m, v in zip(messages, verdicts, strict=True) if v is Verdict.ACK]
        again = [m.ack_id for m, v in zip(messages, verdicts, strict=True) if v is not Verdict.ACK]
        # A lost acknowledgement is not a lost notification: the message comes
        # back and the ledger recognises the event it already holds.
        if done:
            await client.acknowledge(
                subscription=self.subscription, ack_ids=done, timeout=_CALL_TIMEOUT
            )
        if again:
            await client.modify_ack_deadline(
                subscription=self.subscription,
                ack_ids=again,
                ack_deadline_seconds=self.config.retry_delay,
                timeout=_CALL_TIMEOUT,
            )


class _Lease:
    """Keeps pulled messages ours while the handler works on them."""

    def __init__(self, client: SubscriberAsyncClient, subscription: str, deadline: int) -> None:
        self.client = client
        self.subscription = subscription
        self.deadline = max(deadline, 10)

    async def held_while(
        self, messages: Sequence[ReceivedMessage], work: Awaitable[list[Verdict]]
    ) -> list[Verdict]:
        extender = asyncio.create_task(self._extend([m.ack_id for m in messages]))
        try:
            return await work
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await extender

    async def _extend(self, ack_ids: list[str]) -> None:
        while True:
            await asyncio.sleep(self.deadline / 2)
            try:
                await self.client.modify_ack_deadline(
                    subscription=self.subscription,
                    ack_ids=ack_ids,
                    ack_deadline_seconds=self.deadline,
                    timeout=_CALL_TIMEOUT,
                )
            except google_errors.GoogleAPICallError as error:
                log.warning("intake gcp: could not extend the ack deadline: %s", error)
