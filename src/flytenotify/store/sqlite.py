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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from flytenotify.domain import (
    DEFAULT_GROUP_RULE,
    Deadline,
    DeadlineId,
    Delivery,
    DeliveryStatus,
    Execution,
    ExecutionId,
    GroupRule,
    LaunchPlan,
    Silence,
    Timer,
    TimerKind,
)
from flytenotify.store import codec, ledger
from flytenotify.store.base import (
    Completion,
    EventResult,
    EventWrite,
    TimerSettlement,
    TimerVerdict,
)
from flytenotify.store.migrations import migrations_for, refuse_newer
from flytenotify.store.queries import queries_for
from flytenotify.store.space import SpaceWatch
from flytenotify.store.sql import Row, SQLStore

_T = TypeVar("_T")

Q = queries_for("sqlite")

# How often listen() asks whether another connection committed: a cheap read of
# the WAL index, and the most a dispatcher waits for another process's work.
_WATCH_INTERVAL = 0.05

# How long a write waits for another process to release the file's write lock.
_LOCK_WAIT = 30.0


class SQLiteStore(SQLStore):
    """The :class:`~flytenotify.store.base.Store` protocol on a SQLite file."""

    queries = Q

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-write")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._watcher: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.space = SpaceWatch()

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
            changes = conn.total_changes
            _begin_immediate(conn)
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException as error:
                # SQLite may have rolled back already (it does on SQLITE_FULL):
                # a second ROLLBACK would raise and hide the first error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_full(error):
                    raise self.space.refused(error) from error
                raise
            if conn.total_changes != changes:  # not a claim that found nothing to do
                self.space.wrote()
            return result

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: fn(self._connection())
        )

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        return await self._read(lambda conn: conn.execute(sql, args).fetchall())

    async def _change(self, sql: str, args: Sequence[Any]) -> int:
        return await self._write(lambda conn: conn.execute(sql, args).rowcount)

    async def _join_all(self, joining: Sequence[tuple[str, int]]) -> None:
        now = codec.now()
        rows = [(key, delivery_id, now, now) for key, delivery_id in joining]
        await self._write(lambda conn: conn.executemany(Q["join_conversation"], rows))

    def _keys(self, keys: list[str]) -> tuple[Any, ...]:
        return (json.dumps(keys),)

    async def _change_returning(self, sql: str, args: Sequence[Any]) -> list[Row]:
        return await self._write(lambda conn: conn.execute(sql, args).fetchall())

    async def open(self, *, retry: bool = True) -> None:
        del retry  # a file: nothing to wait for (the write lock has its own timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._write(_migrate)

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon after another connection commits to the file.

        ``data_version`` changes only for other connections' commits, so asking
        on the writer's connection ignores this process's own writes.
        """
        self._callbacks.append(callback)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(self._wake))

    async def listen_timers(self, callback: Callable[[], None]) -> None:
        # A commit says nothing of what it wrote: every listener hears of each.
        await self.listen(callback)

    def _wake(self) -> None:
        for callback in self._callbacks:
            callback()

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
        await self._change(Q["register_launch_plan"], codec.launch_plan_columns(plan))

    async def create_execution(self, execution: Execution) -> tuple[Execution, bool]:
        def write(conn: sqlite3.Connection) -> tuple[Execution, bool]:
            created = conn.execute(Q["insert_execution"], codec.execution_columns(execution))
            stored = _select_execution(conn, execution.id)
            assert stored is not None
            return stored, created.rowcount == 1

        return await self._write(write)

    async def get_executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        def read(conn: sqlite3.Connection) -> dict[ExecutionId, Execution]:
            # Indexed point lookups are microseconds in SQLite; what costs is
            # the hop to this thread, and there is one for the whole batch.
            found = (_select_execution(conn, execution_id) for execution_id in set(ids))
            return {execution.id: execution for execution in found if execution is not None}

        return await self._read(read)

    # -- events -------------------------------------------------------------------

    async def record_events(self, writes: Sequence[EventWrite]) -> list[EventResult]:
        # One transaction for the batch, as on PostgreSQL: if one event fails,
        # none is recorded and the caller hears why.
        return await self._write(lambda conn: _record_events(conn, writes, codec.now()))

    # -- dispatch -------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limits: dict[str, int],
        completions: Sequence[Completion] = (),
        groups: Mapping[str, GroupRule] | None = None,
    ) -> list[Delivery]:
        def write(conn: sqlite3.Connection) -> list[Delivery]:
            _complete(conn, completions)
            room = ledger.ClaimRoom(limits)
            for channel, limit in room.rounds(_pending_channels(conn) if room else ()):
                rule = (groups or {}).get(channel, DEFAULT_GROUP_RULE)
                _claim_channel(conn, room, channel, limit, rule, (owner, now + lease, now))
            return room.claimed

        return await self._write(write)

    async def complete(self, completions: Sequence[Completion]) -> None:
        await self._write(lambda conn: _complete(conn, completions))

    async def renew_leases(
        self, owner: str, delivery_ids: Sequence[int], now: float, lease: float
    ) -> int:
        ids = json.dumps(list(delivery_ids))
        return await self._change(Q["renew_leases"], (now + lease, owner, ids))

    async def release(self, owner: str) -> int:
        return await self._change(Q["release"], (owner,))

    async def next_due_at(self) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            now = codec.now()
            times = [_next_due(conn, channel, now) for channel in _pending_channels(conn)]
            times.append(conn.execute(Q["first_group_close"], (now,)).fetchone()[0])
            return min((float(t) for t in times if t is not None), default=None)

        return await self._read(read)

    async def redrive(self, delivery_id: int, now: float) -> Delivery | None:
        def write(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(Q["redrive"], (now, now, delivery_id)).fetchone()
            if row is None:
                return None
            conn.execute(Q["redrive_attempt"], (delivery_id, row["attempts"], now, now))
            return codec.delivery_from_row(row)

        return await self._write(write)

    # -- silences -------------------------------------------------------------------

    async def end_silence(
        self, silence_id: int, ended_by: str, ended_at: float, release: bool, reply: str
    ) -> tuple[Silence, int] | None:
        def write(conn: sqlite3.Connection) -> tuple[Silence, int] | None:
            row = conn.execute(Q["end_silence"], (ended_at, ended_by, silence_id)).fetchone()
            if row is None:
                return None
            released = []
            if release:
                now = codec.now()
                released = conn.execute(Q["release_held"], (now, now, silence_id)).fetchall()
                _attempt_rows(conn, released, now, "released", reply)
            return codec.silence_from_row(row), len(released)

        return await self._write(write)

    async def hold_deliveries(
        self, silence_id: int, delivery_ids: Sequence[int], now: float, reply: str
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            args = (silence_id, now, json.dumps(list(delivery_ids)), now, silence_id)
            held = conn.execute(Q["hold_deliveries"], args).fetchall()
            _attempt_rows(conn, held, now, "silenced", reply)
            return len(held)

        return await self._write(write)

    # -- deadlines and their timers ---------------------------------------------------

    async def put_deadline(self, deadline: Deadline, schedule: Timer | None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(Q["put_deadline"], codec.deadline_columns(deadline))
            _put_schedule(conn, deadline, schedule)

        await self._write(write)

    async def delete_deadline(self, deadline: DeadlineId) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            key = (deadline.project, deadline.domain, deadline.name)
            conn.execute(Q["delete_deadline_timers"], key)
            return conn.execute(Q["delete_deadline"], key).rowcount > 0

        return await self._write(write)

    async def claim_timers(
        self, owner: str, due_by: float, lease: float, limit: int
    ) -> list[Timer]:
        def due(conn: sqlite3.Connection) -> list[int]:
            now = codec.now()
            return [row[0] for row in conn.execute(Q["due_timers"], (due_by, now, limit))]

        def write(conn: sqlite3.Connection) -> list[Timer]:
            found = due(conn)
            if not found:
                return []
            rows = conn.execute(Q["lease_timers"], (owner, codec.now() + lease, json.dumps(found)))
            return sorted((codec.timer_from_row(row) for row in rows), key=lambda t: t.due_at)

        # Every commit of another process wakes the timer loop: looking first
        # without the write lock keeps those wake-ups from queueing this
        # process's claims and intake behind a wait for the lock.
        if not await self._read(due):
            return []
        return await self._write(write)

    async def next_timer_in(self, due_by: float) -> float | None:
        def read(conn: sqlite3.Connection) -> float | None:
            now = codec.now()
            waits = []
            free = conn.execute(Q["first_free_timer"], (now,)).fetchone()
            if free is not None:
                waits.append(float(free[0]) - due_by)
            lease = conn.execute(Q["earliest_timer_lease"], (now,)).fetchone()[0]
            if lease is not None:
                waits.append(float(lease) - now)
            return min(waits, default=None)

        return await self._read(read)

    async def settle_timer(self, settlement: TimerSettlement) -> TimerVerdict:
        return await self._write(lambda conn: _settle(conn, settlement, codec.now()))

    # -- pacing ---------------------------------------------------------------------

    async def reserve_slot(self, key: str, interval: float) -> float:
        def write(conn: sqlite3.Connection) -> float:
            now = codec.now()
            args = (key, now, interval, now, interval, interval)
            start = conn.execute(Q["reserve_slot"], args).fetchone()[0]
            return max(0.0, float(start) - now)

        return await self._write(write)

    async def block_slots(self, key: str, seconds: float) -> None:
        await self._change(Q["block_slots"], (key, codec.now() + seconds))


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


def _is_full(error: BaseException) -> bool:
    """SQLITE_FULL: the disk, or the database's size limit (``max_page_count``), is reached."""
    return (
        isinstance(error, sqlite3.OperationalError)
        and error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL  # extended codes too
    )


