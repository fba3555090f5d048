"""``[intake.gcp]``: FlyteAdmin's cloud events from Google Pub/Sub, declared (the client,
:mod:`.gcp`, needs the ``gcp`` extra)."""

from __future__ import annotations

from pydantic import Field

from flytenotify.intake.source import BrokerSource, IntakeSpec, run_broker
from flytenotify.sections import Section


class GcpIntakeConfig(Section):
    """FlyteAdmin's ``cloudEvents`` of ``type: gcp``: a Pub/Sub subscription on its topic.

    ``PUBSUB_EMULATOR_HOST`` and Google's application default credentials
    work as the client library defines them.
    """

    project_id: str
    subscription: str  # a subscription on FlyteAdmin's topic
    batch_size: int = Field(default=100, ge=1, le=1000)
    # Seconds a message the handler could not record now (RETRY) stays hidden
    # before Pub/Sub delivers it again (its ack deadline; Pub/Sub allows 0-600).
    retry_delay: int = Field(default=10, ge=0, le=600)


def _build(config: GcpIntakeConfig) -> list[BrokerSource]:
    from flytenotify.intake.gcp import PubSubSource

    return [PubSubSource(config)]


INTAKE: IntakeSpec[GcpIntakeConfig, BrokerSource] = IntakeSpec(
    name="gcp",
    section="intake.gcp",
    config=GcpIntakeConfig,
    build=_build,
    run=run_broker,
    extra="gcp",
)
