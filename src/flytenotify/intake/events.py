"""Events in: every accepted form normalised to one :class:`ExecutionEvent`.

JSON and protobuf take the same road: JSON is parsed into flyteidl's
``WorkflowExecutionEvent`` with protobuf's own parser (so both field
spellings, enum names or numbers and RFC 3339 timestamps work exactly as
protobuf defines them), then the message is checked and converted. Every
problem is reported with its field.

Whatever the form, the event ends in :func:`checked_event`, which applies the
intake limits (:mod:`flytenotify.intake.limits`): identifiers a store cannot
hold are refused, free text is made storable. An :class:`ExecutionEvent` built
by a Python caller goes through it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from flyteidl.admin import event_pb2 as admin_event_pb2
from flyteidl.core import execution_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from flytenotify.domain import (
    PAUSED,
    RECOVERED,
    EntityId,
    ErrorKind,
    ExecutionError,
    ExecutionEvent,
    ExecutionId,
)
from flytenotify.errors import InputError, Problem
from flytenotify.intake.limits import TEXT_LIMITS, clean_text, id_problems, time_problems

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
    launch_plan = (
        entity_id_from_json(launch_plan_raw, "launch_plan") if launch_plan_raw is not None else None
    )
    return _plain_event(fields, launch_plan) or _event_via_protobuf(fields, launch_plan)


def published_event_from_json(
    fields: Mapping[str, Any], launch_plan: EntityId | None
) -> ExecutionEvent:
    """An event as FlyteAdmin publishes it in a cloud event (its ``raw_event``): the
    fields an event is made of are read, any other is ignored (``output_data``, and
    what a newer FlyteAdmin adds), so only what is used can make it malformed."""
    used = {key: value for key, value in fields.items() if key in _PLAIN_SPELLINGS}
    return _plain_event(used, launch_plan) or _event_via_protobuf(dict(fields), launch_plan, True)


def _event_via_protobuf(
    fields: dict[str, Any], launch_plan: EntityId | None, ignore_unknown: bool = False
) -> ExecutionEvent:
    """protobuf's own JSON parser: every form the mapping allows, and its error messages."""
    wrong = enum_problems(fields)
    if wrong:
        raise InputError(wrong)
    message = event_pb2.WorkflowExecutionEvent()
    try:
        json_format.ParseDict(fields, message, ignore_unknown_fields=ignore_unknown)
    except json_format.ParseError as error:
        raise InputError(Problem(_field_of(str(error)), str(error))) from None
    return event_from_proto(message, launch_plan)


# A name, or a whole number in ASCII digits: protobuf's JSON parser hands any
# other string to int(), which reads Arabic-Indic, fullwidth and " 6" as 6 (FAILED).
_ENUM_SPELLING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|-?[0-9]+")


def enum_problems(event: Mapping[str, Any], prefix: str = "") -> list[Problem]:
    """The phase and error kind of an event in JSON, if not a name or a whole number.

    protobuf's parser reads true/false as enum numbers 1/0, 1.5 as 1, and a
    string of any Unicode digits as a number: each of these is refused here,
    before it parses. ``prefix`` is where the event sits (``data.raw_event``).
    """
    error = event.get("error")
    enums = {
        "phase": event.get("phase"),
        "error.kind": error.get("kind") if isinstance(error, dict) else None,
    }
    at = f"{prefix}." if prefix else ""
    return [
        Problem(f"{at}{field}", f"must be a name or a whole number in ASCII digits, got {value!r}")
        for field, value in enums.items()
        if value is not None
        and (
            isinstance(value, bool)
            or not isinstance(value, str | int)
            or (isinstance(value, str) and not _ENUM_SPELLING.fullmatch(value))
        )
    ]


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
_ERROR_KINDS = frozenset(execution_pb2.ExecutionError.ErrorKind.values())
_PHASE_NUMBERS = {
    name: number
    for name, number in execution_pb2.WorkflowExecution.Phase.items()
    if number != execution_pb2.WorkflowExecution.UNDEFINED
}


