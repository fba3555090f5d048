"""Small calls that arrive while one runs, run together next: group commit.

One event per request (the Python client, a script posting its runs) made one
ledger transaction per event, each with its own reads of the launch plan and
of the silences in effect. Under concurrent requests those are the same reads
and the same kind of write, so the requests waiting while one is recorded are
recorded together, in one pass. Nothing waits for a group to fill: the first
call runs at once, and only calls arriving while a pass runs share the next
one, so an idle service answers as fast as before.

A pass that fails for one caller must not fail the others: a group that
raises is run again one call at a time (concurrently), unless the ledger
itself is unavailable, which every call would meet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from flytenotify.store.errors import StoreUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")

# Items of one pass, at most: a batch request of this size or more runs on its own.
GROUP_LIMIT = 256


@dataclass(frozen=True)
class _Call(Generic[Item, Result]):
    items: Sequence[Item]
    answer: asyncio.Future[list[Result]]


class Coalescer(Generic[Item, Result]):
    """Run ``run`` over the items of every call waiting, one result per item.

    ``run`` must answer one result per item, in order, and change nothing when
    it raises (the ledger's transaction), so that a group can be run again
    call by call.
    """

    def __init__(
        self, run: Callable[[Sequence[Item]], Awaitable[list[Result]]], limit: int = GROUP_LIMIT
    ) -> None:
        self._run = run
        self._limit = limit
        self._waiting: deque[_Call[Item, Result]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def __call__(self, items: Sequence[Item]) -> list[Result]:
        if len(items) >= self._limit:
            return await self._run(items)
        call: _Call[Item, Result] = _Call(items, asyncio.get_running_loop().create_future())
        self._waiting.append(call)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await call.answer

    async def _drain(self) -> None:
        group: list[_Call[Item, Result]] = []
        try:
            while self._waiting:
                group = self._take()
                await self._pass(group)
        finally:
            # Cancelled (the loop shutting down): nobody is left to answer these.
            for call in [*group, *self._waiting]:
                call.answer.cancel()
            self._waiting.clear()
            self._drainer = None

    def _take(self) -> list[_Call[Item, Result]]:
        """The calls waiting, oldest first, up to the limit (always at least one)."""
        group = [self._waiting.popleft()]
        size = len(group[0].items)
        while self._waiting and size + len(self._waiting[0].items) <= self._limit:
            size += len(self._waiting[0].items)
            group.append(self._waiting.popleft())
        # A caller cancelled while it waited (its client went away) is not recorded.
        return [call for call in group if not call.answer.done()]

    async def _pass(self, group: list[_Call[Item, Result]]) -> None:
        if not group:
            return
        try:
            results = await self._run([item for call in group for item in call.items])
        except StoreUnavailable as error:
            _fail(group, error)
        except Exception as error:
            if len(group) == 1:
                _fail(group, error)
            else:  # whose was it? Each call alone says, and the others go through.
                await asyncio.gather(*(self._alone(call) for call in group))
        else:
            start = 0
            for call in group:
                end = start + len(call.items)
                _answer(call, results[start:end])
                start = end

    async def _alone(self, call: _Call[Item, Result]) -> None:
        try:
            results = await self._run(call.items)
        except Exception as error:
            _fail([call], error)
        else:
            _answer(call, results)


def _answer(call: _Call[Item, Result], results: list[Result]) -> None:
    if not call.answer.done():
        call.answer.set_result(results)


def _fail(group: Sequence[_Call[Item, Result]], error: Exception) -> None:
    for call in group:
        if not call.answer.done():
            call.answer.set_exception(error)
