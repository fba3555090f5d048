"""The dev inbox stands in for channels that are not configured, never for mistakes.

A recipient no channel can take when its channel *is* configured (``webhook:nope``
beside ``[webhooks.ops]``), and a recipient that is no address at all (two
addresses with a comma, a display name) are warned about when registered,
reported by ``check-config`` and dead-lettered with the reason, whether the dev
inbox is on or off. Only a recipient whose channel is not configured at all is
kept in the dev inbox. Checked on a running service with a real SMTP server, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from flytenotify.channels.mattermost import MattermostConfig, MattermostWebhook
from flytenotify.channels.pagerduty import PagerDutyConfig
from flytenotify.channels.slack import SlackConfig
from flytenotify.channels.webhook import WebhookTarget
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings, SmtpConfig
from flytenotify.engine.resolve import Route, RoutingError, route
from tests.helpers import event_json
from tests.live_server import WAIT, LiveServer
from tests.servers.smtp import SmtpServer, smtp_servers_fixture

__all__ = ["smtp_servers_fixture"]  # the fixture is used by name

GOOD = "ok@example.com"
NO_SUCH_WEBHOOK = "webhook:nope"
TWO_ADDRESSES = "a@allowed.com,b@evil.com"
DISPLAY_NAME = '"a" <b@evil.com>'
PLAN_URL = "/api/v1/launch-plans/proj/prod/nightly"


def _plan(recipients: list[str]) -> dict[str, Any]:
    return {
        "version": "v1",
        "notifications": [
            {"phases": ["FAILED"], "email": {"recipientsEmail": recipients}},
            # Slack is not configured at all: the dev inbox stands in for it.
            {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#alerts"]}},
        ],
    }


def _settled(client: httpx.Client, execution: str) -> list[dict[str, Any]]:
    """The execution's deliveries once none is waiting any more."""
    deadline = time.monotonic() + WAIT
    while True:
        items = client.get("/api/v1/deliveries", params={"execution": execution}).json()["items"]
        if items and all(item["status"] in ("delivered", "dead") for item in items):
            return list(items)
        assert time.monotonic() < deadline, items
        time.sleep(0.05)


def test_the_dev_inbox_never_stands_in_for_a_configured_channel_or_a_malformed_address(
    database_url: str, smtp_servers: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    smtp = smtp_servers()
    settings = Settings(
        database=DatabaseConfig(url=database_url),
        smtp=smtp.smtp_config(),
        webhooks={"ops": WebhookTarget(url="http://127.0.0.1:9/hook")},
        grouping=GroupingConfig(by=[]),
    )
    recipients = [GOOD, NO_SUCH_WEBHOOK, TWO_ADDRESSES, DISPLAY_NAME]
    with LiveServer(tmp_path / "unused.db", settings=settings) as server:  # dev inbox on
        client = httpx.Client(base_url=server.url, timeout=5)
        registered = client.put(PLAN_URL, json=_plan(recipients))
        assert registered.status_code == 200, registered.text
        warnings = {w["field"]: w["message"] for w in registered.json()["warnings"]}
        field = "notifications[0].email.recipients_email[{}]".format
        assert set(warnings) == {field(1), field(2), field(3)}, warnings
        assert "no webhook named 'nope' is configured" in warnings[field(1)]
        assert "comma" in warnings[field(2)]
        assert "display name" in warnings[field(3)]

        created = client.post(
            "/api/v1/executions",
            json={
                "id": {"project": "proj", "domain": "prod", "name": "run-1"},
                "launch_plan": {"project": "proj", "domain": "prod", "name": "nightly"},
            },
        )
        assert created.status_code == 201, created.text
        assert len(created.json()["warnings"]) == 3
        event = client.post("/api/v1/events", json=event_json("run-1", "FAILED", error="boom"))
        assert event.status_code == 202, event.text

        outcome = {
            item["recipient"]: (item["channel"], item["status"], item["last_reply"])
            for item in _settled(client, "proj/prod/run-1")
        }
        inbox = client.get("/api/v1/inbox", params={"limit": 1000}).json()["items"]

    assert outcome[GOOD][:2] == ("email", "delivered")
    assert outcome["#alerts"][:2] == ("inbox", "delivered")
    for refused in (NO_SUCH_WEBHOOK, TWO_ADDRESSES, DISPLAY_NAME):
        channel, status, reply = outcome[refused]
        assert (channel, status) == ("unroutable", "dead"), outcome[refused]
        assert reply.startswith("cannot route: "), reply
    assert "no webhook named 'nope'" in outcome[NO_SUCH_WEBHOOK][2]
    assert "comma" in outcome[TWO_ADDRESSES][2]
    # Nothing of theirs left flytenotify: not by SMTP, not into the inbox.
    assert [list(m.rcpt_tos) for m in smtp.messages] == [[GOOD]]
    assert [m["recipient"] for m in inbox] == ["#alerts"]


def test_check_config_reports_what_the_dev_inbox_used_to_hide(
    smtp_servers: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    smtp = smtp_servers()
    config = tmp_path / "flytenotify.toml"
    config.write_text(  # the dev inbox is on: the default
        f'[database]\nurl = "{tmp_path / "ledger.db"}"\n'
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\n'
        '[webhooks.ops]\nurl = "http://127.0.0.1:9/hook"\n'
    )
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_plan([GOOD, NO_SUCH_WEBHOOK, TWO_ADDRESSES])["notifications"]))
    runner = CliRunner()
    plan_id = ["--project", "p", "--domain", "d", "--name", "lp", "--version", "1"]
    registered = runner.invoke(main, ["register", str(plan), "--config", str(config), *plan_id])
    assert registered.exit_code == 0, registered.output

    result = runner.invoke(main, ["check-config", str(config), "--json"])
    assert result.exit_code == 1, result.output
    problems = json.loads(result.stdout)["problems"]
    assert [p.split(": ", 2)[1] for p in problems] == [
        "notifications[0].email.recipients_email[1]",
        "notifications[0].email.recipients_email[2]",
    ]
    assert "no webhook named 'nope' is configured" in problems[0]
    assert "comma" in problems[1]


