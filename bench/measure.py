"""One measured run of each scenario: raw limit, flytenotify, Alertmanager, backlog.

Each function returns a flat dict (JSON-ready). A run whose delivered count is
not the expected count is marked ``ok: False``: a fast system that loses
messages has not been measured, it has failed.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import load
import raw
import target_alertmanager as am
import target_flytenotify as fn
from brokers import Lane, LaneMaker
from load import DOMAIN, PROJECT
from procstat import cpu_seconds, machine_busy_seconds, memory_kib
from sinks import Receipt, SinkProcess
from target_flyteadmin import FlyteAdminProcess
from tests import flyteadmin_egress as egress
from tests.flyteadmin_egress import FlyteCloudEvent

SINK_KIND = {"email": "smtp", "webhook": "http", "pagerduty": "pagerduty", "slack": "slack"}
POLL = 0.1
STALL_LIMIT = 30.0  # seconds without a new delivery before a run is given up


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def cpu_now(server: fn.Server) -> dict[int, float]:
    """CPU seconds each of the service's processes (its dispatcher workers too) has used."""
    return {pid: cpu_seconds(pid) for pid in server.pids}


def cpu_since(server: fn.Server, before: dict[int, float]) -> float:
    """CPU seconds the service used since ``before``; a worker started since counts whole."""
    return sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in server.pids)


def peak_rss(server: fn.Server) -> dict[str, float]:
    """Peak RSS (VmHWM) of the service: summed over its processes, the largest one's,
    and how many there were (`serve` runs one per core by default)."""
    peaks = [memory_kib(pid).get("VmHWM", 0) / 1024 for pid in server.pids]
    return {
        "peak_rss_mib": sum(peaks),
        "peak_rss_process_mib": max(peaks, default=0.0),
        "processes": len(peaks),
    }


def wait_for(sinks: SinkProcess, kind: str, expected: int, limit: float) -> None:
    """Until the sink has ``expected`` messages, ``limit`` passes, or delivery stalls."""
    deadline = time.monotonic() + limit
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = sinks.counts()[kind]
        if count >= expected:
            return
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > STALL_LIMIT:
            return
        time.sleep(POLL)


def delivery_stats(intake: load.Intake, receipts: list[Receipt], expected: int) -> dict[str, Any]:
    """Counts, rates and latencies of one run, from the client's and the sink's clocks."""
    ids = [n for _, n in receipts]
    unique = set(ids)
    first_receipt: dict[int, float] = {}
    for at, n in receipts:
        first_receipt.setdefault(n, at)
    from_accept = [t - intake.accepted[n] for n, t in first_receipt.items() if n in intake.accepted]
    from_post = [t - intake.sent[n] for n, t in first_receipt.items() if n in intake.sent]
    last = max((t for t, _ in receipts), default=intake.started)
    took = last - intake.started
    return {
        "expected": expected,
        "accepted": len(intake.accepted),
        "refused": intake.refused,
        "delivered": len(unique & set(range(expected))),
        "duplicates": len(ids) - len(unique),
        # Nothing lost and nothing doubled: one receipt per event, each expected.
        "ok": len(unique & set(range(expected))) == expected
        and len(ids) == len(unique)
        and intake.refused == 0,
        "accepted_per_s": intake.rate,
        "delivered_per_s": expected / took if took > 0 else 0.0,
        "seconds": took,
        "latency_from_accept": percentiles(from_accept),
        "latency_from_post": percentiles(from_post),
    }


# --- the raw limit -----------------------------------------------------------------


def raw_limit(sinks: SinkProcess, mode: str, count: int, connections: int = 16) -> dict[str, Any]:
    _prepare_sinks(sinks, 0.0)
    port = sinks.ports["http" if mode.startswith("http") else "smtp"]
    seconds = asyncio.run(raw.blast(mode, port, count, connections))
    received = sum(sinks.counts().values())
    return {
        "system": "raw",
        "mode": mode,
        "expected": count,
        "delivered": received,
        "ok": received == count,
        "delivered_per_s": count / seconds,
        "connections": connections,
    }


# --- flytenotify ---------------------------------------------------------------------


