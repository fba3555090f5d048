"""Client mistakes that once answered 500: each is a 4xx naming its field now.

Every test runs on a SQLite file and on PostgreSQL (``database_url``): some
mistakes (a NUL byte, an over-long identifier) used to pass SQLite and break
only PostgreSQL, so the limits are checked at intake, the same for both.
"""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from flytenotify import Email, WorkflowExecutionPhase
from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.domain import (
    EntityId,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionId,
    NotificationSource,
)
from flytenotify.errors import InputError
from flytenotify.intake.limits import (
    IDENTIFIER_LIMITS,
    MAX_JSON_DEPTH,
    TEXT_LIMITS,
    TRUNCATED,
    id_problems,
    identifier_problems,
)
from flytenotify.store.base import EventWrite
from flytenotify.web.api import create_app
from tests.conftest import run_async
from tests.helpers import PLAN, event_json
from tests.live_server import LiveServer
from tests.test_engine import DOC_EXAMPLES

PLAN_URL = f"/api/v1/launch-plans/{PLAN.project}/{PLAN.domain}/{PLAN.name}"
PLAN_JSON = {"project": PLAN.project, "domain": PLAN.domain, "name": PLAN.name}
JSON_HEADERS = {"content-type": "application/json"}
TOO_BIG = str(2**63)
WAY_TOO_BIG = "99999999999999999999999"
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes, int() says no


@pytest.fixture
async def notifier(database_url: str) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as n:
        yield n


@pytest.fixture
async def client(notifier: Notifier) -> AsyncIterator[httpx.AsyncClient]:
    # The default body limit (1 MiB): the hostile bodies below are bigger than 64 KiB.
    app = create_app(notifier, ServerConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _register(client: httpx.AsyncClient) -> None:
    body = {"version": PLAN.version, "notifications": [n.to_dict() for n in DOC_EXAMPLES]}
    response = await client.put(PLAN_URL, json=body)
    assert response.status_code == 200, response.text


def _fields(response: httpx.Response) -> list[str]:
    body = response.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    return [p["field"] for p in body["problems"]]


def _incompressible(length: int) -> str:
    # Random letters: PostgreSQL cannot compress them below its btree row limit.
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def _cloud_event(data: object) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "1",
        "source": "flyteadmin",
        "type": "com.flyte.resource.cloudevents.WorkflowExecution",
        "data": data,
    }


# -- nesting ------------------------------------------------------------------------


async def test_deep_nesting_is_a_400_on_every_json_route(client: httpx.AsyncClient) -> None:
    unclosed = b"[" * 100_000
    nested = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    inside = f'{{"executionId": {{"project": {nested}, "domain": "d", "name": "n"}}}}'.encode()
    cloud = f'{{"specversion": "1.0", "data": {nested}}}'.encode()
    binary = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}
    routes = [
        ("PUT", PLAN_URL, JSON_HEADERS, "body"),
        ("POST", "/api/v1/executions", JSON_HEADERS, "body"),
        ("POST", "/api/v1/events", JSON_HEADERS, "body"),
        ("POST", "/api/v1/events:batch", JSON_HEADERS, "body"),
        ("POST", "/api/v1/events", {"content-type": "application/cloudevents+json"}, "body"),
        ("POST", "/api/v1/events", {**JSON_HEADERS, **binary}, "data"),
    ]
    for method, url, headers, field in routes:
        for body in (unclosed, inside, cloud):
            response = await client.request(method, url, content=body, headers=headers)
            assert response.status_code == 400, (url, headers, body[:30], response.text)
            assert _fields(response) == [field], (url, response.text)


# -- numbers in paths and query strings ----------------------------------------------


async def test_ids_out_of_range_or_not_ascii_digits_are_unknown_deliveries(
    client: httpx.AsyncClient,
) -> None:
    for raw in (WAY_TOO_BIG, TOO_BIG, "%C2%B2", "0", "-1", "1" + "0" * 5000):
        for method, suffix in (("GET", ""), ("POST", "/retry")):
            response = await client.request(method, f"/api/v1/deliveries/{raw}{suffix}")
            assert response.status_code == 404, (raw, suffix, response.text)
            assert _fields(response) == ["id"], response.text
    biggest = await client.get(f"/api/v1/deliveries/{2**63 - 1}")
    assert biggest.status_code == 404
    assert _fields(biggest) == ["id"]


