"""FlyteAdmin's cloud events, decoded exactly as FlyteAdmin writes them.

FlyteAdmin's ``cloudEvents`` egress publishes one cloud event per execution
event, in one of two shapes (``cloudEventVersion``):

- ``v1``: type ``com.flyte.resource.flyteidl.admin.WorkflowExecutionEventRequest``
  (or ``NodeExecutionEventRequest``, ``TaskExecutionEventRequest``); data is the
  JSON mapping of the admin request, whose ``event`` is the
  ``WorkflowExecutionEvent``.
- ``v2``: type ``com.flyte.resource.cloudevents.WorkflowExecution`` (or
  ``NodeExecution``, ``TaskExecution``, ``ExecutionStart``); data is the JSON
  mapping of ``flyteidl.event.CloudEventWorkflowExecution``, whose
  ``raw_event`` is the event and whose ``launch_plan_id`` (when FlyteAdmin
  enriched it) names the launch plan.

On the wire the cloud event is in the CloudEvents protobuf event format
(``io.cloudevents.v1.CloudEvent``: Google Pub/Sub, AWS SNS) or the structured
JSON envelope (NATS, where the JSON data travels base64-encoded as
``data_base64``; ``data`` is accepted too).

Only terminal workflow events matter for notifications, and the other phases
of the executions a deadline watches. Everything else is dropped from the type
attribute alone, before the data is read, so the flood of node and task events
costs one attribute look-up each; a non-terminal workflow event, from its
phase, project and domain (and launch plan, when FlyteAdmin names it), asked
of the deadlines in memory. Unless a ``[waiting.*]`` rule wants to hear of
gates (``decode(..., gates=True)``): then a node event is read as far as its
phase, and one that may be a gate waiting is returned as a
:class:`NodeAtGate`. FlytePropeller reports a gate node (flytekit's
``approve()``, ``wait_for_input()``) waiting as a RUNNING node event with no
task or workflow node metadata, not a parent, dynamic or array node, its
``node_name`` the signal's id (flytekit names the node after it); FlyteAdmin
created the signal before that event (``GetOrCreateSignal``). Branch and
sleep nodes look alike: the signals FlyteAdmin holds decide.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flyteidl.core import execution_pb2, identifier_pb2
from flyteidl.event import event_pb2
from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
    timestamp_pb2,
)
from google.protobuf.message import DecodeError, Message

from flytenotify.domain import EntityId, ExecutionEvent, ExecutionId, GateReached
from flytenotify.errors import InputError, Problem
from flytenotify.intake.events import (
    enum_problems,
    execution_id_problems,
    published_event_from_json,
)
from flytenotify.intake.limits import loads_json
from flytenotify.models.core.execution import TERMINAL_PHASES, WorkflowExecutionPhase

_PREFIX = "com.flyte.resource."
V1_WORKFLOW = _PREFIX + "flyteidl.admin.WorkflowExecutionEventRequest"
V2_WORKFLOW = _PREFIX + "cloudevents.WorkflowExecution"
V1_NODE = _PREFIX + "flyteidl.admin.NodeExecutionEventRequest"
V2_NODE = _PREFIX + "cloudevents.NodeExecution"
# Nodes FlytePropeller reports that are never gates.
_NOT_GATES = frozenset({"start-node", "end-node"})
_NODE_METADATA = (
    "taskNodeMetadata",
    "task_node_metadata",
    "workflowNodeMetadata",
    "workflow_node_metadata",
)
_NODE_FLAGS = ("isParent", "is_parent", "isDynamic", "is_dynamic", "isArray", "is_array")

# Reasons a message is dropped on purpose (a metric label each).
NODE_EVENT = "node_event"
TASK_EVENT = "task_event"
EXECUTION_START = "execution_start"
NOT_TERMINAL = "not_terminal"
UNKNOWN_TYPE = "unknown_type"

# Every type FlyteAdmin publishes that is not a workflow event, with why we drop it.
_DROPPED_TYPES = {
    _PREFIX + "flyteidl.admin.NodeExecutionEventRequest": NODE_EVENT,
    _PREFIX + "flyteidl.admin.TaskExecutionEventRequest": TASK_EVENT,
    _PREFIX + "cloudevents.NodeExecution": NODE_EVENT,
    _PREFIX + "cloudevents.TaskExecution": TASK_EVENT,
    _PREFIX + "cloudevents.ExecutionStart": EXECUTION_START,
}
KNOWN_TYPES = frozenset({V1_WORKFLOW, V2_WORKFLOW, *_DROPPED_TYPES})
_PHASE_NAMES = frozenset(execution_pb2.WorkflowExecution.Phase.keys())
_TERMINAL_NAMES = frozenset(WorkflowExecutionPhase.enum_to_string(p) for p in TERMINAL_PHASES)
_REQUIRED = ("specversion", "id", "source", "type")


@dataclass(frozen=True)
class WorkflowEvent:
    """A workflow event to record: a terminal one, or one of an execution a deadline
    may watch."""

    event: ExecutionEvent
    cloud_event_id: str
    cloud_event_type: str
    launch_plan: EntityId | None = None  # v2's launch_plan_id, when FlyteAdmin filled it


@dataclass(frozen=True)
class NodeAtGate:
    """A node event that may be a gate waiting for a person: ask FlyteAdmin's signals."""

    reached: GateReached
    cloud_event_id: str
    cloud_event_type: str


