"""A toy intake that only tests register: FlyteAdmin's cloud events as files in a directory.

It is declared the way every intake declares itself (a configuration section,
a source built from it, how the source runs) and added with :func:`register`;
nothing else in flytenotify is told about it. Each ``*.event`` file in
``[intake.spool] directory`` is one message, deleted once its verdict is
``ACK``; a missing directory is a broker that went away.

``python -m tests.spool_intake ARGS`` is the flytenotify CLI with it
registered, for ``serve`` in a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from pydantic import Field

from flytenotify.intake import registry
from flytenotify.intake.source import (
    Handler,
    IntakeSpec,
    Received,
    SourceState,
    SourceStatus,
    Verdict,
    keep_running,
    run_broker,
)
from flytenotify.sections import Section


class SpoolConfig(Section):
    """``[intake.spool]``: a directory whose ``*.event`` files are messages."""

    directory: Path
    batch_size: int = Field(default=10, ge=1, le=100)
    poll: float = Field(default=0.05, gt=0)  # seconds between looks at an empty directory


class SpoolSource:
    name = "spool"

    def __init__(self, config: SpoolConfig) -> None:
        self.config = config
        self.status = SourceStatus()

    def describe(self) -> str:
        return f"spool {self.config.directory}, {self.config.batch_size} files a batch"

    async def check(self) -> str:
        return f"spool {self.config.directory}: {len(self._waiting())} message(s) waiting"

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        await keep_running(self, lambda: self._session(handle, stop), stop, max_delay=0.5)

    async def _session(self, handle: Handler, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiting = self._waiting()
            self.status.state = SourceState.CONNECTED
            self.status.detail = f"reading {self.config.directory}"
            self.status.backlog = len(waiting)
            batch = waiting[: self.config.batch_size]
            verdicts = await handle([_received(path) for path in batch]) if batch else []
            for path, verdict in zip(batch, verdicts, strict=True):
                if verdict is Verdict.ACK:
                    path.unlink()
            if batch:
                self.status.last_message_at = time.time()
            if not batch or Verdict.RETRY in verdicts:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll)

    def _waiting(self) -> list[Path]:
        """The files waiting, oldest name first; raises when the directory is not there."""
        if not self.config.directory.is_dir():
            raise FileNotFoundError(f"no spool directory {self.config.directory}")
        return sorted(self.config.directory.glob("*.event"))


def _received(path: Path) -> Received:
    return Received(path.read_bytes(), {}, position=f"spool file={path.name}")


def _build(config: SpoolConfig) -> list[SpoolSource]:
    return [SpoolSource(config)]


INTAKE: IntakeSpec[SpoolConfig, SpoolSource] = IntakeSpec(
    name="spool",
    section="intake.spool",
    config=SpoolConfig,
    build=_build,
    run=run_broker,
)


def register() -> None:
    registry.register(INTAKE)


def unregister() -> None:
    registry.unregister(INTAKE.name)


def spool(directory: Path, name: str, body: bytes) -> Path:
    """Put one message in ``directory``, whole: written aside, then renamed in."""
    aside = directory / f".{name}.part"
    aside.write_bytes(body)
    return aside.rename(directory / f"{name}.event")


if __name__ == "__main__":
    register()
    from flytenotify.cli import main

    main()