async def test_cursors_and_limits_out_of_range_are_400s(client: httpx.AsyncClient) -> None:
    for route in ("/api/v1/deliveries", "/api/v1/inbox"):
        for name, raw in (
            ("cursor", TOO_BIG),
            ("cursor", WAY_TOO_BIG),
            ("cursor", SUPERSCRIPT_TWO),
            ("cursor", "-1"),
            ("limit", SUPERSCRIPT_TWO),
            ("limit", "\u0661"),  # ARABIC-INDIC DIGIT ONE: int() takes it, we do not
            ("limit", "1001"),
            ("limit", "0"),
        ):
            response = await client.get(route, params={name: raw})
            assert response.status_code == 400, (route, name, raw, response.text)
            assert _fields(response) == [name], response.text
        at_the_edge = await client.get(route, params={"cursor": str(2**63 - 1), "limit": "1000"})
        assert at_the_edge.status_code == 200, at_the_edge.text
        assert at_the_edge.json() == {"items": [], "next": None}


async def test_a_content_length_of_unicode_digits_is_not_a_500(client: httpx.AsyncClient) -> None:
    headers = {**JSON_HEADERS, "content-length": SUPERSCRIPT_TWO.encode("latin-1")}
    response = await client.post("/api/v1/events", content=b"{}", headers=headers)
    assert response.status_code < 500, response.text


async def test_an_infinite_since_is_a_400(client: httpx.AsyncClient) -> None:
    for raw in ("inf", "nan", "1e400"):
        response = await client.get("/api/v1/deliveries", params={"since": raw})
        assert response.status_code == 400, (raw, response.text)
        assert _fields(response) == ["since"]


# -- identifiers: NUL, control characters, length ------------------------------------


async def test_nul_in_identifiers_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    await _register(client)
    nul = "a\u0000b"
    event = await client.post("/api/v1/events", json=event_json(nul, "FAILED"))
    assert event.status_code == 400, event.text
    assert _fields(event) == ["execution_id.name"]

    creation = await client.post(
        "/api/v1/executions", json={"id": {"project": nul, "domain": "prod", "name": "x"}}
    )
    assert creation.status_code == 400, creation.text
    assert _fields(creation) == ["id.project"]

    lp_event = event_json("x", "FAILED")
    lp_event["launch_plan"] = {**PLAN_JSON, "version": nul}
    assert _fields(await client.post("/api/v1/events", json=lp_event)) == ["launch_plan.version"]

    for method in ("GET", "PUT"):
        path = await client.request(
            method, "/api/v1/launch-plans/proj/prod/a%00b", json={"version": "v1"}
        )
        assert path.status_code == 400, (method, path.text)
        assert _fields(path) == ["name"]
    version = await client.put(PLAN_URL, json={"version": nul, "notifications": []})
    assert version.status_code == 400, version.text
    assert _fields(version) == ["version"]

    for name, raw, field in (
        ("execution", "proj/prod/a\u0000b", "execution.name"),
        ("channel", "\u0000", "channel"),
    ):
        query = await client.get("/api/v1/deliveries", params={name: raw})
        assert query.status_code == 400, (name, query.text)
        assert _fields(query) == [field]


async def test_over_long_identifiers_are_refused_on_both_stores(
    client: httpx.AsyncClient, notifier: Notifier
) -> None:
    await _register(client)
    long_name = _incompressible(2_800)
    event = await client.post("/api/v1/events", json=event_json(long_name, "FAILED"))
    assert event.status_code == 400, event.text
    assert _fields(event) == ["execution_id.name"]
    assert "at most 255" in event.json()["problems"][0]["message"]

    creation = await client.post(
        "/api/v1/executions", json={"id": {"project": "proj", "domain": "prod", "name": long_name}}
    )
    assert _fields(creation) == ["id.name"]
    plan = await client.put(f"/api/v1/launch-plans/proj/prod/{long_name}", json={"version": "v"})
    assert plan.status_code == 400
    assert _fields(plan) == ["name"]

    # At the limit everything is stored and found again, on both stores.
    name_at_limit = _incompressible(255)
    at_limit = await client.post("/api/v1/events", json=event_json(name_at_limit, "FAILED"))
    assert at_limit.status_code == 200, at_limit.text
    stored = await notifier.store.get_executions([ExecutionId("proj", "prod", name_at_limit)])
    assert list(stored) == [ExecutionId("proj", "prod", name_at_limit)]


