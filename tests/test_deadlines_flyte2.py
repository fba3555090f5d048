"""Deadlines of Flyte 2 runs, selected by task or trigger: a watch of the loopback control
plane (tests/servers/flyte2.py, runs made by the real flyte SDK) feeding a Notifier, the
alerts and follow-ups mailed to the loopback SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flytenotify.config import DeadlineSpec
from flytenotify.domain import DeadlineId, ExecutionId, Silence, TimerKind
from flytenotify.store.base import DeliveryFilter
from tests.helpers import fired_by
from tests.servers.flyte2 import QUEUED, RUNNING, SUCCEEDED, Flyte2Plane, RunKey
from tests.servers.smtp import SmtpServer
from tests.test_flyte2 import DOMAIN, PROJECT, WAIT, settings_for, until, watching


@pytest.fixture
def plane() -> Iterator[Flyte2Plane]:
    with Flyte2Plane() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def deadline(name: str, **fields: Any) -> Any:
    spec = DeadlineSpec.model_validate({"recipients": ["ops@example.com"], **fields})
    return spec.deadline(DeadlineId(PROJECT, DOMAIN, name))


async def run(plane: Flyte2Plane, name: str, phase: int, **options: Any) -> RunKey:
    return await asyncio.to_thread(plane.start_run, PROJECT, DOMAIN, name, phase=phase, **options)


def subjects(smtp: SmtpServer) -> list[str]:
    """The alerts' subjects, their deadlines all 1 s: a later firing reads as 1 s."""
    return sorted(fired_by(str(m.message["Subject"]), 1) for m in smtp.messages)


async def test_a_task_selects_its_runs_and_no_others(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as watch:
        notifier = watch.notifier
        await notifier.put_deadline(deadline("slow-task", task="wf.slow", max_queued="1s"))
        # A Flyte 1 launch plan of the same name is another thing: it selects no run.
        await notifier.put_deadline(deadline("lp-named", launch_plan="wf.slow", max_queued="1s"))
        slow = await run(plane, "q-slow", QUEUED, task="wf.slow")
        other = await run(plane, "q-other", QUEUED, task="wf.main")
        await smtp.wait_for_messages(1, within=WAIT)
        await asyncio.sleep(1.5)  # anything else would be here by now
        assert subjects(smtp) == [
            f"Deadline slow-task: {PROJECT}/{DOMAIN}/{slow.name} queued for 1s"
        ]
        (alert,) = await notifier.deadline_alerts(DeadlineId(PROJECT, DOMAIN, "slow-task"))
        assert (alert.breach, alert.execution.name) == (TimerKind.MAX_QUEUED, slow.name)
        # The other run's phases before its end were never recorded: no deadline watches it.
        assert await notifier.events(ExecutionId(PROJECT, DOMAIN, other.name)) == []
        recorded = await notifier.events(ExecutionId(PROJECT, DOMAIN, slow.name))
        assert [e.phase_name for e, _ in recorded] == ["QUEUED"]


async def test_a_trigger_selects_the_runs_it_started_and_their_end_follows_up(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as watch:
        notifier = watch.notifier
        await notifier.put_deadline(deadline("nightly-sla", trigger="nightly", max_running="1s"))
        fired = await run(plane, "by-trigger", RUNNING, trigger="nightly")
        await run(plane, "by-hand", RUNNING)
        await run(plane, "other-trigger", RUNNING, trigger="hourly")
        await smtp.wait_for_messages(1, within=WAIT)
        await asyncio.sleep(1.5)
        name = f"{PROJECT}/{DOMAIN}/{fired.name}"
        assert subjects(smtp) == [f"Deadline nightly-sla: {name} running for 1s"]
        held = await notifier.execution(ExecutionId(PROJECT, DOMAIN, fired.name))
        assert held is not None
        assert held.trigger == "nightly"
        await asyncio.to_thread(plane.finish, fired, SUCCEEDED)
        await smtp.wait_for_messages(2, within=WAIT)
        follow_up = [s for s in subjects(smtp) if "ended" in s]
        assert len(follow_up) == 1
        assert follow_up[0].startswith(f"Deadline nightly-sla: {name} ended succeeded after")

        async def closed() -> bool:
            alerts = await notifier.deadline_alerts(DeadlineId(PROJECT, DOMAIN, "nightly-sla"))
            return [a.ended_phase for a in alerts] == [4]

        await until(closed, "the alert to be closed by the run's end")


async def test_a_silence_of_a_trigger_holds_the_alerts_of_the_runs_it_started(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as watch:
        notifier = watch.notifier
        now = datetime.now(UTC)
        quiet = Silence(
            trigger="nightly",
            starts_at=now,
            ends_at=now + timedelta(hours=1),
            comment="the nightly backfill is slow on purpose",
            author="alice",
        )
        silence, _ = await notifier.create_silence(quiet)
        await notifier.put_deadline(deadline("any-run", max_running="1s"))
        quiet_run = await run(plane, "by-trigger", RUNNING, trigger="nightly")
        loud_run = await run(plane, "by-hand", RUNNING)
        await smtp.wait_for_messages(1, within=WAIT)
        await asyncio.sleep(1.5)  # the other alert would be here by now
        loud = f"{PROJECT}/{DOMAIN}/{loud_run.name}"
        assert subjects(smtp) == [f"Deadline any-run: {loud} running for 1s"]

        async def held() -> bool:
            found = await notifier.deliveries(DeliveryFilter(silence=silence.id))
            return [d.execution_id.name for d in found] == [quiet_run.name]

        await until(held, "the silenced alert in the ledger")
