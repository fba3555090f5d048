"""Actions over the HTTP API, the CLI and the console, against the loopback FlyteAdmin.

The API's caller is its bearer token (``api-token:`` and the first 16 hex digits
of its SHA-256); the CLI's the local user (``cli:NAME``) on the database, or the
token with ``--url`` against a running service.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import ServerConfig, Settings
from flytenotify.domain import EntityId
from flytenotify.web.api import create_app, document
from tests import gates
from tests.helpers import write_config
from tests.live_server import LiveServer
from tests.servers.flyteadmin import FlyteAdminServer, admin_execution

RUN = gates.recorded_execution()
PLAN = EntityId(RUN.project, RUN.domain, "release", "v1")
TOKEN = "release-bot-token-0123456789abcdefghij"
OTHER_TOKEN = "someone-else-token-0123456789abcdefghij"
TOKEN_ID = "api-token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
ACTIONS = f"/api/v1/executions/{RUN.project}/{RUN.domain}/{RUN.name}/actions"


@pytest.fixture
def admin() -> Iterator[FlyteAdminServer]:
    with FlyteAdminServer() as server:
        server.add(admin_execution(RUN, launch_plan=PLAN, workflow=PLAN))
        server.reach_gates(RUN, gates.template())
        yield server


def settings_for(admin: FlyteAdminServer, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
            "flyteadmin": admin.config().model_dump(exclude_none=True),
            "actions": {"allow": [{"actors": [TOKEN_ID, f"cli:{getpass.getuser()}"]}]},
        }
    )


@pytest.fixture
async def client(admin: FlyteAdminServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    server = ServerConfig(api_tokens=[SecretStr(TOKEN), SecretStr(OTHER_TOKEN)])
    async with Notifier(settings_for(admin, tmp_path)) as notifier:
        app = create_app(notifier, server)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as http:
            yield http


def fields(response: httpx.Response) -> list[str]:
    return [p["field"] for p in response.json()["problems"]]


async def test_approve_is_201_then_200_with_the_first_decision(
    client: httpx.AsyncClient, admin: FlyteAdminServer
) -> None:
    ids = {"project": RUN.project, "domain": RUN.domain, "name": RUN.name}
    assert (await client.post("/api/v1/executions", json={"id": ids})).status_code == 201
    first = await client.post(ACTIONS, json={"action": "approve", "signal_id": "approve-deploy"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["action"], body["outcome"], body["value"], body["actor"]) == (
        "approve",
        "done",
        True,
        TOKEN_ID,
    )
    assert (body["proof"], body["target"], body["execution"]) == (
        "api-token",
        "approve-deploy",
        str(RUN),
    )
    assert body["summary"].startswith(f"approved by {TOKEN_ID} at ")
    again = await client.post(ACTIONS, json={"action": "reject", "signal_id": "approve-deploy"})
    assert again.status_code == 200
    assert again.json() == body
    assert len(admin.requests_to("SetSignal")) == 1
    listed = await client.get(ACTIONS)
    assert listed.json() == {"items": [body]}
    shown = await client.get(f"/api/v1/executions/{RUN.project}/{RUN.domain}/{RUN.name}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["actions"] == [body]


async def test_mistakes_are_4xx_naming_the_field(
    client: httpx.AsyncClient, admin: FlyteAdminServer
) -> None:
    wrong_type = await client.post(
        ACTIONS, json={"action": "signal", "signal_id": "replicas", "value": "three"}
    )
    assert wrong_type.status_code == 400
    assert fields(wrong_type) == ["value"]
    unknown_action = await client.post(ACTIONS, json={"action": "promote"})
    assert unknown_action.status_code == 400
    assert fields(unknown_action) == ["action"]
    nested = await client.post(
        ACTIONS, json={"action": "signal", "signal_id": "replicas", "value": {"n": 3}}
    )
    assert nested.status_code == 400
    assert fields(nested)[0].startswith("value")
    no_gate = await client.post(ACTIONS, json={"action": "approve", "signal_id": "nope"})
    assert no_gate.status_code == 404
    assert fields(no_gate) == ["signal_id"]
    assert admin.requests_to("SetSignal") == []


async def test_a_token_no_entry_names_is_403_and_recorded(
    client: httpx.AsyncClient, admin: FlyteAdminServer
) -> None:
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    refused = await client.post(
        ACTIONS, json={"action": "approve", "signal_id": "approve-deploy"}, headers=other
    )
    assert refused.status_code == 403
    assert fields(refused) == ["actor"]
    [record] = (await client.get(ACTIONS)).json()["items"]
    assert record["outcome"] == "refused"
    assert record["actor"] == "api-token:" + hashlib.sha256(OTHER_TOKEN.encode()).hexdigest()[:16]
    anonymous = await client.post(
        ACTIONS, json={"action": "relaunch"}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


async def test_flyte_refusing_is_502_and_unreachable_is_503(
    client: httpx.AsyncClient, admin: FlyteAdminServer
) -> None:
    import grpc

    admin.fail(grpc.StatusCode.INTERNAL, details="database on fire", method="RelaunchExecution")
    refused = await client.post(ACTIONS, json={"action": "relaunch"})
    assert refused.status_code == 503  # INTERNAL may pass: try later
    admin.fail(grpc.StatusCode.PERMISSION_DENIED, details="no", method="RelaunchExecution")
    denied = await client.post(ACTIONS, json={"action": "relaunch"})
    assert denied.status_code == 502
    assert denied.json()["error"] == "Flyte refused it: PERMISSION_DENIED: no"
    admin.stop()
    down = await client.post(ACTIONS, json={"action": "approve", "signal_id": "approve-deploy"})
    assert down.status_code == 503
    assert "Retry-After" in down.headers
    outcomes = [a["outcome"] for a in (await client.get(ACTIONS)).json()["items"]]
    assert outcomes == ["failed", "failed", "failed"]  # and nothing done


def test_the_document_describes_the_actions() -> None:
    paths = document()["paths"]
    operation = paths["/api/v1/executions/{project}/{domain}/{name}/actions"]
    assert set(operation) == {"post", "get"}
    assert {"201", "200", "403", "502", "503"} <= set(operation["post"]["responses"])


# -- the CLI ------------------------------------------------------------------------------


def test_cli_acts_on_the_database_as_the_local_user(
    admin: FlyteAdminServer, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        f"""
