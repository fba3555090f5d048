"""``flytenotify serve``: the API and the dispatcher in one process, one event loop,
and with ``[server] workers`` above one, dispatcher workers beside it
(:mod:`flytenotify.workers`).

With intake sections configured (roles ``all`` and ``api``), their sources
run beside the API: a broker source per ``[intake.*]`` section feeds
FlyteAdmin's cloud events in, a watch per ``[flyte2]`` project Flyte 2's runs.

SIGTERM or SIGINT stops accepting requests, stops the broker sources (each
finishes the batch in hand: every message is acknowledged only once recorded,
or left to the broker), lets the dispatcher finish or release what it holds,
closes the database and returns normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import itertools
import json
import logging
import os
import platform
import signal
import sys
from collections.abc import Coroutine, Generator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import uvicorn

from flytenotify.app import Notifier
from flytenotify.channels import registry
from flytenotify.channels.base import SendResult
from flytenotify.domain import Delivery
from flytenotify.engine.dispatch import AttemptObserver
from flytenotify.intake import egress
from flytenotify.intake import registry as intakes
from flytenotify.intake.source import Feed
from flytenotify.metrics import Metrics
from flytenotify.settings_loader import LoadedConfig, channel_states, shown_database
from flytenotify.store import unreachable
from flytenotify.web.api import create_app
from flytenotify.workers import Supervisor, WorkerLink, worker_command, worker_env

log = logging.getLogger("flytenotify.service")

# Backoff between attempts to reach a database server that is not there yet.
_OPEN_RETRY_MIN, _OPEN_RETRY_MAX = 1.0, 5.0

LogFormat = Literal["text", "json"]


class UnsafeBind(Exception):
    """Listening beyond loopback without API tokens."""


class StartupFailed(Exception):
    """The database refused us for a reason that waiting will not fix."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(config: LoadedConfig) -> None:
    server = config.server
    if not is_loopback(server.host) and not server.tokens():
        raise UnsafeBind(
            f"refusing to listen on {server.host}: it is not a loopback address and no API "
            "tokens are configured; set server.api_tokens (or server.api_tokens_file, or "
            "FLYTENOTIFY_SERVER__API_TOKENS), or listen on 127.0.0.1"
        )


class _JsonFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _ExceptionOnOneLine(logging.Filter):
    """Folds a record's exception into its message, traceback dropped.

    For asyncpg's pool, whose only exceptions are reconnection attempts
    failing while the database is away: one line each says all there is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is not None and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({record.exc_info[1]!r})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(fmt: LogFormat, worker: int | None = None) -> None:
    """Log to stderr; a dispatcher worker's lines say its number (its stderr is its parent's)."""
    handler = logging.StreamHandler(sys.stderr)
    tag = "" if worker is None else f"[worker {worker}] "
    handler.setFormatter(
        _JsonFormatter(worker)
        if fmt == "json"
        else logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _ExceptionOnOneLine) for f in pool_log.filters):
        pool_log.addFilter(_ExceptionOnOneLine())


class _Server(uvicorn.Server):
    """uvicorn's server without its signal re-raising: we own shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
                pass
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _stop(self, sig: int) -> None:
        log.info("received %s, shutting down", signal.Signals(sig).name)
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


Role = Literal["all", "api", "dispatcher"]

# Young collections every 50,000 allocations rather than 700. Each send and each
# event allocates enough containers to trigger one every few sends, and the
# older generations, full of what start-up loaded, were scanned again and again:
# on 10,000 webhooks the collector took a fifth of the process's CPU. With
# start-up's objects frozen out of it and these thresholds, under 1%.
# Reference counting frees nearly everything anyway; only cyclic garbage waits
# for the collector, and there is little of it.
GC_THRESHOLDS = (50_000, 20, 10)


# Sockets beyond the sends in flight: the database, the API's clients, the brokers.
SOCKET_HEADROOM = 1024


def allow_sockets(wanted: int) -> None:
    """Raise the open-file limit to ``wanted`` if it is lower, as far as the hard limit allows.

    Every send in flight holds a socket, and the usual soft limit (1,024) is
    below ``dispatch.max_in_flight``'s default: past it connections fail with
    "Too many open files". Go's runtime raises the limit the same way.
    """
    try:
        import resource
    except ImportError:  # not on this platform (Windows): its limit is its own
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < wanted:
        log.warning(
            "open files are limited to %d (hard limit); dispatch.max_in_flight wants %d: "
            "raise the limit (ulimit -n, LimitNOFILE=) or lower dispatch.max_in_flight",
            raised,
            wanted,
        )


# mallopt's parameter number for the most arenas glibc's malloc keeps (malloc.h).
_M_ARENA_MAX = -8


