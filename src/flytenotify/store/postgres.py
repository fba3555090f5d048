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

All SQL for PostgreSQL lives in this module; the schema lives in
``store/migrations`` with SQLite's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from flytenotify.domain import (
    Attempt,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
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
    StoreUnavailable,
    channel_key,
)
from flytenotify.store.migrations import migrations_for, refuse_newer

log = logging.getLogger("flytenotify.store.postgres")

_T = TypeVar("_T")
if TYPE_CHECKING:  # generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

NOTIFY_CHANNEL = "flytenotify_deliveries"
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

# The database clock in Unix seconds, as the ledger stores times. now() is the
# transaction's start: every row one transaction writes gets the same time.
_DB_NOW = "extract(epoch FROM now())::double precision"

_DELIVERY_COLUMNS = (
    "id, idempotency_key, project, domain, name, phase, notification_index, kind, channel,"
    " recipient, message, launch_plan, status, attempts, created_at, next_attempt_at, last_reply"
)

# Every column of the RETURNING list qualified, for statements that join.
_DELIVERY_COLUMNS_D = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLUMNS.split(","))

# -- the SQL, in one place ---------------------------------------------------------------

_CLAIM = f"""
UPDATE deliveries AS d
   SET lease_owner = $1, lease_until = {_DB_NOW} + $2, updated_at = {_DB_NOW}
  FROM (SELECT id FROM deliveries
         WHERE status IN ('pending', 'retrying')
           AND channel = $3
           AND next_attempt_at <= {_DB_NOW}
           AND (lease_until IS NULL OR lease_until < {_DB_NOW})
         ORDER BY next_attempt_at
         LIMIT $4
           FOR UPDATE SKIP LOCKED) AS due
 WHERE d.id = due.id
RETURNING {_DELIVERY_COLUMNS_D}
"""

# The distinct channels of pending rows, one index probe each (a "loose index
# scan"): "any channel but these" as one condition would read every pending row.
_FOUND_CHANNELS = """
WITH RECURSIVE found(channel) AS (
    (SELECT channel FROM deliveries WHERE status IN ('pending', 'retrying')
      ORDER BY channel LIMIT 1)
    UNION ALL
    SELECT (SELECT d.channel FROM deliveries AS d
             WHERE d.status IN ('pending', 'retrying') AND d.channel > found.channel
             ORDER BY d.channel LIMIT 1)
      FROM found WHERE found.channel IS NOT NULL
)"""
_PENDING_CHANNELS = _FOUND_CHANNELS + "\nSELECT channel FROM found WHERE channel IS NOT NULL"

# One statement for a whole batch of outcomes: the arrays are the batch's
# columns. A row counts only if this owner still holds it; its attempt number
# is the row's new attempt count. A retry's delay is re-based on the database
# clock (the dispatcher computed "its now + delay").
_COMPLETE = f"""
WITH batch AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                         $5::double precision[], $6::double precision[],
                         $7::double precision[], $8::text[])
           AS b(id, owner, status, reply, delay, started_at, finished_at, outcome)
), done AS (
    UPDATE deliveries AS d
       SET status = batch.status, attempts = d.attempts + 1, last_reply = batch.reply,
           next_attempt_at = {_DB_NOW} + batch.delay,
           lease_owner = NULL, lease_until = NULL, updated_at = {_DB_NOW}
      FROM batch
     WHERE d.id = batch.id AND d.lease_owner = batch.owner
       AND d.status IN ('pending', 'retrying')
    RETURNING d.id, d.attempts
)
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
SELECT done.id, done.attempts, batch.started_at, batch.finished_at, batch.outcome, batch.reply
  FROM done JOIN batch ON batch.id = done.id
"""

# By primary key: a renewal costs the same however many rows are pending.
_RENEW = f"""
UPDATE deliveries SET lease_until = {_DB_NOW} + $3
 WHERE id = ANY($2::bigint[]) AND lease_owner = $1 AND status IN ('pending', 'retrying')
"""

_RELEASE = """
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
 WHERE lease_owner = $1 AND status IN ('pending', 'retrying')
"""

