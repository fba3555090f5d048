"""Flyte 2 through ``flytenotify serve``: configuration only, kill -9, replicas, the API, the CLI.

``serve`` runs as a real process with a ``[flyte2]`` section pointing at the
loopback control plane (tests/servers/flyte2.py, run specs made by the real
flyte SDK); messages end in the loopback SMTP server.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flyte.notify
import httpx
import pytest
from click.testing import CliRunner
from flyte.models import ActionPhase

from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import (
    DatabaseConfig,
    Flyte2Config,
    NamedRuleConfig,
    ServerConfig,
    Settings,
    WebhookTarget,
)
from flytenotify.web.api import create_app
from tests.helpers import assert_mailed_once_but_in_flight
from tests.servers.flyte2 import FAILED, Flyte2Plane, RunKey
from tests.servers.smtp import SmtpServer
from tests.test_serve import start_serve, stop

PROJECT, DOMAIN = "proj", "development"
WAIT = 60.0
EMAIL = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["ana@example.com"])


@pytest.fixture
def plane() -> Iterator[Flyte2Plane]:
    with Flyte2Plane() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def config_file(tmp_path: Path, plane: Flyte2Plane, smtp: SmtpServer) -> Path:
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsender = "flyte@example.com"\n'
        # A send in flight at a kill is claimable again this soon after.
        "[retry]\nlease = 3.0\n"
        # One message per run is what these tests count: grouping off.
        "[grouping]\nby = []\n"
        f'[flyte2]\nendpoint = "{plane.endpoint}"\nprojects = ["{PROJECT}/{DOMAIN}"]\n'
    )
    return path


async def wait_until(check: Any, what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def ready(base: str) -> bool:
    """/readyz says the Flyte 2 watch is connected."""
    try:
        answer = httpx.get(f"{base}/readyz", timeout=2).json()
    except httpx.HTTPError:
        return False
    source = answer.get("intake", {}).get(f"flyte2:{PROJECT}/{DOMAIN}", {})
    return bool(source.get("state") == "connected")


async def serve_ready(
    tmp_path: Path, config: Path, *more: str
) -> tuple[subprocess.Popen[str], str]:
    process, base = await asyncio.to_thread(start_serve, tmp_path, "--config", str(config), *more)
    await wait_until(lambda: ready(base), "the Flyte 2 watch to be ready")
    return process, base


async def finish(plane: Flyte2Plane, runs: list[RunKey]) -> None:
    for run in runs:
        await asyncio.to_thread(plane.finish, run, FAILED, error=f"{run.name} broke")


def subjects(smtp: SmtpServer) -> Counter[str]:
    return Counter(str(m.message["Subject"]) for m in smtp.messages)


async def test_serve_survives_kill_9_while_runs_end(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    total = 24
    runs = [
        await asyncio.to_thread(plane.start_run, PROJECT, DOMAIN, f"k9-{i}", notifications=EMAIL)
        for i in range(total)
    ]
    config = config_file(tmp_path, plane, smtp)
    first, _ = await serve_ready(tmp_path, config)
    try:
        await finish(plane, runs[:8])
        await wait_until(lambda: len(smtp.messages) >= 3, "the first runs to be mailed")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=WAIT)
        mailed_at_kill = len(smtp.messages)
    finally:
        stop(first)
    await finish(plane, runs[8:16])  # nobody watching
    second, _ = await serve_ready(tmp_path, config)
    try:
        await finish(plane, runs[16:])
        expected = {f"Run k9-{i} failed" for i in range(total)}
        await wait_until(lambda: set(subjects(smtp)) == expected, f"all {total} runs mailed")
        await asyncio.sleep(2.0)  # reconciliations replay them: anything sent twice is here now
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, timeout=WAIT)
    finally:
        stop(second)
    assert_mailed_once_but_in_flight(
        smtp.messages, total, f"killed with {mailed_at_kill}/{total} mailed"
    )


async def test_two_replicas_on_postgresql_send_each_run_once(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path, postgres_url: str
) -> None:
    total = 16
    runs = [
        await asyncio.to_thread(plane.start_run, PROJECT, DOMAIN, f"pg-{i}", notifications=EMAIL)
        for i in range(total)
    ]
    processes = []
    try:
        for replica in ("a", "b"):
            home = tmp_path / replica
            home.mkdir()
            config = config_file(home, plane, smtp)
            # The last --db wins over start_serve's own SQLite file: one ledger for both.
            processes.append((await serve_ready(home, config, "--db", postgres_url))[0])
        await plane.wait_for_watchers(2)
        await finish(plane, runs)
        expected = {f"Run pg-{i} failed" for i in range(total)}
        await wait_until(lambda: set(subjects(smtp)) == expected, f"all {total} runs mailed")
        await asyncio.sleep(2.0)
    finally:
        for process in processes:
            stop(process)
    counts = subjects(smtp)
    assert all(count == 1 for count in counts.values()), counts
    assert len(counts) == total


def test_check_config_connect_reaches_the_control_plane(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    config = config_file(tmp_path, plane, smtp)
    result = CliRunner().invoke(main, ["check-config", str(config), "--connect"])
    assert result.exit_code == 0, result.output
    assert f"flyte2:{PROJECT}/{DOMAIN}" in result.output
    assert f"ListRuns of {PROJECT}/{DOMAIN} answers" in result.output


def test_check_config_connect_says_when_the_control_plane_refuses_us(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    with Flyte2Plane(token="the-right-one") as plane:
        config = config_file(tmp_path, plane, smtp)
        token = tmp_path / "token"
        token.write_text("the-wrong-one\n")
        config.write_text(config.read_text() + f'token_file = "{token}"\n')
        result = CliRunner().invoke(main, ["check-config", str(config), "--connect"])
    assert result.exit_code == 1, result.output
    assert "UNAUTHENTICATED" in result.output
    assert "credentials" in result.output


# -- named rules over the API --------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'x.db'}"),
        flyte2=Flyte2Config(
            endpoint="http://127.0.0.1:9",
            rules={"oncall": NamedRuleConfig(phases=["FAILED"], recipients=["oncall@example.com"])},
        ),
        # The webhook channel is configured: a webhook it does not know is a mistake,
        # not something the dev inbox stands in for.
        webhooks={"ops": WebhookTarget(url="https://ops.example.com/hook")},
    )
    async with Notifier(settings, dev_inbox=True) as notifier:
        app = create_app(notifier, ServerConfig())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_named_rules_are_created_listed_and_deleted_over_the_api(api: Any) -> None:
    body = {"phases": ["failed", "PAUSED"], "recipients": ["#ops", "webhook:nope"], "project": "ml"}
    put = await api.put("/api/v1/flyte2/rules/team", json=body)
    assert put.status_code == 200, put.text
    answer = put.json()
    assert answer["phases"] == ["FAILED", "PAUSED"]
    assert answer["source"] == "api"
    # Stored, but what cannot be reached is said now, not at 3 a.m.
    assert [w["field"] for w in answer["warnings"]] == ["recipients[1]"]
    listed = (await api.get("/api/v1/flyte2/rules")).json()["items"]
    assert {(item["name"], item["source"]) for item in listed} == {
        ("oncall", "config"),
        ("team", "api"),
    }
    one = await api.get("/api/v1/flyte2/rules/team", params={"project": "ml"})
    assert one.json()["recipients"] == ["#ops", "webhook:nope"]
    assert (await api.get("/api/v1/flyte2/rules/team")).status_code == 404  # another scope
    assert (
        await api.delete("/api/v1/flyte2/rules/team", params={"project": "ml"})
    ).status_code == 204
    assert (await api.get("/api/v1/flyte2/rules/team", params={"project": "ml"})).status_code == 404


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"phases": ["RUNNING"], "recipients": ["a@b.co"]}, ["phases[0]"]),
        ({"phases": ["FAILED"], "recipients": []}, ["recipients"]),
        ({"phases": ["FAILED"], "recipients": ["a\r\nb@c.co"]}, ["recipients[0]"]),
        ({"phases": ["FAILED"], "recipients": ["a@b.co"], "colour": "red"}, ["colour"]),
        ({"recipients": ["a@b.co"]}, ["phases"]),
        ({"phases": ["FAILED"], "recipients": ["a@b.co"], "project": 3}, ["project"]),
        ([], ["body"]),
    ],
)
async def test_a_bad_named_rule_is_a_400_naming_the_field(
    api: Any, body: Any, fields: list[str]
) -> None:
    answer = await api.put("/api/v1/flyte2/rules/team", json=body)
    assert answer.status_code == 400, answer.text
    assert [p["field"] for p in answer.json()["problems"]] == fields


async def test_a_named_delivery_takes_no_phases_and_the_files_entries_are_read_only(
    api: Any,
) -> None:
    with_phases = {"phases": ["FAILED"], "recipients": ["#ops"]}
    assert (await api.put("/api/v1/flyte2/deliveries/chat", json=with_phases)).status_code == 400
    assert (
        await api.put("/api/v1/flyte2/deliveries/chat", json={"recipients": ["#ops"]})
    ).status_code == 200
    rule = {"phases": ["FAILED"], "recipients": ["#ops"]}
    assert (await api.put("/api/v1/flyte2/rules/oncall", json=rule)).status_code == 409
    assert (await api.delete("/api/v1/flyte2/rules/oncall")).status_code == 409


def test_the_cli_sets_lists_and_deletes_named_rules(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "x.db")]
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            *("flyte2", "rules", "set", "team", "--recipient", "ana@example.com"),
            *("--phase", "failed", "--project", "ml", *db),
        ],
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["flyte2", "rules", "list", "--json", *db])
    assert listed.exit_code == 0, listed.output
    assert '"team"' in listed.output
    assert '"ana@example.com"' in listed.output
    gone = runner.invoke(main, ["flyte2", "rules", "delete", "team", "--project", "ml", *db])
    assert gone.exit_code == 0, gone.output
    again = runner.invoke(main, ["flyte2", "rules", "delete", "team", "--project", "ml", *db])
    assert again.exit_code == 1


def test_check_config_names_a_named_rule_no_channel_can_reach(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    config = config_file(tmp_path, plane, smtp)
    config.write_text(
        config.read_text()
        + '[flyte2.rules.oncall]\nphases = ["FAILED"]\n'
        + 'recipients = ["ops@example.com", "pagerduty:db"]\n'
        + '[pagerduty.routing_keys]\nweb = "0123456789abcdef0123456789abcdef"\n'
    )
    result = CliRunner().invoke(main, ["check-config", str(config), "--connect"])
    assert result.exit_code == 1, result.output
    assert "flyte2 named rule oncall (*/*): recipients[1]" in result.output
