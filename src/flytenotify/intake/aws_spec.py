"""``[intake.aws]``: FlyteAdmin's cloud events from SQS, declared (the client, :mod:`.aws`,
needs the ``aws`` extra)."""

from __future__ import annotations

from pydantic import Field, field_validator

from flytenotify.intake.source import BrokerSource, IntakeSpec, run_broker
from flytenotify.sections import Section


class AwsIntakeConfig(Section):
    """FlyteAdmin's ``cloudEvents`` of ``type: aws``: an SQS queue subscribed to its SNS topic.

    Credentials come from the standard AWS variables, files and roles.
    """

    queue_url: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # another SQS endpoint (tests, private endpoints)
    batch_size: int = Field(default=10, ge=1, le=10)  # SQS returns at most 10 per call
    wait_time: int = Field(default=20, ge=0, le=20)  # long polling, seconds
    visibility_timeout: int | None = Field(default=None, ge=0, le=43200)  # None: the queue's

    @field_validator("endpoint_url")
    @classmethod
    def _empty_is_unset(cls, url: str | None) -> str | None:
        return url or None


def _build(config: AwsIntakeConfig) -> list[BrokerSource]:
    from flytenotify.intake.aws import SqsSource

    return [SqsSource(config)]


INTAKE: IntakeSpec[AwsIntakeConfig, BrokerSource] = IntakeSpec(
    name="aws",
    section="intake.aws",
    config=AwsIntakeConfig,
    build=_build,
    run=run_broker,
    extra="aws",
)
