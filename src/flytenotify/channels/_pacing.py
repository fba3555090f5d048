"""Per-destination pacing for channels whose providers limit a rate per destination.

Slack allows about one message per second per channel; PagerDuty limits events
per routing key. A :class:`Pacer` keeps one lane per destination in this
process and, given the ledger's :class:`SharedPacing`, reserves each send's
slot there too, so that every replica together keeps the rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flytenotify.channels.base import SharedPacing

log = logging.getLogger(__name__)

Clock = Callable[[], float]
_T = TypeVar("_T")
_PRUNE_AT = 4096  # lanes kept before idle ones are dropped


class Busy(Exception):
    """The destination's next turn is further away than we are willing to wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"next turn in {wait:.1f}s")
        self.wait = wait


class _Lane:
    """One destination: a FIFO lock, when it may send next, how many wait for it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.next_at = 0.0
        self.blocked_until = 0.0  # from a 429's Retry-After
        self.waiting = 0

    def idle(self, now: float) -> bool:
        busy_until = max(self.next_at, self.blocked_until)
        return not self.lock.locked() and not self.waiting and busy_until <= now


class Pacer:
    """Per-destination pacing and rate-limit blocks, in monotonic seconds.

    Calls to one paced destination run one at a time, and the next starts
    ``interval`` after the previous one *finished*: so the provider sees them
    at least ``interval`` apart however long each took in transit. Other
    destinations have their own lanes and never wait for this one. With an
    interval of 0 calls are not serialised; only a 429 block is honoured.
    """

    def __init__(
        self,
        max_wait: float,
        clock: Clock = time.monotonic,
        shared: SharedPacing | None = None,
    ) -> None:
        self._max_wait = max_wait
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._shared = shared
        self._blocks: set[asyncio.Task[None]] = set()

    def block(self, key: str, seconds: float) -> None:
        lane = self._lane(key)
        lane.blocked_until = max(lane.blocked_until, self._clock() + seconds)
        if self._shared is not None:  # tell the other replicas too, without waiting
            block = self._share_block(self._shared, key, seconds)
            task = asyncio.get_running_loop().create_task(block)
            self._blocks.add(task)
            task.add_done_callback(self._blocks.discard)

    @staticmethod
    async def _share_block(shared: SharedPacing, key: str, seconds: float) -> None:
        try:
            await shared.block_slots(key, seconds)
        except Exception as error:
            log.warning("could not share a rate-limit block for %s: %s", key, error)

    async def _shared_turn(self, key: str, interval: float) -> None:
        """Wait for this send's slot among every replica's sends to ``key``."""
        if self._shared is None:
            return
        try:
            wait = await self._shared.reserve_slot(key, interval)
        except Exception as error:  # the ledger is away: keep this replica's own pacing
            log.warning("shared pacing unavailable for %s: %s", key, error)
            return
        self._check(wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def run(self, key: str, interval: float, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()`` in ``key``'s next turn; ``Busy`` if that is over ``max_wait`` away."""
        lane = self._lane(key)
        if interval <= 0:
            await self._wait_out(lane)
            return await call()
        queued = lane.waiting + lane.lock.locked()
        self._check(self._delay(lane) + queued * interval)
        lane.waiting += 1
        try:
            await lane.lock.acquire()
        finally:
            lane.waiting -= 1
        try:
            await self._wait_out(lane)
            await self._shared_turn(key, interval)
            try:
                return await call()
            finally:
                lane.next_at = self._clock() + interval
        finally:
            lane.lock.release()

    def _delay(self, lane: _Lane) -> float:
        return max(0.0, lane.next_at - self._clock(), lane.blocked_until - self._clock())

    def _check(self, wait: float) -> None:
        if wait > self._max_wait:
            raise Busy(wait)

    async def _wait_out(self, lane: _Lane) -> None:
        wait = self._delay(lane)
        self._check(wait)
        if wait > 0:
            await asyncio.sleep(wait)

    def _lane(self, key: str) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= _PRUNE_AT:
                now = self._clock()
                self._lanes = {k: v for k, v in self._lanes.items() if not v.idle(now)}
            lane = self._lanes[key] = _Lane()
        return lane
