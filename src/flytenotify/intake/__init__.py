"""Intake: every way an execution event reaches flytenotify.

``events`` normalises any accepted form into one ``ExecutionEvent``;
``cloudevents`` reads Flyte's CloudEvents on the HTTP API; ``source`` is what
the broker sources share, and ``nats``, ``gcp`` and ``aws`` are one module per
broker FlyteAdmin can publish to; ``flyte2`` watches Flyte 2's control plane
(``flyte2_runs`` reads its runs). Everything ends in the same
:class:`~flytenotify.app.Notifier`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flytenotify.config import Settings
from flytenotify.intake.source import Source

if TYPE_CHECKING:
    from flytenotify.app import Notifier
    from flytenotify.metrics import Metrics


def build_sources(
    settings: Settings, notifier: Notifier | None = None, metrics: Metrics | None = None
) -> list[Source]:
    """One source per configured ``[intake.*]`` section, and one per project ``[flyte2]``
    watches (imported only when configured). Flyte 2's watches record through
    ``notifier``: without one they can be described and checked, not run."""
    sources: list[Source] = []
    if settings.flyte2 is not None:
        from flytenotify.controlplane import ControlPlane
        from flytenotify.intake.flyte2 import RunWatch

        for project, domain in settings.flyte2.watched:
            plane = ControlPlane(settings.flyte2)
            sources.append(RunWatch(plane, project, domain, notifier, metrics))
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
