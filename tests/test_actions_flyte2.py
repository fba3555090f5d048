"""Acting on Flyte 2 runs through the Notifier: conditions answered, runs aborted and
relaunched, against the loopback control plane over Connect.

Runs are created, and conditions paused, by the real ``flyte`` SDK (tests/servers/flyte2.py);
what ``SignalEvent`` receives is compared with what the SDK's own ``Condition.signal``
builds for the same answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import flyte.notify
import pytest
from flyte.remote._condition import _encode_payload
from flyteidl2.workflow import run_service_pb2

from flytenotify.app import Notifier
from flytenotify.domain import PAUSED, ActionOutcome, Actor, ExecutionId
from flytenotify.errors import InputError, UnknownReference, UpstreamUnavailable
from flytenotify.intake.flyte2_spec import NamedRuleConfig
from tests.servers.flyte2 import ABORTED, FAILED, RUNNING, SUCCEEDED, Flyte2Plane, RunKey
from tests.servers.smtp import SmtpServer
from tests.test_flyte2 import DOMAIN, PROJECT, flyte2_config, settings_for, settled, watching

ALICE = Actor("slack:U0ALICE", "slack-signature")
ALLOW = {"allow": [{"actors": ["slack:U0ALICE"]}]}


@pytest.fixture
def plane() -> Iterator[Flyte2Plane]:
    with Flyte2Plane() as server:
        yield server


@pytest.fixture
async def notifier(plane: Flyte2Plane, tmp_path: Path) -> AsyncIterator[Notifier]:
    settings = settings_for(f"sqlite:///{tmp_path / 'l.db'}", plane, actions=ALLOW)
    async with Notifier(settings) as running:
        yield running


async def started(plane: Flyte2Plane, name: str) -> RunKey:
    return await asyncio.to_thread(plane.start_run, PROJECT, DOMAIN, name)


def eid(run: RunKey) -> ExecutionId:
    return ExecutionId(run.project, run.domain, run.name)


def signals_sent(plane: Flyte2Plane) -> list[Any]:
    return [call.request for call in plane.calls_to("SignalEvent")]


def sdk_request(plane: Flyte2Plane, action: Any, value: Any) -> Any:
    """The SignalEventRequest flyte.remote.Condition.signal builds for ``value``."""
    return run_service_pb2.SignalEventRequest(
        action_id=action.identifier(), parent_action_name="a0", payload=_encode_payload(value)
    )


async def test_a_paused_condition_is_announced_with_what_an_answer_needs(
    plane: Flyte2Plane, tmp_path: Path
) -> None:
    rules = {"gates": NamedRuleConfig(phases=["PAUSED"], recipients=["ops@example.com"])}
    with SmtpServer() as smtp:
        settings = settings_for(
            f"sqlite:///{tmp_path / 'l.db'}",
            plane,
            smtp,
            flyte2=flyte2_config(plane, rules=rules),
        )
        async with watching(settings) as running:
            run = await asyncio.to_thread(
                plane.start_run,
                PROJECT,
                DOMAIN,
                "r-count",
                notifications=flyte.notify.NamedRule("gates"),
            )
            gate = await asyncio.to_thread(
                plane.pause, run, condition="replicas", prompt="How many replicas?", data_type=int
            )
            [delivery] = await settled(running.notifier, run, 1)
            [(event, _)] = [
                e for e in await running.notifier.events(eid(run)) if e[0].phase == PAUSED
            ]
        [mail] = await smtp.wait_for_messages(1)
    assert event.paused is not None
    assert (event.paused.name, event.paused.condition, event.paused.parent) == (
        gate.name,
        "replicas",
        "a0",
    )
    assert event.paused.expects == "int"
    assert delivery.message.variables["action"] == gate.name
    assert delivery.message.variables["expects"] == "int"
    body = mail.message.get_body(("plain",)).get_content()
    assert f"waiting for input at replicas (action {gate.name})" in body
    assert "How many replicas?" in body
    assert "Expects: an integer (int)" in body
    assert f"/runs/{run.name}" in body  # the console link


async def test_approve_signals_the_condition_as_the_sdk_does_once(
    notifier: Notifier, plane: Flyte2Plane
) -> None:
    run = await started(plane, "r-approve")
    gate = await asyncio.to_thread(plane.pause, run, prompt="Ship?", data_type=bool)
    answer = await notifier.act(eid(run), "approve", ALICE, signal_id=gate.name)
    assert answer.new
    assert (answer.record.outcome, answer.record.value) == (ActionOutcome.DONE, True)
    assert signals_sent(plane) == [sdk_request(plane, gate, True)]
    assert plane.phase_of(run, gate.name) == SUCCEEDED
    again = await notifier.act(eid(run), "reject", ALICE, signal_id=gate.name)
    assert not again.new
    assert again.record == answer.record
    assert len(signals_sent(plane)) == 1


async def test_a_condition_is_found_by_its_own_name_and_takes_its_type(
    notifier: Notifier, plane: Flyte2Plane
) -> None:
    run = await started(plane, "r-typed")
    gate = await asyncio.to_thread(plane.pause, run, condition="ratio", data_type=float)
    with pytest.raises(InputError) as wrong:
        await notifier.act(eid(run), "signal", ALICE, signal_id="ratio", value="half")
    assert [p.field for p in wrong.value.problems] == ["value"]
    assert signals_sent(plane) == []  # refused before anything was sent
    answer = await notifier.act(eid(run), "signal", ALICE, signal_id="ratio", value=0.5)
    assert answer.record.outcome is ActionOutcome.DONE
    assert signals_sent(plane) == [sdk_request(plane, gate, 0.5)]
    assert plane.signal_of(gate).scalar.primitive.float_value == 0.5
    with pytest.raises(UnknownReference):
        await notifier.act(eid(run), "approve", ALICE, signal_id="no-such-gate")


async def test_a_condition_answered_elsewhere_is_reported_not_sent(
    notifier: Notifier, plane: Flyte2Plane
) -> None:
    run = await started(plane, "r-elsewhere")
    gate = await asyncio.to_thread(plane.pause, run, data_type=bool)
    await asyncio.to_thread(plane.signal_with_sdk, gate, False)  # someone used the SDK
    answer = await notifier.act(eid(run), "approve", ALICE, signal_id=gate.name)
    assert answer.record.outcome is ActionOutcome.ANSWERED
    assert answer.record.value is False
    assert signals_sent(plane) == []
    timed_out = await asyncio.to_thread(plane.pause, run, condition="late", data_type=bool)
    await asyncio.to_thread(plane.resume, timed_out, FAILED)
    ended = await notifier.act(eid(run), "approve", ALICE, signal_id="late")
    assert ended.record.outcome is ActionOutcome.ANSWERED
    assert "has ended (FAILED)" in ended.record.detail


async def test_abort_stops_the_run_once(notifier: Notifier, plane: Flyte2Plane) -> None:
    run = await started(plane, "r-abort")
    answer = await notifier.act(eid(run), "abort", ALICE)
    assert answer.record.outcome is ActionOutcome.DONE
    assert plane.phase_of(run) == ABORTED
    [call] = plane.calls_to("AbortRun")
    assert call.request.reason == "aborted by slack:U0ALICE through flytenotify"
    assert not (await notifier.act(eid(run), "abort", ALICE)).new
    other = await started(plane, "r-done")
    await asyncio.to_thread(plane.finish, other, SUCCEEDED)
    ended = await notifier.act(eid(other), "abort", ALICE)
    assert ended.record.outcome is ActionOutcome.ANSWERED
    assert len(plane.calls_to("AbortRun")) == 1


async def test_relaunch_creates_a_run_of_the_same_task_spec_and_inputs(
    notifier: Notifier, plane: Flyte2Plane
) -> None:
    run = await started(plane, "r-relaunch")
    await asyncio.to_thread(plane.finish, run, FAILED, error="boom")
    answer = await notifier.act(eid(run), "relaunch", ALICE)
    assert answer.record.outcome is ActionOutcome.DONE
    made = ExecutionId.parse(answer.record.result)
    [create] = [c.request for c in plane.calls_to("CreateRun")]
    assert create.run_id.name == made.name
    original = plane.run_spec(run)
    assert create.run_spec.notification_rules == original.notification_rules
    assert not create.run_spec.HasField("run_start_time")  # the new run gets its own
    assert create.task_spec.task_template.id.name == "wf.main"
    # Where the SDK offloaded the first run's inputs (UploadInputs), as GetActionDataURIs says.
    assert create.offloaded_input_data.uri.endswith(f"/{run.name}/inputs/inputs.pb")
    assert plane.phase_of(RunKey(made.project, made.domain, made.name)) in (RUNNING, 1)
    assert not (await notifier.act(eid(run), "relaunch", ALICE)).new


async def test_recover_is_not_a_flyte2_action_and_says_where_to_go(
    notifier: Notifier, plane: Flyte2Plane
) -> None:
    run = await started(plane, "r-recover")
    with pytest.raises(InputError) as refused:
        await notifier.act(eid(run), "recover", ALICE)
    message = refused.value.problems[0].message
    assert "Flyte 2 has no recover" in message
    assert f"/runs/{run.name}" in message
    [record] = await notifier.action_history(eid(run))
    assert record.outcome is ActionOutcome.REFUSED


async def test_the_control_plane_down_is_unavailable(
    notifier: Notifier, plane: Flyte2Plane
) -> None:
    run = await started(plane, "r-down")
    gate = await asyncio.to_thread(plane.pause, run, data_type=bool)
    plane.stop()
    try:
        with pytest.raises(UpstreamUnavailable):
            await notifier.act(eid(run), "approve", ALICE, signal_id=gate.name)
    finally:
        plane.start()
    [record] = await notifier.action_history(eid(run))
    assert (record.outcome, record.decision) == (ActionOutcome.FAILED, None)
    assert (await notifier.act(eid(run), "approve", ALICE, signal_id=gate.name)).new
