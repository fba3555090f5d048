"""FlyteAdmin-shaped cloud events, built as FlyteAdmin's Go code builds them.

For the broker intake tests (NATS, Google Pub/Sub, SNS → SQS). FlyteAdmin
(flyteadmin/pkg/async/cloudevent) makes one cloud event per execution event:

- ``cloudEventVersion: v1`` (``Publisher``): type ``com.flyte.resource.`` + the
  admin request's message name, source ``https://github.com/flyteorg/flyte/flyteadmin``,
  id ``<execution id as Go proto text>.<PHASE>``, the extension ``jsonschemaurl``,
  data the Go jsonpb of the request (:func:`v1_workflow`, :func:`v1_node`, :func:`v1_task`).
- ``v2`` (``CloudEventWrappedPublisher``): type ``com.flyte.resource.cloudevents.*``,
  source ``<execution name>/end-node``, ``jsonschemaurl`` empty, data the jsonpb of
  ``CloudEventWorkflowExecution`` (:func:`v2_workflow`, :func:`v2_node`, :func:`v2_task`,
  :func:`v2_execution_start`).

Each returns a :class:`FlyteCloudEvent`, which writes itself the way each transport
carries it:

- :meth:`FlyteCloudEvent.nats_json`: the structured JSON envelope FlyteAdmin's NATS
  sender publishes (no headers), the data as ``data_base64``, attributes in sdk-go's order;
- :meth:`FlyteCloudEvent.protobuf`: the CloudEvents protobuf format (sdk-go
  ``binding/format/protobuf/v2``) that the gcp and aws senders publish raw;
  :attr:`FlyteCloudEvent.key` is what gizmo publishes it under (Pub/Sub attribute ``key``,
  SNS ``Subject``); :func:`pubsub_attributes` and :func:`sns_notification` wrap it.

jsonpb is reproduced with protobuf's own JSON printer: lowerCamelCase names,
enum names, RFC 3339 times, defaults omitted, compact separators as Go writes.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flyteidl.admin import event_pb2 as admin_event_pb2
from flyteidl.core import execution_pb2, identifier_pb2
from flyteidl.event import cloudevents_pb2, event_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from flytenotify.intake.flyteadmin_events import CloudEvent

SOURCE_V1 = "https://github.com/flyteorg/flyte/flyteadmin"
JSON_SCHEMA_URL_V1 = (
    "https://github.com/flyteorg/flyteidl/blob/v0.24.14/jsonschema/workflow_execution.json"
)
PREFIX = "com.flyte.resource."


@dataclass(frozen=True)
class FlyteCloudEvent:
    """One cloud event as FlyteAdmin fills it in, before a transport writes it."""

    id: str
    source: str
    type: str
    time: datetime
    data: bytes  # the jsonpb bytes, as FlyteAdmin hands them to SetData
    key: str  # the publisher's key: Pub/Sub attribute "key", SNS Subject
    extensions: dict[str, str] = field(default_factory=dict)
    datacontenttype: str = "application/json"

    def nats_json(self) -> bytes:
        """sdk-go's structured JSON: fixed attribute order, data_base64, extensions last."""
        envelope: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "datacontenttype": self.datacontenttype,
            "time": go_rfc3339nano(self.time),
            # SetData with []byte marks the data base64 (event.DataBase64 = true).
            "data_base64": base64.b64encode(self.data).decode(),
            **self.extensions,
        }
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

    def protobuf(self) -> bytes:
        """``io.cloudevents.v1.CloudEvent`` as sdk-go's protobuf format marshals it."""
        message: Any = CloudEvent(
            id=self.id, source=self.source, spec_version="1.0", type=self.type
        )
        message.attributes["datacontenttype"].ce_string = self.datacontenttype
        message.attributes["time"].ce_timestamp.FromDatetime(self.time)
        for name, value in self.extensions.items():
            message.attributes[name].ce_string = value
        message.binary_data = self.data
        return bytes(message.SerializeToString(deterministic=True))


def pubsub_attributes(event: FlyteCloudEvent) -> dict[str, str]:
    """gizmo's GCP PublishRaw: the message carries the key as its one attribute."""
    return {"key": event.key}


