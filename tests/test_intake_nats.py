"""FlyteAdmin's cloud events in over the real NATS server on 127.0.0.1:4222.

Events are published exactly as FlyteAdmin's NATS sender publishes them (a
core-NATS publish of the structured JSON envelope, see tests/flyteadmin_egress.py).
Every test uses a subject and stream of its own and deletes them afterwards.
Without a NATS server (with JetStream) the tests skip, saying so; under
CI=true they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import nats.js.errors
import pytest

from flytenotify import Email
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, NatsIntakeConfig, Settings
from flytenotify.domain import EntityId, ExecutionId
from flytenotify.intake.egress import EgressIntake
from flytenotify.intake.nats import NatsSource
from flytenotify.intake.source import Received, Verdict
from flytenotify.metrics import Metrics
from flytenotify.web.api import create_app
from tests import flyteadmin_egress as egress
from tests.helpers import (
    assert_mailed_once_but_in_flight,
    register_email_plan,
    register_plan_and_run,
)
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer, free_port
from tests.test_serve import start_serve, stop

NATS_URL = os.environ.get("FLYTENOTIFY_TEST_NATS", "nats://127.0.0.1:4222")
WAIT = 60.0  # seconds: the bound on every wait (the machine is shared and slow)
PLAN = EntityId("proj", "prod", "nightly", "v1")


async def _nats_unavailable() -> str | None:
    try:
        client = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
    except Exception as error:
        return f"NATS at {NATS_URL} is unreachable: {error!r}"
    try:
        await client.jetstream().account_info()
    except Exception as error:
        return f"NATS at {NATS_URL} has no JetStream: {error!r}"
    finally:
        await client.close()
    return None


@dataclass
class Names:
    subject: str
    stream: str
    durable: str

    def config(self, **changes: object) -> NatsIntakeConfig:
        values: dict[str, object] = {
            "servers": [NATS_URL],
            "subject": self.subject,
            "stream": self.stream,
            "durable": self.durable,
        }
        return NatsIntakeConfig.model_validate(values | changes)


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    """A subject, stream and consumer name of this test's own; streams on it deleted after."""
    reason = await _nats_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: NATS tests must run)", pytrace=False)
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:10]
    yield Names(f"flytenotify-test.{tag}", f"FNTEST_{tag}", f"fn-{tag}")
    client = await nats.connect(NATS_URL, allow_reconnect=False)
    try:
        jetstream = client.jetstream()
        while True:
            try:
                stream = await jetstream.find_stream_name_by_subject(f"flytenotify-test.{tag}")
            except nats.js.errors.NotFoundError:
                break
            await jetstream.delete_stream(stream)
    finally:
        await client.close()


async def publish(subject: str, bodies: Sequence[bytes]) -> None:
    """As FlyteAdmin does: plain core-NATS publishes, no headers."""
    client = await nats.connect(NATS_URL, allow_reconnect=False)
    try:
        for body in bodies:
            await client.publish(subject, body)
        await client.flush()
    finally:
        await client.close()


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def failed(name: str, **kw: str) -> bytes:
    return egress.v1_workflow(egress.workflow_event(name, "FAILED", error="boom", **kw)).nats_json()


@contextlib.asynccontextmanager
async def running(
    source: NatsSource, handle: Callable[[Sequence[Received]], Awaitable[list[Verdict]]]
) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(handle, stop))
    try:
        await wait_until(lambda: _ready(source), "the source to connect")
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def _ready(source: NatsSource) -> bool:
    return source.status.ready


@pytest.fixture
async def notifier(tmp_path: Path) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    async with Notifier(settings, dev_inbox=True) as made:
        await made.register_launch_plan(PLAN, [Email([P.FAILED, P.SUCCEEDED], ["ops@x.io"])])
        yield made


def sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# -- in process: the source, the handler, the ledger ------------------------------------------


