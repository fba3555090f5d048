"""FlyteAdmin's cloud events decoded in every form it publishes them, and every way they fail."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flyteidl.core import execution_pb2
from flyteidl.event import event_pb2
from hypothesis import given
from hypothesis import strategies as st

from flytenotify.domain import EntityId, ErrorKind, ExecutionId
from flytenotify.errors import InputError
from flytenotify.intake import flyteadmin_events as fe
from flytenotify.intake.events import event_from_proto
from flytenotify.models.core.execution import WorkflowExecutionPhase as P
from tests import flyteadmin_egress as egress

PLAN = ("proj", "prod", "nightly", "v3")
FORMS = ["nats_json", "protobuf"]


def wire(event: egress.FlyteCloudEvent, form: str) -> bytes:
    return event.nats_json() if form == "nats_json" else event.protobuf()


def problems(body: bytes) -> dict[str, str]:
    with pytest.raises(InputError) as caught:
        fe.decode(body)
    return {p.field: p.message for p in caught.value.problems}


def envelope(**changes: Any) -> bytes:
    """A v1 terminal event's NATS envelope with attributes changed (None removes one)."""
    document = json.loads(egress.v1_workflow(egress.workflow_event("e1", "FAILED")).nats_json())
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document).encode()


def b64(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.b64encode(raw).decode()


# -- terminal workflow events ------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_v1_terminal_event(form: str) -> None:
    cloud_event = egress.v1_workflow(egress.workflow_event("run-7", "FAILED", error="boom"))
    decoded = fe.decode(wire(cloud_event, form))
    assert isinstance(decoded, fe.WorkflowEvent)
    assert (
        decoded.cloud_event_type
        == "com.flyte.resource.flyteidl.admin.WorkflowExecutionEventRequest"
    )
    assert decoded.cloud_event_id == 'project:"proj" domain:"prod" name:"run-7".FAILED'
    assert decoded.launch_plan is None
    event = decoded.event
    assert event.execution_id == ExecutionId("proj", "prod", "run-7")
    assert event.phase == P.FAILED
    assert event.error is not None
    assert (event.error.message, event.error.kind) == ("boom", ErrorKind.USER)
    assert event.producer_id == "propeller"


@pytest.mark.parametrize("form", FORMS)
def test_v2_terminal_event_takes_the_launch_plan(form: str) -> None:
    cloud_event = egress.v2_workflow(egress.workflow_event("run-8", "SUCCEEDED"), PLAN)
    decoded = fe.decode(wire(cloud_event, form))
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.cloud_event_type == "com.flyte.resource.cloudevents.WorkflowExecution"
    assert decoded.launch_plan == EntityId(*PLAN)
    assert decoded.event.launch_plan == EntityId(*PLAN)
    assert decoded.event.phase == P.SUCCEEDED
    assert decoded.event.output_uri.endswith("run-8/outputs.pb")


@pytest.mark.parametrize("form", FORMS)
def test_v2_without_enrichment_has_no_launch_plan(form: str) -> None:
    cloud_event = egress.v2_workflow(egress.workflow_event("run-9", "ABORTED"))
    decoded = fe.decode(wire(cloud_event, form))
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.launch_plan is None
    assert decoded.event.phase == P.ABORTED


def test_envelope_with_data_instead_of_data_base64() -> None:
    data = json.loads(egress.v1_workflow(egress.workflow_event("d1", "TIMED_OUT")).data)
    as_object = fe.decode(envelope(data_base64=None, data=data))
    as_text = fe.decode(envelope(data_base64=None, data=json.dumps(data)))
    for decoded in (as_object, as_text):
        assert isinstance(decoded, fe.WorkflowEvent)
        assert decoded.event.execution_id.name == "d1"
        assert decoded.event.phase == P.TIMED_OUT


def test_fields_a_newer_flyteadmin_adds_are_tolerated() -> None:
    data = json.loads(egress.v1_workflow(egress.workflow_event("n1", "FAILED")).data)
    data["event"]["someFutureField"] = {"x": 1}
    data["anotherNewField"] = "y"
    decoded = fe.decode(envelope(data_base64=b64(data)))
    assert isinstance(decoded, fe.WorkflowEvent)


@pytest.mark.parametrize("form", FORMS)
def test_a_succeeded_event_with_its_outputs_and_artifacts(form: str) -> None:
    message = egress.workflow_event("run-10", "SUCCEEDED")
    cloud_event = egress.v2_workflow(message, PLAN, outputs={"o0": 1, "report": 3})
    assert b"outputInterface" in cloud_event.data
    assert b"artifactIds" in cloud_event.data
    decoded = fe.decode(wire(cloud_event, form))
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.launch_plan == EntityId(*PLAN)
    assert decoded.event == event_from_proto(message, EntityId(*PLAN))


def test_what_is_not_read_cannot_make_an_event_malformed() -> None:
    """Only the event and the launch plan are read: the output interface, artifact
    ids, principal and the event's inline outputs are FlyteAdmin's business."""
    message = egress.workflow_event("run-11", "SUCCEEDED")
    data = json.loads(egress.v2_workflow(message, PLAN).data)
    data["outputInterface"] = {"outputs": 7}
    data["artifactIds"] = "none"
    data["principal"] = {"who": 1}
    data["rawEvent"]["outputData"] = ["not", "a", "literal", "map"]
    decoded = fe.decode(envelope(type=fe.V2_WORKFLOW, data_base64=b64(data)))
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.event == event_from_proto(message, EntityId(*PLAN))


@pytest.mark.parametrize(
    ("launch_plan_id", "says"),
    [({"name": 5}, "name"), ("nightly", "JSON object"), ({"project": ["p"]}, "project")],
)
def test_a_malformed_launch_plan_id_names_its_field(launch_plan_id: object, says: str) -> None:
    data = json.loads(egress.v2_workflow(egress.workflow_event("x", "FAILED"), PLAN).data)
    data["launchPlanId"] = launch_plan_id
    found = problems(envelope(type=fe.V2_WORKFLOW, data_base64=b64(data)))
    assert list(found) == ["data.launchPlanId"]
    assert says in found["data.launchPlanId"]


@pytest.mark.parametrize(
    "spelled",
    [
        {"resourceType": 3},
        {"resource_type": "LAUNCH_PLAN"},
        {"resourceType": "LAUNCH_PLAN", "someFutureField": {"x": 1}},
    ],
)
def test_a_launch_plan_id_spelled_otherwise_reads_the_same(spelled: dict[str, object]) -> None:
    data = json.loads(egress.v2_workflow(egress.workflow_event("x", "FAILED"), PLAN).data)
    data["launchPlanId"] = {k: v for k, v in data["launchPlanId"].items() if k != "resourceType"}
    data["launchPlanId"].update(spelled)
    decoded = fe.decode(envelope(type=fe.V2_WORKFLOW, data_base64=b64(data)))
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.launch_plan == EntityId(*PLAN)


_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_TERMINAL = ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"]


@st.composite
def published_events(draw: st.DrawFn) -> event_pb2.WorkflowExecutionEvent:
    """What FlytePropeller reports, any field set or not: seconds, micro- or nanoseconds."""
    message = event_pb2.WorkflowExecutionEvent(
        phase=execution_pb2.WorkflowExecution.Phase.Value(draw(st.sampled_from(_TERMINAL)))
    )
    message.execution_id.project = draw(_NAMES)
    message.execution_id.domain = draw(_NAMES)
    message.execution_id.name = draw(_NAMES)
    message.producer_id = draw(st.text(max_size=10))
    message.occurred_at.seconds = draw(st.integers(946_684_800, 4_102_444_800))
    message.occurred_at.nanos = draw(st.sampled_from([0, 123_000, 123_456_789]))
    if draw(st.booleans()):
        message.output_uri = draw(st.text(max_size=30))
    if draw(st.booleans()):
        message.error.code = draw(st.text(max_size=10))
        message.error.message = draw(st.text(max_size=30))
        message.error.kind = draw(st.sampled_from([0, 1, 2]))  # type: ignore[assignment]
    if draw(st.booleans()):
        message.output_data.literals["o0"].scalar.primitive.integer = draw(st.integers())
    return message


@given(published_events(), st.booleans(), st.booleans())
def test_published_events_read_exactly_as_protobuf_reads_them(
    message: event_pb2.WorkflowExecutionEvent, v2: bool, enriched: bool
) -> None:
    plan = EntityId(*PLAN) if v2 and enriched else None
    cloud_event = (
        egress.v2_workflow(message, PLAN if enriched else None)
        if v2
        else egress.v1_workflow(message)
    )
    decoded = fe.decode(cloud_event.nats_json())
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.event == event_from_proto(message, plan)


def test_protobuf_field_numbers_are_the_cloudevents_specification() -> None:
    """Bytes written by hand from cloudevents.proto's field numbers, not by our class."""
    data = egress.jsonpb(
        egress.admin_event_pb2.WorkflowExecutionEventRequest(
            event=egress.workflow_event("h1", "FAILED")
        )
    )

    def field(number: int, payload: bytes) -> bytes:  # wire type 2, short lengths only
        assert len(payload) < 128 or number == 6
        return bytes([number << 3 | 2]) + _varint(len(payload)) + payload

    type_name = b"com.flyte.resource.flyteidl.admin.WorkflowExecutionEventRequest"
    time_value = field(7, bytes([0x08]) + _varint(1_700_000_000))  # ce_timestamp.seconds
    time_entry = field(1, b"time") + field(2, time_value)
    body = (
        field(1, b"hand-1")
        + field(2, b"https://github.com/flyteorg/flyte/flyteadmin")
        + field(3, b"1.0")
        + field(4, type_name)
        + field(5, time_entry)
        + field(5, field(1, b"datacontenttype") + field(2, field(3, b"application/json")))
        + field(6, data)
    )
    decoded = fe.decode(body)
    assert isinstance(decoded, fe.WorkflowEvent)
    assert (decoded.cloud_event_id, decoded.event.execution_id.name) == ("hand-1", "h1")
    parsed: Any = fe.CloudEvent.FromString(body)
    assert parsed.attributes["time"].ce_timestamp.seconds == 1_700_000_000
    assert parsed.attributes["datacontenttype"].ce_string == "application/json"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# -- dropped on purpose ------------------------------------------------------------------

DROPS = [
    (egress.v1_node(egress.node_event("x")), fe.NODE_EVENT),
    (egress.v1_task(egress.task_event("x")), fe.TASK_EVENT),
    (egress.v2_node(egress.node_event("x", "SUCCEEDED")), fe.NODE_EVENT),
    (egress.v2_task(egress.task_event("x", "SUCCEEDED")), fe.TASK_EVENT),
    (egress.v2_execution_start("x"), fe.EXECUTION_START),
    (egress.v1_workflow(egress.workflow_event("x", "RUNNING")), fe.NOT_TERMINAL),
    (egress.v2_workflow(egress.workflow_event("x", "SUCCEEDING")), fe.NOT_TERMINAL),
    (egress.v2_workflow(egress.workflow_event("x", "QUEUED"), PLAN), fe.NOT_TERMINAL),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("cloud_event", "reason"), DROPS, ids=[r for _, r in DROPS])
def test_everything_but_terminal_workflow_events_is_dropped(
    cloud_event: egress.FlyteCloudEvent, reason: str, form: str
) -> None:
    decoded = fe.decode(wire(cloud_event, form))
    assert decoded == fe.Dropped(cloud_event.type, reason, cloud_event.id)


def test_unknown_types_are_dropped() -> None:
    decoded = fe.decode(envelope(type="com.example.something.else"))
    assert decoded == fe.Dropped(
        "com.example.something.else", fe.UNKNOWN_TYPE, decoded.cloud_event_id
    )


def test_a_phase_given_as_a_number_still_decides() -> None:
    data = json.loads(egress.v1_workflow(egress.workflow_event("x", "RUNNING")).data)
    data["event"]["phase"] = 2  # RUNNING by number
    decoded = fe.decode(envelope(data_base64=b64(data)))
    assert isinstance(decoded, fe.Dropped)
    assert decoded.reason == fe.NOT_TERMINAL


@pytest.mark.parametrize("form", FORMS)
def test_dropping_never_reads_the_data(form: str) -> None:
    node = egress.v1_node(egress.node_event("x"))
    garbled = egress.FlyteCloudEvent(
        id=node.id,
        source=node.source,
        type=node.type,
        time=node.time,
        data=b"\xff not json",
        key=node.key,
    )
    assert isinstance(fe.decode(wire(garbled, form)), fe.Dropped)


# -- malformed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b"{not json", "body", "not valid JSON"),
        (b"[1, 2]", "body", "JSON object"),
        (envelope(type=None), "type", "is required"),
        (envelope(id=None), "id", "is required"),
        (envelope(type=7), "type", "must be a string"),
        (envelope(data_base64="%%%"), "data_base64", "not valid base64"),
        (envelope(data_base64=b64(b"{nope")), "data_base64", "not valid JSON"),
        (envelope(data_base64=12), "data_base64", "base64 string"),
        (envelope(data_base64=None), "data", "is required"),
        (envelope(data_base64=b64([1])), "data", "JSON object"),
        (envelope(data_base64=b64({"requestId": "r"})), "data.event", "is required"),
        (envelope(data_base64=b64({"event": {"phase": "BOGUS"}})), "data.event.phase", "BOGUS"),
        (b"\x0a\x05hello\xff\xff", "body", "protobuf"),
    ],
)
def test_malformed_messages_name_the_field(body: bytes, field: str, says: str) -> None:
    found = problems(body)
    assert field in found, found
    assert says in found[field]


