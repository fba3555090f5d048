"""Intake: every way an execution event reaches flytenotify.

``events`` normalises any accepted form into one ``ExecutionEvent``;
``cloudevents`` reads Flyte's CloudEvents on the HTTP API; ``source`` is what
the broker sources share, and ``nats``, ``gcp`` and ``aws`` are one module per
broker FlyteAdmin can publish to; ``flyte2`` watches Flyte 2's control plane
(``flyte2_runs`` reads its runs). Everything ends in the same
:class:`~flytenotify.app.Notifier`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flytenotify.config import Settings
from flytenotify.intake.source import Source

if TYPE_CHECKING:
    from flytenotify.app import Notifier
    from flytenotify.metrics import Metrics


class MissingExtra(Exception):
    """An ``[intake.*]`` section whose broker client library is not installed."""

    def __init__(self, section: str, error: ModuleNotFoundError) -> None:
        # Each such section's libraries come in the extra of the same name
        # (pyproject.toml's optional dependencies); NATS's client is always there.
        super().__init__(
            f"[intake.{section}] needs {error.name or 'a module'!r}, which is not installed:"
            f" install flytenotify[{section}] (pip install 'flytenotify[{section}]')"
        )
        self.section = section


def build_sources(
    settings: Settings, notifier: Notifier | None = None, metrics: Metrics | None = None
) -> list[Source]:
    """One source per configured ``[intake.*]`` section, and one per project ``[flyte2]``
    watches (imported only when configured). Flyte 2's watches record through
    ``notifier``: without one they can be described and checked, not run.

    Raises :class:`MissingExtra` when a section's client library is not installed.
    """
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
        with _client_library("gcp"):
            from flytenotify.intake.gcp import PubSubSource
        sources.append(PubSubSource(intake.gcp))
    if intake.aws is not None:
        with _client_library("aws"):
            from flytenotify.intake.aws import SqsSource
        sources.append(SqsSource(intake.aws))
    return sources


@contextlib.contextmanager
def _client_library(section: str) -> Iterator[None]:
    try:
        yield
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] == "flytenotify":
            raise  # our own module missing: a broken install, not a missing extra
        raise MissingExtra(section, error) from None
