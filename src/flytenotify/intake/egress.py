"""The one handler every broker source hands FlyteAdmin's cloud events to.

``EgressIntake(recorder, counters).handle`` is a :data:`~flytenotify.intake.source.Handler`:
for a batch of messages it answers one :class:`Verdict` each. The recorder is
the :class:`~flytenotify.app.Notifier`, the counters the service's metrics.

- malformed (not a FlyteAdmin cloud event we can read): one log line with the
  message's position, counted, ``ACK``. Retrying it would only stall the stream.
- dropped (node, task, execution-start and non-terminal workflow events, unknown
  types): counted by type and reason, ``ACK``, before any look-up or write. A
  non-terminal workflow event of an execution a deadline may watch (the
  recorder's ``follows``, from memory) is kept instead.
- terminal workflow events (and those kept): recorded together through the
  recorder's ``record_checked_events``, then ``ACK``. If FlyteAdmin or the
  ledger is away, nothing was recorded: ``RETRY`` so the broker delivers them
  again.
- with a ``[waiting.*]`` rule configured, node events that may be gates
  waiting for a person (:class:`~flytenotify.intake.flyteadmin_events.NodeAtGate`)
  go to the recorder's ``gates_reached`` (:mod:`flytenotify.intake.gates`),
  counted as ``gate``; ``RETRY`` if FlyteAdmin or the ledger is away.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flytenotify.errors import InputError, UpstreamUnavailable
from flytenotify.intake.flyteadmin_events import (
    KNOWN_TYPES,
    Dropped,
    NodeAtGate,
    WorkflowEvent,
    decode,
)
from flytenotify.intake.source import Counters, Feed, Handler, Received, Recorder, Verdict
from flytenotify.store.errors import StoreFull

log = logging.getLogger("flytenotify.intake")

RECORDED, DROPPED, MALFORMED, RETRY = "recorded", "dropped", "malformed", "retry"
GATE = "gate"  # a node event that may be a gate, handed to the gate watch


class EgressIntake:
    """Decode, filter and record FlyteAdmin's cloud events for one source."""

    def __init__(self, recorder: Recorder, counters: Counters, source: str = "broker") -> None:
        self.recorder = recorder
        self.counters = counters
        self.source = source

    async def handle(self, messages: Sequence[Received]) -> list[Verdict]:
        verdicts = [Verdict.ACK] * len(messages)
        kept: list[tuple[int, WorkflowEvent]] = []
        nodes: list[tuple[int, NodeAtGate]] = []
        gates = self.recorder.waits_for_gates()
        for index, message in enumerate(messages):
            decoded = self._decode(message, gates)
            if isinstance(decoded, WorkflowEvent):
                kept.append((index, decoded))
            elif isinstance(decoded, NodeAtGate):
                nodes.append((index, decoded))
        if kept:
            for index in await self._record(messages, kept):
                verdicts[index] = Verdict.RETRY
        if nodes:
            for index in await self._gates(nodes):
                verdicts[index] = Verdict.RETRY
        return verdicts

    async def _gates(self, nodes: list[tuple[int, NodeAtGate]]) -> list[int]:
        """Hand the batch's possible gates to the gate watch; the indexes to retry."""
        try:
            await self.recorder.gates_reached([node.reached for _, node in nodes])
        except Exception as error:
            self._retrying(len(nodes), error)
            return [index for index, _ in nodes]
        self.counters.intake_outcome(self.source, GATE, len(nodes))
        return []

    def _follows(self, project: str, domain: str, launch_plan: str | None) -> bool:
        # A Flyte 1 execution runs no Flyte 2 task or trigger: those select none of it.
        return self.recorder.follows(project, domain, launch_plan=launch_plan, task="", trigger="")

    def _decode(
        self, message: Received, gates: bool
    ) -> WorkflowEvent | NodeAtGate | Dropped | None:
        """The decoded event; None (logged and counted) when it is malformed."""
        try:
            decoded = decode(message.body, self._follows, gates=gates)
        except InputError as error:
            self._malformed(message, str(error))
            return None
        except Exception as error:  # a bug must not stall the stream: count it, say what
            self._malformed(message, f"cannot be decoded ({type(error).__name__}: {error})")
            return None
        if isinstance(decoded, Dropped):
            kind = decoded.cloud_event_type if decoded.cloud_event_type in KNOWN_TYPES else "other"
            self.counters.intake_drop(self.source, kind, decoded.reason)
        return decoded

    def _malformed(self, message: Received, problem: str) -> None:
        log.warning(
            "intake %s: malformed message at %s (acknowledged, not retried): %s",
            self.source,
            message.position or "unknown position",
            problem,
        )
        self.counters.intake_outcome(self.source, MALFORMED)

    async def _record(
        self, messages: Sequence[Received], terminal: list[tuple[int, WorkflowEvent]]
    ) -> list[int]:
        """Record the batch's kept events; the indexes to retry."""
        try:
            await self._report([t for _, t in terminal])
            return []
        except InputError:
            pass  # one event the ledger refuses: find it below, record the others
        except Exception as error:
            self._retrying(len(terminal), error)
            return [index for index, _ in terminal]
        retry: list[int] = []
        failure: Exception | None = None
        for index, item in terminal:
            try:
                await self._report([item])
            except InputError as error:
                self._malformed(messages[index], str(error))
            except Exception as error:
                failure = error
                retry.append(index)
        if failure is not None:
            self._retrying(len(retry), failure)
        return retry

    async def _report(self, events: list[WorkflowEvent]) -> None:
        results = await self.recorder.record_checked_events([t.event for t in events])
        for result in results:
            self.counters.event_received(result.outcome.value)
        self.counters.intake_outcome(self.source, RECORDED, len(events))

    def _retrying(self, count: int, error: Exception) -> None:
        self.counters.intake_outcome(self.source, RETRY, count)
        if isinstance(error, StoreFull):
            return  # said once by the store, not at every redelivery (store/space.py)
        why = "FlyteAdmin is unavailable" if isinstance(error, UpstreamUnavailable) else "failed"
        log.warning(
            "intake %s: recording %d event(s) %s (%s: %s); left to the broker to deliver again",
            self.source,
            count,
            why,
            type(error).__name__,
            error,
        )


def feed(recorder: Recorder, counters: Counters) -> Feed:
    """What running sources are given: each broker source's messages go to an
    :class:`EgressIntake` of its own (counted under its name), recording through
    ``recorder`` as a source that makes its events itself does."""

    def handler(source: str) -> Handler:
        return EgressIntake(recorder, counters, source).handle

    return Feed(recorder, counters, handler)
