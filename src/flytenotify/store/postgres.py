"""The shared ledger: PostgreSQL, for several flytenotify replicas at once.

Same protocol and same semantics as :class:`~flytenotify.store.sqlite.SQLiteStore`
(read that first); what differs is what many replicas on many hosts need:

* **Claims never overlap.** A claim is one ``UPDATE`` whose candidate rows come
  from ``SELECT ... FOR UPDATE SKIP LOCKED``: two replicas claiming at once
  lock disjoint rows, and a row whose lease was taken meanwhile is re-checked
  under its lock, so no row is handed to two replicas.
* **One clock.** Replicas' clocks differ, so lease expiry and due times are
  judged by the database's clock (``now()`` in SQL), not the ``now`` the
  dispatcher passes. Delays the dispatcher computes (a retry's backoff) are
  re-based onto the database clock when written; :meth:`next_due_at` answers
  in the caller's clock so that its sleep is right whatever the skew.
* **Wake-ups.** A transaction that enqueues work sends ``NOTIFY
  flytenotify_deliveries``, which PostgreSQL delivers only once it commits;
  :meth:`listen` keeps a dedicated connection listening and wakes the
  dispatcher. The dispatcher keeps its slow poll, so a lost notification only
  costs latency.
* **Outages are survived.** A store call that fails because its connection
  dropped (a restart, a failover, ``pg_terminate_backend``) or because
  PostgreSQL chose it as a deadlock victim is retried with backoff for up to
  ``retry_for`` seconds on a fresh connection. That is safe because every
  write here is idempotent or harmless to repeat if a commit's acknowledgement
  was lost: see :meth:`PostgresStore._run`.

Its SQL is ``store/queries/common.sql`` (what SQLite runs too) and
``store/queries/postgresql.sql``; the decisions both stores make alike are
``store/ledger.py``'s; the schema lives in ``store/migrations`` with SQLite's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from flytenotify.domain import (
    DEFAULT_GROUP_RULE,
    Deadline,
    DeadlineId,
    Delivery,
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
from flytenotify.store.errors import StoreUnavailable
from flytenotify.store.migrations import migrations_for, refuse_newer
from flytenotify.store.queries import queries_for
from flytenotify.store.space import SpaceWatch
from flytenotify.store.sql import Row, SQLStore

log = logging.getLogger("flytenotify.store.postgres")

_T = TypeVar("_T")
if TYPE_CHECKING:  # generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

Q = queries_for("postgresql")

NOTIFY_CHANNEL = "flytenotify_deliveries"
TIMERS_CHANNEL = "flytenotify_timers"  # a timer was armed: the timer loops look again
APPLICATION_NAME = "flytenotify"

# pg_advisory_xact_lock key held while migrating, so replicas starting at once
# migrate one after another (the second finds nothing left to do). The bytes
# spell "flytnoti"; any constant works as long as every replica uses the same.
MIGRATION_LOCK = 0x666C79746E6F7469

# URL query parameters that configure the pool rather than the connection;
# removed before the URL reaches asyncpg (which would send them to the server).
POOL_MIN_PARAM = "pool_min"
POOL_MAX_PARAM = "pool_max"
DEFAULT_POOL_MIN = 1
DEFAULT_POOL_MAX = 10

_KEEPALIVE = 15.0  # seconds between checks that the LISTEN connection still answers
_MAX_BACKOFF = 2.0


# -- errors worth retrying --------------------------------------------------------------------


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` means "try again on a fresh connection", not "this is wrong"."""
    if isinstance(
        error,
        # the connection broke, or never came up (08xxx, refused, reset, DNS)
        asyncpg.PostgresConnectionError
        | OSError
        | TimeoutError
        # the server is stopping, starting or recovering (57P01, 57P02, 57P03)
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        # our transaction lost a deadlock or serialization race and was rolled back
        | asyncpg.DeadlockDetectedError
        | asyncpg.SerializationError,
    ):
        return True
    # asyncpg reports using a connection that died meanwhile as an InterfaceError.
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error)
    # A server that ends a session (a restart, pg_terminate_backend) sends a
    # FATAL error, then closes the socket. On a connection idle in the pool,
    # asyncpg takes the unsolicited error as a protocol fault and enters its
    # error-consuming state (2); until it reads the close (the next turns of
    # the event loop), the pool still hands the connection out, and the next
    # query or reset fails with "cannot switch to state N; another operation
    # (2) is in progress". Plain pool use does this, no connection shared by
    # two callers; the pool then discards the connection, and a retry gets a
    # new one. Only state 2 is that: any other clash would be a real bug.
    if isinstance(error, asyncpg.InternalClientError):
        return "another operation (2) is in progress" in str(error)
    return False


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into the ``width`` column arrays a statement unnests."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _completion_columns(completions: Sequence[Completion]) -> list[list[Any]]:
    """The batch as the fourteen column arrays the ``complete`` query unnests."""
    rows = [
        (
            c.delivery_id,
            c.lease_owner,
            c.status.value,
            c.reply,
            # A delay, re-based on the database clock by the query.
            None if c.next_attempt_at is None else c.next_attempt_at - c.finished_at,
            c.started_at,
            c.finished_at,
            c.outcome,
            c.message_id,
            c.message_size,
            c.provider_message_id,
            c.in_reply_to,
            c.opened,
            c.thread,
        )
        for c in completions
    ]
    return _columns(rows, 14)


