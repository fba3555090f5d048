"""Property-based testing of the HTTP API against its own OpenAPI document.

A real service (uvicorn on 127.0.0.1), once on a SQLite file and once on
PostgreSQL, is checked with schemathesis and every check it has (the
``--checks all`` of its command line): no 5xx; every status code, content
type, header and body as documented; data the schema calls valid accepted and
data it calls invalid refused; bearer tokens enforced; undocumented methods
answered 405. Bounded (examples per operation) and derandomized, so CI is
stable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config._auth import AuthConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.web.api import document
from tests.conftest import fresh_postgres_database
from tests.live_server import LiveServer

TOKEN = "schemathesis-token-0123456789abcdef"  # 32+ characters, as serve requires
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 10  # per operation and generation mode
load_all_checks()
ALL_CHECKS = CHECKS.get_all()
# No schema can say which bytes are a valid serialized protobuf message, so
# random bytes that the document calls valid are rightly refused (400).
BUT_VALID_PROTOBUF = [c for c in ALL_CHECKS if c is not positive_data_acceptance]
# Nor which strings are cron expressions, which names this machine's time zone
# database holds, or that a silence's end comes after its start and after now:
# a silence the document calls well formed may rightly be refused (400, naming
# the field). Nor what a deadline's fields must say of each other (min_runs no
# more than of_last, start_within with a schedule, at least one rule), or that a
# cron expression names a date that exists, or that an address is one address.
# Every other check holds for them.
BUT_VALID_BODY = BUT_VALID_PROTOBUF
NOT_EVERY_VALID_BODY = {
    ("POST", "/api/v1/silences"),
    ("PUT", "/api/v1/deadlines/{project}/{domain}/{name}"),
}

# Random bytes as protobuf bodies: the service must answer 400, never 5xx.
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One ledger per store for the whole module (a server per operation would be slow)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'api.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def live(database: str) -> Iterator[LiveServer]:
    # Tokens on: the document declares bearer security, and a check verifies it is enforced.
    server = ServerConfig(max_body_bytes=64 * 1024, api_tokens=[SecretStr(TOKEN)])
    settings_ = Settings(database=DatabaseConfig(url=database))
    with LiveServer(Path("unused.db"), settings_, server) as running:
        yield running


# The document the service serves (test_the_document_is_served checks they agree).
schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(max_examples=MAX_EXAMPLES)
# Schemathesis sends the token itself, and leaves it out to check it is required.
schema.config.auth = AuthConfig(openapi={"bearer": {"bearer": TOKEN}})


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, live: LiveServer) -> None:
    protobuf = (case.media_type or "").endswith("protobuf")
    judged = (case.method.upper(), case.path) in NOT_EVERY_VALID_BODY
    checks = BUT_VALID_PROTOBUF if protobuf else BUT_VALID_BODY if judged else ALL_CHECKS
    case.call_and_validate(base_url=live.url, checks=checks)


def test_the_document_is_served_and_covers_every_route(live: LiveServer) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {TOKEN}"}
    served = httpx.get(f"{live.url}/openapi.json", headers=auth, timeout=5).json()
    assert served == document()
    assert set(served["paths"]) >= {
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
    for path, item in served["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (path, method)
            for code, answer in operation["responses"].items():
                if code != "204":  # No Content: nothing to describe
                    assert "content" in answer, (path, method, code)