async def test_node_task_and_running_events_are_dropped_and_counted(
    names: Names, notifier: Notifier
) -> None:
    await notifier.create_execution(ExecutionId("proj", "prod", "d1"), PLAN)
    metrics = Metrics()
    source = NatsSource(names.config())
    intake = EgressIntake(notifier, metrics, source="nats")
    async with running(source, intake.handle):
        await publish(
            names.subject,
            [
                egress.v1_node(egress.node_event("d1")).nats_json(),
                egress.v2_task(egress.task_event("d1")).nats_json(),
                egress.v1_workflow(egress.workflow_event("d1", "RUNNING")).nats_json(),
                egress.v2_execution_start("d1").nats_json(),
                failed("d1"),
            ],
        )

        async def recorded() -> bool:
            return (
                sample(
                    metrics,
                    "flytenotify_intake_messages_total",
                    {"source": "nats", "outcome": "recorded"},
                )
                == 1
            )

        await wait_until(recorded, "the terminal event to be recorded")
    assert (
        sample(
            metrics, "flytenotify_intake_messages_total", {"source": "nats", "outcome": "dropped"}
        )
        == 4
    )
    node = {
        "source": "nats",
        "type": egress.PREFIX + "flyteidl.admin.NodeExecutionEventRequest",
        "reason": "node_event",
    }
    assert sample(metrics, "flytenotify_intake_dropped_total", node) == 1
    running_ = {
        "source": "nats",
        "type": egress.PREFIX + "flyteidl.admin.WorkflowExecutionEventRequest",
        "reason": "not_terminal",
    }
    assert sample(metrics, "flytenotify_intake_dropped_total", running_) == 1
    (delivery,) = await notifier.deliveries()
    assert (delivery.execution_id.name, delivery.recipient) == ("d1", "ops@x.io")


