"""A full disk, for real: a small tmpfs mounted for the test, filled to the last byte.

Writes are refused with a 503 problem and ``Retry-After`` (never a 500), ``/readyz``
says why it is not ready, the log says so once (not once per refused write),
and once space is freed everything refused can be sent again and is recorded,
with nothing restarted. SQLite keeps its file on the small filesystem;
PostgreSQL its tables in a tablespace there (its disk-full error is 53100).

Mounting needs root (or CAP_SYS_ADMIN): without it these tests skip, saying
so, except with ``CI=true``, where they must run.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import re
import subprocess
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from flytenotify import Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.domain import DeliveryStatus
from flytenotify.store.space import READY_HOLD, SpaceWatch
from flytenotify.web.api import create_app
from tests.conftest import POSTGRES_ADMIN_URL, fresh_postgres_database, require_postgres
from tests.helpers import PLAN, event_json

EVENTS = 40  # enough to use up whatever room the filler left
TABLESPACE = "flytenotify_test_full"


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh directory under /tmp, unmounted after."""
    where = Path(tempfile.mkdtemp(prefix="flytenotify-full-"))
    where.chmod(0o755)  # the PostgreSQL server's own user reaches its tablespace through it
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError as error:  # no mount(8) at all
        mounted = subprocess.CompletedProcess([], 1, "", str(error))
    if mounted.returncode != 0:
        where.rmdir()
        reason = f"cannot mount a small tmpfs to fill ({mounted.stderr.strip()}): needs root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the full-disk tests must run)", pytrace=False)
        pytest.skip(reason)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
        where.rmdir()


def fill(where: Path) -> Path:
    """A file that takes every byte left on the filesystem at ``where``."""
    filler = where / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 16, 1 << 12, 1 << 9):
            for _ in range(100_000):  # bounded: the filesystem is a few MiB
                try:
                    out.write(b"\0" * chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def _client(notifier: Notifier) -> httpx.AsyncClient:
    app = create_app(notifier, ServerConfig(max_body_bytes=64 * 1024))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _register(client: httpx.AsyncClient) -> None:
    plan = {
        "version": PLAN.version,
        "notifications": [
            {"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@example.com"]}},
            {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#data-alerts"]}},
        ],
    }
    path = f"/api/v1/launch-plans/{PLAN.project}/{PLAN.domain}/{PLAN.name}"
    assert (await client.put(path, json=plan)).status_code == 200


def _said(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if words in r.getMessage()]


