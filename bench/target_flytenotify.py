"""flytenotify under test: a ``flytenotify serve`` subprocess pointed at the sinks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from load import DOMAIN, PROJECT
from procstat import children, cpu_seconds, free_port, stop_process, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
FLYTENOTIFY = ROOT / ".venv" / "bin" / "flytenotify"

PAGERDUTY_RECIPIENT = "pd-bench@example.com"

# Settings profiles. "defaults": only where to send (what a user starts with);
# every limit is the service's default. "tuned": limits raised as
# docs/performance.md suggests for a fast or distant provider: more in flight
# from the start, higher caps. Both keep Slack's pacing.
PROFILES = ("defaults", "tuned")
TUNED_DISPATCH = """
[dispatch]
max_in_flight = 8192
initial_per_destination = 1024
max_per_destination = 4096
batch_size = 2000
"""

# The local PostgreSQL server (trust auth). Each scenario gets a database of its
# own, flytenotify_bench_<random>, created from and dropped through this one.
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
POSTGRES_ADMIN_DB = "postgres"


def config_toml(
    smtp_port: int,
    http_port: int,
    held: tuple[str, ...] = (),
    slack_interval: float = 1.0,
    profile: str = "tuned",
) -> str:
    """The service's configuration; channels in ``held`` get no dispatch slots at all.

    Tuned, Slack gets 500 slots: the Slack run spreads its messages over 500
    paced channels, and the default cap (8) would measure the cap.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown settings profile {profile!r}")
    tuned = profile == "tuned"
    per_channel = {"slack": 500} if tuned else {}
    per_channel.update(dict.fromkeys(held, 0))
    slots = ", ".join(f"{k} = {v}" for k, v in per_channel.items())
    dispatch = TUNED_DISPATCH if tuned else "\n[dispatch]\n"
    return f"""
[smtp]
host = "127.0.0.1"
port = {smtp_port}
sender = "flytenotify@bench.example.com"
{"pool_size = 4096" if tuned else ""}

[webhooks.bench]
url = "http://127.0.0.1:{http_port}/hook"

[pagerduty]
events_url = "http://127.0.0.1:{http_port}/v2/enqueue"
# The sink is not PagerDuty: unpaced, so the run measures flytenotify rather
# than the 120 events a minute PagerDuty allows one routing key (the default).
per_key_interval = 0
routing_keys = {{ "{PAGERDUTY_RECIPIENT}" = "R0BENCHKEY000000000000000000000" }}

[slack]
bot_token = "xoxb-bench"
base_url = "http://127.0.0.1:{http_port}/api/"
per_channel_interval = {slack_interval}
{dispatch}per_channel = {{ {slots} }}

# One message per execution, as Alertmanager's group_by ['...'] gives: these
# runs measure throughput per message. The alert-storm run measures grouping.
[grouping]
by = []

[server]
dev_inbox = false
"""


def notification(channel: str, slack_channel: str = "#bench") -> dict[str, Any]:
    """One FAILED-phase notification for ``channel`` in flytekit's JSON form."""
    recipients = {
        "email": ["ops@example.com"],
        "webhook": ["webhook:bench"],
        "pagerduty": [PAGERDUTY_RECIPIENT],
        "slack": [slack_channel],
    }[channel]
    kind = {"webhook": "email", "pagerduty": "pagerDuty"}.get(channel, channel)
    return {"phases": ["FAILED"], kind: {"recipientsEmail": recipients}}


