"""Small builders shared by the engine and service tests."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from flytenotify import Email, PagerDuty, Slack, WorkflowExecutionPhase
from flytenotify.config import TemplateConfig
from flytenotify.domain import (
    Delivery,
    DeliveryStatus,
    EntityId,
    ErrorKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionId,
)
from flytenotify.engine.render import render

PLAN = EntityId("proj", "prod", "nightly", "v1")


def event_json(
    name: str,
    phase: str,
    *,
    error: str | None = None,
    project: str = "proj",
    domain: str = "prod",
    launch_plan: EntityId | None = None,
) -> dict[str, Any]:
    """A WorkflowExecutionEvent in the protobuf JSON mapping."""
    event: dict[str, Any] = {
        "executionId": {"project": project, "domain": domain, "name": name},
        "producerId": "propeller",
        "phase": phase,
        "occurredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if error is not None:
        event["error"] = {"code": "USER:Error", "message": error, "kind": "USER"}
    if launch_plan is not None:
        event["launch_plan"] = {
            "project": launch_plan.project,
            "domain": launch_plan.domain,
            "name": launch_plan.name,
            "version": launch_plan.version,
        }
    return event


def execution(name: str, project: str = "proj", domain: str = "prod") -> ExecutionId:
    return ExecutionId(project, domain, name)


# -- deliveries, rendered by the real render stage, for channel tests ----------------

ENDED = datetime(2024, 5, 1, 12, 3, 12, tzinfo=UTC)
STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CONSOLE_BASE = "https://flyte.example.com/console"
CHANNEL_PLAN = EntityId("proj", "dev", "daily_etl", "v7")
_KINDS = {"email": Email, "slack": Slack, "pager_duty": PagerDuty}


def rendered_delivery(
    kind: str,
    channel: str,
    recipient: str,
    *,
    phase: int = WorkflowExecutionPhase.FAILED,
    name: str = "e1",
    error: str | None = "division by zero",
    launch_plan: EntityId | None = CHANNEL_PLAN,
    console_base: str | None = CONSOLE_BASE,
    key: str | None = None,
    number: int = 1,
) -> Delivery:
    """A delivery as the engine would hand it to ``channel``: rendered for real."""
    execution_id = ExecutionId("proj", "dev", name)
    event = ExecutionEvent(
        execution_id=execution_id,
        phase=phase,
        occurred_at=ENDED,
        producer_id="propeller",
        error=ExecutionError(error, "USER:ZeroDivision", ErrorKind.USER) if error else None,
        launch_plan=launch_plan,
    )
    notification = _KINDS[kind]([phase], [recipient])
    execution = Execution(
        id=execution_id,
        launch_plan=launch_plan,
        notifications=(notification,),
        created_at=STARTED,
        workflow=EntityId("proj", "dev", "etl.wf", "v7"),
    )
    message = render(notification, event, execution, TemplateConfig(console_url=console_base))
    return Delivery(
        id=number,
        idempotency_key=key or f"{execution_id}/{phase}/0/{channel}/{recipient}",
        execution_id=execution_id,
        phase=phase,
        notification_index=0,
        kind=kind,
        channel=channel,
        recipient=recipient,
        message=message,
        status=DeliveryStatus.PENDING,
        attempts=0,
        created_at=STARTED,
        launch_plan=launch_plan,
    )


# -- the launch plan the broker-intake tests publish events for ---------------------


async def register_plan_and_run(client: httpx.AsyncClient) -> None:
    """proj/prod/nightly emailing ops@x.io and posting to #alerts, and its execution run-1.

    v1 cloud events carry no launch plan: run-1 is known from the API.
    """
    plan = {
        "version": "v1",
        "notifications": [
            {"phases": ["FAILED", "SUCCEEDED"], "email": {"recipientsEmail": ["ops@x.io"]}},
            {"phases": ["FAILED", "SUCCEEDED"], "slack": {"recipientsEmail": ["#alerts"]}},
        ],
    }
    answer = await client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
    assert answer.status_code == 200, answer.text
    execution = {
        "id": {"project": "proj", "domain": "prod", "name": "run-1"},
        "launch_plan": {"project": "proj", "domain": "prod", "name": "nightly"},
    }
    answer = await client.post("/api/v1/executions", json=execution)
    assert answer.status_code == 201, answer.text


async def register_email_plan(base: str) -> None:
    """proj/prod/nightly emailing ops@x.io on SUCCEEDED, through the service at ``base``."""
    plan = {
        "version": "v1",
        "notifications": [{"phases": ["SUCCEEDED"], "email": {"recipientsEmail": ["ops@x.io"]}}],
    }
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        answer = await client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
        assert answer.status_code == 200, answer.text


def assert_mailed_once_but_in_flight(messages: Sequence[Any], total: int, what: str) -> None:
    """After a kill -9 and a restart: every one of ``total`` notifications was mailed,
    and only those in flight at the kill (at most the dispatch concurrency) twice.

    ``messages`` are what the loopback SMTP server received; the count of
    repeats is printed, since it varies from run to run.
    """
    from flytenotify.config import Settings

    ids = Counter(m.message["Message-ID"] for m in messages)
    twice = sorted(mid for mid, n in ids.items() if n > 1)
    print(f"\n{what}; sent twice (in flight at the kill): {len(twice)} {twice}")
    assert len(ids) == total
    assert len(twice) <= Settings().dispatch.max_in_flight


def write_config(tmp_path: Path, body: str) -> Path:
    """A flytenotify.toml in ``tmp_path`` with a SQLite ledger there and ``body``."""
    path = tmp_path / "flytenotify.toml"
    path.write_text(f'[database]\nurl = "{tmp_path / "ledger.db"}"\n' + body)
    return path


class HtmlMarkup(HTMLParser):
    """The tags and attributes a mail client would see in ``markup``."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]


_SAID_DURATION = re.compile(r" for (\d+)s(?=[,;]|$)")


def fired_by(subject: str, limit: int) -> str:
    """A deadline alert's ``subject`` with the time it says its run had queued or
    run for written as ``limit`` seconds, when it is no less: a timer fired late
    (a busy machine, a restart) says how late, which is right. A shorter time is
    left as it is, so that the comparison fails showing it."""

    def floor(match: re.Match[str]) -> str:
        return f" for {limit}s" if int(match[1]) >= limit else match[0]

    return _SAID_DURATION.sub(floor, subject)
