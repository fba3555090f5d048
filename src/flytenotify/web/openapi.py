"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

Hand-written, with a request and a response schema for every route; the
property-based tests (tests/test_api_schemathesis.py) check the service
against it.
"""

from __future__ import annotations

import copy
from typing import Any

from flytenotify.channels import registry
from flytenotify.domain import RULE_PHASES, NamedKind, NotificationSource
from flytenotify.intake.limits import (
    EARLIEST_TIME,
    IDENTIFIER_LIMITS,
    LATEST_TIME,
    MAX_INT,
    MAX_JSON_DEPTH,
    TEMPLATE_LIMIT,
    iso_time,
)

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
CLOUDEVENTS = "application/cloudevents+json"

_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
# RFC 3339 as protobuf's Timestamp reads it (ASCII digits, an offset or Z).
_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?"
    "(Z|[+-][0-9]{2}:[0-9]{2})$",
}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
# An event's time: the years the ledger keeps to the microsecond (intake/limits.py,
# EARLIEST_TIME..LATEST_TIME, compared in UTC: an offset at either end can cross it).
_EVENT_TIME = {
    **_TIME,
    "type": ["string", "null"],
    "pattern": "^(19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    "([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
    "description": f"from {iso_time(EARLIEST_TIME)} up to, not including, {iso_time(LATEST_TIME)}",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


_ERRORS = {
    "400": "Invalid request; problems name each field",
    "401": "Missing or wrong bearer token",
    "404": "Not found (an unknown delivery, or launch plan, also when a request names it)",
    "409": "Conflict",
    "413": "Body too large",
    "415": "Unsupported Content-Type",
    "503": "A service this depends on cannot answer now (FlyteAdmin, looking up an unknown"
    " execution; or the database at start-up, or full): nothing was recorded; send again"
    " after Retry-After seconds",
}


# Headers an error answer carries beside its body.
_ERROR_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": 'Bearer realm="flytenotify", with error="invalid_token" when a'
            " token was given (RFC 6750)",
            "schema": {"type": "string"},
        }
    },
}


def _errors(*codes: str) -> dict[str, Any]:
    answers = {code: _answer(_ERRORS[code], _ref("Error")) for code in codes}
    for code, headers in _ERROR_HEADERS.items():
        if code in answers:
            answers[code]["headers"] = headers
    return answers


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next"],
        "properties": {"items": {"type": "array", "items": _ref(item)}, "next": _NULLABLE_STR},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


# The intake limits (flytenotify.intake.limits), so that generated data the
# document calls valid is data the service accepts.
_NO_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"


def _identifier(part: str, shortest: int = 1) -> dict[str, Any]:
    # The length is in the pattern, not in minLength/maxLength: generating a
    # string of a given length that matches a pattern is slow in schemathesis.
    slash = "" if part in ("version", "recipient") else "/"
    return {
        "type": "string",
        "pattern": f"^[^{_NO_CONTROL}{slash}]{{{shortest},{IDENTIFIER_LIMITS[part]}}}$",
    }


def _path(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": _identifier(n)} for n in names]


_DELIVERY_ID = [
    {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
    }
]
_CURSOR = _query(
    "cursor", {"type": "integer", "minimum": 0, "maximum": MAX_INT}, "the previous page's next"
)
_EXECUTION_PARAM = {
    "type": "string",
    "pattern": f"^[^{_NO_CONTROL}/]{{1,63}}/[^{_NO_CONTROL}/]{{1,63}}/[^{_NO_CONTROL}/]{{1,255}}$",
}
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size")
_PHASES = ["QUEUED", "RUNNING", "SUCCEEDING", "SUCCEEDED", "FAILING", "FAILED", "ABORTED"]
_PHASES += ["TIMED_OUT", "ABORTING"]
_TERMINAL = ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"]
# protobuf's JSON mapping takes an enum's name or its number.
_PHASE = {"enum": [*_PHASES, *range(1, len(_PHASES) + 1)]}
_TERMINAL_PHASE = {"enum": [*_TERMINAL, 4, 6, 7, 8]}
_RECIPIENT_LIMIT = IDENTIFIER_LIMITS["recipient"]
_RECIPIENTS = {
    "type": "array",
    "minItems": 1,
    "items": {  # starts with a visible character
        "type": "string",
        "pattern": f"^[^\\s{_NO_CONTROL}][^{_NO_CONTROL}]{{0,{_RECIPIENT_LIMIT - 1}}}$",
    },
}
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
# In protobuf's JSON mapping, null stands for a field left out.
_OPTIONAL_STR = {"type": ["string", "null"]}
_EVENT_PROPERTIES: dict[str, Any] = {
    "executionId": _ref("ExecutionId"),
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
            "kind": {"enum": ["UNKNOWN", "USER", "SYSTEM", 0, 1, 2, None]},
            "errorUri": _OPTIONAL_STR,
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {"field": _STR, "message": _STR},
    },
    "Error": {
        "type": "object",
        "required": ["error", "problems"],
        "properties": {
            "error": _STR,
            "problems": {"type": "array", "minItems": 1, "items": _ref("Problem")},
        },
    },
    "ExecutionId": {
        "type": "object",
        "required": ["project", "domain", "name"],
        "additionalProperties": False,
        "properties": {p: _identifier(p) for p in ("project", "domain", "name")},
    },
    "EntityId": {
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
    "LaunchPlanRegistration": {
        "type": "object",
        "required": ["version"],
        "additionalProperties": False,
        "properties": {
            "version": _identifier("version"),
            "notifications": {"type": "array", "items": _ref("Notification")},
        },
    },
    "LaunchPlan": {
        "type": "object",
        "required": ["id", "notifications"],
        "properties": {
            "id": _ref("EntityId"),
            "notifications": {"type": "array", "items": {"type": "object"}},
            "warnings": {
                "description": "Recipients no configured channel can reach, or [allow] refuses",
                "type": "array",
                "items": _ref("Problem"),
            },
        },
    },
    "ExecutionRequest": {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {
            "id": _ref("ExecutionId"),
            "launch_plan": _ref("EntityId"),
            "workflow": _ref("EntityId"),
            "notifications": {"type": "array", "items": _ref("Notification")},
            "disable_all": {"type": "boolean"},
        },
    },
    "Execution": {
        "type": "object",
        "required": ["id", "launch_plan", "workflow", "notifications", "created_at"],
        "properties": {
            "id": _ref("ExecutionId"),
            "launch_plan": {"oneOf": [_ref("EntityId"), {"type": "null"}]},
            "workflow": {"oneOf": [_ref("EntityId"), {"type": "null"}]},
            "notifications": {"type": "array", "items": {"type": "object"}},
            "created_at": _TIME,
            "warnings": {
                "description": "Recipients no configured channel can reach, or [allow] refuses",
                "type": "array",
                "items": _ref("Problem"),
            },
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
            "launch_plan": {"oneOf": [_ref("EntityId"), {"type": "null"}]},
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
            "time": _TIME,
            "datacontenttype": {"type": "string", "minLength": 1},
            "data": {
                "type": "object",
                "required": ["rawEvent"],
                "properties": {
                    "rawEvent": _ref("RawEvent"),
                    "launchPlanId": _ref("EntityId"),
                    "referenceExecution": _ref("ExecutionId"),
                },
            },
        },
    },
    "EventResult": {
        "type": "object",
        "required": ["outcome"],
        "properties": {
            "outcome": {
                "type": "string",
                "enum": [
                    "enqueued",
                    "duplicate",
                    "after_terminal",
                    "no_notifications",
                    "recorded",
                    "ignored",
                ],
            },
            "delivery_ids": {"type": "array", "items": {"type": "integer"}},
            "cloud_event": {
                "type": "object",
                "required": ["id", "type", "source"],
                "properties": {"id": _STR, "type": _STR, "source": _STR},
            },
        },
    },
    "Delivery": {
        "type": "object",
        "required": [
            "id",
            "execution",
            "phase",
            "channel",
            "kind",
            "recipient",
            "status",
            "attempts",
            "last_reply",
            "created_at",
            "next_attempt_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "execution": _STR,
            "phase": _STR,
            "channel": _STR,
            "kind": _STR,
            "recipient": _STR,
            "status": {"type": "string", "enum": ["pending", "retrying", "delivered", "dead"]},
            "attempts": {"type": "integer", "minimum": 0},
            "last_reply": _STR,
            "created_at": _NULLABLE_TIME,
            "next_attempt_at": _NULLABLE_TIME,
            "group_key": {"type": ["string", "null"]},
            "message_id": {"type": ["string", "null"]},
            "message_size": {"type": ["integer", "null"], "minimum": 1},
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["number", "started_at", "finished_at", "outcome", "reply"],
        "properties": {
            "number": {"type": "integer"},
            "started_at": _NULLABLE_TIME,
            "finished_at": _NULLABLE_TIME,
            "outcome": _STR,
            "reply": _STR,
        },
    },
    "InboxMessage": {
        "type": "object",
        "required": [
            "id",
            "delivery_id",
            "kind",
            "channel",
            "recipient",
            "subject",
            "body",
            "received_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "delivery_id": {"type": "integer"},
            "kind": {
                **_STR,
                "description": "The notification as declared: email, slack, pager_duty",
            },
            "channel": {
                **_STR,
                "description": "The channel whose form the message takes (pagerduty, webhook, ...)",
            },
            "recipient": _STR,
            "subject": _STR,
            "body": _STR,
            "received_at": _TIME,
        },
    },
}

# In the detail, "attempts" is the list of attempts rather than their count.
SCHEMAS["DeliveryDetail"] = {
    "type": "object",
    "required": [*SCHEMAS["Delivery"]["required"], "message"],
    "properties": {
        **SCHEMAS["Delivery"]["properties"],
        "attempts": {"type": "array", "items": _ref("Attempt")},
        "message": {
            "type": "object",
            "required": ["subject", "text"],
            "properties": {"subject": _STR, "text": _STR},
        },
    },
}

SCHEMAS["ExecutionDetail"] = {
    "type": "object",
    "required": [
        "id",
        "launch_plan",
        "workflow",
        "created_at",
        "notifications_source",
        "lookup_error",
        "notifications",
        "rules",
        "events",
        "deliveries",
    ],
    "properties": {
        "id": _ref("ExecutionId"),
        "launch_plan": {"oneOf": [_ref("EntityId"), {"type": "null"}]},
        "workflow": {"oneOf": [_ref("EntityId"), {"type": "null"}]},
        "created_at": _NULLABLE_TIME,
        "notifications_source": {
            "type": "string",
            "enum": [source.value for source in NotificationSource],
        },
        "lookup_error": _NULLABLE_STR,
        "notifications": {"type": "array", "items": {"type": "object"}},
        "rules": {"type": "array", "items": {"type": "object"}},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["phase", "occurred_at", "outcome", "reason", "error"],
                "properties": {
                    "phase": _STR,
                    "occurred_at": _NULLABLE_TIME,
                    "outcome": _STR,
                    "reason": {
                        **_NULLABLE_STR,
                        "description": "Why a terminal event sent nothing (no_notifications)",
                    },
                    "error": {"oneOf": [{"type": "object"}, {"type": "null"}]},
                },
            },
        },
        "deliveries": {"type": "array", "items": _ref("Delivery")},
    },
}

_SCOPE_PART = {"oneOf": [{"const": ""}, _identifier("project")]}
_RULE_PHASES = {
    "type": "array",
    "minItems": 1,
    "items": {"enum": [*RULE_PHASES, *(name.lower() for name in RULE_PHASES)]},
}
SCHEMAS["NamedRuleBody"] = {
    "type": "object",
    "required": ["phases", "recipients"],
    "additionalProperties": False,
    "properties": {
        "phases": _RULE_PHASES,
        "recipients": _RECIPIENTS,
        "project": _SCOPE_PART,
        "domain": _SCOPE_PART,
    },
}
SCHEMAS["NamedDeliveryBody"] = {
    "type": "object",
    "required": ["recipients"],
    "additionalProperties": False,
    "properties": {"recipients": _RECIPIENTS, "project": _SCOPE_PART, "domain": _SCOPE_PART},
}
SCHEMAS["NamedRule"] = {
    "type": "object",
    "required": [
        "kind",
        "name",
        "project",
        "domain",
        "phases",
        "recipients",
        "source",
        "updated_at",
    ],
    "properties": {
        "kind": {"enum": [kind.value for kind in NamedKind]},
        "name": _STR,
        "project": _STR,
        "domain": _STR,
        "phases": {"type": "array", "items": _STR},
        "recipients": {"type": "array", "items": _STR},
        "source": {"enum": ["config", "api"]},
        "updated_at": _NULLABLE_TIME,
        "warnings": {"type": "array", "items": {"type": "object"}},
    },
}
_NAMED_ITEMS = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": _ref("NamedRule")}},
}
_SCOPE_QUERY = [
    _query(part, _identifier(part, shortest=0), f"the entry's {part} (empty: every {part})")
    for part in ("project", "domain")
]


def _named_paths(what: str, body: str) -> dict[str, Any]:
    """The list and the one-entry routes of named rules or named deliveries."""
    return {
        "get": {
            "summary": f"Every {what} (the configuration file's and the API's)",
            "responses": {"200": _answer(f"The {what}s", _NAMED_ITEMS), **_errors("401")},
        },
        "one": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": _identifier("name")}
            ],
            "get": {
                "summary": f"One {what}, of the scope the query names",
                "parameters": _SCOPE_QUERY,
                "responses": {
                    "200": _answer(f"The {what}", _ref("NamedRule")),
                    **_errors("400", "401", "404"),
                },
            },
            "put": {
                "summary": f"Create or replace a {what} in the scope the body names",
                "requestBody": {"required": True, "content": _json(_ref(body))},
                "responses": {
                    "200": _answer(
                        "Stored, with warnings for unreachable recipients", _ref("NamedRule")
                    ),
                    **_errors("400", "401", "409", "413", "415"),
                },
            },
            "delete": {
                "summary": f"Delete a {what} managed over the API",
                "parameters": _SCOPE_QUERY,
                "responses": {
                    "204": {"description": "Deleted"},
                    **_errors("400", "401", "404", "409"),
                },
            },
        },
    }


_EVENT_RESULT = _ref("EventResult")
# Any JSON value: a batch item that is not a valid Event is not a bad request,
# it is answered in the results (outcome rejected).
_BATCH_ITEM = {"description": "an Event (#/components/schemas/Event)"}
_REJECTED = {
    "type": "object",
    "description": "An event of the batch that was not recorded, and why",
    "required": ["outcome", "problems"],
    "properties": {
        "outcome": {"const": "rejected"},
        "problems": {"type": "array", "minItems": 1, "items": _ref("Problem")},
    },
}

_SOURCE_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["state"],
    "properties": {
        "state": {"type": "string", "enum": ["starting", "connected", "reconnecting", "stopped"]},
        "detail": {"type": "string"},
        "backlog": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "last_error_at": {"type": ["string", "null"], "format": "date-time"},
        "last_message_at": {"type": ["string", "null"], "format": "date-time"},
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "flytenotify",
        "version": "1",
        "description": "Notifications for Flyte workflow executions. See docs/http-api.md"
        f" (Limits: JSON nests at most {MAX_JSON_DEPTH} levels; identifiers and free text"
        " have length limits; numbers in paths and queries are ASCII digits up to 2**63-1).",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
    },
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": [],
                "responses": {
                    "200": _answer(
                        "Alive",
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "ok"}},
                        },
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: database and channels",
                "security": [],
                "responses": {
                    code: _answer(
                        text,
                        {
                            "type": "object",
                            "required": ["status", "database", "channels"],
                            "properties": {
                                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                                "database": {"type": "object"},
                                "channels": {"type": "object"},
                                "intake": {
                                    "type": "object",
                                    "description": "Each broker source ([intake.*]), when any",
                                    "additionalProperties": _SOURCE_STATUS,
                                },
                            },
                        },
                    )
                    for code, text in (
                        ("200", "Ready"),
                        ("503", "Database unreachable or full, or a broker source not connected"),
                    )
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"}), **_errors("401")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors("401"),
                },
            }
        },
        "/api/v1/launch-plans/{project}/{domain}/{name}": {
            "parameters": _path("project", "domain", "name"),
            "get": {
                "summary": "The latest registered version's notifications",
                "responses": {
                    "200": _answer("The launch plan", _ref("LaunchPlan")),
                    **_errors("400", "401", "404"),
                },
            },
            "put": {
                "summary": "Register a launch plan version's notifications"
                " (JSON, or a serialized admin.LaunchPlan)",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": _ref("LaunchPlanRegistration")},
                        PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "200": _answer("Registered", _ref("LaunchPlan")),
                    **_errors("400", "401", "404", "413", "415"),
                },
            },
        },
        "/api/v1/executions": {
            "post": {
                "summary": "Create an execution; freezes its notifications",
                "requestBody": {"required": True, "content": _json(_ref("ExecutionRequest"))},
                "responses": {
                    "201": _answer("Created (or the existing one)", _ref("Execution")),
                    **_errors("400", "401", "404", "413", "415"),
                },
            }
        },
        "/api/v1/executions/{project}/{domain}/{name}": {
            "parameters": _path("project", "domain", "name"),
            "get": {
                "summary": "An execution: where its notifications came from, its events"
                " with their outcomes, and its deliveries",
                "responses": {
                    "200": _answer("The execution", _ref("ExecutionDetail")),
                    **_errors("400", "401", "404"),
                },
            },
        },
        "/api/v1/events": {
            "post": {
                "summary": "Report a WorkflowExecutionEvent: JSON, protobuf, or a Flyte"
                " cloud event (structured, or binary with ce-* headers)",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": _ref("Event")},
                        PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                        CLOUDEVENTS: {"schema": _ref("CloudEvent")},
                    },
                },
                "responses": {
                    "200": _answer("Recorded; nothing (more) to send", _EVENT_RESULT),
                    "202": _answer("Deliveries enqueued", _EVENT_RESULT),
                    **_errors("400", "401", "413", "415", "503"),
                },
            }
        },
        "/api/v1/events:batch": {
            "post": {
                "summary": "Report many events: the good ones are recorded, each bad one is"
                " answered with outcome rejected and its problems (events[i].field)",
                "requestBody": {
                    "required": True,
                    "content": _json(
                        {
                            "oneOf": [
                                {"type": "array", "items": _BATCH_ITEM},
                                {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {
                                        "events": {"type": "array", "items": _BATCH_ITEM}
                                    },
                                },
                            ]
                        }
                    ),
                },
                "responses": {
                    "200": _answer(
                        "One result per event, in order",
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {
                                "results": {
                                    "type": "array",
                                    "items": {"oneOf": [_EVENT_RESULT, _REJECTED]},
                                }
                            },
                        },
                    ),
                    **_errors("400", "401", "413", "415", "503"),
                },
            }
        },
        "/api/v1/deliveries": {
            "get": {
                "summary": "List deliveries, oldest first",
                "parameters": [
                    _query("execution", _EXECUTION_PARAM, "project/domain/name"),
                    _query(
                        "status",
                        {"type": "string", "enum": ["pending", "retrying", "delivered", "dead"]},
                        "delivery status",
                    ),
                    _query("channel", _identifier("project"), "the channel"),
                    _query(
                        "message",
                        {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 4096,
                            "pattern": "^[^\\x00]*$",
                        },
                        "a message id (digest:... or single:...): the deliveries it carried",
                    ),
                    _query(
                        "since",
                        {"anyOf": [{"type": "number"}, _TIME]},
                        "ISO 8601 time or Unix seconds",
                    ),
                    _CURSOR,
                    _LIMIT,
                ],
                "responses": {
                    "200": _answer("A page of deliveries", _page("Delivery")),
                    **_errors("400", "401"),
                },
            }
        },
        "/api/v1/deliveries/{id}": {
            "parameters": _DELIVERY_ID,
            "get": {
                "summary": "One delivery with its attempts and message",
                "responses": {
                    "200": _answer("The delivery", _ref("DeliveryDetail")),
                    **_errors("401", "404"),
                },
            },
        },
        "/api/v1/deliveries/{id}/retry": {
            "parameters": _DELIVERY_ID,
            "post": {
                "summary": "Send a dead delivery again",
                "responses": {
                    "200": _answer("Pending again", _ref("Delivery")),
                    **_errors("401", "404", "409"),
                },
            },
        },
        "/api/v1/inbox": {
            "get": {
                "summary": "Messages in the dev inbox",
                "parameters": [_CURSOR, _LIMIT],
                "responses": {
                    "200": _answer("A page of messages", _page("InboxMessage")),
                    **_errors("400", "401"),
                },
            }
        },
    },
}


def document() -> dict[str, Any]:
    """The document, naming the channels the registry holds now."""
    found = copy.deepcopy(_DOCUMENT)
    names = registry.names()
    state = {"type": "string", "enum": ["configured", "dev-inbox", "unconfigured"]}
    for answer in found["paths"]["/readyz"]["get"]["responses"].values():
        channels = answer["content"][JSON]["schema"]["properties"]["channels"]
        channels.update(
            required=names, properties=dict.fromkeys(names, state), additionalProperties=False
        )
    for base, what, body in (
        ("/api/v1/flyte2/rules", "named rule", "NamedRuleBody"),
        ("/api/v1/flyte2/deliveries", "named delivery", "NamedDeliveryBody"),
    ):
        paths = _named_paths(what, body)
        found["paths"][base] = {"get": paths["get"]}
        found["paths"][f"{base}/{{name}}"] = paths["one"]
    for parameter in found["paths"]["/api/v1/deliveries"]["get"]["parameters"]:
        if parameter["name"] == "channel":
            parameter["description"] = ", ".join([*names, registry.INBOX, registry.UNROUTABLE])
    return found
