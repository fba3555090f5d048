"""A ledger with no room left: writes refused, said once, and recovered from by itself.

A full disk (or a size limit: SQLite's ``max_page_count``, a PostgreSQL
tablespace on a full volume) fails every write that needs a new page, while
reads go on working. Each store turns its own "full" error (SQLite's
``SQLITE_FULL``, PostgreSQL's ``53100 disk_full``) into
:class:`~flytenotify.store.errors.StoreFull` through its :class:`SpaceWatch`,
which logs the change of state once each way rather than once per refused
write: a full disk under load refuses hundreds of writes a second.

While it lasts, the HTTP API answers 503 with ``Retry-After`` (nothing was
recorded; sending again later works), broker messages are left for
redelivery, and ``/readyz`` answers 503. Nothing has to be restarted: the
first write that goes through once space is freed ends the state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flytenotify.store.errors import StoreFull

log = logging.getLogger("flytenotify.store")

# /readyz answers 503 until this long after the last refused write. Not for
# ever: a replica that a load balancer stops sending requests to would never
# write again to find out that space came back, so after a quiet while it says
# ready, and the next write tells (refused, it is not-ready again at once).
READY_HOLD = 30.0


class SpaceWatch:
    """Whether the ledger is refusing writes for lack of space, since when, and why."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.full_since: float | None = None
        self._last_refusal = 0.0
        self._reason = ""

    def refused(self, error: BaseException) -> StoreFull:
        """The error to raise for a write the database refused for lack of space."""
        now = self._clock()
        self._reason = " ".join(str(error).split()) or type(error).__name__
        self._last_refusal = now
        if self.full_since is None:
            self.full_since = now
            log.error(
                "the database is full (%s): nothing can be recorded until space is freed;"
                " the HTTP API answers 503 with Retry-After, broker messages are left for"
                " redelivery, /readyz answers 503; writing resumes by itself once there is room",
                self._reason,
            )
        return StoreFull(f"the database is full ({self._reason}): nothing was recorded")

    def wrote(self) -> None:
        """A write that needed room went through: the database is not full (any more)."""
        if self.full_since is not None:
            log.info(
                "the database accepts writes again (it was full for %.0f s)",
                self._clock() - self.full_since,
            )
            self.full_since = None

    def problem(self) -> str | None:
        """Why ``/readyz`` should answer 503 now, or None."""
        if self.full_since is None or self._clock() - self._last_refusal > READY_HOLD:
            return None
        return f"the database is full: {self._reason}"