@dataclass(frozen=True)
class Dropped:
    """A cloud event that is not a terminal workflow event: acknowledge it and move on."""

    cloud_event_type: str
    reason: str
    cloud_event_id: str = ""


Decoded = WorkflowEvent | NodeAtGate | Dropped

# Whether a deadline may watch an execution of (project, domain, launch plan name
# or None when the event does not name it): its non-terminal events are kept.
Follows = Callable[[str, str, str | None], bool]


def _nobody(project: str, domain: str, launch_plan: str | None) -> bool:
    return False


def decode(body: bytes, follows: Follows = _nobody, *, gates: bool = False) -> Decoded:
    """One FlyteAdmin cloud event, protobuf format or structured JSON; :class:`InputError` if bad.

    The field names in errors are the cloud event's attributes (``type``,
    ``data``) and, below ``data``, the event's fields (``data.event.phase``).
    A non-terminal workflow event is kept only where ``follows`` says a
    deadline may watch its execution. ``gates``: node events that may be gates
    waiting are read (see the module doc).
    """
    # A protobuf CloudEvent starts with its id's tag, byte 0x0A: a newline,
    # so JSON after a newline is told apart by whether the protobuf parses.
    cloud_event = _protobuf_or_none(body) if body[:1] == b"\n" else None
    if cloud_event is None and body.lstrip()[:1] in (b"{", b"["):
        return _decode_json(body, follows, gates)
    if cloud_event is None:
        cloud_event = _parse_protobuf(body)
    return _decode_protobuf(cloud_event, follows, gates)


# -- the structured JSON envelope (NATS) -----------------------------------------------


def _decode_json(body: bytes, follows: Follows, gates: bool) -> Decoded:
    # Read by hand rather than with the cloudevents SDK: it decodes the data of
    # every event, and the point here is to drop most events by type first.
    envelope = loads_json(body, "body")  # the same depth limit as every other JSON intake
    if not isinstance(envelope, dict):
        raise InputError(Problem("body", "a cloud event must be a JSON object"))
    missing = [Problem(name, "is required") for name in _REQUIRED if not envelope.get(name)]
    wrong = [
        Problem(name, f"must be a string, got {type(envelope[name]).__name__}")
        for name in _REQUIRED
        if envelope.get(name) and not isinstance(envelope[name], str)
    ]
    if missing or wrong:
        raise InputError(missing + wrong)
    kind, ident = envelope["type"], envelope["id"]
    if gates and kind in (V1_NODE, V2_NODE):
        return _node_event(kind, ident, _json_data(envelope))
    if (dropped := _dropped_by_type(kind, ident)) is not None:
        return dropped
    return _workflow_event(kind, ident, _json_data(envelope), follows)