def flytenotify_run(
    sinks: SinkProcess,
    channel: str,
    intake_mode: str,
    size: int,
    settings: dict[str, Any],
    split: bool = False,
    backend: str = "sqlite",
    replicas: int = 0,
    latency: float = 0.0,
    profile: str = "tuned",
) -> dict[str, Any]:
    """N FAILED events for ``channel``, sent one per request or in batches.

    ``latency``: seconds the sink holds back each answer. ``profile``: the
    service's settings (target_flytenotify.PROFILES).

    ``backend`` is ``sqlite`` (a file) or ``postgresql`` (a fresh database on
    the local server, dropped afterwards). ``replicas`` > 0 runs one API
    process and that many dispatcher processes on the one database; ``split``
    is ``replicas=1``. CPU and memory are then the sum over all processes (the
    PostgreSQL server's own are not included).
    """
    _prepare_sinks(sinks, latency)
    kind = SINK_KIND[channel]
    replicas = max(replicas, 1) if split else replicas
    with tempfile.TemporaryDirectory(prefix="fn-bench-") as tmp:
        config = fn.config_toml(sinks.ports["smtp"], sinks.ports["http"], profile=profile)
        with (
            fn.database(backend, Path(tmp)) as db,
            fn.serve(Path(tmp), config, db=db, replicas=replicas) as server,
        ):
            plans = _register(server, channel, size)
            cpu_before = cpu_now(server)
            intake = asyncio.run(
                _send(server.base_url, channel, intake_mode, size, plans, settings)
            )
            wait_for(sinks, kind, size, limit=60 + size / 20)
            cpu = cpu_since(server, cpu_before)
            memory = peak_rss(server)
        collected = sinks.collect()
    stats = delivery_stats(intake, collected["receipts"][kind], size)
    return {
        "system": "flytenotify",
        "channel": channel,
        "intake": intake_label(intake_mode, backend, replicas),
        "backend": backend,
        "dispatchers": replicas,
        "size": size,
        "profile": profile,
        **_latency_fields(latency, collected),
        **stats,
        "cpu_s_per_1000": 1000 * cpu / max(1, stats["delivered"]),
        "cpu_cores_busy": cpu / stats["seconds"] if stats["seconds"] > 0 else 0.0,
        **memory,
    }


def _prepare_sinks(sinks: SinkProcess, latency: float) -> None:
    sinks.set_delay(latency)
    sinks.reset()


def _latency_fields(latency: float, collected: dict[str, Any]) -> dict[str, Any]:
    """The sink's latency and the most messages it held unanswered at once (with a latency)."""
    peak = collected.get("peak_waiting") if latency > 0 else None
    return {"latency_ms": round(latency * 1000), "peak_in_flight": peak}


def intake_label(intake_mode: str, backend: str, replicas: int) -> str:
    """The row's intake column: e.g. batch; batch, 2 processes; batch, PostgreSQL, 3 dispatchers."""
    if backend == "sqlite":
        return f"{intake_mode}, {replicas + 1} processes" if replicas else intake_mode
    if replicas == 0:
        return f"{intake_mode}, PostgreSQL, 1 process"
    return f"{intake_mode}, PostgreSQL, {replicas} dispatcher{'s' if replicas > 1 else ''}"