def _rowcount(status: str) -> int:
    """The row count from a command status such as ``UPDATE 3`` or ``INSERT 0 1``."""
    return int(status.rsplit(" ", 1)[-1])


def split_url(url: str) -> tuple[str, int | None, int | None]:
    """The DSN for asyncpg, and the pool sizes given as ``?pool_min=&pool_max=`` if any."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    sizes: dict[str, int] = {}
    kept = []
    for key, value in query:
        if key in (POOL_MIN_PARAM, POOL_MAX_PARAM):
            sizes[key] = int(value)
        else:
            kept.append((key, value))
    dsn = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    return dsn, sizes.get(POOL_MIN_PARAM), sizes.get(POOL_MAX_PARAM)


class PostgresStore(SQLStore):
    """The :class:`~flytenotify.store.base.Store` protocol on a PostgreSQL database.

    ``url`` is a ``postgresql://`` (or ``postgres://``) URL as libpq takes it;
    ``?pool_min=N&pool_max=M`` in it size the connection pool when
    ``min_size``/``max_size`` are not given. ``retry_for`` bounds how long one
    call keeps retrying through a lost connection before it raises.
    """

    queries = Q

    def __init__(
        self,
        url: str,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
        retry_for: float = 30.0,
        connect_timeout: float = 10.0,
        command_timeout: float = 60.0,
    ) -> None:
        self.dsn, url_min, url_max = split_url(url)
        # Named sessions make replicas' connections easy to find in
        # pg_stat_activity; a name given in the URL wins.
        named = "application_name" in urllib.parse.parse_qs(urllib.parse.urlsplit(self.dsn).query)
        self._session_name = {} if named else {"application_name": APPLICATION_NAME}
        self._listen_name = {} if named else {"application_name": f"{APPLICATION_NAME}-listen"}
        self.max_size = max_size or url_max or DEFAULT_POOL_MAX
        self.min_size = min(
            self.max_size, min_size if min_size is not None else url_min or DEFAULT_POOL_MIN
        )
        self.retry_for = retry_for
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        # Set once the schema is migrated: until then only the migration may use
        # the pool, and every other call is StoreUnavailable (an HTTP 503), not a
        # query against a half-made schema (a 500).
        self._migrated = False
        self._callbacks: list[Callable[[], None]] = []
        self._timer_callbacks: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self.space = SpaceWatch()

    # -- plumbing ---------------------------------------------------------------------

    async def _run(
        self,
        body: Callable[[Conn], Awaitable[_T]],
        *,
        transaction: bool = True,
        retry: bool = True,
        migrating: bool = False,
    ) -> _T:
        """Run ``body`` on a pooled connection (in a transaction), retrying transient failures.

        A retry runs the whole body again in a new transaction; the old one was
        rolled back, unless the connection broke while its COMMIT was on the way
        and it did commit. The bodies are written so that running twice is
        harmless: a claim leases rows nobody uses until the lease passes; a
        completion finds its rows no longer leased to it and writes nothing; a
        release or a launch plan registration is the same the second time; an
        event replay is recorded as a duplicate and enqueues nothing; a second
        re-drive finds the row no longer dead. (The dev inbox may then show a
        message twice.)
        """
        pool = self._require_pool(migrating)
        deadline = time.monotonic() + (self.retry_for if retry else 0.0)
        delay = 0.05
        while True:
            try:
                async with pool.acquire(timeout=self.connect_timeout) as conn:
                    if not transaction:
                        return await body(conn)
                    async with conn.transaction():
                        return await body(conn)
            except asyncpg.DiskFullError as error:  # 53100: waiting here would not free space
                raise self.space.refused(error) from error
            except Exception as error:
                if not is_transient(error) or time.monotonic() + delay > deadline:
                    raise
                log.warning("PostgreSQL call failed (%r); retrying in %.2f s", error, delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_BACKOFF)

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        async def read(conn: Conn) -> list[Row]:
            return [dict(row) for row in await conn.fetch(sql, *args)]

        return await self._run(read, transaction=False)

    async def _change(self, sql: str, args: Sequence[Any]) -> int:
        async def write(conn: Conn) -> int:
            return _rowcount(await conn.execute(sql, *args))

        changed = await self._run(write, transaction=False)
        if changed:
            self.space.wrote()
        return changed

    async def _join_all(self, joining: Sequence[tuple[str, int]]) -> None:
        await self._change(Q["join_conversations"], _columns(list(joining), 2))

    def _keys(self, keys: list[str]) -> tuple[Any, ...]:
        return (keys,)

    async def _change_returning(self, sql: str, args: Sequence[Any]) -> list[Row]:
        async def write(conn: Conn) -> list[Row]:
            return [dict(row) for row in await conn.fetch(sql, *args)]

        rows = await self._run(write, transaction=False)
        if rows:
            self.space.wrote()
        return rows

    def _require_pool(self, migrating: bool = False) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None or not (self._migrated or migrating):
            raise StoreUnavailable(
                "PostgreSQL is not ready yet (connecting, or migrating the schema)"
            )
        return self._pool

    async def _create_pool(self, retry: bool) -> asyncpg.Pool[asyncpg.Record]:
        deadline = time.monotonic() + (self.retry_for if retry else 0.0)
        delay = 0.1
        while True:
            try:
                return await asyncpg.create_pool(
                    self.dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self.connect_timeout,
                    command_timeout=self.command_timeout,
                    # Connections idle this long are closed: the pool shrinks after a burst.
                    max_inactive_connection_lifetime=300.0,
                    server_settings=self._session_name,
                )
            except Exception as error:
                if not is_transient(error) or time.monotonic() + delay > deadline:
                    raise
                log.warning("cannot reach PostgreSQL (%r); retrying in %.2f s", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)

    async def open(self, *, retry: bool = True) -> None:
        if self._pool is None:
            self._pool = await self._create_pool(retry)
        await self._run(_migrate, retry=retry, migrating=True)
        self._migrated = True

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._migrated = False
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10.0)
            except TimeoutError:
                pool.terminate()  # a connection was never given back; do not hang shutdown

    async def schema_version(self) -> int:
        # Not retried: readiness probes ask this, and should hear "down" at once.
        return await self._run(_current_version, transaction=False, retry=False)

    async def ping(self) -> bool:
        """Readiness: whether the database answers a trivial query within two seconds."""
        if self._pool is None:
            return False
        try:
            async with asyncio.timeout(2.0), self._pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except Exception:
            return False

    # -- LISTEN / NOTIFY ----------------------------------------------------------------

    async def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever another transaction has enqueued deliveries.

        One dedicated connection (outside the pool) listens; if it drops it is
        re-established with backoff, and ``callback`` is called once on every
        (re)connection, since notifications sent while it was down are lost.
        Returns once listening, or after ``connect_timeout`` while it keeps trying.
        """
        self._callbacks.append(callback)
        await self._start_listening()

    async def listen_timers(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever another transaction has armed a timer (on the
        same listening connection as :meth:`listen`)."""
        self._timer_callbacks.append(callback)
        await self._start_listening()

    async def _start_listening(self) -> None:
        if self._listener is not None:
            return
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen_forever(ready))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), self.connect_timeout)

    def _wake(self) -> None:
        for callback in self._callbacks:
            callback()

    def _wake_timers(self) -> None:
        for callback in self._timer_callbacks:
            callback()

    async def _listen_forever(self, ready: asyncio.Event) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen_once(ready)
                log.warning("the LISTEN connection closed; reconnecting")
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("LISTEN connection failed (%r); retrying in %.2f s", error, delay)
                delay = min(delay * 2, 5.0)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _listen_once(self, ready: asyncio.Event) -> None:
        """Listen on one connection until it is lost."""
        conn = await asyncpg.connect(
            self.dsn, timeout=self.connect_timeout, server_settings=self._listen_name
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: self._wake())
            await conn.add_listener(TIMERS_CHANNEL, lambda *_args: self._wake_timers())
            ready.set()
            self._wake()  # whatever was enqueued while nobody listened
            self._wake_timers()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), _KEEPALIVE)
                except TimeoutError:
                    # A half-open TCP connection reports nothing: ask.
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), 5.0)
        finally:
            conn.terminate()  # no network round trip: the connection may be dead

    # -- launch plans and executions ----------------------------------------------------

    async def register_launch_plan(self, plan: LaunchPlan) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(Q["lock_launch_plans"])
            await conn.execute(Q["register_launch_plan"], *codec.launch_plan_columns(plan))

        await self._run(write)
        self.space.wrote()

    async def create_execution(self, execution: Execution) -> tuple[Execution, bool]:
        async def write(conn: Conn) -> tuple[Execution, bool]:
            status = await conn.execute(Q["insert_execution"], *codec.execution_columns(execution))
            row = await conn.fetchrow(Q["select_execution"], *ledger.execution_key(execution.id))
            assert row is not None
            return codec.execution_from_row(dict(row)), _rowcount(status) == 1

        return await self._run(write)

    async def get_executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        keys = {ledger.execution_key(execution_id) for execution_id in ids}
        rows = await self._fetch(Q["select_executions"], _columns(list(keys), 3))
        found = (codec.execution_from_row(row) for row in rows)
        return {execution.id: execution for execution in found}

    # -- events ---------------------------------------------------------------------------

    async def record_events(self, writes: Sequence[EventWrite]) -> list[EventResult]:
        if not writes:
            return []

        async def write(conn: Conn) -> list[EventResult]:
            results, timers_changed = await _record_events(conn, writes)
            if any(result.delivery_ids for result in results):
                await conn.execute(Q["notify"], NOTIFY_CHANNEL)
            if timers_changed:
                await conn.execute(Q["notify"], TIMERS_CHANNEL)
            return results

        results = await self._run(write)
        self.space.wrote()
        return results

    # -- dispatch ---------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limits: dict[str, int],
        completions: Sequence[Completion] = (),
        groups: Mapping[str, GroupRule] | None = None,
    ) -> list[Delivery]:
        # ``now`` is the caller's clock; the database's is the one every replica shares.
        del now

        async def write(conn: Conn) -> list[Delivery]:
            if completions:
                await conn.execute(Q["complete"], *_completion_columns(completions))
            room = ledger.ClaimRoom(limits)
            pending = await conn.fetch(Q["pending_channels"]) if room else ()
            for channel, limit in room.rounds(row["channel"] for row in pending):
                rule = (groups or {}).get(channel, DEFAULT_GROUP_RULE)
                args = (owner, channel, limit, lease, rule.window, rule.max_size)
                rows = await conn.fetch(Q["claim_due"], *args)
                claimed = [codec.delivery_from_row(dict(r)) for r in rows]
                room.took(channel, claimed, rule.max_size)
            return room.claimed

        # No transaction: each statement is atomic on its own (the outcomes'
        # too), and holding one channel's row locks while claiming the next
        # gains nothing.
        claimed = await self._run(write, transaction=False)
        if completions or claimed:  # not a claim that found nothing to do
            self.space.wrote()
        return claimed

    async def complete(self, completions: Sequence[Completion]) -> None:
        if completions:
            await self._change(Q["complete"], _completion_columns(completions))

    async def renew_leases(
        self, owner: str, delivery_ids: Sequence[int], now: float, lease: float
    ) -> int:
        del now  # leases are judged by the database's clock
        return await self._change(Q["renew_leases"], (owner, list(delivery_ids), lease))

    async def release(self, owner: str) -> int:
        async def write(conn: Conn) -> int:
            released = _rowcount(await conn.execute(Q["release"], owner))
            if released:
                # Claimable now: let the other replicas pick them up at once.
                await conn.execute(Q["notify"], NOTIFY_CHANNEL)
            return released

        return await self._run(write)

    async def next_due_at(self) -> float | None:
        # The answer is in the caller's clock: the dispatcher subtracts its own
        # time.time() to know how long to sleep, so give it "its now + the wait
        # the database sees".
        row = await self._fetch_one("next_due_in", ())
        due_in = None if row is None else row["due_in"]
        return None if due_in is None else time.time() + float(due_in)

    async def redrive(self, delivery_id: int, now: float) -> Delivery | None:
        del now  # due at once by the database's clock

        async def write(conn: Conn) -> Delivery | None:
            row = await conn.fetchrow(Q["redrive"], delivery_id)
            if row is None:
                return None
            await conn.execute(Q["redrive_attempt"], delivery_id, row["attempts"])
            await conn.execute(Q["notify"], NOTIFY_CHANNEL)
            return codec.delivery_from_row(dict(row))

        return await self._run(write)

    # -- silences ----------------------------------------------------------------------------

    async def end_silence(
        self, silence_id: int, ended_by: str, ended_at: float, release: bool, reply: str
    ) -> tuple[Silence, int] | None:
        # Run again after a lost COMMIT, it finds the silence ended and answers None:
        # the caller then reads it and says it was ended already.
        async def write(conn: Conn) -> tuple[Silence, int] | None:
            row = await conn.fetchrow(Q["end_silence"], ended_at, ended_by, silence_id)
            if row is None:
                return None
            released = 0
            if release:
                released = _rowcount(await conn.execute(Q["release_held"], silence_id, reply))
                if released:
                    await conn.execute(Q["notify"], NOTIFY_CHANNEL)
            return codec.silence_from_row(dict(row)), released

        ended = await self._run(write)
        if ended is not None:
            self.space.wrote()
        return ended

    async def hold_deliveries(
        self, silence_id: int, delivery_ids: Sequence[int], now: float, reply: str
    ) -> int:
        del now  # leases are judged by the database's clock
        return await self._change(Q["hold_deliveries"], (silence_id, list(delivery_ids), reply))

    def _join_args(self, key: str, delivery_id: int) -> tuple[Any, ...]:
        return (key, delivery_id)  # times from the database's clock

    # -- deadlines and their timers ----------------------------------------------------------

    async def put_deadline(self, deadline: Deadline, schedule: Timer | None) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(Q["put_deadline"], *codec.deadline_columns(deadline))
            if schedule is None:
                await conn.execute(Q["drop_timer"], Timer.schedule_key(deadline.id))
            else:
                await conn.execute(Q["put_schedule_timer"], *codec.timer_columns(schedule))
                await conn.execute(Q["notify"], TIMERS_CHANNEL)

        await self._run(write)
        self.space.wrote()

    async def put_schedule_timer(self, timer: Timer) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(Q["put_schedule_timer"], *codec.timer_columns(timer))
            await conn.execute(Q["notify"], TIMERS_CHANNEL)

        await self._run(write)

    async def delete_deadline(self, deadline: DeadlineId) -> bool:
        key = (deadline.project, deadline.domain, deadline.name)

        async def write(conn: Conn) -> bool:
            await conn.execute(Q["delete_deadline_timers"], *key)
            return _rowcount(await conn.execute(Q["delete_deadline"], *key)) > 0

        return await self._run(write)

    async def claim_timers(
        self, owner: str, due_by: float, lease: float, limit: int
    ) -> list[Timer]:
        # Due by the database's clock, moved by as much as the caller's runs ahead.
        lead = due_by - time.time()
        rows = await self._fetch(Q["claim_timers"], (owner, lease, limit, lead))
        return sorted((codec.timer_from_row(row) for row in rows), key=lambda t: t.due_at)

    async def next_timer_in(self, due_by: float) -> float | None:
        row = await self._fetch_one("next_timer_in", (due_by - time.time(),))
        due_in = None if row is None else row["due_in"]
        return None if due_in is None else float(due_in)

    async def settle_timer(self, settlement: TimerSettlement) -> TimerVerdict:
        async def write(conn: Conn) -> TimerVerdict:
            verdict = await _settle(conn, settlement)
            if verdict is TimerVerdict.FIRED and settlement.deliveries:
                await conn.execute(Q["notify"], NOTIFY_CHANNEL)
            if settlement.rearm is not None:
                await conn.execute(Q["notify"], TIMERS_CHANNEL)
            return verdict

        verdict = await self._run(write)
        self.space.wrote()
        return verdict

    # -- pacing ------------------------------------------------------------------------------

    async def reserve_slot(self, key: str, interval: float) -> float:
        row = await self._fetch_one("reserve_slot", (key, interval))
        assert row is not None
        return max(0.0, float(row["wait"]))

    async def block_slots(self, key: str, seconds: float) -> None:
        await self._change(Q["block_slots"], (key, seconds))


# -- transaction bodies -----------------------------------------------------------------------


async def _current_version(conn: Conn) -> int:
    if not await conn.fetchval(Q["has_schema_migrations"]):
        return 0
    return int(await conn.fetchval(Q["schema_version"]))


async def _migrate(conn: Conn) -> int:
    """Bring the schema up to date; run inside a transaction (DDL is transactional here)."""
    await conn.execute(Q["migration_lock"], MIGRATION_LOCK)
    await conn.execute(Q["create_schema_migrations"])
    current = int(await conn.fetchval(Q["schema_version"]))
    refuse_newer(current)
    migrations = migrations_for("postgresql")
    for version in sorted(v for v in migrations if v > current):
        await conn.execute(migrations[version])  # no arguments: several statements may run
        await conn.execute(Q["record_migration"], version)
        current = version
    return current


async def _record_events(
    conn: Conn, writes: Sequence[EventWrite]
) -> tuple[list[EventResult], bool]:
    """A whole batch in a constant number of statements, whatever its size (and a few
    per event of an execution a deadline selects); whether any timer work was done.

    The batch's executions are locked (in key order, as every replica locks
    them) before their terminal phases are read, so the decisions made from
    them hold until commit: a replica recording events of the same execution
    at once waits, then reads what this one wrote.
    """
    now = float(await conn.fetchval(Q["db_now"]))
    held = ledger.held_by(writes)
    if held:
        live = {row["id"] for row in await conn.fetch(Q["lock_live_silences"], held)}
        writes = ledger.unless_ended(writes, live)
    executions: dict[ledger.ExecutionKey, Execution] = {}
    for write in writes:  # the first event's execution is the one written, as one by one
        executions.setdefault(ledger.execution_key(write.event.execution_id), write.execution)
    keys = sorted(executions)
    rows = [codec.execution_columns(executions[key]) for key in keys]
    await conn.execute(Q["insert_executions"], *_columns(rows, 12))
    locked = await conn.fetch(Q["lock_executions"], *_columns(keys, 3))
    phases = {(r["project"], r["domain"], r["name"]): r["terminal_phase"] for r in locked}
    plan = ledger.plan_intake(writes, phases)
    if plan.moves:
        moves = [(*key, phase) for key, phase in plan.moves]
        await conn.execute(Q["move_to_terminal"], *_columns(moves, 4))
    deliveries = [
        codec.delivery_columns(writes[position], delivery, now)
        for position in plan.enqueued
        for delivery in writes[position].deliveries
    ]
    inserted: dict[str, int] = {}
    if deliveries:
        returned = await conn.fetch(Q["insert_deliveries"], *_columns(deliveries, 18))
        inserted = {r["idempotency_key"]: int(r["id"]) for r in returned}
    events = [
        codec.event_columns(write.event, now, outcome.value)
        for write, outcome in zip(writes, plan.outcomes, strict=True)
    ]
    await conn.execute(Q["insert_events"], *_columns(events, 10))
    steps = ledger.timer_steps(writes, plan)
    for write, ended in steps:
        await _apply_timers(conn, write, ended, now)
    return plan.event_results(writes, inserted), bool(steps)


async def _apply_timers(conn: Conn, write: EventWrite, ended: bool, now: float) -> None:
    """One event's timer work (``TimerWork``), after the events are written: a few
    statements, only for the executions a deadline selects."""
    work = write.timers
    event = write.event
    key = ledger.execution_key(event.execution_id)
    if ended:
        await conn.executemany(Q["cancel_timers"], [(*key, kind) for kind in ledger.ENDED_TIMERS])
        ended_at = codec.timestamp(event.occurred_at)
        await conn.execute(Q["end_alerts"], event.phase, ended_at, *key)
        await conn.execute(Q["arm_resolve_timers"], now, *key)
        for series in work.series:
            await conn.execute(Q["record_duration"], series, ended_at, ended_at, *key)
            await conn.execute(Q["prune_durations"], series, series)
    else:
        if work.arm:
            await conn.executemany(Q["arm_timer"], [codec.timer_columns(t) for t in work.arm])
        if work.cancel:
            cancel = [(*key, kind) for kind in sorted(work.cancel)]
            await conn.executemany(Q["cancel_timers"], cancel)
    started = work.started_at
    for deadline in work.starts:
        named = (deadline.project, deadline.domain, deadline.name)
        satisfied = (started, Timer.schedule_key(deadline), ledger.START_TOLERANCE, started)
        await conn.execute(Q["satisfy_start"], *satisfied, started)
        late = await conn.execute(Q["end_missed_starts"], event.phase, started, *named, started)
        if _rowcount(late):
            await conn.execute(Q["arm_late_start_timers"], now, *named, started)


async def _settle(conn: Conn, settlement: TimerSettlement) -> TimerVerdict:
    """A fired timer taken out and what it leads to written. Its execution's row is
    locked first, as recording an event locks it: the event that ends it and this
    alert take turns, so an alert is either seen by that event (which then arms
    its follow-up) or sees that the execution ended (and says nothing)."""
    timer = settlement.timer
    terminal = moved = None
    if timer.execution is not None and timer.kind is not TimerKind.RESOLVE:
        key = ledger.execution_key(timer.execution)
        terminal = await conn.fetchval(Q["lock_execution"], *key)
        moved = await conn.fetchval(Q["moved_past_queued"], *key)
    row = await conn.fetchrow(Q["delete_fired_timer"], timer.id, settlement.owner)
    if row is None:
        return TimerVerdict.GONE
    if settlement.rearm is not None:
        await conn.execute(Q["arm_timer"], *codec.timer_columns(settlement.rearm))
    if not ledger.timer_holds(timer, terminal, moved is not None, row["satisfied_at"]):
        return ledger.quiet_or_moved_on(timer)
    alert = settlement.alert
    if alert is not None:
        alert_id = await conn.fetchval(Q["insert_alert"], *codec.alert_columns(alert))
        if alert_id is None:
            return TimerVerdict.REPEATED
    now = float(await conn.fetchval(Q["db_now"]))
    held = ledger.silences_of(settlement.deliveries)
    live = {row["id"] for row in await conn.fetch(Q["lock_live_silences"], held)} if held else ()
    rows = [
        codec.deadline_delivery_columns(
            settlement.subject,
            settlement.phase,
            settlement.launch_plan,
            delivery,
            settlement.reason,
            now,
        )
        for delivery in ledger.still_held(settlement.deliveries, live)
    ]
    if rows:
        await conn.executemany(Q["insert_deadline_delivery"], rows)
    return TimerVerdict.FIRED