# Seconds from the database's "now" to the earliest due row (negative if overdue).
# When the earliest pending row can next be claimed, in seconds from now, by
# index probes per pending channel (a plain MIN over the rows would read them
# all, a million during an outage). Per channel: its first row not leased; if
# that is not due yet, the earliest lease to pass, found among the due rows,
# which are then all leased (claims only take due rows), so few.
_NEXT_DUE_IN = (
    _FOUND_CHANNELS
    + f"""
, first_free AS (
    SELECT found.channel,
           (SELECT d.next_attempt_at FROM deliveries AS d
             WHERE d.status IN ('pending', 'retrying') AND d.channel = found.channel
               AND (d.lease_until IS NULL OR d.lease_until < {_DB_NOW})
             ORDER BY d.next_attempt_at LIMIT 1) AS at
      FROM found WHERE found.channel IS NOT NULL
)
SELECT MIN(CASE WHEN at <= {_DB_NOW} THEN at
                ELSE LEAST(at, (SELECT MIN(d.lease_until) FROM deliveries AS d
                                 WHERE d.status IN ('pending', 'retrying')
                                   AND d.channel = first_free.channel
                                   AND d.next_attempt_at <= {_DB_NOW}))
           END) - {_DB_NOW}
  FROM first_free
"""
)

_REDRIVE = f"""
UPDATE deliveries SET status = 'pending', next_attempt_at = {_DB_NOW}, updated_at = {_DB_NOW},
       lease_owner = NULL, lease_until = NULL
 WHERE id = $1 AND status = 'dead'
RETURNING {_DELIVERY_COLUMNS}
"""

_REDRIVE_ATTEMPT = f"""
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
VALUES ($1, $2, {_DB_NOW}, {_DB_NOW}, 'redrive', 're-driven by an operator')
"""

_INSERT_EXECUTION = """
INSERT INTO executions (project, domain, name, launch_plan, workflow, notifications, created_at,
                        notifications_source, lookup_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING
"""

_SELECT_EXECUTION = "SELECT * FROM executions WHERE project = $1 AND domain = $2 AND name = $3"

_MOVE_TO_TERMINAL = """
UPDATE executions SET terminal_phase = $1, terminal_at = $2
 WHERE project = $3 AND domain = $4 AND name = $5 AND terminal_phase IS NULL
"""

_TERMINAL_PHASE = (
    "SELECT terminal_phase FROM executions WHERE project = $1 AND domain = $2 AND name = $3"
)

