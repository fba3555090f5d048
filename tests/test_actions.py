"""Acting on Flyte 1 executions through the Notifier: gates answered, executions relaunched,
recovered and aborted, against the loopback FlyteAdmin over real gRPC.

What FlyteAdmin receives is compared with what flytekit 1.16.31's ``FlyteRemote``
sends for the same answer (tests/data/flytekit_gates.json); what the ledger
holds is read back from its ``actions`` table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl.service import signal_pb2_grpc

from flytenotify.app import Notifier
from flytenotify.config import Settings
from flytenotify.domain import ActionKind, ActionOutcome, Actor, EntityId, ExecutionId
from flytenotify.errors import (
    Forbidden,
    InputError,
    UnknownReference,
    UpstreamRefused,
    UpstreamUnavailable,
)
from tests import gates
from tests.servers.flyteadmin import FlyteAdminServer, admin_execution

RUN = gates.recorded_execution()
ALICE = Actor("slack:U0ALICE", "slack-signature")
BOB = Actor("email:bob@example.com", "test")
MALLORY = Actor("slack:U0MALLORY", "slack-signature")


@pytest.fixture
def admin() -> Iterator[FlyteAdminServer]:
    with FlyteAdminServer() as server:
        server.add(admin_execution(RUN, launch_plan=PLAN, workflow=PLAN, created_at=NOW))
        server.reach_gates(RUN, gates.template())
        yield server


PLAN = EntityId(RUN.project, RUN.domain, "release", "v1")
NOW = datetime.now(UTC)


def settings_for(admin: FlyteAdminServer, tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
            "flyteadmin": admin.config().model_dump(exclude_none=True),
            "actions": {
                "allow": [
                    {"project": RUN.project, "actors": ["slack:U0ALICE", "email:bob@example.com"]},
                ]
            },
            **extra,
        }
    )


@pytest.fixture
async def notifier(admin: FlyteAdminServer, tmp_path: Path) -> AsyncIterator[Notifier]:
    async with Notifier(settings_for(admin, tmp_path)) as running:
        yield running


def sent(admin: FlyteAdminServer, method: str) -> list[Any]:
    return [r.request for r in admin.requests_to(method) if r.code == grpc.StatusCode.OK]


# -- answering gates ---------------------------------------------------------------------


async def test_approve_sends_what_flytekit_sends_and_is_recorded_once(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    answer = await notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    assert answer.new
    record = answer.record
    assert (record.action, record.outcome, record.value) == (
        ActionKind.APPROVE,
        ActionOutcome.DONE,
        True,
    )
    assert (record.actor, record.proof, record.target) == (
        "slack:U0ALICE",
        "slack-signature",
        "approve-deploy",
    )
    assert sent(admin, "SetSignal") == [gates.set_request("approve", RUN)]
    assert admin.signal_value(RUN, "approve-deploy").scalar.primitive.boolean is True

    # The same request again, and a reject after it: the first decision answers both.
    again = await notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    late = await notifier.act(RUN, ActionKind.REJECT, BOB, signal_id="approve-deploy")
    assert not again.new
    assert not late.new
    assert again.record == late.record == record
    assert late.record.summary().startswith("approved by slack:U0ALICE at ")
    assert len(sent(admin, "SetSignal")) == 1
    assert [a.outcome for a in await notifier.action_history(RUN)] == [ActionOutcome.DONE]


async def test_reject_sends_false_as_flytekit_does(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    answer = await notifier.act(RUN, "reject", BOB, signal_id="approve-deploy")
    assert answer.record.value is False
    assert sent(admin, "SetSignal") == [gates.set_request("reject", RUN)]


@pytest.mark.parametrize(
    ("signal", "value", "recorded"),
    [
        ("release-note", "ship it", "note"),
        ("replicas", 3, "replicas"),
        ("canary-ratio", 0.25, "ratio"),
        ("go-live", False, "go-live"),
    ],
)
async def test_a_typed_value_is_sent_as_flytekit_sends_it(
    notifier: Notifier, admin: FlyteAdminServer, signal: str, value: Any, recorded: str
) -> None:
    answer = await notifier.act(RUN, "signal", ALICE, signal_id=signal, value=value)
    assert answer.record.outcome is ActionOutcome.DONE
    assert answer.record.value == value
    assert sent(admin, "SetSignal") == [gates.set_request(recorded, RUN)]


async def test_a_value_of_the_wrong_type_is_refused_before_anything_is_sent(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    with pytest.raises(InputError) as wrong:
        await notifier.act(RUN, "signal", ALICE, signal_id="replicas", value="three")
    assert [p.field for p in wrong.value.problems] == ["value"]
    assert "expects an integer (int)" in wrong.value.problems[0].message
    with pytest.raises(InputError) as not_bool:
        await notifier.act(RUN, "approve", ALICE, signal_id="replicas")
    assert [p.field for p in not_bool.value.problems] == ["action"]
    with pytest.raises(InputError) as true_is_no_int:
        await notifier.act(RUN, "signal", ALICE, signal_id="replicas", value=True)
    assert [p.field for p in true_is_no_int.value.problems] == ["value"]
    assert sent(admin, "SetSignal") == []
    history = await notifier.action_history(RUN)
    assert [a.outcome for a in history] == [ActionOutcome.REFUSED] * 3
    assert history[0].value == "three"
    # Refusals decide nothing: the right value is taken afterwards.
    assert (await notifier.act(RUN, "signal", ALICE, signal_id="replicas", value=3)).new


async def test_text_from_a_command_line_is_read_as_the_gates_type(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    await notifier.act(RUN, "signal", ALICE, signal_id="replicas", value="3", from_text=True)
    await notifier.act(RUN, "signal", ALICE, signal_id="go-live", value="false", from_text=True)
    assert sent(admin, "SetSignal") == [
        gates.set_request("replicas", RUN),
        gates.set_request("go-live", RUN),
    ]


async def test_the_shape_of_a_request_is_checked_field_by_field(notifier: Notifier) -> None:
    cases = [
        (dict(action="promote"), "action"),
        (dict(action="approve"), "signal_id"),
        (dict(action="approve", signal_id="approve-deploy", value=True), "value"),
        (dict(action="signal", signal_id="replicas"), "value"),
        (dict(action="signal", signal_id="replicas", value=[3]), "value"),
        (dict(action="relaunch", signal_id="approve-deploy"), "signal_id"),
        (dict(action="approve", signal_id="a/b"), "signal_id"),
    ]
    for given, field in cases:
        action = given.pop("action")
        with pytest.raises(InputError) as bad:
            await notifier.act(RUN, action, ALICE, **given)  # type: ignore[arg-type]
        assert field in [p.field for p in bad.value.problems], (action, given)


async def test_an_unknown_gate_names_the_gates_there_are(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    with pytest.raises(UnknownReference) as unknown:
        await notifier.act(RUN, "approve", ALICE, signal_id="approve-prod")
    message = unknown.value.problems[0].message
    assert "no gate 'approve-prod'" in message
    assert "approve-deploy, canary-ratio, go-live, release-note, replicas" in message
    assert [a.outcome for a in await notifier.action_history(RUN)] == [ActionOutcome.REFUSED]


async def test_a_gate_answered_elsewhere_is_reported_not_sent_again(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    # Someone answers with flytekit's FlyteRemote.reject first.
    with grpc.insecure_channel(admin.endpoint) as channel:
        signal_pb2_grpc.SignalServiceStub(channel).SetSignal(gates.set_request("reject", RUN))
    answer = await notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    assert answer.new
    assert answer.record.outcome is ActionOutcome.ANSWERED
    assert answer.record.value is False
    assert "answered elsewhere" in answer.record.detail
    assert len(admin.requests_to("SetSignal")) == 1  # flytekit's, not ours
    assert admin.signal_value(RUN, "approve-deploy").scalar.primitive.boolean is False
    # Decided: asked again, FlyteAdmin is not asked again.
    lists = len(admin.requests_to("ListSignals"))
    assert not (await notifier.act(RUN, "approve", BOB, signal_id="approve-deploy")).new
    assert len(admin.requests_to("ListSignals")) == lists


# -- who may ------------------------------------------------------------------------------


async def test_an_actor_no_entry_allows_is_refused_and_recorded(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    with pytest.raises(Forbidden) as refused:
        await notifier.act(RUN, "approve", MALLORY, signal_id="approve-deploy")
    assert refused.value.problems[0].field == "actor"
    assert "slack:U0MALLORY may not approve in flytesnacks/development" in str(refused.value)
    other = ExecutionId("elsewhere", "development", RUN.name)
    with pytest.raises(Forbidden):  # Alice's entry is for one project
        await notifier.act(other, "approve", ALICE, signal_id="approve-deploy")
    assert admin.requests_to("ListSignals") == []  # refused before FlyteAdmin is asked
    [record] = await notifier.action_history(RUN)
    assert (record.actor, record.outcome) == ("slack:U0MALLORY", ActionOutcome.REFUSED)
    assert record.decision is None


async def test_groups_wildcards_and_the_actions_an_entry_names(
    admin: FlyteAdminServer, tmp_path: Path
) -> None:
    allow = [
        {"actors": ["slack-group:S0RELEASE"], "actions": ["approve", "reject"]},
        {"domain": "development", "actors": ["api-token:*"], "actions": ["relaunch"]},
    ]
    settings = settings_for(admin, tmp_path, actions={"allow": allow})
    member = Actor("slack:U0CAROL", "slack-signature", groups=("slack-group:S0RELEASE",))
    token = Actor("api-token:3f2a9c1e0b7d4a56", "api-token")
    async with Notifier(settings) as notifier:
        assert (await notifier.act(RUN, "approve", member, signal_id="approve-deploy")).new
        with pytest.raises(Forbidden):  # the group may approve, not relaunch
            await notifier.act(RUN, "relaunch", member)
        with pytest.raises(Forbidden):  # tokens may relaunch, not signal
            await notifier.act(RUN, "signal", token, signal_id="replicas", value=2)
        assert (await notifier.act(RUN, "relaunch", token)).new


# -- relaunch, recover, abort ----------------------------------------------------------------


async def test_relaunch_and_recover_make_one_new_execution_each(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    relaunched = await notifier.act(RUN, "relaunch", ALICE)
    recovered = await notifier.act(RUN, "recover", BOB)
    new_names = {relaunched.record.result, recovered.record.result}
    assert len(new_names) == 2
    for result in new_names:
        made = admin.state.executions[ExecutionId.parse(result)]
        assert made.spec.metadata.reference_execution.name == RUN.name
    assert [r.request.id for r in admin.requests_to("RelaunchExecution")] == [
        gates.relaunch_request().id
    ]
    again = await notifier.act(RUN, "relaunch", BOB)
    assert not again.new
    assert again.record.result == relaunched.record.result
    assert len(admin.requests_to("RelaunchExecution")) == 1


async def test_a_relaunch_flyteadmin_made_before_a_crash_is_taken_as_done(
    notifier: Notifier, admin: FlyteAdminServer, tmp_path: Path
) -> None:
    first = await notifier.act(RUN, "relaunch", ALICE)
    # Another ledger (as if the first record was lost): FlyteAdmin refuses the name as taken.
    async with Notifier(settings_for(admin, tmp_path / "other")) as fresh:
        again = await fresh.act(RUN, "relaunch", ALICE)
    assert again.new
    assert again.record.outcome is ActionOutcome.DONE
    assert again.record.result == first.record.result
    codes = [r.code for r in admin.requests_to("RelaunchExecution")]
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS]


async def test_abort_stops_a_running_execution_once(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    answer = await notifier.act(RUN, "abort", ALICE)
    assert answer.record.outcome is ActionOutcome.DONE
    [request] = sent(admin, "TerminateExecution")
    assert request.cause == "aborted by slack:U0ALICE through flytenotify"
    finished = ExecutionId(RUN.project, RUN.domain, "done-already")
    done = admin_execution(finished, launch_plan=PLAN, workflow=PLAN)
    done.closure.phase = 4  # SUCCEEDED
    admin.add(done)
    ended = await notifier.act(finished, "abort", ALICE)
    assert ended.record.outcome is ActionOutcome.ANSWERED
    assert "already terminated" in ended.record.detail


# -- FlyteAdmin away or refusing ---------------------------------------------------------------


async def test_flyteadmin_down_is_unavailable_and_nothing_is_done(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    admin.stop()
    with pytest.raises(UpstreamUnavailable) as down:
        await notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    assert "FlyteAdmin" in str(down.value)
    [failed] = await notifier.action_history(RUN)
    assert (failed.outcome, failed.decision) == (ActionOutcome.FAILED, None)
    admin.start()
    answer = await _once_reachable(
        lambda: notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    )
    assert answer.new
    assert answer.record.outcome is ActionOutcome.DONE
    assert admin.signal_value(RUN, "approve-deploy").scalar.primitive.boolean is True


async def _once_reachable(ask: Callable[[], Awaitable[Any]]) -> Any:
    """Ask until FlyteAdmin, just back, is reachable again: gRPC's reconnect backoff
    lets the first calls fail fast (bounded: 50 tries, about 10 s)."""
    for _ in range(50):
        try:
            return await ask()
        except UpstreamUnavailable:
            await asyncio.sleep(0.2)
    raise AssertionError("FlyteAdmin did not come back")


async def test_flyteadmins_refusal_is_recorded_with_its_words(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    admin.fail(grpc.StatusCode.PERMISSION_DENIED, details="not yours", method="SetSignal")
    with pytest.raises(UpstreamRefused) as refused:
        await notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    assert str(refused.value) == "PERMISSION_DENIED: not yours"
    [failed] = await notifier.action_history(RUN)
    assert failed.outcome is ActionOutcome.FAILED
    assert failed.detail == "Flyte refused it: PERMISSION_DENIED: not yours"


async def test_an_execution_nobody_can_ask_about_is_unknown(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'l.db'}"},
            "actions": {"allow": [{"actors": ["slack:*"]}]},
        }
    )
    async with Notifier(settings) as notifier:
        with pytest.raises(UnknownReference, match="no Flyte can be asked"):
            await notifier.act(RUN, "relaunch", ALICE)


# -- requests at once ------------------------------------------------------------------------


async def test_requests_at_once_send_one_answer(admin: FlyteAdminServer, tmp_path: Path) -> None:
    settings = settings_for(admin, tmp_path)
    # Two replicas (each its own Notifier on the one ledger), and two people clicking.
    async with Notifier(settings) as one, Notifier(settings) as two:
        answers = await asyncio.gather(
            one.act(RUN, "approve", ALICE, signal_id="approve-deploy"),
            two.act(RUN, "reject", BOB, signal_id="approve-deploy"),
            one.act(RUN, "reject", BOB, signal_id="approve-deploy"),
        )
        history = await one.action_history(RUN)
    assert sum(answer.new for answer in answers) == 1
    assert len(admin.requests_to("SetSignal")) == 1
    [decided] = [a.record for a in answers if a.new]
    assert decided.outcome is ActionOutcome.DONE
    held = [a.record for a in answers if not a.new]
    assert all(r.decision == decided.decision for r in held)  # pending or done: the same one
    assert [r.outcome for r in history] == [ActionOutcome.DONE]


async def test_a_decision_held_by_a_stopped_process_is_let_go(
    notifier: Notifier, admin: FlyteAdminServer
) -> None:
    from flytenotify.actions import PENDING_FOR
    from flytenotify.store.base import NewAction

    long_ago = datetime.fromtimestamp(datetime.now(UTC).timestamp() - PENDING_FOR - 1, UTC)
    decision = f"{RUN}/gate/approve-deploy"
    stuck = NewAction(RUN, ActionKind.APPROVE, BOB, ActionOutcome.PENDING, long_ago,
                      target="approve-deploy", value=True, decision=decision)  # fmt: skip
    await notifier.store.record_action(stuck)
    answer = await notifier.act(RUN, "approve", ALICE, signal_id="approve-deploy")
    assert answer.new
    assert answer.record.outcome is ActionOutcome.DONE
    first, second = await notifier.action_history(RUN)
    assert (first.outcome, first.decision) == (ActionOutcome.FAILED, None)
    assert "abandoned" in first.detail
    assert second.decision == decision
    # One held now (not long ago) is not let go.
    fresh = NewAction(RUN, ActionKind.RELAUNCH, BOB, ActionOutcome.PENDING, datetime.now(UTC),
                      decision=f"{RUN}/relaunch")  # fmt: skip
    await notifier.store.record_action(fresh)
    waiting = await notifier.act(RUN, "relaunch", ALICE)
    assert not waiting.new
    assert waiting.record.outcome is ActionOutcome.PENDING
    assert waiting.record.summary().startswith("being relaunched by email:bob@example.com since")
    assert admin.requests_to("RelaunchExecution") == []