def _current_version(conn: sqlite3.Connection) -> int:
    if conn.execute(Q["has_schema_migrations"]).fetchone() is None:
        return 0
    return int(conn.execute(Q["schema_version"]).fetchone()[0])


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(Q["create_schema_migrations"])
    current = _current_version(conn)
    refuse_newer(current)
    migrations = migrations_for("sqlite")
    for version in sorted(v for v in migrations if v > current):
        for statement in _statements(migrations[version]):
            conn.execute(statement)
        conn.execute(Q["record_migration"], (version, codec.now()))


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    return statements


def _record_events(
    conn: sqlite3.Connection, writes: Sequence[EventWrite], now: float
) -> list[EventResult]:
    """The whole batch under the write lock: nothing read here changes before it is written."""
    held = ledger.held_by(writes)
    if held:
        live = {row[0] for row in conn.execute(Q["live_silences"], (json.dumps(held),))}
        writes = ledger.unless_ended(writes, live)
    conn.executemany(Q["insert_execution"], [codec.execution_columns(w.execution) for w in writes])
    keys = {ledger.execution_key(w.event.execution_id) for w in writes}
    phases = {key: conn.execute(Q["terminal_phase"], key).fetchone()[0] for key in keys}
    plan = ledger.plan_intake(writes, phases)
    conn.executemany(Q["move_to_terminal"], [(phase, now, *key) for key, phase in plan.moves])
    last = conn.execute(Q["last_delivery_id"]).fetchone()[0]
    conn.executemany(
        Q["insert_delivery"],
        [
            codec.delivery_columns(writes[position], delivery, now)
            for position in plan.enqueued
            for delivery in writes[position].deliveries
        ],
    )
    inserted = {key: int(id_) for id_, key in conn.execute(Q["deliveries_after"], (last,))}
    events = zip(writes, plan.outcomes, strict=True)
    conn.executemany(
        Q["insert_event"],
        [codec.event_columns(write.event, now, outcome.value) for write, outcome in events],
    )
    for write, ended in ledger.timer_steps(writes, plan):
        _apply_timers(conn, write, ended, now)
    return plan.event_results(writes, inserted)


