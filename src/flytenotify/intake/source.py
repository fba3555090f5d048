"""What every intake source shares, and what flytenotify knows about each kind of source.

A broker source (NATS, Google Pub/Sub, SQS) receives FlyteAdmin's cloud
events and hands them in batches to one handler, which decodes and filters
them, records what matters in the ledger and answers one :class:`Verdict`
per message. The source acknowledges a message only after its verdict is
``ACK``: by then the event and its deliveries are committed, or the message
was dropped on purpose (not a terminal workflow event, or malformed).
``RETRY`` leaves the message with the broker, which delivers it again:
nothing is acknowledged and lost.

A source that reads something other than messages (Flyte 2's watch of its
control plane) makes the events itself and records them through the
:class:`Recorder` directly.

Each kind of source is declared by one :class:`IntakeSpec` (its configuration
section, how its sources are built and how they run), collected by
:mod:`flytenotify.intake.registry`.
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
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from flytenotify.domain import Execution, ExecutionEvent, ExecutionId, GateReached, NamedRule
    from flytenotify.store.base import EventResult


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
    """One intake source, built from its configuration section: what everything
    that lists intake (start-up, ``/readyz``, ``/metrics``, ``check-config``) sees.
    How it runs is its :class:`IntakeSpec`'s to say."""

    # "nats", "gcp", "aws", "flyte2:PROJECT/DOMAIN": the label in logs, metrics and /readyz
    name: str
    status: SourceStatus

    def describe(self) -> str:
        """What this source consumes, for people (start-up log, check-config); no secrets."""
        ...

    async def check(self) -> str:
        """Connect once and say what was found (``check-config --connect``).

        Raises if what it reads from cannot be reached.
        """
        ...


class BrokerSource(Source, Protocol):
    """One broker subscription: its messages go to a :data:`Handler`."""

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; reconnect with backoff when the broker goes away.

        Returns only after ``stop``; every message handed to ``handle`` is
        either acknowledged (its verdict was ``ACK``) or left to the broker.
        """
        ...


class Recorder(Protocol):
    """What intake records through, and reads back: the ledger behind the
    :class:`~flytenotify.app.Notifier`, which implements this."""

    async def record_checked_events(
        self,
        events: Sequence[ExecutionEvent],
        known: Mapping[ExecutionId, Execution] | None = None,
    ) -> list[EventResult]:
        """Record events that passed intake's checks; ``known`` gives executions
        read from where they live, used for those the ledger does not hold yet."""
        ...

    async def executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        """Those of ``ids`` the ledger holds."""
        ...

    async def named_rules(self) -> list[NamedRule]:
        """What the names in Flyte 2 users' code mean."""
        ...

    def waits_for_gates(self) -> bool:
        """Whether a ``[waiting.*]`` rule wants to hear of Flyte 1 gates (node events)."""
        ...

    async def gates_reached(self, reached: Sequence[GateReached]) -> int:
        """Announce the gates these node events may have reached (once per gate).
        Raises when FlyteAdmin or the ledger cannot answer now."""
        ...

    async def watch_position(self, source: str) -> float | None:
        """Up to when ``source`` has recorded every run that ended (None: never watched)."""
        ...

    async def advance_watch_position(self, source: str, position: float) -> None:
        """Move ``source``'s position to ``position`` if that is later."""
        ...

    def follows(
        self,
        project: str,
        domain: str,
        *,
        launch_plan: str | None = None,
        task: str | None = None,
        trigger: str | None = None,
    ) -> bool:
        """Whether a deadline may select an execution of ``project``/``domain`` with
        these names (``None``: not known here; ``""``: none), from memory: its
        non-terminal events are recorded then, and dropped otherwise."""
        ...


class Counters(Protocol):
    """What intake counts: the service's :class:`~flytenotify.metrics.Metrics`."""

    def event_received(self, outcome: str, count: int = 1) -> None: ...

    def intake_outcome(self, source: str, outcome: str, count: int = 1) -> None: ...

    def intake_drop(self, source: str, cloud_event_type: str, reason: str) -> None: ...


class RecordingSource(Source, Protocol):
    """A source that makes its events itself from what it reads (Flyte 2's watch of
    its control plane), and records them through a :class:`Recorder`."""

    async def run(
        self, recorder: Recorder, stop: asyncio.Event, *, counters: Counters | None = None
    ) -> None:
        """Read until ``stop`` is set, recording through ``recorder`` (counted in
        ``counters``); reconnect with backoff when what it reads goes away."""
        ...


@dataclass(frozen=True)
class Feed:
    """Where running sources put what they receive (see :func:`flytenotify.intake.egress.feed`)."""

    recorder: Recorder
    counters: Counters
    # The handler of the broker source named so: decodes, filters and records
    # FlyteAdmin's cloud events through ``recorder``.
    handler: Callable[[str], Handler]


async def run_broker(source: BrokerSource, feed: Feed, stop: asyncio.Event) -> None:
    """How a broker source runs: its messages go to the broker handler."""
    await source.run(feed.handler(source.name), stop)


async def run_recording(source: RecordingSource, feed: Feed, stop: asyncio.Event) -> None:
    """How a source that makes its events itself runs: it records them directly."""
    await source.run(feed.recorder, stop, counters=feed.counters)


C = TypeVar("C")
S = TypeVar("S", bound=Source)


@dataclass(frozen=True)
class IntakeSpec(Generic[C, S]):
    """Everything flytenotify knows about one kind of intake source.

    ``config`` is the type of its configuration section (a pydantic model),
    found at ``section``, a dotted path (``intake.nats`` is ``[intake.nats]``);
    the section's value is None when it is absent, and then no source is
    built. A spec is declared in a module that imports no client library, so
    that the configuration loads without one: ``build`` imports it.
    """

    name: str  # the intake: "nats", "flyte2"
    section: str  # its configuration section in flytenotify.toml and Settings
    config: Any  # the section's type, validated with pydantic.TypeAdapter
    # Its sources from its section: one for a broker, one per watched project for Flyte 2.
    build: Callable[[C], Sequence[S]]
    # How one of its sources runs until ``stop``, fed by ``feed``: a broker's
    # messages to the broker handler (:func:`run_broker`), or the events a source
    # makes itself to the recorder (:func:`run_recording`).
    run: Callable[[S, Feed, asyncio.Event], Awaitable[None]]
    # The extra of pyproject.toml that installs its client library, when that
    # is optional: a ``build`` that cannot import it raises ``MissingExtra``.
    extra: str | None = None


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