# --- which recipients the dev inbox stands in for ---------------------------------------


SMTP = SmtpConfig(host="127.0.0.1", port=25)
MALFORMED = [
    TWO_ADDRESSES,
    DISPLAY_NAME,
    "<b@evil.com>",
    "a b@example.com",
    " ok@example.com",
    "a@b@example.com",
    "ops@exa mple.com",
    "a@allowed.com\r\nBcc: b@evil.com",
    "a@allowed.com\tb",
    "ops@example.com\n",
    "@example.com",
    "ops@",
    "@alice",
]


@pytest.mark.parametrize("recipient", MALFORMED)
@pytest.mark.parametrize("dev_inbox", [True, False])
@pytest.mark.parametrize("smtp", [SMTP, None], ids=["smtp", "no-smtp"])
@pytest.mark.parametrize("kind", ["email", "slack", "pager_duty"])
def test_a_malformed_recipient_is_refused_in_every_mode(
    recipient: str, dev_inbox: bool, smtp: SmtpConfig | None, kind: str
) -> None:
    # Slack, when configured, takes every recipient of a Slack notification; a
    # malformed one is refused before it is offered to any channel.
    settings = Settings(smtp=smtp, slack=SlackConfig(bot_token="xoxb-test"))
    with pytest.raises(RoutingError, match="is not one address"):
        route(kind, recipient, settings, dev_inbox=dev_inbox)


@pytest.mark.parametrize(
    ("kind", "recipient", "settings", "refused"),
    [
        # A named target the configured channel does not have.
        ("email", NO_SUCH_WEBHOOK, Settings(webhooks={"ops": WebhookTarget(url="http://h/")}),
         "no webhook named 'nope'"),
        ("slack", "teams:nope", Settings(teams={"ops": {"url": "https://h/"}}),
         "no Teams webhook named 'nope'"),
        # Mattermost with webhooks only cannot post to a team's channel.
        ("email", "mattermost:data/alerts",
         Settings(mattermost=MattermostConfig(webhooks={"town": MattermostWebhook(url="https://h/")})),
         "needs the REST API"),
        # PagerDuty is configured, and has no routing key by that name.
        ("pager_duty", "db-tean",
         Settings(pagerduty=PagerDutyConfig(routing_keys={"db-team": "k" * 32})),
         "no pager_duty API configuration can reach it"),
        # Email is configured, and this is not an address.
        ("email", "ops", Settings(smtp=SMTP), "is not an email address"),
    ],
)  # fmt: skip
def test_a_configured_channel_that_cannot_reach_a_recipient_is_not_stood_in_for(
    kind: str, recipient: str, settings: Settings, refused: str
) -> None:
    with pytest.raises(RoutingError, match=refused):
        route(kind, recipient, settings, dev_inbox=True)


@pytest.mark.parametrize(
    ("kind", "recipient"),
    [
        ("email", "webhook:ops"),  # no [webhooks] at all
        ("email", "teams:ops"),
        ("email", "mattermost:town"),
        ("slack", "#alerts"),  # no [slack]
        ("pager_duty", "db-team"),  # no [pagerduty]
        ("email", "ops@example.com"),  # no [smtp]
        ("slack", "john.doe@example.com"),
        ("email", "ops"),
    ],
)
def test_the_dev_inbox_stands_in_for_a_channel_that_is_not_configured(
    kind: str, recipient: str
) -> None:
    assert route(kind, recipient, Settings(), dev_inbox=True) == Route("inbox", recipient)
    with pytest.raises(RoutingError):
        route(kind, recipient, Settings(), dev_inbox=False)


def test_well_formed_recipients_still_route_as_before() -> None:
    settings = Settings(
        smtp=SMTP,
        webhooks={"ops": WebhookTarget(url="http://h/")},
        pagerduty=PagerDutyConfig(routing_keys={"db-team": "k" * 32}),
    )
    assert route("email", "ops@example.com", settings) == Route("email", "ops@example.com")
    assert route("email", "o'brien+alerts@example.co.uk", settings).channel == "email"
    assert route("slack", "data@example.com", settings) == Route("email", "data@example.com")
    assert route("email", "webhook:ops", settings) == Route("webhook", "ops")
    assert route("pager_duty", "db-team", settings) == Route("pagerduty", "db-team")
    assert route("slack", "#alerts", settings, dev_inbox=True) == Route("inbox", "#alerts")
