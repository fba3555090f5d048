"""Events in: every accepted form normalised to one :class:`ExecutionEvent`.

JSON and protobuf take the same road: JSON is parsed into flyteidl's
``WorkflowExecutionEvent`` with protobuf's own parser (so both field
spellings, enum names or numbers and RFC 3339 timestamps work exactly as
protobuf defines them), then the message is checked and converted. Every
problem is reported with its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flyteidl.admin import event_pb2 as admin_event_pb2
from flyteidl.core import execution_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from flytenotify.domain import EntityId, ErrorKind, ExecutionError, ExecutionEvent, ExecutionId
from flytenotify.errors import InputError, Problem

_ID_FIELDS = ("project", "domain", "name")
# Not part of flyteidl's event: a producer may name the launch plan so that an
# event for an execution we never saw can still be resolved.
_LAUNCH_PLAN_KEYS = ("launch_plan", "launchPlan")


def event_from_json(data: object) -> ExecutionEvent:
    """An event from the protobuf JSON mapping of ``WorkflowExecutionEvent``."""
    if not isinstance(data, Mapping):
        raise InputError(Problem("", f"an event must be a JSON object, got {type(data).__name__}"))
    fields = dict(data)
    launch_plan_raw = next((fields.pop(k) for k in _LAUNCH_PLAN_KEYS if k in fields), None)
    launch_plan = entity_id_from_json(launch_plan_raw, "launch_plan") if launch_plan_raw else None
    return _plain_event(fields, launch_plan) or _event_via_protobuf(fields, launch_plan)


def _event_via_protobuf(fields: dict[str, Any], launch_plan: EntityId | None) -> ExecutionEvent:
    """protobuf's own JSON parser: every form the mapping allows, and its error messages."""
    message = event_pb2.WorkflowExecutionEvent()
    try:
        json_format.ParseDict(fields, message)
    except json_format.ParseError as error:
        raise InputError(Problem(_field_of(str(error)), str(error))) from None
    return event_from_proto(message, launch_plan)


# The plain shape producers send: protobuf's generic JSON parser was a third of
# the intake's CPU. Anything beyond it (a field spelled both ways, a phase
# number, nanosecond timestamps, a mistake) takes the protobuf road instead, so
# behaviour and error messages stay protobuf's.
_PLAIN_SPELLINGS = {
    "executionId": "execution_id",
    "execution_id": "execution_id",
    "producerId": "producer_id",
    "producer_id": "producer_id",
    "phase": "phase",
    "occurredAt": "occurred_at",
    "occurred_at": "occurred_at",
    "outputUri": "output_uri",
    "output_uri": "output_uri",
    "error": "error",
}
_PLAIN_ERROR_SPELLINGS = {
    "code": "code",
    "message": "message",
    "kind": "kind",
    "errorUri": "error_uri",
    "error_uri": "error_uri",
}
_PHASE_NUMBERS = {
    name: number
    for name, number in execution_pb2.WorkflowExecution.Phase.items()
    if number != execution_pb2.WorkflowExecution.UNDEFINED
}


def _plain_event(fields: dict[str, Any], launch_plan: EntityId | None) -> ExecutionEvent | None:
    """The event if ``fields`` has the plain shape, else None."""
    named = _rename(fields, _PLAIN_SPELLINGS)
    if named is None or not isinstance(named.get("phase"), str):
        return None
    phase = _PHASE_NUMBERS.get(named["phase"])
    ident = named.get("execution_id")
    if phase is None or not isinstance(ident, dict) or set(ident) != set(_ID_FIELDS):
        return None
    if not all(isinstance(ident[f], str) and ident[f] for f in _ID_FIELDS):
        return None
    occurred_at = _plain_time(named.get("occurred_at"))
    error = _plain_error(named["error"]) if "error" in named else None
    producer, output = named.get("producer_id", ""), named.get("output_uri", "")
    plain_error = error is not None or "error" not in named
    if occurred_at is None or not plain_error or not isinstance(producer, str):
        return None
    if not isinstance(output, str):
        return None
    return ExecutionEvent(
        execution_id=ExecutionId(ident["project"], ident["domain"], ident["name"]),
        phase=phase,
        occurred_at=occurred_at,
        producer_id=producer,
        error=error,
        output_uri=output,
        launch_plan=launch_plan,
    )


def _rename(fields: dict[str, Any], spellings: dict[str, str]) -> dict[str, Any] | None:
    """Fields under their snake_case names; None for an unknown key or one given twice."""
    named: dict[str, Any] = {}
    for key, value in fields.items():
        name = spellings.get(key)
        if name is None or name in named:
            return None
        named[name] = value
    return named


