"""A real flytenotify service (uvicorn) on 127.0.0.1 in a background thread, for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import uvicorn

from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.metrics import Metrics
from flytenotify.web.api import create_app

WAIT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """``with LiveServer(tmp_path / "x.db") as server: httpx.get(server.url + "/healthz")``."""

    def __init__(
        self, db: Path, settings: Settings | None = None, server: ServerConfig | None = None
    ) -> None:
        self.settings = settings or Settings(database=DatabaseConfig(url=str(db)))
        self.server = server or ServerConfig(max_body_bytes=64 * 1024)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by start()
            self._error = error

    async def _serve(self) -> None:
        metrics = Metrics()
        async with Notifier(self.settings, dev_inbox=True, observer=metrics.observe_attempt) as n:
            app = create_app(n, self.server, metrics)
            config = uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
            )
            self._server = uvicorn.Server(config)
            n.start_dispatching()
            await self._server.serve()

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + WAIT
        while True:
            assert self._error is None, self._error
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=WAIT)
        assert not self._thread.is_alive(), "the server did not stop"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