_INSERT_DELIVERY = """
INSERT INTO deliveries (idempotency_key, project, domain, name, phase, notification_index, kind,
                        channel, recipient, message, launch_plan, status, created_at, updated_at,
                        next_attempt_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::double precision[], $14::double precision[], $15::double precision[])
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""

_INSERT_EVENT = """
INSERT INTO events (project, domain, name, phase, occurred_at, producer_id, error, received_at,
                    outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

_LATEST_LAUNCH_PLANS = (
    "SELECT * FROM launch_plans AS lp WHERE seq = (SELECT MAX(seq) FROM launch_plans AS other"
    " WHERE other.project = lp.project AND other.domain = lp.domain AND other.name = lp.name)"
    " ORDER BY project, domain, name"
)

_SELECT_EXECUTIONS = """
SELECT e.* FROM executions AS e
JOIN unnest($1::text[], $2::text[], $3::text[]) AS wanted (project, domain, name)
  ON e.project = wanted.project AND e.domain = wanted.domain AND e.name = wanted.name
"""

# Slots are spaced on the database's clock: replicas' clocks may disagree.
_RESERVE_SLOT = """
WITH now AS (SELECT extract(epoch FROM clock_timestamp())::double precision AS at)
INSERT INTO pacing AS p (key, next_at) SELECT $1, now.at + $2 FROM now
ON CONFLICT (key) DO UPDATE
    SET next_at = GREATEST(p.next_at, (SELECT at FROM now)) + $2
RETURNING p.next_at - $2 - (SELECT at FROM now)
"""

_BLOCK_SLOTS = """
INSERT INTO pacing AS p (key, next_at)
VALUES ($1, extract(epoch FROM clock_timestamp())::double precision + $2)
ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(p.next_at, excluded.next_at)
"""

_REGISTER_LAUNCH_PLAN = """
INSERT INTO launch_plans (project, domain, name, version, notifications, registered_at, seq)
VALUES ($1, $2, $3, $4, $5, $6, (SELECT COALESCE(MAX(seq), 0) + 1 FROM launch_plans))
ON CONFLICT (project, domain, name, version) DO UPDATE SET
    notifications = excluded.notifications, registered_at = excluded.registered_at,
    seq = excluded.seq
"""

_INSERT_INBOX = """
INSERT INTO inbox (delivery_id, kind, recipient, subject, body, received_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""

_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)
"""

_CURRENT_VERSION = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"


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


def _completion_columns(completions: Sequence[Completion]) -> list[list[Any]]:
    """The batch as the eight column arrays ``_COMPLETE`` unnests."""
    columns: list[list[Any]] = [[] for _ in range(8)]
    for c in completions:
        delay = None if c.next_attempt_at is None else c.next_attempt_at - c.finished_at
        row = (
            c.delivery_id,
            c.lease_owner,
            c.status.value,
            c.reply,
            delay,
            c.started_at,
            c.finished_at,
            c.outcome,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


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


class PostgresStore:
    """The :class:`~flytenotify.store.base.Store` protocol on a PostgreSQL database.

    ``url`` is a ``postgresql://`` (or ``postgres://``) URL as libpq takes it;
    ``?pool_min=N&pool_max=M`` in it size the connection pool when
    ``min_size``/``max_size`` are not given. ``retry_for`` bounds how long one
    call keeps retrying through a lost connection before it raises.
    """

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
        self._callbacks: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------------------

    async def _run(
        self,
        body: Callable[[Conn], Awaitable[_T]],
        *,
        transaction: bool = True,
        retry: bool = True,
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
        pool = self._require_pool()
        deadline = time.monotonic() + (self.retry_for if retry else 0.0)
        delay = 0.05
        while True:
            try:
                async with pool.acquire(timeout=self.connect_timeout) as conn:
                    if not transaction:
                        return await body(conn)
                    async with conn.transaction():
                        return await body(conn)
            except Exception as error:
                if not is_transient(error) or time.monotonic() + delay > deadline:
                    raise
                log.warning("PostgreSQL call failed (%r); retrying in %.2f s", error, delay)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_BACKOFF)

    def _require_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreUnavailable("not connected to PostgreSQL (yet)")
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
        await self._run(_migrate, retry=retry)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
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
        if self._listener is not None:
            return
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen_forever(ready))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), self.connect_timeout)

    def _wake(self) -> None:
        for callback in self._callbacks:
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
            ready.set()
            self._wake()  # whatever was enqueued while nobody listened
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
            # seq is "registration order": serialise registrations so two
            # replicas never hand out the same number. Readers are not blocked.
            await conn.execute("LOCK TABLE launch_plans IN SHARE ROW EXCLUSIVE MODE")
            await conn.execute(
                _REGISTER_LAUNCH_PLAN,
                plan.id.project,
                plan.id.domain,
                plan.id.name,
                plan.id.version,
                codec.dump_notifications(plan.notifications),
                codec.timestamp(plan.registered_at),
            )

        await self._run(write)

    async def get_launch_plan(self, plan_id: EntityId) -> LaunchPlan | None:
        async def read(conn: Conn) -> LaunchPlan | None:
            sql = "SELECT * FROM launch_plans WHERE project = $1 AND domain = $2 AND name = $3"
            args: list[Any] = [plan_id.project, plan_id.domain, plan_id.name]
            if plan_id.version:
                sql += " AND version = $4"
                args.append(plan_id.version)
            row = await conn.fetchrow(sql + " ORDER BY seq DESC LIMIT 1", *args)
            return codec.launch_plan_from_row(dict(row)) if row else None

        return await self._run(read, transaction=False)

    async def latest_launch_plans(self) -> list[LaunchPlan]:
        async def read(conn: Conn) -> list[LaunchPlan]:
            rows = await conn.fetch(_LATEST_LAUNCH_PLANS)
            return [codec.launch_plan_from_row(dict(r)) for r in rows]

        return await self._run(read, transaction=False)

    async def create_execution(self, execution: Execution) -> tuple[Execution, bool]:
        async def write(conn: Conn) -> tuple[Execution, bool]:
            created = await _insert_execution(conn, execution)
            stored = await _select_execution(conn, execution.id)
            assert stored is not None
            return stored, created

        return await self._run(write)

    async def get_execution(self, execution_id: ExecutionId) -> Execution | None:
        return await self._run(
            lambda conn: _select_execution(conn, execution_id), transaction=False
        )

    async def get_executions(self, ids: Sequence[ExecutionId]) -> dict[ExecutionId, Execution]:
        unique = list(set(ids))

        async def read(conn: Conn) -> dict[ExecutionId, Execution]:
            rows = await conn.fetch(
                _SELECT_EXECUTIONS,
                [i.project for i in unique],
                [i.domain for i in unique],
                [i.name for i in unique],
            )
            found = (codec.execution_from_row(dict(row)) for row in rows)
            return {execution.id: execution for execution in found}

        return await self._run(read, transaction=False)

    # -- events ---------------------------------------------------------------------------

    async def record_events(self, writes: Sequence[EventWrite]) -> list[EventResult]:
        async def write(conn: Conn) -> list[EventResult]:
            now = float(await conn.fetchval(f"SELECT {_DB_NOW}"))
            results = [await _record_event(conn, item, now) for item in writes]
            if any(r.delivery_ids for r in results):
                # Delivered to listeners only if and when this transaction commits.
                await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
            return results

        return await self._run(write)

    # -- dispatch ---------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        limits: dict[str, int],
        completions: Sequence[Completion] = (),
    ) -> list[Delivery]:
        # ``now`` is the caller's clock; the database's is the one every replica shares.
        del now

        async def write(conn: Conn) -> list[Delivery]:
            if completions:
                await conn.execute(_COMPLETE, *_completion_columns(completions))
            room = dict(limits)
            claimed: list[Delivery] = []
            if not any(room.values()):
                return claimed
            for found in await conn.fetch(_PENDING_CHANNELS):
                channel = found["channel"]
                key = channel_key(channel, room)
                limit = room.get(key, 0)
                if limit > 0:
                    rows = await conn.fetch(_CLAIM, owner, lease, channel, limit)
                    room[key] = limit - len(rows)
                    claimed.extend(codec.delivery_from_row(dict(r)) for r in rows)
            return claimed

        # No transaction: each statement is atomic on its own (the outcomes'
        # too), and holding one channel's row locks while claiming the next
        # gains nothing.
        return await self._run(write, transaction=False)

    async def complete(self, completions: Sequence[Completion]) -> None:
        if not completions:
            return

        async def write(conn: Conn) -> None:
            await conn.execute(_COMPLETE, *_completion_columns(completions))

        await self._run(write)

    async def renew_leases(
        self, owner: str, delivery_ids: Sequence[int], now: float, lease: float
    ) -> int:
        del now  # leases are judged by the database's clock
        ids = list(delivery_ids)
        if not ids:
            return 0

        async def write(conn: Conn) -> int:
            return _rowcount(await conn.execute(_RENEW, owner, ids, lease))

        return await self._run(write, transaction=False)

    async def release(self, owner: str) -> int:
        async def write(conn: Conn) -> int:
            released = _rowcount(await conn.execute(_RELEASE, owner))
            if released:
                # Claimable now: let the other replicas pick them up at once.
                await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
            return released

        return await self._run(write)

    async def next_due_at(self) -> float | None:
        # The answer is in the caller's clock: the dispatcher subtracts its own
        # time.time() to know how long to sleep, so give it "its now + the wait
        # the database sees".
        async def read(conn: Conn) -> float | None:
            due_in = await conn.fetchval(_NEXT_DUE_IN)
            return None if due_in is None else time.time() + float(due_in)

        return await self._run(read, transaction=False)

    async def redrive(self, delivery_id: int, now: float) -> Delivery | None:
        del now  # due at once by the database's clock

        async def write(conn: Conn) -> Delivery | None:
            row = await conn.fetchrow(_REDRIVE, delivery_id)
            if row is None:
                return None
            await conn.execute(_REDRIVE_ATTEMPT, delivery_id, row["attempts"])
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
            return codec.delivery_from_row(dict(row))

        return await self._run(write)

    async def add_to_inbox(self, delivery: Delivery, body: str, now: float) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(
                _INSERT_INBOX,
                delivery.id,
                delivery.kind,
                delivery.recipient,
                delivery.message.subject,
                body,
                now,
            )

        await self._run(write)

    # -- pacing ------------------------------------------------------------------------------

    async def reserve_slot(self, key: str, interval: float) -> float:
        async def write(conn: Conn) -> float:
            wait = await conn.fetchval(_RESERVE_SLOT, key, interval)
            return max(0.0, float(wait))

        return await self._run(write, transaction=False)

    async def block_slots(self, key: str, seconds: float) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(_BLOCK_SLOTS, key, seconds)

        await self._run(write, transaction=False)

    # -- queries ----------------------------------------------------------------------------

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        async def read(conn: Conn) -> Delivery | None:
            row = await conn.fetchrow(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = $1", delivery_id
            )
            return codec.delivery_from_row(dict(row)) if row else None

        return await self._run(read, transaction=False)

    async def list_deliveries(self, query: DeliveryFilter) -> list[Delivery]:
        async def read(conn: Conn) -> list[Delivery]:
            sql, args = list_deliveries_sql(query)
            rows = await conn.fetch(sql, *args)
            return [codec.delivery_from_row(dict(r)) for r in rows]

        return await self._run(read, transaction=False)

    async def list_attempts(self, delivery_id: int) -> list[Attempt]:
        async def read(conn: Conn) -> list[Attempt]:
            rows = await conn.fetch(
                "SELECT * FROM attempts WHERE delivery_id = $1 ORDER BY id", delivery_id
            )
            return [codec.attempt_from_row(dict(r)) for r in rows]

        return await self._run(read, transaction=False)

    async def count_by_status(self) -> dict[str, int]:
        async def read(conn: Conn) -> dict[str, int]:
            counts = {status.value: 0 for status in DeliveryStatus}
            for row in await conn.fetch("SELECT status, COUNT(*) FROM deliveries GROUP BY status"):
                counts[row[0]] = int(row[1])
            return counts

        return await self._run(read, transaction=False)

    async def list_inbox(self, after_id: int | None = None, limit: int = 100) -> list[InboxMessage]:
        async def read(conn: Conn) -> list[InboxMessage]:
            rows = await conn.fetch(
                "SELECT * FROM inbox WHERE id > $1 ORDER BY id LIMIT $2", after_id or 0, limit
            )
            return [InboxMessage(**dict(r)) for r in rows]

        return await self._run(read, transaction=False)

    async def list_events(self, execution_id: ExecutionId) -> list[tuple[ExecutionEvent, str]]:
        async def read(conn: Conn) -> list[tuple[ExecutionEvent, str]]:
            rows = await conn.fetch(
                "SELECT * FROM events WHERE project = $1 AND domain = $2 AND name = $3 ORDER BY id",
                execution_id.project,
                execution_id.domain,
                execution_id.name,
            )
            return [(codec.event_from_row(dict(r)), r["outcome"]) for r in rows]

        return await self._run(read, transaction=False)


