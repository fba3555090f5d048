"""The brokers FlyteAdmin publishes its cloud events to, for the broker-intake runs.

- NATS JetStream: the local server on 127.0.0.1:4222 (shared with other users of
  the machine, so every run gets a stream, subject and durable consumer of its own,
  deleted afterwards);
- Google Pub/Sub: Google's emulator, started here for the whole bench;
- SNS → SQS: moto, started here for the whole bench; events go through SNS to a
  subscribed queue, as FlyteAdmin's ``aws`` publisher sends them.

The emulator and moto are started and stopped with the tests' helpers
(tests/servers/cloud_brokers.py), and topics, queues and publishing use the
tests' clients (tests/cloud/brokers.py), so the bench publishes exactly as the
tests do. A :class:`Lane` is one broker ready for one run: its ``[intake.*]``
section, the environment ``flytenotify serve`` needs, and how to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
from nats.js.api import StreamConfig
from tests.cloud.brokers import PROJECT as PUBSUB_PROJECT
from tests.cloud.brokers import PubSub, SnsSqs
from tests.flyteadmin_egress import FlyteCloudEvent
from tests.servers.cloud_brokers import (
    DUMMY_AWS,
    BrokerProcess,
    moto_missing,
    moto_server,
    pubsub_emulator,
    pubsub_emulator_missing,
)

NATS_URL = "nats://127.0.0.1:4222"
PUBLISH_CHUNK = 200  # JetStream publishes awaited together
BROKERS = ("nats", "gcp", "aws")


@dataclass
class Lane:
    """One broker, set up for one run."""

    broker: str
    toml: str  # the [intake.*] section
    publish: Callable[[Sequence[FlyteCloudEvent]], Coroutine[Any, Any, None]]
    cleanup: Callable[[], Coroutine[Any, Any, None]]
    env: dict[str, str] = field(default_factory=dict)  # for flytenotify serve


LaneMaker = Callable[[], Coroutine[Any, Any, Lane]]  # sets a broker up for one run


@dataclass
class Brokers:
    """What is available in this bench: a lane maker per broker, or why not."""

    makers: dict[str, LaneMaker] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def nats_missing() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            return None
    except OSError as error:
        return f"no NATS server on 127.0.0.1:4222 ({error})"


async def nats_lane() -> Lane:
    """A JetStream stream on a subject of its own; FlyteAdmin's structured JSON on it."""
    tag = secrets.token_hex(5)
    subject, stream = f"bench-flyte-events-{tag}", f"BENCH_FLYTE_EVENTS_{tag.upper()}"

    async def publish(events: Sequence[FlyteCloudEvent]) -> None:
        client = await nats.connect(NATS_URL, connect_timeout=5, max_reconnect_attempts=3)
        try:
            jetstream = client.jetstream()
            await jetstream.add_stream(StreamConfig(name=stream, subjects=[subject]))
            for start in range(0, len(events), PUBLISH_CHUNK):
                chunk = events[start : start + PUBLISH_CHUNK]
                # Acknowledged publishes: every event is in the stream before serve starts.
                await asyncio.gather(*(jetstream.publish(subject, e.nats_json()) for e in chunk))
        finally:
            await client.close()

    async def cleanup() -> None:
        client = await nats.connect(NATS_URL, connect_timeout=5, max_reconnect_attempts=3)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await client.jetstream().delete_stream(stream)
        finally:
            await client.close()

    toml = (
        f'[intake.nats]\nservers = ["{NATS_URL}"]\nsubject = "{subject}"\n'
        f'stream = "{stream}"\ndurable = "bench-{tag}"\n'
    )
    return Lane("nats", toml, publish, cleanup)


def _pubsub_maker(host: str) -> LaneMaker:
    async def make() -> Lane:
        admin = PubSub(host)
        try:
            topic, subscription = await admin.topic_with_subscription()
        finally:
            await admin.close()

        async def publish(events: Sequence[FlyteCloudEvent]) -> None:
            client = PubSub(host)  # a client per event loop: each phase runs its own
            try:
                await client.publish_keyed(topic, [(e.protobuf(), e.key) for e in events])
            finally:
                await client.close()

        toml = f'[intake.gcp]\nproject_id = "{PUBSUB_PROJECT}"\nsubscription = "{subscription}"\n'
        return Lane("gcp", toml, publish, _nothing, {"PUBSUB_EMULATOR_HOST": host})

    return make


def _sqs_maker(endpoint: str) -> LaneMaker:
    async def make() -> Lane:
        aws = SnsSqs(endpoint)
        topic, [queue] = await aws.topic_to_queues(raw=[False])

        async def publish(events: Sequence[FlyteCloudEvent]) -> None:
            await aws.publish_batch(topic, [(e.protobuf(), e.key) for e in events])

        toml = f'[intake.aws]\nqueue_url = "{queue}"\nendpoint_url = "{endpoint}"\n'
        return Lane("aws", toml, publish, _nothing, dict(DUMMY_AWS))

    return make


async def _nothing() -> None:
    """The emulator and moto are the bench's own and go with it: nothing to delete."""


@contextlib.contextmanager
def available(wanted: Sequence[str] = BROKERS) -> Iterator[Brokers]:
    """Start the emulator and moto (if installed) for the bench's life."""
    found = Brokers()
    started: list[BrokerProcess] = []
    with tempfile.TemporaryDirectory(prefix="fn-brokers-") as tmp, _aws_credentials():
        try:
            if "nats" in wanted:
                _offer(found, "nats", nats_missing(), lambda: nats_lane)
            if "gcp" in wanted:
                _offer(
                    found,
                    "gcp",
                    pubsub_emulator_missing(),
                    lambda: _pubsub_maker(_start(started, pubsub_emulator(Path(tmp))).host),
                )
            if "aws" in wanted:
                _offer(
                    found,
                    "aws",
                    moto_missing(),
                    lambda: _sqs_maker(f"http://{_start(started, moto_server(Path(tmp))).host}"),
                )
            yield found
        finally:
            for broker in started:
                broker.stop()


def _offer(
    found: Brokers,
    name: str,
    missing: str | None,
    start: Callable[[], LaneMaker],
) -> None:
    if missing is None:
        try:
            found.makers[name] = start()
            return
        except RuntimeError as error:  # the broker would not start: skip it, say why
            missing = str(error)
    found.missing[name] = missing
    print(f"broker intake: skipping {name}: {missing}", flush=True)


def _start(started: list[BrokerProcess], broker: BrokerProcess) -> BrokerProcess:
    started.append(broker)  # stopped even if its start-up fails half way
    broker.start()
    return broker


@contextlib.contextmanager
def _aws_credentials() -> Iterator[None]:
    """moto takes any credentials, but botocore wants some: the tests' dummies, for now."""
    before = {name: os.environ.get(name) for name in DUMMY_AWS}
    os.environ.update(DUMMY_AWS)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