def one_malloc_arena() -> None:
    """Have glibc's malloc serve every thread from one arena, unless MALLOC_ARENA_MAX is set.

    glibc gives each thread that allocates an arena of its own (up to eight
    per core), and what one thread allocates and another frees goes back to
    the first one's arena, where the other cannot reuse it. This process's
    threads (the event loop, the ledger's writer and reader, the resolver's)
    take turns under the GIL anyway: with a thousand webhooks in flight, one
    arena keeps each process about 3 MiB smaller, as fast. Elsewhere (musl,
    macOS, Windows) there is nothing to do.
    """
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return
    import ctypes  # only here: a few hundred KiB that other C libraries do not need

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)


def settle_garbage_collection() -> None:
    """Freeze what start-up made (never scanned again) and collect the young less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the service's event loop: uvloop where it is installed, asyncio otherwise.

    The API, the dispatcher and every channel share this one loop, so its
    per-callback cost is paid on every request and every send.
    """
    try:
        import uvloop
    except ImportError:  # e.g. Windows, which uvloop does not support
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def serve(
    config: LoadedConfig,
    role: Role = "all",
    intake: Sequence[intakes.Built] | None = None,
    *,
    log_format: LogFormat = "text",
    link: WorkerLink | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; raises :class:`UnsafeBind` before doing anything unsafe.

    ``role`` splits the process for scaling out: ``api`` serves requests and
    never dispatches; ``dispatcher`` dispatches and serves only health and
    metrics (for probes and scraping); ``all`` does both.

    ``intake`` are the sources built from ``config`` (by the caller, who checked
    that their client libraries are installed), built here if not given; they
    run with the API, so not in the ``dispatcher`` role.

    In the ``all`` role, ``[server] workers`` above one also starts that many
    minus one dispatcher workers (:mod:`flytenotify.workers`), logging in
    ``log_format``. ``link`` is given in such a worker: its tie to the parent.

    HTTP is served at once, while the database may still be unreachable: a
    replica started before its PostgreSQL waits for it as long as it takes,
    answering ``/healthz`` 200 and ``/readyz`` 503 meanwhile. A database that
    refuses for good (a bad password, a newer schema) raises
    :class:`StartupFailed`.
    """
    check_bind(config)
    one_malloc_arena()  # before the ledger's threads first allocate
    allow_sockets(config.settings.dispatch.max_in_flight + SOCKET_HEADROOM)
    server_config = config.server
    metrics = Metrics()
    notifier = Notifier(
        config.settings, dev_inbox=server_config.dev_inbox, observer=_observer(metrics, link)
    )
    if link is None:
        _log_startup(config, notifier)
        log.info("role: %s", role)
    else:  # the parent said it all already
        log.info("dispatcher worker %d (pid %d)", link.number, os.getpid())
    supervisor = _supervisor(config, metrics, log_format) if role == "all" and not link else None
    if role == "dispatcher":
        intake = []
    elif intake is None:
        intake = intakes.build(config.settings)
    sources = [each.source for each in intake]
    metrics.watch_sources(sources)
    app = create_app(
        notifier,
        server_config,
        metrics,
        api=role != "dispatcher",
        sources=sources,
        workers=supervisor,
    )
    uv_config = uvicorn.Config(
        app,
        host=server_config.host,
        port=server_config.port,
        log_config=None,
        lifespan="off",
        access_log=False,
        server_header=False,
    )
    server = _Server(uv_config)
    running = _Intake(intake, egress.feed(notifier, metrics))
    settle_garbage_collection()  # everything is imported and built: what follows is traffic
    starting = asyncio.create_task(
        _start(notifier, config, role, server, running, supervisor, worker=link is not None)
    )
    if link is not None:
        # Its first report, which tells the parent we are up, runs at the loop's
        # first turn: after server.serve() below has set the signal handlers.
        link.start_reporting()
    try:
        await server.serve()
        if running.tasks:
            log.info("no longer accepting requests; stopping intake after the batches in hand")
            running.stop.set()
            await asyncio.gather(*running.tasks)
        log.info("no longer accepting requests; finishing in-flight deliveries")
        if starting.done():
            starting.result()  # re-raise why it could not start
        await asyncio.gather(notifier.stop_dispatching(), _stop_workers(supervisor))
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # raised above if it failed
            await starting
        await _stop_workers(supervisor)  # if it failed before they were asked to
        if link is not None:
            await link.stop_reporting()
        await notifier.close()
    log.info("stopped")


def _observer(metrics: Metrics, link: WorkerLink | None) -> AttemptObserver:
    """Attempts count in this process's /metrics, and a worker's in its parent's too."""
    if link is None:
        return metrics.observe_attempt

    def both(delivery: Delivery, result: SendResult, seconds: float) -> None:
        metrics.observe_attempt(delivery, result, seconds)
        link.observe_attempt(delivery, result, seconds)

    return both


def _supervisor(config: LoadedConfig, metrics: Metrics, log_format: LogFormat) -> Supervisor:
    """The dispatcher workers ``[server] workers`` asks for beside this process."""
    settings = config.settings
    path = settings.database.sqlite_path
    database = str(path.resolve()) if path is not None else settings.database.url
    return Supervisor(
        config.server.workers,
        worker_command(config.source, log_format),
        worker_env(database),
        metrics,
        grace=settings.dispatch.shutdown_grace,
    )


async def _stop_workers(supervisor: Supervisor | None) -> None:
    if supervisor is not None:
        await supervisor.stop()


class _Intake:
    """The intake sources, started once the ledger is open (they record into it)."""

    def __init__(self, built: Sequence[intakes.Built], feed: Feed) -> None:
        self.built = list(built)
        self.feed = feed
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [_start_source(each, self.feed, self.stop) for each in self.built]


async def _start(
    notifier: Notifier,
    config: LoadedConfig,
    role: Role,
    server: _Server,
    intake: _Intake,
    supervisor: Supervisor | None,
    *,
    worker: bool = False,
) -> None:
    """Open the ledger (waiting for its server if need be), then dispatch and take intake."""
    try:
        await _open_ledger(notifier, config)
    except Exception:
        server.should_exit = True  # serve() returns and re-raises it
        raise
    if not worker:  # a dispatcher worker's parent says it, once
        await _log_routing_problems(notifier)
    if role != "api":
        notifier.start_dispatching()
    if supervisor is not None:  # only now: the ledger exists and has its newest schema
        supervisor.start()
    intake.start()


async def _log_routing_problems(notifier: Notifier) -> None:
    try:
        for problem in await notifier.routing_problems():
            log.error("unroutable recipient: %s (its deliveries will be dead-lettered)", problem)
    except Exception as error:  # the database went away again; dispatching copes with that
        log.warning("could not check the launch plans' recipients: %s", error)


async def _open_ledger(notifier: Notifier, config: LoadedConfig) -> None:
    url = config.settings.database.url
    where = shown_database(config.settings)  # the password redacted
    for attempt in itertools.count(1):
        try:
            await notifier.start(retry=False)  # one try each: the waiting is done here
        except Exception as error:
            if not unreachable(url, error):
                raise StartupFailed(f"cannot open the database {where}: {error}") from error
            delay = min(_OPEN_RETRY_MAX, _OPEN_RETRY_MIN * 2 ** (attempt - 1))
            log.warning(
                "database %s is not reachable (attempt %d: %s: %s); /readyz answers 503;"
                " trying again in %.0f s",
                where,
                attempt,
                type(error).__name__,
                error,
                delay,
            )
            await asyncio.sleep(delay)
            continue
        if attempt > 1:
            log.info("database %s is reachable; starting", where)
        return


def _start_source(each: intakes.Built, feed: Feed, stop: asyncio.Event) -> asyncio.Task[None]:
    log.info("intake %s: %s", each.source.name, each.source.describe())
    return asyncio.create_task(_run_source(each, feed, stop))


async def _run_source(each: intakes.Built, feed: Feed, stop: asyncio.Event) -> None:
    # A source that gives up (a bug, a source not written yet) is reported and
    # shows as not ready; it must not take the API and the dispatcher down.
    source = each.source
    try:
        await each.run(feed, stop)
    except Exception as error:
        source.status.failed(error)
        log.exception("intake %s stopped: %s", source.name, error)


def _log_startup(config: LoadedConfig, notifier: Notifier) -> None:
    channels = channel_states(config.settings, notifier.dev_inbox)
    path = config.settings.database.sqlite_path
    database = str(path.resolve()) if path is not None else shown_database(config.settings)
    log.info("database: %s", database)
    if config.source is not None:
        log.info("configuration: %s", config.source)
    dev = [name for name, state in channels.items() if state == "dev-inbox"]
    for name, state in channels.items():
        log.info("channel %s: %s", name, state)
    if dev:
        log.info(
            "dev-inbox mode for %s: their messages are NOT sent, they are kept in the local "
            "inbox (flytenotify inbox, GET /api/v1/inbox)",
            ", ".join(dev),
        )
    if notifier.lookup is not None:
        log.info(
            "notifications: registered through our API first; executions we do not know are"
            " looked up in FlyteAdmin at %s",
            notifier.lookup.description,
        )
    else:
        log.info(
            "notifications: only those registered through our API; events for other"
            " executions are recorded with none ([flyteadmin] is not configured)"
        )
    auth = "bearer token required" if config.server.tokens() else "no authentication"
    log.info("listening on http://%s:%d (%s)", config.server.host, config.server.port, auth)
    unrestricted = [
        name
        for name, state in channels.items()
        if state.startswith("configured")
        and config.settings.allow.entries(name) is None
        and _restricted_by_name(name)
    ]
    if unrestricted and not is_loopback(config.server.host):
        log.warning(
            "no [allow] list for %s: any API token holder can have them message any "
            "recipient; see docs/deployment.md#security",
            ", ".join(unrestricted),
        )


def _restricted_by_name(channel: str) -> bool:
    """Whether ``[allow] CHANNEL`` lists who ``channel`` may message (unset: anyone);
    a channel restricted by another key (inline webhooks' URL patterns) sends
    nothing unless that key lists something."""
    spec = registry.get(channel)
    return spec is not None and spec.allow_key is None
