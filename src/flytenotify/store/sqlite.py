"""The embedded ledger: one SQLite file in WAL mode.

Every store method is one synchronous function run on a dedicated thread, so a
whole transaction costs one hop off the event loop and database work never
blocks it. Writes go through one connection (SQLite has one writer anyway);
queries use a second connection, which WAL lets read while a write is under
way. Callers batch (``record_events``, ``complete``) so that many rows share
one commit.

Other processes may share the file (``serve --role api`` beside ``--role
dispatcher``, or the CLI): :meth:`listen` notices their commits through
``PRAGMA data_version``, so a dispatcher starts on their work at once instead
of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from flytenotify.domain import (
    Attempt,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionId,
    LaunchPlan,
)
from flytenotify.store import codec
from flytenotify.store.base import (
    Completion,
    DeliveryFilter,
    EventOutcome,
    EventResult,
    EventWrite,
    InboxMessage,
    channel_key,
)
from flytenotify.store.migrations import migrations_for, refuse_newer

_T = TypeVar("_T")

_LATEST_LAUNCH_PLANS = (
    "SELECT * FROM launch_plans AS lp WHERE seq = (SELECT MAX(seq) FROM launch_plans AS other"
    " WHERE other.project = lp.project AND other.domain = lp.domain AND other.name = lp.name)"
    " ORDER BY project, domain, name"
)

# How often listen() asks whether another connection committed: a cheap read of
# the WAL index, and the most a dispatcher waits for another process's work.
_WATCH_INTERVAL = 0.05

# How long a write waits for another process to release the file's write lock.
_LOCK_WAIT = 30.0

_DELIVERY_COLUMNS = (
    "id, idempotency_key, project, domain, name, phase, notification_index, kind, channel,"
    " recipient, message, launch_plan, status, attempts, created_at, next_attempt_at, last_reply"
)


# Lease up to N due rows of one channel, by the index led by channel.
_CLAIM = (
    "UPDATE deliveries SET lease_owner = ?, lease_until = ?, updated_at = ?"
    " WHERE id IN (SELECT id FROM deliveries"
    "   WHERE status IN ('pending', 'retrying') AND channel = ?"
    "   AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
    "   ORDER BY next_attempt_at LIMIT ?)"
    f" RETURNING {_DELIVERY_COLUMNS}"
)


class SQLiteStore:
    """The :class:`~flytenotify.store.base.Store` protocol on a SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-write")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._watcher: asyncio.Task[None] | None = None

    # -- plumbing -----------------------------------------------------------

    def _connection(self, busy_timeout_ms: int = 30_000) -> sqlite3.Connection:
        # One connection per executor thread: sqlite3 objects stay on the
        # thread that made them.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe in WAL
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
            self._local.conn = conn
        return conn

    def _writer_connection(self) -> sqlite3.Connection:
        # No busy handler: _begin_immediate waits for the write lock itself.
        return self._connection(busy_timeout_ms=0)

    async def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def run() -> _T:
            conn = self._writer_connection()
            _begin_immediate(conn)
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: fn(self._connection())
        )

    async def open(self, *, retry: bool = True) -> None:
        del retry  # a file: nothing to wait for (the write lock has its own timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._write(_migrate)

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon after another connection commits to the file.

        ``data_version`` changes only for other connections' commits, so asking
        on the writer's connection ignores this process's own writes.
        """
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(callback))

    async def _watch(self, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()

        def version() -> int:
            return int(self._writer_connection().execute("PRAGMA data_version").fetchone()[0])

        seen = await loop.run_in_executor(self._writer, version)
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            try:
                now = await loop.run_in_executor(self._writer, version)
            except sqlite3.Error:
                continue  # a moment's trouble; the dispatcher's own poll covers it
            if now != seen:
                seen = now
                callback()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

        def close_here() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, close_here)
        await loop.run_in_executor(self._reader, close_here)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def schema_version(self) -> int:
        return await self._read(_current_version)

    # -- launch plans and executions -------------------------------------------

    async def register_launch_plan(self, plan: LaunchPlan) -> None:
        def write(conn: sqlite3.Connection) -> None:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM launch_plans").fetchone()[0]
            conn.execute(
                "INSERT INTO launch_plans (project, domain, name, version, notifications,"
                " registered_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (project, domain, name, version) DO UPDATE SET"
                " notifications = excluded.notifications, registered_at = excluded.registered_at,"
                " seq = excluded.seq",
                (
                    plan.id.project,
                    plan.id.domain,
                    plan.id.name,
                    plan.id.version,
                    codec.dump_notifications(plan.notifications),
                    codec.timestamp(plan.registered_at),
                    seq,
                ),
            )

        await self._write(write)

    async def get_launch_plan(self, plan_id: EntityId) -> LaunchPlan | None:
        def read(conn: sqlite3.Connection) -> LaunchPlan | None:
            sql = "SELECT * FROM launch_plans WHERE project = ? AND domain = ? AND name = ?"
            args: list[Any] = [plan_id.project, plan_id.domain, plan_id.name]
            if plan_id.version:
                sql += " AND version = ?"
                args.append(plan_id.version)
            row = conn.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
            return codec.launch_plan_from_row(row) if row else None

        return await self._read(read)

    async def latest_launch_plans(self) -> list[LaunchPlan]:
        def read(conn: sqlite3.Connection) -> list[LaunchPlan]:
            rows = conn.execute(_LATEST_LAUNCH_PLANS).fetchall()
            return [codec.launch_plan_from_row(r) for r in rows]

        return await self._read(read)

    async def create_execution(self, execution: Execution) -> tuple[Execution, bool]:
        def write(conn: sqlite3.Connection) -> tuple[Execution, bool]:
            created = _insert_execution(conn, execution)
            stored = _select_execution(conn, execution.id)
            assert stored is not None
            return stored, created

        return await self._write(write)

    async def get_execution(self, execution_id: ExecutionId) -> Execution | None:
        return await self._read(lambda conn: _select_execution(conn, execution_id))

    async def get_executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        def read(conn: sqlite3.Connection) -> dict[ExecutionId, Execution]:
            # Indexed point lookups are microseconds in SQLite; what costs is
            # the hop to this thread, and there is one for the whole batch.
            found = (_select_execution(conn, execution_id) for execution_id in set(ids))
            return {execution.id: execution for execution in found if execution is not None}

        return await self._read(read)

    # -- events -------------------------------------------------------------------

    async def record_events(self, writes: Sequence[EventWrite]) -> list[EventResult]:
        def write(conn: sqlite3.Connection) -> list[EventResult]:
            # One transaction for the batch, as on PostgreSQL: if one event
            # fails, none is recorded and the caller hears why.
            now = codec.now()
            results = [_record_event(conn, item, now) for item in writes]
            conn.executemany(
                "INSERT INTO events (project, domain, name, phase, occurred_at, producer_id,"
                " error, received_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    codec.event_columns(item.event, now, result.outcome.value)
                    for item, result in zip(writes, results, strict=True)
                ],
            )
            return results

        return await self._write(write)

    # -- dispatch -------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limits: dict[str, int],
        completions: Sequence[Completion] = (),
    ) -> list[Delivery]:
        def write(conn: sqlite3.Connection) -> list[Delivery]:
            _complete(conn, completions)
            room = dict(limits)
            claimed: list[Delivery] = []
            for channel in _pending_channels(conn) if any(room.values()) else ():
                key = channel_key(channel, room)
                limit = room.get(key, 0)
                if limit > 0:
                    rows = conn.execute(
                        _CLAIM, (owner, now + lease, now, channel, now, now, limit)
                    ).fetchall()
                    room[key] = limit - len(rows)
                    claimed.extend(codec.delivery_from_row(r) for r in rows)
            return claimed

        return await self._write(write)

    async def complete(self, completions: Sequence[Completion]) -> None:
        await self._write(lambda conn: _complete(conn, completions))

    async def renew_leases(
        self, owner: str, delivery_ids: Sequence[int], now: float, lease: float
    ) -> int:
        ids = list(delivery_ids)
        if not ids:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            marks = ", ".join("?" * len(ids))
            return conn.execute(
                f"UPDATE deliveries SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks})"
                " AND status IN ('pending', 'retrying')",
                (now + lease, owner, *ids),
            ).rowcount

        return await self._write(write)

    async def release(self, owner: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = ? AND status IN ('pending', 'retrying')",
                (owner,),
            ).rowcount

        return await self._write(write)

    async def next_due_at(self) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            now = codec.now()
            times = [_next_due(conn, channel, now) for channel in _pending_channels(conn)]
            return min((t for t in times if t is not None), default=None)

        return await self._read(read)

    async def redrive(self, delivery_id: int, now: float) -> Delivery | None:
        def write(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(
                f"UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?,"
                f" lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'dead'"
                f" RETURNING {_DELIVERY_COLUMNS}",
                (now, now, delivery_id),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome,"
                " reply) VALUES (?, ?, ?, ?, 'redrive', 're-driven by an operator')",
                (delivery_id, row["attempts"], now, now),
            )
            return codec.delivery_from_row(row)

        return await self._write(write)

    async def add_to_inbox(self, delivery: Delivery, body: str, now: float) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO inbox (delivery_id, kind, recipient, subject, body, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery.id,
                    delivery.kind,
                    delivery.recipient,
                    delivery.message.subject,
                    body,
                    now,
                ),
            )

        await self._write(write)

    # -- pacing ---------------------------------------------------------------------

    async def reserve_slot(self, key: str, interval: float) -> float:
        def write(conn: sqlite3.Connection) -> float:
            now = codec.now()
            start = conn.execute(
                "INSERT INTO pacing (key, next_at) VALUES (?, ? + ?)"
                " ON CONFLICT (key) DO UPDATE SET next_at = MAX(next_at, ?) + ?"
                " RETURNING next_at - ?",
                (key, now, interval, now, interval, interval),
            ).fetchone()[0]
            return max(0.0, float(start) - now)

        return await self._write(write)

    async def block_slots(self, key: str, seconds: float) -> None:
        def write(conn: sqlite3.Connection) -> None:
            until = codec.now() + seconds
            conn.execute(
                "INSERT INTO pacing (key, next_at) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET next_at = MAX(next_at, excluded.next_at)",
                (key, until),
            )

        await self._write(write)

    # -- queries --------------------------------------------------------------------

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        def read(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            return codec.delivery_from_row(row) if row else None

        return await self._read(read)

    async def list_deliveries(self, query: DeliveryFilter) -> list[Delivery]:
        def read(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(*list_deliveries_sql(query)).fetchall()
            return [codec.delivery_from_row(r) for r in rows]

        return await self._read(read)

    async def list_attempts(self, delivery_id: int) -> list[Attempt]:
        def read(conn: sqlite3.Connection) -> list[Attempt]:
            rows = conn.execute(
                "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,)
            ).fetchall()
            return [codec.attempt_from_row(r) for r in rows]

        return await self._read(read)

    async def count_by_status(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {status.value: 0 for status in DeliveryStatus}
            for status, count in conn.execute(
                "SELECT status, COUNT(*) FROM deliveries GROUP BY status"
            ):
                counts[status] = count
            return counts

        return await self._read(read)

    async def list_inbox(self, after_id: int | None = None, limit: int = 100) -> list[InboxMessage]:
        def read(conn: sqlite3.Connection) -> list[InboxMessage]:
            rows = conn.execute(
                "SELECT * FROM inbox WHERE id > ? ORDER BY id LIMIT ?", (after_id or 0, limit)
            ).fetchall()
            return [InboxMessage(**dict(r)) for r in rows]

        return await self._read(read)

    async def list_events(self, execution_id: ExecutionId) -> list[tuple[Any, str]]:
        def read(conn: sqlite3.Connection) -> list[tuple[Any, str]]:
            rows = conn.execute(
                "SELECT * FROM events WHERE project = ? AND domain = ? AND name = ? ORDER BY id",
                (execution_id.project, execution_id.domain, execution_id.name),
            ).fetchall()
            return [(codec.event_from_row(r), r["outcome"]) for r in rows]

        return await self._read(read)


# -- transaction bodies (run on the writer thread) ------------------------------------


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, retrying every millisecond or two while another process holds it.

    SQLite's own busy handler backs off to 25-100 ms sleeps; a process writing
    in quick succession (the API during a burst) then keeps the lock through
    every short gap, and a dispatcher in another process starved for a second
    at a time. Short, bounded retries catch those gaps.
    """
    deadline = time.monotonic() + _LOCK_WAIT
    pause = 0.0002
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            busy = error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # extended codes too
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 1.5, 0.002)