[flyteadmin]
endpoint = "{admin.endpoint}"
insecure = true

[[actions.allow]]
actors = ["cli:{getpass.getuser()}"]
""",
    )
    runner = CliRunner()
    run = str(RUN)
    done = runner.invoke(
        main,
        ["act", "signal", run, "--signal-id", "replicas", "--value", "3", "--config", str(config)],
    )
    assert done.exit_code == 0, done.output
    assert f"{run} signal: done: signalled by cli:{getpass.getuser()} at " in done.output
    assert admin.requests_to("SetSignal")[0].request == gates.set_request("replicas", RUN)
    wrong = runner.invoke(
        main,
        [
            "act",
            "signal",
            run,
            "--signal-id",
            "release-note",
            "--value",
            "3",
            "--config",
            str(config),
        ],
    )
    assert wrong.exit_code == 1
    assert "flytenotify: refused" in wrong.output
    assert "value: the gate expects a string (str), got 3" in wrong.output
    text = runner.invoke(
        main,
        ["act", "signal", run, "--signal-id", "release-note", "--value", "ship it",
         "--config", str(config), "--json"],
    )  # fmt: skip
    assert text.exit_code == 0, text.output
    assert json.loads(text.output)["value"] == "ship it"
    shown = runner.invoke(main, ["executions", "show", run, "--config", str(config), "--json"])
    assert (
        shown.exit_code == 1
    )  # FlyteAdmin's execution is not in the ledger: acted on all the same
    assert "no execution" in shown.output


def test_cli_with_url_acts_as_the_token(admin: FlyteAdminServer, tmp_path: Path) -> None:
    server = ServerConfig(api_tokens=[SecretStr(TOKEN)])
    with LiveServer(tmp_path / "ledger.db", settings_for(admin, tmp_path), server) as live:
        result = CliRunner().invoke(
            main,
            ["act", "approve", str(RUN), "--signal-id", "approve-deploy",
             "--url", live.url, "--token", TOKEN, "--json"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.output)
    assert (answer["actor"], answer["outcome"]) == (TOKEN_ID, "done")
