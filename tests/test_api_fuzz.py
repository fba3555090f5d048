"""Hostile requests against the real service: never a 5xx, every 4xx names a field.

A real service (uvicorn on 127.0.0.1) on each store gets requests built by
hypothesis from what broke it before: nesting, numbers too big for a 64-bit
column, digits that are not ASCII, lone surrogates, NUL bytes, identifiers
too long for an index row. The known cases are pinned as explicit examples;
the rest is derandomized and bounded, so a run takes seconds and CI is stable.
"""

from __future__ import annotations

import json
import random
import string
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flytenotify.config import DatabaseConfig, Settings
from tests.helpers import PLAN, event_json
from tests.live_server import LiveServer

MAX_EXAMPLES = 100  # per store: together about 20 s on a quiet machine


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    params: dict[str, str] = field(default_factory=dict)


def _incompressible(length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


# -- values ---------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    "a\x00b",
    "a\ud800b",
    "\udfff",
    "a/b",
    "line\nbreak",
    "\u00b2",
    "\u0661\u0662",
    "\u210c\U0001d522\U0001d529",  # letters outside the BMP
    " ",
    "x" * 256,
]
texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=20),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(50, 3_000)),
    st.builds(_incompressible, st.integers(250, 3_000), st.integers(0, 1_000)),
)
HOSTILE_NUMBERS = [
    "99999999999999999999999",
    str(2**63),
    str(2**63 - 1),
    str(-(2**63)),
    "\u00b2",
    "\u0661",
    "0",
    "-1",
    "1e3",
    " 7",
    "0x10",
    "1" * 5_000,
    "inf",
    "nan",
]
numbers = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=6),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
PHASES = ["FAILED", "SUCCEEDED", "ABORTED", "TIMED_OUT", "RUNNING", "QUEUED", "UNDEFINED"]


