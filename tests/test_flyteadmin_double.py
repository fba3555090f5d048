"""The loopback FlyteAdmin answers signals, relaunches and recoveries as FlyteAdmin does.

Driven with the requests flytekit 1.16.31's ``FlyteRemote`` sends (recorded in
tests/data/flytekit_gates.json) over real gRPC, so what the actions are later
tested against is known to behave like flyteadmin's signal manager and execution
manager.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from flyteidl.admin import execution_pb2
from flyteidl.core import identifier_pb2, types_pb2
from flyteidl.service import admin_pb2_grpc, signal_pb2_grpc

from flytenotify.domain import EntityId, ExecutionId
from tests import gates
from tests.servers.flyteadmin import FlyteAdminServer, admin_execution

EXECUTION = gates.recorded_execution()


@pytest.fixture
def admin() -> Iterator[FlyteAdminServer]:
    with FlyteAdminServer() as server:
        server.add(
            admin_execution(
                EXECUTION,
                launch_plan=EntityId(EXECUTION.project, EXECUTION.domain, "release", "v1"),
                workflow=EntityId(EXECUTION.project, EXECUTION.domain, "release", "v1"),
                created_at=datetime.now(UTC),
            )
        )
        yield server


def stubs(admin: FlyteAdminServer) -> tuple[object, object, grpc.Channel]:
    channel = grpc.insecure_channel(admin.endpoint)
    return (
        signal_pb2_grpc.SignalServiceStub(channel),
        admin_pb2_grpc.AdminServiceStub(channel),
        channel,
    )


def test_signals_exist_once_a_gate_is_reached_and_are_pending(admin: FlyteAdminServer) -> None:
    signals, _, channel = stubs(admin)
    with channel:
        assert signals.ListSignals(gates.list_request()).signals == []  # type: ignore[attr-defined]
        made = admin.reach_gates(EXECUTION, gates.template())
        assert made == ["approve-deploy", "release-note", "replicas", "canary-ratio", "go-live"]
        found = signals.ListSignals(gates.list_request()).signals  # type: ignore[attr-defined]
    kinds = {s.id.signal_id: s.type.simple for s in found}
    assert kinds == {
        "approve-deploy": types_pb2.BOOLEAN,  # approve(): a boolean signal
        "release-note": types_pb2.STRING,
        "replicas": types_pb2.INTEGER,
        "canary-ratio": types_pb2.FLOAT,
        "go-live": types_pb2.BOOLEAN,
    }
    assert not any(s.HasField("value") for s in found)


def test_list_signals_wants_a_limit_and_pages_by_offset(admin: FlyteAdminServer) -> None:
    admin.reach_gates(EXECUTION, gates.template())
    signals, _, channel = stubs(admin)
    request = gates.list_request()
    with channel:
        request.limit = 0
        with pytest.raises(grpc.RpcError) as refused:
            signals.ListSignals(request)  # type: ignore[attr-defined]
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request.limit = 3
        first = signals.ListSignals(request)  # type: ignore[attr-defined]
        request.token = first.token
        second = signals.ListSignals(request)  # type: ignore[attr-defined]
    assert (len(first.signals), first.token, len(second.signals), second.token) == (3, "3", 2, "")


def test_set_signal_checks_the_type_and_writes_over_a_value(admin: FlyteAdminServer) -> None:
    admin.reach_gates(EXECUTION, gates.template())
    signals, _, channel = stubs(admin)
    with channel:
        signals.SetSignal(gates.set_request("approve"))  # type: ignore[attr-defined]
        assert admin.signal_value(EXECUTION, "approve-deploy").scalar.primitive.boolean is True
        # FlyteAdmin keeps no "answered" state: a second value replaces the first.
        signals.SetSignal(gates.set_request("reject"))  # type: ignore[attr-defined]
        assert admin.signal_value(EXECUTION, "approve-deploy").scalar.primitive.boolean is False

        wrong = gates.set_request("note")  # a string ...
        wrong.id.signal_id = "replicas"  # ... for an integer signal
        with pytest.raises(grpc.RpcError) as refused:
            signals.SetSignal(wrong)  # type: ignore[attr-defined]
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not castable" in (refused.value.details() or "")

        unknown = gates.set_request("note")
        unknown.id.signal_id = "no-such-gate"
        with pytest.raises(grpc.RpcError) as missing:
            signals.SetSignal(unknown)  # type: ignore[attr-defined]
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exists" in (missing.value.details() or "")
    assert admin.signal_value(EXECUTION, "replicas") is None


def test_relaunch_and_recover_make_a_new_execution_once_per_name(
    admin: FlyteAdminServer,
) -> None:
    _, service, channel = stubs(admin)
    request = gates.relaunch_request()
    request.name = "again-1"
    with channel:
        made = service.RelaunchExecution(request)  # type: ignore[attr-defined]
        assert made.id.name == "again-1"
        with pytest.raises(grpc.RpcError) as twice:
            service.RelaunchExecution(request)  # type: ignore[attr-defined]
        assert twice.value.code() == grpc.StatusCode.ALREADY_EXISTS
        recovered = service.RecoverExecution(  # type: ignore[attr-defined]
            execution_pb2.ExecutionRecoverRequest(id=request.id, name="recovered-1")
        )
        unknown = identifier_pb2.WorkflowExecutionIdentifier(
            project=EXECUTION.project, domain=EXECUTION.domain, name="nope"
        )
        with pytest.raises(grpc.RpcError) as missing:
            service.RelaunchExecution(  # type: ignore[attr-defined]
                execution_pb2.ExecutionRelaunchRequest(id=unknown)
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    again = admin.state.executions[ExecutionId(EXECUTION.project, EXECUTION.domain, "again-1")]
    assert again.spec.metadata.mode == execution_pb2.ExecutionMetadata.RELAUNCH
    assert again.spec.metadata.reference_execution.name == EXECUTION.name
    assert recovered.id.name == "recovered-1"
    assert [r.method for r in admin.requests_to("RecoverExecution")] == ["RecoverExecution"]
