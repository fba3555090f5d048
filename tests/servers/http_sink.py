"""A loopback HTTP receiver for webhook tests, and the base the other fake servers share.

``LoopbackServer`` runs an aiohttp application on 127.0.0.1 and a free port;
use it as ``async with Server() as server:``. Stopping is bounded: open
connections get ``SHUTDOWN_TIMEOUT`` seconds.

``HttpSink`` answers every request with 200 unless scripted otherwise, and
records each request (arrival time on ``time.monotonic()``, method, path,
headers, raw body) for assertions::

    async with HttpSink() as sink:
        sink.script(500)                                 # the next request gets 500
        sink.script(429, headers={"Retry-After": "3"})   # the one after that 429
        ...
        assert sink.requests[0].json()["delivery_id"] == "k1"
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict

__all__ = ["HttpSink", "LoopbackServer", "ScriptedReply", "SinkRequest"]

SHUTDOWN_TIMEOUT = 2.0


class LoopbackServer:
    """An aiohttp app on 127.0.0.1:<free port>; subclasses add routes."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@dataclass(frozen=True)
class SinkRequest:
    at: float  # time.monotonic() on arrival
    method: str
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP header names are
    body: bytes
    status: int  # what the sink answered
    concurrent: int = 1  # requests being handled when it arrived, itself included

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class ScriptedReply:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class HttpSink(LoopbackServer):
    """Records every request; answers ``default_status`` unless a reply is scripted."""

    def __init__(self, default_status: int = 200) -> None:
        super().__init__()
        self.default_status = default_status
        self.requests: list[SinkRequest] = []
        self.delay = 0.0  # seconds each answer is held back (for timeouts)
        self.in_flight = 0  # requests being handled now
        self._script: deque[ScriptedReply] = deque()

    def url(self, path: str = "/hook") -> str:
        return f"{self.base}{path}"

    def script(
        self, status: int, *, count: int = 1, body: str = "", headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests (after those already scripted) with ``status``."""
        for _ in range(count):
            self._script.append(ScriptedReply(status, body, dict(headers or {})))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        self.in_flight += 1
        concurrent = self.in_flight
        try:
            body = await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        reply = self._script.popleft() if self._script else ScriptedReply(self.default_status)
        self.requests.append(
            SinkRequest(
                at=at,
                method=request.method,
                path=request.path,
                headers=CIMultiDict(request.headers),
                body=body,
                status=reply.status,
                concurrent=concurrent,
            )
        )
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)
