"""``flytenotify serve`` on every core: the parent process and its dispatcher workers.

Real processes throughout: ``serve`` started as users start it, its workers
found in ``/proc`` as its children, killed with SIGKILL as a crash kills them.
Deliveries end at a loopback webhook receiver that holds each request until
the test lets it go, and tells a request answered to a live sender from one
whose sender died meanwhile (its connection closed).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from flytenotify.config import usable_cores
from tests.helpers import PLAN, event_json
from tests.servers.http_sink import HttpSink
from tests.test_serve import WAIT, _env, start_serve, stop

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads processes from /proc"
)

DELIVERY_HEADER = "X-Flytenotify-Delivery"
STARTUP = 60.0  # seconds a serve process and its workers may take on a busy machine


def children(pid: int) -> set[int]:
    """The running processes whose parent is ``pid``."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return {p for p in pids if (state := _state(p)) is not None and state[1] == pid and alive(p)}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    state = _state(pid)
    return state is not None and state[0] not in {"Z", "X"}


def _state(pid: int) -> tuple[str, int] | None:
    """A process's state letter and its parent's pid; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return fields[0], int(fields[1])


def wait_for(condition: object, what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def workers_of(base: str) -> dict[str, int]:
    workers: dict[str, int] = httpx.get(f"{base}/readyz", timeout=5).json()["workers"]
    return workers


def all_running(base: str, wanted: int) -> bool:
    try:
        return workers_of(base) == {"running": wanted, "wanted": wanted}
    except (httpx.TransportError, KeyError):
        return False


def test_the_default_is_a_worker_per_core_and_readyz_counts_them(tmp_path: Path) -> None:
    process, base = start_serve(tmp_path, within=STARTUP)
    try:
        cores = usable_cores()
        wait_for(lambda: all_running(base, cores), "the workers did not all start", STARTUP)
        assert len(children(process.pid)) == cores - 1
    finally:
        stop(process)


def test_one_worker_is_the_single_process_service(tmp_path: Path) -> None:
    process, base = start_serve(tmp_path, "--workers", "1", within=STARTUP)
    try:
        _deliver_one(base)  # it dispatches: workers would have been started by now
        assert workers_of(base) == {"running": 1, "wanted": 1}
        assert children(process.pid) == set()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    finally:
        stop(process)
    assert process.returncode == 0, output
    assert "[worker" not in output


def test_sigterm_stops_the_parent_and_every_worker_cleanly(tmp_path: Path) -> None:
    process, base = start_serve(tmp_path, "--workers", "3", within=STARTUP)
    try:
        wait_for(lambda: all_running(base, 3), "the workers did not all start", STARTUP)
        workers = children(process.pid)
        assert len(workers) == 2
        _deliver_one(base)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    finally:
        stop(process)
    assert process.returncode == 0, output
    assert not any(alive(pid) for pid in workers)
    for number in (2, 3):  # each worker said it stopped, in the parent's log
        assert f"worker {number} stopped (exit code 0)" in output
        assert f"INFO [worker {number}] flytenotify.service: stopped" in output
    with sqlite3.connect(tmp_path / "x.db") as db:
        held = db.execute("SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL")
        assert held.fetchone()[0] == 0


def test_json_logs_say_which_worker_wrote_each_line(tmp_path: Path) -> None:
    process, base = start_serve(tmp_path, "--workers", "2", "--log-format", "json")
    try:
        wait_for(lambda: all_running(base, 2), "the worker did not start", STARTUP)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    finally:
        stop(process)
    assert process.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    # The parent's lines carry no worker; worker 2's carry its number.
    stopped = [entry.get("worker") for entry in lines if entry["message"] == "stopped"]
    assert sorted(stopped, key=str) == [2, None]


def test_kill_9_of_the_parent_leaves_no_worker_alive(tmp_path: Path) -> None:
    process, base = start_serve(tmp_path, "--workers", "3", within=STARTUP)
    try:
        wait_for(lambda: all_running(base, 3), "the workers did not all start", STARTUP)
        workers = children(process.pid)
        assert len(workers) == 2
        process.kill()
        process.wait(timeout=WAIT)
        wait_for(lambda: not any(alive(pid) for pid in workers), f"orphans: {workers}")
    finally:
        stop(process)


def _deliver_one(base: str) -> None:
    """Register a plan, report a failure, wait for its message in the dev inbox."""
    with httpx.Client(base_url=base, timeout=5) as client:
        plan = {
            "version": "v1",
            "notifications": [{"phases": ["FAILED"], "email": {"recipientsEmail": ["a@b.io"]}}],
        }
        client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan).raise_for_status()
        event = event_json("one", "FAILED", launch_plan=PLAN)
        assert client.post("/api/v1/events", json=event).status_code == 202
        wait_for(lambda: client.get("/api/v1/inbox").json()["items"], "nothing delivered")


class GatedSink(HttpSink):
    """Holds every request until ``gate`` opens; then answers it, noting the
    delivery as answered only if its sender is still there to hear it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.held: list[tuple[str, web.Request]] = []
        self.answered: list[str] = []

    def cut(self) -> list[str]:
        """The held deliveries whose sender's connection closed."""
        return [delivery for delivery, request in self.held if _closed(request)]

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = request.headers.get(DELIVERY_HEADER, "")
        await request.read()
        self.held.append((delivery, request))
        await self.gate.wait()
        if not _closed(request):
            self.answered.append(delivery)
        return web.Response(status=200)


