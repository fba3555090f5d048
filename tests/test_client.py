"""The Python client and ``watch`` against a real service on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from flytenotify import Email
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.client import AsyncClient, Client, ClientError, parse_launch_plan
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings
from tests.live_server import WAIT, LiveServer, free_port

ALL = [P.SUCCEEDED, P.FAILED, P.ABORTED, P.TIMED_OUT]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Grouping off: these tests fail, abort and time out runs of one launch plan,
    # and a second failure within the grouping window (10 s) would wait for it.
    db = tmp_path_factory.mktemp("client") / "client.db"
    settings = Settings(database=DatabaseConfig(url=str(db)), grouping=GroupingConfig(by=[]))
    with LiveServer(db, settings) as live:
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    with Client(server.url, timeout=5) as c:
        c.register_launch_plan("proj", "prod", "job", "v1", [Email(ALL, ["ops@example.com"])])
        yield c


def _delivered(client: Client, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while True:
        # Its own notification: a success after another test's failure of the same
        # launch plan also sends a recovery message (its "follows" names that one).
        items = [d for d in client.deliveries(execution=f"proj/prod/{name}") if not d["follows"]]
        if items and items[0]["status"] == "delivered":
            assert len(items) == 1, items
            return items[0]
        assert time.monotonic() < deadline, items
        time.sleep(0.05)


def _in_inbox(client: Client, delivery_id: int) -> dict[str, Any]:
    (message,) = [m for m in client.inbox(limit=1000) if m["delivery_id"] == delivery_id]
    return message


def test_watch_succeeded(client: Client) -> None:
    with client.watch(project="proj", domain="prod", launch_plan="job") as run:
        pass
    assert run.phase == "SUCCEEDED"
    delivery = _delivered(client, run.name)
    assert delivery["phase"] == "SUCCEEDED"
    assert "succeeded" in _in_inbox(client, delivery["id"])["subject"].lower()


def test_watch_failed_reraises_and_reports_the_error(client: Client) -> None:
    template = "code={{ error.code }} kind={{ error.kind }} message={{ error.message }}"
    notification = Email([P.FAILED], ["ops@example.com"], template=template)
    watch = client.watch(
        project="proj", domain="prod", name="failing-1", notifications=[notification]
    )
    with pytest.raises(ValueError, match="input file is empty"), watch:
        raise ValueError("input file is empty")
    delivery = _delivered(client, "failing-1")
    assert delivery["phase"] == "FAILED"
    text = client.delivery(delivery["id"])["message"]["text"]
    assert text == "code=ValueError kind=USER message=input file is empty"


def test_watch_keyboard_interrupt_is_aborted(client: Client) -> None:
    watch = client.watch(project="proj", domain="prod", launch_plan="proj/prod/job@v1")
    with pytest.raises(KeyboardInterrupt), watch:
        raise KeyboardInterrupt
    assert _delivered(client, watch.name)["phase"] == "ABORTED"


def test_watch_sigterm_is_aborted_and_the_previous_handler_runs(client: Client) -> None:
    seen: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with client.watch(project="proj", domain="prod", launch_plan="job") as run:
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + WAIT
            while not seen:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert seen == [signal.SIGTERM]
    assert run.phase == "ABORTED"
    assert _delivered(client, run.name)["phase"] == "ABORTED"


def test_watch_timeout_reports_timed_out_and_lets_the_job_finish(client: Client) -> None:
    finished = False
    with client.watch(project="proj", domain="prod", launch_plan="job", timeout=0.2) as run:
        time.sleep(0.6)
        finished = True
    assert finished
    assert run.phase == "TIMED_OUT"
    assert _delivered(client, run.name)["phase"] == "TIMED_OUT"


def test_watch_as_a_decorator_makes_one_execution_per_call(client: Client) -> None:
    @client.watch(project="proj", domain="prod", notifications=[Email(ALL, ["dec@example.com"])])
    def job(x: int) -> int:
        return x * 2

    assert job(2) == 4
    assert job(3) == 6
    mine = [d for d in client.deliveries(limit=1000) if d["recipient"] == "dec@example.com"]
    deadline = time.monotonic() + WAIT
    while len(mine) < 2:
        assert time.monotonic() < deadline, mine
        time.sleep(0.05)
        mine = [d for d in client.deliveries(limit=1000) if d["recipient"] == "dec@example.com"]
    assert len({d["execution"] for d in mine}) == 2


def test_service_down_never_breaks_the_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flytenotify.client")
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as down:

        @down.watch(project="proj", domain="prod")
        def job() -> str:
            return "done"

        started = time.monotonic()
        assert job() == "done"
        with pytest.raises(RuntimeError), down.watch(project="proj", domain="prod"):
            raise RuntimeError("the job's own error still propagates")
        assert time.monotonic() - started < WAIT
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not create the execution" in w for w in warnings), warnings
    assert any("could not report SUCCEEDED" in w for w in warnings), warnings
    assert any("could not report FAILED" in w for w in warnings), warnings


def test_client_errors_carry_status_and_problems(client: Client) -> None:
    with pytest.raises(ClientError) as caught:
        client.send_event({"executionId": {"project": "proj"}, "phase": "FAILED"})
    assert caught.value.status == 400
    assert {p["field"] for p in caught.value.problems} >= {"execution_id.domain"}
    with pytest.raises(ClientError) as missing:
        client.delivery(999999)
    assert missing.value.status == 404


def test_client_calls(client: Client) -> None:
    plan = client.launch_plan("proj", "prod", "job")
    assert plan["id"]["version"] == "v1"
    created = client.create_execution("proj", "prod", "calls-1", launch_plan="job")
    assert created["launch_plan"]["version"] == "v1"
    result = client.send_event(project="proj", domain="prod", name="calls-1", phase="RUNNING")
    assert result == {"outcome": "recorded"}
    results = client.send_events(
        [
            {
                "executionId": {"project": "proj", "domain": "prod", "name": "calls-1"},
                "phase": "SUCCEEDED",
            },
        ]
    )
    assert results[0]["outcome"] == "enqueued"
    delivery = _delivered(client, "calls-1")
    with pytest.raises(ClientError) as conflict:
        client.retry(delivery["id"])
    assert conflict.value.status == 409


async def test_async_client(server: LiveServer) -> None:
    async with AsyncClient(server.url, timeout=5) as client:
        await client.register_launch_plan(
            "proj", "prod", "async", "v1", [Email(ALL, ["async@example.com"])]
        )
        await client.create_execution("proj", "prod", "async-1", launch_plan="async")
        answer = await client.send_event(
            project="proj", domain="prod", name="async-1", phase="FAILED", error="boom"
        )
        assert answer["outcome"] == "enqueued"
        (delivery_id,) = answer["delivery_ids"]
        deadline = time.monotonic() + WAIT
        while (await client.delivery(delivery_id))["status"] != "delivered":
            assert time.monotonic() < deadline
            await __import__("asyncio").sleep(0.05)
        assert await client.send_events([]) == []
        assert any(m["delivery_id"] == delivery_id for m in await client.inbox(limit=1000))
        assert await client.deliveries(status="delivered")
        with pytest.raises(ClientError):
            await client.retry(delivery_id)


def test_parse_launch_plan() -> None:
    assert parse_launch_plan("p/d/n@v2") == {
        "project": "p",
        "domain": "d",
        "name": "n",
        "version": "v2",
    }
    assert parse_launch_plan("n", "p", "d")["project"] == "p"
    with pytest.raises(ValueError, match="project/domain/name"):
        parse_launch_plan("a/b")