async def test_a_malformed_message_is_logged_counted_and_does_not_stall(
    names: Names, notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    source = NatsSource(names.config())
    intake = EgressIntake(notifier, metrics, source="nats")
    v2 = egress.v2_workflow(
        egress.workflow_event("m2", "SUCCEEDED"), ("proj", "prod", "nightly", "v1")
    )
    with caplog.at_level(logging.WARNING, logger="flytenotify.intake"):
        async with running(source, intake.handle):
            await publish(names.subject, [b'{"specversion": "1.0", "id": "x"', v2.nats_json()])

            async def delivered() -> bool:
                return len(await notifier.deliveries()) == 1

            await wait_until(delivered, "the good event after the bad one")
    (line,) = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert f"nats subject={names.subject} stream_seq=1" in line
    assert "body: is not valid JSON" in line
    assert (
        sample(
            metrics, "flytenotify_intake_messages_total", {"source": "nats", "outcome": "malformed"}
        )
        == 1
    )
    # acknowledged: nothing is waiting or unacknowledged in the consumer
    assert "0 waiting, 0 unacknowledged" in await NatsSource(names.config()).check()


async def test_retry_leaves_the_message_to_jetstream_and_ack_does_not(names: Names) -> None:
    seen: list[bytes] = []

    async def handle(batch: Sequence[Received]) -> list[Verdict]:
        seen.extend(m.body for m in batch)
        # the first delivery of "again" is refused, as when the ledger is away
        return [
            Verdict.RETRY if m.body == b"again" and seen.count(b"again") == 1 else Verdict.ACK
            for m in batch
        ]

    source = NatsSource(names.config())
    source.retry_delay = 0.2
    async with running(source, handle):
        await publish(names.subject, [b"once", b"again"])

        async def redelivered() -> bool:
            return seen.count(b"again") == 2

        await wait_until(redelivered, "the refused message to come back")
        await asyncio.sleep(1.0)  # nothing else comes back
    assert Counter(seen) == {b"once": 1, b"again": 2}


async def test_a_ledger_failure_is_retried_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    settings = Settings(database=DatabaseConfig(url=f"sqlite:///{path}"))
    metrics = Metrics()
    message = Received(failed("l1"), {}, "test position")
    async with Notifier(settings, dev_inbox=True) as notifier:
        await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@x.io"])])
        await notifier.create_execution(ExecutionId("proj", "prod", "l1"), PLAN)
        intake = EgressIntake(notifier, metrics, "nats")
        with sqlite3.connect(path) as db:  # the ledger breaks under us
            db.execute("ALTER TABLE deliveries RENAME TO deliveries_away")
        assert await intake.handle([message]) == [Verdict.RETRY]
        retried = {"source": "nats", "outcome": "retry"}
        assert sample(metrics, "flytenotify_intake_messages_total", retried) == 1
        with sqlite3.connect(path) as db:  # and comes back: the redelivery is recorded
            db.execute("ALTER TABLE deliveries_away RENAME TO deliveries")
        assert await intake.handle([message]) == [Verdict.ACK]
        assert len(await notifier.deliveries()) == 1


async def test_an_existing_stream_on_the_subject_is_used(names: Names, notifier: Notifier) -> None:
    client = await nats.connect(NATS_URL, allow_reconnect=False)
    try:
        await client.jetstream().add_stream(name=f"{names.stream}_OPS", subjects=[names.subject])
    finally:
        await client.close()
    source = NatsSource(names.config())
    intake = EgressIntake(notifier, Metrics(), source="nats")
    await notifier.create_execution(ExecutionId("proj", "prod", "s1"), PLAN)
    async with running(source, intake.handle):
        assert f"JetStream stream {names.stream}_OPS" in source.status.detail
        await publish(names.subject, [failed("s1")])

        async def delivered() -> bool:
            return len(await notifier.deliveries()) == 1

        await wait_until(delivered, "the event through the operator's stream")
    client = await nats.connect(NATS_URL, allow_reconnect=False)
    try:
        with pytest.raises(nats.js.errors.NotFoundError):
            await client.jetstream().stream_info(names.stream)  # none of ours was made
    finally:
        await client.close()


async def test_core_nats_mode_works_and_warns(
    names: Names, notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    await notifier.create_execution(ExecutionId("proj", "prod", "c1"), PLAN)
    source = NatsSource(names.config(stream=""))
    intake = EgressIntake(notifier, Metrics(), source="nats")
    with caplog.at_level(logging.WARNING, logger="flytenotify.intake"):
        async with running(source, intake.handle):
            await publish(names.subject, [failed("c1")])

            async def delivered() -> bool:
                return len(await notifier.deliveries()) == 1

            await wait_until(delivered, "the event over core NATS")
    warning = [
        r for r in caplog.records if r.levelno == logging.WARNING and "core NATS" in r.getMessage()
    ]
    assert warning
    assert "LOST" in warning[0].getMessage()
    assert "core NATS subscription" in await source.check()


async def test_check_says_what_it_finds(names: Names) -> None:
    source = NatsSource(names.config())
    assert f"serve will create stream {names.stream!r}" in await source.check()
    async with running(source, _ack_all):
        await publish(names.subject, [b"x"])
    found = await NatsSource(names.config()).check()
    assert (
        f"JetStream stream {names.stream!r} covers subject {names.subject!r} (1 messages)" in found
    )
    assert f"durable consumer {names.durable!r}: 0 waiting" in found
    with pytest.raises(Exception, match=r"."):
        await NatsSource(names.config(servers=[f"nats://127.0.0.1:{free_port()}"])).check()


async def _ack_all(batch: Sequence[Received]) -> list[Verdict]:
    return [Verdict.ACK] * len(batch)


async def test_an_unreachable_broker_is_not_ready(tmp_path: Path) -> None:
    source = NatsSource(NatsIntakeConfig(servers=[f"nats://127.0.0.1:{free_port()}"]))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(_ack_all, stop))
    try:

        async def reconnecting() -> bool:
            return source.status.state == "reconnecting"

        await wait_until(reconnecting, "the source to report the failure")
        metrics = Metrics()
        metrics.watch_sources([source])
        settings = Settings(database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'l.db'}"))
        async with Notifier(settings) as notifier:
            app = create_app(notifier, metrics=metrics, sources=[source])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ready = await client.get("/readyz")
                scraped = (await client.get("/metrics")).text
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)
    assert ready.status_code == 503
    body = ready.json()
    assert body["intake"]["nats"]["state"] == "reconnecting"
    assert body["intake"]["nats"]["last_error"]
    assert 'flytenotify_intake_up{source="nats"} 0.0' in scraped
    assert source.status.state == "stopped"


