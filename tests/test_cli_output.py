"""What the CLI prints, at 80 columns, read as a person reads it.

A real ledger filled through the engine (dev-inbox mode, as the README's tour
runs), the real CLI through click's runner with ``COLUMNS=80``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flytenotify import Email, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import SyncNotifier
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings
from flytenotify.domain import EntityId, ExecutionId

PLAN = EntityId("flytesnacks", "development", "nightly_etl", "v1")
# Long enough that an 80-column table has to wrap something.
NAME = "a-rather-long-execution-name-{}"
CHATS = ["webhook:ops", "teams:ops", "mattermost:town"]  # an Email's recipients, any channel


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three failed executions of the tour's launch plan, delivered into the dev inbox."""
    db = tmp_path_factory.mktemp("cli") / "ledger.db"
    # One message per delivery (no alert-storm digests): each is in the inbox at once.
    settings = Settings(database=DatabaseConfig(url=str(db)), grouping=GroupingConfig(by=[]))
    with SyncNotifier(settings, dev_inbox=True) as notifier:
        notifier.register_launch_plan(
            PLAN,
            [
                Email([P.FAILED], ["dev-ops@example.com"]),
                Slack([P.FAILED], ["#data-alerts"]),
                PagerDuty([P.FAILED], ["data-oncall"]),
                Email([P.FAILED], CHATS),
            ],
        )
        for i in range(3):
            execution = ExecutionId(PLAN.project, PLAN.domain, NAME.format(i))
            notifier.create_execution(execution, PLAN)
            notifier.report_event(
                {
                    "executionId": {
                        "project": PLAN.project,
                        "domain": PLAN.domain,
                        "name": NAME.format(i),
                    },
                    "phase": "FAILED",
                    "error": {
                        "code": "USER:ValueError",
                        "message": "input file is empty",
                        "kind": "USER",
                    },
                }
            )
        notifier.run_until_idle()
    return db


def cli(db: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--db", str(db)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    if "--json" not in args and "inbox" not in args:  # bodies are the channels' own lines
        assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    return result


def test_deliveries_list_fits_80_columns_keeps_the_status_whole_and_lists_newest_first(
    ledger: Path,
) -> None:
    everything = json.loads(cli(ledger, "deliveries", "list", "--json").output)
    ids = [item["id"] for item in everything]
    assert len(ids) == 18
    assert ids == sorted(ids, reverse=True)

    table = cli(ledger, "deliveries", "list", "--limit", "3").output
    latest = ["18", "17", "16"]
    rows = [
        line.split() for line in table.splitlines() if line.split()[:1] in [[i] for i in latest]
    ]
    assert [row[0] for row in rows] == latest  # the latest, newest first
    for row in rows:
        assert "delivered" in row  # the status column, whole
    assert "…" not in table  # nothing cut off: long values wrap


def test_the_inbox_shows_each_message_as_its_channel_would_send_it(ledger: Path) -> None:
    items = json.loads(cli(ledger, "inbox", "--json").output)
    shown = cli(ledger, "inbox").output
    assert {(i["kind"], i["channel"]) for i in items} >= {
        ("pager_duty", "pagerduty"),  # the notification as declared, the channel's form
        ("email", "webhook"),
    }
    for item in items:
        heading = f"#{item['id']} {item['channel']} to {item['recipient']}"
        assert heading in shown
        assert f"Subject: {item['subject']}" in shown
        for line in item["body"].splitlines():
            assert line.strip() in shown  # every line of every body
    assert "pager_duty" not in shown


def test_an_error_code_that_starts_with_its_kind_is_not_said_twice(ledger: Path) -> None:
    items = json.loads(cli(ledger, "inbox", "--json").output)
    body = {i["channel"]: i["body"] for i in items}
    assert "*Error* (USER:ValueError)" in body["slack"]
    assert '"text": "Error (USER:ValueError)"' in body["teams"]
    assert "**Error** (USER:ValueError)" in body["mattermost"]
    assert "USER USER:" not in cli(ledger, "inbox").output


def test_deliveries_show_names_the_notification_as_declared_and_the_channel(ledger: Path) -> None:
    items = json.loads(cli(ledger, "deliveries", "list", "--json").output)
    webhook = next(i for i in items if i["recipient"] == "webhook:ops")
    shown = cli(ledger, "deliveries", "show", str(webhook["id"])).output.splitlines()
    assert "notification: #3 (Email)" in shown
    assert f"channel: {webhook['channel']}" in shown
    assert "kind: email" not in shown


def test_event_says_how_many_deliveries_in_words(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    notifications = tmp_path / "n.json"
    notifications.write_text(
        json.dumps([{"phases": ["FAILED"], "email": {"recipientsEmail": ["a@x.io", "b@x.io"]}}])
    )
    plan = ["--project", "p", "--domain", "d", "--name", "lp"]
    registered = cli(db, "register", str(notifications), *plan, "--version", "v1").output
    assert registered == "registered p/d/lp@v1: 1 notification\n"
    event = ["event", "--project", "p", "--domain", "d", "--phase", "FAILED"]
    event += ["--launch-plan", "p/d/lp"]
    assert cli(db, *event, "--name", "e1").output == "p/d/e1 FAILED: enqueued 2 deliveries: 1, 2\n"
    assert cli(db, *event, "--name", "e1").output == "p/d/e1 FAILED: duplicate\n"
    notifications.write_text(
        json.dumps([{"phases": ["FAILED"], "email": {"recipientsEmail": ["a@x.io"]}}])
    )
    cli(db, "register", str(notifications), *plan, "--version", "v2")
    assert cli(db, *event, "--name", "e2").output == "p/d/e2 FAILED: enqueued 1 delivery: 3\n"
