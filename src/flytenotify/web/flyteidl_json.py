"""JSON Schemas of the shapes that mirror flyteidl's JSON mapping, written by hand.

Events (``WorkflowExecutionEvent``), Flyte's cloud events and notifications
(``admin.Notification``) are read by the intake's own parsers
(``intake/events.py``, ``intake/cloudevents.py``, ``notification_files.py``),
which follow protobuf's JSON mapping and name each mistake's field as flyteidl
spells it. No model describes them, so their schemas are here, in one place,
built from the same definitions the parsers use (the phase enums, the limits):
data the document calls valid is data the service accepts.
"""

from __future__ import annotations

from typing import Any

from flyteidl.core import execution_pb2

from flytenotify.domain import ErrorKind
from flytenotify.intake.limits import (
    EARLIEST_TIME,
    LATEST_TIME,
    RECIPIENT,
    TEMPLATE_LIMIT,
    identifier_pattern,
    iso_time,
)
from flytenotify.models.core.execution import TERMINAL_PHASES, WorkflowExecutionPhase

# In protobuf's JSON mapping, null stands for a field left out.
_OPTIONAL_STR = {"type": ["string", "null"]}
# RFC 3339 as protobuf's Timestamp reads it (ASCII digits, an offset or Z).
TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?"
    "(Z|[+-][0-9]{2}:[0-9]{2})$",
}
# An event's time: the years the ledger keeps to the microsecond (intake/limits.py,
# EARLIEST_TIME..LATEST_TIME, compared in UTC: an offset at either end can cross it).
_EVENT_TIME = {
    **TIME,
    "type": ["string", "null"],
    "pattern": "^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    "([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
    "description": f"from {iso_time(EARLIEST_TIME)} up to, not including, {iso_time(LATEST_TIME)}",
}

# protobuf's JSON mapping takes an enum's name or its number.
_PHASE_NUMBERS = {
    name: number
    for name, number in execution_pb2.WorkflowExecution.Phase.items()
    if number != execution_pb2.WorkflowExecution.UNDEFINED
}
_PHASE = {"enum": [*_PHASE_NUMBERS, *_PHASE_NUMBERS.values()]}
_TERMINAL = sorted(TERMINAL_PHASES)
_TERMINAL_PHASE = {
    "enum": [*(WorkflowExecutionPhase.enum_to_string(p) for p in _TERMINAL), *_TERMINAL]
}
_ERROR_KINDS = list(ErrorKind)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _identifier(part: str, shortest: int = 1) -> dict[str, Any]:
    return {"type": "string", "pattern": identifier_pattern(part, shortest)}


_RECIPIENTS = {"type": "array", "minItems": 1, "items": RECIPIENT}
_CHANNEL = {
    "type": "object",
    "required": ["recipientsEmail"],
    "additionalProperties": False,
    "properties": {
        "recipientsEmail": _RECIPIENTS,
        "template": {
            "type": ["string", "null"],
            "description": f"at most {TEMPLATE_LIMIT} characters",
            "pattern": "^[^\\u0000]*$",
        },
    },
}
# outputUri and error are one protobuf oneof (output_result): one of them at most.
_BOTH_RESULTS = {"required": ["outputUri", "error"]}
_EVENT_PROPERTIES: dict[str, Any] = {
    "executionId": ref("EventExecutionId"),
    "phase": _PHASE,
    "occurredAt": _EVENT_TIME,
    "producerId": _OPTIONAL_STR,
    "outputUri": _OPTIONAL_STR,
    "error": {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "code": _OPTIONAL_STR,
            "message": _OPTIONAL_STR,
            "kind": {"enum": [*_ERROR_KINDS, *range(len(_ERROR_KINDS)), None]},
            "errorUri": _OPTIONAL_STR,
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "EventExecutionId": {
        "type": "object",
        "required": ["project", "domain", "name"],
        "additionalProperties": False,
        "properties": {p: _identifier(p) for p in ("project", "domain", "name")},
    },
    "EventEntityId": {
        "type": "object",
        "required": ["project", "domain", "name"],
        "additionalProperties": False,
        "properties": {
            **{p: _identifier(p) for p in ("project", "domain", "name")},
            # Empty: the latest registered version.
            "version": _identifier("version", shortest=0),
        },
    },
    "Notification": {
        "type": "object",
        "description": "flyteidl admin.Notification in the protobuf JSON mapping: terminal"
        " phases and exactly one channel (snake_case spellings are accepted too)",
        "required": ["phases"],
        "additionalProperties": False,
        "minProperties": 2,
        "maxProperties": 2,
        "properties": {
            "phases": {"type": "array", "minItems": 1, "items": _TERMINAL_PHASE},
            "email": _CHANNEL,
            "slack": _CHANNEL,
            "pagerDuty": _CHANNEL,
        },
    },
    "Event": {
        "type": "object",
        "description": "flyteidl event.WorkflowExecutionEvent in the protobuf JSON mapping"
        " (snake_case spellings are accepted too), plus an optional launch_plan. Free text"
        " longer than its limit is cut and ends with '… [truncated]'.",
        "required": ["executionId", "phase"],
        "additionalProperties": False,
        "properties": {
            **_EVENT_PROPERTIES,
            "launch_plan": {"oneOf": [ref("EventEntityId"), {"type": "null"}]},
        },
        "not": _BOTH_RESULTS,
    },
    "RawEvent": {
        "type": "object",
        "description": "flyteidl event.WorkflowExecutionEvent in a cloud event's data",
        "required": ["executionId", "phase"],
        "properties": _EVENT_PROPERTIES,
        "not": _BOTH_RESULTS,
    },
    "CloudEvent": {
        "type": "object",
        "description": "A structured-mode cloud event of type"
        " com.flyte.resource.cloudevents.WorkflowExecution; data is a"
        " flyteidl event.CloudEventWorkflowExecution in the JSON mapping (or its"
        " serialization as data_base64). Other com.flyte.resource.cloudevents.* types"
        " are answered 200 with outcome ignored.",
        "required": ["specversion", "id", "source", "type", "data"],
        "additionalProperties": False,
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"const": "com.flyte.resource.cloudevents.WorkflowExecution"},
            "time": TIME,
            "datacontenttype": {"type": "string", "minLength": 1},
            "data": {
                "type": "object",
                "required": ["rawEvent"],
                "properties": {
                    "rawEvent": ref("RawEvent"),
                    "launchPlanId": ref("EventEntityId"),
                    "referenceExecution": ref("EventExecutionId"),
                },
            },
        },
    },
}

# A batch item that is not a valid Event is not a bad request: it is answered in
# the results (outcome rejected), so any JSON value goes.
BATCH = {
    "oneOf": [
        {"type": "array", "items": {"description": "an Event (#/components/schemas/Event)"}},
        {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "items": {"description": "an Event (#/components/schemas/Event)"},
                }
            },
        },
    ]
}
