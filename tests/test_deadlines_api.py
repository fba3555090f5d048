"""Deadlines as a resource: the HTTP API (a real Notifier, the real Starlette app through
httpx's ASGI transport), the CLI (click's runner on a SQLite file) and the configuration
file (``check-config``). Every mistake is a 400 naming the field, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.domain import DeadlineId
from flytenotify.schedules import CRON_PATTERN, DURATION_PATTERN
from flytenotify.web.api import create_app, document

URL = "/api/v1/deadlines/proj/prod/etl-sla"
GOOD = {
    "launch_plan": "nightly_etl",
    "max_queued": "10m",
    "max_running": "2h",
    "schedule": "0 2 * * *",
    "start_within": "15m",
    "slower_than": {"percentile": 95, "of_last": 20, "min_runs": 5},
    "recipients": ["#data-alerts", "pagerduty:data-oncall", "oncall@example.com"],
    "resolve": True,
}
CONFIGURED = {
    "from-file": {
        "project": "proj",
        "domain": "prod",
        "max_running": "1h30m",
        "recipients": ["ops@example.com"],
    }
}


@pytest.fixture
async def notifier(database_url: str) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url), deadlines=CONFIGURED)
    async with Notifier(settings, dev_inbox=True) as running:
        yield running


@pytest.fixture
async def client(notifier: Notifier) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(notifier, ServerConfig(max_body_bytes=64 * 1024))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_put_get_list_and_delete(client: httpx.AsyncClient, notifier: Notifier) -> None:
    put = await client.put(URL, json=GOOD)
    assert put.status_code == 200, put.text
    stored = put.json()
    assert {k: stored[k] for k in GOOD} == GOOD
    assert (stored["project"], stored["domain"], stored["name"]) == ("proj", "prod", "etl-sla")
    assert (stored["source"], stored["task"], stored["trigger"]) == ("api", "", "")
    # The dev inbox stands in for the channels not configured: nothing to warn of.
    assert stored["warnings"] == []
    shown = await client.get(URL)
    assert shown.status_code == 200
    assert "warnings" not in shown.json()
    assert shown.json() == {k: v for k, v in stored.items() if k != "warnings"}
    listed = (await client.get("/api/v1/deadlines")).json()["items"]
    assert [(d["name"], d["source"]) for d in listed] == [
        ("etl-sla", "api"),
        ("from-file", "config"),
    ]
    assert listed[1]["max_running"] == "1h30m"
    # A schedule's timer waits for its next fire time (02:00 UTC plus 15 minutes).
    (count, due) = (await notifier.deadline_timers(DeadlineId("proj", "prod", "etl-sla")))[
        "start_within"
    ]
    assert count == 1
    assert (int(due) - 15 * 60) % 86400 == 2 * 3600

    # Replaced whole: what the new body leaves out is gone.
    changed = await client.put(URL, json={"max_queued": "90s", "recipients": ["ops@example.com"]})
    assert changed.json()["max_queued"] == "1m30s"
    assert changed.json()["schedule"] is None
    assert await notifier.deadline_timers(DeadlineId("proj", "prod", "etl-sla")) == {}

    assert (await client.delete(URL)).status_code == 204
    missing = await client.get(URL)
    assert missing.status_code == 404
    assert missing.json()["problems"] == [
        {"field": "name", "message": "no deadline of this name in this scope"}
    ]
    assert (await client.delete(URL)).status_code == 404


async def test_the_configuration_files_deadlines_are_read_only_over_http(
    client: httpx.AsyncClient,
) -> None:
    url = "/api/v1/deadlines/proj/prod/from-file"
    assert (await client.get(url)).json()["source"] == "config"
    put = await client.put(url, json={"max_queued": "1m", "recipients": ["a@example.com"]})
    assert put.status_code == 409
    assert put.json()["problems"][0]["field"] == "name"
    assert (await client.delete(url)).status_code == 409


BAD_BODIES = [
    ({**GOOD, "max_queue": "10m"}, "max_queue", "unknown field"),
    ({**GOOD, "max_queued": "10 minutes"}, "max_queued", "must be a duration such as"),
    ({**GOOD, "max_running": "-2h"}, "max_running", "must be positive"),
    ({**GOOD, "max_running": "0s"}, "max_running", "must be positive"),
    ({**GOOD, "start_within": 900}, "start_within", "must be a duration string"),
    ({**GOOD, "schedule": "0 25 * * *"}, "schedule", "must be a cron expression"),
    ({**GOOD, "schedule": "0 0 30 2 *"}, "schedule", "never fires"),
    ({**GOOD, "slower_than": {"percentile": 0}}, "slower_than.percentile", "greater than 0"),
    ({**GOOD, "slower_than": {"percentile": 100.5}}, "slower_than.percentile", "100"),
    (
        {**GOOD, "slower_than": {"percentile": 90, "of_last": 3, "min_runs": 5}},
        "slower_than.min_runs",
        "is more than of_last (3)",
    ),
    ({**GOOD, "slower_than": {"percentile": 90, "of_last": -1}}, "slower_than.of_last", "1"),
    ({**GOOD, "recipients": []}, "recipients", "must not be empty"),
    ({**GOOD, "recipients": ["ops@@example.com"]}, "recipients[0]", "is no recipient"),
    ({**GOOD, "recipients": ["#ok", "a\nb@x.io"]}, "recipients[1]", "control character"),
    ({**GOOD, "task": "wf.main"}, "task", "give one of launch_plan, task and trigger"),
    ({"schedule": "* * * * *", "recipients": ["#a"]}, "start_within", "is required with schedule"),
    ({"start_within": "5m", "recipients": ["#a"]}, "schedule", "is required with start_within"),
    ({"recipients": ["#a"]}, "max_queued", "needs at least one of"),
    ({**GOOD, "resolve": "yes"}, "resolve", "must be true or false"),
    ({**GOOD, "launch_plan": "a/b"}, "launch_plan", "must not contain '/'"),
    ([GOOD], "body", "object"),
]


@pytest.mark.parametrize(("body", "field", "said"), BAD_BODIES)
async def test_a_bad_body_is_a_400_naming_the_field(
    client: httpx.AsyncClient, body: Any, field: str, said: str
) -> None:
    response = await client.put(URL, json=body)
    assert response.status_code == 400, response.text
    problems = response.json()["problems"]
    assert any(p["field"] == field and said in p["message"] for p in problems), problems
    assert (await client.get(URL)).status_code == 404  # nothing was stored


async def test_bad_paths_and_content_types_are_4xx(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/deadlines/proj/prod/%00")).status_code == 400
    wrong = await client.put(URL, content=b"max_queued=1m", headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415
    assert (await client.put(URL, content=b"{not json")).status_code == 400


def test_the_openapi_document_describes_deadlines() -> None:
    doc = document()
    assert set(doc["paths"]["/api/v1/deadlines/{project}/{domain}/{name}"]) == {
        "get",
        "put",
        "delete",
    }
    body = doc["components"]["schemas"]["DeadlineBody"]
    assert body["additionalProperties"] is False
    max_queued = body["properties"]["max_queued"]["anyOf"][0]
    assert max_queued == {"type": "string", "pattern": DURATION_PATTERN}
    assert body["properties"]["schedule"]["anyOf"][0]["pattern"] == CRON_PATTERN
    assert doc["components"]["schemas"]["Deadline"]["properties"]["max_queued"]


# -- the CLI ------------------------------------------------------------------------------


def cli(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--db", str(tmp_path / "x.db")])


SCOPE = ["--project", "proj", "--domain", "prod"]


def test_the_cli_sets_lists_shows_and_deletes(tmp_path: Path) -> None:
    made = cli(
        tmp_path,
        "deadlines", "set", "etl-sla", *SCOPE, "--launch-plan", "nightly_etl",
        "--max-running", "2h", "--percentile", "95", "--of-last", "20",
        "--recipient", "#data-alerts", "--recipient", "oncall@example.com", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    stored = json.loads(made.output)
    assert stored["slower_than"] == {"percentile": 95.0, "of_last": 20, "min_runs": 5}
    assert stored["max_running"] == "2h"
    table = cli(tmp_path, "deadlines", "list").output
    assert "etl-sla" in table
    assert "nightly_etl" in table
    listed = json.loads(cli(tmp_path, "deadlines", "list", "--json").output)
    assert [(d["name"], d["launch_plan"], d["source"]) for d in listed] == [
        ("etl-sla", "nightly_etl", "api")
    ]
    shown = json.loads(cli(tmp_path, "deadlines", "show", "etl-sla", *SCOPE, "--json").output)
    assert (shown["name"], shown["alerts"]) == ("etl-sla", [])
    assert cli(tmp_path, "deadlines", "delete", "etl-sla", *SCOPE).exit_code == 0
    gone = cli(tmp_path, "deadlines", "delete", "etl-sla", *SCOPE)
    assert gone.exit_code == 1
    assert "no deadline proj/prod/etl-sla" in gone.output


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--max-queued", "ten minutes"], "--max-queued (max_queued): must be a duration"),
        (["--max-queued", "1m", "--percentile", "120"], "--percentile (slower_than.percentile)"),
        (
            ["--max-queued", "1m", "--percentile", "50", "--of-last", "2", "--min-runs", "3"],
            "--min-runs (slower_than.min_runs): is more than of_last (2)",
        ),
        (["--schedule", "61 * * * *", "--start-within", "1m"], "--schedule (schedule)"),
        (["--start-within", "5m"], "--schedule (schedule): is required with start_within"),
    ],
)
def test_the_cli_names_the_option_to_fix(tmp_path: Path, options: list[str], said: str) -> None:
    result = cli(tmp_path, "deadlines", "set", "x", *SCOPE, *options, "--recipient", "#a")
    assert result.exit_code == 1, result.output
    assert said in result.output
    assert "no deadlines" in cli(tmp_path, "deadlines", "list").output


def test_the_cli_cannot_change_the_configuration_files_deadline(tmp_path: Path) -> None:
    config = tmp_path / "flytenotify.toml"
    config.write_text(
        '[deadlines.from-file]\nproject = "proj"\ndomain = "prod"\nmax_queued = "5m"\n'
        'recipients = ["ops@example.com"]\n'
    )
    result = cli(
        tmp_path, "deadlines", "set", "from-file", *SCOPE, "--max-queued", "1m",
        "--recipient", "#a", "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "[deadlines.from-file] in the configuration file defines this deadline" in result.output
    listed = json.loads(
        cli(tmp_path, "deadlines", "list", "--json", "--config", str(config)).output
    )
    assert [(d["name"], d["source"], d["max_queued"]) for d in listed] == [
        ("from-file", "config", "5m")
    ]


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ('max_queued = "5 min"\nrecipients = ["a@b.io"]', "deadlines.bad.max_queued"),
        ('max_queued = "5m"\nrecipients = ["a@@b.io"]', "deadlines.bad.recipients.0"),
        (
            'max_queued = "5m"\nrecipients = ["a@b.io"]\n'
            "slower_than = { percentile = 50, of_last = 2, min_runs = 4 }",
            "deadlines.bad.slower_than.min_runs",
        ),
        ('max_queued = "5m"\nrecipients = ["a@b.io"]\nwhen = "never"', "deadlines.bad.when"),
    ],
)
def test_the_configuration_file_names_the_key(tmp_path: Path, section: str, said: str) -> None:
    config = tmp_path / "flytenotify.toml"
    config.write_text(f'[deadlines.bad]\nproject = "proj"\ndomain = "prod"\n{section}\n')
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code != 0, result.output
    assert said in result.output


def test_check_config_names_a_deadlines_recipient_no_channel_reaches(tmp_path: Path) -> None:
    config = tmp_path / "flytenotify.toml"
    config.write_text(
        f'[database]\nurl = "{tmp_path / "x.db"}"\n'
        '[webhooks.ops]\nurl = "https://ops.example.com/hook"\n'
        '[deadlines.late]\nproject = "proj"\ndomain = "prod"\nmax_queued = "5m"\n'
        'recipients = ["webhook:nope", "webhook:ops"]\n'
    )
    assert cli(tmp_path, "deadlines", "list", "--config", str(config)).exit_code == 0  # a ledger
    result = CliRunner().invoke(main, ["check-config", str(config)])
    assert result.exit_code == 1, result.output
    assert "deadline proj/prod/late: recipients[0]" in result.output
    assert "recipients[1]" not in result.output
