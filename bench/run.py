"""Benchmarks: flytenotify vs Prometheus Alertmanager vs the sinks' raw limit.

    python3 dev.py bench                 # the latency matrix and N = 10,000; median of 2 runs
    python3 dev.py bench --quick         # ~3 minutes: the latency matrix, small N, one run
    python3 dev.py bench --runs 1        # everything once
    python3 dev.py bench --full          # adds N = 100,000 and the 1,000,000-delivery backlog
    python3 dev.py bench --backlog-only --backlog 20000  # backlog only (own JSON)
    python3 dev.py bench --no-postgresql # without the local PostgreSQL server
    python3 dev.py bench --intake-only   # FlyteAdmin's events from the brokers only (~2 min)
    python3 dev.py bench --intake-only --intake-n 5000 --brokers nats
    python3 dev.py bench --storm-only    # the alert-storm comparison only (~2-3 min)
    python3 dev.py bench --no-timers --no-flyte2-watch  # without the two below
    python3 dev.py bench --timers-n 20000 --timers-idle 5 --watch-updates 3000 --watch-seconds 20
    (SNS → SQS runs --intake-sqs-n events, 100 by default: moto, not flytenotify, bounds it)

The latency matrix: flytenotify with its defaults (only where to send
configured) and tuned, and Alertmanager, deliver --latency-n webhooks and
emails to sinks that hold back each answer 0, 50 and 200 ms (--latencies);
PostgreSQL adds 1 and 3 dispatcher replicas draining --pg-latency-n webhooks
from 200 ms sinks with the defaults.

The PostgreSQL runs need a server on 127.0.0.1:5432 that lets user postgres in
without a password; each run creates a database flytenotify_bench_<random> and
drops it afterwards.

The broker-intake runs consume FlyteAdmin's cloud events from NATS JetStream
(127.0.0.1:4222), Google's Pub/Sub emulator and SNS → SQS in moto; a broker
that is not there is skipped with the reason printed.

Deadline timers (bench/timers.py): --timers-n pending timers (100,000) armed
in the ledger, flytenotify idle --timers-idle seconds (10), then a batch of
--timers-batch (20) fired: idle CPU, RSS and lateness, on SQLite and on
PostgreSQL when it is reachable, against flytenotify with none pending and a
naive asyncio.sleep-per-timer child.

The Flyte 2 watch (bench/flyte2_watch.py): --watch-updates run updates
(10,000) over --watch-seconds (60) on the loopback Flyte 2 plane, flytenotify's
RunWatch sending one webhook per ended run to a sink answering after
--watch-latency ms (50): exactly once, lag, CPU, RSS, against a client that
only reads WatchRuns.

Writes bench/results/latest.json, docs/benchmarks.md and docs/benchmarks.png;
--intake-only writes bench/results/intake-latest.json and replaces only the
broker-intake section of docs/benchmarks.md.
Everything binds 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings import
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the tests' builders and servers

import brokers
import flyte2_watch
import measure
import raw
import report
import storm
import target_alertmanager as am
import target_flytenotify as fn
import timers
from load import DOMAIN, PROJECT
from sinks import SinkProcess
from target_flyteadmin import FlyteAdminProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
BACKLOG_RESULTS = ROOT / "bench" / "results" / "backlog-latest.json"
INTAKE_RESULTS = ROOT / "bench" / "results" / "intake-latest.json"
STORM_RESULTS = ROOT / "bench" / "results" / "storm-latest.json"

# The load generator's shape: single-event requests in flight, events per batch
# and batches in flight. Kept in the results so a rerun can be compared.
LOAD = {"concurrency": 32, "batch_size": 500, "batch_concurrency": 2}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        help="runs per scenario, median reported (default 2; --quick, --intake-only 1)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run, small N, no throughput or broker runs"
    )
    parser.add_argument(
        "--latencies",
        type=int,
        nargs="*",
        help="sink latencies in ms for the latency matrix (default 0 50 200; none: skip it)",
    )
    parser.add_argument(
        "--latency-n", type=int, help="events per latency-matrix run (default 2,000)"
    )
    parser.add_argument(
        "--pg-latency-n",
        type=int,
        help="webhooks drained per PostgreSQL replica run at the largest latency (default 20,000)",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", help="flytenotify sizes N at 0 ms (none: skip)"
    )
    parser.add_argument("--am-sizes", type=int, nargs="+", help="Alertmanager sizes")
    parser.add_argument(
        "--large",
        type=int,
        help="the largest N, batched email and webhook only (0: skip; default 0, --full 100,000)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="add N = 100,000 and the backlog run (1,000,000 deliveries)",
    )
    parser.add_argument("--backlog", type=int, default=0, help="backlog run size (0: off)")
    parser.add_argument("--backlog-only", action="store_true", help="skip everything else")
    parser.add_argument("--no-alertmanager", action="store_true")
    parser.add_argument(
        "--no-postgresql", action="store_true", help="skip the PostgreSQL runs (local server)"
    )
    parser.add_argument(
        "--pg-replicas",
        type=int,
        nargs="+",
        default=[1, 3],
        help="PostgreSQL dispatcher replicas to measure at the largest size (default: 1 3)",
    )
    parser.add_argument(
        "--extra-channels",
        nargs="*",
        default=["pagerduty", "slack"],
        help="channels measured at the smallest size only (default: pagerduty slack)",
    )
    parser.add_argument(
        "--intake-only", action="store_true", help="only the broker-intake runs (FlyteAdmin events)"
    )
    parser.add_argument(
        "--storm-only",
        action="store_true",
        help="only the alert-storm runs: grouping off and on, Alertmanager (~2-3 min)",
    )
    parser.add_argument(
        "--intake-n", type=int, default=1_000, help="events per broker-intake run (default 1,000)"
    )
    parser.add_argument(
        "--intake-sqs-n",
        type=int,
        default=100,
        help="events per SNS → SQS run (default 100: moto answers a few receives per second)",
    )
    parser.add_argument(
        "--brokers",
        nargs="*",
        choices=brokers.BROKERS,
        default=list(brokers.BROKERS),
        help="brokers for the intake runs (default: all; none: skip them)",
    )
    parser.add_argument(
        "--no-timers", action="store_true", help="skip the pending deadline timers' run"
    )
    parser.add_argument(
        "--timers-n", type=int, help="pending deadline timers (default 100,000; --quick 20,000)"
    )
    parser.add_argument(
        "--timers-idle", type=float, help="seconds the timers are measured idle (default 10)"
    )
    parser.add_argument(
        "--timers-batch", type=int, default=timers.BATCH, help="timers fired after the idle window"
    )
    parser.add_argument(
        "--no-flyte2-watch", action="store_true", help="skip the Flyte 2 WatchRuns run"
    )
    parser.add_argument(
        "--watch-updates",
        type=int,
        help="Flyte 2 run updates driven (default 10,000; --quick 3,000)",
    )
    parser.add_argument(
        "--watch-seconds", type=float, help="over this many seconds (default 60; --quick 20)"
    )
    parser.add_argument(
        "--watch-latency",
        type=int,
        default=flyte2_watch.LATENCY_MS,
        help="the webhook sink's latency in ms for the Flyte 2 watch (default 50)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (1 if args.intake_only or quick else 2)
    args.latencies = [0, 50, 200] if args.latencies is None else args.latencies
    args.latency_n = args.latency_n or (1_000 if quick else 2_000)
    args.pg_latency_n = args.pg_latency_n or (10_000 if quick else 20_000)
    if args.sizes is None:
        args.sizes = [] if quick else [10_000]
    args.am_sizes = args.am_sizes or [5_000]
    if args.large is None:
        args.large = 100_000 if args.full else 0
    if quick:
        args.brokers = []
        args.extra_channels = []
    args.timers_n = args.timers_n or (20_000 if quick else timers.COUNT)
    args.timers_idle = args.timers_idle or (5.0 if quick else timers.IDLE)
    args.watch_updates = args.watch_updates or (3_000 if quick else flyte2_watch.UPDATES)
    args.watch_seconds = args.watch_seconds or (20.0 if quick else flyte2_watch.SECONDS)
    if args.full and not args.backlog:
        args.backlog = 1_000_000
    return args


def scenarios(args: argparse.Namespace, binary: str | None) -> list[tuple[str, Callable[..., Any]]]:
    """(label, function of the sinks) for one round; a round is repeated --runs times."""
    found: list[tuple[str, Callable[..., Any]]] = []
    raw_count = max(10_000, max(args.sizes, default=0) // 2)
    for mode in raw.MODES:
        found.append((f"raw {mode}", lambda s, m=mode: measure.raw_limit(s, m, raw_count)))
    found += latency_scenarios(args, binary)
    if args.sizes:
        found += throughput_scenarios(args, binary)
    return found


def latency_scenarios(
    args: argparse.Namespace, binary: str | None
) -> list[tuple[str, Callable[..., Any]]]:
    """Each system against sinks answering after each latency; PostgreSQL replicas at the top."""
    found: list[tuple[str, Callable[..., Any]]] = []
    size = args.latency_n
    for ms in args.latencies:
        for channel in ("webhook", "email"):
            row = {"channel": channel, "size": size, "latency_ms": ms, "intake": "batch"}
            for profile in fn.PROFILES:
                found.append(
                    (
                        f"flytenotify {profile} {channel} {ms} ms N={size}",
                        lambda s, c=channel, p=profile, d=ms / 1000, w=row: _in_matrix(
                            lambda: measure.flytenotify_run(
                                s, c, "batch", size, LOAD, latency=d, profile=p
                            ),
                            system="flytenotify",
                            profile=p,
                            **w,
                        ),
                    )
                )
            if binary is not None:
                found.append(
                    (
                        f"alertmanager {channel} {ms} ms N={size}",
                        lambda s, c=channel, d=ms / 1000, w=row: _in_matrix(
                            lambda: measure.alertmanager_run(s, binary, c, size, LOAD, latency=d),
                            system="alertmanager",
                            **w,
                        ),
                    )
                )
    if args.latencies and not args.no_postgresql:
        slowest = max(args.latencies)
        for replicas in args.pg_replicas:
            found.append(
                (
                    f"flytenotify defaults webhook drain, PostgreSQL, {replicas} "
                    f"dispatcher{'s' if replicas > 1 else ''} {slowest} ms N={args.pg_latency_n}",
                    lambda s, r=replicas, d=slowest / 1000: _in_matrix(
                        lambda: measure.drain_run(
                            s,
                            args.pg_latency_n,
                            LOAD,
                            backend="postgresql",
                            replicas=r,
                            latency=d,
                            profile="defaults",
                        ),
                        system="flytenotify",
                        profile="defaults",
                        channel="webhook",
                        size=args.pg_latency_n,
                        latency_ms=slowest,
                        dispatchers=r,
                        backend="postgresql",
                        intake=measure.intake_label("drain", "postgresql", r),
                    ),
                )
            )
    return found


def _in_matrix(run: Callable[[], dict[str, Any]], **describe: Any) -> dict[str, Any]:
    """A run of the latency matrix, described even if it fails, and marked as the matrix's.

    Marked, it is reported in its own table and judged by its own targets.
    """
    try:
        result = run()
    except Exception as error:  # reported as a failed row, the others still run
        result = {"ok": False, "error": repr(error)}
    return {**describe, **result, "matrix": "latency"}


def throughput_scenarios(
    args: argparse.Namespace, binary: str | None
) -> list[tuple[str, Callable[..., Any]]]:
    """Sinks answering at once: intake modes, sizes, processes, backends, other channels."""
    found: list[tuple[str, Callable[..., Any]]] = []
    for size in args.sizes:
        for channel, intake in (("email", "batch"), ("webhook", "batch"), ("email", "single")):
            found.append(
                (
                    f"flytenotify {channel} {intake} N={size}",
                    lambda s, c=channel, i=intake, n=size: measure.flytenotify_run(
                        s, c, i, n, LOAD
                    ),
                )
            )
    # The largest size for the batched runs only: one event per request would
    # take minutes and says nothing the smaller sizes do not.
    if args.large:
        for channel in ("email", "webhook"):
            found.append(
                (
                    f"flytenotify {channel} batch N={args.large}",
                    lambda s, c=channel, n=args.large: measure.flytenotify_run(
                        s, c, "batch", n, LOAD
                    ),
                )
            )
    # The same at 10,000 (or --sizes' largest) with the API and the dispatcher in two
    # processes on one SQLite file: one process uses one core at most.
    for channel in ("email", "webhook"):
        size = max(args.sizes)
        found.append(
            (
                f"flytenotify {channel} batch, 2 processes N={size}",
                lambda s, c=channel, n=size: measure.flytenotify_run(
                    s, c, "batch", n, LOAD, split=True
                ),
            )
        )
    # PostgreSQL: the same batched webhook run with one API process and one or
    # three dispatcher replicas (the target: three deliver >= 2x what one does),
    # and single-event intake at the smallest size. Each run gets a fresh
    # database on the local server, dropped afterwards.
    if not args.no_postgresql:
        size = max(args.sizes)
        for replicas in args.pg_replicas:
            found.append(
                (
                    f"flytenotify webhook batch, PostgreSQL, {replicas} "
                    f"dispatcher{'s' if replicas > 1 else ''} N={size}",
                    lambda s, r=replicas, n=size: measure.flytenotify_run(
                        s, "webhook", "batch", n, LOAD, backend="postgresql", replicas=r
                    ),
                )
            )
        # The dispatchers alone: the same deliveries enqueued first, then drained
        # by one or three replicas (end to end, the API's intake bounds the rate).
        for replicas in args.pg_replicas:
            found.append(
                (
                    f"flytenotify webhook drain, PostgreSQL, {replicas} "
                    f"dispatcher{'s' if replicas > 1 else ''} N={size}",
                    lambda s, r=replicas, n=size: measure.drain_run(
                        s, n, LOAD, backend="postgresql", replicas=r
                    ),
                )
            )
        size = min(args.sizes)
        found.append(
            (
                f"flytenotify email single, PostgreSQL N={size}",
                lambda s, n=size: measure.flytenotify_run(
                    s, "email", "single", n, LOAD, backend="postgresql"
                ),
            )
        )
    for channel in args.extra_channels:
        size = min(args.sizes)
        found.append(
            (
                f"flytenotify {channel} batch N={size}",
                lambda s, c=channel, n=size: measure.flytenotify_run(s, c, "batch", n, LOAD),
            )
        )
    if binary is not None:
        for size in args.am_sizes:
            for receiver in ("email", "webhook"):
                found.append(
                    (
                        f"alertmanager {receiver} N={size}",
                        lambda s, r=receiver, n=size: measure.alertmanager_run(
                            s, binary, r, n, LOAD
                        ),
                    )
                )
    return found


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    binary, am_note = (None, "skipped (--no-alertmanager)")
    if not args.no_alertmanager and not (args.backlog_only or args.intake_only):
        binary, am_note = am.ensure_installed()
    started = time.time()
    machine_before = machine()
    runs: list[dict[str, Any]] = []
    backlog: dict[str, Any] | None = None
    with SinkProcess() as sinks:
        plan = [] if args.backlog_only or args.intake_only else scenarios(args, binary)
        for round_number in range(args.runs):
            for label, scenario in plan:
                runs.append(_one(label, round_number, scenario, sinks))
        if args.backlog:
            print(f"backlog N={args.backlog}", flush=True)
            backlog = measure.backlog_run(sinks, args.backlog, LOAD)
        broker_intake = None if args.backlog_only else run_broker_intake(args, sinks)
        others = not (args.backlog_only or args.intake_only)
        watch = run_flyte2_watch(args, sinks) if others and not args.no_flyte2_watch else None
    alert_storm = storm.run() if others else None
    deadline_timers = run_timers(args) if others and not args.no_timers else None
    return {
        "machine": {**machine_before, "load_average_1m_at_end": os.getloadavg()[0]},
        "alertmanager": {
            "binary": binary,
            "note": am_note,
            "version": am.version(binary) if binary else None,
        },
        "load": LOAD,
        "runs_per_scenario": args.runs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_seconds": time.time() - started,
        "runs": runs,
        "summary": summarize(runs),
        "backlog": backlog,
        "broker_intake": broker_intake,
        "storm": alert_storm,
        "timers": deadline_timers,
        "flyte2_watch": watch,
    }


def run_timers(args: argparse.Namespace) -> dict[str, Any]:
    """Pending deadline timers idling, on each ledger, against the anchors."""
    print(f"deadline timers N={args.timers_n} idle {args.timers_idle:g} s ...", flush=True)
    try:
        found = timers.run(
            args.timers_n, args.timers_idle, args.timers_batch, postgresql=not args.no_postgresql
        )
    except Exception as error:  # reported as failed, the other sections keep their numbers
        return {"ok": False, "error": repr(error)}
    print("\n".join(timers.table(found)), flush=True)
    return found


def run_flyte2_watch(args: argparse.Namespace, sinks: SinkProcess) -> dict[str, Any]:
    """flytenotify watching a Flyte 2 plane driven at the rate asked, against the floor."""
    print(
        f"Flyte 2 watch: {args.watch_updates:,} updates over {args.watch_seconds:g} s ...",
        flush=True,
    )
    try:
        found = flyte2_watch.run(sinks, args.watch_updates, args.watch_seconds, args.watch_latency)
    except Exception as error:  # reported as failed, the other sections keep their numbers
        return {"ok": False, "error": repr(error)}
    print("\n".join(flyte2_watch.table(found)), flush=True)
    return found


def run_broker_intake(args: argparse.Namespace, sinks: SinkProcess) -> dict[str, Any] | None:
    """Each available broker, FlyteAdmin lookups cached and uncached, --runs times."""
    if not args.brokers:
        return None
    started = time.time()
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with brokers.available(args.brokers) as found, FlyteAdminProcess(PROJECT, DOMAIN) as admin:
        for round_number in range(args.runs):
            for broker, make_lane in found.makers.items():
                size = args.intake_sqs_n if broker == "aws" else args.intake_n
                for cached in (True, False):
                    label = f"{broker} {'cached' if cached else 'uncached'} N={size}"
                    runs.append(
                        _one(
                            label,
                            round_number,
                            lambda s, m=make_lane, c=cached, n=size: measure.broker_intake_run(
                                s, admin, m, n, c
                            ),
                            sinks,
                        )
                    )
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_seconds": time.time() - started,
        "load_average_1m": load_before,
        "load_average_1m_at_end": os.getloadavg()[0],
        "runs_per_scenario": args.runs,
        "skipped": found.missing,
        "runs": runs,
        "summary": summarize_brokers(runs),
    }


def _one(label: str, round_number: int, scenario: Callable[..., Any], sinks: SinkProcess) -> Any:
    print(f"[run {round_number + 1}] {label} ...", end=" ", flush=True)
    try:
        result = scenario(sinks)
    except Exception as error:  # one broken scenario must not lose the others' numbers
        result = {"ok": False, "error": repr(error)}
    result.update(label=label, round=round_number)
    rate = result.get("delivered_per_s", 0.0)
    print(f"{'ok' if result.get('ok') else 'FAILED'} {rate:,.0f}/s", flush=True)
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario label: median, min and max of each number over the runs."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in runs:
        grouped[result["label"]].append(result)
    return {label: _aggregate(results) for label, results in grouped.items()}


_NUMBERS = (
    "accepted_per_s",
    "delivered_per_s",
    "cpu_s_per_1000",
    "peak_rss_mib",
    "peak_rss_process_mib",
    "processes",
    "cpu_cores_busy",
    "machine_cores_busy",
    "peak_in_flight",
)


def _aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    # A run that raised has only its error: describe the scenario by one that did not.
    first = next((r for r in results if r.get("system")), results[0])
    keys = ("system", "channel", "intake", "size", "mode", "expected", "backend", "dispatchers")
    keys += ("profile", "latency_ms", "matrix")
    summary: dict[str, Any] = {k: first.get(k) for k in keys}
    summary["errors"] = [r["error"] for r in results if "error" in r]
    summary["ok"] = all(r.get("ok") for r in results)
    summary["runs"] = len(results)
    for key in _NUMBERS:
        summary[key] = _spread([r[key] for r in results if r.get(key) is not None])
    for key in ("latency_from_accept", "latency_from_post"):
        for q in ("p50", "p95", "p99", "max"):
            values = [r[key][q] for r in results if r.get(key, {}).get(q) is not None]
            summary[f"{key}_{q}"] = _spread(values)
    return summary


def summarize_brokers(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per broker-intake label: median, min and max of each number over the runs."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in runs:
        grouped[result["label"]].append(result)
    summary: dict[str, dict[str, Any]] = {}
    for label, results in grouped.items():
        first = next((r for r in results if r.get("broker")), results[0])
        row: dict[str, Any] = {k: first.get(k) for k in ("broker", "lookup", "size")}
        row["errors"] = [r["error"] for r in results if "error" in r]
        row["ok"] = all(r.get("ok") for r in results)
        row["runs"] = len(results)
        numbers = ("delivered_per_s", "after_startup_per_s", "startup_s")
        for key in (*numbers, "flyteadmin_calls", "cpu_s_per_1000"):
            row[key] = _spread([r[key] for r in results if r.get(key) is not None])
        for q in ("p50", "p99"):
            values = [r["arrival_after_start"][q] for r in results if r.get("arrival_after_start")]
            row[f"arrival_{q}"] = _spread(values)
        summary[label] = row
    return summary


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "network": "loopback only (127.0.0.1), no TLS",
        # Other processes on the machine skew every figure; the load average says how much.
        "load_average_1m": os.getloadavg()[0],
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.storm_only:
        return storm_only()
    results = run_all(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if args.intake_only:
        # Only the broker-intake section changes: the other rows keep their run's numbers.
        INTAKE_RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        if results["broker_intake"] is not None:
            report.replace_broker_section(results["broker_intake"], ROOT / "docs" / "benchmarks.md")
        print(f"wrote {INTAKE_RESULTS.relative_to(ROOT)}, docs/benchmarks.md (broker intake)")
        print("\n".join(report.broker_table(results["broker_intake"] or {})))
    elif args.backlog_only:
        # A backlog-only run has no comparison to report: keep the full run's documents.
        BACKLOG_RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {BACKLOG_RESULTS.relative_to(ROOT)}")
    else:
        RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        report.write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png")
        print(f"wrote {RESULTS.relative_to(ROOT)}, docs/benchmarks.md, docs/benchmarks.png")
    failed = [label for label, s in results["summary"].items() if not s["ok"]]
    broker_summary = (results["broker_intake"] or {}).get("summary", {})
    failed += [f"broker intake {label}" for label, s in broker_summary.items() if not s["ok"]]
    for key, what in (("timers", "deadline timers"), ("flyte2_watch", "Flyte 2 watch")):
        if results.get(key) is not None and not results[key]["ok"]:
            failed.append(what)
    if failed or (results["backlog"] and not results["backlog"]["ok"]):
        print("FAILED runs: " + ", ".join(failed or ["backlog"]), file=sys.stderr)
        return 1
    return 0


def storm_only() -> int:
    """The alert-storm runs alone; only their section of docs/benchmarks.md changes."""
    results = storm.run()
    STORM_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    STORM_RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    report.replace_section(ROOT / "docs" / "benchmarks.md", storm.HEADING, storm.section(results))
    print(f"wrote {STORM_RESULTS.relative_to(ROOT)}, docs/benchmarks.md (alert storms)")
    print("\n".join(storm.table(results)))
    failed = [row["label"] for row in results["rows"] if not row["ok"]]
    if failed:
        print("FAILED runs: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
