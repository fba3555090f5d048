"""``serve`` on every core: the parent process and its dispatcher workers.

One Python process runs on one core. With ``[server] workers`` above one,
``serve`` (role ``all``) stays one service: the parent serves the API, takes
intake and dispatches, and keeps ``workers - 1`` children running
``flytenotify serve --role dispatcher`` on the same ledger. They share the
work as replicas do: rows are leased, so each delivery has one owner, and a
dead worker's leases pass to the others within ``retry.lease``.

The parent's side is :class:`Supervisor`: it starts the children once the
ledger is open (and migrated), restarts one that dies with backoff, passes
SIGTERM on and waits for their in-flight sends, and adds the attempts they
report to its own ``/metrics``. The child's side is :class:`WorkerLink`: it
dies with its parent, even one killed with SIGKILL (a dispatcher outliving
its service would keep leases and send beside the next one), and reports its
attempts up its stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flytenotify.channels.base import SendResult
from flytenotify.domain import Delivery
from flytenotify.metrics import Metrics

log = logging.getLogger("flytenotify.workers")

# A worker that dies is started again after 1 s, then 2, 4... up to 30 s; one
# that ran this long before dying starts the count again.
_RESTART_MIN, _RESTART_MAX = 1.0, 30.0
_HEALTHY_RUN = 60.0
# How often a worker reports its attempts to the parent's /metrics, and the
# most attempts one report line carries: lines stay far below what the
# parent reads as one (_REPORT_LINE_LIMIT), however fast the worker sends.
_REPORT_EVERY = 0.5
_REPORT_MOST = 500
_REPORT_LINE_LIMIT = 1024 * 1024
# Beyond the workers' own shutdown grace: how long the parent waits before SIGKILL.
_STOP_MARGIN = 15.0


@dataclass
class _Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    # It reported (it does once it is up, its signal handlers set): SIGTERM
    # now stops it gracefully rather than ending it outright.
    up: bool = False


class Supervisor:
    """Keeps ``wanted - 1`` dispatcher workers running beside this process."""

    def __init__(
        self,
        wanted: int,
        command: Sequence[str],
        env: dict[str, str],
        metrics: Metrics,
        grace: float,
    ) -> None:
        self.wanted = wanted
        self._command = list(command)
        self._env = env
        self._metrics = metrics
        self._workers = [_Worker(number) for number in range(2, wanted + 1)]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stopped = asyncio.Event()  # ends a restart's backoff at once
        self._grace = grace  # the workers' dispatch.shutdown_grace

    @property
    def running(self) -> int:
        """Processes up now, this one included."""
        return 1 + sum(1 for w in self._workers if w.up and _alive(w.process))

    def start(self) -> None:
        if self._stopping:  # the service stopped while the ledger was opening
            return
        if self._workers:
            log.info("starting %d dispatcher workers beside this process", len(self._workers))
        self._tasks = [asyncio.create_task(self._keep(worker)) for worker in self._workers]

    async def stop(self) -> None:
        """SIGTERM every worker and wait for them to finish their sends (idempotent)."""
        self._stopping = True
        self._stopped.set()
        for worker in self._workers:
            if _alive(worker.process):
                assert worker.process is not None
                worker.process.send_signal(signal.SIGTERM)
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self._grace + _STOP_MARGIN)
        for worker in self._workers:  # still running long after their grace: stuck
            if _alive(worker.process):
                assert worker.process is not None
                log.warning("worker %d did not stop; killing it", worker.number)
                worker.process.kill()
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _keep(self, worker: _Worker) -> None:
        """Run ``worker`` until stopping, starting it again whenever it dies."""
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                code: int | None = await self._run_once(worker)
            except OSError as error:  # no process at all (out of memory, of file handles)
                log.error("worker %d could not be started: %s", worker.number, error)
                code = None
            if self._stopping:
                # Killed by our SIGTERM: one still starting, with nothing to finish.
                log.log(
                    logging.INFO if code in (0, -signal.SIGTERM) else logging.WARNING,
                    "worker %d stopped (%s)",
                    worker.number,
                    _exit_text(code),
                )
                return
            failures = 1 if time.monotonic() - started >= _HEALTHY_RUN else failures + 1
            delay = min(_RESTART_MAX, _RESTART_MIN * 2 ** (failures - 1))
            log.error(
                "worker %d exited unexpectedly (%s); its leased deliveries pass to the others"
                " when their leases end; starting it again in %.0f s",
                worker.number,
                _exit_text(code),
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)

    async def _run_once(self, worker: _Worker) -> int:
        """Start the worker's process and relay its reports until it exits."""
        process = await asyncio.create_subprocess_exec(
            *self._command,
            "--worker",
            str(worker.number),
            env=self._env,
            # The pipe to the child stays open while this process lives: its
            # end-of-file tells the child its parent is gone.
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,  # attempt reports for /metrics
            stderr=None,  # the log: the same stream as ours
            limit=_REPORT_LINE_LIMIT,
            # Its own process group: a terminal's Ctrl-C reaches only us, and we
            # pass it on once, as SIGTERM.
            start_new_session=True,
        )
        worker.process = process
        worker.up = False
        log.info("worker %d started (pid %d)", worker.number, process.pid)
        if self._stopping:  # asked while it was being started: it missed the SIGTERM
            process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        try:
            async for line in process.stdout:
                worker.up = True
                self._count(line)
        finally:
            code = await process.wait()
        return code

    def _count(self, line: bytes) -> None:
        try:
            report = json.loads(line)
            for channel, outcome, seconds in report["attempts"]:
                self._metrics.count_attempt(str(channel), str(outcome), float(seconds))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a worker's report that is not one: %r", line[:200])


