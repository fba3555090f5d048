"""Placeholder: the aws source is being written (see intake/source.py for its contract)."""

from __future__ import annotations

import asyncio

from flytenotify.config import AwsIntakeConfig
from flytenotify.intake.source import Handler, SourceStatus


class SqsSource:
    name = "aws"

    def __init__(self, config: AwsIntakeConfig) -> None:
        self.config = config
        self.status = SourceStatus()

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        raise NotImplementedError("the aws intake is not written yet")

    async def check(self) -> str:
        raise NotImplementedError("the aws intake is not written yet")
