"""The timers benchmark: 100,000 pending deadline timers, idle, then a small batch due.

    python bench/timers.py                    # 100,000 timers, 10 s idle, SQLite and PostgreSQL
    python bench/timers.py --n 20000 --idle 5 --no-postgresql

``python3 dev.py bench`` runs it too (``--timers-n``, ``--timers-idle``,
``--timers-batch``; ``--no-timers`` skips it), and docs/benchmarks.md has its
section (:func:`section`).

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
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
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
HEADING = "## Deadline timers: pending, idle"
COUNT, IDLE, BATCH = 100_000, 10.0, 20  # the defaults: pending timers, idle seconds, batch
NEAR_ZERO = 2.0  # % of a core: idle CPU below it is near zero


def settings(url: str) -> Settings:
    deadline: dict[str, Any] = {  # validated into a DeadlineConfig
        "project": PROJECT,
        "domain": DOMAIN,
        "max_queued": f"{ALLOWED:g}s",
        "recipients": ["ops@example.com"],
    }
    values: dict[str, Any] = {
        "database": DatabaseConfig(url=url),
        "deadlines": {DEADLINE: deadline},
    }
    return Settings(**values)


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


async def postgres_database() -> tuple[str | None, str]:
    """A new database on the local server, or None and why when there is none to reach."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES, timeout=5)
    except Exception as error:
        return None, f"not reachable at 127.0.0.1:5432 ({error!r})"
    name = f"flytenotify_bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}", ""


async def drop_database(url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(POSTGRES, timeout=5)
    name = url.rsplit("/", 1)[1]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def row(result: Result, count: int, idle: float, batch: int) -> dict[str, Any]:
    """One row of the results document: a ledger (or an anchor) and what it measured."""
    return {
        "name": result.name,
        "pending": 0 if result.name == NONE_PENDING else count,
        "cpu_idle_s": result.cpu_idle,
        "cpu_core_percent": 100 * result.cpu_idle / idle,
        "rss_mib": result.rss_mib,
        "late_p50_s": _quantile(result.late, 0.5),
        "late_p99_s": _quantile(result.late, 0.99),
        "fired": len(result.late),
        "batch": batch,
        "arm_seconds": result.arm_seconds,
        "anchor": result.name == NONE_PENDING or result.name.startswith("naive"),
    }


def run(
    count: int = COUNT, idle: float = IDLE, batch: int = BATCH, postgresql: bool = True
) -> dict[str, Any]:
    """Every ledger and both anchors; the results document's ``timers``."""
    started = time.time()
    load_before = os.getloadavg()[0]
    results: list[Result] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as home:
        # The same process with no timer pending: what idling costs whatever waits.
        url = f"sqlite:///{Path(home) / 'empty.db'}"
        results.append(measure_flytenotify(NONE_PENDING, url, 0, idle, batch))
        url = f"sqlite:///{Path(home) / 'ledger.db'}"
        results.append(measure_flytenotify("flytenotify, SQLite", url, count, idle, batch))
    if postgresql:
        url_pg, why = asyncio.run(postgres_database())
        if url_pg is None:
            skipped["PostgreSQL"] = why
        else:
            try:
                results.append(
                    measure_flytenotify("flytenotify, PostgreSQL", url_pg, count, idle, batch)
                )
            finally:
                asyncio.run(drop_database(url_pg))
    else:
        skipped["PostgreSQL"] = "--no-postgresql"
    results.append(measure_naive(count, idle, batch))
    rows = [row(result, count, idle, batch) for result in results]
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_seconds": time.time() - started,
        "load_average_1m": load_before,
        "load_average_1m_at_end": os.getloadavg()[0],
        "pending": count,
        "idle_seconds": idle,
        "batch": batch,
        "allowed_s": ALLOWED,
        "skipped": skipped,
        "rows": rows,
        "ok": all(r["fired"] == batch for r in rows),
    }