def _current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    return int(
        conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    )


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " applied_at REAL NOT NULL)"
    )
    current = _current_version(conn)
    refuse_newer(current)
    migrations = migrations_for("sqlite")
    for version in sorted(v for v in migrations if v > current):
        for statement in _statements(migrations[version]):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (version, codec.now()),
        )


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    return statements


def _complete(conn: sqlite3.Connection, completions: Sequence[Completion]) -> None:
    """Write attempt outcomes, skipping rows whose lease passed to another owner.

    Three statements for the whole batch: the writer lock is held, so what the
    first reads cannot change before the other two write.
    """
    if not completions:
        return
    ids = json.dumps([c.delivery_id for c in completions])
    held = {
        (row[0], row[1]): row[2]
        for row in conn.execute(
            "SELECT id, lease_owner, attempts FROM deliveries WHERE id IN"
            " (SELECT value FROM json_each(?)) AND status IN ('pending', 'retrying')",
            (ids,),
        )
    }
    mine = [c for c in completions if (c.delivery_id, c.lease_owner) in held]
    conn.executemany(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_reply = ?,"
        " next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?"
        " WHERE id = ?",
        [(c.status.value, c.reply, c.next_attempt_at, c.finished_at, c.delivery_id) for c in mine],
    )
    conn.executemany(
        "INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                c.delivery_id,
                held[c.delivery_id, c.lease_owner] + 1,
                c.started_at,
                c.finished_at,
                c.outcome,
                c.reply,
            )
            for c in mine
        ],
    )


