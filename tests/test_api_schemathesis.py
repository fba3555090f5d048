"""Property-based testing of the HTTP API against its own OpenAPI document.

A real service (uvicorn on 127.0.0.1) is checked with schemathesis: no
response is a 5xx, and every status code, content type and body conforms to
GET /openapi.json. Bounded (30 examples per operation) and derandomized, so
CI is stable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flytenotify.openapi import OPENAPI
from tests.live_server import LiveServer

# Random bytes as protobuf bodies: the service must answer 400, never 5xx.
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("schemathesis") / "api.db") as server:
        yield server


# The document the service serves (test_the_document_is_served checks they agree).
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(max_examples=30)


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, live: LiveServer) -> None:
    case.call_and_validate(
        base_url=live.url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_the_document_is_served_and_covers_every_route(live: LiveServer) -> None:
    import httpx

    document = httpx.get(f"{live.url}/openapi.json", timeout=5).json()
    assert document == OPENAPI
    assert set(document["paths"]) >= {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/metrics",
        "/api/v1/launch-plans/{project}/{domain}/{name}",
        "/api/v1/executions",
        "/api/v1/executions/{project}/{domain}/{name}",
        "/api/v1/events",
        "/api/v1/events:batch",
        "/api/v1/deliveries",
        "/api/v1/deliveries/{id}",
        "/api/v1/deliveries/{id}/retry",
        "/api/v1/inbox",
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (path, method)
            for code, answer in operation["responses"].items():
                assert "content" in answer, (path, method, code)