def _alive(process: asyncio.subprocess.Process | None) -> bool:
    return process is not None and process.returncode is None


def _exit_text(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def worker_command(config_file: Path | None, log_format: str) -> list[str]:
    """How a worker is started: this interpreter, the dispatcher role, the same
    configuration file. Its HTTP server (health and its own metrics) listens
    on loopback, on a port of the system's choosing: never the public one."""
    command = [sys.executable, "-m", "flytenotify.cli", "serve", "--role", "dispatcher"]
    command += ["--host", "127.0.0.1", "--port", "0", "--log-format", log_format]
    if config_file is not None:
        command += ["--config", str(config_file.resolve())]
    return command


def worker_env(database_url: str) -> dict[str, str]:
    """Our environment (every FLYTENOTIFY_* setting) and the database this
    process resolved, ``--db`` included; in the environment, not the command
    line, where ``ps`` would show a password."""
    return {**os.environ, "FLYTENOTIFY_DATABASE__URL": database_url}


# -- in the worker ----------------------------------------------------------------------


class WorkerLink:
    """A worker's tie to its parent: dies with it, reports attempts to it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self._attempts: list[tuple[str, str, float]] = []
        self._reporter: asyncio.Task[None] | None = None

    def die_with_parent(self) -> None:
        """Call first thing: from here on the parent's death ends this process.

        On Linux the kernel sends SIGKILL when the parent dies, however it
        dies. Everywhere, the parent's end of our stdin closing (which the
        kernel does at its death) stops us as SIGTERM would; that also covers
        a parent that died before we asked the kernel.
        """
        _kill_me_with_parent()
        threading.Thread(target=_stop_at_end_of_stdin, name="parent-watch", daemon=True).start()

    def observe_attempt(self, delivery: Delivery, result: SendResult, seconds: float) -> None:
        """The dispatcher's observer: kept for the next report to the parent."""
        self._attempts.append((delivery.channel, result.outcome.value, round(seconds, 5)))

    def start_reporting(self) -> None:
        self._reporter = asyncio.create_task(self._report_regularly())

    async def stop_reporting(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        self._report()  # what the last sends did

    async def _report_regularly(self) -> None:
        self._report(hello=True)  # we are up: the parent counts us as running from now
        while True:
            await asyncio.sleep(_REPORT_EVERY)
            self._report()

    def _report(self, hello: bool = False) -> None:
        if not self._attempts and not hello:
            return
        attempts, self._attempts = self._attempts, []
        lines = [
            json.dumps({"attempts": attempts[i : i + _REPORT_MOST]}, separators=(",", ":"))
            for i in range(0, max(len(attempts), 1), _REPORT_MOST)
        ]
        with contextlib.suppress(OSError):  # the parent is gone: we are about to be too
            sys.stdout.buffer.write("".join(line + "\n" for line in lines).encode())
            sys.stdout.buffer.flush()


def _kill_me_with_parent() -> None:
    # SIGKILL, not SIGTERM: a parent killed outright is the service crashing,
    # and its workers go with it. Finishing their sends on their own, they
    # would keep renewing leases while the service is started again.
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("could not ask to die with the parent (errno %d)", ctypes.get_errno())


def _stop_at_end_of_stdin() -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    log.warning("the parent process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
