"""One dispatcher replica in its own process: ``python -m tests.replica_child URL PORT [N]``.

Like ``tests/dispatch_child.py`` but meant to run several at once against one
shared (PostgreSQL) ledger at URL: it delivers to the SMTP server on
127.0.0.1:PORT with N sends in flight (default 16) and exits 0 once nothing is
left to deliver by anyone, including rows other replicas hold leases on. The
test may SIGKILL it, or cut its database connections, at any moment.
"""

from __future__ import annotations

import asyncio
import sys

from flytenotify.app import Notifier
from flytenotify.config import (
    DatabaseConfig,
    DispatchConfig,
    GroupingConfig,
    RetryConfig,
    Settings,
    SmtpConfig,
)

DEFAULT_CONCURRENCY = 16


def settings(url: str, port: int, concurrency: int = DEFAULT_CONCURRENCY) -> Settings:
    return Settings(
        database=DatabaseConfig(url=url),
        smtp=SmtpConfig(host="127.0.0.1", port=port, timeout=5.0, pool_size=concurrency),
        # A short lease so rows held by a killed replica come back quickly.
        retry=RetryConfig(base_delay=0.05, max_delay=0.2, lease=2.0),
        dispatch=DispatchConfig(
            concurrency=concurrency,
            per_channel={"email": concurrency},
            batch_size=concurrency,
        ),
        # Each delivery its own message: what the replica tests count.
        grouping=GroupingConfig(by=[]),
    )


async def main(url: str, port: int, concurrency: int) -> None:
    async with Notifier(settings(url, port, concurrency)) as notifier:
        await notifier.run_until_idle(max_wait=120, include_retries=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], int(args[1]), int(args[2]) if len(args) > 2 else DEFAULT_CONCURRENCY))