def drain_run(
    sinks: SinkProcess,
    size: int,
    settings: dict[str, Any],
    backend: str = "postgresql",
    replicas: int = 1,
    latency: float = 0.0,
    profile: str = "tuned",
) -> dict[str, Any]:
    """The dispatchers alone: ``size`` webhook deliveries wait, then ``replicas`` drain them.

    Phase 1 enqueues with webhook dispatch held (one process). Phase 2 starts
    one API process and ``replicas`` dispatcher processes on the same database.
    Delivered/s is ``size`` over the time from the sink's first receipt to its
    last, so intake speed plays no part: this is what the replicas can send.
    """
    _prepare_sinks(sinks, latency)
    with tempfile.TemporaryDirectory(prefix="fn-drain-") as tmp:
        workdir = Path(tmp)
        config = fn.config_toml(sinks.ports["smtp"], sinks.ports["http"], profile=profile)
        with fn.database(backend, workdir) as db:
            intake = _enqueue_held(sinks, workdir, size, settings, db)
            with fn.serve(workdir, config, db=db, replicas=replicas) as server:
                # From each process's readiness, not from now: the first replicas
                # up start draining while the others are still starting.
                cpu_before = server.ready_cpu
                busy_before, clock_before = machine_busy_seconds(), time.monotonic()
                wait_for(sinks, "http", size, limit=60 + size / 20)
                cpu = cpu_since(server, cpu_before)
                busy = machine_busy_seconds() - busy_before
                wall = time.monotonic() - clock_before
                memory = peak_rss(server)
        collected = sinks.collect()
    receipts = collected["receipts"]["http"]
    ids = [n for _, n in receipts]
    delivered = len(set(ids) & set(range(size)))
    times = [t for t, _ in receipts]
    took = max(times) - min(times) if times else 0.0
    return {
        "system": "flytenotify",
        "channel": "webhook",
        "intake": intake_label("drain", backend, replicas),
        "backend": backend,
        "dispatchers": replicas,
        "size": size,
        "profile": profile,
        **_latency_fields(latency, collected),
        "expected": size,
        "accepted": len(intake.accepted),
        "refused": intake.refused,
        "delivered": delivered,
        "duplicates": len(ids) - len(set(ids)),
        "ok": delivered == size and len(ids) == len(set(ids)) and intake.refused == 0,
        "accepted_per_s": intake.rate,
        "delivered_per_s": size / took if took > 0 else 0.0,
        "seconds": took,
        "cpu_s_per_1000": 1000 * cpu / max(1, delivered),
        "cpu_cores_busy": cpu / took if took > 0 else 0.0,
        # Every process on the machine (PostgreSQL, the sinks too) while draining.
        "machine_cores_busy": busy / wall if wall > 0 else 0.0,
        **memory,
    }


def _register(server: fn.Server, channel: str, size: int) -> list[str]:
    """Launch plans to cycle through: one, or for Slack one per channel (see below)."""
    if channel != "slack":
        server.register("bench", [fn.notification(channel)])
        return ["bench"]
    # Slack allows ~1 message/s per channel and flytenotify paces to that, so a
    # single channel would measure the pacing, not the service: spread the
    # messages over SLACK_CHANNELS channels (one launch plan each).
    plans = [f"bench-{i}" for i in range(min(size, SLACK_CHANNELS))]
    for i, plan in enumerate(plans):
        server.register(plan, [fn.notification("slack", f"#bench-{i}")])
    return plans


SLACK_CHANNELS = 500


async def _send(
    base_url: str, channel: str, mode: str, size: int, plans: list[str], settings: dict[str, Any]
) -> load.Intake:
    numbers = range(size)
    if len(plans) > 1:  # one launch plan per Slack channel: batch by plan, merge the intakes
        return await _send_many_plans(base_url, numbers, plans, settings)
    if mode == "single":
        return await load.send_single(base_url, numbers, plans[0], settings["concurrency"])
    return await load.send_batched(
        base_url, numbers, plans[0], settings["batch_size"], settings["batch_concurrency"]
    )


async def _send_many_plans(
    base_url: str, numbers: range, plans: list[str], settings: dict[str, Any]
) -> load.Intake:
    return await load.post_batches(
        f"{base_url}/api/v1/events:batch",
        numbers,
        lambda n: load.failed_event(n, plans[n % len(plans)]),
        load.flytenotify_accepts,
        settings["batch_size"],
        settings["batch_concurrency"],
    )


# --- Alertmanager ---------------------------------------------------------------------


def alertmanager_run(
    sinks: SinkProcess,
    binary: str,
    receiver: str,
    size: int,
    settings: dict[str, Any],
    latency: float = 0.0,
) -> dict[str, Any]:
    _prepare_sinks(sinks, latency)
    kind = SINK_KIND[receiver]
    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        config = am.config_yaml(receiver, sinks.ports["smtp"], sinks.ports["http"])
        with am.run(binary, Path(tmp), config) as manager:
            cpu_before = cpu_seconds(manager.pid)
            intake = asyncio.run(
                load.post_batches(
                    f"{manager.base_url}/api/v2/alerts",
                    range(size),
                    am.alert,
                    load.alertmanager_accepts,
                    settings["batch_size"],
                    settings["batch_concurrency"],
                )
            )
            wait_for(sinks, kind, size, limit=60 + size / 20)
            cpu = cpu_seconds(manager.pid) - cpu_before
            memory = memory_kib(manager.pid)
        collected = sinks.collect()
    stats = delivery_stats(intake, collected["receipts"][kind], size)
    return {
        "system": "alertmanager",
        "channel": receiver,
        "intake": "batch",
        "size": size,
        **_latency_fields(latency, collected),
        **stats,
        "cpu_s_per_1000": 1000 * cpu / max(1, stats["delivered"]),
        "cpu_cores_busy": cpu / stats["seconds"] if stats["seconds"] > 0 else 0.0,
        "peak_rss_mib": memory.get("VmHWM", 0) / 1024,
    }