# -- free text: cut and cleaned, never refused ---------------------------------------


async def test_error_messages_are_cut_and_cleaned_not_refused(
    client: httpx.AsyncClient, notifier: Notifier
) -> None:
    await _register(client)
    await client.post(
        "/api/v1/executions",
        json={
            "id": {"project": "proj", "domain": "prod", "name": "long"},
            "launch_plan": PLAN_JSON,
        },
    )
    huge = _incompressible(100_000)
    response = await client.post("/api/v1/events", json=event_json("long", "FAILED", error=huge))
    assert response.status_code == 202, response.text
    delivery = await client.get(f"/api/v1/deliveries/{response.json()['delivery_ids'][0]}")
    text = delivery.json()["message"]["text"]
    limit = TEXT_LIMITS["error.message"]
    kept = huge[: limit - len(TRUNCATED)] + TRUNCATED
    assert kept in text
    assert huge not in text

    # A lone surrogate cannot be written as UTF-8, a NUL cannot be stored by
    # PostgreSQL: both become U+FFFD in free text handed over by a Python caller.
    event = ExecutionEvent(
        ExecutionId("proj", "prod", "odd"),
        phase=6,  # FAILED
        occurred_at=datetime.now(UTC),
        error=ExecutionError("a\ud800b\u0000c"),
        launch_plan=PLAN,
    )
    (result,) = await notifier.report_events([event])
    odd = await notifier.delivery(result.delivery_ids[0])
    assert odd is not None
    assert "a\ufffdb\ufffdc" in odd.message.text


async def test_a_lone_surrogate_in_json_is_a_400(client: httpx.AsyncClient) -> None:
    body = (
        '{"executionId": {"project": "p", "domain": "d", "name": "a\\ud800b"}, "phase": "FAILED"}'
    )
    response = await client.post("/api/v1/events", content=body.encode(), headers=JSON_HEADERS)
    assert response.status_code == 400, response.text
    assert _fields(response) == ["body"]


# -- the batch: per-event results ----------------------------------------------------


async def test_a_batch_records_its_good_events_and_rejects_the_bad_ones(
    client: httpx.AsyncClient,
) -> None:
    await _register(client)
    batch = [
        event_json("good-1", "SUCCEEDED", launch_plan=PLAN),
        event_json("a\u0000b", "FAILED"),
        event_json("good-2", "FAILED", launch_plan=PLAN),
        7,
        event_json(_incompressible(3_000), "FAILED"),
    ]
    response = await client.post("/api/v1/events:batch", json=batch)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["outcome"] for r in results] == [
        "enqueued",
        "rejected",
        "enqueued",
        "rejected",
        "rejected",
    ]
    assert [[p["field"] for p in r.get("problems", [])] for r in results] == [
        [],
        ["events[1].execution_id.name"],
        [],
        ["events[3]"],
        ["events[4].execution_id.name"],
    ]
    for name in ("good-1", "good-2"):
        listed = await client.get("/api/v1/deliveries", params={"execution": f"proj/prod/{name}"})
        assert listed.json()["items"], name

    # The producer retries the same batch: the good ones are duplicates now.
    again = await client.post("/api/v1/events:batch", json=batch)
    assert [r["outcome"] for r in again.json()["results"]][::2] == [
        "duplicate",
        "duplicate",
        "rejected",
    ]


# -- Python callers and the CLI: the same rules --------------------------------------


