"""Silences through every face: the HTTP API, the CLI, the web console, and two
replicas sharing one PostgreSQL ledger.

Real Notifiers on real ledgers; the API and console through the real Starlette
app (httpx's ASGI transport), the replicas as two services on 127.0.0.1 that
send to a real SMTP server.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from flytenotify import Email, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, GroupingConfig, ServerConfig, Settings
from flytenotify.domain import DeliveryStatus, EntityId, ExecutionId
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.api import create_app, document
from tests.helpers import event_json
from tests.live_server import LiveServer
from tests.servers.smtp import SmtpServer
from tests.test_silences import Clock

PLAN = EntityId("proj", "prod", "nightly", "v1")
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
LATER = (T0 + timedelta(hours=2)).isoformat()
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
HOSTILE = "<script>alert(1)</script> & <b>bold</b>"


def _body(**given: Any) -> dict[str, Any]:
    return {"ends_at": LATER, "comment": "backfill tonight", "author": "alice", **given}


def _every(cron: str, duration: object, timezone: str) -> dict[str, Any]:
    windows = {"cron": cron, "duration": duration, "timezone": timezone}
    return _body(project="proj", recurring=windows)


@pytest.fixture
async def notifier(database_url: str) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url), grouping=GroupingConfig(by=[]))
    async with Notifier(settings, dev_inbox=True, clock=Clock(T0)) as n:
        await n.register_launch_plan(
            PLAN, [Email([P.FAILED], ["ops@example.com"]), Slack([P.FAILED], ["#data-alerts"])]
        )
        yield n


@pytest.fixture
async def client(notifier: Notifier) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(notifier, ServerConfig(max_body_bytes=64 * 1024))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _fail(notifier: Notifier, name: str) -> list[int]:
    await notifier.create_execution(ExecutionId("proj", "prod", name), PLAN)
    result = await notifier.report_event(event_json(name, "FAILED"))
    return list(result.delivery_ids)


# -- the HTTP API ----------------------------------------------------------------------------


async def test_a_silence_is_created_listed_shown_and_ended_over_the_api(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    waiting = await _fail(notifier, "queued")  # enqueued, not sent yet
    created = await client.post(
        "/api/v1/silences", json=_body(recipient="#data-alerts", phases=["failed"])
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["state"] == "active"
    assert silence["held"] == 1  # the queued Slack message, held now
    assert silence["phases"] == ["FAILED"]
    assert (silence["recipient"], silence["project"], silence["recurring"]) == (
        "#data-alerts",
        None,
        None,
    )
    assert silence["starts_at"] == T0.isoformat()  # now, by the notifier's clock
    assert "released" not in silence

    later = await _fail(notifier, "later")
    items = (await client.get("/api/v1/deliveries", params={"silence": silence["id"]})).json()
    held = {i["id"]: (i["status"], i["silence_id"]) for i in items["items"]}
    assert set(held.values()) == {("silenced", silence["id"])}
    assert set(held) < set(waiting + later)
    assert len(held) == 2
    status = await client.get("/api/v1/deliveries", params={"status": "silenced"})
    assert {i["id"] for i in status.json()["items"]} == set(held)

    shown = (await client.get(f"/api/v1/silences/{silence['id']}")).json()
    assert shown == {k: v for k, v in silence.items() if k not in ("held", "warnings")}
    listed = (await client.get("/api/v1/silences", params={"active": "true"})).json()
    assert ([s["id"] for s in listed["items"]], listed["next"]) == ([silence["id"]], None)

    ended = await client.post(
        f"/api/v1/silences/{silence['id']}/end", json={"author": "bob", "release": True}
    )
    assert ended.status_code == 200, ended.text
    assert (ended.json()["state"], ended.json()["ended_by"], ended.json()["released"]) == (
        "ended",
        "bob",
        2,
    )
    again = await client.post(f"/api/v1/silences/{silence['id']}/end", json={"author": "bob"})
    assert again.status_code == 409
    assert "already" in again.json()["problems"][0]["message"]
    assert (await client.get("/api/v1/silences", params={"active": "true"})).json()["items"] == []
    await notifier.run_until_idle()
    statuses = {d.status for d in await notifier.deliveries(DeliveryFilter(silence=silence["id"]))}
    assert statuses == {DeliveryStatus.DELIVERED}


async def test_a_recurring_silence_and_a_trigger_over_the_api(client: httpx.AsyncClient) -> None:
    body = {
        "trigger": "nightly-schedule",
        "recurring": {"cron": "0 22 * * *", "duration": "8h", "timezone": "Europe/Paris"},
        "comment": "nightly maintenance",
        "author": "alice",
    }
    created = await client.post("/api/v1/silences", json=body)
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["recurring"] == {
        "cron": "0 22 * * *",
        "duration": 28800,
        "timezone": "Europe/Paris",
    }
    assert (silence["state"], silence["ends_at"]) == ("scheduled", None)  # noon, UTC
    assert silence["next_start"] == "2025-01-15T21:00:00+00:00"  # 22:00 in Paris
    inactive = (await client.get("/api/v1/silences", params={"active": "false"})).json()
    assert [s["id"] for s in inactive["items"]] == [silence["id"]]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (_body(), ["all"]),  # no matcher, and all not said
        (_body(all=True, project="proj"), ["all"]),
        (_body(project="proj", ends_at=T0.isoformat()), ["ends_at"]),
        (_body(project="proj", ends_at=(T0 - timedelta(hours=3)).isoformat()), ["ends_at"]),
        (_body(project="proj", ends_at="2025-01-15T14:00:00"), ["ends_at"]),  # no time zone
        (_body(project="proj", ends_at=1736950000), ["ends_at"]),  # not a string
        (_body(project="proj", ends_at="tomorrow"), ["ends_at"]),
        ({"project": "proj", "comment": "c", "author": "a"}, ["ends_at"]),  # one-off, no end
        (_body(project="proj", comment=""), ["comment"]),
        (_body(project="proj", author=" alice"), ["author"]),
        ({"project": "proj", "ends_at": LATER}, ["comment", "author"]),
        (_body(project=""), ["project"]),
        (_body(domain="a/b"), ["domain"]),
        (_body(phases=[]), ["phases"]),
        (_body(phases=["RUNNING"]), ["phases[0]"]),
        (_body(all="yes"), ["all"]),
        (_body(color="red", project="proj"), ["color"]),
        (_every("0 22 * *", 60, "UTC"), ["recurring.cron"]),
        (_every("@daily", "8 hours", "UTC"), ["recurring.duration"]),
        (_every("@daily", 10, "UTC"), ["recurring.duration"]),
        (_every("@daily", "1h", "Nowhere/City"), ["recurring.timezone"]),
        (_body(project="proj", recurring={"cron": "@daily", "duration": "1h"}),
         ["recurring.timezone"]),
    ],
)  # fmt: skip
async def test_a_bad_silence_is_a_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], fields: list[str]
) -> None:
    answer = await client.post("/api/v1/silences", json=body)
    assert answer.status_code == 400, answer.text
    assert [p["field"] for p in answer.json()["problems"]] == fields
    assert (await client.get("/api/v1/silences")).json()["items"] == []  # nothing stored


async def test_unknown_silences_and_bad_queries(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/silences/7", "/api/v1/silences/abc", "/api/v1/silences/0"):
        assert (await client.get(path)).status_code == 404, path
    end = await client.post("/api/v1/silences/7/end", json={"author": "bob"})
    assert end.status_code == 404
    no_author = await client.post("/api/v1/silences/7/end", json={"release": True})
    assert [p["field"] for p in no_author.json()["problems"]] == ["author"]
    for query, field in (({"active": "yes"}, "active"), ({"limit": "0"}, "limit")):
        answer = await client.get("/api/v1/silences", params=query)
        assert answer.status_code == 400
        assert [p["field"] for p in answer.json()["problems"]] == [field]
    bad = await client.get("/api/v1/deliveries", params={"silence": "x"})
    assert [p["field"] for p in bad.json()["problems"]] == ["silence"]


def test_the_openapi_document_describes_silences_and_the_silenced_status() -> None:
    doc = document()
    assert set(doc["paths"]["/api/v1/silences"]) == {"get", "post"}
    assert "post" in doc["paths"]["/api/v1/silences/{id}/end"]
    schemas = doc["components"]["schemas"]
    assert "silenced" in json.dumps(doc["paths"]["/api/v1/deliveries"]["get"]["parameters"])
    assert {"comment", "author"} <= set(schemas["SilenceBody"]["required"])
    assert "silence_id" in schemas["Delivery"]["properties"]


# -- the CLI --------------------------------------------------------------------------------


def test_the_cli_adds_lists_shows_and_ends_silences(tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(tmp_path / "cli.db")]
    file = tmp_path / "nightly.json"
    file.write_text(
        json.dumps(
            {"notifications": [{"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@x.io"]}}]}
        )
    )
    plan = ["--project", "proj", "--domain", "prod", "--name", "nightly", "--version", "v1"]
    assert runner.invoke(main, ["register", str(file), *plan, *db]).exit_code == 0

    bad = runner.invoke(
        main,
        [
            *["silences", "add", "--cron", "0 22 * *", "--duration", "8h", "--project", "proj"],
            *["--comment", "c", "--author", "a", *db],
        ],
    )
    assert bad.exit_code == 1
    assert "recurring.cron" in bad.output
    nothing = runner.invoke(
        main, ["silences", "add", "--for", "1h", "--comment", "c", "--author", "a", *db]
    )
    assert nothing.exit_code == 1
    assert "all:" in nothing.output

    added = runner.invoke(
        main,
        [
            *["silences", "add", "--launch-plan", "nightly", "--phase", "failed", "--for", "2h"],
            *["--comment", "backfill", "--author", "alice", "--json", *db],
        ],
    )
    assert added.exit_code == 0, added.output
    silence = json.loads(added.output)
    assert (silence["state"], silence["launch_plan"], silence["phases"]) == (
        "active",
        "nightly",
        ["FAILED"],
    )
    event = ["--project", "proj", "--domain", "prod", "--name", "run-1", "--phase", "FAILED"]
    plan_of = ["--launch-plan", "proj/prod/nightly"]
    reported = runner.invoke(main, ["event", *event, *plan_of, "--deliver", "--json", *db])
    assert reported.exit_code == 0, reported.output
    assert json.loads(reported.output)["outcome"] == "enqueued"
    assert json.loads(runner.invoke(main, ["inbox", "--json", *db]).output) == []  # held

    wide = {"COLUMNS": "200"}  # the table's cells on one line each
    listed = runner.invoke(main, ["silences", "list", "--active", *db], env=wide)
    assert listed.exit_code == 0, listed.output
    assert "launch_plan=nightly phases=FAILED" in listed.output
    assert "backfill" in listed.output
    shown = runner.invoke(main, ["silences", "show", str(silence["id"]), "--json", *db])
    (held,) = json.loads(shown.output)["deliveries"]
    assert (held["status"], held["recipient"]) == ("silenced", "ops@x.io")
    as_table = runner.invoke(main, ["silences", "show", str(silence["id"]), *db], env=wide)
    assert "silenced" in as_table.output
    only_held = runner.invoke(
        main, ["deliveries", "list", "--silence", str(silence["id"]), *db], env=wide
    )
    assert "ops@x.io" in only_held.output

    end = ["silences", "end", str(silence["id"]), "--author", "bob"]
    ended = runner.invoke(main, [*end, "--release", *db])
    assert ended.exit_code == 0, ended.output
    assert "1 delivery it held released" in ended.output
    again = runner.invoke(main, [*end, *db])
    assert again.exit_code == 1
    assert "already" in again.output
    unknown = runner.invoke(main, ["silences", "show", "99", *db])
    assert (unknown.exit_code, unknown.output.strip()) == (1, "no silence 99")
    released = runner.invoke(main, ["deliveries", "list", "--status", "pending", "--json", *db])
    assert [(d["id"], d["silence_id"]) for d in json.loads(released.output)] == [
        (held["id"], silence["id"])
    ]


# -- the web console --------------------------------------------------------------------------


def _csrf(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


async def test_the_console_creates_shows_and_ends_a_silence(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    page = await client.get("/ui/silences")
    assert page.status_code == 200
    assert "No silences." in page.text
    form = {"csrf_token": _csrf(page), "comment": HOSTILE, "author": "alice", "lasting": "2h"}

    refused = await client.post("/ui/silences", data=form)
    assert refused.status_code == 400
    assert "must match something" in refused.text
    assert html.escape(HOSTILE) in refused.text  # what was typed is kept, as text
    assert "<script>alert(1)" not in refused.text
    forged = await client.post("/ui/silences", data={**form, "csrf_token": "0" * 32})
    assert forged.status_code == 403

    created = await client.post("/ui/silences", data={**form, "project": "proj"})
    assert created.status_code == 303, created.text
    target = created.headers["location"]
    assert re.fullmatch(r"/ui/silences/(\d+)\?held=0", target)
    (silence,), _ = await notifier.silences()
    assert (silence.project, silence.ends_at) == ("proj", T0 + timedelta(hours=2))

    held = await _fail(notifier, "e1")
    detail = await client.get(target)
    assert detail.status_code == 200
    assert "badge-active" in detail.text
    assert html.escape(HOSTILE) in detail.text
    assert "<b>bold" not in detail.text
    assert [int(i) for i in re.findall(r'<tr data-id="(\d+)"', detail.text)] == held[::-1]
    listing = await client.get("/ui/silences?active=true")
    assert f'<tr data-id="{silence.id}"' in listing.text
    deliveries = await client.get(f"/ui/deliveries?silence={silence.id}")
    assert f"silence #{silence.id}" in deliveries.text
    one = await client.get(f"/ui/deliveries/{held[0]}")
    assert f'href="/ui/silences/{silence.id}"' in one.text
    assert "Re-drive…" in one.text  # a silenced delivery can be sent alone

    end = {"csrf_token": _csrf(detail), "author": "bob", "release": "on"}
    ended = await client.post(f"/ui/silences/{silence.id}/end", data=end)
    assert ended.status_code == 303
    after = await client.get(ended.headers["location"])
    assert "2 deliveries it held released" in after.text
    assert "End silence" not in after.text  # ended: no form
    assert "badge-ended" in after.text
    statuses = {d.status for d in await notifier.deliveries(DeliveryFilter(silence=silence.id))}
    assert statuses == {DeliveryStatus.PENDING}
    twice = await client.post(f"/ui/silences/{silence.id}/end", data=end)
    assert twice.status_code == 409
    assert (await client.get("/ui/silences/99")).status_code == 404


# -- two replicas, one PostgreSQL ledger -------------------------------------------------------


def _until(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_silence_made_on_one_replica_holds_what_another_plans(postgres_url: str) -> None:
    with SmtpServer() as smtp:
        settings = Settings(
            database=DatabaseConfig(url=postgres_url),
            smtp=smtp.smtp_config(sender="flyte@example.com"),
            grouping=GroupingConfig(by=[]),
        )
        with (
            LiveServer(Path("unused.db"), settings) as one,
            LiveServer(Path("unused.db"), settings) as other,
            httpx.Client(base_url=one.url, timeout=10) as first,
            httpx.Client(base_url=other.url, timeout=10) as second,
        ):
            for name, to in (("nightly", "held@example.com"), ("hourly", "sent@example.com")):
                plan = {"version": "v1", "notifications": [Email([P.FAILED], [to]).to_dict()]}
                registered = first.put(f"/api/v1/launch-plans/proj/prod/{name}", json=plan)
                assert registered.status_code == 200, registered.text
            now = datetime.now(UTC)
            body = {
                "launch_plan": "nightly",
                "ends_at": (now + timedelta(hours=1)).isoformat(),
                "comment": "backfill",
                "author": "alice",
            }
            created = first.post("/api/v1/silences", json=body)
            assert created.status_code == 201, created.text
            silence_id = created.json()["id"]

            for run, plan_name in (("held-run", "nightly"), ("sent-run", "hourly")):
                execution = {"id": {"project": "proj", "domain": "prod", "name": run}}
                lp = {"project": "proj", "domain": "prod", "name": plan_name}
                made = second.post("/api/v1/executions", json={**execution, "launch_plan": lp})
                assert made.status_code == 201, made.text
                sent = second.post("/api/v1/events", json=event_json(run, "FAILED"))
                assert sent.status_code == 202, sent.text
            # The other run's message goes out: the dispatchers are at work ...
            _until(lambda: len(smtp.messages) == 1, "the unsilenced message")
            assert smtp.messages[0].rcpt_tos == ("sent@example.com",)
            # ... and the silenced one waits, as the second replica recorded it.
            (held,) = second.get("/api/v1/deliveries", params={"status": "silenced"}).json()[
                "items"
            ]
            assert (held["recipient"], held["silence_id"]) == ("held@example.com", silence_id)

            ended = second.post(
                f"/api/v1/silences/{silence_id}/end", json={"author": "bob", "release": True}
            )
            assert ended.json()["released"] == 1
            _until(lambda: len(smtp.messages) == 2, "the released message")
            assert smtp.messages[1].rcpt_tos == ("held@example.com",)
            # The SMTP server holds the message a moment before the sender
            # records it delivered: wait for the ledger, as a reader would.
            path = f"/api/v1/deliveries/{held['id']}"
            _until(lambda: first.get(path).json()["status"] == "delivered", "the ledger")
            shown = first.get(path).json()
            assert [a["outcome"] for a in shown["attempts"]] == ["released", "delivered"]