def _id(*, version: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    keys = ["project", "domain", "name", *(["version"] if version else [])]
    given_ids = st.fixed_dictionaries(
        {k: st.sampled_from(["proj", "prod", "x"]) | texts for k in keys}
    )
    return given_ids | st.dictionaries(st.sampled_from(keys), json_values, max_size=4)


events = st.fixed_dictionaries(
    {
        "executionId": _id() | json_values,
        "phase": st.sampled_from(PHASES) | json_values,
    },
    optional={
        "error": st.fixed_dictionaries(
            {},
            optional={
                "message": texts,
                "code": texts,
                "kind": st.sampled_from(["USER", "SYSTEM", "X"]),
                "errorUri": texts,
            },
        )
        | json_values,
        "launch_plan": _id(version=True) | json_values,
        "occurredAt": st.sampled_from(["2024-05-01T12:00:00Z", "0001-01-01T00:00:00Z"]) | texts,
        "producerId": texts,
        "outputUri": texts,
    },
)
notifications = st.lists(
    st.fixed_dictionaries(
        {"phases": st.lists(st.sampled_from(PHASES) | json_values, max_size=2)},
        optional={
            "email": st.fixed_dictionaries({"recipientsEmail": st.lists(texts, max_size=2)}),
            "slack": st.fixed_dictionaries({"recipientsEmail": st.lists(texts, max_size=2)}),
            "template": texts,
        },
    )
    | json_values,
    max_size=2,
)


def _json(value: Any) -> bytes:
    # The standard library writes a lone surrogate as its \ud800 escape.
    return json.dumps(value).encode()


def _segment(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="") or "x"


nested = st.integers(1, 60_000).flatmap(
    lambda n: st.sampled_from([b"[" * n, b'{"a":' * n, b"[" * n + b"]" * n])
)
bodies_of_anything = nested | json_values.map(_json) | st.binary(max_size=40)


# -- requests -------------------------------------------------------------------------


def _plan_calls() -> st.SearchStrategy[Call]:
    path = st.builds(
        lambda p, d, n: f"/api/v1/launch-plans/{_segment(p)}/{_segment(d)}/{_segment(n)}",
        st.sampled_from(["proj"]) | texts,
        st.sampled_from(["prod"]) | texts,
        st.sampled_from(["nightly"]) | texts,
    )
    body = st.fixed_dictionaries(
        {"version": st.sampled_from(["v1"]) | texts, "notifications": notifications}
    )
    return st.builds(Call, st.just("PUT"), path, body.map(_json) | bodies_of_anything) | st.builds(
        Call, st.just("GET"), path
    )


def _execution_calls() -> st.SearchStrategy[Call]:
    body = st.fixed_dictionaries(
        {"id": _id()},
        optional={
            "launch_plan": _id(version=True),
            "workflow": _id(version=True),
            "notifications": notifications,
            "disable_all": json_values,
        },
    )
    return st.builds(Call, st.just("POST"), st.just("/api/v1/executions"), body.map(_json))


def _event_calls() -> st.SearchStrategy[Call]:
    cloud = st.fixed_dictionaries(
        {
            "specversion": st.just("1.0"),
            "id": texts,
            "source": texts,
            "type": st.just("com.flyte.resource.cloudevents.WorkflowExecution") | texts,
            "data": st.fixed_dictionaries({"rawEvent": events}) | json_values,
        }
    )
    batch = st.lists(events | json_values, max_size=4)
    return st.one_of(
        st.builds(Call, st.just("POST"), st.just("/api/v1/events"), events.map(_json)),
        st.builds(
            Call,
            st.just("POST"),
            st.just("/api/v1/events"),
            cloud.map(_json),
            st.just("application/cloudevents+json"),
        ),
        st.builds(
            Call,
            st.just("POST"),
            st.just("/api/v1/events:batch"),
            batch.map(_json) | bodies_of_anything,
        ),
        st.builds(
            Call,
            st.just("POST"),
            st.sampled_from(["/api/v1/events", "/api/v1/executions"]),
            bodies_of_anything,
            st.sampled_from(["application/json", "application/x-protobuf"]),
        ),
    )


def _query_calls() -> st.SearchStrategy[Call]:
    params = st.fixed_dictionaries(
        {},
        optional={
            "cursor": numbers,
            "limit": numbers,
            "execution": st.builds("/".join, st.lists(texts, min_size=1, max_size=4)),
            "status": st.sampled_from(["dead", "lost"]) | texts,
            "channel": texts,
            "since": numbers | texts,
        },
    )
    ids = st.integers(1, 5).map(str) | numbers.map(_segment)
    return st.one_of(
        st.builds(
            Call,
            st.just("GET"),
            st.sampled_from(["/api/v1/deliveries", "/api/v1/inbox"]),
            params=params,
        ),
        st.builds(Call, st.just("GET"), ids.map(lambda i: f"/api/v1/deliveries/{i}")),
        st.builds(Call, st.just("POST"), ids.map(lambda i: f"/api/v1/deliveries/{i}/retry")),
    )


calls = st.one_of(_plan_calls(), _execution_calls(), _event_calls(), _query_calls())


# -- the test -------------------------------------------------------------------------


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    settings_ = Settings(database=DatabaseConfig(url=database_url))
    with (
        LiveServer(tmp_path / "unused.db", settings_) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        plan = {"version": PLAN.version, "notifications": [_email()]}
        answer = http.put(
            f"/api/v1/launch-plans/{PLAN.project}/{PLAN.domain}/{PLAN.name}", json=plan
        )
        assert answer.status_code == 200, answer.text
        yield http


def _email() -> dict[str, Any]:
    return {"phases": ["FAILED", "SUCCEEDED"], "email": {"recipientsEmail": ["ops@example.com"]}}


def _send(http: httpx.Client, call: Call) -> httpx.Response:
    headers = {"content-type": call.content_type} if call.body is not None else {}
    # The path is pre-encoded: every byte arrives as meant.
    url = f"{http.base_url}".rstrip("/") + call.path
    return http.request(call.method, url, content=call.body, headers=headers, params=call.params)


def _check(response: httpx.Response, call: Call) -> None:
    where = f"{call.method} {call.path} {call.params} {(call.body or b'')[:200]!r}"
    assert response.status_code < 500, f"{where} -> {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str), where
        assert body["error"], where
        assert body.get("problems"), (where, body)
        assert all(p["field"] and p["message"] for p in body["problems"]), (where, body)
    elif call.path.endswith("events:batch"):
        for result in response.json()["results"]:
            if result["outcome"] == "rejected":
                assert all(p["field"].startswith("events[") for p in result["problems"]), result


EXAMPLES = [
    Call("POST", "/api/v1/events", b"[" * 60_000),
    Call("POST", "/api/v1/events:batch", b"[" * 60_000),
    Call("PUT", "/api/v1/launch-plans/p/d/n", b'{"a":' * 60_000),
    Call("GET", "/api/v1/deliveries/99999999999999999999999"),
    Call("POST", f"/api/v1/deliveries/{2**63}/retry"),
    Call("GET", "/api/v1/deliveries/%C2%B2"),
    Call("GET", "/api/v1/deliveries", params={"cursor": str(2**63)}),
    Call("GET", "/api/v1/inbox", params={"cursor": str(2**63), "limit": "\u00b2"}),
    Call("GET", "/api/v1/deliveries", params={"execution": "proj/prod/a\x00b", "channel": "\x00"}),
    Call("GET", "/api/v1/launch-plans/proj/prod/a%00b"),
    Call("POST", "/api/v1/events", _json(event_json("a\ud800b", "FAILED"))),
    Call("POST", "/api/v1/events", _json(event_json("a\x00b", "FAILED"))),
    Call("POST", "/api/v1/events", _json(event_json(_incompressible(2_900, 1), "FAILED"))),
    Call("POST", "/api/v1/events", _json(event_json("e", "FAILED", error="a\x00b" * 20_000))),
    Call("POST", "/api/v1/events:batch", _json([event_json("b", "FAILED"), 7, {"phase": 1}])),
    Call("PUT", "/api/v1/launch-plans/p/d/n", _json({"version": "v\x00", "notifications": []})),
]


def test_hostile_requests_never_get_a_5xx(live: httpx.Client) -> None:
    def check(call: Call) -> None:
        _check(_send(live, call), call)

    for pinned in EXAMPLES:  # the cases that once answered 500, every run
        check = example(call=pinned)(check)
    bounded = settings(
        max_examples=MAX_EXAMPLES,
        deadline=timedelta(seconds=20),  # per request; generous for a loaded machine
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    bounded(given(call=calls)(check))()
