"""Flyte 1 gate nodes as flytekit and FlytePropeller make them, for the tests.

``tests/data/flytekit_gates.json`` is recorded from the real flytekit 1.16.31
(``tests/data/generate_gates.py``): a workflow with ``approve()`` and one
``wait_for_input()`` of each simple type, and the requests ``FlyteRemote``
sends to answer them. :func:`gate_node_event` is the ``NodeExecutionEvent``
FlytePropeller reports when it reaches one of those nodes
(flytepropeller/pkg/controller/nodes/transformers.go ``ToNodeExecutionEvent``:
a gate waiting is RUNNING, with no task or workflow node metadata, its
``spec_node_id`` the node's id and ``node_name`` the node's metadata name,
which flytekit sets to the signal id).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flyteidl.admin import execution_pb2 as admin_execution_pb2
from flyteidl.admin import signal_pb2
from flyteidl.core import execution_pb2, identifier_pb2, workflow_pb2
from flyteidl.event import event_pb2

from flytenotify.domain import ExecutionId

GATES = Path(__file__).parent / "data" / "flytekit_gates.json"


@functools.cache
def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GATES.read_text())
    return data


def template() -> Any:
    """The ``core.WorkflowTemplate`` flytekit serialized (``release``)."""
    return workflow_pb2.WorkflowTemplate.FromString(
        bytes.fromhex(recorded()["workflow"]["template"])
    )


def gate_nodes() -> list[Any]:
    return [node for node in template().nodes if node.HasField("gate_node")]


def recorded_execution() -> ExecutionId:
    return ExecutionId(**recorded()["execution"])


def set_request(which: str, execution: ExecutionId | None = None) -> Any:
    """The ``SignalSetRequest`` flytekit's ``FlyteRemote`` sent (``approve``, ``reject``,
    ``note``, ``replicas``, ``ratio``, ``go-live``), for ``execution`` if given."""
    request = signal_pb2.SignalSetRequest.FromString(bytes.fromhex(recorded()["requests"][which]))
    if execution is not None:
        request.id.execution_id.CopyFrom(_execution(execution))
    return request


def list_request(execution: ExecutionId | None = None) -> Any:
    request = signal_pb2.SignalListRequest.FromString(bytes.fromhex(recorded()["requests"]["list"]))
    if execution is not None:
        request.workflow_execution_id.CopyFrom(_execution(execution))
    return request


def relaunch_request() -> Any:
    return admin_execution_pb2.ExecutionRelaunchRequest.FromString(
        bytes.fromhex(recorded()["requests"]["relaunch"])
    )


def gate_node_event(
    execution: ExecutionId, node: Any, *, phase: str = "RUNNING", at: datetime | None = None
) -> Any:
    """The event FlytePropeller reports for gate ``node`` (a ``core.Node``) of ``execution``."""
    ident = _execution(execution)
    message = event_pb2.NodeExecutionEvent(
        id=identifier_pb2.NodeExecutionIdentifier(node_id=node.id, execution_id=ident),
        producer_id="propeller",
        phase=execution_pb2.NodeExecution.Phase.Value(phase),
        spec_node_id=node.id,
        node_name=node.metadata.name,
        event_version=1,
        input_uri=f"s3://my-s3-bucket/metadata/propeller/{execution.name}/{node.id}/data/inputs.pb",
    )
    moment = at or datetime.now(UTC)
    message.occurred_at.FromDatetime(moment)
    message.reported_at.FromDatetime(moment)
    return message


def task_node_event(execution: ExecutionId, node_id: str = "n0") -> Any:
    """A task node running: what is NOT a gate (it carries task node metadata)."""
    message = gate_node_event(execution, workflow_pb2.Node(id=node_id))
    message.node_name = "build"
    message.task_node_metadata.cache_status = 1  # CACHE_DISABLED... any: the field is set
    return message


def _execution(execution: ExecutionId) -> Any:
    return identifier_pb2.WorkflowExecutionIdentifier(
        project=execution.project, domain=execution.domain, name=execution.name
    )