def _plain_time(value: object) -> datetime | None:
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 27:
        return None  # offsets and nanoseconds: protobuf knows best
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC)


def _plain_error(value: object) -> ExecutionError | None:
    """The error (``{}`` is an empty one, as in protobuf), or None when not plain."""
    named = _rename(value, _PLAIN_ERROR_SPELLINGS) if isinstance(value, dict) else None
    if named is None or not all(isinstance(v, str) for v in named.values()):
        return None
    kind = named.get("kind", "UNKNOWN")
    if kind not in ErrorKind.__members__:
        return None
    return ExecutionError(
        message=named.get("message", ""),
        code=named.get("code", ""),
        kind=ErrorKind(kind),
        error_uri=named.get("error_uri", ""),
    )


def event_from_bytes(body: bytes) -> ExecutionEvent:
    """A serialized ``WorkflowExecutionEventRequest`` or bare ``WorkflowExecutionEvent``."""
    request = admin_event_pb2.WorkflowExecutionEventRequest()
    try:
        request.ParseFromString(body)
        if request.event.HasField("execution_id"):
            return event_from_proto(request.event)
    except DecodeError:
        pass  # not a request: the bare event's fields do not decode as one
    message = event_pb2.WorkflowExecutionEvent()
    try:
        message.ParseFromString(body)
    except DecodeError as error:
        raise InputError(Problem("", f"not a valid protobuf message: {error}")) from None
    return event_from_proto(message)


def event_from_proto(message: Any, launch_plan: EntityId | None = None) -> ExecutionEvent:
    """Check a ``WorkflowExecutionEvent`` message and normalise it."""
    problems: list[Problem] = []
    if not message.HasField("execution_id"):
        problems.append(Problem("execution_id", "is required"))
    else:
        problems += [
            Problem(f"execution_id.{f}", "is required")
            for f in _ID_FIELDS
            if not getattr(message.execution_id, f)
        ]
    if message.phase == execution_pb2.WorkflowExecution.UNDEFINED:
        problems.append(
            Problem("phase", "is required (UNDEFINED is not a phase an event can report)")
        )
    elif message.phase not in execution_pb2.WorkflowExecution.Phase.values():
        # protobuf keeps unknown enum numbers; an event must name a real phase.
        problems.append(Problem("phase", f"unknown phase number {message.phase}"))
    if problems:
        raise InputError(problems)
    occurred_at = (
        message.occurred_at.ToDatetime(tzinfo=UTC)
        if message.HasField("occurred_at")
        else datetime.now(UTC)
    )
    return ExecutionEvent(
        execution_id=ExecutionId(*(getattr(message.execution_id, f) for f in _ID_FIELDS)),
        phase=int(message.phase),
        occurred_at=occurred_at,
        producer_id=message.producer_id,
        error=_error_from_proto(message.error) if message.HasField("error") else None,
        output_uri=message.output_uri,
        launch_plan=launch_plan,
    )


def _error_from_proto(error: Any) -> ExecutionError:
    kind_name = execution_pb2.ExecutionError.ErrorKind.Name(error.kind)
    return ExecutionError(
        message=error.message,
        code=error.code,
        kind=ErrorKind(kind_name) if kind_name in ErrorKind.__members__ else ErrorKind.UNKNOWN,
        error_uri=error.error_uri,
    )


def entity_id_from_json(data: object, field: str, version_required: bool = False) -> EntityId:
    """``{"project", "domain", "name", "version"?}`` into an :class:`EntityId`."""
    if not isinstance(data, Mapping):
        raise InputError(
            Problem(field, f"must be an object with project, domain and name, got {data!r}")
        )
    problems = [
        Problem(f"{field}.{key}", "is required: a non-empty string")
        for key in (*_ID_FIELDS, *(("version",) if version_required else ()))
        if not isinstance(data.get(key), str) or not data.get(key)
    ]
    version = data.get("version", "")
    if not isinstance(version, str):
        problems.append(Problem(f"{field}.version", f"must be a string, got {version!r}"))
    if problems:
        raise InputError(problems)
    return EntityId(data["project"], data["domain"], data["name"], version)


def execution_id_from_json(data: object, field: str = "id") -> ExecutionId:
    entity = entity_id_from_json(data, field)
    return ExecutionId(entity.project, entity.domain, entity.name)


def _field_of(message: str) -> str:
    # protobuf says "Failed to parse phase field: ..." or
    # "Message type ... has no field named "x" at "WorkflowExecutionEvent"".
    if "Failed to parse " in message and " field" in message:
        return message.split("Failed to parse ", 1)[1].split(" field", 1)[0]
    if 'has no field named "' in message:
        return message.split('has no field named "', 1)[1].split('"', 1)[0]
    return ""