def _json_data(envelope: dict[str, Any]) -> Any:
    """The data as JSON: from ``data_base64`` (what FlyteAdmin sends) or ``data``."""
    if "data_base64" in envelope:
        encoded = envelope["data_base64"]
        if not isinstance(encoded, str):
            raise InputError(Problem("data_base64", "must be a base64 string"))
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InputError(Problem("data_base64", f"is not valid base64: {error}")) from None
        return _parse_json_data(raw, "data_base64")
    data = envelope.get("data")
    if data is None:
        raise InputError(Problem("data", "is required (or data_base64)"))
    if isinstance(data, str):
        return _parse_json_data(data.encode(), "data")
    return data


# -- the protobuf event format (Pub/Sub, SNS) -------------------------------------------


def _protobuf_or_none(body: bytes) -> Any:
    try:
        return _parse_protobuf(body)
    except InputError:
        return None


def _parse_protobuf(body: bytes) -> Any:
    cloud_event: Any = CloudEvent()
    try:
        cloud_event.ParseFromString(body)
    except DecodeError as error:
        raise InputError(
            Problem("body", f"neither a JSON cloud event nor a protobuf CloudEvent: {error}")
        ) from None
    return cloud_event


def _decode_protobuf(cloud_event: Any, follows: Follows, gates: bool) -> Decoded:
    missing = [Problem(n, "is required") for n in ("id", "type") if not getattr(cloud_event, n)]
    if missing:
        raise InputError(missing)
    kind, ident = cloud_event.type, cloud_event.id
    node = gates and kind in (V1_NODE, V2_NODE)
    if not node and (dropped := _dropped_by_type(kind, ident)) is not None:
        return dropped
    which = cloud_event.WhichOneof("data")
    if which == "binary_data":
        data = _parse_json_data(cloud_event.binary_data, "binary_data")
    elif which == "text_data":
        data = _parse_json_data(cloud_event.text_data.encode(), "text_data")
    else:
        raise InputError(Problem("data", "is required: FlyteAdmin's JSON in binary_data"))
    if node:
        return _node_event(kind, ident, data)
    return _workflow_event(kind, ident, data, follows)


def _parse_json_data(raw: bytes, field: str) -> Any:
    return loads_json(raw, field)


# -- the data: a workflow execution event ----------------------------------------------


def _dropped_by_type(kind: str, ident: str) -> Dropped | None:
    if kind in (V1_WORKFLOW, V2_WORKFLOW):
        return None
    return Dropped(kind, _DROPPED_TYPES.get(kind, UNKNOWN_TYPE), ident)


def _workflow_event(kind: str, ident: str, data: Any, follows: Follows) -> Decoded:
    if not isinstance(data, dict):
        raise InputError(Problem("data", f"must be a JSON object, got {type(data).__name__}"))
    inner = "event" if kind == V1_WORKFLOW else "rawEvent"
    # protobuf's JSON parser takes both spellings; so does this look ahead.
    raw_event = data.get(inner) or (data.get("raw_event") if kind == V2_WORKFLOW else None)
    if not isinstance(raw_event, dict):
        raise InputError(Problem(f"data.{inner}", "is required: a WorkflowExecutionEvent"))
    phase = raw_event.get("phase")
    # Cheap: a phase spelled as FlyteAdmin spells it decides without parsing the rest.
    if isinstance(phase, str) and phase not in _TERMINAL_NAMES:
        if phase not in _PHASE_NAMES:
            # Unknown fields are ignored below, and so would be an unknown phase name.
            raise InputError(Problem(f"data.{inner}.phase", f"unknown phase {phase!r}"))
        if not _followed(raw_event, data, follows):
            return Dropped(kind, NOT_TERMINAL, ident)
    wrong = enum_problems(raw_event, f"data.{inner}")
    if wrong:
        raise InputError(wrong)
    # Only the event and the launch plan are read: the rest of the data (a
    # SUCCEEDED event's output interface, artifact ids, principal) costs the
    # parse of all of it and is used by nothing here.
    launch_plan = _launch_plan(data) if kind == V2_WORKFLOW else None
    try:
        event = published_event_from_json(raw_event, launch_plan)
    except InputError as error:
        raise InputError(
            [Problem(f"data.{inner}.{p.field}".rstrip("."), p.message) for p in error.problems]
        ) from None
    if not event.is_terminal:
        plan = launch_plan.name if launch_plan is not None else None
        if not follows(event.execution_id.project, event.execution_id.domain, plan):
            return Dropped(kind, NOT_TERMINAL, ident)
    return WorkflowEvent(event, ident, kind, launch_plan)


