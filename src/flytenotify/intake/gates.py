"""Flyte 1 executions waiting at a gate, noticed from node events and announced once per gate.

FlyteAdmin's cloud events carry node events (``cloudEventVersion: v2``, or
``v1`` with node events in ``eventTypes``), a flood flytenotify otherwise
drops by type. With a ``[waiting.*]`` rule configured, the broker intake reads
node events as far as their phase and hands the few that may be gates
(:class:`~flytenotify.intake.flyteadmin_events.NodeAtGate`) to
:meth:`GateWatch.reached`, which asks FlyteAdmin as little as it can:

- only for executions of a project/domain some rule covers, and whose launch
  plan it names (the ledger's execution, else FlyteAdmin's ``GetExecution``,
  cached by the Notifier);
- once per (execution, node): a node seen is not asked about again, nor an
  execution no rule wants (both kept for :data:`SEEN_TTL`);
- ``SignalService.ListSignals(execution)`` then names the gates that wait (a
  signal with no value) and what each expects.

Each waiting gate becomes a PAUSED event naming its signal, recorded with the
deliveries of the matching rules (:mod:`flytenotify.engine.waiting`); their
idempotency keys hold the signal id, so a gate is announced once whatever is
replayed, across restarts and replicas. A gate answered before its node event
arrived has a value and is not announced.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from cachetools import TTLCache

from flytenotify.config import Settings
from flytenotify.domain import (
    PAUSED,
    Execution,
    ExecutionEvent,
    ExecutionId,
    GateReached,
    PausedAction,
)
from flytenotify.intake.events import checked_event
from flytenotify.store.base import EventResult

log = logging.getLogger("flytenotify.intake")

SEEN_TTL = 3600.0  # seconds a node or an unwanted execution is remembered
SEEN_SIZE = 100_000


class GateLedger(Protocol):
    """What the watch records through: the Notifier."""

    async def execution_for(self, event: ExecutionEvent) -> Execution:
        """The event's execution: the ledger's, a registered launch plan's, or FlyteAdmin's.
        Raises UpstreamUnavailable when FlyteAdmin cannot answer now."""
        ...

    async def record_checked_events(
        self,
        events: Sequence[ExecutionEvent],
        known: Mapping[ExecutionId, Execution] | None = None,
    ) -> list[EventResult]: ...


Signals = Callable[[ExecutionId], Awaitable[list[Any]]]  # FlyteAdmin.signals


class GateWatch:
    """Which Flyte 1 gates wait, and who hears of them (see the module doc)."""

    def __init__(self, settings: Settings, ledger: GateLedger, signals: Signals) -> None:
        self.settings = settings
        self.ledger = ledger
        self.signals = signals
        self._seen: TTLCache[tuple[ExecutionId, str], bool] = TTLCache(SEEN_SIZE, SEEN_TTL)
        self._unwanted: TTLCache[ExecutionId, bool] = TTLCache(SEEN_SIZE, SEEN_TTL)

    def covers(self, project: str, domain: str) -> bool:
        """Whether any ``[waiting.*]`` rule may want a gate of ``project``/``domain``."""
        return bool(self.settings.waiting_rules(project, domain))

    async def reached(self, reached: Sequence[GateReached]) -> int:
        """Announce the gates waiting in these executions; how many PAUSED events were new.

        Raises UpstreamUnavailable (FlyteAdmin) or a store error: nothing is lost,
        the broker delivers the node events again.
        """
        fresh: dict[ExecutionId, GateReached] = {}
        for node in reached:
            eid = node.execution_id
            if (eid, node.node_id) in self._seen or eid in self._unwanted:
                continue
            if self.covers(eid.project, eid.domain):
                fresh.setdefault(eid, node)
        announced = 0
        for node in fresh.values():
            announced += await self._execution(node)
        for node in reached:  # asked about: not again
            self._seen[(node.execution_id, node.node_id)] = True
        return announced

    async def _execution(self, node: GateReached) -> int:
        eid = node.execution_id
        probe = ExecutionEvent(eid, PAUSED, node.occurred_at, "flyteadmin")
        execution = await self.ledger.execution_for(probe)
        if execution.terminal_phase is not None or not self._wanted(execution):
            self._unwanted[eid] = True
            return 0
        waiting = [s for s in await self.signals(eid) if not s.answered]
        events = [
            checked_event(
                ExecutionEvent(
                    eid,
                    PAUSED,
                    node.occurred_at,
                    "flyteadmin",
                    paused=PausedAction(
                        name=signal.signal_id,
                        expects=signal.expects.value if signal.expects is not None else "",
                    ),
                )
            )
            for signal in waiting
        ]
        if not events:
            return 0
        results = await self.ledger.record_checked_events(events, {eid: execution})
        new = sum(1 for result in results if result.delivery_ids)
        if new:
            log.info("%s waits at %d gate(s): announced", eid, new)
        return new

    def _wanted(self, execution: Execution) -> bool:
        eid = execution.id
        return any(
            rule.applies_to(eid, execution.launch_plan)
            for _, rule in self.settings.waiting_rules(eid.project, eid.domain)
        )