def _pending_channels(conn: sqlite3.Connection) -> list[str]:
    """The channels of pending rows, one index seek per channel.

    "Any channel but these" (or a MIN over every row) as one query would read
    every pending row, a million during an outage; the pending channels are
    few, so step from one to the next along the claim index instead.
    """
    found: list[str] = []
    after = ""
    while True:
        row = conn.execute(
            "SELECT MIN(channel) FROM deliveries INDEXED BY deliveries_due"
            " WHERE status IN ('pending', 'retrying') AND channel > ?",
            (after,),
        ).fetchone()
        if row[0] is None:
            return found
        after = row[0]
        found.append(after)


def _next_due(conn: sqlite3.Connection, channel: str, now: float) -> float | None:
    """When a row of ``channel`` can next be claimed: its first row not leased,
    or, if that is not due yet, the earliest lease to pass. Due rows are then
    all leased (claims only take due rows), so that look reads few."""
    row = conn.execute(
        "SELECT next_attempt_at FROM deliveries INDEXED BY deliveries_due"
        " WHERE status IN ('pending', 'retrying') AND channel = ?"
        " AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT 1",
        (channel, now),
    ).fetchone()
    free_at = None if row is None else float(row[0])
    if free_at is not None and free_at <= now:
        return free_at
    lease = conn.execute(
        "SELECT MIN(lease_until) FROM deliveries INDEXED BY deliveries_due"
        " WHERE status IN ('pending', 'retrying') AND channel = ? AND next_attempt_at <= ?",
        (channel, now),
    ).fetchone()[0]
    times = [t for t in (free_at, lease) if t is not None]
    return float(min(times)) if times else None