def _followed(raw_event: dict[str, Any], data: dict[str, Any], follows: Follows) -> bool:
    """Whether a deadline may watch the execution, from the raw JSON alone (what is
    not there, or not text, follows nothing: the event is dropped as it was before)."""
    ident = raw_event.get("executionId") or raw_event.get("execution_id")
    if not isinstance(ident, dict):
        return False
    project, domain = ident.get("project"), ident.get("domain")
    if not isinstance(project, str) or not isinstance(domain, str):
        return False
    plan = data.get("launchPlanId") or data.get("launch_plan_id")
    name = plan.get("name") if isinstance(plan, dict) else None
    return follows(project, domain, name if isinstance(name, str) and name else None)


def _node_event(kind: str, ident: str, data: Any) -> NodeAtGate | Dropped:
    """A node event that may be a gate waiting, else dropped as every node event is."""
    inner = "event" if kind == V1_NODE else "rawEvent"
    raw = data.get(inner) or data.get("raw_event") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not _may_be_gate(raw):
        return Dropped(kind, NODE_EVENT, ident)
    message = _parse(event_pb2.NodeExecutionEvent(), raw)
    execution = message.id.execution_id
    eid = ExecutionId(execution.project, execution.domain, execution.name)
    problems = execution_id_problems(eid, f"data.{inner}.id.execution_id")
    if problems:
        raise InputError(problems)
    occurred = (
        message.occurred_at.ToDatetime(tzinfo=UTC) if message.HasField("occurred_at") else None
    )
    reached = GateReached(
        execution_id=eid,
        node_id=message.id.node_id,
        node_name=message.node_name,
        occurred_at=occurred or datetime.now(UTC),
    )
    return NodeAtGate(reached, ident, kind)


def _may_be_gate(raw: dict[str, Any]) -> bool:
    """What FlytePropeller reports for a gate node waiting (see the module doc), read from
    the JSON without parsing it: most node events are tasks, and go no further."""
    if raw.get("phase") != "RUNNING" or any(key in raw for key in _NODE_METADATA):
        return False
    if any(raw.get(flag) for flag in _NODE_FLAGS):
        return False
    ident = raw.get("id")
    node = ident.get("nodeId") or ident.get("node_id") if isinstance(ident, dict) else None
    return isinstance(node, str) and node not in _NOT_GATES


def _parse(message: Message, data: dict[str, Any], field: str = "data") -> Any:
    # Fields a newer FlyteAdmin adds must not make its events malformed.
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InputError(Problem(field, str(error))) from None
    return message


def _launch_plan(data: dict[str, Any]) -> EntityId | None:
    """v2's ``launch_plan_id``, where FlyteAdmin filled it (a name): as jsonpb writes
    it, read directly; in any other shape, by protobuf."""
    field = "launchPlanId" if "launchPlanId" in data else "launch_plan_id"
    if data.get(field) is None:
        return None
    given = data[field]
    if not isinstance(given, dict):
        raise InputError(Problem(f"data.{field}", "must be a JSON object: an Identifier"))
    if _plain_identifier(given):
        parts = [given.get(part, "") for part in _ENTITY_PARTS]
    else:
        ident = _parse(identifier_pb2.Identifier(), given, f"data.{field}")
        parts = [getattr(ident, part) for part in _ENTITY_PARTS]
    project, domain, name, version = parts
    return EntityId(project, domain, name, version) if name else None


