"""Events of concurrent callers recorded together (flytenotify.engine.coalesce).

One event per request made one ledger transaction each; calls that arrive
while another is recorded now share the next one. What must not change: each
caller's answer, what the ledger and the far side end up with, and a failure
belonging to one caller only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
import pytest

from flytenotify import Email
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings
from flytenotify.engine.coalesce import Coalescer
from flytenotify.errors import UpstreamUnavailable
from flytenotify.store import store_for_url
from flytenotify.store.base import EventOutcome, EventResult, EventWrite, Store
from flytenotify.store.errors import StoreUnavailable
from tests.helpers import PLAN, event_json, execution
from tests.live_server import LiveServer
from tests.servers.flyteadmin import FlyteAdminServer, admin_execution
from tests.servers.smtp import SmtpServer

CALLERS = 24


def counting(store: Store) -> list[int]:
    """The sizes of the batches ``store`` records from now on, one entry per transaction."""
    batches: list[int] = []
    record = store.record_events

    async def counted(writes: Sequence[EventWrite]) -> list[EventResult]:
        batches.append(len(writes))
        return await record(writes)

    store.record_events = counted  # type: ignore[method-assign]
    return batches


async def test_concurrent_one_event_calls_share_a_transaction_and_each_message_goes_once(
    database_url: str,
) -> None:
    with SmtpServer() as smtp:
        settings = Settings(
            database=DatabaseConfig(url=database_url),
            smtp=smtp.smtp_config(sender="flyte@example.com"),
            grouping=GroupingConfig(by=[]),  # one message per execution is what is counted
        )
        store = store_for_url(database_url)
        async with Notifier(settings, store=store) as notifier:
            await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
            batches = counting(store)
            names = [f"run-{i}" for i in range(CALLERS)]
            results = await asyncio.gather(
                *(notifier.report_event(event_json(n, "FAILED", launch_plan=PLAN)) for n in names)
            )
            # The same events again, one after another: each is its own transaction.
            for name in names[:3]:
                replay = await notifier.report_event(event_json(name, "FAILED", launch_plan=PLAN))
                assert replay.outcome is EventOutcome.DUPLICATE
            await notifier.run_until_idle()
            deliveries = await notifier.deliveries()
        received = sorted(m.message["Subject"] for m in smtp.messages)
    assert batches == [CALLERS, 1, 1, 1]
    assert [r.outcome for r in results] == [EventOutcome.ENQUEUED] * CALLERS
    ids = [i for r in results for i in r.delivery_ids]
    assert len(ids) == len(set(ids)) == CALLERS  # one delivery each, none shared
    by_id = {d.id: d for d in deliveries}
    assert [by_id[r.delivery_ids[0]].execution_id.name for r in results] == names
    assert len(received) == CALLERS
    assert all(any(n in subject for subject in received) for n in names)


async def test_one_callers_failure_is_its_own(tmp_path: Path) -> None:
    with FlyteAdminServer() as admin:
        for name in ("a", "b", "c"):
            admin.add(admin_execution(execution(name), launch_plan=PLAN, workflow=PLAN))
        admin.refuse(execution("down"), grpc.StatusCode.UNAVAILABLE)
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'l.db'}"),
            flyteadmin=admin.config(),
        )
        async with Notifier(settings) as notifier:
            answers = await asyncio.gather(
                *(notifier.report_event(event_json(n, "FAILED")) for n in ("a", "down", "b", "c")),
                return_exceptions=True,
            )
            recorded = {n: await notifier.execution(execution(n)) for n in ("a", "down", "b", "c")}
    assert isinstance(answers[1], UpstreamUnavailable)
    assert "UNAVAILABLE" in str(answers[1])
    assert [getattr(answers[i], "outcome", answers[i]) for i in (0, 2, 3)] == [
        EventOutcome.NO_NOTIFICATIONS
    ] * 3
    assert recorded["down"] is None  # nothing of the refused caller was written
    assert all(recorded[n] is not None for n in ("a", "b", "c"))


async def test_concurrent_requests_each_get_their_own_answer(tmp_path: Path) -> None:
    names = [f"ok-{i}" for i in range(CALLERS)]
    with FlyteAdminServer() as admin:
        for name in names:
            admin.add(
                admin_execution(
                    execution(name),
                    launch_plan=PLAN,
                    workflow=PLAN,
                    notifications=[Email([P.FAILED], ["ops@example.com"])],
                )
            )
        admin.refuse(execution("down"), grpc.StatusCode.UNAVAILABLE)
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'l.db'}"),
            flyteadmin=admin.config(),
        )
        with LiveServer(tmp_path / "l.db", settings) as live:
            async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
                answers = await asyncio.gather(
                    *(
                        client.post("/api/v1/events", json=event_json(name, "FAILED"))
                        for name in [*names[:12], "down", *names[12:]]
                    )
                )
                down = await client.get("/api/v1/executions/proj/prod/down")
                kept = [await client.get(f"/api/v1/executions/proj/prod/{n}") for n in names]
    refused = answers.pop(12)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert [a.status_code for a in answers] == [202] * CALLERS
    assert [a.json()["outcome"] for a in answers] == ["enqueued"] * CALLERS
    assert down.status_code == 404  # nothing of the refused request was recorded
    assert [k.status_code for k in kept] == [200] * CALLERS
    assert all(len(k.json()["deliveries"]) == 1 for k in kept)


# -- the coalescer alone ------------------------------------------------------------------


class Recorder:
    """A ``run`` that answers each item doubled, refusing any item in ``poison``."""

    def __init__(self, poison: set[int] | None = None, error: Exception | None = None) -> None:
        self.passes: list[list[int]] = []
        self.poison = poison or set()
        self.error = error
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.passes.append(list(items))
        await self.release.wait()
        if self.error is not None:
            raise self.error
        if self.poison & set(items):
            raise ValueError(f"refused {sorted(self.poison & set(items))}")
        return [2 * item for item in items]


async def test_a_lone_call_runs_at_once_and_calls_waiting_meanwhile_share_the_next_pass() -> None:
    run = Recorder()
    group: Coalescer[int, int] = Coalescer(run)
    assert await group([1, 2]) == [2, 4]
    run.release.clear()
    first = asyncio.create_task(group([3]))
    await asyncio.sleep(0.01)  # the first pass is under way, holding [3]
    later = [asyncio.create_task(group([n, n + 1])) for n in (10, 20, 30)]
    await asyncio.sleep(0.01)
    run.release.set()
    assert await first == [6]
    assert [await t for t in later] == [[20, 22], [40, 42], [60, 62]]
    assert run.passes == [[1, 2], [3], [10, 11, 20, 21, 30, 31]]


async def test_a_pass_takes_no_more_than_the_limit_and_a_big_call_runs_alone() -> None:
    run = Recorder()
    group: Coalescer[int, int] = Coalescer(run, limit=4)
    answers = await asyncio.gather(group([1, 2]), group([3, 4]), group([5]), group([6, 7, 8, 9]))
    assert answers == [[2, 4], [6, 8], [10], [12, 14, 16, 18]]
    assert sorted(run.passes) == [[1, 2, 3, 4], [5], [6, 7, 8, 9]]


async def test_a_failing_group_is_run_again_call_by_call() -> None:
    run = Recorder(poison={3})
    group: Coalescer[int, int] = Coalescer(run)
    answers = await asyncio.gather(group([1]), group([2, 3]), group([4]), return_exceptions=True)
    assert answers[0] == [2]
    assert answers[2] == [8]
    assert isinstance(answers[1], ValueError)
    assert "refused [3]" in str(answers[1])
    assert run.passes[0] == [1, 2, 3, 4]
    assert sorted(run.passes[1:]) == [[1], [2, 3], [4]]


async def test_an_unavailable_ledger_fails_every_caller_once() -> None:
    run = Recorder(error=StoreUnavailable("the database is not reachable"))
    group: Coalescer[int, int] = Coalescer(run)
    answers = await asyncio.gather(group([1]), group([2]), group([3]), return_exceptions=True)
    assert all(isinstance(a, StoreUnavailable) for a in answers)
    assert run.passes == [[1, 2, 3]]  # not once more per caller: each would meet it


async def test_a_caller_gone_before_its_pass_is_not_run_and_the_others_are() -> None:
    run = Recorder()
    run.release.clear()
    group: Coalescer[int, int] = Coalescer(run)
    first = asyncio.create_task(group([1]))
    await asyncio.sleep(0.01)
    gone, kept = asyncio.create_task(group([2])), asyncio.create_task(group([3]))
    await asyncio.sleep(0.01)
    gone.cancel()
    run.release.set()
    assert await first == [2]
    assert await kept == [6]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.passes == [[1], [3]]


async def test_callers_are_cancelled_with_the_pass_not_left_waiting() -> None:
    run = Recorder()
    run.release.clear()
    group: Coalescer[int, int] = Coalescer(run)
    running = asyncio.create_task(group([1]))
    await asyncio.sleep(0.01)  # [1] is being run
    waiting = asyncio.create_task(group([2]))
    await asyncio.sleep(0.01)  # [2] waits for the next pass
    drainer = next(t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_drain")
    drainer.cancel()
    for caller in (running, waiting):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, timeout=5)
    assert run.passes == [[1]]
    run.release.set()
    assert await asyncio.wait_for(group([3]), timeout=5) == [6]  # the next call gets a pass
