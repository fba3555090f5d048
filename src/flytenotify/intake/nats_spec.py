"""``[intake.nats]``: FlyteAdmin's cloud events from NATS, declared (the client is :mod:`.nats`)."""

from __future__ import annotations

from pydantic import Field

from flytenotify.intake.source import BrokerSource, IntakeSpec, run_broker
from flytenotify.sections import Section


class NatsIntakeConfig(Section):
    """FlyteAdmin's ``cloudEvents`` of ``type: nats``, read from NATS."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    subject: str = "flyte-events"  # FlyteAdmin's eventsPublisher.topicName
    # JetStream stream (created if missing) for at-least-once; "" = plain core NATS,
    # which loses whatever is published while flytenotify is not running.
    stream: str = "FLYTE_EVENTS"
    durable: str = "flytenotify"  # the durable consumer's name
    batch_size: int = Field(default=100, ge=1, le=10_000)
    ack_wait: float = Field(default=60.0, gt=0)  # redelivered if not acked within this


def _build(config: NatsIntakeConfig) -> list[BrokerSource]:
    from flytenotify.intake.nats import NatsSource

    return [NatsSource(config)]


INTAKE: IntakeSpec[NatsIntakeConfig, BrokerSource] = IntakeSpec(
    name="nats",
    section="intake.nats",
    config=NatsIntakeConfig,
    build=_build,
    run=run_broker,
)