# Every phase an event may carry: Flyte 1's, and those only Flyte 2 runs reach.
_EVENT_PHASES = frozenset({*_PHASE_NUMBERS.values(), PAUSED, RECOVERED})


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
    return checked_event(
        ExecutionEvent(
            execution_id=ExecutionId(ident["project"], ident["domain"], ident["name"]),
            phase=phase,
            occurred_at=occurred_at,
            producer_id=producer,
            error=error,
            output_uri=output,
            launch_plan=launch_plan,
        )
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
    if message.HasField("error") and message.error.kind not in _ERROR_KINDS:
        problems.append(Problem("error.kind", f"unknown error kind number {message.error.kind}"))
    if problems:
        raise InputError(problems)
    occurred_at = (
        message.occurred_at.ToDatetime(tzinfo=UTC)
        if message.HasField("occurred_at")
        else datetime.now(UTC)
    )
    return checked_event(
        ExecutionEvent(
            execution_id=ExecutionId(*(getattr(message.execution_id, f) for f in _ID_FIELDS)),
            phase=int(message.phase),
            occurred_at=occurred_at,
            producer_id=message.producer_id,
            error=_error_from_proto(message.error) if message.HasField("error") else None,
            output_uri=message.output_uri,
            launch_plan=launch_plan,
        )
    )


def checked_event(event: ExecutionEvent) -> ExecutionEvent:
    """``event`` within the intake limits: identifiers checked, free text made storable.

    Raises :class:`InputError` naming each bad field (``execution_id.name``,
    ``launch_plan.version``, ``phase``...). Every event form ends here.
    """
    problems = execution_id_problems(event.execution_id, "execution_id")
    if event.launch_plan is not None:
        problems += entity_id_problems(event.launch_plan, "launch_plan")
    if not isinstance(event.phase, int) or event.phase not in _EVENT_PHASES:
        problems.append(
            Problem("phase", f"must be a phase number of an event, got {event.phase!r}")
        )
    if not isinstance(event.occurred_at, datetime):
        problems.append(Problem("occurred_at", f"must be a datetime, got {event.occurred_at!r}"))
    else:
        problems += time_problems(event.occurred_at, "occurred_at")
    problems += _text_type_problems(event)
    if problems:
        raise InputError(problems)
    return _with_storable_text(event)


def _text_type_problems(event: ExecutionEvent) -> list[Problem]:
    texts: dict[str, object] = {"producer_id": event.producer_id, "output_uri": event.output_uri}
    if event.error is not None:
        texts |= {f"error.{k}": getattr(event.error, k) for k in ("message", "code", "error_uri")}
    return [
        Problem(field, f"must be a string, got {type(value).__name__}")
        for field, value in texts.items()
        if not isinstance(value, str)
    ]


def _with_storable_text(event: ExecutionEvent) -> ExecutionEvent:
    producer_id = clean_text(event.producer_id, TEXT_LIMITS["producer_id"])
    output_uri = clean_text(event.output_uri, TEXT_LIMITS["output_uri"])
    error = event.error
    if error is not None:
        cleaned = ExecutionError(
            message=clean_text(error.message, TEXT_LIMITS["error.message"]),
            code=clean_text(error.code, TEXT_LIMITS["error.code"]),
            kind=error.kind,
            error_uri=clean_text(error.error_uri, TEXT_LIMITS["error.error_uri"]),
        )
        error = error if cleaned == error else cleaned
    if (producer_id, output_uri, error) == (event.producer_id, event.output_uri, event.error):
        return event  # the common case: nothing to change, nothing copied
    return replace(event, producer_id=producer_id, output_uri=output_uri, error=error)


def execution_id_problems(ident: object, field: str) -> list[Problem]:
    """What is wrong with an :class:`ExecutionId` (its parts checked by the intake limits)."""
    if not isinstance(ident, ExecutionId):
        return [Problem(field, f"must be an ExecutionId, got {type(ident).__name__}")]
    return id_problems({f: getattr(ident, f) for f in _ID_FIELDS}, field)


def entity_id_problems(ident: object, field: str, version_required: bool = False) -> list[Problem]:
    """What is wrong with an :class:`EntityId` of a launch plan or workflow."""
    if not isinstance(ident, EntityId):
        return [Problem(field, f"must be an EntityId, got {type(ident).__name__}")]
    parts = {f: getattr(ident, f) for f in (*_ID_FIELDS, "version")}
    return id_problems(parts, field, version_required)


def check_execution_id(ident: object, field: str) -> None:
    """Raise :class:`InputError` naming each bad part of an execution id."""
    problems = execution_id_problems(ident, field)
    if problems:
        raise InputError(problems)


def check_entity_id(ident: object, field: str, version_required: bool = False) -> None:
    """Raise :class:`InputError` naming each bad part of a launch plan or workflow id."""
    problems = entity_id_problems(ident, field, version_required)
    if problems:
        raise InputError(problems)


def _error_from_proto(error: Any) -> ExecutionError:
    kind_name = execution_pb2.ExecutionError.ErrorKind.Name(error.kind)
    return ExecutionError(
        message=error.message,
        code=error.code,
        kind=ErrorKind(kind_name) if kind_name in ErrorKind.__members__ else ErrorKind.UNKNOWN,
        error_uri=error.error_uri,
    )


def entity_id_from_json(
    data: object, field: str, version_required: bool = False, with_version: bool = True
) -> EntityId:
    """``{"project", "domain", "name", "version"?}`` into an :class:`EntityId`."""
    if not isinstance(data, Mapping):
        raise InputError(
            Problem(field, f"must be an object with project, domain and name, got {data!r}")
        )
    parts = {key: data.get(key) for key in _ID_FIELDS}
    parts["version"] = data.get("version", "")
    problems = id_problems(parts, field, version_required)
    known = (*_ID_FIELDS, "version") if with_version else _ID_FIELDS
    problems += [Problem(f"{field}.{key}", "unknown field") for key in data if key not in known]
    if problems:
        raise InputError(problems)
    return EntityId(data["project"], data["domain"], data["name"], data.get("version", ""))


def execution_id_from_json(data: object, field: str = "id") -> ExecutionId:
    entity = entity_id_from_json(data, field, with_version=False)
    return ExecutionId(entity.project, entity.domain, entity.name)


def _field_of(message: str) -> str:
    # protobuf says "Failed to parse phase field: ..." or
    # "Message type ... has no field named "x" at "WorkflowExecutionEvent"".
    if "Failed to parse " in message and " field" in message:
        return message.split("Failed to parse ", 1)[1].split(" field", 1)[0]
    if 'has no field named "' in message:
        return message.split('has no field named "', 1)[1].split('"', 1)[0]
    return ""
