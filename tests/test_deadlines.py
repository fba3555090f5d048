"""Deadlines end to end in one process: a real Notifier on SQLite and PostgreSQL, its
timer loop and dispatcher, the loopback SMTP server and PagerDuty Events API.

Events are flyteidl's ``WorkflowExecutionEvent`` protobufs as FlytePropeller reports
them. Durations are short and real (seconds); where a cron schedule is involved
(minute resolution), the Notifier's clock is moved to just before a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl.admin import schedule_pb2
from pydantic import SecretStr

from flytenotify.app import Notifier
from flytenotify.config import (
    DatabaseConfig,
    DeadlineSpec,
    GroupingConfig,
    PagerDutyConfig,
    Settings,
    TemplateConfig,
)
from flytenotify.domain import (
    Deadline,
    DeadlineId,
    DeliveryReason,
    DeliveryStatus,
    EntityId,
    ExecutionId,
    Silence,
    TimerKind,
)
from flytenotify.errors import Conflict, InputError, UpstreamUnavailable
from flytenotify.intake.egress import EgressIntake
from flytenotify.intake.source import Received
from flytenotify.metrics import Metrics
from flytenotify.models.core.execution import WorkflowExecutionPhase as P
from flytenotify.store.base import DeliveryFilter
from tests.flyteadmin_egress import v1_workflow, v2_workflow, workflow_event
from tests.helpers import fired_by
from tests.servers.flyteadmin import FlyteAdminServer, admin_launch_plan
from tests.servers.pagerduty_api import PagerDutyApiServer
from tests.servers.smtp import SmtpServer

PROJECT, DOMAIN = "proj", "prod"
ROUTING_KEY = "R" * 32
WAIT = 20.0


def spec(**fields: Any) -> DeadlineSpec:
    """A deadline as the API reads one (so every rule it has is applied)."""
    return DeadlineSpec.model_validate({"recipients": ["ops@example.com"], **fields})


def deadline(name: str, **fields: Any) -> Deadline:
    return spec(**fields).deadline(DeadlineId(PROJECT, DOMAIN, name))


def event(name: str, phase: str, at: float | None = None) -> Any:
    occurred = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    return workflow_event(name, phase, project=PROJECT, domain=DOMAIN, occurred_at=occurred)


async def wait_until(check: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    deadline_at = time.monotonic() + within
    while not (found := check()):
        assert time.monotonic() < deadline_at, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return found


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyApiServer]:
    async with PagerDutyApiServer() as server:
        yield server


def settings_for(
    database_url: str, smtp: SmtpServer, pagerduty: PagerDutyApiServer | None = None, **more: Any
) -> Settings:
    sections: dict[str, Any] = {
        "database": DatabaseConfig(url=database_url),
        "smtp": smtp.smtp_config(),
        # One message per execution is what these tests count.
        "grouping": GroupingConfig(by=[]),
        "templates": TemplateConfig(
            console_url="https://flyte.example.com/console",
            public_url="https://flytenotify.example.com",
        ),
    }
    if pagerduty is not None:
        sections["pagerduty"] = PagerDutyConfig(
            events_url=pagerduty.events_url,
            routing_keys={"data-oncall": SecretStr(ROUTING_KEY)},
            per_key_interval=0,
        )
    return Settings(**(sections | more))


@pytest.fixture
async def notifier(
    database_url: str, smtp: SmtpServer, pagerduty: PagerDutyApiServer
) -> AsyncIterator[Notifier]:
    async with Notifier(settings_for(database_url, smtp, pagerduty)) as running:
        running.start_dispatching()
        yield running


async def delivered(notifier: Notifier, execution: ExecutionId, count: int) -> list[Any]:
    """The execution's deliveries once ``count`` of them are delivered (the dispatcher
    writes an outcome after the provider answered)."""
    query = DeliveryFilter(execution=execution)
    found: list[Any] = []
    deadline_at = time.monotonic() + WAIT
    while sum(d.status is DeliveryStatus.DELIVERED for d in found) < count:
        assert time.monotonic() < deadline_at, f"not {count} delivered: {found}"
        await asyncio.sleep(0.05)
        found = await notifier.deliveries(query)
    return found


def subjects(smtp: SmtpServer) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp.messages]


async def test_an_execution_queued_too_long_is_alerted_once(
    notifier: Notifier, smtp: SmtpServer
) -> None:
    await notifier.put_deadline(deadline("etl-sla", launch_plan="", max_queued="1s"))
    queued_at = time.time()
    await notifier.report_event(event("e1", "QUEUED", at=queued_at))
    (message,) = await smtp.wait_for_messages(1, within=WAIT)
    fired_after = time.time() - queued_at
    subject = fired_by(str(message.message["Subject"]), 1)
    assert subject == "Deadline etl-sla: proj/prod/e1 queued for 1s"
    body = message.message.get_body(("plain",)).get_content()
    assert "has been QUEUED for 1s; deadline proj/prod/etl-sla allows 1s" in fired_by(body, 1)
    assert "Deadline: proj/prod/etl-sla (max_queued 1s)" in body
    # Links to the execution in Flyte's console and to the deadline in ours.
    assert "https://flyte.example.com/console/projects/proj/domains/prod/executions/e1" in body
    assert "https://flytenotify.example.com/ui/deadlines/proj/prod/etl-sla" in body
    assert fired_after < 1.0 + WAIT  # it fired, after the deadline passed
    (delivery,) = await delivered(notifier, ExecutionId(PROJECT, DOMAIN, "e1"), 1)
    assert delivery.reason is DeliveryReason.DEADLINE
    (alert,) = await notifier.deadline_alerts(DeadlineId(PROJECT, DOMAIN, "etl-sla"))
    assert (alert.breach, alert.execution.name, alert.ended_at) == (
        TimerKind.MAX_QUEUED,
        "e1",
        None,
    )
    # The same event again arms nothing more: the breach was said once.
    await notifier.report_event(event("e1", "QUEUED", at=queued_at))
    await asyncio.sleep(1.5)
    assert len(smtp.messages) == 1
    assert await notifier.deadline_timers(DeadlineId(PROJECT, DOMAIN, "etl-sla")) == {}


async def test_no_alert_for_a_run_that_moves_on_in_time(
    notifier: Notifier, smtp: SmtpServer
) -> None:
    await notifier.put_deadline(deadline("quick", max_queued="1s", max_running="2s"))
    await notifier.report_event(event("e2", "QUEUED"))
    await notifier.report_event(event("e2", "RUNNING"))
    ident = DeadlineId(PROJECT, DOMAIN, "quick")
    timers = await notifier.deadline_timers(ident)
    assert set(timers) == {"max_running"}  # RUNNING dropped the max_queued timer
    await notifier.report_event(event("e2", "SUCCEEDED"))
    assert await notifier.deadline_timers(ident) == {}  # its end dropped the rest
    await asyncio.sleep(2.5)  # past both deadlines
    assert smtp.messages == []
    assert await notifier.deadline_alerts(ident) == []


async def test_a_queued_event_after_running_alerts_nothing(
    notifier: Notifier, smtp: SmtpServer
) -> None:
    """Brokers reorder: a QUEUED that arrives after RUNNING arms a timer, which finds
    the execution moved on when it comes due."""
    await notifier.put_deadline(deadline("order", max_queued="1s"))
    now = time.time()
    await notifier.report_event(event("e3", "RUNNING", at=now))
    await notifier.report_event(event("e3", "QUEUED", at=now - 0.5))
    await wait_until(lambda: time.time() > now + 2.5, "the stale timer's due time to pass")
    assert smtp.messages == []
    assert await notifier.deadline_timers(DeadlineId(PROJECT, DOMAIN, "order")) == {}


async def test_running_too_long_alerts_then_its_end_resolves_the_same_incident(
    notifier: Notifier, smtp: SmtpServer, pagerduty: PagerDutyApiServer
) -> None:
    await notifier.put_deadline(
        deadline(
            "nightly", max_running="1s", recipients=["ops@example.com", "pagerduty:data-oncall"]
        )
    )
    await notifier.report_event(event("e4", "QUEUED"))
    await notifier.report_event(event("e4", "RUNNING"))
    await smtp.wait_for_messages(1, within=WAIT)
    await wait_until(lambda: pagerduty.events, "the PagerDuty trigger")
    (trigger,) = [e.body for e in pagerduty.events]
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "deadline/proj/prod/nightly/proj/prod/e4"
    assert trigger["payload"]["summary"].startswith("Deadline nightly: proj/prod/e4 running for")
    assert trigger["payload"]["class"] == "deadline max_running"
    assert trigger["payload"]["severity"] == "warning"

    await notifier.report_event(event("e4", "FAILED"))
    await smtp.wait_for_messages(2, within=WAIT)
    await wait_until(lambda: len(pagerduty.events) == 2, "the PagerDuty resolve")
    resolve = pagerduty.events[1].body
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert all(e.status == 202 for e in pagerduty.events)
    follow_up = smtp.messages[1].message
    assert str(follow_up["Subject"]).startswith("Deadline nightly: proj/prod/e4 ended failed after")
    text = follow_up.get_body(("plain",)).get_content()
    assert "which was over deadline proj/prod/nightly (max_running 1s), ended FAILED after" in text
    reasons = sorted(
        d.reason.value
        for d in await notifier.deliveries(
            DeliveryFilter(execution=ExecutionId(PROJECT, DOMAIN, "e4"))
        )
    )
    assert reasons == ["deadline", "deadline", "deadline_resolved", "deadline_resolved"]
    (alert,) = await notifier.deadline_alerts(DeadlineId(PROJECT, DOMAIN, "nightly"))
    assert alert.ended_at is not None
    assert alert.ended_phase == 6
    await asyncio.sleep(1.0)
    assert len(smtp.messages) == 2
    assert len(pagerduty.events) == 2


async def test_without_resolve_no_follow_up_is_sent(notifier: Notifier, smtp: SmtpServer) -> None:
    await notifier.put_deadline(deadline("quiet", max_running="1s", resolve=False))
    await notifier.report_event(event("e5", "RUNNING"))
    await smtp.wait_for_messages(1, within=WAIT)
    await notifier.report_event(event("e5", "SUCCEEDED"))
    await asyncio.sleep(1.5)
    assert len(smtp.messages) == 1
    (alert,) = await notifier.deadline_alerts(DeadlineId(PROJECT, DOMAIN, "quiet"))
    assert alert.ended_phase == 4  # its end is recorded all the same


async def succeed(notifier: Notifier, name: str, started: float, seconds: float) -> None:
    await notifier.report_event(event(name, "RUNNING", at=started))
    await notifier.report_event(event(name, "SUCCEEDED", at=started + seconds))


async def test_slower_than_learns_from_past_runs_and_waits_for_min_runs(
    notifier: Notifier, smtp: SmtpServer
) -> None:
    ident = DeadlineId(PROJECT, DOMAIN, "usual")
    await notifier.put_deadline(
        deadline("usual", slower_than={"percentile": 50, "of_last": 5, "min_runs": 4})
    )
    past = time.time() - 600
    for i, seconds in enumerate((1.0, 1.5, 2.0)):
        await succeed(notifier, f"past-{i}", past + 60 * i, seconds)
    # Three runs known, four asked for: a run now is not judged.
    await notifier.report_event(event("early", "RUNNING"))
    assert await notifier.deadline_timers(ident) == {}
    await succeed(notifier, "past-3", past + 200, 1.2)
    # Four known (1.0, 1.2, 1.5, 2.0): the median by nearest rank is 1.2 s.
    started = time.time()
    await notifier.report_event(event("slow", "RUNNING", at=started))
    timers = await notifier.deadline_timers(ident)
    assert set(timers) == {"slower_than"}
    assert timers["slower_than"][1] == pytest.approx(started + 1.2, abs=0.01)
    (message,) = await smtp.wait_for_messages(1, within=WAIT)
    assert str(message.message["Subject"]).startswith("Deadline usual: proj/prod/slow running for")
    text = message.message.get_body(("plain",)).get_content()
    assert "longer than the 50th percentile of its last 5 successful runs (1s)" in text
    await asyncio.sleep(1.0)
    assert len(smtp.messages) == 1  # "early" was never judged


async def test_a_deleted_deadline_drops_its_timers(notifier: Notifier, smtp: SmtpServer) -> None:
    ident = DeadlineId(PROJECT, DOMAIN, "gone")
    await notifier.put_deadline(deadline("gone", max_queued="1s"))
    await notifier.report_event(event("e6", "QUEUED"))
    assert set(await notifier.deadline_timers(ident)) == {"max_queued"}
    assert await notifier.delete_deadline(ident)
    assert await notifier.deadline_timers(ident) == {}
    assert not await notifier.delete_deadline(ident)
    await asyncio.sleep(1.5)
    assert smtp.messages == []


def clock_before_a_minute(seconds: float) -> Callable[[], float]:
    """A clock that reads ``seconds`` before the next minute now, and runs on from there."""
    now = time.time()
    offset = (now // 60 + 1) * 60 - seconds - now
    return lambda: time.time() + offset


async def via_broker(notifier: Notifier, message: Any, plan: str | None = None) -> list[str]:
    """``message`` as FlyteAdmin publishes it to NATS (a v2 cloud event, naming the launch
    plan as ``enrichAllWorkflowEventTypes`` makes it), through the broker intake."""
    lp = (PROJECT, DOMAIN, plan, "v1") if plan is not None else None
    body = v2_workflow(message, lp).nats_json()
    verdicts = await EgressIntake(notifier, Metrics(), "nats").handle([Received(body)])
    return [verdict.value for verdict in verdicts]


async def test_a_missed_schedule_says_it_did_not_start_then_waits_for_the_next(
    database_url: str, smtp: SmtpServer
) -> None:
    # Two seconds before a minute: "* * * * *" fires then, and wants a run within 1s.
    clock = clock_before_a_minute(2.0)
    async with Notifier(settings_for(database_url, smtp), clock=clock) as notifier:
        notifier.start_dispatching()
        ident = DeadlineId(PROJECT, DOMAIN, "every-minute")
        await notifier.put_deadline(
            deadline("every-minute", launch_plan="nightly", schedule="* * * * *", start_within="1s")
        )
        fire = (clock() // 60 + 1) * 60
        assert await notifier.deadline_timers(ident) == {"start_within": (1, fire + 1)}
        (message,) = await smtp.wait_for_messages(1, within=WAIT)
        subject = str(message.message["Subject"])
        assert subject == "Deadline every-minute: launch plan nightly did not start"
        text = message.message.get_body(("plain",)).get_content()
        stamp = datetime.fromtimestamp(fire, UTC)
        shown = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert f"no run began within 1s of its scheduled time {shown} (* * * * * (UTC))" in text
        # Armed again, for the next fire time.
        assert await notifier.deadline_timers(ident) == {"start_within": (1, fire + 61)}
        (alert,) = await notifier.deadline_alerts(ident)
        filed = f"nightly@{stamp.strftime('%Y%m%dT%H%M%SZ')}"
        assert (alert.breach, alert.execution) == (
            TimerKind.START_WITHIN,
            ExecutionId(PROJECT, DOMAIN, filed),
        )
        assert [a.execution for a in await notifier.open_alerts()] == [alert.execution]
        # A run that starts after all ends the missed start: one follow-up says how late.
        late = event("late-1", "QUEUED", at=clock())
        assert await via_broker(notifier, late, "nightly") == ["ack"]
        (_, follow_up) = await smtp.wait_for_messages(2, within=WAIT)
        subject = str(follow_up.message["Subject"])
        assert subject.startswith(f"Deadline every-minute: proj/prod/{filed} started late, after")
        text = follow_up.message.get_body(("plain",)).get_content()
        assert f"after the scheduled time {shown}, which deadline proj/prod/every-minute" in text
        assert await notifier.open_alerts() == []
        # ... and is not the next fire time's run: that window is still open.
        assert await notifier.deadline_timers(ident) == {"start_within": (1, fire + 61)}


async def test_a_run_starting_in_its_window_keeps_the_schedule_quiet(
    database_url: str, smtp: SmtpServer
) -> None:
    clock = clock_before_a_minute(1.0)
    async with Notifier(settings_for(database_url, smtp), clock=clock) as notifier:
        notifier.start_dispatching()
        ident = DeadlineId(PROJECT, DOMAIN, "started")
        await notifier.put_deadline(
            deadline("started", launch_plan="nightly", schedule="* * * * *", start_within="3s")
        )
        fire = (clock() // 60 + 1) * 60
        assert await notifier.deadline_timers(ident) == {"start_within": (1, fire + 3)}
        await wait_until(lambda: clock() > fire + 0.2, "the fire time")
        # A run of another launch plan does not count; this one's, just after the fire time, does.
        assert await via_broker(notifier, event("weekly-1", "QUEUED", at=clock()), "weekly") == [
            "ack"
        ]
        assert await via_broker(notifier, event("nightly-1", "QUEUED", at=clock()), "nightly") == [
            "ack"
        ]
        await wait_until(lambda: clock() > fire + 3.5, "the window to close")

        async def rearmed() -> dict[str, tuple[int, float]]:
            for _ in range(100):
                timers = await notifier.deadline_timers(ident)
                if timers != {"start_within": (1, fire + 3)}:
                    return timers
                await asyncio.sleep(0.05)
            return timers

        # Re-armed for the next fire time, having said nothing.
        assert await rearmed() == {"start_within": (1, fire + 63)}
        assert smtp.messages == []
        assert await notifier.deadline_alerts(ident) == []


# -- a Flyte 1 launch plan's own schedule, read from FlyteAdmin --------------------------


@pytest.fixture
def admin() -> Any:
    with FlyteAdminServer() as server:
        yield server


def activate(admin: FlyteAdminServer, plan: str, schedule: Any = None) -> None:
    admin.activate(admin_launch_plan(EntityId(PROJECT, DOMAIN, plan, "v3"), schedule))


async def test_a_launch_plans_cron_schedule_is_read_from_flyteadmin(
    database_url: str, smtp: SmtpServer, admin: FlyteAdminServer
) -> None:
    activate(admin, "nightly", schedule_pb2.Schedule(
        cron_schedule=schedule_pb2.CronSchedule(schedule="*/1 * * * *"),
        kickoff_time_input_arg="kickoff_time",
    ))  # fmt: skip
    clock = clock_before_a_minute(2.0)
    settings = settings_for(database_url, smtp, flyteadmin=admin.config())
    async with Notifier(settings, clock=clock) as notifier:
        notifier.start_dispatching()
        stored, warnings = await notifier.put_deadline(
            deadline("lp-own", launch_plan="nightly", start_within="1s")
        )
        assert (stored.schedule, warnings) == ("", [])
        assert admin.launch_plan_calls == [(PROJECT, DOMAIN, "nightly")]
        fire = (clock() // 60 + 1) * 60
        ident = DeadlineId(PROJECT, DOMAIN, "lp-own")
        assert await notifier.deadline_timers(ident) == {"start_within": (1, fire + 1)}
        (message,) = await smtp.wait_for_messages(1, within=WAIT)
        text = message.message.get_body(("plain",)).get_content()
        assert "launch plan nightly did not start" in str(message.message["Subject"])
        assert "(*/1 * * * * (UTC))" in text


@pytest.mark.parametrize(
    ("schedule", "first_due"),
    [
        # A fixed rate: a run within a period and start_within of the last (or of now).
        (schedule_pb2.Schedule(rate=schedule_pb2.FixedRate(value=2, unit=schedule_pb2.HOUR)), 7260),
        # FlyteAdmin's older AWS-style expression: six fields, ? for "any", a year.
        (schedule_pb2.Schedule(cron_expression="0 10 * * ? *"), None),
    ],
)
async def test_fixed_rates_and_aws_cron_expressions_are_read_too(
    tmp_path: Path, smtp: SmtpServer, admin: FlyteAdminServer, schedule: Any, first_due: int | None
) -> None:
    activate(admin, "hourly", schedule)
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", smtp, flyteadmin=admin.config())
    now = time.time()
    async with Notifier(settings, clock=lambda: now) as notifier:
        await notifier.put_deadline(deadline("rate", launch_plan="hourly", start_within="1m"))
        (_, due) = (await notifier.deadline_timers(DeadlineId(PROJECT, DOMAIN, "rate")))[
            "start_within"
        ]
    if first_due is not None:
        assert due == pytest.approx(now + first_due)
    else:  # 10:00 UTC, the next one, and a minute to start in
        assert datetime.fromtimestamp(due - 60, UTC).strftime("%H:%M") == "10:00"
        assert 0 < due - now <= 86400 + 60


async def test_a_launch_plan_with_no_schedule_is_a_mistake_naming_schedule(
    tmp_path: Path, smtp: SmtpServer, admin: FlyteAdminServer
) -> None:
    activate(admin, "manual")  # active, but never scheduled
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", smtp, flyteadmin=admin.config())
    async with Notifier(settings) as notifier:
        for plan, why in (
            ("manual", "launch plan proj/prod/manual has no schedule in FlyteAdmin"),
            ("retired", "launch plan proj/prod/retired has no active version in FlyteAdmin"),
        ):
            with pytest.raises(InputError) as raised:
                await notifier.put_deadline(deadline("x", launch_plan=plan, start_within="1m"))
            ((field, message),) = [(p.field, p.message) for p in raised.value.problems]
            assert (field, message) == ("schedule", f"is required: {why}")
        admin.fail(grpc.StatusCode.UNAVAILABLE)
        with pytest.raises(UpstreamUnavailable, match="could not look up proj/prod/manual"):
            await notifier.put_deadline(deadline("x", launch_plan="manual", start_within="1m"))
        assert notifier.deadlines() == []


async def test_without_flyteadmin_start_within_needs_a_schedule(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    async with Notifier(settings_for(f"sqlite:///{tmp_path / 'x.db'}", smtp)) as notifier:
        with pytest.raises(InputError) as raised:
            await notifier.put_deadline(deadline("x", launch_plan="nightly", start_within="1m"))
        (problem,) = raised.value.problems
        assert problem.field == "schedule"
        assert "no [flyteadmin] is configured" in problem.message


async def test_the_configuration_files_deadlines_are_read_only(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    configured = {
        "in-file": {
            "project": PROJECT,
            "domain": DOMAIN,
            "max_queued": "5m",
            "recipients": ["#ops"],
        }
    }
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", smtp, deadlines=configured)
    async with Notifier(settings) as notifier:
        (found,) = notifier.deadlines()
        assert (found.id.name, found.source, found.max_queued) == ("in-file", "config", 300.0)
        with pytest.raises(Conflict):
            await notifier.put_deadline(deadline("in-file", max_queued="1m"))
        assert not await notifier.delete_deadline(DeadlineId(PROJECT, DOMAIN, "in-file"))


# -- the broker intake keeps what a deadline may watch, and only that --------------------


async def test_the_broker_intake_keeps_non_terminal_events_only_where_a_deadline_may_watch(
    notifier: Notifier, smtp: SmtpServer
) -> None:
    await notifier.put_deadline(deadline("lp-sla", launch_plan="nightly", max_queued="1s"))
    elsewhere = workflow_event("e9", "QUEUED", project="other", domain=DOMAIN)
    messages = [
        # The launch plan FlyteAdmin names decides...
        v2_workflow(event("e7", "QUEUED"), (PROJECT, DOMAIN, "nightly", "v1")),
        v2_workflow(event("e8", "QUEUED"), (PROJECT, DOMAIN, "weekly", "v1")),
        # ...an event that names none is kept: it may be one of nightly's runs...
        v1_workflow(event("e10", "QUEUED")),
        # ...and no deadline watches the other project.
        v1_workflow(elsewhere),
    ]
    intake = EgressIntake(notifier, Metrics(), "nats")
    verdicts = await intake.handle([Received(m.nats_json()) for m in messages])
    assert [v.value for v in verdicts] == ["ack"] * 4

    async def phases(project: str, name: str) -> list[str]:
        return [e.phase_name for e, _ in await notifier.events(ExecutionId(project, DOMAIN, name))]

    assert await phases(PROJECT, "e7") == ["QUEUED"]
    assert await phases(PROJECT, "e8") == []
    assert await phases(PROJECT, "e10") == ["QUEUED"]  # kept; no launch plan known: not timed
    assert await phases("other", "e9") == []
    (message,) = await smtp.wait_for_messages(1, within=WAIT)
    subject = fired_by(str(message.message["Subject"]), 1)
    assert subject == "Deadline lp-sla: proj/prod/e7 queued for 1s"
    await asyncio.sleep(1.0)
    assert len(smtp.messages) == 1


async def test_a_replica_sees_another_ones_deadlines_and_fires_each_timer_once(
    postgres_url: str, smtp: SmtpServer
) -> None:
    settings = settings_for(postgres_url, smtp)
    async with (
        Notifier(settings, deadlines_refresh=0.2) as first,
        Notifier(settings, deadlines_refresh=0.2) as second,
    ):
        first.start_dispatching()
        second.start_dispatching()
        await first.put_deadline(deadline("shared", max_queued="1s"))
        await wait_until(second.deadlines, "the other replica to read the deadline")
        for i in range(10):
            await (first, second)[i % 2].report_event(event(f"r-{i}", "QUEUED"))
        await smtp.wait_for_messages(10, within=WAIT)
        await asyncio.sleep(1.5)
    counts = Counter(subjects(smtp))
    assert len(counts) == 10
    assert set(counts.values()) == {1}


async def test_alerts_of_one_deadline_to_one_destination_fold_into_a_digest(
    database_url: str, smtp: SmtpServer
) -> None:
    """The grouping rules apply: alerts due together go out as one digest naming each."""
    grouping = GroupingConfig(by=["launch_plan", "phase"], window=1.0)
    async with Notifier(settings_for(database_url, smtp, grouping=grouping)) as notifier:
        notifier.start_dispatching()
        await notifier.put_deadline(deadline("storm", max_queued="1s"))
        names = [f"s-{i}" for i in range(6)]
        queued_at = time.time()
        await notifier.report_events([event(name, "QUEUED", at=queued_at) for name in names])

        def named() -> set[str]:
            text = " ".join(m.message.get_body(("plain",)).get_content() for m in smtp.messages)
            return {name for name in names if f"proj/prod/{name}" in text}

        await wait_until(lambda: named() == set(names), "every execution to be named")
        await asyncio.sleep(1.5)  # past the window: anything else would be here now
    folded = [s for s in subjects(smtp) if "are over a deadline" in s]
    assert folded, subjects(smtp)
    assert len(smtp.messages) < len(names)


async def test_a_fixed_rate_wants_a_run_within_a_period_of_the_last(
    tmp_path: Path, smtp: SmtpServer, admin: FlyteAdminServer
) -> None:
    """Time moved on by the clock: a minute's rate and a second to start in."""
    activate(admin, "every-minute", schedule_pb2.Schedule(
        rate=schedule_pb2.FixedRate(value=1, unit=schedule_pb2.MINUTE)
    ))  # fmt: skip
    moved = [0.0]
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", smtp, flyteadmin=admin.config())
    async with Notifier(settings, clock=lambda: time.time() + moved[0]) as notifier:
        notifier.start_dispatching()
        armed_at = notifier.clock()
        await notifier.put_deadline(deadline("rate", launch_plan="every-minute", start_within="1s"))
        await asyncio.sleep(1.5)
        assert smtp.messages == []  # a minute and a second is not up yet
        moved[0] = 60.0
        notifier.timers.wake()
        (message,) = await smtp.wait_for_messages(1, within=WAIT)
    text = message.message.get_body(("plain",)).get_content()
    opened = datetime.fromtimestamp(armed_at, UTC).strftime("%Y-%m-%dT%H:%M")
    assert "Launch plan every-minute did not start: no run began within 1m 1s of" in text
    assert f"of {opened}" in text
    assert "(every 1m, and 1s to start in)" in text


