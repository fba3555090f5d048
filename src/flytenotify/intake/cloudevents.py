"""Flyte's CloudEvents on ``POST /api/v1/events``, in structured and binary mode.

FlyteAdmin (``cloudEvents.enable: true``) publishes one cloud event per
execution event. The one we act on has type
``com.flyte.resource.cloudevents.WorkflowExecution``; its data is a
``flyteidl.event.CloudEventWorkflowExecution`` whose ``raw_event`` is the
``WorkflowExecutionEvent`` and whose ``launch_plan_id`` names the launch plan,
so an execution never created here still resolves its notifications.

Data may be the protobuf JSON mapping (what FlyteAdmin sends), or the
serialized message: the body in binary mode (``application/protobuf``), or
``data_base64`` (or a base64 string) in structured mode. The other Flyte
cloud event types (node, task, execution start) are accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from flyteidl.event import cloudevents_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from flytenotify.domain import EntityId, ExecutionEvent
from flytenotify.errors import InputError, Problem
from flytenotify.intake.events import enum_problems, event_from_proto
from flytenotify.intake.limits import loads_json

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
TYPE_PREFIX = "com.flyte.resource.cloudevents."
WORKFLOW_EXECUTION = TYPE_PREFIX + "WorkflowExecution"
_JSON_TYPES = ("application/json", "text/json")
_REQUIRED = ("specversion", "id", "source", "type")


@dataclass(frozen=True)
class ParsedCloudEvent:
    id: str
    type: str
    source: str
    event: ExecutionEvent | None  # None: a Flyte event type we do not act on


def is_cloud_event(content_type: str, headers: Mapping[str, str]) -> bool:
    """Structured (by Content-Type) or binary (a ``ce-specversion`` header) mode."""
    return content_type in (STRUCTURED, BATCH) or "ce-specversion" in headers


def parse(content_type: str, headers: Mapping[str, str], body: bytes) -> ParsedCloudEvent:
    """The cloud event in a request; :class:`InputError` naming what is wrong."""
    if content_type == BATCH:
        raise InputError(
            Problem("Content-Type", "batched cloud events are not accepted; send one per request")
        )
    message = HTTPMessage(headers={k.lower(): v for k, v in headers.items()}, body=body)
    if content_type == STRUCTURED:
        _check_structured(body)
    else:
        _require(
            [name for name in _REQUIRED if not headers.get(f"ce-{name}")],
            "a binary-mode cloud event needs the header ce-",
        )
        if content_type in _JSON_TYPES and body.strip():
            loads_json(body, "data")  # the SDK's own decoder has no depth limit
    try:
        if content_type == STRUCTURED:
            cloud_event = from_structured(message, JSONFormat())
            data: Any = cloud_event.get_data()
        else:
            cloud_event = from_binary(message, JSONFormat())
            # The SDK turns a non-JSON body into text when it happens to be
            # UTF-8; a protobuf body must stay bytes.
            data = cloud_event.get_data() if content_type in _JSON_TYPES else body
    except BaseCloudEventException as error:
        raise InputError(Problem(_attribute_of(error), f"invalid cloud event: {error}")) from None
    except UnicodeDecodeError as error:
        raise InputError(Problem("body", f"is not UTF-8: {error}")) from None
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        # JSON, a time that does not parse, an attribute of the wrong type
        raise InputError(Problem("body", f"invalid cloud event: {error}")) from None
    return _interpret(cloud_event, data)


def _check_structured(body: bytes) -> None:
    document = loads_json(body)
    if not isinstance(document, dict):
        raise InputError(
            Problem("body", f"a cloud event must be a JSON object, got {type(document).__name__}")
        )
    _require(
        [name for name in _REQUIRED if name not in document], "a cloud event needs the attribute "
    )
    problems = [
        Problem(key, "must be a string")
        for key in ("specversion", "id", "source", "type", "time", "datacontenttype")
        if key in document and not isinstance(document[key], str)
    ]
    if problems:
        raise InputError(problems)


def _require(missing: list[str], what: str) -> None:
    # The SDK would make up an id (and a source); the specification requires them.
    if missing:
        raise InputError([Problem(name, f"is required: {what}{name}") for name in missing])


def _interpret(cloud_event: BaseCloudEvent, data: Any) -> ParsedCloudEvent:
    kind = cloud_event.get_type()
    base = (cloud_event.get_id(), kind, cloud_event.get_source())
    if kind != WORKFLOW_EXECUTION:
        if kind.startswith(TYPE_PREFIX):
            return ParsedCloudEvent(*base, event=None)
        raise InputError(
            Problem("type", f"must be {WORKFLOW_EXECUTION!r} (or another Flyte type), got {kind!r}")
        )
    message = _workflow_execution(data)
    if not message.HasField("raw_event"):
        raise InputError(Problem("data.raw_event", "is required"))
    launch_plan = None
    if message.HasField("launch_plan_id") and message.launch_plan_id.name:
        ident = message.launch_plan_id
        launch_plan = EntityId(ident.project, ident.domain, ident.name, ident.version)
    try:
        event = event_from_proto(message.raw_event, launch_plan)
    except InputError as error:
        raise InputError(
            [Problem(f"data.raw_event.{p.field}".rstrip("."), p.message) for p in error.problems]
        ) from None
    return ParsedCloudEvent(*base, event=event)


def _workflow_execution(data: Any) -> Any:
    message = cloudevents_pb2.CloudEventWorkflowExecution()
    if data is None:
        raise InputError(Problem("data", "is required: a CloudEventWorkflowExecution"))
    if isinstance(data, str):
        data = _text_data(data)
    if isinstance(data, dict):
        raw_event = data.get("rawEvent", data.get("raw_event"))
        if isinstance(raw_event, dict) and (wrong := enum_problems(raw_event, "data.raw_event")):
            raise InputError(wrong)
        try:
            json_format.ParseDict(data, message, ignore_unknown_fields=True)
        except json_format.ParseError as error:
            raise InputError(
                Problem("data", f"not a CloudEventWorkflowExecution: {error}")
            ) from None
        return message
    if isinstance(data, bytes | bytearray):
        try:
            message.ParseFromString(bytes(data))
        except DecodeError as error:
            raise InputError(
                Problem("data", f"not a serialized CloudEventWorkflowExecution: {error}")
            ) from None
        return message
    raise InputError(
        Problem("data", f"must be a JSON object or protobuf bytes, got {type(data).__name__}")
    )


def _text_data(text: str) -> dict[str, Any] | bytes:
    """A string: JSON text of the message, or its base64 serialization."""
    stripped = text.strip()
    if stripped.startswith("{"):
        parsed = loads_json(stripped, "data")
        if isinstance(parsed, dict):
            return parsed
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            Problem("data", "must be a JSON object, protobuf bytes or base64 protobuf")
        ) from None


def _attribute_of(error: BaseCloudEventException) -> str:
    errors = getattr(error, "errors", None)
    if isinstance(errors, dict) and errors:
        return str(next(iter(errors)))
    name = getattr(error, "attribute_name", None)
    return str(name) if name else "body"
