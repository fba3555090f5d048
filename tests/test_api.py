"""The HTTP API over a real Notifier on a SQLite file, through httpx's ASGI transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flyteidl.admin import launch_plan_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format
from pydantic import SecretStr

from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.web.api import create_app
from tests.helpers import PLAN, event_json
from tests.test_engine import DOC_EXAMPLES

PLAN_URL = f"/api/v1/launch-plans/{PLAN.project}/{PLAN.domain}/{PLAN.name}"
PLAN_JSON = {"project": PLAN.project, "domain": PLAN.domain, "name": PLAN.name}


@pytest.fixture
async def notifier(database_url: str) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as n:
        yield n


def _client(notifier: Notifier, server: ServerConfig | None = None) -> httpx.AsyncClient:
    app = create_app(notifier, server or ServerConfig(max_body_bytes=64 * 1024))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(notifier: Notifier) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(notifier) as c:
        yield c


async def _register(client: httpx.AsyncClient) -> None:
    body = {"version": PLAN.version, "notifications": [n.to_dict() for n in DOC_EXAMPLES]}
    response = await client.put(PLAN_URL, json=body)
    assert response.status_code == 200, response.text


async def _create(client: httpx.AsyncClient, name: str, **extra: Any) -> httpx.Response:
    body = {"id": {"project": "proj", "domain": "prod", "name": name}, **extra}
    return await client.post("/api/v1/executions", json=body)


def _problem_fields(response: httpx.Response) -> list[str]:
    return [p["field"] for p in response.json()["problems"]]


async def test_register_create_report_and_see_the_inbox(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    await _register(client)
    plan = (await client.get(PLAN_URL)).json()
    assert plan["id"]["version"] == "v1"
    assert len(plan["notifications"]) == 4

    created = await _create(client, "e1", launch_plan=PLAN_JSON)
    assert created.status_code == 201
    assert created.json()["launch_plan"]["version"] == "v1"
    assert len(created.json()["notifications"]) == 4

    response = await client.post("/api/v1/events", json=event_json("e1", "FAILED", error="boom"))
    assert response.status_code == 202
    assert response.json()["outcome"] == "enqueued"
    assert len(response.json()["delivery_ids"]) == 4

    again = await client.post("/api/v1/events", json=event_json("e1", "FAILED"))
    assert (again.status_code, again.json()) == (200, {"outcome": "duplicate"})

    await notifier.run_until_idle()
    listed = (await client.get("/api/v1/deliveries", params={"execution": "proj/prod/e1"})).json()
    assert {(i["kind"], i["recipient"], i["status"]) for i in listed["items"]} == {
        ("email", "dev-ops@example.com", "delivered"),
        ("email", "on-call@example.com", "delivered"),
        ("slack", "#data-alerts", "delivered"),
        ("slack", "john.doe@example.com", "delivered"),
    }
    assert listed["next"] is None
    assert {i["phase"] for i in listed["items"]} == {"FAILED"}

    inbox = (await client.get("/api/v1/inbox")).json()
    assert sorted(m["recipient"] for m in inbox["items"]) == [
        "#data-alerts",
        "dev-ops@example.com",
        "john.doe@example.com",
        "on-call@example.com",
    ]
    assert all("boom" in m["body"] for m in inbox["items"])

    one = (await client.get(f"/api/v1/deliveries/{listed['items'][0]['id']}")).json()
    assert [a["outcome"] for a in one["attempts"]] == ["delivered"]
    assert "failed" in one["message"]["subject"]

    # Paging: a limit of 2 gives a cursor, the cursor the rest.
    first = (await client.get("/api/v1/deliveries", params={"limit": 2})).json()
    rest = (await client.get("/api/v1/deliveries", params={"cursor": first["next"]})).json()
    assert len(first["items"]) == 2
    assert len(rest["items"]) == 2
    delivered = await client.get("/api/v1/deliveries", params={"status": "delivered"})
    assert len(delivered.json()["items"]) == 4
    since = await client.get("/api/v1/deliveries", params={"since": "2999-01-01T00:00:00Z"})
    assert since.json()["items"] == []


async def test_protobuf_bodies_and_a_batch(notifier: Notifier, client: httpx.AsyncClient) -> None:
    message = launch_plan_pb2.LaunchPlan()
    message.id.resource_type = 3
    message.id.project, message.id.domain, message.id.name = "proj", "prod", "nightly"
    message.id.version = "v1"
    message.spec.entity_metadata.notifications.extend(n.to_flyte_idl() for n in DOC_EXAMPLES)
    headers = {"content-type": "application/x-protobuf"}
    response = await client.put(PLAN_URL, content=message.SerializeToString(), headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["notifications"]) == 4

    for name in ("pb", "b1", "b2"):
        assert (await _create(client, name, launch_plan=PLAN_JSON)).status_code == 201
    event = event_pb2.WorkflowExecutionEvent()
    json_format.ParseDict(event_json("pb", "TIMED_OUT"), event)
    response = await client.post(
        "/api/v1/events", content=event.SerializeToString(), headers=headers
    )
    assert response.status_code == 202, response.text

    batch = [event_json("b1", "SUCCEEDED"), event_json("b2", "ABORTED"), event_json("b1", "FAILED")]
    response = await client.post("/api/v1/events:batch", json=batch)
    assert response.status_code == 200, response.text
    outcomes = [r["outcome"] for r in response.json()["results"]]
    assert outcomes == ["enqueued", "no_notifications", "after_terminal"]

    await notifier.run_until_idle()
    inbox = (await client.get("/api/v1/inbox")).json()["items"]
    assert sorted(m["recipient"] for m in inbox) == [
        "dev-ops@example.com",
        "on-call@example.com",
        "pagerduty-service-email@example.com",
        "team-leads@example.com",
    ]


async def test_client_mistakes_are_4xx_naming_the_field(client: httpx.AsyncClient) -> None:
    json_headers = {"content-type": "application/json"}
    bad_json = await client.post("/api/v1/events", content=b'{"phase": ', headers=json_headers)
    assert bad_json.status_code == 400
    assert _problem_fields(bad_json) == ["body"]

    unknown_phase = await client.post("/api/v1/events", json=event_json("x", "EXPLODED"))
    assert unknown_phase.status_code == 400
    assert _problem_fields(unknown_phase) == ["phase"]

    missing = await client.post(
        "/api/v1/events", json={"executionId": {"project": "p", "domain": "d"}, "phase": "FAILED"}
    )
    assert missing.status_code == 400
    assert _problem_fields(missing) == ["execution_id.name"]

    # A batch answers per event: the good one is recorded, the bad ones say why.
    batch = await client.post(
        "/api/v1/events:batch", json=[event_json("ok", "FAILED"), {"phase": "FAILED"}, 7]
    )
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["outcome"] for r in results] == ["no_notifications", "rejected", "rejected"]
    assert [p["field"] for r in results[1:] for p in r["problems"]] == [
        "events[1].execution_id",
        "events[2]",
    ]
    not_a_list = await client.post("/api/v1/events:batch", json={"phase": "FAILED"})
    assert not_a_list.status_code == 400
    assert _problem_fields(not_a_list) == ["events"]

    execution = await client.post(
        "/api/v1/executions", json={"id": {"project": "p"}, "launch_plan": {"name": "x"}}
    )
    assert execution.status_code == 400
    assert set(_problem_fields(execution)) >= {"id.domain", "id.name", "launch_plan.project"}

    no_plan = await _create(
        client, "x", launch_plan={"project": "no", "domain": "such", "name": "p"}
    )
    assert no_plan.status_code == 404  # as FlyteAdmin answers
    assert _problem_fields(no_plan) == ["launch_plan"]

    bad_notification = await client.put(
        PLAN_URL, json={"version": "v9", "notifications": [{"phases": ["RUNNING"], "email": {}}]}
    )
    assert bad_notification.status_code == 400
    assert all(f.startswith("notifications[0]") for f in _problem_fields(bad_notification))

    no_version = await client.put(PLAN_URL, json={"notifications": []})
    assert _problem_fields(no_version) == ["version"]

    bad_query = await client.get("/api/v1/deliveries", params={"status": "lost", "limit": "x"})
    assert bad_query.status_code == 400
    assert _problem_fields(bad_query) == ["status", "limit"]

    form = await client.post(
        "/api/v1/events",
        content=b"phase=FAILED",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415

    huge = await client.post(
        "/api/v1/events", content=b"[" + b" " * (64 * 1024) + b"]", headers=json_headers
    )
    assert huge.status_code == 413

    for path in ("/api/v1/deliveries/999", "/api/v1/deliveries/abc", PLAN_URL, "/nope"):
        missing_thing = await client.get(path)
        assert missing_thing.status_code == 404, path
        assert "error" in missing_thing.json()
    assert (await client.post("/api/v1/deliveries/999/retry")).status_code == 404


async def test_retry_only_re_drives_dead_deliveries(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    await _register(client)
    await _create(client, "r", launch_plan=PLAN_JSON)
    ids = (await client.post("/api/v1/events", json=event_json("r", "SUCCEEDED"))).json()
    delivery_id = ids["delivery_ids"][0]
    await notifier.run_until_idle()
    response = await client.post(f"/api/v1/deliveries/{delivery_id}/retry")
    assert response.status_code == 409
    assert "not dead" in response.json()["error"]


async def test_dead_delivery_is_re_driven(tmp_path: Path) -> None:
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "dead.db")))
    async with Notifier(settings) as notifier, _client(notifier) as client:  # no dev inbox
        body = {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#nowhere"]}}
        created = await _create(client, "dead", notifications=[body])
        assert created.status_code == 201, created.text
        await client.post("/api/v1/events", json=event_json("dead", "FAILED"))
        await notifier.run_until_idle()
        (dead,) = (await client.get("/api/v1/deliveries", params={"status": "dead"})).json()[
            "items"
        ]
        retried = await client.post(f"/api/v1/deliveries/{dead['id']}/retry")
        assert retried.status_code == 200
        assert retried.json()["status"] == "pending"
        ready = (await client.get("/readyz")).json()
        assert ready["channels"]["slack"] == "unconfigured"


async def test_bearer_tokens_guard_everything_but_health(notifier: Notifier) -> None:
    secret, other = "s3cret-" + "x" * 25, "other-" + "y" * 26
    server = ServerConfig(api_tokens=[SecretStr(secret), SecretStr(other)])
    async with _client(notifier, server) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"]["schema_version"] >= 1
        assert ready.json()["channels"]["email"] == "dev-inbox"
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": secret}):
            denied = await client.get("/api/v1/inbox", headers=headers)
            assert denied.status_code == 401
            assert denied.json()["problems"][0]["field"] == "Authorization"
        allowed = await client.get("/api/v1/inbox", headers={"authorization": f"Bearer {other}"})
        assert allowed.status_code == 200
        spec = await client.get("/openapi.json", headers={"authorization": f"Bearer {secret}"})
        assert "/api/v1/events:batch" in spec.json()["paths"]


async def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "gone.db")))
    notifier = Notifier(settings, dev_inbox=True)
    await notifier.start()
    await notifier.close()  # the database is unreachable from here on
    async with _client(notifier) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert (await client.get("/healthz")).status_code == 200


# -- CloudEvents ---------------------------------------------------------------------

CE_TYPE = "com.flyte.resource.cloudevents.WorkflowExecution"


def _cloud_data(name: str, phase: str = "FAILED", launch_plan: bool = True) -> Any:
    from flyteidl.event import cloudevents_pb2

    data = cloudevents_pb2.CloudEventWorkflowExecution()
    json_format.ParseDict(event_json(name, phase, error="boom"), data.raw_event)
    if launch_plan:
        data.launch_plan_id.resource_type = 3  # LAUNCH_PLAN
        data.launch_plan_id.project = PLAN.project
        data.launch_plan_id.domain = PLAN.domain
        data.launch_plan_id.name = PLAN.name
        data.launch_plan_id.version = PLAN.version
    data.reference_execution.project = "proj"
    data.reference_execution.domain = "prod"
    data.reference_execution.name = "parent"
    return data


def _structured(data: object, **attributes: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "https://github.com/flyteorg/flyteadmin",
        "type": CE_TYPE,
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
        **attributes,
    }


def _binary_headers(content_type: str, **extra: str) -> dict[str, str]:
    return {
        "content-type": content_type,
        "ce-specversion": "1.0",
        "ce-id": "ce-2",
        "ce-source": "https://github.com/flyteorg/flyteadmin",
        "ce-type": CE_TYPE,
        "ce-time": "2024-05-01T12:00:00Z",
        **extra,
    }


async def test_cloud_events_structured_mode(client: httpx.AsyncClient) -> None:
    import base64

    from cloudevents.core.bindings.http import to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    await _register(client)
    # Built with the SDK, as a producer would: an execution we never saw,
    # resolved through the launch plan id in the data.
    from datetime import UTC, datetime

    attributes = _structured(None, time=datetime(2024, 5, 1, 12, tzinfo=UTC))
    del attributes["data"]
    event = CloudEvent(attributes=attributes, data=json_format.MessageToDict(_cloud_data("ce-s1")))
    message = to_structured_event(event)
    response = await client.post("/api/v1/events", content=message.body, headers=message.headers)
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "enqueued"
    assert response.json()["cloud_event"] == {
        "id": "ce-1",
        "type": CE_TYPE,
        "source": "https://github.com/flyteorg/flyteadmin",
    }
    assert len(response.json()["delivery_ids"]) == 4  # the FAILED recipients of PLAN

    # data_base64: the serialized message.
    raw = base64.b64encode(_cloud_data("ce-s2").SerializeToString()).decode()
    body = _structured(None, data_base64=raw)
    del body["data"]
    response = await client.post(
        "/api/v1/events",
        json=body,
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 202, response.text

    # The same cloud event again: a duplicate, nothing enqueued.
    again = await client.post("/api/v1/events", content=message.body, headers=message.headers)
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")


async def test_cloud_events_binary_mode(client: httpx.AsyncClient) -> None:
    await _register(client)
    as_json = json_format.MessageToJson(_cloud_data("ce-b1"))
    response = await client.post(
        "/api/v1/events", content=as_json, headers=_binary_headers("application/json")
    )
    assert response.status_code == 202, response.text
    assert response.json()["cloud_event"]["id"] == "ce-2"

    as_bytes = _cloud_data("ce-b2").SerializeToString()
    response = await client.post(
        "/api/v1/events", content=as_bytes, headers=_binary_headers("application/protobuf")
    )
    assert response.status_code == 202, response.text

    # Without a launch plan id, an unknown execution has no notifications.
    plain = _cloud_data("ce-b3", launch_plan=False).SerializeToString()
    response = await client.post(
        "/api/v1/events", content=plain, headers=_binary_headers("application/protobuf")
    )
    assert response.json()["outcome"] == "no_notifications"

    # Other Flyte cloud events are accepted and ignored.
    node = _binary_headers(
        "application/json", **{"ce-type": "com.flyte.resource.cloudevents.NodeExecution"}
    )
    response = await client.post("/api/v1/events", content=b"{}", headers=node)
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


async def test_bad_cloud_events_are_400_naming_the_problem(client: httpx.AsyncClient) -> None:
    structured = {"content-type": "application/cloudevents+json"}
    good_data = json_format.MessageToDict(_cloud_data("bad"))
    cases: list[tuple[dict[str, str], bytes, str]] = [
        (structured, b"[1, 2]", "body"),
        (structured, b"{not json", "body"),
        (structured, json.dumps(_structured(good_data, type="com.example.other")).encode(), "type"),
        (structured, json.dumps(_structured({"rawEvent": {"phase": "FAILED"}})).encode(), ""),
        (structured, json.dumps(_structured({})).encode(), "data.raw_event"),
        (structured, json.dumps(_structured(None)).encode(), "data"),
        (structured, json.dumps(_structured({"rawEvent": 5})).encode(), "data"),
        (structured, json.dumps(_structured(good_data, id=7)).encode(), "id"),
        (_binary_headers("application/protobuf"), b"\xff\xff\xff", "data"),
        (_binary_headers("application/json"), b"[1]", "data"),
        (_binary_headers("application/json", **{"ce-time": "yesterday"}), b"{}", "body"),
    ]
    no_id = _binary_headers("application/json")
    del no_id["ce-id"]
    cases.append((no_id, json.dumps(good_data).encode(), "id"))
    for headers, body, field in cases:
        response = await client.post("/api/v1/events", content=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        fields = _problem_fields(response)
        assert fields, response.text
        assert any(f.startswith(field) for f in fields), (body, fields)
    missing = json.dumps(_structured({"rawEvent": {"phase": "FAILED"}})).encode()
    response = await client.post("/api/v1/events", content=missing, headers=structured)
    assert "data.raw_event.execution_id" in _problem_fields(response)


# -- metrics ---------------------------------------------------------------------------


async def test_metrics_after_a_delivery(tmp_path: Path) -> None:
    import re

    from flytenotify.metrics import Metrics

    metrics = Metrics()
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "m.db")))
    async with Notifier(settings, dev_inbox=True, observer=metrics.observe_attempt) as notifier:
        app = create_app(notifier, ServerConfig(), metrics)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await _register(client)
            await _create(client, "m1", launch_plan=PLAN_JSON)
            await client.post("/api/v1/events", json=event_json("m1", "FAILED", error="x"))
            await client.post("/api/v1/events", json=event_json("m1", "FAILED"))
            await client.post("/api/v1/events", json={"phase": "FAILED"})
            pending = (await client.get("/metrics")).text
            assert "flytenotify_queue_depth 4.0" in pending
            age = re.search(r"^flytenotify_oldest_pending_age_seconds (\S+)$", pending, re.M)
            assert age is not None
            assert 0.0 <= float(age.group(1)) < 60

            await notifier.run_until_idle()
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for sample in (
        'flytenotify_events_received_total{outcome="enqueued"} 1.0',
        'flytenotify_events_received_total{outcome="duplicate"} 1.0',
        'flytenotify_events_received_total{outcome="invalid"} 1.0',
        'flytenotify_delivery_attempts_total{channel="inbox",outcome="delivered"} 4.0',
        'flytenotify_delivery_attempt_seconds_count{channel="inbox"} 4.0',
        'flytenotify_deliveries{status="delivered"} 4.0',
        'flytenotify_deliveries{status="pending"} 0.0',
        "flytenotify_queue_depth 0.0",
        "flytenotify_oldest_pending_age_seconds 0.0",
    ):
        assert sample in text, sample
    assert 'flytenotify_delivery_attempt_seconds_bucket{channel="inbox",le="+Inf"} 4.0' in text


async def test_registering_an_unroutable_recipient_warns(tmp_path: Path) -> None:
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "warn.db")))
    async with Notifier(settings) as n:  # no dev inbox: unconfigured channels reach nobody
        app = create_app(n)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://flytenotify"
        ) as client:
            answer = await client.put(
                "/api/v1/launch-plans/proj/prod/nightly",
                json={
                    "version": "v1",
                    "notifications": [
                        {"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@example.com"]}},
                        {"phases": ["FAILED"], "pagerDuty": {"recipientsEmail": ["db-team"]}},
                    ],
                },
            )
    assert answer.status_code == 200
    email, pagerduty = answer.json()["warnings"]
    assert email["field"] == "notifications[0].email.recipients_email[0]"
    assert "no [smtp] is configured" in email["message"]
    assert pagerduty["field"] == "notifications[1].pager_duty.recipients_email[0]"
    assert "'db-team' is not an email address" in pagerduty["message"]