async def test_a_silence_holds_a_deadlines_alert_and_ending_it_releases_it(
    notifier: Notifier, smtp: SmtpServer
) -> None:
    now = datetime.now(UTC)
    quiet = Silence(
        recipient="ops@example.com",
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        comment="on it",
        author="alice",
    )
    held_by, _ = await notifier.create_silence(quiet)
    # A silence of terminal phases leaves a deadline's alert (a run still queued) alone.
    terminal = dataclasses.replace(
        quiet, recipient="lead@example.com", phases=frozenset({P.FAILED})
    )
    await notifier.create_silence(terminal)
    recipients = ["ops@example.com", "lead@example.com"]
    await notifier.put_deadline(deadline("held", max_queued="1s", recipients=recipients))
    await notifier.report_event(event("e9", "QUEUED"))
    (sent,) = await smtp.wait_for_messages(1, within=WAIT)
    assert sent.rcpt_tos == ("lead@example.com",)
    found = await notifier.deliveries(DeliveryFilter(execution=ExecutionId(PROJECT, DOMAIN, "e9")))
    statuses = {d.recipient: (d.status, d.silence_id) for d in found}
    assert statuses["ops@example.com"] == (DeliveryStatus.SILENCED, held_by.id)
    _, released = await notifier.end_silence(held_by.id, "bob", release=True)
    assert released == 1
    await smtp.wait_for_messages(2, within=WAIT)
    assert smtp.messages[1].rcpt_tos == ("ops@example.com",)
    subject = fired_by(str(smtp.messages[1].message["Subject"]), 1)
    assert subject == "Deadline held: proj/prod/e9 queued for 1s"