# -- transaction bodies -----------------------------------------------------------------------


async def _current_version(conn: Conn) -> int:
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return 0
    return int(await conn.fetchval(_CURRENT_VERSION))


async def _migrate(conn: Conn) -> int:
    """Bring the schema up to date; run inside a transaction (DDL is transactional here)."""
    # Held until commit: concurrent replicas queue here instead of racing.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
    await conn.execute(_SCHEMA_MIGRATIONS)
    current = int(await conn.fetchval(_CURRENT_VERSION))
    refuse_newer(current)
    migrations = migrations_for("postgresql")
    for version in sorted(v for v in migrations if v > current):
        await conn.execute(migrations[version])  # no arguments: several statements may run
        await conn.execute(
            f"INSERT INTO schema_migrations (version, applied_at) VALUES ($1, {_DB_NOW})",
            version,
        )
        current = version
    return current


async def _insert_execution(conn: Conn, execution: Execution) -> bool:
    status = await conn.execute(_INSERT_EXECUTION, *codec.execution_columns(execution))
    return _rowcount(status) == 1


async def _select_execution(conn: Conn, execution_id: ExecutionId) -> Execution | None:
    row = await conn.fetchrow(
        _SELECT_EXECUTION, execution_id.project, execution_id.domain, execution_id.name
    )
    return codec.execution_from_row(dict(row)) if row else None