async def _fill_and_recover(
    notifier: Notifier, where: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What both stores must do on a full disk, and after it."""
    notifier.start_dispatching()  # as `serve` does: the dispatcher writes too
    async with _client(notifier) as client:
        await _register(client)
        assert (await client.get("/readyz")).status_code == 200
        filler = fill(where)
        answers = {}
        for i in range(EVENTS):
            event = event_json(f"full-{i:02d}", "FAILED", error="boom", launch_plan=PLAN)
            answers[f"full-{i:02d}"] = (event, await client.post("/api/v1/events", json=event))
        refused = {name: a for name, (_, a) in answers.items() if a.status_code != 202}
        assert refused, "the filled disk refused nothing"
        for answer in refused.values():
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["retry-after"] == "30"
            (problem,) = answer.json()["problems"]
            assert problem["field"] == "database"
            assert problem["message"].startswith("the database is full"), problem
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"]["error"].startswith("the database is full")
        # Said once, however many writes were refused; no traceback anywhere.
        assert len(_said(caplog, "the database is full")) == 1
        assert not [r for r in caplog.records if r.exc_info is not None]

        filler.unlink()
        for name in refused:  # what a client does with a 503: send it again later
            again = await client.post("/api/v1/events", json=answers[name][0])
            assert (again.status_code, again.json()["outcome"]) == (202, "enqueued")
        assert (await client.get("/readyz")).status_code == 200
        assert len(_said(caplog, "the database accepts writes again")) == 1
        assert len(_said(caplog, "the database is full")) == 1
    await notifier.run_until_idle(max_wait=120, include_retries=True)
    deliveries = await notifier.deliveries()
    assert len(deliveries) == 2 * EVENTS  # nothing lost
    assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
    inbox = "\n".join(m.body for m in await notifier.inbox(None, 1000))  # digests, mostly
    assert [name for name in answers if name not in inbox] == []


async def test_sqlite_on_a_full_disk_answers_503_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with small_filesystem("16m") as where:
        settings = Settings(database=DatabaseConfig(url=str(where / "ledger.db")))
        async with Notifier(settings, dev_inbox=True) as notifier:
            await _fill_and_recover(notifier, where, caplog)


@pytest.fixture
async def postgres_on_a_small_disk() -> AsyncIterator[tuple[str, Path]]:
    """A fresh database whose tables live in a tablespace on a small tmpfs."""
    require_postgres()
    host = urllib.parse.urlsplit(POSTGRES_ADMIN_URL).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip(f"PostgreSQL at {host} cannot see a filesystem mounted here")
    with small_filesystem("16m") as where:
        location = where / "tablespace"
        location.mkdir()
        owner = pwd.getpwnam("postgres")
        os.chown(location, owner.pw_uid, owner.pw_gid)
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f"CREATE TABLESPACE {TABLESPACE} LOCATION '{location}'")
            try:
                with fresh_postgres_database() as url:
                    yield url, where
            finally:
                await admin.execute(f"DROP TABLESPACE IF EXISTS {TABLESPACE}")
        finally:
            await admin.close()


async def test_postgresql_on_a_full_disk_answers_503_and_recovers(
    postgres_on_a_small_disk: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url, where = postgres_on_a_small_disk
    async with Notifier(Settings(database=DatabaseConfig(url=url)), dev_inbox=True) as notifier:
        # The ledger's tables (not the catalogs) move onto the small disk.
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                f"ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE {TABLESPACE}"
            )
            await conn.execute(
                f"ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE {TABLESPACE}"
            )
        finally:
            await conn.close()
        await _fill_and_recover(notifier, where, caplog)


def test_readiness_comes_back_after_a_quiet_while_so_that_requests_can_find_out() -> None:
    """A replica out of its load balancer gets no requests: it must not stay not-ready."""
    now = [100.0]
    watch = SpaceWatch(clock=lambda: now[0])
    watch.refused(OSError("No space left on device"))
    assert watch.problem() == "the database is full: No space left on device"
    now[0] += READY_HOLD
    watch.refused(OSError("No space left on device"))  # refused again: not ready again
    now[0] += READY_HOLD
    assert watch.problem() is not None
    now[0] += 1
    assert watch.problem() is None
    assert watch.full_since is not None  # still full as far as anyone knows
    watch.wrote()
    assert watch.full_since is None


async def test_a_console_redrive_on_a_full_disk_is_a_503_page_and_changes_nothing() -> None:
    with small_filesystem("16m") as where:
        settings = Settings(database=DatabaseConfig(url=str(where / "ledger.db")))
        # No channel and no dev inbox: the Slack recipient is dead-lettered.
        async with Notifier(settings, dev_inbox=False) as notifier:
            await notifier.register_launch_plan(PLAN, [Slack([P.FAILED], ["#data-alerts"])])
            await notifier.report_event(event_json("run-1", "FAILED", launch_plan=PLAN))
            await notifier.run_until_idle()
            (letter,) = await notifier.deliveries()
            assert letter.status is DeliveryStatus.DEAD
            async with _client(notifier) as client:
                page = await client.get("/ui/dead-letters")
                token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
                assert token is not None
                filler = fill(where)
                answer = await client.post(
                    "/ui/dead-letters/redrive",
                    data={"id": str(letter.id), "confirm": "yes", "csrf_token": token.group(1)},
                )
                filler.unlink()
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "30"
            assert "The database cannot answer now" in answer.text
            still = await notifier.delivery(letter.id)
            assert still is not None
            assert still.status is DeliveryStatus.DEAD
