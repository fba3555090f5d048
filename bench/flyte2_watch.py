"""The Flyte 2 watch benchmark: 10,000 run updates a minute, read from WatchRuns.

    python bench/flyte2_watch.py                      # 10,000 updates over 60 s, 50 ms sink
    python bench/flyte2_watch.py --updates 1500 --seconds 15 --latency 200

``python3 dev.py bench`` runs it too (``--watch-updates``, ``--watch-seconds``,
``--watch-latency``; ``--no-flyte2-watch`` skips it), and docs/benchmarks.md
has its section (:func:`section`).

The claim it measures: flytenotify watching a Flyte 2 control plane keeps up
with 10,000 run updates a minute (3,334 runs, each QUEUED → RUNNING →
SUCCEEDED, one in ten FAILED), sends each ended run's message exactly once,
soon after the run ended, at a small CPU cost.

The control plane is the tests' double (tests/servers/flyte2.py
``Flyte2Plane``: flyteidl2's real Connect ``RunService`` on 127.0.0.1, in a
thread of this process). One run is made through the real ``flyte`` SDK with
``flyte.notify.NamedRule("bench")``; the others are copies of it
(``Flyte2Plane.copy_run``: the SDK takes a tenth of a second per run). The
driver (this process) moves the runs' phases on a schedule spread evenly over
``--seconds``: run *i* is QUEUED at *i* x gap, RUNNING a little later and ends
``RUN_SECONDS`` after it was queued.

flytenotify runs in a child process: a ``Notifier`` dispatching, and a
``RunWatch`` of the project with its defaults (the wiring ``serve`` does for a
``[flyte2]`` section), on a SQLite ledger, the named rule ``bench`` sending
SUCCEEDED and FAILED to a webhook: the HTTP sink of bench/sinks.py, holding
each answer back ``--latency`` ms. Grouping and recovery messages are off (as
in tests/test_flyte2.py): one message per ended run is what is counted; alert
storms are the storm benchmark's.

Measured: whether every ended run's message reached the sink exactly once; the
lag from a run's end on the plane to the sink's receipt (p50 / p99, and the
p50 of the first and last tenth of the runs by end time: a lag that grows
means it does not keep up); flytenotify's process CPU time from the first
update to the last receipt and its peak RSS (from /proc); the plane's own CPU
(its thread's) over the same window.

The anchor, from the same run and measured first: the same drive on another
project read by a trivial client in a child process that only consumes
``WatchRuns`` and counts the updates (flyteidl2's Connect client: the floor
for reading the stream), with its CPU and RSS, and the plane's CPU then.

Bounded: every wait has a limit; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings import
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the tests' servers

import procstat
from sinks import SinkProcess

HEADING = "## Flyte 2: watching run updates"
PROJECT, FLOOR_PROJECT, DOMAIN, RULE = "bench", "floor", "development", "bench"
UPDATES, SECONDS, LATENCY_MS = 10_000, 60.0, 50
PHASES_PER_RUN = 3  # QUEUED, RUNNING, then SUCCEEDED or FAILED
FAILED_EVERY = 10  # one run in ten fails
RUN_SECONDS = 4.0  # from a run's QUEUED to its end (shorter if --seconds is short)
READY_LIMIT = 60.0  # seconds a child may take to start
DRAIN_LIMIT = 120.0  # seconds after the drive for the last message to arrive
SETTLE = 1.0  # seconds waited after the last expected message, for duplicates


# -- the children -------------------------------------------------------------------------


async def child_flytenotify(endpoint: str, sink_url: str, database_url: str) -> None:
    """flytenotify dispatching and watching the project, until stdin closes."""
    from flytenotify import service
    from flytenotify.app import Notifier
    from flytenotify.config import (
        DatabaseConfig,
        Flyte2Config,
        GroupingConfig,
        NamedRuleConfig,
        RecoveryConfig,
        Settings,
        WebhookTarget,
    )
    from flytenotify.controlplane import ControlPlane
    from flytenotify.intake.flyte2 import RunWatch

    flyte2 = Flyte2Config(
        endpoint=endpoint,
        projects=[f"{PROJECT}/{DOMAIN}"],
        rules={RULE: NamedRuleConfig(phases=["SUCCEEDED", "FAILED"], recipients=["webhook:sink"])},
    )
    values: dict[str, Any] = {
        "database": DatabaseConfig(url=database_url),
        "flyte2": flyte2,
        "webhooks": {"sink": WebhookTarget(url=sink_url)},
        "grouping": GroupingConfig(by=[]),
        "recovery": RecoveryConfig(enabled=False),
    }
    settings = Settings(**values)
    async with Notifier(settings) as notifier:
        service.settle_garbage_collection()
        notifier.start_dispatching()
        watch = RunWatch(ControlPlane(flyte2), PROJECT, DOMAIN)  # serve's wiring, its defaults
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(notifier, stop))
        deadline = time.monotonic() + READY_LIMIT
        while not watch.status.ready and time.monotonic() < deadline and not task.done():
            await asyncio.wait({task}, timeout=0.05)  # ends early if the watch gave up
        print("ready" if watch.status.ready else "not ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        await asyncio.wait_for(task, 30)


async def child_counter(endpoint: str) -> None:
    """Only consume WatchRuns of the floor project and count; the counts when stdin closes."""
    from flyteidl2.common import identifier_pb2
    from flyteidl2.workflow import run_service_connect, run_service_pb2

    client = run_service_connect.RunServiceClient(endpoint)
    project = identifier_pb2.ProjectIdentifier(name=FLOOR_PROJECT, domain=DOMAIN)
    request = run_service_pb2.WatchRunsRequest(project_id=project)
    updates = 0
    ended: dict[str, float] = {}  # run name: when it was first seen ended

    async def consume() -> None:
        nonlocal updates
        async for message in client.watch_runs(request):
            now = time.time()
            for run in message.runs:
                updates += 1
                if run.action.status.phase in TERMINAL:
                    ended.setdefault(run.action.id.run.name, now)

    reading = asyncio.create_task(consume())
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    print(json.dumps({"updates": updates, "ended": ended}), flush=True)


def _terminal() -> frozenset[int]:
    from flyteidl2.common import phase_pb2

    return frozenset({phase_pb2.ACTION_PHASE_SUCCEEDED, phase_pb2.ACTION_PHASE_FAILED})


TERMINAL = _terminal()


def spawn(*args: str) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + READY_LIMIT
    while time.monotonic() < deadline:
        line = process.stdout.readline().strip()
        if line == "ready":
            return process
        if process.poll() is not None or line == "not ready":
            break
    process.kill()
    raise RuntimeError(f"the child {args[0]} did not start")


def finish(process: subprocess.Popen[str]) -> str:
    """Close its stdin (it then stops); the last line it printed."""
    try:
        out, _ = process.communicate(input="", timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate(timeout=10)
    return out.strip().rsplit("\n", 1)[-1] if out.strip() else ""


# -- the drive ----------------------------------------------------------------------------


@dataclass
class Drive:
    """What the driver did: when each run ended (time.time()), how far behind it fell."""

    ended: dict[int, float] = field(default_factory=dict)
    updates: int = 0
    started: float = 0.0
    seconds: float = 0.0
    behind_max: float = 0.0  # seconds the driver was behind its schedule, at worst


def schedule(runs: int, seconds: float) -> Iterator[tuple[float, int, int]]:
    """(offset in s, run number, step 0-2) in time order: every run's three updates."""
    length = min(RUN_SECONDS, seconds / 4)
    gap = (seconds - length) / max(runs, 1)
    steps = [[(i * gap + step * length / 2, i, step) for i in range(runs)] for step in range(3)]
    return heapq.merge(*steps)


