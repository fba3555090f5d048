"""``flytenotify serve`` fed by FlyteAdmin's cloud events over Pub/Sub and SNS → SQS.

The events are built as FlyteAdmin builds them (tests/flyteadmin_egress.py),
published as gizmo publishes them to the emulator topic and to the moto SNS
topic, and must end as email in the loopback SMTP server and Slack messages in
the Slack test server; a SIGKILL mid-stream must lose nothing.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import flyteadmin_egress as egress
from tests.cloud.brokers import PROJECT, PubSub, SnsSqs, sns_notification_json
from tests.helpers import (
    assert_mailed_once_but_in_flight,
    register_email_plan,
    register_plan_and_run,
)
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer
from tests.test_serve import start_serve, stop

WAIT = 90.0  # seconds: the bound on every wait (the machine is shared and slow)
LAUNCH_PLAN = ("proj", "prod", "nightly", "v1")
Publish = Callable[[Sequence[egress.FlyteCloudEvent | bytes]], Awaitable[None]]


@dataclass
class Transport:
    name: str  # the source's name in metrics and /readyz
    toml: str  # its [intake.*] section
    publish: Publish  # as FlyteAdmin publishes (bytes: a malformed body, published as is)
    # Many events into the subscription or queue at once, as they would arrive there
    # (for SQS: SNS's envelopes, written straight to the queue, for speed).
    fill: Publish
    close: Callable[[], Awaitable[None]]


async def _pubsub_transport(host: str, batch_size: int) -> Transport:
    admin = PubSub(host)
    topic, subscription = await admin.topic_with_subscription(ack_deadline=10)

    async def publish(events: Sequence[egress.FlyteCloudEvent | bytes]) -> None:
        await admin.publish_keyed(topic, [(_bytes(e), _key(e)) for e in events])

    toml = (
        f'[intake.gcp]\nproject_id = "{PROJECT}"\nsubscription = "{subscription}"\n'
        f"batch_size = {batch_size}\nretry_delay = 1\n"
    )
    return Transport("gcp", toml, publish, publish, admin.close)


async def _sqs_transport(endpoint: str, raw: bool, batch_size: int) -> Transport:
    aws = SnsSqs(endpoint)
    topic, [queue] = await aws.topic_to_queues(raw=[raw])

    async def publish(events: Sequence[egress.FlyteCloudEvent | bytes]) -> None:
        await aws.publish_batch(topic, [(_bytes(e), _key(e)) for e in events])

    toml = (
        f'[intake.aws]\nqueue_url = "{queue}"\nendpoint_url = "{endpoint}"\n'
        f"batch_size = {batch_size}\nwait_time = 1\nvisibility_timeout = 5\n"
    )

    async def fill(events: Sequence[egress.FlyteCloudEvent | bytes]) -> None:
        assert not raw, "fill writes SNS envelopes"
        envelopes = [
            sns_notification_json(base64.b64encode(_bytes(e)).decode(), _key(e)) for e in events
        ]
        await aws.send_batch(queue, envelopes)

    async def close() -> None:
        pass  # each call opened and closed its own client

    return Transport("aws", toml, publish, fill, close)


def _bytes(event: egress.FlyteCloudEvent | bytes) -> bytes:
    return event if isinstance(event, bytes) else event.protobuf()


def _key(event: egress.FlyteCloudEvent | bytes) -> str:
    return "cloudevents.WorkflowExecution" if isinstance(event, bytes) else event.key


@asynccontextmanager
async def transport_for(
    request: pytest.FixtureRequest, kind: str, batch_size: int
) -> AsyncIterator[Transport]:
    if kind == "gcp":
        made = await _pubsub_transport(request.getfixturevalue("pubsub_env"), batch_size)
    else:
        endpoint = request.getfixturevalue("aws_env")
        made = await _sqs_transport(endpoint, kind == "aws-raw", min(batch_size, 10))
    try:
        yield made
    finally:
        await made.close()


async def wait_until(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def config_file(tmp_path: Path, transport: Transport, smtp: SmtpServer, extra: str = "") -> Path:
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsender = "flyte@example.com"\n'
        f"{extra}{transport.toml}"
        # One email per event is what these tests count: grouping off, and no
        # recovery of a failed run by the next (tests/test_conversations.py).
        "\n[grouping]\nby = []\n[recovery]\nenabled = false\n"
    )
    return path


@pytest.mark.parametrize("kind", ["gcp", "aws-envelope", "aws-raw"])
async def test_serve_turns_flyteadmin_events_into_email_and_slack(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    async with transport_for(request, kind, batch_size=10) as transport, SlackApiServer() as slack:
        with SmtpServer() as smtp:
            extra = f'[slack]\nbot_token = "{DEFAULT_TOKEN}"\nbase_url = "{slack.base_url}"\n'
            config = config_file(tmp_path, transport, smtp, extra)
            process, base = await asyncio.to_thread(
                start_serve, tmp_path, "--config", str(config), within=WAIT
            )
            try:
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    await register_plan_and_run(client)
                    await transport.publish(
                        [
                            egress.v1_node(egress.node_event("run-1")),
                            egress.v2_task(egress.task_event("run-1")),
                            egress.v1_workflow(egress.workflow_event("run-1", "RUNNING")),
                            b"\x00 not a cloud event",
                            egress.v1_workflow(
                                egress.workflow_event("run-1", "FAILED", error="boom")
                            ),
                            egress.v2_workflow(
                                egress.workflow_event("run-2", "SUCCEEDED"), LAUNCH_PLAN
                            ),
                        ]
                    )
                    await wait_until(
                        lambda: len(smtp.messages) == 2 and len(slack.posts()) == 2,
                        "two emails and two Slack messages",
                    )
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
    name = transport.name
    assert f'flytenotify_intake_messages_total{{outcome="recorded",source="{name}"}} 2.0' in metrics
    assert f'flytenotify_intake_messages_total{{outcome="dropped",source="{name}"}} 3.0' in metrics
    assert (
        f'flytenotify_intake_messages_total{{outcome="malformed",source="{name}"}} 1.0' in metrics
    )
    assert ready["intake"][name]["state"] == "connected"
    assert f"malformed message at {name} " in output


def _terminal_events(count: int) -> list[egress.FlyteCloudEvent | bytes]:
    return [
        egress.v2_workflow(egress.workflow_event(f"crash-{i:03d}", "SUCCEEDED"), LAUNCH_PLAN)
        for i in range(count)
    ]


@pytest.mark.parametrize("kind", ["gcp", "aws-envelope"])
async def test_sigkill_mid_stream_loses_nothing(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    total = 500
    async with transport_for(request, kind, batch_size=50) as transport:
        with SmtpServer() as smtp:
            # Deliveries the killed process had claimed are claimable again after
            # the lease; the default two minutes would only make the test wait.
            config = config_file(tmp_path, transport, smtp, "[retry]\nlease = 3.0\n")
            first, base = await asyncio.to_thread(
                start_serve, tmp_path, "--config", str(config), within=WAIT
            )
            try:
                await register_email_plan(base)
                await transport.fill(_terminal_events(total))
                await wait_until(lambda: len(smtp.messages) >= 30, "the intake to get going")
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait, timeout=WAIT)
                mailed_at_kill = len(smtp.messages)
            finally:
                stop(first)
            second, _ = await asyncio.to_thread(
                start_serve, tmp_path, "--config", str(config), within=WAIT
            )
            try:

                def every_one_mailed() -> bool:
                    return len({m.message["Message-ID"] for m in smtp.messages}) == total

                await wait_until(every_one_mailed, f"all {total} notifications", within=2 * WAIT)
                await asyncio.sleep(1.0)  # anything sent twice would have arrived by now
                second.send_signal(signal.SIGTERM)
                await asyncio.to_thread(second.wait, timeout=WAIT)
            finally:
                stop(second)
    assert_mailed_once_but_in_flight(
        smtp.messages, total, f"{kind}: killed with {mailed_at_kill}/{total} mailed"
    )