def _insert_execution(conn: sqlite3.Connection, execution: Execution) -> bool:
    cursor = conn.execute(
        "INSERT INTO executions (project, domain, name, launch_plan, workflow, notifications,"
        " created_at, notifications_source, lookup_error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        codec.execution_columns(execution),
    )
    return cursor.rowcount == 1


def _select_execution(conn: sqlite3.Connection, execution_id: ExecutionId) -> Execution | None:
    row = conn.execute(
        "SELECT * FROM executions WHERE project = ? AND domain = ? AND name = ?",
        (execution_id.project, execution_id.domain, execution_id.name),
    ).fetchone()
    return codec.execution_from_row(row) if row else None


def _record_event(conn: sqlite3.Connection, item: EventWrite, now: float) -> EventResult:
    event = item.event
    _insert_execution(conn, item.execution)
    outcome = _advance_execution(conn, item, now)
    ids: list[int] = []
    if outcome is EventOutcome.ENQUEUED:
        for d in item.deliveries:
            row = conn.execute(
                "INSERT INTO deliveries (idempotency_key, project, domain, name, phase,"
                " notification_index, kind, channel, recipient, message, launch_plan, status,"
                " created_at, updated_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (
                    d.idempotency_key,
                    event.execution_id.project,
                    event.execution_id.domain,
                    event.execution_id.name,
                    event.phase,
                    d.notification_index,
                    d.kind,
                    d.channel,
                    d.recipient,
                    d.message.json_text,
                    codec.dump_entity(item.execution.launch_plan),
                    now,
                    now,
                    now,
                ),
            ).fetchone()
            if row is not None:
                ids.append(int(row[0]))
    return EventResult(outcome, tuple(ids))


