"""The console's delivery pages stay fast on a large ledger: keyset paging on indexes.

200,000 deliveries are written straight into a real ledger (SQLite file and
PostgreSQL) in one transaction, then the exact query each console page runs
is explained: every filtered or cursor page must be read through an index in
id order (no table scan, no sort of the matching rows). The store then reads
the same pages, to show the queries also return the right rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from flytenotify.domain import DeliveryStatus, ExecutionId
from flytenotify.store import store_for_url
from flytenotify.store.base import DeliveryFilter
from flytenotify.store.queries import queries_for
from flytenotify.store.sql import deliveries_query
from tests.conftest import fresh_postgres_database, run_async

ROWS = 200_000
PAGE = 50
MESSAGE = '{"subject": "s", "text": "t", "html": "h", "slack_text": "t", "variables": {}}'
PLAN = '{"project": "proj", "domain": "prod", "name": "nightly", "version": "v1"}'

# Execution 7 has ten deliveries; every 100th delivery is dead; 1,000 recipients.
RARE = "user-7@example.com"
QUERIES: dict[str, DeliveryFilter] = {
    "older page": DeliveryFilter(newest_first=True, before_id=ROWS // 2, limit=PAGE),
    "dead letters": DeliveryFilter(status=DeliveryStatus.DEAD, newest_first=True, limit=PAGE),
    "dead letters, older page": DeliveryFilter(
        status=DeliveryStatus.DEAD, newest_first=True, before_id=ROWS // 2, limit=PAGE
    ),
    "recipient": DeliveryFilter(recipient=RARE, newest_first=True, limit=PAGE),
    "recipient, older page": DeliveryFilter(
        recipient=RARE, newest_first=True, before_id=ROWS // 2, limit=PAGE
    ),
    "execution": DeliveryFilter(
        execution=ExecutionId("proj", "prod", "run-7"), newest_first=True, limit=PAGE
    ),
}


INSERT = (
    "INSERT INTO deliveries (id, idempotency_key, project, domain, name, phase,"
    " notification_index, kind, channel, recipient, message, launch_plan, status, attempts,"
    " created_at, updated_at, last_reply)"
)
# The rows, made by the database itself from a series of ids (SQLite and PostgreSQL alike).
ROWS_SELECT = """SELECT i, 'key-' || i, 'proj', 'prod', 'run-' || (i / 10), 4, 0, 'email', 'email',
       'user-' || (i % 1000) || '@example.com', {message}, {plan},
       CASE WHEN i % 100 = 0 THEN 'dead' ELSE 'delivered' END, 1, i, i, '250 ok'
FROM {series}"""


async def _read_page(url: str, query: DeliveryFilter) -> list[Any]:
    """The page as the store reads it (opening a ledger also applies every migration)."""
    store = store_for_url(url)
    await store.open()
    try:
        return await store.list_deliveries(query)
    finally:
        await store.close()


def _check_page(found: list[Any], query: DeliveryFilter) -> None:
    ids = [d.id for d in found]
    assert ids == sorted(ids, reverse=True)
    assert found, "every query above matches rows"
    if query.before_id is not None:
        assert max(ids) < query.before_id
    if query.status is not None:
        assert {d.status for d in found} == {query.status}
    if query.recipient is not None:
        assert {d.recipient for d in found} == {query.recipient}
    if query.execution is not None:
        assert {d.execution_id for d in found} == {query.execution}
        assert len(found) == 10


# -- SQLite --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "large.db"
    run_async(lambda: _read_page(f"sqlite:///{path}", DeliveryFilter()))  # the real schema
    with sqlite3.connect(path) as conn:  # one statement, one transaction, rows made in SQL
        series = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})"
        rows = ROWS_SELECT.format(message="?", plan="?", series="n")
        conn.execute(f"{series} {INSERT} {rows}", (MESSAGE, PLAN))
    return path


def _sqlite_plan(path: Path, query: DeliveryFilter) -> str:
    sql, args = deliveries_query(queries_for("sqlite"), query)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
    return "\n".join(row[-1] for row in rows)


@pytest.mark.parametrize("name", list(QUERIES))
def test_sqlite_pages_read_an_index_in_id_order(large_sqlite: Path, name: str) -> None:
    query = QUERIES[name]
    plan = _sqlite_plan(large_sqlite, query)
    assert "SEARCH deliveries USING" in plan, plan
    assert "SCAN deliveries" not in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort of the matches: the index gives the order

    _check_page(run_async(lambda: _read_page(f"sqlite:///{large_sqlite}", query)), query)


def test_sqlite_newest_page_walks_the_primary_key_backwards(large_sqlite: Path) -> None:
    # The first page has no bound: SQLite reads the rowid b-tree from its end and
    # stops after the page, which EXPLAIN shows as a scan without a sort.
    plan = _sqlite_plan(large_sqlite, DeliveryFilter(newest_first=True, limit=PAGE))
    assert plan.strip() == "SCAN deliveries", plan
    with sqlite3.connect(large_sqlite) as conn:
        steps = _vm_steps(conn, DeliveryFilter(newest_first=True, limit=PAGE))
        all_rows = _vm_steps(conn, DeliveryFilter(newest_first=True, limit=ROWS))
    assert steps >= 1
    assert steps * 100 < all_rows  # reads a page's worth, not the table


def _vm_steps(conn: sqlite3.Connection, query: DeliveryFilter) -> int:
    """Virtual-machine instructions SQLite runs for the query, in hundreds (counted, not timed)."""
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0

    conn.set_progress_handler(tick, 100)  # one tick per 100 instructions
    try:
        conn.execute(*deliveries_query(queries_for("sqlite"), query)).fetchall()
    finally:
        conn.set_progress_handler(None, 100)
    return counted[0]


# -- PostgreSQL ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_postgres() -> Iterator[str]:
    with fresh_postgres_database() as url:
        run_async(lambda: _read_page(url, DeliveryFilter()))  # the real schema
        run_async(lambda: _fill_postgres(url), timeout=120)
        yield url


async def _fill_postgres(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # One statement, one transaction: generate_series makes the rows server-side.
        series = f"generate_series(1, {ROWS}) AS i"
        rows = ROWS_SELECT.format(message="$1", plan="$2", series=series)
        await conn.execute(f"{INSERT} {rows}", MESSAGE, PLAN)
        await conn.execute("ANALYZE deliveries")
    finally:
        await conn.close()


async def _postgres_plan(url: str, query: DeliveryFilter) -> str:
    sql, args = deliveries_query(queries_for("postgresql"), query)
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f"EXPLAIN {sql}", *args)
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("name", [*QUERIES, "newest page"])
def test_postgres_pages_read_an_index_in_id_order(large_postgres: str, name: str) -> None:
    query = QUERIES.get(name, DeliveryFilter(newest_first=True, limit=PAGE))
    plan = run_async(lambda: _postgres_plan(large_postgres, query))
    assert "Index Scan" in plan or "Index Only Scan" in plan, plan
    assert "Seq Scan" not in plan, plan
    if query.execution is None:  # ten rows of one execution may be sorted; a page never
        assert "Sort" not in plan, plan

    _check_page(run_async(lambda: _read_page(large_postgres, query)), query)
