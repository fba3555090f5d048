"""``flytenotify send-test``, ``register`` and ``event``: real servers on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flytenotify.cli import main
from tests.live_server import LiveServer
from tests.servers.smtp import SmtpServer

NOTIFICATIONS = {
    "notifications": [
        {"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@example.com"]}},
        {"phases": ["SUCCEEDED"], "slack": {"recipientsEmail": ["#data"]}},
    ]
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def _smtp_config(tmp_path: Path, server: SmtpServer) -> Path:
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        f'[smtp]\nhost = "{server.host}"\nport = {server.port}\ntimeout = 5\n'
        'sender = "flyte@example.com"\n'
        f'[database]\nurl = "{tmp_path / "unused.db"}"\n'
    )
    return path


def test_send_test_delivers_and_prints_the_reply(
    runner: CliRunner, smtp: SmtpServer, tmp_path: Path
) -> None:
    config = _smtp_config(tmp_path, smtp)
    result = runner.invoke(main, ["send-test", "email", "ops@example.com", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("delivered: 250")
    (received,) = smtp.messages
    assert received.rcpt_tos == ("ops@example.com",)
    assert received.message["Subject"] == "flytenotify test message"

    as_json = runner.invoke(
        main, ["send-test", "email", "ops@example.com", "--config", str(config), "--json"]
    )
    assert json.loads(as_json.output)["outcome"] == "delivered"


def test_send_test_refused_exits_1_with_the_providers_answer(
    runner: CliRunner, smtp: SmtpServer, tmp_path: Path
) -> None:
    smtp.script("RCPT", "550 5.1.1 no such user", address="nobody@example.com")
    config = _smtp_config(tmp_path, smtp)
    result = runner.invoke(
        main, ["send-test", "email", "nobody@example.com", "--config", str(config)]
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith("permanent: ")
    assert "550 5.1.1 no such user" in result.output


def test_send_test_unconfigured_channel_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text(f'[database]\nurl = "{tmp_path / "x.db"}"\n')
    result = runner.invoke(main, ["send-test", "slack", "#data", "--config", str(config)])
    assert result.exit_code == 2
    assert "not configured" in result.output


def test_register_and_event_on_the_database(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "direct.db")
    file = tmp_path / "nightly.json"
    file.write_text(json.dumps(NOTIFICATIONS))
    plan = ["--project", "proj", "--domain", "prod", "--name", "nightly"]
    registered = runner.invoke(main, ["register", str(file), *plan, "--version", "v1", "--db", db])
    assert registered.exit_code == 0, registered.output
    assert registered.output.strip() == "registered proj/prod/nightly@v1: 2 notifications"

    event = runner.invoke(
        main,
        [
            "event",
            *["--project", "proj", "--domain", "prod", "--name", "run-1"],
            *["--phase", "failed", "--error", "boom", "--launch-plan", "proj/prod/nightly"],
            *["--db", db, "--deliver", "--json"],
        ],
    )
    assert event.exit_code == 0, event.output
    answer = json.loads(event.output)
    assert answer["outcome"] == "enqueued"
    assert len(answer["delivery_ids"]) == 1
    inbox = runner.invoke(main, ["inbox", "--db", db, "--json"])
    (message,) = json.loads(inbox.output)
    assert message["recipient"] == "ops@example.com"
    assert "boom" in message["body"]

    again = runner.invoke(
        main,
        [
            "event",
            "--project",
            "proj",
            "--domain",
            "prod",
            "--name",
            "run-1",
            "--phase",
            "FAILED",
            "--db",
            db,
        ],
    )
    assert again.exit_code == 0
    assert again.output.strip() == "proj/prod/run-1 FAILED: duplicate"


def test_register_refuses_a_bad_file(runner: CliRunner, tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('[[notifications]]\nphases = ["RUNNING"]\n')
    result = runner.invoke(
        main,
        [
            "register",
            str(file),
            "--project",
            "p",
            "--domain",
            "d",
            "--name",
            "n",
            "--version",
            "v1",
            "--db",
            str(tmp_path / "x.db"),
            "--json",
        ],
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["ok"] is False


def test_register_and_event_through_a_running_service(runner: CliRunner, tmp_path: Path) -> None:
    file = tmp_path / "nightly.toml"
    file.write_text(
        '[[notifications]]\nphases = ["SUCCEEDED"]\n'
        'email = { recipientsEmail = ["a@example.com"] }\n'
    )
    with LiveServer(tmp_path / "served.db") as server:
        url = ["--url", server.url]
        registered = runner.invoke(
            main,
            [
                "register",
                str(file),
                "--project",
                "proj",
                "--domain",
                "prod",
                "--name",
                "nightly",
                "--version",
                "v2",
                *url,
                "--json",
            ],
        )
        assert registered.exit_code == 0, registered.output
        assert json.loads(registered.output)["id"]["version"] == "v2"
        event = runner.invoke(
            main,
            [
                "event",
                "--project",
                "proj",
                "--domain",
                "prod",
                "--name",
                "served-1",
                "--phase",
                "SUCCEEDED",
                "--launch-plan",
                "proj/prod/nightly",
                *url,
            ],
        )
        assert event.exit_code == 0, event.output
        assert "SUCCEEDED: enqueued 1 delivery: " in event.output
        bad = runner.invoke(
            main,
            [
                "event",
                "--project",
                "proj",
                "--domain",
                "prod",
                "--name",
                "x",
                "--phase",
                "FAILED",
                "--launch-plan",
                "proj/prod/unknown@v9",
                *url,
                "--json",
            ],
            env={"FLYTENOTIFY_CLIENT__TOKEN": "ignored-without-tokens"},
        )
        assert bad.exit_code == 0, bad.output  # unknown plan: recorded, nothing to send
        assert json.loads(bad.output)["outcome"] == "no_notifications"
    down = runner.invoke(
        main,
        [
            "event",
            "--project",
            "p",
            "--domain",
            "d",
            "--name",
            "n",
            "--phase",
            "FAILED",
            "--url",
            server.url,
        ],
    )
    assert down.exit_code == 1
    assert "cannot reach" in down.output


def test_check_config_finds_unroutable_recipients_and_unreachable_servers(
    runner: CliRunner, tmp_path: Path
) -> None:
    from tests.servers.smtp import free_port

    db = tmp_path / "ledger.db"
    config = tmp_path / "flytenotify.toml"
    config.write_text(
        f'[database]\nurl = "{db}"\n[server]\ndev_inbox = false\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {free_port()}\ntimeout = 2.0\n'
        '[pagerduty.routing_keys]\ndata-oncall = "0123456789abcdef0123456789abcdef"\n'
    )
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            [
                {
                    "phases": ["FAILED"],
                    "pagerDuty": {"recipientsEmail": ["data-oncall", "db-team"]},
                },
                {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#alerts"]}},
            ]
        )
    )
    plan_id = ["--project", "p", "--domain", "d", "--name", "lp", "--version", "1"]
    registered = runner.invoke(main, ["register", str(plan), "--config", str(config), *plan_id])
    assert registered.exit_code == 0, registered.output

    result = runner.invoke(main, ["check-config", str(config), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert problems == [
        "launch plan p/d/lp@1: notifications[0].pager_duty.recipients_email[1]: pager_duty"
        " recipient 'db-team' is not an email address and no pager_duty API configuration"
        " can reach it",
        "launch plan p/d/lp@1: notifications[1].slack.recipients_email[0]: slack recipient"
        " '#alerts' is not an email address and no slack API configuration can reach it",
    ]
    connected = runner.invoke(main, ["check-config", str(config), "--connect", "--json"])
    assert connected.exit_code == 1
    (smtp_problem,) = [p for p in json.loads(connected.stdout)["problems"] if p.startswith("email")]
    assert "cannot connect" in smtp_problem
    assert "refused" in smtp_problem.lower()


def test_check_config_says_what_it_consumes_and_where_it_looks_up(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "flytenotify.toml"
    config.write_text(
        f'[database]\nurl = "{tmp_path / "x.db"}"\n'
        '[intake.nats]\nservers = ["nats://user:s3cret@nats:4222"]\nsubject = "flyte-events"\n'
        '[flyteadmin]\nendpoint = "flyteadmin:81"\nclient_id = "flytepropeller"\n'
        'client_secret = "admin-s3cret"\n'
    )
    result = runner.invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0, result.output
    assert "intake nats: NATS nats://nats:4222: subject 'flyte-events'" in result.output
    assert "flyteadmin: flyteadmin:81 (TLS, OAuth2 client credentials as flytepropeller)" in (
        result.output
    )
    assert "s3cret" not in result.output
    as_json = json.loads(runner.invoke(main, ["check-config", str(config), "--json"]).output)
    assert set(as_json["intake"]) == {"nats"}
    assert as_json["flyteadmin"].startswith("flyteadmin:81")


def test_register_on_the_database_warns_of_recipients_no_channel_reaches(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "flytenotify.toml"
    # The webhook channel is configured, so webhook:nope is a mistake, not the dev inbox's.
    config.write_text('[webhooks.ops]\nurl = "https://ops.example.com/hook"\n')
    file = tmp_path / "plan.json"
    file.write_text(
        json.dumps(
            {
                "notifications": [
                    {"phases": ["FAILED"], "email": {"recipientsEmail": ["webhook:nope"]}}
                ]
            }
        )
    )
    plan = ["--project", "p", "--domain", "d", "--name", "n", "--version", "v1"]
    db = ["--db", str(tmp_path / "x.db"), "--config", str(config)]
    result = runner.invoke(main, ["register", str(file), *plan, *db])
    assert result.exit_code == 0, result.output
    assert "warning: notifications[0].email.recipients_email[0]" in result.output
    assert "no webhook named 'nope'" in result.output


def test_inbox_lists_the_newest_message_first(runner: CliRunner, tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "x.db")]
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(NOTIFICATIONS))
    plan = ["--project", "proj", "--domain", "prod", "--name", "nightly", "--version", "v1"]
    assert runner.invoke(main, ["register", str(file), *plan, *db]).exit_code == 0
    for name in ("run-1", "run-2"):
        sent = runner.invoke(
            main,
            [
                *("event", "--project", "proj", "--domain", "prod", "--name", name),
                *("--phase", "failed", "--launch-plan", "proj/prod/nightly", "--deliver", *db),
            ],
        )
        assert sent.exit_code == 0, sent.output
    listed = json.loads(runner.invoke(main, ["inbox", "--json", *db]).output)
    assert [m["id"] for m in listed] == sorted((m["id"] for m in listed), reverse=True)
    assert "run-2" in listed[0]["subject"]


def test_check_config_says_who_may_act_and_what_watches_time_and_gates(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "flytenotify.toml"
    config.write_text(
        f'[database]\nurl = "{tmp_path / "x.db"}"\n'
        '[deadlines.etl-sla]\nproject = "proj"\ndomain = "prod"\nmax_running = "2h"\n'
        'recipients = ["ops@example.com"]\n'
        '[waiting.approvals]\nrecipients = ["#releases"]\n'
        '[flyteadmin]\nendpoint = "flyteadmin:81"\n'
        '[actions]\nacknowledge_and_mute = "allowed"\n'
        '[[actions.allow]]\nproject = "proj"\nactions = ["approve", "reject"]\n'
        'actors = ["slack:U123", "email:ana@example.com"]\n'
    )
    result = runner.invoke(main, ["check-config", str(config)])
    assert result.exit_code == 0, result.output
    assert "  deadlines: etl-sla\n" in result.output
    assert "  waiting: approvals\n" in result.output
    expected = "  actions: slack:U123, email:ana@example.com may approve, reject in proj/*\n"
    assert expected in result.output
    assert "  acknowledge and mute: only the actors [[actions.allow]] names\n" in result.output
    as_json = json.loads(runner.invoke(main, ["check-config", str(config), "--json"]).output)
    assert (as_json["deadlines"], as_json["waiting"]) == (["etl-sla"], ["approvals"])
    nobody = tmp_path / "empty.toml"
    nobody.write_text(f'[database]\nurl = "{tmp_path / "y.db"}"\n')
    quiet = runner.invoke(main, ["check-config", str(nobody)])
    assert "actions: nobody may act on Flyte (no [[actions.allow]])" in quiet.output
    assert "acknowledge and mute: anyone who sees the message" in quiet.output
