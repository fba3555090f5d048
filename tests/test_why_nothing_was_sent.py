"""An event that sends nothing, and a delivery that goes dead, say why.

Once in the log, when it happens (a redelivered event is a duplicate and says
nothing more); and for the event, in ``executions show``, the API and the
console's execution page. Real ledger, real service app, real CLI.
"""

from __future__ import annotations

import asyncio
import html
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flytenotify import Email, PagerDuty
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.domain import DeliveryStatus, EntityId, Execution, ExecutionId, NotificationSource
from flytenotify.intake.egress import EgressIntake
from flytenotify.intake.source import Received, Verdict
from flytenotify.metrics import Metrics
from flytenotify.web.api import create_app
from tests import flyteadmin_egress as egress

PLAN = EntityId("proj", "prod", "nightly", "v1")
V2_WITHOUT_LAUNCH_PLAN = "enrichAllWorkflowEventTypes: true"


def _flat(text: str) -> str:
    """Text as one line: rich wraps long lines at the terminal's width."""
    return " ".join(text.split())


async def test_a_v2_event_without_its_launch_plan_says_why_nothing_was_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    db = tmp_path / "ledger.db"
    # FlyteAdmin without enrichAllWorkflowEventTypes: a FAILED event names no launch
    # plan, and no [flyteadmin] is configured to ask; the launch plan IS registered.
    body = egress.v2_workflow(egress.workflow_event("run-7", "FAILED", error="boom")).protobuf()
    async with Notifier(Settings(database=DatabaseConfig(url=str(db))), dev_inbox=True) as n:
        await n.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
        intake = EgressIntake(n, Metrics(), "nats")
        for position in ("seq=1", "seq=2"):  # a redelivery
            assert await intake.handle([Received(body, {}, position)]) == [Verdict.ACK]
        app = create_app(n, ServerConfig())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            shown = (await client.get("/api/v1/executions/proj/prod/run-7")).json()
            page = (await client.get("/ui/executions/proj/prod/run-7")).text

    said = [r for r in caplog.records if "recorded with no notifications" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].levelno == logging.WARNING
    assert said[0].getMessage().startswith("proj/prod/run-7 FAILED recorded with no notifications")
    assert V2_WITHOUT_LAUNCH_PLAN in said[0].getMessage()
    assert "no [flyteadmin] was configured" in said[0].getMessage()

    failed, replay = shown["events"]
    assert (failed["outcome"], replay["outcome"]) == ("no_notifications", "duplicate")
    assert V2_WITHOUT_LAUNCH_PLAN in failed["reason"]
    assert replay["reason"] is None
    assert f"Nothing sent: {failed['reason']}" in html.unescape(page)

    args = ["executions", "show", "proj/prod/run-7", "--db", str(db)]
    # Off the test's event loop: the CLI runs its own.
    printed = await asyncio.to_thread(CliRunner().invoke, main, args, env={"COLUMNS": "80"})
    assert printed.exit_code == 0, printed.output
    assert f"nothing sent for FAILED: {failed['reason']}" in _flat(printed.output)


def _execution(**fields: object) -> Execution:
    base: dict[str, object] = {
        "id": ExecutionId("proj", "prod", "e1"),
        "launch_plan": PLAN,
        "notifications": (Email([P.SUCCEEDED], ["ops@example.com"]),),
        "created_at": datetime.now(UTC),
    }
    return Execution(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "none of its notifications is for FAILED (only for SUCCEEDED)"),
        ({"notifications": ()}, "it has no notifications here (none declared, or disable_all)"),
        (
            {"notifications": (), "source": NotificationSource.FLYTEADMIN},
            "it has no notifications in FlyteAdmin (none declared, or disable_all)",
        ),
        (
            {"notifications": (), "source": NotificationSource.NONE},
            "its launch plan proj/prod/nightly@v1 is not registered here, and no [flyteadmin]"
            " was configured to look the execution up",
        ),
        (
            {
                "notifications": (),
                "source": NotificationSource.NONE,
                "launch_plan": None,
                "lookup_error": "NOT_FOUND: no such execution",
            },
            "FlyteAdmin refused to look the execution up (NOT_FOUND: no such execution)",
        ),
    ],
)
def test_every_reason_names_its_cause(fields: dict[str, object], reason: str) -> None:
    assert _execution(**fields).no_notifications_reason(P.FAILED) == reason


async def test_a_delivery_that_goes_dead_says_so_once_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # No dev inbox and no PagerDuty routing key: the recipient cannot be reached.
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "ledger.db")))
    async with Notifier(settings) as notifier:
        await notifier.register_launch_plan(PLAN, [PagerDuty([P.FAILED], ["data-oncall"])])
        await notifier.create_execution(ExecutionId("proj", "prod", "e1"), PLAN)
        await notifier.report_event(
            {"executionId": {"project": "proj", "domain": "prod", "name": "e1"}, "phase": "FAILED"}
        )
        await notifier.run_until_idle()
        (delivery,) = await notifier.deliveries()
    assert delivery.status is DeliveryStatus.DEAD
    said = [r for r in caplog.records if " is dead " in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].levelno == logging.WARNING
    assert said[0].getMessage() == (
        f"delivery {delivery.id} (proj/prod/e1 FAILED) to data-oncall via {delivery.channel}"
        f" is dead (re-drive it with flytenotify deliveries retry): {delivery.last_reply}"
    )
    assert delivery.last_reply.startswith("cannot route")