def _closed(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _wait(condition: object, what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
        return dict(rows.fetchall())


async def test_a_killed_worker_is_restarted_and_its_deliveries_go_out_once(
    tmp_path: Path,
) -> None:
    """Each process may send 4 webhooks at once; 40 wait. The worker dies with
    4 sends in flight: another process sends those again once their leases
    pass, the worker is started again, and each of the 40 is answered once."""
    total, per_process = 40, 4
    async with GatedSink() as sink:
        config = tmp_path / "flytenotify.toml"
        config.write_text(
            f'[webhooks.ops]\nurl = "{sink.url()}"\ntimeout = 80.0\n'
            "[grouping]\nby = []\n"  # one message per failure, not a digest
            "[retry]\nlease = 2.0\n"  # the dead worker's rows pass on sooner
            f"[dispatch]\nper_channel = {{webhook = {per_process}}}\n"
        )
        serve = [tmp_path, "--config", str(config), "--workers", "2"]
        process, base = await asyncio.to_thread(start_serve, *serve, within=STARTUP)
        try:
            await _wait(lambda: all_running(base, 2), "the worker did not start", STARTUP)
            (worker,) = children(process.pid)
            await _fail_runs(base, total)
            db = tmp_path / "x.db"
            await _wait(lambda: len(sink.held) == 2 * per_process, "both did not send")
            assert len(_leased_ids(db, worker)) == per_process

            os.kill(worker, signal.SIGKILL)
            await _wait(lambda: len(sink.cut()) == per_process, "the worker's sends not cut")
            await _wait(
                lambda: all_running(base, 2) and children(process.pid) - {worker},
                "the worker was not started again",
            )
            sink.gate.set()
            await _wait(lambda: _statuses(db) == {"delivered": total}, "not all delivered")
            answered = Counter(sink.answered)
            assert len(answered) == total, answered
            assert set(answered.values()) == {1}, answered
            assert set(sink.cut()) <= set(answered)  # the dead worker's, sent again
            # The parent's /metrics counts its workers' sends too.
            sample = (
                'flytenotify_delivery_attempts_total{channel="webhook",outcome="delivered"}'
                f" {total}.0"
            )
            await _wait(lambda: sample in httpx.get(f"{base}/metrics").text, "sends not counted")
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(process.communicate, timeout=WAIT)
        finally:
            await asyncio.to_thread(stop, process)
    assert process.returncode == 0, output
    assert "worker 2 exited unexpectedly (killed by SIGKILL)" in output


async def test_sigterm_waits_for_the_workers_sends_in_flight(tmp_path: Path) -> None:
    """SIGTERM while each process holds 4 sends open: the parent exits only after
    its worker's sends are answered and recorded, and no lease is left."""
    per_process = 4
    async with GatedSink() as sink:
        config = tmp_path / "flytenotify.toml"
        config.write_text(
            f'[webhooks.ops]\nurl = "{sink.url()}"\ntimeout = 80.0\n'
            "[grouping]\nby = []\n"
            f"[dispatch]\nper_channel = {{webhook = {per_process}}}\nshutdown_grace = 60.0\n"
        )
        serve = [tmp_path, "--config", str(config), "--workers", "2"]
        process, base = await asyncio.to_thread(start_serve, *serve, within=STARTUP)
        try:
            await _wait(lambda: all_running(base, 2), "the worker did not start", STARTUP)
            (worker,) = children(process.pid)
            await _fail_runs(base, 20)
            db = tmp_path / "x.db"
            await _wait(lambda: len(sink.held) == 2 * per_process, "both did not send")
            held_by_worker = _leased_ids(db, worker)
            assert len(held_by_worker) == per_process
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)  # the sends stay held a moment into the shutdown
            sink.gate.set()
            output, _ = await asyncio.to_thread(process.communicate, timeout=WAIT)
        finally:
            await asyncio.to_thread(stop, process)
    assert process.returncode == 0, output
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, status, lease_owner FROM deliveries").fetchall()
    delivered = {row[0] for row in rows if row[1] == "delivered"}
    assert held_by_worker <= delivered
    assert len(delivered) == len(sink.answered) == len(set(sink.answered))
    assert all(row[2] is None for row in rows)


async def _fail_runs(base: str, count: int) -> None:
    """``count`` failed runs of a plan whose failures go to the ``ops`` webhook."""
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        plan = {
            "version": "v1",
            "notifications": [
                {"phases": ["FAILED"], "email": {"recipientsEmail": ["webhook:ops"]}}
            ],
        }
        answer = await client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
        assert answer.status_code == 200, answer.text
        for n in range(count):
            event = event_json(f"run-{n}", "FAILED", launch_plan=PLAN)
            assert (await client.post("/api/v1/events", json=event)).status_code == 202


def _leased_ids(db: Path, pid: int) -> set[int]:
    with sqlite3.connect(db) as conn:
        query = "SELECT id FROM deliveries WHERE lease_owner LIKE ?"
        return {row[0] for row in conn.execute(query, (f"%:{pid}:%",))}


def test_a_worker_is_never_started_by_the_api_or_dispatcher_roles(tmp_path: Path) -> None:
    process, base = start_serve(tmp_path, "--role", "api", "--workers", "3", within=STARTUP)
    try:
        assert "workers" not in httpx.get(f"{base}/readyz", timeout=5).json()
        assert children(process.pid) == set()
    finally:
        stop(process)


def test_workers_below_one_are_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flytenotify.cli", "serve", "--workers", "0"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr
    env = {**_env(), "FLYTENOTIFY_SERVER__WORKERS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "flytenotify.cli", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "server.workers" in result.stderr


def test_the_workers_setting_comes_from_the_file_the_environment_and_the_default(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from flytenotify.cli import main

    config = tmp_path / "flytenotify.toml"
    config.write_text("[server]\nworkers = 3\n")
    runner = CliRunner()
    shown = runner.invoke(main, ["check-config", str(config), "--json"], env={})
    assert json.loads(shown.output)["server"]["workers"] == 3
    env = {"FLYTENOTIFY_SERVER__WORKERS": "5"}
    shown = runner.invoke(main, ["check-config", str(config)], env=env)
    assert "workers: 5" in shown.output
    config.write_text("")
    shown = runner.invoke(main, ["check-config", str(config), "--json"], env={})
    assert json.loads(shown.output)["server"]["workers"] == usable_cores()
