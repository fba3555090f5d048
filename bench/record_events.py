"""Time one ``record_events`` call for a batch of terminal events on PostgreSQL.

    .venv/bin/python bench/record_events.py            # 500 events, 3 deliveries each
    .venv/bin/python bench/record_events.py --events 2000 --runs 5

Each run records a fresh batch (new executions) into a throwaway database
``flytenotify_bench_<random>`` on 127.0.0.1:5432 (user postgres, no password),
dropped afterwards; prints the median and each run's seconds. A quick look at
the ledger's intake alone: no HTTP, no rendering.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from flytenotify import WorkflowExecutionPhase
from flytenotify.domain import Execution, ExecutionEvent, ExecutionId, RenderedMessage
from flytenotify.store.base import EventWrite, NewDelivery
from flytenotify.store.postgres import PostgresStore

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FAILED = int(WorkflowExecutionPhase.FAILED)


def batch(run: int, events: int, per_event: int) -> list[EventWrite]:
    now = datetime.now(UTC)
    message = RenderedMessage("subject", "text", "<p>text</p>", "text")
    writes = []
    for i in range(events):
        execution_id = ExecutionId("bench", "development", f"run-{run}-{i}")
        deliveries = [
            NewDelivery(f"{run}/{i}/{n}", n, "email", "email", f"r{n}@x.io", message)
            for n in range(per_event)
        ]
        execution = Execution(execution_id, None, (), now)
        writes.append(EventWrite(ExecutionEvent(execution_id, FAILED, now), execution, deliveries))
    return writes


async def main(events: int, per_event: int, runs: int) -> None:
    name = f"flytenotify_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    store = PostgresStore(ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        await store.open()
        seconds = []
        for run in range(runs):
            writes = batch(run, events, per_event)
            started = time.perf_counter()
            results = await store.record_events(writes)
            seconds.append(time.perf_counter() - started)
            assert sum(len(r.delivery_ids) for r in results) == events * per_event
        print(
            f"record_events, {events} events x {per_event} deliveries:"
            f" median {statistics.median(seconds):.3f} s over {runs} runs"
            f" ({', '.join(f'{s:.3f}' for s in seconds)})"
        )
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--deliveries", type=int, default=3, help="per event")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.deliveries, args.runs))
