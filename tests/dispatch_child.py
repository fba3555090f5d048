"""A dispatcher in its own process, for crash tests: ``python -m tests.dispatch_child DB PORT``.

It delivers everything in the ledger at DB to the SMTP server on 127.0.0.1:PORT
and exits when nothing is left; the test may SIGKILL it at any moment.
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


def settings(db: str, port: int) -> Settings:
    return Settings(
        database=DatabaseConfig(url=db),
        smtp=SmtpConfig(host="127.0.0.1", port=port, timeout=5.0, pool_size=4),
        # A short lease so rows held by a killed process come back quickly.
        retry=RetryConfig(base_delay=0.05, max_delay=0.2, lease=2.0),
        dispatch=DispatchConfig(concurrency=8, per_channel={"email": 8}, batch_size=8),
        # Each delivery its own message: what the crash tests count.
        grouping=GroupingConfig(by=[]),
    )


async def main(db: str, port: int) -> None:
    async with Notifier(settings(db, port)) as notifier:
        await notifier.run_until_idle(max_wait=120, include_retries=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
