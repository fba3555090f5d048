"""Fixtures shared by the suites: a fresh ledger on every backend.

``database_url`` runs a test once on a SQLite file and once on a PostgreSQL
database of its own. PostgreSQL is the server at ``FLYTENOTIFY_TEST_POSTGRES``
(default ``postgresql://postgres@127.0.0.1:5432/test``); each test gets a new
``flytenotify_test_<random>`` database there, dropped afterwards. When the
server cannot be reached the PostgreSQL variant is skipped, saying why, except
with ``CI=true``, where a missing database must fail the run rather than
quietly test half the product.

The suite runs in parallel workers (pytest-xdist; ``python3 dev.py test``
starts them): every test makes its own servers, databases, NATS subjects and
temporary files, so tests do not meet. The few files that start a server once
for all their tests (module or session fixtures: the cloud brokers' emulators,
a browser) are each kept on one worker, so it starts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import hypothesis
import pytest

_T = TypeVar("_T")

# Property tests check what is computed, never how fast: Hypothesis's default
# 200 ms deadline per example is a timed assertion that a busy machine (the
# suite's parallel workers) fails now and then. A failure prints how to replay it.
hypothesis.settings.register_profile("flytenotify", deadline=None, print_blob=True)
hypothesis.settings.load_profile("flytenotify")

POSTGRES_ADMIN_URL = os.environ.get(
    "FLYTENOTIFY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
CONNECT_TIMEOUT = 5.0

# Files whose servers are shared by all their tests, each run by one worker
# (``--dist loadgroup``); the cloud tests share the brokers' emulators.
_SHARED_SERVERS = {
    "test_api_schemathesis.py",
    "test_cli_output.py",
    "test_client.py",
    "test_console_browser.py",
    "test_console_paging.py",
    "test_packaging.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cloud" in item.path.parent.parts[-1:]:
            item.add_marker(pytest.mark.xdist_group("cloud-brokers"))
        elif item.path.name in _SHARED_SERVERS:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def run_async(make: Callable[[], Awaitable[_T]], timeout: float = 30.0) -> _T:
    """Run a coroutine to completion on a private loop in another thread.

    Fixtures here serve both sync and async tests; an async test's loop may
    already be running in this thread, so the setup runs beside it.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(asyncio.wait_for(_awaitable(make), timeout)))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if error:
        raise error[0]
    if not result:
        raise TimeoutError(f"database setup took longer than {timeout} s")
    return result[0]


async def _awaitable(make: Callable[[], Awaitable[_T]]) -> _T:
    return await make()


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@functools.cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None if it can (asked once per run)."""
    try:
        run_async(lambda: _admin("SELECT 1"), timeout=CONNECT_TIMEOUT + 2)
    except Exception as error:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {error!r}"
    return None


def require_postgres() -> None:
    """Skip without PostgreSQL; fail instead under CI=true."""
    reason = postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped on leaving."""
    require_postgres()
    name = f"flytenotify_test_{uuid.uuid4().hex[:12]}"
    run_async(lambda: _admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(POSTGRES_ADMIN_URL, name)
    finally:
        # FORCE: a replica process a test killed may have left a session behind.
        run_async(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger URL: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    yield request.getfixturevalue("postgres_url")