# --- backlog ---------------------------------------------------------------------------


def _enqueue_held(
    sinks: SinkProcess,
    workdir: Path,
    size: int,
    settings: dict[str, Any],
    db: str | None = None,
) -> load.Intake:
    """``size`` webhook deliveries enqueued by a service with no webhook dispatch slots."""
    held = fn.config_toml(sinks.ports["smtp"], sinks.ports["http"], held=("webhook",))
    with fn.serve(workdir, held, db=db) as server:
        server.register("bench", [fn.notification("webhook")])
        return asyncio.run(
            load.send_batched(
                server.base_url,
                range(size),
                "bench",
                settings["batch_size"],
                settings["batch_concurrency"],
            )
        )


def backlog_run(sinks: SinkProcess, size: int, settings: dict[str, Any]) -> dict[str, Any]:
    """``size`` webhook deliveries pile up while dispatch is held, then drain.

    Phase 1 runs the service with no dispatch slots for webhooks (as if the
    receiver were down), so every delivery stays pending in SQLite. Phase 2
    restarts it on the same database with dispatch on and samples RSS and the
    sink's count every half second until the backlog is gone.
    """
    _prepare_sinks(sinks, 0.0)
    with tempfile.TemporaryDirectory(prefix="fn-backlog-") as tmp:
        workdir = Path(tmp)
        intake = _enqueue_held(sinks, workdir, size, settings)
        config = fn.config_toml(sinks.ports["smtp"], sinks.ports["http"])
        with fn.serve(workdir, config) as server:
            samples = _sample_drain(sinks, server, size, limit=120 + size / 20)
            memory = peak_rss(server)
    drained = samples[-1]["delivered"] if samples else 0
    took = samples[-1]["t"] if samples else 0.0
    return {
        "system": "flytenotify",
        "scenario": "backlog",
        "size": size,
        "enqueue_per_s": intake.rate,
        "delivered": drained,
        "ok": drained >= size,
        "drain_per_s": drained / took if took > 0 else 0.0,
        **memory,
        "samples": samples,
    }


def _sample_drain(
    sinks: SinkProcess, server: fn.Server, size: int, limit: float
) -> list[dict[str, Any]]:
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    while time.monotonic() - started < limit:
        delivered = sinks.counts()["http"]
        rss = sum(memory_kib(pid).get("VmRSS", 0) for pid in server.pids) / 1024
        samples.append({"t": time.monotonic() - started, "delivered": delivered, "rss_mib": rss})
        if delivered >= size:
            break
        time.sleep(0.5)
    return samples


# --- broker intake: FlyteAdmin's cloud events from NATS, Pub/Sub, SNS → SQS ----------------

BROKER_LAUNCH_PLAN = "bench"


def broker_config(http_port: int, lane: Lane | None, admin_endpoint: str) -> str:
    """The service's defaults plus a webhook to the sink, FlyteAdmin and the broker's section."""
    config = f"""
[webhooks.bench]
url = "http://127.0.0.1:{http_port}/hook"

[flyteadmin]
endpoint = "{admin_endpoint}"
insecure = true

# One message per execution: the run counts each execution's delivery.
[grouping]
by = []
"""
    return config + ("\n" + lane.toml if lane is not None else "")


