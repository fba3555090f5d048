"""The email channel's SMTP sessions: a bounded pool of open connections.

Opening an SMTP session (TCP, TLS, EHLO, AUTH) costs several round trips,
which is why Alertmanager tops out near 1,000 mails/s. :class:`Pool` keeps up
to ``pool_size`` sessions open and lends each to one transaction at a time (a
:class:`Slot`): a session that ended its transaction cleanly is reused, one
refused is reset first (:func:`reset_session`), one broken or idle for
:data:`IDLE_TIMEOUT` is dropped, and closing the pool says QUIT to the idle ones.

What is said on a session (MAIL, RCPT, DATA) and what its replies mean is
the channel's (:mod:`flytenotify.channels.email.channel`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator

from aiosmtplib import SMTP, SMTPException, SMTPHeloError, SMTPServerDisconnected, SMTPTimeoutError

IDLE_TIMEOUT = 30.0  # seconds an unused connection stays open (servers drop them after ~5 min)
_QUIT_TIMEOUT = 2.0  # a polite QUIT on close must not hold up shutdown

# Errors that mean "no usable reply from the server": the connection is the problem.
CONNECTION_ERRORS = (SMTPServerDisconnected, SMTPTimeoutError, OSError, TimeoutError)


class Slot:
    """The right to use one connection; holds it while one transaction runs."""

    def __init__(self, smtp: SMTP | None) -> None:
        self.smtp = smtp
        self.reused = smtp is not None
        self.reusable = False  # set only once a transaction ended cleanly

    def discard(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self.smtp = None
        self.reused = False
        self.reusable = False


class Pool:
    """At most ``size`` open connections; idle ones are reused, newest first.

    Every open connection is either idle here or held by exactly one slot, and
    a new one is only opened when none is idle, so the total never exceeds
    ``size`` while the semaphore bounds the slots.
    """

    def __init__(self, size: int, idle_timeout: float) -> None:
        self._slots = asyncio.Semaphore(size)
        # Oldest first: given back in time order, reused from the newest end,
        # so the stale ones are always at the front.
        self._idle: collections.deque[tuple[SMTP, float]] = collections.deque()
        self._idle_timeout = idle_timeout
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        async with self._slots:
            slot = Slot(self._take_idle())
            try:
                yield slot
            finally:
                self._give_back(slot)

    def _take_idle(self) -> SMTP | None:
        self._drop_stale()
        while self._idle:
            smtp, _ = self._idle.pop()
            if smtp.is_connected:  # the server may have hung up while it sat idle
                return smtp
            smtp.close()
        return None

    def _give_back(self, slot: Slot) -> None:
        smtp = slot.smtp
        if smtp is None:
            return
        if slot.reusable and smtp.is_connected and not self._closed:
            self._idle.append((smtp, time.monotonic()))
            self._schedule_reaper()
        else:
            smtp.close()

    def _drop_stale(self) -> None:
        # From the front only: a scan of every idle connection on each take
        # was 5% of an email's CPU with hundreds of them open.
        deadline = time.monotonic() - self._idle_timeout
        while self._idle and self._idle[0][1] <= deadline:
            smtp, _ = self._idle.popleft()
            smtp.close()

    def _schedule_reaper(self) -> None:
        # Without traffic nobody calls _take_idle, so a timer closes idle connections.
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self._idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        self._drop_stale()
        if self._idle:
            self._schedule_reaper()

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, collections.deque()
        await asyncio.gather(*(quit_session(smtp) for smtp, _ in idle))


async def quit_session(smtp: SMTP) -> None:
    """QUIT, waiting briefly for the answer, then close: the session is being dropped."""
    try:
        await smtp.quit(timeout=_QUIT_TIMEOUT)
    except (SMTPException, *CONNECTION_ERRORS):
        pass  # we are leaving anyway
    finally:
        smtp.close()


async def reset_session(slot: Slot) -> bool:
    """RSET after a refusal, so the next transaction starts clean; False if that failed."""
    smtp = slot.smtp
    if smtp is None or not smtp.is_connected:
        return False
    try:
        await smtp.rset()
    except (SMTPException, *CONNECTION_ERRORS):
        return False
    return True


async def greet(smtp: SMTP) -> None:
    """EHLO, or HELO for a server that refuses EHLO: what SMTP.mail() does on first use."""
    try:
        await smtp.ehlo()
    except SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()