_ENTITY_PARTS = ("project", "domain", "name", "version")
_IDENTIFIER_FIELDS = frozenset({"resourceType", "project", "domain", "name", "version", "org"})


def _plain_identifier(given: dict[str, Any]) -> bool:
    """An Identifier as jsonpb writes it, every field text: read as it is (protobuf's
    parser cost more than the rest of the event). Any other shape goes to protobuf."""
    return _IDENTIFIER_FIELDS.issuperset(given) and all(isinstance(v, str) for v in given.values())


# -- io.cloudevents.v1.CloudEvent, built from its descriptor ----------------------------
#
# The CloudEvents protobuf format (cloudevents/spec, cloudevents.proto). No
# maintained PyPI package ships it (the cloudevents SDK has JSON only), so the
# message class is made here from the schema, in a pool of its own so it cannot
# clash with another registration of the same name.


def _cloud_event_file() -> descriptor_pb2.FileDescriptorProto:
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED

    def scalar(
        name: str,
        number: int,
        kind: descriptor_pb2.FieldDescriptorProto.Type.ValueType,
        oneof: int | None = None,
    ) -> Any:
        made = field(name=name, number=number, label=optional, type=kind, json_name=_camel(name))
        if oneof is not None:
            made.oneof_index = oneof
        return made

    def message(name: str, number: int, type_name: str, oneof: int | None = None) -> Any:
        made = scalar(name, number, field.TYPE_MESSAGE, oneof)
        made.type_name = type_name
        return made

    string, bytes_, boolean, int32 = (
        field.TYPE_STRING,
        field.TYPE_BYTES,
        field.TYPE_BOOL,
        field.TYPE_INT32,
    )
    value = descriptor_pb2.DescriptorProto(
        name="CloudEventAttributeValue",
        field=[
            scalar("ce_boolean", 1, boolean, 0),
            scalar("ce_integer", 2, int32, 0),
            scalar("ce_string", 3, string, 0),
            scalar("ce_bytes", 4, bytes_, 0),
            scalar("ce_uri", 5, string, 0),
            scalar("ce_uri_ref", 6, string, 0),
            message("ce_timestamp", 7, ".google.protobuf.Timestamp", 0),
        ],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="attr")],
    )
    entry = descriptor_pb2.DescriptorProto(
        name="AttributesEntry",
        field=[
            scalar("key", 1, string),
            message("value", 2, ".io.cloudevents.v1.CloudEventAttributeValue"),
        ],
        options=descriptor_pb2.MessageOptions(map_entry=True),
    )
    attributes = message("attributes", 5, ".io.cloudevents.v1.CloudEvent.AttributesEntry")
    attributes.label = repeated
    event = descriptor_pb2.DescriptorProto(
        name="CloudEvent",
        field=[
            scalar("id", 1, string),
            scalar("source", 2, string),
            scalar("spec_version", 3, string),
            scalar("type", 4, string),
            attributes,
            scalar("binary_data", 6, bytes_, 0),
            scalar("text_data", 7, string, 0),
            message("proto_data", 8, ".google.protobuf.Any", 0),
        ],
        nested_type=[entry],
        oneof_decl=[descriptor_pb2.OneofDescriptorProto(name="data")],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="io/cloudevents/v1/cloudevents.proto",
        package="io.cloudevents.v1",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/timestamp.proto"],
        message_type=[event, value],
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _cloud_event_classes() -> tuple[type[Message], type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    for known in (any_pb2, timestamp_pb2):
        pool.AddSerializedFile(known.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(_cloud_event_file().SerializeToString())
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("io.cloudevents.v1.CloudEvent")),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("io.cloudevents.v1.CloudEventAttributeValue")
        ),
    )


CloudEvent, CloudEventAttributeValue = _cloud_event_classes()
"""``io.cloudevents.v1.CloudEvent`` and its attribute value, for decoding and for tests."""