@dataclass
class Server:
    processes: list[subprocess.Popen[bytes]]  # one, or an api and a dispatcher
    base_url: str
    # Each process's CPU seconds when it was first seen ready: what start-up cost.
    ready_cpu: dict[int, float] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        """Every process, with the dispatcher workers each started ([server] workers)."""
        pids = [process.pid for process in self.processes]
        return pids + [child for pid in pids for child in children(pid)]

    def register(self, launch_plan: str, notifications: list[dict[str, Any]]) -> None:
        url = f"{self.base_url}/api/v1/launch-plans/{PROJECT}/{DOMAIN}/{launch_plan}"
        body = {"version": "v1", "notifications": notifications}
        httpx.put(url, json=body, timeout=30).raise_for_status()


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database for one scenario: its URL (or SQLite path).

    ``sqlite``: a file in ``workdir`` (gone with the directory). ``postgresql``:
    a new database on the local server, dropped on exit, even after a failure
    (``WITH (FORCE)`` ends any connection a stuck replica still holds).
    """
    if backend == "sqlite":
        yield str(workdir / "flytenotify.db")
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}")
    name = f"flytenotify_bench_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/{POSTGRES_ADMIN_DB}", timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def serve(
    workdir: Path,
    config: str,
    log_name: str = "serve.log",
    split: bool = False,
    db: str | None = None,
    replicas: int = 0,
    env: dict[str, str] | None = None,
    until: str = "/readyz",
) -> Iterator[Server]:
    """Start ``flytenotify serve`` on fresh ports; SIGTERM every process on exit.

    ``db`` is the database URL or SQLite path (default: ``flytenotify.db`` in
    ``workdir``). ``replicas`` > 0 runs one ``--role api`` process plus that
    many ``--role dispatcher`` processes on the same database; 0 runs one
    ``--role all`` process. ``split`` is ``replicas=1`` (both cores work).
    The returned server's base URL is the API process's. ``env`` is added to
    the processes' environment (a broker emulator's address, say). Each
    process is waited for until ``until`` answers 200: ``/readyz`` by default
    (on PostgreSQL the API answers 503 until the schema is migrated), or
    ``/healthz`` when start-up itself is measured.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "flytenotify.toml"
    config_path.write_text(config, encoding="utf-8")
    db = db or str(workdir / "flytenotify.db")
    replicas = max(replicas, 1) if split else replicas
    roles = ["api"] + ["dispatcher"] * replicas if replicas > 0 else ["all"]
    servers: list[Server] = []

    def start(role: str) -> Server:
        port = free_port()
        command = [str(FLYTENOTIFY), "serve", "--config", str(config_path), "--port", str(port)]
        command += ["--db", db, "--role", role]
        with open(workdir / log_name, "ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=log, cwd=workdir, env={**os.environ, **(env or {})}
            )
        servers.append(Server([process], f"http://127.0.0.1:{port}"))
        return servers[-1]

    try:
        # The first process applies the schema; the dispatchers then start together,
        # so that none of them gets a head start on a waiting backlog.
        _wait_answering(start(roles[0]), until)
        for server in [start(role) for role in roles[1:]]:
            _wait_answering(server, until)
        ready = {pid: cpu for server in servers for pid, cpu in server.ready_cpu.items()}
        processes = [p for server in servers for p in server.processes]
        yield Server(processes, servers[0].base_url, ready)
    finally:
        for server in servers:
            stop_process(server.processes[0])


def _note_ready(server: Server) -> None:
    """Each process's CPU as soon as it is seen: a worker up early may start work."""
    for pid in server.pids:
        server.ready_cpu.setdefault(pid, cpu_seconds(pid))


def _wait_answering(server: Server, path: str) -> None:
    """Until ``path`` answers, and (for ``/readyz``) every dispatcher worker the
    process starts is up: their CPU, measured from then, counts with the process's."""
    process = server.processes[0]
    wait_until_answering(process, f"{server.base_url}{path}", "flytenotify serve")
    if path != "/readyz":  # start-up itself is measured: the workers start meanwhile
        return
    deadline = time.monotonic() + 60
    while True:
        _note_ready(server)
        workers = httpx.get(f"{server.base_url}/readyz", timeout=5).json().get("workers")
        if workers is None or workers["running"] == workers["wanted"]:
            _note_ready(server)  # a worker that came up since the look above
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"flytenotify serve: workers did not all start: {workers}")
        time.sleep(0.05)
