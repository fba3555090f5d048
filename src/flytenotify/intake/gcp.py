"""Placeholder: the gcp source is being written (see intake/source.py for its contract)."""

from __future__ import annotations

import asyncio

from flytenotify.config import GcpIntakeConfig
from flytenotify.intake.source import Handler, SourceStatus


class PubSubSource:
    name = "gcp"

    def __init__(self, config: GcpIntakeConfig) -> None:
        self.config = config
        self.status = SourceStatus()

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        raise NotImplementedError("the gcp intake is not written yet")

    async def check(self) -> str:
        raise NotImplementedError("the gcp intake is not written yet")