async def _record_event(conn: Conn, item: EventWrite, now: float) -> EventResult:
    event = item.event
    key = (event.execution_id.project, event.execution_id.domain, event.execution_id.name)
    await _insert_execution(conn, item.execution)
    outcome = await _advance_execution(conn, item, now)
    ids: list[int] = []
    if outcome is EventOutcome.ENQUEUED and item.deliveries:
        ds = item.deliveries
        n = len(ds)
        launch_plan = codec.dump_entity(item.execution.launch_plan)
        rows = await conn.fetch(
            _INSERT_DELIVERY,
            [d.idempotency_key for d in ds],
            [key[0]] * n,
            [key[1]] * n,
            [key[2]] * n,
            [event.phase] * n,
            [d.notification_index for d in ds],
            [d.kind for d in ds],
            [d.channel for d in ds],
            [d.recipient for d in ds],
            [d.message.json_text for d in ds],
            [launch_plan] * n,
            ["pending"] * n,
            [now] * n,
            [now] * n,
            [now] * n,
        )
        # One multi-row INSERT: RETURNING gives the ids in the order of the rows
        # inserted (skipped conflicts give none); sort to match SQLite's order.
        ids = sorted(int(r["id"]) for r in rows)
    await conn.execute(_INSERT_EVENT, *codec.event_columns(event, now, outcome.value))
    return EventResult(outcome, tuple(ids))


