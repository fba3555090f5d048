"""A dispatcher in its own process for the storm tests:
``python -m tests.storm_child URL SLACK_BASE_URL WINDOW``.

It sends Slack messages (paced 1/s per channel, grouping on with WINDOW
seconds) until it is killed; the test SIGKILLs it while a group is open, then
starts another to finish the work.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import SecretStr

from flytenotify.app import Notifier
from flytenotify.config import (
    DatabaseConfig,
    GroupingConfig,
    RetryConfig,
    Settings,
    SlackConfig,
)
from tests.servers.slack_api import DEFAULT_TOKEN


def settings(url: str, slack_base: str, window: float) -> Settings:
    return Settings(
        database=DatabaseConfig(url=url),
        slack=SlackConfig(bot_token=SecretStr(DEFAULT_TOKEN), base_url=slack_base),
        grouping=GroupingConfig(window=window),
        # A short lease so rows held by a killed process come back quickly.
        retry=RetryConfig(base_delay=0.05, max_delay=0.2, lease=2.0),
    )


async def main(url: str, slack_base: str, window: float) -> None:
    async with Notifier(settings(url, slack_base, window)) as notifier:
        notifier.start_dispatching()
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], float(args[2])))
