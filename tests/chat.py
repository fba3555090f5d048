"""What the chat tests share: the HTTP app in process, and a Flyte 2 run that fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx

from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import ServerConfig, Settings
from flytenotify.domain import (
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    NotificationSource,
    RunRule,
)
from flytenotify.web.api import create_app

TASK = EntityId("proj", "prod", "train", "v3")
WAIT = 20.0


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Notifier, httpx.AsyncClient]]:
    """A Notifier and a client of its HTTP app (the callbacks' endpoints), in process."""
    async with Notifier(settings) as notifier:
        transport = httpx.ASGITransport(app=create_app(notifier, ServerConfig()))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield notifier, client


def failing_run(name: str, recipient: str) -> Execution:
    """A Flyte 2 run of TASK whose rule sends its failures to ``recipient``."""
    return Execution(
        id=ExecutionId("proj", "prod", name),
        launch_plan=TASK,
        notifications=(),
        created_at=datetime.now(UTC),
        source=NotificationSource.FLYTE2,
        rules=(RunRule(frozenset({P.FAILED}), name="oncall", recipients=(recipient,)),),
    )


async def fail(notifier: Notifier, run: Execution) -> ExecutionId:
    """``run`` fails, and what that sends is sent."""
    event = ExecutionEvent(run.id, P.FAILED, datetime.now(UTC))
    await notifier.record_checked_events([event], {run.id: run})
    await notifier.run_until_idle(include_retries=True, max_wait=WAIT)
    return run.id