def test_an_event_without_its_execution_id_or_phase() -> None:
    data = json.loads(egress.v1_workflow(egress.workflow_event("x", "FAILED")).data)
    data["event"]["executionId"].pop("project")
    assert problems(envelope(data_base64=b64(data))) == {
        "data.event.execution_id.project": "is required"
    }
    v2 = json.loads(egress.v2_workflow(egress.workflow_event("x", "FAILED")).data)
    v2["rawEvent"].pop("phase")  # jsonpb omits UNDEFINED
    body = envelope(type=fe.V2_WORKFLOW, data_base64=b64(v2))
    assert "data.rawEvent.phase" in problems(body)


def test_protobuf_without_type_or_data() -> None:
    missing_type: Any = fe.CloudEvent(id="1", source="s", spec_version="1.0")
    assert "type" in problems(missing_type.SerializeToString())
    no_data: Any = fe.CloudEvent(id="1", source="s", spec_version="1.0", type=fe.V1_WORKFLOW)
    assert "data" in problems(no_data.SerializeToString())
    bad_json: Any = fe.CloudEvent(id="1", type=fe.V2_WORKFLOW, binary_data=b"<xml/>")
    assert "binary_data" in problems(bad_json.SerializeToString())


# -- the builders write what FlyteAdmin's Go code writes ---------------------------------