def _s(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else f"{value:{fmt}}"


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| ledger | pending timers | idle CPU % of a core | RSS MiB "
        "| batch lateness p50 / p99 (s) | fired |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results.get("rows", []):
        name = f"{r['name']} (anchor)" if r["anchor"] else r["name"]
        fired = f"{r['fired']}/{r['batch']}" + ("" if r["fired"] == r["batch"] else " **missing**")
        lines.append(
            f"| {name} | {r['pending']:,} | {r['cpu_core_percent']:.2f} | {r['rss_mib']:.0f} "
            f"| {_s(r['late_p50_s'])} / {_s(r['late_p99_s'])} | {fired} |"
        )
    return lines


def section(results: dict[str, Any] | None) -> list[str]:
    """The report's section: how it was measured, the table, what holds."""
    if not results:
        return [HEADING, "", "Not run this time (`--no-timers`)."]
    if "error" in results:
        return [HEADING, "", f"**The run failed**: `{results['error']}`."]
    count, idle = results["pending"], results["idle_seconds"]
    armed = [
        f"{r['name']}: armed in {r['arm_seconds']:.1f} s"
        for r in results["rows"]
        if r.get("arm_seconds") is not None and r["pending"]
    ]
    skipped = [f"{what}: {why}" for what, why in results.get("skipped", {}).items()]
    return [
        HEADING,
        "",
        f"{count:,} deadline timers (`max_queued`) are armed in the ledger, due a day or more "
        "away; `flytenotify` (a `Notifier` dispatching: its dispatcher and its timer loop, in a "
        f"child process) is left idle for {idle:g} s, its CPU time over that window and its "
        "resident memory read from /proc. Then "
        f"{results['batch']} executions are reported QUEUED under `max_queued = "
        f'"{results["allowed_s"]:g}s"`: lateness is each alert\'s firing minus its due time, '
        "read back from the ledger. Anchors from the same run: flytenotify on SQLite with no "
        "timer pending (on SQLite the dispatcher looks for other processes' commits 20 times "
        "a second, whatever waits), and a naive child with one `asyncio.sleep` task per timer "
        "in memory (which loses them all at a restart)."
        + (f" {'; '.join(armed)}." if armed else "")
        + (f" Skipped: {'; '.join(skipped)}." if skipped else ""),
        "",
        f"Run {results['started']}, {results['wall_seconds'] / 60:.1f} minutes; 1-minute load "
        f"average {results['load_average_1m']:.1f} at the start and "
        f"{results['load_average_1m_at_end']:.1f} at the end.",
        "",
        *table(results),
        "",
        _holds(results),
    ]


def _holds(results: dict[str, Any]) -> str:
    rows = results.get("rows", [])
    empty = next((r for r in rows if r["name"] == NONE_PENDING), None)
    ledgers = [r for r in rows if not r["anchor"]]
    if empty is None or not ledgers:
        return "**Not measured**: a run is missing."
    # Near zero: under NEAR_ZERO % of a core (the tick of /proc's CPU time is 10 ms, a
    # tenth of a percent over 10 s), and every timer of the batch fired.
    holds = all(r["cpu_core_percent"] < NEAR_ZERO and r["fired"] == r["batch"] for r in ledgers)
    worst = max(r["cpu_core_percent"] for r in ledgers)
    return (
        f"What holds: {results['pending']:,} pending timers idle at near-zero CPU "
        f"(under {NEAR_ZERO:g}% of a core, and the batch all fired): "
        + ("**holds**" if holds else "**does not hold**")
        + f" (at most {worst:.2f}% of a core, against {empty['cpu_core_percent']:.2f}% "
        "with none pending)."
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=COUNT, help="pending timers")
    parser.add_argument("--idle", type=float, default=IDLE, help="seconds measured idle")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help="timers fired after the idle window"
    )
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
    results = run(args.n, args.idle, args.batch, postgresql=not args.no_postgresql)
    print("\n".join(section(results)))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
