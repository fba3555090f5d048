"""The timers benchmark: 100,000 pending deadline timers, idle, then a small batch due.

    python bench/timers.py                    # 100,000 timers, 10 s idle, SQLite and PostgreSQL
    python bench/timers.py --n 20000 --idle 5 --no-postgresql

The claim it measures: deadlines' timers live in the ledger, so a process
waiting on 100,000 of them uses no CPU while idle and little memory, and
fires each within about a second of its due time.

For each ledger (a SQLite file; PostgreSQL on 127.0.0.1:5432, user postgres,
a database ``flytenotify_bench_<random>`` made and dropped, when reachable):

1. ``--n`` timers are armed in the ledger, due a day or more from now (rows
   of ``timers`` as an event of a selected execution arms them);
2. ``flytenotify`` runs in a child process (a ``Notifier`` dispatching: its
   dispatcher and its timer loop) and is left idle for ``--idle`` seconds:
   its CPU time over that window and its resident memory are read from /proc;
3. ``--batch`` executions are reported QUEUED (in this process, as another
   replica would) under a deadline of ``max_queued = "2s"``: the child's
   timer loop fires them, and each alert's lateness (fired minus due) is read
   back from the ledger.

The anchors, measured in the same run: flytenotify on SQLite with no timer
pending (what idling costs whatever waits: on SQLite the dispatcher looks for
other processes' commits 20 times a second), and a naive child keeping the same
number of timers in memory, one ``asyncio.sleep`` task per timer, idle for as
long, then firing a batch of as many due two seconds later (and losing them
all at a restart).

Bounded: every wait has a limit, and nothing listens on a network port (the
ledgers are a file and the local PostgreSQL server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings import
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import procstat

from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, Settings
from flytenotify.domain import (
    DeadlineId,
    ExecutionEvent,
    ExecutionId,
    Timer,
    TimerKind,
)
from flytenotify.models.core.execution import WorkflowExecutionPhase as P
from flytenotify.store import codec, store_for_url

POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
PROJECT, DOMAIN, DEADLINE = "bench", "development", "stuck"
ALLOWED = 2.0  # the batch's max_queued, seconds
READY_LIMIT = 60.0  # seconds a child may take to start
FIRE_LIMIT = 60.0  # seconds the batch may take to fire
ARM_CHUNK = 5000  # timers armed per transaction
NONE_PENDING = "flytenotify, SQLite, none pending"


def settings(url: str) -> Settings:
    deadline = {
        "project": PROJECT,
        "domain": DOMAIN,
        "max_queued": f"{ALLOWED:g}s",
        "recipients": ["ops@example.com"],
    }
    return Settings(database=DatabaseConfig(url=url), deadlines={DEADLINE: deadline})


# -- the ledger ---------------------------------------------------------------------------


async def arm(url: str, count: int) -> float:
    """Arm ``count`` timers a day or more away, straight into the ledger; seconds taken."""
    store = store_for_url(url)
    await store.open()
    started = time.perf_counter()
    far = time.time() + 86400
    ident = DeadlineId(PROJECT, DOMAIN, DEADLINE)
    try:
        for first in range(0, count, ARM_CHUNK):
            rows = [
                codec.timer_columns(
                    Timer(
                        kind=TimerKind.MAX_QUEUED,
                        deadline=ident,
                        due_at=far + i,
                        since=far + i - ALLOWED,
                        allowed=ALLOWED,
                        phase=P.QUEUED,
                        execution=ExecutionId(PROJECT, DOMAIN, f"pending-{i}"),
                    )
                )
                for i in range(first, min(count, first + ARM_CHUNK))
            ]
            await _insert(store, rows)
    finally:
        await store.close()
    return time.perf_counter() - started


async def _insert(store: Any, rows: list[tuple[Any, ...]]) -> None:
    sql = store.queries["arm_timer"]
    if hasattr(store, "_write"):  # SQLite: one transaction on the writer thread

        def write(conn: Any) -> None:
            conn.executemany(sql, rows)

        await store._write(write)
        return

    async def write_pg(conn: Any) -> None:
        await conn.executemany(sql, rows)

    await store._run(write_pg)


async def report_batch(url: str, count: int) -> float:
    """Report ``count`` executions QUEUED now; when their timers are due (Unix seconds)."""
    async with Notifier(settings(url)) as notifier:
        now = datetime.now(UTC)
        events = [
            ExecutionEvent(ExecutionId(PROJECT, DOMAIN, f"batch-{i}"), P.QUEUED, now)
            for i in range(count)
        ]
        await notifier.report_events(events)
    return now.timestamp() + ALLOWED


async def lateness(url: str, count: int) -> list[float]:
    """Each alert's seconds from its timer's due time to its firing, once ``count`` fired."""
    store = store_for_url(url)
    await store.open()
    try:
        deadline = time.monotonic() + FIRE_LIMIT
        while True:
            alerts = await store.deadline_alerts(DeadlineId(PROJECT, DOMAIN, DEADLINE), None, count)
            if len(alerts) >= count or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await store.close()
    return [a.breached_at.timestamp() - (a.since.timestamp() + a.allowed) for a in alerts]


# -- the children -------------------------------------------------------------------------


async def child_flytenotify(url: str) -> None:
    """flytenotify dispatching (dispatcher and timer loop), until stdin closes."""
    async with Notifier(settings(url), dev_inbox=True) as notifier:
        notifier.start_dispatching()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def child_naive(count: int, batch: int, idle: float) -> None:
    """One ``asyncio.sleep`` task per timer in memory; then ``batch`` due after the idle window."""
    far = time.time() + 86400

    async def wait(due: float, late: list[float] | None) -> None:
        await asyncio.sleep(max(0.0, due - time.time()))
        if late is not None:
            late.append(time.time() - due)

    pending = [asyncio.create_task(wait(far + i, None)) for i in range(count)]
    late: list[float] = []
    soon = time.time() + idle + ALLOWED
    firing = [asyncio.create_task(wait(soon, late)) for _ in range(batch)]
    print("ready", flush=True)
    await asyncio.wait_for(asyncio.gather(*firing), idle + ALLOWED + FIRE_LIMIT)
    print(json.dumps({"late": late}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in pending:
        task.cancel()


# -- measuring ----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    cpu_idle: float  # CPU seconds over the idle window
    rss_mib: float
    late: list[float]
    arm_seconds: float | None = None


def spawn(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + READY_LIMIT
    while time.monotonic() < deadline:
        if process.stdout.readline().strip() == "ready":
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"the child {args} did not start")


def idle_usage(process: subprocess.Popen[str], idle: float) -> tuple[float, float]:
    """CPU seconds over ``idle`` seconds of doing nothing, and resident memory (MiB)."""
    time.sleep(1.0)  # start-up's last work (a first claim, a first look) is over
    before = procstat.cpu_seconds(process.pid)
    time.sleep(idle)
    used = procstat.cpu_seconds(process.pid) - before
    return used, procstat.memory_kib(process.pid)["VmRSS"] / 1024


def finish(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_flytenotify(name: str, url: str, count: int, idle: float, batch: int) -> Result:
    armed = asyncio.run(arm(url, count))
    process = spawn("flytenotify", url)
    try:
        cpu, rss = idle_usage(process, idle)
        asyncio.run(report_batch(url, batch))
        late = asyncio.run(lateness(url, batch))
    finally:
        finish(process)
    return Result(name, cpu, rss, late, armed)


def measure_naive(count: int, idle: float, batch: int) -> Result:
    process = spawn("naive", str(count), str(batch), str(idle))
    try:
        cpu, rss = idle_usage(process, idle)
        assert process.stdout is not None
        late = json.loads(process.stdout.readline())["late"]
    finally:
        finish(process)
    return Result("naive: asyncio.sleep per timer", cpu, rss, late)


async def postgres_database() -> str | None:
    """A new database on the local server, or None when there is none to reach."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES, timeout=5)
    except Exception as error:
        print(f"PostgreSQL skipped: {error!r}")
        return None
    name = f"flytenotify_bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES, timeout=5)
    name = url.rsplit("/", 1)[1]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def report(results: Sequence[Result], count: int, idle: float, batch: int) -> None:
    print()
    print(f"Claim: {count:,} pending timers cost no CPU while idle and little memory;")
    print(
        f"each fires within about a second of its due time. Idle window {idle:g} s, batch {batch}."
    )
    print()
    header = (
        f"{'':40} {'CPU idle (s)':>13} {'RSS (MiB)':>10} {'late p50 (s)':>13} {'late max (s)':>13}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        p50 = statistics.median(result.late) if result.late else float("nan")
        worst = max(result.late) if result.late else float("nan")
        fired = f" ({len(result.late)}/{batch} fired)" if len(result.late) < batch else ""
        print(
            f"{result.name:40} {result.cpu_idle:13.2f} {result.rss_mib:10.1f}"
            f" {p50:13.3f} {worst:13.3f}{fired}"
        )
    for result in results:
        if result.arm_seconds is not None and result.name != NONE_PENDING:
            print(f"({result.name}: {count:,} timers armed in {result.arm_seconds:.1f} s)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="pending timers")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds measured idle")
    parser.add_argument("--batch", type=int, default=20, help="timers fired after the idle window")
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "flytenotify":
            asyncio.run(child_flytenotify(rest[0]))
        else:
            asyncio.run(child_naive(int(rest[0]), int(rest[1]), float(rest[2])))
        return 0
    results = []
    with tempfile.TemporaryDirectory() as home:
        # The same process with no timer pending: what idling costs whatever waits.
        url = f"sqlite:///{Path(home) / 'empty.db'}"
        results.append(measure_flytenotify(NONE_PENDING, url, 0, args.idle, args.batch))
        url = f"sqlite:///{Path(home) / 'ledger.db'}"
        results.append(
            measure_flytenotify("flytenotify, SQLite", url, args.n, args.idle, args.batch)
        )
    if not args.no_postgresql:
        url_pg = asyncio.run(postgres_database())
        if url_pg is not None:
            try:
                results.append(
                    measure_flytenotify(
                        "flytenotify, PostgreSQL", url_pg, args.n, args.idle, args.batch
                    )
                )
            finally:
                asyncio.run(drop_database(url_pg))
    results.append(measure_naive(args.n, args.idle, args.batch))
    report(results, args.n, args.idle, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