def sns_notification(event: FlyteCloudEvent, topic_arn: str, raw: bytes | None = None) -> str:
    """The JSON SQS receives from SNS for gizmo's PublishRaw (base64 Message, key as Subject).

    With raw message delivery on the subscription SQS gets only the message:
    gizmo's base64 text of ``event.protobuf()``, not the bytes themselves.
    """
    body = raw if raw is not None else event.protobuf()
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Subject": event.key,
            "Message": base64.b64encode(body).decode(),
            "Timestamp": go_rfc3339nano(event.time),
            "SignatureVersion": "1",
        }
    )


# -- flyteidl messages ---------------------------------------------------------------------


def execution_id(
    name: str, project: str = "proj", domain: str = "prod"
) -> identifier_pb2.WorkflowExecutionIdentifier:
    return identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name)


def workflow_event(
    name: str,
    phase: str,
    *,
    project: str = "proj",
    domain: str = "prod",
    error: str | None = None,
    occurred_at: datetime | None = None,
) -> event_pb2.WorkflowExecutionEvent:
    """A ``WorkflowExecutionEvent`` as FlytePropeller reports it."""
    message = event_pb2.WorkflowExecutionEvent(
        execution_id=execution_id(name, project, domain),
        producer_id="propeller",
        phase=execution_pb2.WorkflowExecution.Phase.Value(phase),
    )
    message.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    if error is not None:
        message.error.CopyFrom(
            execution_pb2.ExecutionError(
                code="USER:ValueError", message=error, kind=execution_pb2.ExecutionError.USER
            )
        )
    elif phase == "SUCCEEDED":
        message.output_uri = f"s3://bucket/metadata/{project}/{domain}/{name}/outputs.pb"
    return message


def node_event(name: str, phase: str = "RUNNING", node: str = "n0") -> event_pb2.NodeExecutionEvent:
    message = event_pb2.NodeExecutionEvent(
        id=identifier_pb2.NodeExecutionIdentifier(node_id=node, execution_id=execution_id(name)),
        producer_id="propeller",
        phase=execution_pb2.NodeExecution.Phase.Value(phase),
    )
    message.occurred_at.FromDatetime(datetime.now(UTC))
    return message


def task_event(name: str, phase: str = "RUNNING", node: str = "n0") -> event_pb2.TaskExecutionEvent:
    message = event_pb2.TaskExecutionEvent(
        task_id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.TASK, project="proj", domain="prod", name="t", version="1"
        ),
        parent_node_execution_id=identifier_pb2.NodeExecutionIdentifier(
            node_id=node, execution_id=execution_id(name)
        ),
        producer_id="propeller",
        phase=execution_pb2.TaskExecution.Phase.Value(phase),
    )
    message.occurred_at.FromDatetime(datetime.now(UTC))
    return message


def jsonpb(message: Message) -> bytes:
    """Go's ``jsonpb.Marshaler{}``: camelCase, enum names, no defaults, compact."""
    document = json_format.MessageToDict(message)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def go_proto_text(ident: identifier_pb2.WorkflowExecutionIdentifier) -> str:
    """Go's ``proto.Message.String()`` of an execution id (FlyteAdmin's id prefix)."""
    return " ".join(
        f'{name}:"{getattr(ident, name)}"'
        for name in ("project", "domain", "name", "org")
        if getattr(ident, name)
    )


