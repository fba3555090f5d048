"""Placeholder: the nats source is being written (see intake/source.py for its contract)."""

from __future__ import annotations

import asyncio

from flytenotify.config import NatsIntakeConfig
from flytenotify.intake.source import Handler, SourceStatus


class NatsSource:
    name = "nats"

    def __init__(self, config: NatsIntakeConfig) -> None:
        self.config = config
        self.status = SourceStatus()

    async def run(self, handle: Handler, stop: asyncio.Event) -> None:
        raise NotImplementedError("the nats intake is not written yet")

    async def check(self) -> str:
        raise NotImplementedError("the nats intake is not written yet")