# -- flytenotify serve: FlyteAdmin's events end as email and Slack -------------------------


def _config(
    tmp_path: Path, names: Names, smtp: SmtpServer, extra: str = "", **nats: object
) -> Path:
    intake = "\n".join(
        f"{k} = {v!r}" if not isinstance(v, int) else f"{k} = {v}" for k, v in nats.items()
    )
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsender = "flyte@example.com"\n'
        f"{extra}"
        f'[intake.nats]\nservers = ["{NATS_URL}"]\nsubject = "{names.subject}"\n'
        f'stream = "{names.stream}"\ndurable = "{names.durable}"\n{intake}\n'
        # One email per event is what these tests count: grouping off, and no
        # recovery of a failed run by the next (tests/test_conversations.py).
        "[grouping]\nby = []\n[recovery]\nenabled = false\n"
    )
    return path


async def test_serve_turns_flyteadmin_events_into_email_and_slack(
    names: Names, tmp_path: Path
) -> None:
    async with SlackApiServer() as slack:
        with SmtpServer() as smtp:
            extra = f'[slack]\nbot_token = "{DEFAULT_TOKEN}"\nbase_url = "{slack.base_url}"\n'
            config = _config(tmp_path, names, smtp, extra)
            process, base = await asyncio.to_thread(
                start_serve, tmp_path, "--config", str(config), within=WAIT
            )
            try:
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    await register_plan_and_run(client)
                    await wait_until(lambda: _ready_over_http(client), "/readyz to say ready")
                    await publish(
                        names.subject,
                        [
                            egress.v1_node(egress.node_event("run-1")).nats_json(),
                            egress.v1_workflow(
                                egress.workflow_event("run-1", "RUNNING")
                            ).nats_json(),
                            b"\x00 not a cloud event",
                            failed("run-1"),  # v1: the execution was created through our API
                            egress.v2_workflow(
                                egress.workflow_event("run-2", "SUCCEEDED"),
                                ("proj", "prod", "nightly", "v1"),
                            ).nats_json(),  # v2: the launch plan named in the event
                        ],
                    )

                    async def arrived() -> bool:
                        return len(smtp.messages) == 2 and len(slack.posts()) == 2

                    await wait_until(arrived, "two emails and two Slack messages")
                    metrics = (await client.get("/metrics")).text
                    ready = (await client.get("/readyz")).json()
                process.send_signal(signal.SIGTERM)
                output, _ = await asyncio.to_thread(process.communicate, timeout=WAIT)
            finally:
                stop(process)
    assert process.returncode == 0, output
    subjects = sorted(m.message["Subject"] for m in smtp.messages)
    assert any("run-1" in s and "FAILED" in s.upper() for s in subjects), subjects
    assert any("run-2" in s for s in subjects), subjects
    assert sorted(p.body["channel"] for p in slack.posts()) == ["#alerts", "#alerts"]
    assert 'flytenotify_intake_messages_total{outcome="recorded",source="nats"} 2.0' in metrics
    assert 'flytenotify_intake_messages_total{outcome="dropped",source="nats"} 2.0' in metrics
    assert 'flytenotify_intake_messages_total{outcome="malformed",source="nats"} 1.0' in metrics
    assert ready["intake"]["nats"]["state"] == "connected", output
    assert 'flytenotify_intake_up{source="nats"} 1.0' in metrics, output
    assert f"intake nats: NATS {NATS_URL}: subject {names.subject!r}" in output
    assert "malformed message at nats subject=" in output


