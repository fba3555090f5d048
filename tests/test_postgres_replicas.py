"""Several dispatcher replicas sharing one PostgreSQL ledger.

Three replica processes (``tests/replica_child.py``) deliver 10,000 emails to a
lean SMTP sink on 127.0.0.1 (``tests/servers/fast_smtp.py``). What the sink
received is the truth: every delivery exactly once when nothing goes wrong; at
least once, with duplicates only from rows in flight, when a replica is
SIGKILLed; and nothing lost when every database connection is cut under them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from flytenotify import Email
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings
from flytenotify.domain import EntityId
from flytenotify.store.base import OTHER_CHANNELS
from flytenotify.store.postgres import PostgresStore
from tests.conftest import POSTGRES_ADMIN_URL
from tests.helpers import event_json
from tests.servers.fast_smtp import FastSmtpSink

ROOT = Path(__file__).parent.parent
RECIPIENTS = 100  # per execution
TOTAL = 10_000  # the volume run
# The fault runs are smaller: building MIME messages (stdlib ``email``) costs
# the replicas ~3 ms of CPU each, so 10,000 take most of a minute on two cores,
# and a kill or a cut tests the same thing at 3,000.
FAULT_TOTAL = 3_000
REPLICAS = 3
CONCURRENCY = 16  # per replica: at most this many rows in flight in each
RUN_TIMEOUT = 90.0  # seconds for the replicas to deliver everything
PLAN = EntityId("proj", "prod", "fanout", "v1")


# -- helpers ------------------------------------------------------------------------------------


async def _enqueue(url: str, total: int, recipients: int = RECIPIENTS) -> None:
    executions = total // recipients
    # Grouping off: every delivery its own email, which is what is counted.
    settings = Settings(database=DatabaseConfig(url=url), grouping=GroupingConfig(by=[]))
    async with Notifier(settings) as notifier:
        to = [f"r{i:03d}@x.io" for i in range(recipients)]
        await notifier.register_launch_plan(PLAN, [Email([P.FAILED], to)])
        events = [event_json(f"run-{i:04d}", "FAILED", launch_plan=PLAN) for i in range(executions)]
        for start in range(0, len(events), 10):  # 1,000 deliveries per transaction
            await notifier.report_events(events[start : start + 10])


def enqueue(url: str, total: int) -> None:
    asyncio.run(_enqueue(url, total))


@pytest.fixture
def sink() -> Iterator[FastSmtpSink]:
    with FastSmtpSink() as server:
        yield server


@pytest.fixture
def replicas() -> Iterator[Callable[[str, int], list[subprocess.Popen[bytes]]]]:
    """Starts replica processes; whatever is still running at the end is killed by PID."""
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str, port: int) -> list[subprocess.Popen[bytes]]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "tests.replica_child", url, str(port), str(CONCURRENCY)]
        procs = [subprocess.Popen(command, env=env, cwd=ROOT) for _ in range(REPLICAS)]
        started.extend(procs)
        return procs

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until(
    condition: Callable[[], bool], timeout: float, procs: list[subprocess.Popen[bytes]], what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert any(p.poll() is None for p in procs), f"every replica exited before {what}"
        time.sleep(0.01)


def wait_for_exit(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
    return codes


def database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


async def _terminate_sessions(url: str) -> list[int]:
    """pg_terminate_backend on every session of the replicas' database; their PIDs."""
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database_name(url),
        )
        return [int(r["pid"]) for r in rows if r[1]]
    finally:
        await conn.close()


async def _listening_sessions(url: str) -> set[int]:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            database_name(url),
            "flytenotify-listen",
        )
        return {int(r["pid"]) for r in rows}
    finally:
        await conn.close()


def arrival_counts(sink: FastSmtpSink) -> Counter[str]:
    return Counter(a.message_id for a in sink.arrivals())


# -- the tests ----------------------------------------------------------------------------------


def test_three_replicas_deliver_ten_thousand_exactly_once(
    postgres_url: str,
    sink: FastSmtpSink,
    replicas: Callable[[str, int], list[subprocess.Popen[bytes]]],
) -> None:
    enqueue(postgres_url, TOTAL)
    started = time.monotonic()
    procs = replicas(postgres_url, sink.port)
    assert wait_for_exit(procs, RUN_TIMEOUT) == [0] * REPLICAS
    elapsed = time.monotonic() - started
    arrivals = arrival_counts(sink)
    print(f"\n{REPLICAS} replicas delivered {sink.count()} messages in {elapsed:.1f} s")
    assert len(arrivals) == TOTAL, f"lost {TOTAL - len(arrivals)} deliveries"
    assert max(arrivals.values()) == 1, f"{sink.count() - TOTAL} duplicates"
    assert "" not in arrivals  # every message carried a Message-ID


