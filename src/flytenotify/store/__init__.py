"""The ledger: which store a database URL means, and bringing its schema up to date."""

from __future__ import annotations

from flytenotify.store.base import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def store_for_url(url: str) -> Store:
    """The store for a database URL: ``sqlite:///PATH`` (or a bare path) or ``postgresql://``."""
    from flytenotify.config import DatabaseConfig

    config = DatabaseConfig(url=url)  # normalises a bare path, refuses unknown schemes
    if config.url.startswith(POSTGRES_SCHEMES):
        # Imported here so that SQLite-only installs never need the driver.
        from flytenotify.store.postgres import PostgresStore

        return PostgresStore(config.url)
    from flytenotify.store.sqlite import SQLiteStore

    assert config.sqlite_path is not None
    return SQLiteStore(config.sqlite_path)


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