async def _ready_over_http(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


def _stream_events(count: int) -> list[bytes]:
    lp = ("proj", "prod", "nightly", "v1")
    return [
        egress.v2_workflow(egress.workflow_event(f"crash-{i:03d}", "SUCCEEDED"), lp).nats_json()
        for i in range(count)
    ]


async def _ack_floor(names: Names) -> int:
    client = await nats.connect(NATS_URL, allow_reconnect=False)
    try:
        info = await client.jetstream().consumer_info(names.stream, names.durable)
        return int(info.ack_floor.stream_seq if info.ack_floor else 0)
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await client.close()


async def test_jetstream_survives_sigkill_mid_stream(names: Names, tmp_path: Path) -> None:
    total = 500
    with SmtpServer() as smtp:
        # A send in flight at the kill is claimable again once its lease passes,
        # and a message read but not acknowledged is redelivered after ack_wait.
        config = _config(
            tmp_path, names, smtp, "[retry]\nlease = 3.0\n", batch_size=10, ack_wait=5.0
        )
        first, base = await asyncio.to_thread(
            start_serve, tmp_path, "--config", str(config), within=WAIT
        )
        try:
            await register_email_plan(base)
            await publish(names.subject, _stream_events(total))

            async def under_way() -> bool:
                return await _ack_floor(names) >= 30 or len(smtp.messages) >= 30

            await wait_until(under_way, "the intake to get going")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=WAIT)
            acked_at_kill = await _ack_floor(names)
            mailed_at_kill = len(smtp.messages)
        finally:
            stop(first)
        second, _ = await asyncio.to_thread(
            start_serve, tmp_path, "--config", str(config), within=WAIT
        )
        try:

            def unique() -> set[str]:
                return {m.message["Message-ID"] for m in smtp.messages}

            async def all_mailed() -> bool:
                return len(unique()) == total

            await wait_until(all_mailed, f"all {total} notifications", within=3 * WAIT)
            await asyncio.sleep(1.0)  # anything sent twice would arrive by now
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, timeout=WAIT)
        finally:
            stop(second)
    assert_mailed_once_but_in_flight(
        smtp.messages,
        total,
        f"killed with {acked_at_kill}/{total} events acknowledged and {mailed_at_kill} mailed",
    )


async def test_sigterm_leaves_nothing_acknowledged_but_unrecorded(
    names: Names, tmp_path: Path
) -> None:
    total = 300
    with SmtpServer() as smtp:
        config = _config(tmp_path, names, smtp, batch_size=5)
        process, base = await asyncio.to_thread(
            start_serve, tmp_path, "--config", str(config), within=WAIT
        )
        try:
            await register_email_plan(base)
            await publish(names.subject, _stream_events(total))

            async def under_way() -> bool:
                return await _ack_floor(names) >= 10

            await wait_until(under_way, "the intake to get going")
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(process.communicate, timeout=WAIT)
        finally:
            stop(process)
    assert process.returncode == 0, output
    acked = await _ack_floor(names)
    with sqlite3.connect(tmp_path / "x.db") as db:
        recorded = {row[0] for row in db.execute("SELECT name FROM executions")}
    print(f"\nSIGTERM with {acked}/{total} acknowledged, {len(recorded)} recorded")
    # stream sequence n is the event for crash-(n-1): every acknowledged one is in the ledger
    assert {f"crash-{seq - 1:03d}" for seq in range(1, acked + 1)} <= recorded
    assert "stopping intake after the batches in hand" in output