def _attempt_rows(
    conn: sqlite3.Connection, rows: Sequence[Row], now: float, outcome: str, reply: str
) -> None:
    """An operator's act on each of ``rows`` (id, attempts) in its audit trail, as a
    re-drive is: numbered with the attempts so far, no attempt of its own."""
    conn.executemany(
        Q["insert_attempt"],
        [(row["id"], row["attempts"], now, now, outcome, reply) for row in rows],
    )


def _apply_timers(conn: sqlite3.Connection, write: EventWrite, ended: bool, now: float) -> None:
    """One event's timer work (``TimerWork``), after the events are written."""
    work = write.timers
    event = write.event
    key = ledger.execution_key(event.execution_id)
    if ended:
        conn.executemany(Q["cancel_timers"], [(*key, kind) for kind in ledger.ENDED_TIMERS])
        conn.execute(Q["end_alerts"], (event.phase, codec.timestamp(event.occurred_at), *key))
        conn.execute(Q["arm_resolve_timers"], (now, *key))
        ended_at = codec.timestamp(event.occurred_at)
        for series in work.series:
            conn.execute(Q["record_duration"], (series, ended_at, ended_at, *key))
            conn.execute(Q["prune_durations"], (series, series))
    else:
        conn.executemany(Q["arm_timer"], [codec.timer_columns(t) for t in work.arm])
        conn.executemany(Q["cancel_timers"], [(*key, kind) for kind in sorted(work.cancel)])
    started = work.started_at
    for deadline in work.starts:
        named = (deadline.project, deadline.domain, deadline.name)
        satisfied = (started, Timer.schedule_key(deadline), ledger.START_TOLERANCE, started)
        conn.execute(Q["satisfy_start"], (*satisfied, started))
        if conn.execute(Q["end_missed_starts"], (event.phase, started, *named, started)).rowcount:
            conn.execute(Q["arm_late_start_timers"], (now, *named, started))


