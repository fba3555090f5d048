"""What every broker source shares: messages in, one verdict each, acknowledged after commit.

A source (NATS, Google Pub/Sub, SQS) receives FlyteAdmin's cloud events and
hands them in batches to one handler, which decodes and filters them, records
what matters in the ledger and answers one :class:`Verdict` per message. The
source acknowledges a message only after its verdict is ``ACK``: by then the
event and its deliveries are committed, or the message was dropped on purpose
(not a terminal workflow event, or malformed). ``RETRY`` leaves the message
with the broker, which delivers it again: nothing is acknowledged and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Received:
    """One message as a broker delivered it."""

    body: bytes
    # Message attributes or headers (Pub/Sub attributes, SQS message attributes,
    # NATS headers), names as the broker gives them.
    attributes: Mapping[str, str] = field(default_factory=dict)
    # Where it came from, for logs: "nats subject=flyte-events stream_seq=12".
    position: str = ""


class Verdict(enum.Enum):
    ACK = "ack"  # recorded in the ledger, or dropped on purpose: never deliver it again
    RETRY = "retry"  # not recorded (FlyteAdmin or the ledger is away): deliver it again


Handler = Callable[[Sequence[Received]], Awaitable[list[Verdict]]]
"""Decides a batch: one verdict per message, in order. Never raises for a bad message."""


class SourceState(enum.StrEnum):
    STARTING = "starting"  # not connected yet
    CONNECTED = "connected"  # consuming: the only ready state
    RECONNECTING = "reconnecting"  # it failed (last_error says why) and is trying again
    STOPPED = "stopped"  # stop was asked for and it returned


@dataclass
class SourceStatus:
    """What a source reports to ``/readyz``, ``/metrics`` and the start-up log."""

    state: SourceState = SourceState.STARTING
    detail: str = ""  # e.g. "JetStream stream FLYTE_EVENTS, durable consumer flytenotify"
    last_error: str = ""
    last_error_at: float | None = None
    last_message_at: float | None = None
    # Messages waiting in the broker for us, where the broker tells it (JetStream
    # pending, SQS ApproximateNumberOfMessages); None where it does not.
    backlog: int | None = None

    @property
    def ready(self) -> bool:
        return self.state is SourceState.CONNECTED

    def failed(self, error: BaseException | str) -> None:
        self.state = SourceState.RECONNECTING
        if isinstance(error, BaseException):
            error = str(error) or type(error).__name__
        self.last_error = error
        self.last_error_at = time.time()


class Source(Protocol):
    """One broker subscription. Built from its configuration section."""

    name: str  # "nats", "gcp", "aws": the label in logs, metrics and /readyz
    status: SourceStatus

    def describe(self) -> str:
        """What this source consumes, for people (start-up log, check-config); no secrets."""
        ...

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; reconnect with backoff when the broker goes away.

        Returns only after ``stop``; every message handed to ``handle`` is
        either acknowledged (its verdict was ``ACK``) or left to the broker.
        """
        ...

    async def check(self) -> str:
        """Connect once and say what was found (``check-config --connect``).

        Raises if the broker cannot be reached.
        """
        ...


log = logging.getLogger("flytenotify.intake")


async def keep_running(
    source: Source,
    session: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    min_delay: float = 0.5,
    max_delay: float = 30.0,
) -> None:
    """Run ``session`` until ``stop``; after each failure log one line, back off, run it again.

    ``session`` connects, consumes until ``stop`` is set, and raises when the
    broker goes away. The delay doubles per consecutive failure (with jitter)
    up to ``max_delay``, and starts over once a session has run a while.
    """
    delay = min_delay
    while not stop.is_set():
        started = time.monotonic()
        try:
            await session()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if stop.is_set():
                break
            if time.monotonic() - started > 10 * max_delay:
                delay = min_delay
            source.status.failed(error)
            log.warning(
                "intake %s: %s; reconnecting in %.1f s",
                source.name,
                source.status.last_error,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, max_delay)
        else:
            break
    source.status.state = SourceState.STOPPED