def test_check_config_connect_reaches_the_broker(names: Names, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flytenotify.cli import main

    def check(servers: str) -> tuple[int, str]:
        config = tmp_path / "flytenotify.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "ledger.db"}"\n'
            f'[intake.nats]\nservers = ["{servers}"]\nsubject = "{names.subject}"\n'
            f'stream = "{names.stream}"\ndurable = "{names.durable}"\n'
        )
        result = CliRunner().invoke(main, ["check-config", str(config), "--connect"], env={})
        return result.exit_code, result.output

    code, output = check(NATS_URL)
    assert code == 0, output
    assert f"intake nats: NATS {NATS_URL.removeprefix('nats://')}: no JetStream stream" in output
    code, output = check(f"nats://127.0.0.1:{free_port()}")
    assert code == 1
    assert "intake nats: cannot connect" in output


async def test_core_nats_retries_in_process_then_says_the_event_is_lost(
    names: Names, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    async def ledger_away(batch: Sequence[Received]) -> list[Verdict]:
        calls.append(len(batch))
        return [Verdict.RETRY] * len(batch)

    source = NatsSource(names.config(stream=""))
    source.retry_delay = 0.2
    with caplog.at_level(logging.WARNING, logger="flytenotify.intake"):
        async with running(source, ledger_away):
            await publish(names.subject, [b"one"])

            async def lost() -> bool:
                return any("LOST" in r.getMessage() and "cannot redeliver" in r.getMessage()
                           for r in caplog.records)  # fmt: skip

            await wait_until(lost, "the loss to be reported")
    assert calls == [1] * 5  # tried a bounded number of times, then given up loudly


@contextlib.contextmanager
def own_nats_server(port: int, store: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A NATS server of this test's own (JetStream on), stopped by its PID."""
    binary = shutil.which("nats-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nats-server is not installed (CI=true: this test must run)")
        pytest.skip("nats-server is not installed")
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=WAIT)


async def test_the_source_reconnects_when_its_broker_comes_back(
    notifier: Notifier, tmp_path: Path
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    source = NatsSource(NatsIntakeConfig(servers=[url], subject="flyte-events"))
    intake = EgressIntake(notifier, Metrics(), source="nats")
    for name in ("r1", "r2"):
        await notifier.create_execution(ExecutionId("proj", "prod", name), PLAN)

    async def publish_here(body: bytes) -> None:
        client = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
        try:
            await client.publish("flyte-events", body)
            await client.flush()
        finally:
            await client.close()

    def recorded(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(await notifier.deliveries()) == count

        return check

    async def reconnecting() -> bool:
        return source.status.state == "reconnecting"

    stop = asyncio.Event()
    with own_nats_server(port, tmp_path / "js"):
        await wait_until(lambda: _reachable(url), "our NATS server to start")
        task = asyncio.create_task(source.run(intake.handle, stop))
        try:
            await wait_until(lambda: _ready(source), "the source to connect")
            await publish_here(failed("r1"))
            await wait_until(recorded(1), "the first event")
        except BaseException:
            stop.set()
            raise
    try:  # the server was stopped (by its PID), and comes back on the same port and storage
        await wait_until(reconnecting, "the source to notice")
        assert source.status.last_error
        with own_nats_server(port, tmp_path / "js"):
            await wait_until(lambda: _ready(source), "the source to reconnect")
            await publish_here(failed("r2"))
            await wait_until(recorded(2), "the event after the reconnect")
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def _reachable(url: str) -> bool:
    try:
        client = await nats.connect(url, allow_reconnect=False, connect_timeout=1,
                                    max_reconnect_attempts=1, reconnect_time_wait=0.1)  # fmt: skip
    except Exception:
        return False
    await client.close()
    return True


def test_credentials_in_server_urls_stay_out_of_the_logs() -> None:
    config = NatsIntakeConfig(servers=["nats://bot:s3cret@nats.internal:4222", "tok3n@other:4222"])
    described = NatsSource(config).describe()
    assert "s3cret" not in described
    assert "tok3n" not in described
    assert "nats://nats.internal:4222, nats://other:4222" in described