def flyteadmin_events(size: int, cached: bool) -> list[FlyteCloudEvent]:
    """``size`` terminal (FAILED) workflow events, v2, as FlyteAdmin publishes them.

    ``cached``: each names the registered launch plan (FlyteAdmin's
    ``enrichAllWorkflowEventTypes``), so no execution is looked up. Otherwise each
    is an execution flytenotify has never seen, with no launch plan: one
    GetExecution each.
    """
    launch_plan = (PROJECT, DOMAIN, BROKER_LAUNCH_PLAN, "v1") if cached else None
    return [
        egress.v2_workflow(
            egress.workflow_event(
                f"run-{n}", "FAILED", project=PROJECT, domain=DOMAIN, error=f"run-{n} failed"
            ),
            launch_plan=launch_plan,
        )
        for n in range(size)
    ]


def broker_intake_run(
    sinks: SinkProcess,
    admin: FlyteAdminProcess,
    make_lane: LaneMaker,
    size: int,
    cached: bool,
) -> dict[str, Any]:
    """N FlyteAdmin events waiting in a broker, then ``flytenotify serve`` consumes them.

    Phase 1 runs the service without intake on the run's SQLite file, to create
    the schema and (cached) register the launch plan the events name: nothing is
    consumed before that is done. The events are then published and acknowledged
    by the broker; phase 2 starts the service with the broker's intake section.
    Events/s is N over the time from phase 2's start (the process launch) to
    the sink's last receipt; the start-up (until /healthz answers) is part of it
    and reported on its own.
    """
    _prepare_sinks(sinks, 0.0)
    lane = asyncio.run(make_lane())
    events = flyteadmin_events(size, cached)
    if not cached:
        admin.add_executions([f"run-{n}" for n in range(size)])
    try:
        with tempfile.TemporaryDirectory(prefix="fn-broker-") as tmp:
            workdir = Path(tmp)
            with fn.serve(workdir, broker_config(sinks.ports["http"], None, admin.endpoint)) as s:
                if cached:
                    s.register(BROKER_LAUNCH_PLAN, [fn.notification("webhook")])
            asyncio.run(lane.publish(events))
            config = broker_config(sinks.ports["http"], lane, admin.endpoint)
            calls_before = admin.calls()
            started = time.time()
            serving = fn.serve(
                workdir, config, log_name="intake.log", env=lane.env, until="/healthz"
            )
            with serving as server:
                ready = time.time()
                cpu_before = cpu_now(server)
                wait_for(sinks, "http", size, limit=60 + size / 10)
                cpu = cpu_since(server, cpu_before)
                memory = peak_rss(server)
            calls = admin.calls() - calls_before
    finally:
        asyncio.run(lane.cleanup())
    receipts = sinks.collect()["receipts"]["http"]
    stats = backlog_stats(receipts, size, started)
    # The same backlog counted from /healthz answering: start-up (a Python
    # process importing its libraries, on a loaded machine) left out.
    after_startup = stats["seconds"] - (ready - started)
    # A backlog gone before /healthz answered has no after-start-up figures (None: "-").
    measured_after = stats["ok"] and after_startup > 0
    return {
        "system": "flytenotify",
        "scenario": "broker intake",
        "broker": lane.broker,
        "lookup": "cached" if cached else "uncached",
        "size": size,
        **stats,
        "startup_s": ready - started,
        "after_startup_per_s": size / after_startup if measured_after else None,
        "flyteadmin_calls": calls,
        "cpu_s_per_1000": 1000 * cpu / size if measured_after else None,
        **memory,
    }


def backlog_stats(receipts: list[Receipt], size: int, started: float) -> dict[str, Any]:
    """Counts and rate of a backlog consumed from ``started``; when events arrived after it.

    Publish-to-delivery is not measured: every event waits in the broker until
    the service starts, so it would be the wait, not the service. What says how
    the service works through the backlog is when each event reached the sink,
    counted from the start (p50: half of them had arrived).
    """
    ids = [n for _, n in receipts]
    unique = set(ids) & set(range(size))
    first_receipt: dict[int, float] = {}
    for at, n in receipts:
        first_receipt.setdefault(n, at)
    last = max(first_receipt.values(), default=started)
    took = last - started
    return {
        "expected": size,
        "delivered": len(unique),
        "duplicates": len(ids) - len(set(ids)),
        "ok": len(unique) == size,
        "delivered_per_s": size / took if took > 0 and unique else 0.0,
        "seconds": took,
        "arrival_after_start": percentiles([t - started for t in first_receipt.values()]),
    }