def _advance_execution(conn: sqlite3.Connection, item: EventWrite, now: float) -> EventOutcome:
    """Decide what the event means for its execution, moving it to terminal if first."""
    event = item.event
    key = (event.execution_id.project, event.execution_id.domain, event.execution_id.name)
    if event.is_terminal:
        moved = conn.execute(
            "UPDATE executions SET terminal_phase = ?, terminal_at = ?"
            " WHERE project = ? AND domain = ? AND name = ? AND terminal_phase IS NULL",
            (event.phase, now, *key),
        ).rowcount
        if moved:
            return EventOutcome.ENQUEUED if item.deliveries else EventOutcome.NO_NOTIFICATIONS
    row = conn.execute(
        "SELECT terminal_phase FROM executions WHERE project = ? AND domain = ? AND name = ?", key
    ).fetchone()
    terminal = row[0] if row else None
    if terminal is None:
        return EventOutcome.RECORDED
    return EventOutcome.DUPLICATE if terminal == event.phase else EventOutcome.AFTER_TERMINAL


def list_deliveries_sql(query: DeliveryFilter) -> tuple[str, list[Any]]:
    """The query :meth:`SQLiteStore.list_deliveries` runs (its plan is tested on a large ledger)."""
    where, args = _delivery_conditions(query)
    order = "DESC" if query.newest_first else "ASC"
    sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries {where} ORDER BY id {order} LIMIT ?"
    return sql, [*args, query.limit]


def _delivery_conditions(query: DeliveryFilter) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    if query.execution is not None:
        conditions.append("project = ? AND domain = ? AND name = ?")
        args += [query.execution.project, query.execution.domain, query.execution.name]
    if query.status is not None:
        conditions.append("status = ?")
        args.append(query.status.value)
    if query.channel is not None:
        conditions.append("channel = ?")
        args.append(query.channel)
    if query.since is not None:
        conditions.append("created_at >= ?")
        args.append(query.since)
    if query.after_id is not None:
        conditions.append("id > ?")
        args.append(query.after_id)
    for column, value in (
        ("recipient", query.recipient),
        ("project", query.project),
        ("domain", query.domain),
        ("json_extract(launch_plan, '$.name')", query.launch_plan),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            args.append(value)
    if query.before_id is not None:
        conditions.append("id < ?")
        args.append(query.before_id)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), args