def drive(plane: Any, runs: list[Any], seconds: float, first: int) -> Drive:
    """Move ``runs`` (numbers from ``first``) through their phases on the schedule."""
    from tests.servers.flyte2 import FAILED, QUEUED, RUNNING, SUCCEEDED

    done = Drive(started=time.time())
    start = time.monotonic()
    for offset, i, step in schedule(len(runs), seconds):
        wait = start + offset - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            done.behind_max = max(done.behind_max, -wait)
        run = runs[i]
        if step == 0:
            plane.set_phase(run, QUEUED)
        elif step == 1:
            plane.set_phase(run, RUNNING)
        elif (first + i) % FAILED_EVERY == 0:
            done.ended[first + i] = time.time()
            plane.finish(run, FAILED, error="the bench said so")
        else:
            done.ended[first + i] = time.time()
            plane.finish(run, SUCCEEDED)
        done.updates += 1
    done.seconds = time.time() - done.started
    return done


def make_runs(plane: Any, project: str, count: int, first: int) -> list[Any]:
    """One run through the SDK with the named rule, and copies of it named run-<n>."""
    import flyte.notify

    template = plane.start_run(
        project,
        DOMAIN,
        f"template-{project}",
        notifications=flyte.notify.NamedRule(RULE),
        phase=None,
    )
    return [plane.copy_run(template, f"run-{first + i}") for i in range(count)]