def _put_schedule(conn: sqlite3.Connection, deadline: Deadline, schedule: Timer | None) -> None:
    if schedule is None:
        conn.execute(Q["drop_timer"], (Timer.schedule_key(deadline.id),))
    else:
        conn.execute(Q["put_schedule_timer"], codec.timer_columns(schedule))


def _settle(conn: sqlite3.Connection, settlement: TimerSettlement, now: float) -> TimerVerdict:
    """A fired timer taken out and what it leads to written, under the write lock."""
    timer = settlement.timer
    row = conn.execute(Q["delete_fired_timer"], (timer.id, settlement.owner)).fetchone()
    if row is None:
        return TimerVerdict.GONE
    terminal = moved = None
    if timer.execution is not None and timer.kind is not TimerKind.RESOLVE:
        key = ledger.execution_key(timer.execution)
        found = conn.execute(Q["terminal_phase"], key).fetchone()
        terminal = found[0] if found is not None else None
        moved = conn.execute(Q["moved_past_queued"], key).fetchone() is not None
    if settlement.rearm is not None:
        conn.execute(Q["arm_timer"], codec.timer_columns(settlement.rearm))
    if not ledger.timer_holds(timer, terminal, bool(moved), row["satisfied_at"]):
        return ledger.quiet_or_moved_on(timer)
    alert = settlement.alert
    if alert is not None:
        inserted = conn.execute(Q["insert_alert"], codec.alert_columns(alert)).fetchone()
        if inserted is None:
            return TimerVerdict.REPEATED
    held = ledger.silences_of(settlement.deliveries)
    live = {r[0] for r in conn.execute(Q["live_silences"], (json.dumps(held),))} if held else ()
    for delivery in ledger.still_held(settlement.deliveries, live):
        conn.execute(
            Q["insert_deadline_delivery"],
            codec.deadline_delivery_columns(
                settlement.subject,
                settlement.phase,
                settlement.launch_plan,
                delivery,
                settlement.reason,
                now,
            ),
        )
    return TimerVerdict.FIRED