async def test_the_notifier_checks_what_python_callers_hand_it(notifier: Notifier) -> None:
    bad_name = ExecutionEvent(ExecutionId("proj", "prod", "a\u0000b"), 6, datetime.now(UTC))
    bad_phase = ExecutionEvent(ExecutionId("proj", "prod", "x"), 2**70, datetime.now(UTC))
    bad_plan = ExecutionEvent(
        ExecutionId("proj", "prod", "y"), 6, datetime.now(UTC), launch_plan=EntityId("p", "d", "")
    )
    with pytest.raises(InputError) as caught:
        await notifier.report_events([bad_name, bad_phase, bad_plan])
    assert [p.field for p in caught.value.problems] == [
        "events[0].execution_id.name",
        "events[1].phase",
        "events[2].launch_plan.name",
    ]
    # Nothing of the batch was recorded (the store cannot even be asked about a NUL).
    untouched = [bad_phase.execution_id, bad_plan.execution_id]
    assert await notifier.store.get_executions(untouched) == {}

    with pytest.raises(InputError) as caught:
        await notifier.register_launch_plan(EntityId("proj", "prod", "x" * 256, "v1"), [])
    assert [p.field for p in caught.value.problems] == ["launch_plan.name"]
    with pytest.raises(InputError) as caught:
        await notifier.create_execution(
            ExecutionId("proj", "pr\nod", "x"), workflow=EntityId("p", "d", "w", "\ud800")
        )
    assert [p.field for p in caught.value.problems] == ["id.domain"]
    with pytest.raises(InputError) as caught:
        await notifier.create_execution(
            ExecutionId("proj", "prod", "x"), workflow=EntityId("p", "d", "w", "\ud800")
        )
    assert [p.field for p in caught.value.problems] == ["workflow.version"]