# -- measuring ----------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def lags(ended: dict[int, float], arrived: dict[int, float]) -> dict[str, Any]:
    """Lag from end to arrival: p50, p99, max, and the p50 of the first and last tenth."""
    by_end = sorted((t, n) for n, t in ended.items() if n in arrived)
    values = [arrived[n] - t for t, n in by_end]
    tenth = max(1, len(values) // 10)
    return {
        "p50": _quantile(values, 0.5),
        "p99": _quantile(values, 0.99),
        "max": max(values, default=None),
        "first_tenth_p50": _quantile(values[:tenth], 0.5),
        "last_tenth_p50": _quantile(values[-tenth:], 0.5),
    }


def kept_up(lag: dict[str, Any]) -> bool:
    """The last tenth's lag no more than twice the first's (and at most a second more)."""
    first, last = lag.get("first_tenth_p50"), lag.get("last_tenth_p50")
    if first is None or last is None:
        return False
    return bool(last <= max(2 * first, first + 1.0))


def plane_thread(plane: Any) -> int:
    """The native id of the thread the plane's servers run in."""
    return int(plane._thread.native_id)


def measure_floor(plane: Any, runs: int, seconds: float) -> dict[str, Any]:
    """The trivial reader: it consumes WatchRuns of the floor project while it is driven."""
    made = make_runs(plane, FLOOR_PROJECT, runs, 0)
    process = spawn("counter", plane.endpoint)
    try:
        deadline = time.monotonic() + READY_LIMIT
        while plane.watchers < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        plane_before = procstat.thread_cpu_seconds(plane_thread(plane))
        before = procstat.cpu_seconds(process.pid)
        done = drive(plane, made, seconds, 0)
        time.sleep(SETTLE)
        cpu = procstat.cpu_seconds(process.pid) - before
        plane_cpu = procstat.thread_cpu_seconds(plane_thread(plane)) - plane_before
        rss = procstat.memory_kib(process.pid)["VmHWM"] / 1024
    finally:
        last = finish(process)
    counted: dict[str, Any] = json.loads(last) if last.startswith("{") else {}
    counted.setdefault("updates", 0)
    counted.setdefault("ended", {})
    seen = {int(name.removeprefix("run-")): t for name, t in counted["ended"].items()}
    window = done.seconds + SETTLE
    return {
        "label": "floor: a client only reading WatchRuns",
        "updates_sent": done.updates,
        "updates_read": counted["updates"],
        "runs_ended": len(done.ended),
        "ended_seen": len(seen),
        "ok": len(seen) == len(done.ended),
        "lag": lags(done.ended, seen),
        "cpu_s": cpu,
        "cpu_core_percent": 100 * cpu / window,
        "peak_rss_mib": rss,
        "plane_cpu_s": plane_cpu,
        "plane_core_percent": 100 * plane_cpu / window,
        "drive_seconds": done.seconds,
        "driver_behind_max_s": done.behind_max,
    }


def measure_flytenotify(
    plane: Any, sinks: SinkProcess, runs: int, seconds: float, first: int, home: Path
) -> dict[str, Any]:
    """flytenotify watching the bench project, delivering to the HTTP sink."""
    made = make_runs(plane, PROJECT, runs, first)
    sinks.reset()
    sink_url = f"http://127.0.0.1:{sinks.ports['http']}/flyte2"
    process = spawn("flytenotify", plane.endpoint, sink_url, f"sqlite:///{home / 'ledger.db'}")
    try:
        time.sleep(1.0)  # start-up's last work (a first reconciliation) is over
        calls_before = Counter(call.method for call in plane.calls)
        plane_before = procstat.thread_cpu_seconds(plane_thread(plane))
        before = procstat.cpu_seconds(process.pid)
        done = drive(plane, made, seconds, first)
        deadline = time.monotonic() + DRAIN_LIMIT
        while sinks.counts()["http"] < len(done.ended) and time.monotonic() < deadline:
            time.sleep(0.1)
        receipts = sinks.collect()["receipts"]["http"]
        last_receipt = max((t for t, _ in receipts), default=time.time())
        cpu = procstat.cpu_seconds(process.pid) - before
        plane_cpu = procstat.thread_cpu_seconds(plane_thread(plane)) - plane_before
        rss = procstat.memory_kib(process.pid)["VmHWM"] / 1024
        time.sleep(SETTLE)  # a duplicate would come now
        receipts = sinks.collect()["receipts"]["http"]
    finally:
        finish(process)
    calls = Counter(call.method for call in plane.calls) - calls_before
    times: dict[int, float] = {}
    copies = Counter(n for _, n in receipts)
    for t, n in receipts:
        times.setdefault(n, t)
    expected = set(done.ended)
    window = max(last_receipt - done.started, done.seconds)
    lag = lags(done.ended, times)
    exactly_once = set(copies) == expected and all(c == 1 for c in copies.values())
    return {
        "label": "flytenotify: RunWatch and a webhook per ended run",
        "updates_sent": done.updates,
        "runs_ended": len(done.ended),
        "messages": len(receipts),
        "missing": len(expected - set(copies)),
        "duplicates": sum(c - 1 for c in copies.values() if c > 1),
        "unexpected": len(set(copies) - expected),
        "exactly_once": exactly_once,
        "kept_up": kept_up(lag),
        "ok": exactly_once and kept_up(lag),
        "lag": lag,
        "cpu_s": cpu,
        "cpu_core_percent": 100 * cpu / window,
        "cpu_ms_per_update": 1000 * cpu / max(done.updates, 1),
        "peak_rss_mib": rss,
        "plane_cpu_s": plane_cpu,
        "plane_core_percent": 100 * plane_cpu / window,
        "plane_calls": dict(calls),  # what flytenotify asked the plane while driven
        "drive_seconds": done.seconds,
        "window_seconds": window,
        "driver_behind_max_s": done.behind_max,
    }


def run(
    sinks: SinkProcess,
    updates: int = UPDATES,
    seconds: float = SECONDS,
    latency_ms: int = LATENCY_MS,
) -> dict[str, Any]:
    """The floor, then flytenotify, on one plane; the results document's ``flyte2_watch``."""
    from tests.servers.flyte2 import Flyte2Plane

    runs = math.ceil(updates / PHASES_PER_RUN)
    started = time.time()
    load_before = os.getloadavg()[0]
    sinks.set_delay(latency_ms / 1000)
    rows: list[dict[str, Any]] = []
    try:
        with Flyte2Plane() as plane, tempfile.TemporaryDirectory() as home:
            measures: list[Callable[[], dict[str, Any]]] = [
                lambda: measure_floor(plane, runs, seconds),
                lambda: measure_flytenotify(plane, sinks, runs, seconds, runs, Path(home)),
            ]
            for measure in measures:
                try:
                    rows.append(measure())
                except Exception as error:  # one failed row must not lose the other's numbers
                    rows.append({"label": "failed", "ok": False, "error": repr(error)})
    finally:
        sinks.set_delay(0)
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_seconds": time.time() - started,
        "load_average_1m": load_before,
        "load_average_1m_at_end": os.getloadavg()[0],
        "updates": runs * PHASES_PER_RUN,
        "runs": runs,
        "seconds": seconds,
        "latency_ms": latency_ms,
        "rows": rows,
        "ok": all(row.get("ok") for row in rows),
    }


