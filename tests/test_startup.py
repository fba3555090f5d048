"""``flytenotify serve`` started before its database: it waits, answering probes.

The database is PostgreSQL reached through a small TCP proxy on 127.0.0.1 that
the test starts late (and stops and starts again), in front of the real server.
Also: a database that refuses for good stops the service with one clear line,
and the docs show the schema version ``db upgrade`` really prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx

from tests.helpers import PLAN, event_json
from tests.test_serve import _env, _free_port, stop

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30.0  # seconds: the bound on every wait below


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``stop`` also cuts open connections."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a cut, as a dead network or server looks
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, upstream_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


def _serve(tmp_path: Path, db: str) -> tuple[subprocess.Popen[str], str, Path]:
    """``flytenotify serve`` over ``db``, its output in a file; not waited for."""
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "flytenotify.cli", "serve", "--port", str(port), "--db", db],
            cwd=tmp_path,
            env=_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return process, f"http://127.0.0.1:{port}", log


async def _until(
    client: httpx.AsyncClient, path: str, status: int, process: subprocess.Popen[str]
) -> httpx.Response:
    deadline = time.monotonic() + WAIT
    while True:
        assert process.poll() is None, "the service exited"
        with contextlib.suppress(httpx.TransportError):
            response = await client.get(path)
            if response.status_code == status:
                return response
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        await asyncio.sleep(0.1)


async def _deliver_one(
    client: httpx.AsyncClient, name: str, process: subprocess.Popen[str]
) -> None:
    """An event through to the dev inbox: the database and the dispatcher both work."""
    event = await client.post("/api/v1/events", json=event_json(name, "FAILED", launch_plan=PLAN))
    assert event.status_code == 202, event.text
    deadline = time.monotonic() + WAIT
    while True:
        assert process.poll() is None, "the service exited"
        items = (await client.get("/api/v1/inbox")).json()["items"]
        if any(name in item["subject"] for item in items):
            return
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.1)


async def test_a_replica_waits_for_its_database_and_survives_it_going_away(
    postgres_url: str, tmp_path: Path
) -> None:
    real = urllib.parse.urlsplit(postgres_url)
    proxy = TcpProxy(_free_port(), (real.hostname or "127.0.0.1", real.port or 5432))
    proxied = real._replace(netloc=f"{real.username}@127.0.0.1:{proxy.port}")
    through_proxy = urllib.parse.urlunsplit(proxied)
    process, base, log = _serve(tmp_path, through_proxy)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            # Nothing listens on the proxy's port yet: connections are refused.
            await _until(client, "/healthz", 200, process)
            unready = await client.get("/readyz")
            assert unready.status_code == 503, unready.text
            early = await client.get("/api/v1/deliveries")
            assert early.status_code == 503, early.text
            assert early.json()["problems"][0]["field"] == "database"
            deadline = time.monotonic() + WAIT
            while log.read_text().count("is not reachable (attempt") < 2:
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)

            await proxy.start()  # the database comes
            await _until(client, "/readyz", 200, process)
            plan = {
                "version": PLAN.version,
                "notifications": [{"phases": ["FAILED"], "email": {"recipientsEmail": ["a@x.io"]}}],
            }
            put = await client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
            assert put.status_code == 200, put.text
            await _deliver_one(client, "early-1", process)

            await proxy.stop()  # and goes away again
            await _until(client, "/readyz", 503, process)
            assert (await client.get("/healthz")).status_code == 200
            await proxy.start()
            await _until(client, "/readyz", 200, process)
            await _deliver_one(client, "later-1", process)
    finally:
        if process.poll() is None:  # stopped while its database answers: a clean exit
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, WAIT)
        await proxy.stop()
        stop(process)
    output = log.read_text()
    assert process.returncode == 0, output
    attempts = re.findall(r"is not reachable \(attempt (\d+): ConnectionRefusedError", output)
    assert attempts[:2] == ["1", "2"], output  # one line per attempt, numbered
    assert "Traceback" not in output, output


def test_a_database_that_refuses_for_good_stops_with_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    missing = urllib.parse.urlunsplit(
        urllib.parse.urlsplit(postgres_url)._replace(path="/no_such_database_here")
    )
    process, _base, log = _serve(tmp_path, missing)
    try:
        process.wait(WAIT)
    finally:
        stop(process)
    output = log.read_text()
    assert process.returncode == 1, output
    assert "cannot open the database" in output, output
    assert "no_such_database_here" in output, output
    assert "Traceback" not in output, output


def test_the_docs_show_the_schema_version_db_upgrade_prints(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flytenotify.cli", "db", "upgrade", "--db", str(tmp_path / "x.db")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert re.fullmatch(r"schema version \d+", printed), printed
    deployment = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert f"$ flytenotify db upgrade --db postgresql://...\n{printed}\n" in deployment
    version = printed.rsplit(" ", 1)[1]
    http_api = (ROOT / "docs" / "http-api.md").read_text(encoding="utf-8")
    assert f'"schema_version":{version},"schema_expected":{version}' in http_api
