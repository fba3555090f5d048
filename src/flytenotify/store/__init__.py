"""The ledger: which store a database URL means, and bringing its schema up to date."""

from __future__ import annotations

from pathlib import Path

from flytenotify.store.base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite:///"


def database_url(url: str) -> str:
    """``url`` in its one spelling: a bare path is a SQLite file; ValueError for other schemes."""
    if "://" not in url:
        return f"{_SQLITE_SCHEME}{url}"
    if not url.startswith((_SQLITE_SCHEME, *POSTGRES_SCHEMES)):
        raise ValueError("must be a file path, sqlite:///PATH or postgresql://...")
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///rel.db`` is relative, ``sqlite:////abs.db``
    absolute); None for a server's URL."""
    url = database_url(url)
    return Path(url.removeprefix(_SQLITE_SCHEME)) if url.startswith(_SQLITE_SCHEME) else None


def store_for_url(url: str) -> Store:
    """The store for a database URL: ``sqlite:///PATH`` (or a bare path) or ``postgresql://``."""
    path = sqlite_path(url)  # refuses unknown schemes
    if path is None:
        # Imported here so that SQLite-only installs never need the driver.
        from flytenotify.store.postgres import PostgresStore

        return PostgresStore(url)
    from flytenotify.store.sqlite import SQLiteStore

    return SQLiteStore(path)


def unreachable(url: str, error: BaseException) -> bool:
    """Whether ``error``, from opening the store for ``url``, means "its server is
    not reachable now" (worth waiting for) rather than "this will not work"."""
    if not url.startswith(POSTGRES_SCHEMES):
        return False  # a SQLite file is there or it is not: waiting changes nothing
    from flytenotify.store.postgres import is_transient

    return is_transient(error)


async def upgrade(url: str) -> int:
    """Apply every pending migration to the database at ``url``; returns its schema version.

    Safe to run while replicas are up and from several places at once: on
    PostgreSQL the migrations run under an advisory lock, on SQLite under the
    single writer lock. A database newer than this flytenotify is refused.
    """
    store = store_for_url(url)
    await store.open()  # opening a store migrates it
    try:
        return await store.schema_version()
    finally:
        await store.close()