def _complete(conn: sqlite3.Connection, completions: Sequence[Completion]) -> None:
    """Write attempt outcomes, skipping rows whose lease passed to another owner.

    A few statements for the whole batch: the writer lock is held, so what the
    first reads cannot change before the others write.
    """
    if not completions:
        return
    ids = json.dumps([c.delivery_id for c in completions])
    attempts_held = {
        (row["id"], row["lease_owner"]): row["attempts"]
        for row in conn.execute(Q["held_leases"], (ids,))
    }
    held = ledger.held_completions(completions, attempts_held)
    conn.executemany(
        Q["write_outcome"],
        [
            (
                c.status.value,
                c.reply,
                c.next_attempt_at,
                c.message_id,
                c.message_size,
                c.provider_message_id,
                c.in_reply_to,
                c.finished_at,
                c.delivery_id,
            )
            for c, _ in held
        ],
    )
    conn.executemany(
        Q["close_group_at"],
        [
            (c.next_attempt_at, c.delivery_id)
            for c, _ in held
            if c.status is DeliveryStatus.RETRYING and c.next_attempt_at is not None
        ],
    )
    conn.executemany(
        Q["insert_attempt"],
        [
            (c.delivery_id, number, c.started_at, c.finished_at, c.outcome, c.reply)
            for c, number in held
        ],
    )
    conn.executemany(
        Q["conversation_sent"],
        [(c.delivery_id, c.thread, c.finished_at, c.opened) for c, _ in held if c.opened],
    )


def _claim_channel(
    conn: sqlite3.Connection,
    room: ledger.ClaimRoom,
    channel: str,
    limit: int,
    rule: GroupRule,
    lease: tuple[str, float, float],
) -> None:
    """Lease ``channel``'s due rows: those without a group one by one, and every
    due row of each closed group among them, opening the group.

    Under the write lock: a group found closed here is opened before any other
    process can look.
    """
    now = lease[2]
    candidates = conn.execute(Q["due_candidates"], (channel, now, now, now, limit)).fetchall()
    alone, keys = ledger.split_due((row["id"], row["group_key"]) for row in candidates)
    if alone:
        rows = conn.execute(Q["lease_ids"], (*lease, json.dumps(alone))).fetchall()
        room.took(channel, [codec.delivery_from_row(r) for r in rows])
    for key in keys:
        left = room.limit(channel)
        if not left:
            return
        if conn.execute(Q["open_group"], (key, now + rule.window, now)).fetchone() is None:
            continue  # opened since we looked (not under this lock: cannot happen)
        args = (*lease, key, now, now, left * rule.max_size)
        rows = conn.execute(Q["claim_group"], args).fetchall()
        room.took(channel, [codec.delivery_from_row(r) for r in rows], rule.max_size)


def _pending_channels(conn: sqlite3.Connection) -> list[str]:
    """The channels of pending rows, one index seek per channel.

    "Any channel but these" (or a MIN over every row) as one query would read
    every pending row, a million during an outage; the pending channels are
    few, so step from one to the next along the claim index instead.
    """
    found: list[str] = []
    after = ""
    while True:
        row = conn.execute(Q["pending_channel_after"], (after,)).fetchone()
        if row[0] is None:
            return found
        after = row[0]
        found.append(after)


def _next_due(conn: sqlite3.Connection, channel: str, now: float) -> float | None:
    """When a row of ``channel`` can next be claimed: its first row not leased,
    or, if that is not due yet, the earliest lease to pass."""
    row = conn.execute(Q["first_free_at"], (channel, now, now)).fetchone()
    free_at = None if row is None else float(row[0])
    if free_at is not None and free_at <= now:
        return free_at
    lease = conn.execute(Q["earliest_lease_end"], (channel, now)).fetchone()[0]
    times = [t for t in (free_at, lease) if t is not None]
    return float(min(times)) if times else None


def _select_execution(conn: sqlite3.Connection, execution_id: ExecutionId) -> Execution | None:
    row = conn.execute(Q["select_execution"], ledger.execution_key(execution_id)).fetchone()
    return codec.execution_from_row(row) if row else None
