"""Flyte 1 executions waiting at a gate: noticed from FlyteAdmin's node cloud events,
announced once per gate to the ``[waiting.*]`` rules' recipients.

The node events are what FlytePropeller reports for the gate nodes of a workflow
flytekit 1.16.31 compiled (tests/gates.py), published as FlyteAdmin's cloud events
(tests/flyteadmin_egress.py); FlyteAdmin is the loopback gRPC server, the email goes
through a real SMTP server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from flytenotify.app import Notifier
from flytenotify.config import Settings
from flytenotify.domain import PAUSED, EntityId, ExecutionId
from flytenotify.intake.egress import EgressIntake
from flytenotify.intake.source import Received, Verdict
from flytenotify.metrics import Metrics
from flytenotify.store.base import DeliveryFilter
from tests import flyteadmin_egress, gates
from tests.servers.flyteadmin import FlyteAdminServer, admin_execution
from tests.servers.smtp import SmtpServer

RUN = gates.recorded_execution()
PLAN = EntityId(RUN.project, RUN.domain, "release", "v1")
OTHER_PLAN = EntityId(RUN.project, RUN.domain, "nightly", "v3")
NODES = {node.metadata.name: node for node in gates.gate_nodes()}
CONSOLE = "https://flyte.example.com/console"


@pytest.fixture
def admin() -> Iterator[FlyteAdminServer]:
    with FlyteAdminServer() as server:
        server.add(admin_execution(RUN, launch_plan=PLAN, workflow=PLAN))
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def settings_for(
    admin: FlyteAdminServer, smtp: SmtpServer, tmp_path: Path, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "flyteadmin": admin.config().model_dump(exclude_none=True),
        "smtp": smtp.smtp_config(sender="flyte@example.com").model_dump(exclude_none=True),
        "templates": {"console_url": CONSOLE},
        "waiting": {
            "releases": {
                "project": RUN.project,
                "launch_plan": "release",
                "recipients": ["release-managers@example.com"],
            },
            "everything": {"recipients": ["release-managers@example.com", "audit@example.com"]},
        },
    }
    values.update(extra)
    return Settings.model_validate(values)


@pytest.fixture
async def notifier(
    admin: FlyteAdminServer, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[Notifier]:
    async with Notifier(settings_for(admin, smtp, tmp_path)) as running:
        yield running


def node_message(execution: ExecutionId, gate: str, *, v1: bool = False) -> Received:
    event = gates.gate_node_event(execution, NODES[gate])
    cloud = flyteadmin_egress.v1_node(event) if v1 else flyteadmin_egress.v2_node(event)
    return Received(cloud.nats_json(), position=f"node {gate}")


async def paused_events(notifier: Notifier, execution: ExecutionId = RUN) -> list[Any]:
    return [e for e, _ in await notifier.events(execution) if e.phase == PAUSED]


async def deliveries(notifier: Notifier, execution: ExecutionId = RUN) -> list[Any]:
    return await notifier.deliveries(DeliveryFilter(execution=execution))


async def test_a_gate_reached_is_announced_once_with_what_it_waits_for(
    notifier: Notifier, admin: FlyteAdminServer, smtp: SmtpServer
) -> None:
    intake = EgressIntake(notifier, Metrics(), "nats")
    start = flyteadmin_egress.v2_node(
        flyteadmin_egress.node_event(RUN.name, "RUNNING", node="start-node")
    )
    task = flyteadmin_egress.v2_node(gates.task_node_event(RUN))
    admin.reach_gates(RUN, gates.template(), only=["approve-deploy"])
    batch = [Received(start.nats_json()), Received(task.nats_json())]
    batch.append(node_message(RUN, "approve-deploy"))
    assert await intake.handle(batch) == [Verdict.ACK] * 3
    assert len(admin.requests_to("ListSignals")) == 1  # the gate alone was asked about

    [event] = await paused_events(notifier)
    assert event.paused.name == "approve-deploy"
    assert event.paused.expects == "bool"
    found = await deliveries(notifier)
    assert sorted(d.recipient for d in found) == [
        "audit@example.com",
        "release-managers@example.com",  # named by two rules: told once
    ]
    await notifier.run_until_idle()
    mails = await smtp.wait_for_messages(2)
    subject = mails[0].message["Subject"]
    assert subject == f"Flyte execution {RUN} is waiting for approval"
    body = mails[0].message.get_body(("plain",)).get_content()
    assert "waiting at gate approve-deploy" in body
    assert "Expects: approve or reject (bool)" in body
    assert f"{CONSOLE}/projects/{RUN.project}/domains/{RUN.domain}/executions/{RUN.name}" in body

    # The same node event again (FlyteAdmin publishes at least once): nothing more.
    assert await intake.handle([node_message(RUN, "approve-deploy")]) == [Verdict.ACK]
    assert len(admin.requests_to("ListSignals")) == 1
    assert len(await deliveries(notifier)) == 2


async def test_each_gate_once_across_restarts(
    admin: FlyteAdminServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(admin, smtp, tmp_path)
    admin.reach_gates(RUN, gates.template(), only=["approve-deploy"])
    async with Notifier(settings) as first:
        await EgressIntake(first, Metrics(), "nats").handle([node_message(RUN, "approve-deploy")])
    admin.reach_gates(RUN, gates.template(), only=["replicas"])
    async with Notifier(settings) as second:  # a restart: its caches are empty
        intake = EgressIntake(second, Metrics(), "nats")
        await intake.handle([node_message(RUN, "approve-deploy"), node_message(RUN, "replicas")])
        found = await deliveries(second)
        events = await paused_events(second)
    assert sorted({d.idempotency_key.split("/")[3] for d in found}) == [
        f"{PAUSED}:approve-deploy",
        f"{PAUSED}:replicas",
    ]
    assert len(found) == 4  # two gates, two recipients each
    replicas = next(e for e in events if e.paused.name == "replicas")
    assert replicas.paused.expects == "int"
    message = next(d for d in found if "replicas" in d.idempotency_key).message
    assert message.subject == f"Flyte execution {RUN} is waiting for input"
    assert "Expects: an integer (int)" in message.text


async def test_v1_node_events_are_read_too(notifier: Notifier, admin: FlyteAdminServer) -> None:
    admin.reach_gates(RUN, gates.template(), only=["release-note"])
    intake = EgressIntake(notifier, Metrics(), "nats")
    assert await intake.handle([node_message(RUN, "release-note", v1=True)]) == [Verdict.ACK]
    [event] = await paused_events(notifier)
    assert (event.paused.name, event.paused.expects) == ("release-note", "str")


async def test_an_execution_no_rule_covers_costs_no_signal_look_up(
    admin: FlyteAdminServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    nightly = ExecutionId(RUN.project, RUN.domain, "nightly-1")
    admin.add(admin_execution(nightly, launch_plan=OTHER_PLAN, workflow=OTHER_PLAN))
    admin.reach_gates(nightly, gates.template())
    only_releases = {
        "releases": {"launch_plan": "release", "recipients": ["release-managers@example.com"]}
    }
    settings = settings_for(
        admin,
        smtp,
        tmp_path,
        waiting=only_releases
        | {"scoped": {"project": RUN.project, "recipients": ["#x"], "launch_plan": "release"}},
    )
    async with Notifier(settings) as notifier:
        intake = EgressIntake(notifier, Metrics(), "nats")
        await intake.handle([node_message(nightly, "approve-deploy")])
        await intake.handle([node_message(nightly, "replicas")])  # remembered: not asked again
        assert await deliveries(notifier, nightly) == []
    assert len(admin.calls_for(nightly)) == 1  # its launch plan looked up, once
    assert admin.requests_to("ListSignals") == []


async def test_without_waiting_rules_node_events_are_dropped_by_type(
    admin: FlyteAdminServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    admin.reach_gates(RUN, gates.template())
    metrics = Metrics()
    async with Notifier(settings_for(admin, smtp, tmp_path, waiting={})) as notifier:
        intake = EgressIntake(notifier, metrics, "nats")
        assert await intake.handle([node_message(RUN, "approve-deploy")]) == [Verdict.ACK]
        assert await paused_events(notifier) == []
    assert admin.calls == []
    assert admin.requests_to("ListSignals") == []


async def test_a_gate_answered_before_its_event_is_not_announced(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    admin.reach_gates(RUN, gates.template(), only=["approve-deploy"])
    from flyteidl.service import signal_pb2_grpc

    with grpc.insecure_channel(admin.endpoint) as channel:
        signal_pb2_grpc.SignalServiceStub(channel).SetSignal(gates.set_request("approve", RUN))
    intake = EgressIntake(notifier, Metrics(), "nats")
    assert await intake.handle([node_message(RUN, "approve-deploy")]) == [Verdict.ACK]
    assert await paused_events(notifier) == []


async def test_flyteadmin_away_leaves_the_node_event_to_the_broker(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    admin.reach_gates(RUN, gates.template(), only=["approve-deploy"])
    admin.fail(grpc.StatusCode.UNAVAILABLE, method="ListSignals")
    intake = EgressIntake(notifier, Metrics(), "nats")
    assert await intake.handle([node_message(RUN, "approve-deploy")]) == [Verdict.RETRY]
    assert await paused_events(notifier) == []
    # Delivered again once FlyteAdmin answers: announced then.
    assert await intake.handle([node_message(RUN, "approve-deploy")]) == [Verdict.ACK]
    assert len(await paused_events(notifier)) == 1


def test_waiting_rules_need_flyteadmin() -> None:
    with pytest.raises(ValueError, match=r"needs \[flyteadmin\]"):
        Settings.model_validate({"waiting": {"x": {"recipients": ["#releases"]}}})


def test_the_node_event_made_here_is_what_propeller_reports() -> None:
    event = gates.gate_node_event(RUN, NODES["approve-deploy"], at=datetime.now(UTC))
    assert (event.spec_node_id, event.node_name) == ("n1", "approve-deploy")
    assert event.WhichOneof("target_metadata") is None


async def test_the_gates_still_waiting_are_those_no_action_decided(
    admin: FlyteAdminServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    from flytenotify.domain import Actor

    allow = {"allow": [{"actors": ["slack:U0ALICE"]}]}
    admin.reach_gates(RUN, gates.template(), only=["approve-deploy", "replicas"])
    alice = Actor("slack:U0ALICE", "slack-signature")
    async with Notifier(settings_for(admin, smtp, tmp_path, actions=allow)) as notifier:
        await EgressIntake(notifier, Metrics(), "nats").handle([node_message(RUN, "replicas")])
        waiting = [g.name for g in await notifier.waiting_gates(RUN)]
        await notifier.act(RUN, "approve", alice, signal_id="approve-deploy")
        left = await notifier.waiting_gates(RUN)
    assert waiting == ["approve-deploy", "replicas"]
    assert [(g.name, g.expects) for g in left] == [("replicas", "int")]
