"""Intake: every way an execution event reaches flytenotify.

``events`` normalises any accepted form into one ``ExecutionEvent``;
``cloudevents`` reads Flyte's CloudEvents on the HTTP API; ``source`` is what
the broker sources share, and ``nats``, ``gcp`` and ``aws`` are one module per
broker FlyteAdmin can publish to. Everything ends in the same
:class:`~flytenotify.app.Notifier`.
"""

from __future__ import annotations

from flytenotify.config import Settings
from flytenotify.intake.source import Source


def build_sources(settings: Settings) -> list[Source]:
    """One source per configured ``[intake.*]`` section (imported only when configured)."""
    sources: list[Source] = []
    intake = settings.intake
    if intake.nats is not None:
        from flytenotify.intake.nats import NatsSource

        sources.append(NatsSource(intake.nats))
    if intake.gcp is not None:
        from flytenotify.intake.gcp import PubSubSource

        sources.append(PubSubSource(intake.gcp))
    if intake.aws is not None:
        from flytenotify.intake.aws import SqsSource

        sources.append(SqsSource(intake.aws))
    return sources
