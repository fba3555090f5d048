"""What the ledger raises when it cannot take a write now: the caller answers "try later"."""

from __future__ import annotations


class StoreUnavailable(RuntimeError):
    """The ledger is not connected (yet): the caller should answer "try later".

    ``retry_after`` is how many seconds a caller is told to wait.
    """

    retry_after = 5.0


class StoreFull(StoreUnavailable):
    """The database has no room for a write (its disk, or a size limit); nothing was written.

    Reads go on working, and writes work again once space is freed: the caller
    answers "try later" as for a database not reachable yet (see ``store/space.py``).
    """

    retry_after = 30.0  # someone has to free space: sooner would only be refused again