def test_a_replica_killed_mid_run_loses_nothing(
    postgres_url: str,
    sink: FastSmtpSink,
    replicas: Callable[[str, int], list[subprocess.Popen[bytes]]],
) -> None:
    enqueue(postgres_url, FAULT_TOTAL)
    procs = replicas(postgres_url, sink.port)
    victim, survivors = procs[0], procs[1:]
    wait_until(lambda: sink.count() >= FAULT_TOTAL // 3, 60, procs, "a third of the deliveries")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    at_kill = sink.count()
    assert at_kill < FAULT_TOTAL, "the kill came too late to test anything"
    assert wait_for_exit(survivors, RUN_TIMEOUT) == [0] * len(survivors)

    arrivals = arrival_counts(sink)
    assert len(arrivals) == FAULT_TOTAL, f"lost {FAULT_TOTAL - len(arrivals)} deliveries"
    duplicates = sum(count - 1 for count in arrivals.values())
    print(
        f"\nSIGKILL of one replica after {at_kill}/{FAULT_TOTAL} messages: {duplicates} duplicates"
    )
    # Only rows the victim had sent but not yet recorded can repeat: at most
    # its concurrency. Each repeat carries the same Message-ID (droppable).
    assert duplicates <= CONCURRENCY
    assert max(arrivals.values()) <= 2


def test_cut_database_connections_are_survived(
    postgres_url: str,
    sink: FastSmtpSink,
    replicas: Callable[[str, int], list[subprocess.Popen[bytes]]],
) -> None:
    enqueue(postgres_url, FAULT_TOTAL)
    procs = replicas(postgres_url, sink.port)
    wait_until(
        lambda: len(asyncio.run(_listening_sessions(postgres_url))) == REPLICAS,
        30,
        procs,
        "every replica to LISTEN",
    )
    cuts = []
    for fraction in (0.25, 0.5):
        wait_until(lambda f=fraction: sink.count() >= FAULT_TOTAL * f, 60, procs, f"{fraction:.0%}")
        terminated = set(asyncio.run(_terminate_sessions(postgres_url)))
        cuts.append(len(terminated))
        # Each replica re-establishes its LISTEN connection by itself.
        wait_until(
            lambda t=terminated: (
                len(asyncio.run(_listening_sessions(postgres_url)) - t) == REPLICAS
            ),
            30,
            procs,
            "the replicas to LISTEN again",
        )
    at_last_cut = sink.count()
    assert at_last_cut < FAULT_TOTAL, "the cuts came too late to test anything"
    assert wait_for_exit(procs, RUN_TIMEOUT) == [0] * REPLICAS

    arrivals = arrival_counts(sink)
    duplicates = sum(count - 1 for count in arrivals.values())
    print(f"\nterminated {cuts} PostgreSQL sessions; {duplicates} duplicates")
    assert all(cut >= REPLICAS for cut in cuts)  # at least every LISTEN connection
    assert len(arrivals) == FAULT_TOTAL, f"lost {FAULT_TOTAL - len(arrivals)} deliveries"
    # A cut connection is retried, not abandoned: a completion is written
    # again rather than its row re-sent after the lease.
    assert duplicates == 0


async def test_concurrent_claimers_never_share_a_row(postgres_url: str) -> None:
    await _enqueue(postgres_url, 2000)
    stores = [PostgresStore(postgres_url, max_size=4) for _ in range(2)]
    for store in stores:
        await store.open()
    try:

        async def claimer(store: PostgresStore, owner: str) -> list[int]:
            got: list[int] = []
            while batch := await store.claim(
                owner, time.time(), 60.0, {"email": 7, OTHER_CHANNELS: 3}
            ):
                got.extend(d.id for d in batch)
            return got

        claims = await asyncio.wait_for(
            asyncio.gather(
                *(claimer(stores[i % 2], f"owner-{i}") for i in range(8)),
            ),
            timeout=30,
        )
        every = [delivery_id for ids in claims for delivery_id in ids]
        assert len(every) == 2000
        assert len(set(every)) == len(every), "a row was claimed twice"
        assert sum(1 for ids in claims if ids) > 1  # the claimers really did compete
    finally:
        for store in stores:
            await store.close()
