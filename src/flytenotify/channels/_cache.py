"""A small expiring cache for the look-ups chat channels make before they post.

Slack looks up people by email and their direct-message channels; Mattermost
looks up a channel's id from its team and name. Each answer is kept for a TTL
so that a burst of notifications costs one look-up, and a renamed channel or a
changed address is noticed once the entry expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TtlCache"]

Clock = Callable[[], float]

_PRUNE_AT = 4096  # entries kept before expired ones are dropped


class TtlCache:
    """A str -> str cache whose entries expire ``ttl`` seconds after they are put."""

    def __init__(self, ttl: float, clock: Clock = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._items: dict[str, tuple[float, str]] = {}

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            self._items.pop(key, None)
            return None
        return item[1]

    def put(self, key: str, value: str) -> None:
        if self._ttl <= 0:
            return
        now = self._clock()
        if len(self._items) >= _PRUNE_AT:
            self._items = {k: item for k, item in self._items.items() if item[0] > now}
        self._items[key] = (now + self._ttl, value)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)
