"""Cloud brokers on 127.0.0.1 for the intake tests: Google's Pub/Sub emulator and moto.

Both are the real programs, started as child processes in a process group of
their own (the Pub/Sub emulator is a shell script that starts Java) and stopped
by killing that group. :class:`FaultyProxy` is a loopback TCP relay in front
of either, which a test closes and reopens to make the broker go away and come
back without restarting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT = 120.0  # the emulator's JVM start takes 10-20 s on a busy 2-core machine
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class BrokerProcess:
    """A child process in its own process group, answering HTTP ``GET /`` when up."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: the JVM child dies with it
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {STARTUP_TIMEOUT} s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        # The group may outlive its leader (the JVM under the gcloud script).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def pubsub_emulator_missing() -> str | None:
    """Why the Pub/Sub emulator cannot run here, or None if it can."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud is not installed (needed for the Pub/Sub emulator)"
    if shutil.which("java") is None:
        return "java is not installed (the Pub/Sub emulator runs on it)"
    # gcloud lives in <sdk root>/bin; asking `gcloud info` may wait on the network.
    root = Path(os.path.realpath(gcloud)).parent.parent
    if not (root / "platform" / "pubsub-emulator").is_dir():
        return (
            "the gcloud Pub/Sub emulator component is not installed "
            "(apt-get install google-cloud-cli-pubsub-emulator)"
        )
    return None


def pubsub_emulator(workdir: Path) -> BrokerProcess:
    port = free_port()
    data = workdir / "pubsub-emulator"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--data-dir={data}",
        "--quiet",
    ]
    return BrokerProcess("the Pub/Sub emulator", command, port, workdir / "pubsub-emulator.log")


def moto_missing() -> str | None:
    try:
        import moto.server  # noqa: F401
    except ImportError as error:
        return f"moto[server] is not installed: {error}"
    return None


def moto_server(workdir: Path) -> BrokerProcess:
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return BrokerProcess("moto", command, port, workdir / "moto.log")


class FaultyProxy:
    """A TCP relay on 127.0.0.1 to ``target`` that a test can cut and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = 0  # accepted while open, over the proxy's life
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a broker going away does."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for pipe in list(self._pipes):
            pipe.cancel()
        self._writers.clear()
        self._pipes.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