async def _advance_execution(conn: Conn, item: EventWrite, now: float) -> EventOutcome:
    """Decide what the event means for its execution, moving it to terminal if first.

    Two replicas recording terminal events of one execution at once serialise
    on the execution's row lock: the second UPDATE waits, re-checks
    ``terminal_phase IS NULL`` against the committed row and moves nothing.
    """
    event = item.event
    key = (event.execution_id.project, event.execution_id.domain, event.execution_id.name)
    if event.is_terminal:
        moved = _rowcount(await conn.execute(_MOVE_TO_TERMINAL, event.phase, now, *key))
        if moved:
            return EventOutcome.ENQUEUED if item.deliveries else EventOutcome.NO_NOTIFICATIONS
    terminal = await conn.fetchval(_TERMINAL_PHASE, *key)
    if terminal is None:
        return EventOutcome.RECORDED
    return EventOutcome.DUPLICATE if terminal == event.phase else EventOutcome.AFTER_TERMINAL


def list_deliveries_sql(query: DeliveryFilter) -> tuple[str, list[Any]]:
    """The query :meth:`PostgresStore.list_deliveries` runs (its plan is tested on many rows)."""
    where, args = _delivery_conditions(query)
    order = "DESC" if query.newest_first else "ASC"
    sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries {where} ORDER BY id {order}"
    return f"{sql} LIMIT ${len(args) + 1}", [*args, query.limit]


def _delivery_conditions(query: DeliveryFilter) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.execution is not None:
        conditions.append(
            f"project = {arg(query.execution.project)} AND domain = {arg(query.execution.domain)}"
            f" AND name = {arg(query.execution.name)}"
        )
    if query.status is not None:
        conditions.append(f"status = {arg(query.status.value)}")
    if query.channel is not None:
        conditions.append(f"channel = {arg(query.channel)}")
    if query.since is not None:
        conditions.append(f"created_at >= {arg(query.since)}")
    if query.after_id is not None:
        conditions.append(f"id > {arg(query.after_id)}")
    for column, value in (
        ("recipient", query.recipient),
        ("project", query.project),
        ("domain", query.domain),
        ("launch_plan::jsonb ->> 'name'", query.launch_plan),
    ):
        if value is not None:
            conditions.append(f"{column} = {arg(value)}")
    if query.before_id is not None:
        conditions.append(f"id < {arg(query.before_id)}")
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), args
