"""Prometheus metrics for one service instance, on its own registry.

:class:`Metrics` is made before the :class:`~flytenotify.app.Notifier` so that
its :meth:`Metrics.observe_attempt` can be the dispatcher's observer::

    metrics = Metrics()
    notifier = Notifier(settings, observer=metrics.observe_attempt)
    app = create_app(notifier, server, metrics=metrics)

Counters and the latency histogram are fed as things happen; the gauges about
the ledger (deliveries by status, queue depth, oldest waiting delivery) are
read from the store on every scrape (:meth:`Metrics.render`), and so are the
broker sources' gauges (connected, backlog) from the sources given to
:meth:`Metrics.watch_sources`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from flytenotify.channels.base import SendResult
from flytenotify.domain import Delivery, DeliveryStatus, LedgerState
from flytenotify.intake.source import Source

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric the service exposes at ``GET /metrics``; intake counts through it
    (it is the :class:`~flytenotify.intake.source.Counters` sources are fed)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.events = Counter(
            "flytenotify_events_received",
            "Execution events received, by outcome (enqueued, duplicate, after_terminal,"
            " no_notifications, recorded, ignored, invalid)",
            ["outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "flytenotify_delivery_attempts",
            "Delivery attempts, by channel and outcome (delivered, transient, permanent)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flytenotify_delivery_attempt_seconds",
            "How long one delivery attempt took, by channel",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.deliveries = Gauge(
            "flytenotify_deliveries",
            "Deliveries in the ledger, by status",
            ["status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "flytenotify_queue_depth",
            "Deliveries waiting to be sent (pending + retrying)",
            registry=self.registry,
        )
        self.oldest_waiting = Gauge(
            "flytenotify_oldest_pending_age_seconds",
            "Age of the oldest pending or retrying delivery (0 when none waits)",
            registry=self.registry,
        )
        self.intake_messages = Counter(
            "flytenotify_intake_messages",
            "Broker messages decided, by source and outcome (recorded, dropped, malformed, retry)",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.intake_dropped = Counter(
            "flytenotify_intake_dropped",
            "Broker messages dropped on purpose (not a terminal workflow event), by source,"
            " cloud event type and reason",
            ["source", "type", "reason"],
            registry=self.registry,
        )
        self.chat_callbacks = Counter(
            "flytenotify_chat_callbacks",
            "Button clicks called back by a chat platform, by platform and outcome (answered,"
            " unverified: a forged, stale or expired callback, refused by nothing else;"
            " invalid: a malformed one; not_configured)",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.intake_up = Gauge(
            "flytenotify_intake_up",
            "1 while the source is connected to its broker, else 0",
            ["source"],
            registry=self.registry,
        )
        self.intake_backlog = Gauge(
            "flytenotify_intake_backlog",
            "Messages waiting in the broker for this source, where the broker tells it",
            ["source"],
            registry=self.registry,
        )
        self._sources: list[Source] = []

    def watch_sources(self, sources: Sequence[Source]) -> None:
        """Report these broker sources' state at every scrape."""
        self._sources = list(sources)
        for source in self._sources:
            self.intake_up.labels(source.name).set(0)

    def intake_outcome(self, source: str, outcome: str, count: int = 1) -> None:
        if count:
            self.intake_messages.labels(source, outcome).inc(count)

    def intake_drop(self, source: str, cloud_event_type: str, reason: str) -> None:
        self.intake_messages.labels(source, "dropped").inc()
        self.intake_dropped.labels(source, cloud_event_type, reason).inc()

    def observe_attempt(self, delivery: Delivery, result: SendResult, seconds: float) -> None:
        """The dispatcher's observer: one finished attempt."""
        self.count_attempt(delivery.channel, result.outcome.value, seconds)

    def count_attempt(self, channel: str, outcome: str, seconds: float) -> None:
        """One finished attempt, of this process or of one of its workers."""
        self.attempts.labels(channel, outcome).inc()
        self.latency.labels(channel).observe(max(seconds, 0.0))

    def event_received(self, outcome: str, count: int = 1) -> None:
        self.events.labels(outcome).inc(count)

    def refresh_sources(self) -> None:
        for source in self._sources:
            status = source.status
            self.intake_up.labels(source.name).set(1 if status.ready else 0)
            if status.backlog is not None:
                self.intake_backlog.labels(source.name).set(status.backlog)

    def refresh(self, ledger: LedgerState) -> None:
        """Set the ledger's gauges, and read the sources' from the sources."""
        self.refresh_sources()
        for status in DeliveryStatus:
            self.deliveries.labels(status.value).set(ledger.counts.get(status.value, 0))
        self.queue_depth.set(ledger.waiting)
        oldest = ledger.oldest_waiting
        self.oldest_waiting.set(max(time.time() - oldest.timestamp(), 0.0) if oldest else 0.0)

    def render(self, ledger: LedgerState) -> bytes:
        """The Prometheus text exposition, gauges refreshed first."""
        self.refresh(ledger)
        return generate_latest(self.registry)