def go_rfc3339nano(moment: datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _time_of(message: Any) -> datetime:
    return (
        message.occurred_at.ToDatetime(tzinfo=UTC)
        if message.HasField("occurred_at")
        else (datetime.now(UTC))
    )


# -- v1: the admin request as data -----------------------------------------------------------


def _v1(request: Message, ident_text: str, phase_name: str, occurred: datetime) -> FlyteCloudEvent:
    name = request.DESCRIPTOR.full_name  # proto.MessageName(request)
    return FlyteCloudEvent(
        id=f"{ident_text}.{phase_name}",
        source=SOURCE_V1,
        type=PREFIX + name,
        time=occurred,
        data=jsonpb(request),
        key=name,
        extensions={"jsonschemaurl": JSON_SCHEMA_URL_V1},
    )


def v1_workflow(event: event_pb2.WorkflowExecutionEvent, request_id: str = "") -> FlyteCloudEvent:
    request = admin_event_pb2.WorkflowExecutionEventRequest(
        request_id=request_id or str(uuid.uuid4()), event=event
    )
    phase = execution_pb2.WorkflowExecution.Phase.Name(event.phase)
    return _v1(request, go_proto_text(event.execution_id), phase, _time_of(event))


def v1_node(event: event_pb2.NodeExecutionEvent) -> FlyteCloudEvent:
    request = admin_event_pb2.NodeExecutionEventRequest(request_id=str(uuid.uuid4()), event=event)
    text = f'node_id:"{event.id.node_id}" execution_id:{{{go_proto_text(event.id.execution_id)}}}'
    phase = execution_pb2.NodeExecution.Phase.Name(event.phase)
    return _v1(request, text, phase, _time_of(event))


def v1_task(event: event_pb2.TaskExecutionEvent) -> FlyteCloudEvent:
    request = admin_event_pb2.TaskExecutionEventRequest(request_id=str(uuid.uuid4()), event=event)
    task = event.task_id
    text = f'resource_type:TASK project:"{task.project}" domain:"{task.domain}" name:"{task.name}"'
    phase = execution_pb2.TaskExecution.Phase.Name(event.phase)
    return _v1(request, text, phase, _time_of(event))


# -- v2: CloudEvent* wrappers as data ----------------------------------------------------------


def _v2(topic: str, data: Message, ident: str, source: str, occurred: datetime) -> FlyteCloudEvent:
    return FlyteCloudEvent(
        id=ident,
        source=source,
        type=f"{PREFIX}{topic}",
        time=occurred,
        data=jsonpb(data),
        key=topic,
        extensions={"jsonschemaurl": ""},
    )


def v2_workflow(
    event: event_pb2.WorkflowExecutionEvent,
    launch_plan: tuple[str, str, str, str] | None = None,
    outputs: dict[str, int] | None = None,
) -> FlyteCloudEvent:
    """``launch_plan`` (project, domain, name, version): FlyteAdmin fills ``launch_plan_id``
    for SUCCEEDED, or for every phase with ``enrichAllWorkflowEventTypes``. ``outputs``
    (name: ``SimpleType`` number): a SUCCEEDED event's workflow outputs, which FlyteAdmin
    sends as ``output_interface``, with an artifact id for each."""
    wrapped = cloudevents_pb2.CloudEventWorkflowExecution(raw_event=event)
    for name, simple in (outputs or {}).items():
        variable = wrapped.output_interface.outputs.variables[name]
        variable.type.simple = simple  # type: ignore[assignment]
        variable.description = f"the workflow's output {name}"
        artifact = wrapped.artifact_ids.add()
        artifact.artifact_key.project = event.execution_id.project
        artifact.artifact_key.domain = event.execution_id.domain
        artifact.artifact_key.name = name
        artifact.version = event.execution_id.name
    if launch_plan is not None:
        project, domain, name, version = launch_plan
        wrapped.launch_plan_id.CopyFrom(
            identifier_pb2.Identifier(
                resource_type=identifier_pb2.LAUNCH_PLAN,
                project=project,
                domain=domain,
                name=name,
                version=version,
            )
        )
        wrapped.principal = "flyte@example.com"
        wrapped.labels["team"] = "data"
    phase = execution_pb2.WorkflowExecution.Phase.Name(event.phase)
    ident = f"{go_proto_text(event.execution_id)}.{phase}"
    source = f"{event.execution_id.name}/end-node"
    return _v2("cloudevents.WorkflowExecution", wrapped, ident, source, _time_of(event))


def v2_node(event: event_pb2.NodeExecutionEvent) -> FlyteCloudEvent:
    wrapped = cloudevents_pb2.CloudEventNodeExecution(raw_event=event)
    phase = execution_pb2.NodeExecution.Phase.Name(event.phase)
    source = f"{event.id.execution_id.name}/{event.id.node_id}"
    ident = f'node_id:"{event.id.node_id}".{phase}'
    return _v2("cloudevents.NodeExecution", wrapped, ident, source, _time_of(event))


def v2_task(event: event_pb2.TaskExecutionEvent) -> FlyteCloudEvent:
    wrapped = cloudevents_pb2.CloudEventTaskExecution(raw_event=event)
    phase = execution_pb2.TaskExecution.Phase.Name(event.phase)
    parent = event.parent_node_execution_id
    source = f"{parent.execution_id.name}/{parent.node_id}/{event.retry_attempt}"
    ident = f'name:"{event.task_id.name}".{phase}'
    return _v2("cloudevents.TaskExecution", wrapped, ident, source, _time_of(event))


def v2_execution_start(name: str) -> FlyteCloudEvent:
    start = cloudevents_pb2.CloudEventExecutionStart(execution_id=execution_id(name))
    ident = go_proto_text(start.execution_id)
    return _v2("cloudevents.ExecutionStart", start, ident, SOURCE_V1, datetime.now(UTC))