def test_the_nats_envelope_is_sdk_go_structured_json() -> None:
    cloud_event = egress.v1_workflow(egress.workflow_event("g1", "FAILED"))
    body = cloud_event.nats_json()
    document = json.loads(body)
    assert list(document) == [
        "specversion", "id", "source", "type", "datacontenttype", "time", "data_base64",
        "jsonschemaurl",
    ]  # fmt: skip
    assert b" " not in body.split(b'"id"')[0]  # compact, as jsoniter writes
    data = base64.b64decode(document["data_base64"])
    assert data.startswith(b'{"requestId":"')
    assert b'"executionId":{"project":"proj"' in data
    assert b'"phase":"FAILED"' in data
    assert document["time"].endswith("Z")


def test_protobuf_and_json_are_told_apart_by_more_than_the_first_byte() -> None:
    # A protobuf CloudEvent starts with 0x0A (a newline); an id of 123 bytes
    # makes its second byte "{".
    long_id = egress.FlyteCloudEvent(
        id="i" * 123, source="s", type=fe.V2_WORKFLOW, time=egress.datetime.now(egress.UTC),
        data=egress.jsonpb(egress.cloudevents_pb2.CloudEventWorkflowExecution(
            raw_event=egress.workflow_event("p1", "FAILED"))), key="k",
    )  # fmt: skip
    body = long_id.protobuf()
    assert body[:2] == b"\n{"
    decoded = fe.decode(body)
    assert isinstance(decoded, fe.WorkflowEvent)
    assert decoded.cloud_event_id == "i" * 123
    after_newline = fe.decode(b"\n" + envelope())
    assert isinstance(after_newline, fe.WorkflowEvent)


def test_a_nats_envelope_nested_too_deep_is_malformed_not_a_crash() -> None:
    from flytenotify.errors import InputError
    from flytenotify.intake.flyteadmin_events import decode
    from flytenotify.intake.limits import MAX_JSON_DEPTH

    nested = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    body = '{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": ' + nested + "}"
    with pytest.raises(InputError) as raised:
        decode(("[" * 100_000).encode())
    assert raised.value.problems[0].field == "body"
    with pytest.raises(InputError):
        decode(body.encode())
