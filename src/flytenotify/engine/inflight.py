"""Sends in flight per destination, adapted to how the destination answers (AIMD).

Under latency a sender's rate is (sends in flight) / (latency): a webhook
receiver that takes 200 ms to answer gets 160 deliveries/s from 32 sends in
flight, 2,500/s from 500. No fixed number suits every provider, so each
destination (a channel and its host or relay) gets its own limit, adapted the
way TCP adapts its window:

* it starts at ``initial`` and, while the destination answers 2xx, grows by
  one per success (doubling per round trip, *slow start*) until the first
  back-off, by 1/limit per success after it (one per round trip);
* a 429, 5xx, timeout or refused connection (a transient failure) halves it,
  once per window: the sends that were already under way when it was halved
  do not halve it again, or one burst of 429s would take it to the floor;
* it grows only up to twice the most it has had in flight, so a trickle
  never inflates it: a limit is only raised once it has been used;
* it stays between 1 and the destination's cap: ``max_per_destination``, or
  less when the channel has its own bound (``smtp.pool_size``, a per-channel
  cap). The process-wide budget (``dispatch.max_in_flight``) is kept by the
  dispatcher, which claims no more rows than it has room for.

Latency alone is not a reason to back off: a provider that answers 2xx more
slowly is still accepting, and more in flight is what keeps the rate up.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from dataclasses import dataclass, field

from flytenotify.channels.base import Outcome, SendResult

__all__ = ["AimdRule", "InflightLimiter", "Signal", "Ticket", "signal_of"]

# Once this many destinations are known, those idle for _FORGET_AFTER seconds
# are forgotten (and start afresh at ``initial`` if they come back).
_PRUNE_AT = 1024
_FORGET_AFTER = 300.0


class Signal(enum.Enum):
    """What one finished send says about its destination."""

    GROW = "grow"  # accepted: it can take more
    BACK_OFF = "back_off"  # 429, 5xx, timeout, refused: it is overloaded or away
    HOLD = "hold"  # says nothing about load (a permanent refusal, a cancelled send)


def signal_of(result: SendResult | None) -> Signal:
    """The load signal of a send's outcome; None (cancelled) is no signal."""
    if result is None or result.outcome is Outcome.PERMANENT:
        return Signal.HOLD
    return Signal.GROW if result.outcome is Outcome.DELIVERED else Signal.BACK_OFF


@dataclass(frozen=True, slots=True)
class AimdRule:
    """The limits and the steps: additive increase, multiplicative decrease."""

    initial: int
    maximum: int
    minimum: int = 1
    adaptive: bool = True  # False: every destination sends ``maximum`` at once

    def start(self, cap: int) -> int:
        return min(cap, self.initial if self.adaptive else self.maximum)

    def halved(self, limit: int) -> int:
        return max(self.minimum, limit // 2)


@dataclass(eq=False, slots=True)
class _Destination:
    limit: int
    cap: int
    in_flight: int = 0
    credit: int = 0  # successes since the last additive step
    peak: int = 0  # the most in flight at once: the limit grows to twice this at most
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    slow_start: bool = True
    granted: int = 0  # sends started so far: the sequence numbers of tickets
    backed_off_at: int = -1  # sends numbered up to this were under way at the last halving
    last_used: float = 0.0

    def grow(self) -> None:
        """One more per success in slow start; after it, one more per limit's worth."""
        if self.limit >= 2 * self.peak:
            return  # not used enough to show it needs more
        if self.slow_start:
            self.limit += 1
        else:
            self.credit += 1
            if self.credit >= self.limit:
                self.credit = 0
                self.limit += 1
        self.limit = min(self.limit, self.cap)

    def grant(self) -> Ticket:
        self.in_flight += 1
        self.granted += 1
        self.peak = max(self.peak, self.in_flight)
        return Ticket(self, self.granted)


@dataclass(eq=False, slots=True)
class Ticket:
    """One send's slot at its destination; give it back with :meth:`InflightLimiter.release`."""

    destination: _Destination
    number: int


class InflightLimiter:
    """Per-destination send slots whose number follows the destination's answers."""

    def __init__(self, rule: AimdRule) -> None:
        self.rule = rule
        self._destinations: dict[tuple[str, str], _Destination] = {}
        self._by_channel: dict[str, dict[str, _Destination]] = {}

    def limit(self, channel: str, destination: str) -> int | None:
        """The current limit of a destination, None if it has not been used (or was forgotten)."""
        found = self._destinations.get((channel, destination))
        return None if found is None else found.limit

    def capacity(self, channel: str, cap: int) -> int:
        """How many of ``channel``'s sends may be in flight now, over all its destinations.

        The sum of the limits of its destinations that have sends in flight or
        waiting; when none has, the largest limit it has (or ``initial``). It
        tells the dispatcher how many rows to claim.
        """
        destinations = self._by_channel.get(channel)
        if not destinations:
            return self.rule.start(cap)
        active = sum(d.limit for d in destinations.values() if d.in_flight or d.waiters)
        return min(cap, active or max(d.limit for d in destinations.values()))

    async def acquire(self, channel: str, destination: str, cap: int) -> Ticket:
        """Wait for a slot at ``destination`` (FIFO); ``cap`` bounds its limit."""
        found = self._destination(channel, destination, cap)
        if found.in_flight < found.limit and not found.waiters:
            return found.grant()
        waiter = asyncio.get_running_loop().create_future()
        found.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted and cancelled in the same turn: the slot goes to the next.
                found.in_flight -= 1
                self._admit(found)
            elif waiter in found.waiters:  # _admit may have dropped it already
                found.waiters.remove(waiter)
            raise
        # _admit counted this send in before waking it; number it now.
        found.in_flight -= 1
        return found.grant()

    def release(self, ticket: Ticket, signal: Signal) -> None:
        """The send is over: adapt the limit to what it said, and admit whoever waits."""
        found = ticket.destination
        found.in_flight -= 1
        found.last_used = time.monotonic()
        if not self.rule.adaptive:
            pass  # fixed limits
        elif signal is Signal.GROW:
            found.grow()
        elif signal is Signal.BACK_OFF and ticket.number > found.backed_off_at:
            found.limit = self.rule.halved(found.limit)
            found.slow_start = False
            found.credit = 0
            found.peak = found.limit  # what it showed before no longer counts
            found.backed_off_at = found.granted
        self._admit(found)

    def _admit(self, found: _Destination) -> None:
        while found.waiters and found.in_flight < found.limit:
            waiter = found.waiters.popleft()
            if not waiter.done():
                found.in_flight += 1
                waiter.set_result(None)

    def _destination(self, channel: str, destination: str, cap: int) -> _Destination:
        key = (channel, destination)
        found = self._destinations.get(key)
        cap = max(1, min(cap, self.rule.maximum))
        if found is None:
            if len(self._destinations) >= _PRUNE_AT:
                self._forget_idle()
            found = _Destination(limit=self.rule.start(cap), cap=cap)
            self._destinations[key] = found
            self._by_channel.setdefault(channel, {})[destination] = found
        elif found.cap != cap:  # the channel's own bound changed
            found.cap = cap
            found.limit = min(found.limit, cap)
        return found

    def _forget_idle(self) -> None:
        horizon = time.monotonic() - _FORGET_AFTER
        for (channel, destination), found in list(self._destinations.items()):
            if not found.in_flight and not found.waiters and found.last_used < horizon:
                del self._destinations[channel, destination]
                del self._by_channel[channel][destination]