# -- the report ---------------------------------------------------------------------------


def _s(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else f"{value:{fmt}}"


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| reader | updates sent / read | ended runs: messages (missing, duplicates) "
        "| lag p50 / p99 (s) | lag p50 first / last tenth (s) | kept up "
        "| CPU % of a core | CPU ms per update | peak RSS MiB | plane CPU % of a core |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in results.get("rows", []):
        if "error" in row:
            lines.append(f"| {row['label']} | **run failed: {row['error']}** |||||||||")
            continue
        lag = row["lag"]
        floor = "updates_read" in row
        sent = f"{row['updates_sent']:,} / " + (
            f"{row['updates_read']:,}" if floor else "(its own watch)"
        )
        if floor:
            messages = f"{row['runs_ended']:,}: {row['ended_seen']:,} seen ended"
            kept = "-"
        else:
            messages = (
                f"{row['runs_ended']:,}: {row['messages']:,} "
                f"({row['missing']:,}, {row['duplicates']:,})"
                + ("" if row["exactly_once"] else " **not exactly once**")
            )
            kept = "yes" if row["kept_up"] else "**no**"
        per_update = row.get("cpu_ms_per_update", 1000 * row["cpu_s"] / max(row["updates_sent"], 1))
        lines.append(
            f"| {row['label']} | {sent} | {messages} "
            f"| {_s(lag['p50'])} / {_s(lag['p99'])} "
            f"| {_s(lag['first_tenth_p50'])} / {_s(lag['last_tenth_p50'])} | {kept} "
            f"| {row['cpu_core_percent']:.1f} | {per_update:.3f} | {row['peak_rss_mib']:.0f} "
            f"| {row['plane_core_percent']:.1f} |"
        )
    return lines


def section(results: dict[str, Any] | None) -> list[str]:
    """The report's section: how it was measured, the table, what holds."""
    if not results:
        return [HEADING, "", "Not run this time (`--no-flyte2-watch`)."]
    if "error" in results:
        return [HEADING, "", f"**The run failed**: `{results['error']}`."]
    return [
        HEADING,
        "",
        f"A Flyte 2 control plane (the tests' double: flyteidl2's Connect `RunService` on "
        f"127.0.0.1) is driven through {results['updates']:,} run updates over "
        f"{results['seconds']:g} s: {results['runs']:,} runs, each QUEUED → RUNNING → "
        "SUCCEEDED (one in ten FAILED), spread evenly. flytenotify (one process: a "
        "`Notifier` and the `RunWatch` `serve` starts for a `[flyte2]` project, its defaults, "
        "SQLite) sends each ended run's message, by the named rule its runs carry "
        "(`flyte.notify.NamedRule`), to a webhook sink answering after "
        f"{results['latency_ms']} ms; grouping and recovery messages off, so one message per "
        "ended run is what is counted. Lag is from the run's end on the plane to the sink's "
        "receipt of the request (before it holds back its answer); *kept up*: the last "
        "tenth's median lag is within twice the first's. CPU is "
        "the process's, from the first update to the last receipt; the plane's is its "
        "serving thread's. The floor, driven first on another project in the same run: a "
        "client that only reads `WatchRuns` and counts (its lag: to seeing the run ended; "
        "what it read includes the snapshot `WatchRuns` sends first).",
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
    ours = next((r for r in results.get("rows", []) if "exactly_once" in r), None)
    if ours is None:
        return "**Not measured**: the flytenotify run failed."
    rate = ours["updates_sent"] / ours["drive_seconds"] * 60
    once = "exactly once" if ours["exactly_once"] else "**not exactly once**"
    kept = "kept up" if ours["kept_up"] else "**did not keep up** (its lag grew)"
    verdict = "**holds**" if ours["ok"] else "**does not hold**"
    details = ours.get("plane_calls", {}).get("GetRunDetails")
    asked = f", {details:,} GetRunDetails calls" if details is not None else ""
    return (
        f"What holds: flytenotify keeps up with {rate:,.0f} run updates a minute and sends "
        f"every ended run's message exactly once: {verdict}. It {kept}, each message "
        f"{once} (lag p99 {_s(ours['lag']['p99'])} s, {ours['cpu_core_percent']:.0f}% of a "
        f"core{asked})."
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=UPDATES, help="run updates to drive")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="over this many seconds")
    parser.add_argument("--latency", type=int, default=LATENCY_MS, help="sink latency (ms)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "flytenotify":
            from flytenotify import service

            # As `serve` runs: one malloc arena, start-up frozen out of the
            # collector, uvloop.
            service.one_malloc_arena()
            service.run(child_flytenotify(*rest))
        else:
            asyncio.run(child_counter(rest[0]))
        return 0
    with SinkProcess() as sinks:
        results = run(sinks, args.updates, args.seconds, args.latency)
    print(json.dumps(results, indent=1))
    print("\n".join(section(results)))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