def test_the_cli_refuses_an_over_long_name(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    result = CliRunner().invoke(
        main,
        [
            "event",
            "--db",
            db,
            "--project",
            "p",
            "--domain",
            "d",
            "--name",
            "n" * 300,
            "--phase",
            "FAILED",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "execution_id.name" in result.output


async def test_notifications_refuse_what_no_store_can_hold(client: httpx.AsyncClient) -> None:
    cases = [
        ({"recipientsEmail": ["a\u0000b@example.com"]}, "email.recipients_email[0]"),
        ({"recipientsEmail": ["ops@example.com", "x" * 300]}, "email.recipients_email[1]"),
        ({"recipientsEmail": ["ops@example.com"], "template": "a\u0000b"}, "email.template"),
    ]
    for channel, field in cases:
        body = {"version": "v1", "notifications": [{"phases": ["FAILED"], "email": channel}]}
        response = await client.put(PLAN_URL, json=body)
        assert response.status_code == 400, (channel, response.text)
        assert _fields(response) == [f"notifications[0].{field}"]


async def test_empty_query_parameters_and_unknown_error_kinds_are_400s(
    client: httpx.AsyncClient,
) -> None:
    for name in ("since", "cursor", "limit", "execution", "status", "channel"):
        response = await client.get("/api/v1/deliveries", params={name: ""})
        assert response.status_code == 400, (name, response.text)
        assert _fields(response) == [name]
    event = event_json("kind", "FAILED")
    event["error"] = {"message": "boom", "kind": 7}
    response = await client.post("/api/v1/events", json=event)
    assert response.status_code == 400, response.text
    assert _fields(response) == ["error.kind"]


async def test_a_null_version_is_refused_not_stored(client: httpx.AsyncClient) -> None:
    # Found by schemathesis: it was stored, and answered as "version": null.
    body = {
        "id": {"project": "proj", "domain": "prod", "name": "nullv"},
        "workflow": {"project": "p", "domain": "d", "name": "w", "version": None},
    }
    response = await client.post("/api/v1/executions", json=body)
    assert response.status_code == 400, response.text
    assert _fields(response) == ["workflow.version"]


async def test_a_phase_or_error_kind_that_is_not_a_name_or_whole_number_is_a_400(
    client: httpx.AsyncClient,
) -> None:
    # protobuf's JSON parser reads 1.5 as 1 and true as 1: both must be refused.
    for field, value in (("phase", 6.5), ("error.kind", 1.5), ("error.kind", True)):
        event = event_json("e-enum", "FAILED", error="boom")
        if field == "phase":
            event["phase"] = value
        else:
            event["error"]["kind"] = value
        response = await client.post("/api/v1/events", json=event)
        assert response.status_code == 400, (field, value, response.text)
        assert _fields(response) == [field], response.text


# Characters near every boundary the identifier checks draw: controls, "/",
# lone surrogates, and ordinary text around them.
_ID_CHARS = st.sampled_from(
    [
        "a",
        "Z",
        "-",
        "_",
        ".",
        "/",
        "\x00",
        "\x1f",
        "\x7f",
        "\x9f",
        "\xa0",
        "\ud800",
        "\udfff",
        "é",
        "中",
        " ",
        "\n",
    ]
)


@given(
    part=st.sampled_from(sorted(set(IDENTIFIER_LIMITS) - {"recipient"})),
    value=st.one_of(
        st.text(_ID_CHARS, max_size=8),
        st.integers(min_value=60, max_value=260).map(lambda n: "x" * n),
        st.none(),
        st.integers(),
    ),
    version_required=st.booleans(),
)
def test_the_fast_identifier_check_agrees_with_the_checks_one_by_one(
    part: str, value: object, version_required: bool
) -> None:
    required = part != "version" or version_required
    expected = identifier_problems(value, f"id.{part}", part, required)
    assert id_problems({part: value}, "id", version_required) == expected


async def test_control_characters_in_recipients_are_a_400_at_every_entry_point(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    # The docs promise U+0000-U+001F and U+007F-U+009F are refused: CR/LF could
    # add a header or a recipient, a tab hides in a list; none is in an address.
    hostile = [
        "a@allowed.com\r\nBcc: b@evil.com",
        "a@allowed.com\tb@evil.com",
        "ops@example.com\n",
        "#alerts\x85",
    ]
    for recipient in hostile:
        body = {
            "version": "v1",
            "notifications": [
                {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#ok", recipient]}}
            ],
        }
        registered = await client.put(PLAN_URL, json=body)
        assert registered.status_code == 400, (recipient, registered.text)
        assert _fields(registered) == ["notifications[0].slack.recipients_email[1]"]
        created = await client.post(
            "/api/v1/executions",
            json={
                "id": {"project": "proj", "domain": "prod", "name": "ctl"},
                "notifications": body["notifications"],
            },
        )
        assert created.status_code == 400, (recipient, created.text)
        assert _fields(created) == ["notifications[0].slack.recipients_email[1]"]
    assert (await client.get(PLAN_URL)).status_code == 404  # nothing was registered
    with pytest.raises(InputError) as caught:
        await notifier.register_launch_plan(
            PLAN, [Email([WorkflowExecutionPhase.FAILED], ["a@x.io\r\nBcc: b@evil.com"])]
        )
    assert [p.field for p in caught.value.problems] == [
        "notifications[0].email.recipients_email[0]"
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phase", "\u0666"),  # ARABIC-INDIC DIGIT SIX: int() reads it as 6, FAILED
        ("phase", "\uff16"),  # FULLWIDTH DIGIT SIX
        ("phase", " 6"),  # int() strips spaces
        ("phase", "6\n"),
        ("error.kind", "\uff11"),  # FULLWIDTH DIGIT ONE: USER
    ],
)
async def test_phases_in_digits_other_than_ascii_are_a_400(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    event = event_json("e-digits", "FAILED", error="boom")
    if field == "phase":
        event["phase"] = value
    else:
        event["error"]["kind"] = value
    response = await client.post("/api/v1/events", json=event)
    assert response.status_code == 400, response.text
    assert _fields(response) == [field], response.text

    cloud_event = {
        "specversion": "1.0",
        "id": "ce-digits",
        "source": "https://github.com/flyteorg/flyteadmin",
        "type": "com.flyte.resource.cloudevents.WorkflowExecution",
        "datacontenttype": "application/json",
        "data": {"rawEvent": event},
    }
    response = await client.post(
        "/api/v1/events", json=cloud_event, headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 400, response.text
    assert _fields(response) == [f"data.raw_event.{field}"], response.text
    # Nothing was recorded for the execution.
    missing = await client.get("/api/v1/executions/proj/prod/e-digits")
    assert missing.status_code == 404, missing.text


async def test_ascii_phase_numbers_are_still_read(client: httpx.AsyncClient) -> None:
    event = event_json("e-six", "FAILED")
    event["phase"] = "6"
    response = await client.post("/api/v1/events", json=event)
    assert response.status_code == 200, response.text  # no notifications: recorded
    shown = (await client.get("/api/v1/executions/proj/prod/e-six")).json()
    assert [e["phase"] for e in shown["events"]] == ["FAILED"]


@pytest.mark.parametrize(
    "occurred_at",
    [
        "9999-12-31T23:59:59.999999Z",  # a float of its seconds rounds up to year 10000
        "9999-12-31T23:59:59.999999999Z",  # protobuf's road: nanoseconds
        "2200-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
    ],
)
async def test_event_times_outside_the_accepted_range_are_a_400(
    client: httpx.AsyncClient, occurred_at: str
) -> None:
    event = event_json("far", "FAILED")
    event["occurredAt"] = occurred_at
    response = await client.post("/api/v1/events", json=event)
    assert response.status_code == 400, response.text
    assert _fields(response) == ["occurred_at"]
    assert "1970-01-01T00:00:00Z" in response.json()["problems"][0]["message"]
    missing = await client.get("/api/v1/executions/proj/prod/far")
    assert missing.status_code == 404, missing.text


@pytest.mark.parametrize(
    ("occurred_at", "shown"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
        ("2199-12-31T23:59:59.999999Z", "2199-12-31T23:59:59.999999+00:00"),
        ("2024-05-01T12:03:12.000001Z", "2024-05-01T12:03:12.000001+00:00"),
    ],
)
async def test_event_times_in_the_range_round_trip_to_the_microsecond(
    client: httpx.AsyncClient, occurred_at: str, shown: str
) -> None:
    event = event_json("edge", "FAILED")
    event["occurredAt"] = occurred_at
    response = await client.post("/api/v1/events", json=event)
    assert response.status_code == 200, response.text
    execution = await client.get("/api/v1/executions/proj/prod/edge")
    assert execution.status_code == 200, execution.text
    assert [e["occurred_at"] for e in execution.json()["events"]] == [shown]


async def test_python_callers_get_the_same_range(notifier: Notifier) -> None:
    naive = datetime(2024, 5, 1, 12, 0)  # which zone? the ledger cannot tell
    far = datetime(2200, 1, 1, tzinfo=UTC)
    events = [
        ExecutionEvent(ExecutionId("proj", "prod", "naive"), 6, naive),
        ExecutionEvent(ExecutionId("proj", "prod", "far"), 6, far),
    ]
    with pytest.raises(InputError) as caught:
        await notifier.report_events(events)
    assert [p.field for p in caught.value.problems] == [
        "events[0].occurred_at",
        "events[1].occurred_at",
    ]


def test_a_time_an_earlier_version_stored_out_of_range_is_never_a_500(
    database_url: str, tmp_path: Path
) -> None:
    # Written the way the ledger was before times were bounded: 9999-12-31T23:59:59.999999
    # is 253402300800.0 seconds as a double, a moment datetime cannot hold.
    far = datetime.max.replace(tzinfo=UTC)
    ident = ExecutionId("proj", "prod", "far")
    event = ExecutionEvent(ident, 6, far, error=ExecutionError("boom"))
    execution = Execution(ident, None, (), far, source=NotificationSource.NONE)
    settings = Settings(database=DatabaseConfig(url=database_url))

    async def write() -> None:
        async with Notifier(settings) as n:
            await n.store.record_events([EventWrite(event, execution, [])])

    run_async(write)
    with LiveServer(tmp_path / "unused.db", settings=settings) as server:
        api = httpx.get(f"{server.url}/api/v1/executions/proj/prod/far", timeout=5)
        assert api.status_code == 200, api.text
        assert [e["occurred_at"] for e in api.json()["events"]] == [
            "9999-12-31T23:59:59.999999+00:00"
        ]
        page = httpx.get(f"{server.url}/ui/executions/proj/prod/far", timeout=5)
        assert page.status_code == 200, page.text
        assert "9999-12-31" in page.text
    shown = CliRunner().invoke(main, ["executions", "show", "proj/prod/far", "--db", database_url])
    assert shown.exit_code == 0, shown.output
    assert "9999-12-31" in shown.output
