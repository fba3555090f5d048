"""Flyte 2's flyte.notify delivered: a watch of the loopback control plane to real servers.

The control plane (tests/servers/flyte2.py) answers as the open-source one
does; every run's RunSpec is made by the real flyte SDK's run path from real
flyte.notify objects. Messages end in the loopback SMTP server and HTTP
servers; the ledger is a real SQLite file, and a real PostgreSQL database
where replicas are concerned.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flyte.notify
import httpx
import pytest
from flyte.models import ActionPhase

from flytenotify.app import Notifier
from flytenotify.channels.inline_webhook import InlineWebhookConfig
from flytenotify.config import (
    DatabaseConfig,
    Flyte2Config,
    GroupingConfig,
    NamedDeliveryConfig,
    NamedRuleConfig,
    RecoveryConfig,
    ServerConfig,
    Settings,
    TemplateConfig,
    WebhookTarget,
)
from flytenotify.controlplane import ControlPlane
from flytenotify.domain import (
    PAUSED,
    DeliveryStatus,
    ExecutionId,
    NamedKind,
    NamedRule,
    NotificationSource,
)
from flytenotify.intake.flyte2 import RunWatch
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.api import create_app
from tests.servers.flyte2 import ABORTED, FAILED, SUCCEEDED, TIMED_OUT, Flyte2Plane, RunKey
from tests.servers.flyteadmin import TokenEndpoint
from tests.servers.http_sink import HttpSink
from tests.servers.slack_api import WEBHOOK, SlackApiServer
from tests.servers.smtp import SmtpServer
from tests.servers.teams_webhook import TeamsWebhookServer

PROJECT, DOMAIN = "proj", "development"
WAIT = 20.0  # seconds: the bound on every wait


@pytest.fixture
def plane() -> Iterator[Flyte2Plane]:
    with Flyte2Plane() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as server:
        yield server


def flyte2_config(plane: Flyte2Plane, **changes: Any) -> Flyte2Config:
    values: dict[str, Any] = {
        "endpoint": plane.endpoint,
        "projects": [f"{PROJECT}/{DOMAIN}"],
        **changes,
    }
    return Flyte2Config(**values)


def settings_for(
    database_url: str,
    plane: Flyte2Plane,
    smtp: SmtpServer | None = None,
    sink: HttpSink | None = None,
    **changes: Any,
) -> Settings:
    values: dict[str, Any] = {
        "database": DatabaseConfig(url=database_url),
        "flyte2": flyte2_config(plane),
        "smtp": smtp.smtp_config(sender="flyte@example.com") if smtp else None,
        # One message per run is what these tests count: grouping off, and no
        # recoveries (their runs share one task: a success after a failure
        # would be one; tests/test_conversations.py tests those).
        "grouping": GroupingConfig(by=[]),
        "recovery": RecoveryConfig(enabled=False),
        "templates": TemplateConfig(console_url="https://flyte.example.com/console"),
    }
    if sink is not None:
        values["webhooks"] = {"ops": WebhookTarget(url=sink.url("/ops"))}
        values["allow"] = {"inline_webhook_urls": [f"{sink.base}/*"]}
    values.update(changes)
    return Settings(**values)


@dataclass
class Watching:
    notifier: Notifier
    watch: RunWatch
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def ended(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, WAIT)


@contextlib.asynccontextmanager
async def watching(
    settings: Settings,
    *,
    project: str = PROJECT,
    dev_inbox: bool = False,
    reconcile_every: float = 0.5,
) -> AsyncIterator[Watching]:
    """A Notifier dispatching, and one RunWatch of ``project`` feeding it (quick intervals)."""
    assert settings.flyte2 is not None
    async with Notifier(settings, dev_inbox=dev_inbox) as notifier:
        notifier.start_dispatching()
        watch = RunWatch(
            ControlPlane(settings.flyte2),
            project,
            DOMAIN,
            reconcile_every=reconcile_every,
            paused_every=0.3,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(notifier, stop))
        watching = Watching(notifier, watch, stop, task)
        try:
            await until(lambda: watch.status.ready, "the watch is ready")
            yield watching
        finally:
            with contextlib.suppress(Exception):
                await watching.ended()


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"waited {WAIT} s for: {what}"
        await asyncio.sleep(0.05)


async def start_run(plane: Flyte2Plane, name: str, notifications: Any) -> RunKey:
    return await asyncio.to_thread(
        plane.start_run, PROJECT, DOMAIN, name, notifications=notifications
    )


def run_id(run: RunKey) -> ExecutionId:
    return ExecutionId(run.project, run.domain, run.name)


async def deliveries(notifier: Notifier, run: RunKey) -> list[Any]:
    return await notifier.deliveries(DeliveryFilter(execution=run_id(run), limit=100))


async def settled(notifier: Notifier, run: RunKey, count: int) -> list[Any]:
    """The run's ``count`` deliveries once none is waiting any more."""

    async def done() -> bool:
        found = await deliveries(notifier, run)
        waiting = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
        return len(found) >= count and all(d.status not in waiting for d in found)

    await until(done, f"{count} settled deliveries of {run.name}")
    found = await deliveries(notifier, run)
    assert len(found) == count, [(d.channel, d.recipient, d.status) for d in found]
    return found


# -- every notification type ------------------------------------------------------------


async def test_an_inline_email_is_one_message_to_to_cc_and_bcc_and_bcc_stays_hidden(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    email = flyte.notify.Email(
        on_phase=ActionPhase.FAILED,
        recipients=["ana@example.com", "bo@example.com"],
        cc=["lead@example.com"],
        bcc=["audit@example.com"],
        subject="{{.Run.Name}} {{.Phase}}",
        body="{{.Run.Project}}/{{.Run.Domain}}: {{.Error}}",
    )
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        run = await start_run(plane, "mail-run", email)
        await asyncio.to_thread(plane.finish, run, FAILED, error="disk full", code="USER:IOError")
        [delivery] = await settled(running.notifier, run, 1)
    assert delivery.status is DeliveryStatus.DELIVERED
    [sent] = await smtp.wait_for_messages(1)
    assert sorted(sent.rcpt_tos) == sorted(
        ["ana@example.com", "bo@example.com", "lead@example.com", "audit@example.com"]
    )
    assert sent.message["To"] == "ana@example.com, bo@example.com"
    assert sent.message["Cc"] == "lead@example.com"
    assert sent.message["Bcc"] is None
    assert b"audit@example.com" not in sent.raw  # no header, no Message-ID, nothing
    assert sent.message["Subject"] == "mail-run failed"
    assert sent.message.get_content_type() == "text/plain"  # no html_body: no HTML part
    assert sent.message.get_content().strip() == f"{PROJECT}/{DOMAIN}: disk full"
    assert "audit@example.com" not in delivery.idempotency_key


async def test_an_inline_email_with_an_html_body_is_escaped_and_sanitised(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    email = flyte.notify.Email(
        on_phase=ActionPhase.FAILED,
        recipients=["ana@example.com"],
        html_body=(
            '<p onclick="steal()">{{.Error}}</p><script>alert(1)</script>'
            '<a href="javascript:alert(2)">x</a><a href="{{.Run.URL}}">run</a>'
        ),
    )
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        run = await start_run(plane, "html-run", email)
        await asyncio.to_thread(plane.finish, run, FAILED, error='<b>"boom"</b> & <script>')
        await settled(running.notifier, run, 1)
    [sent] = await smtp.wait_for_messages(1)
    html = next(p for p in sent.message.walk() if p.get_content_type() == "text/html")
    markup = html.get_content()
    # The error is text in the page: escaped, never markup.
    assert "&lt;b&gt;" in markup
    assert "&lt;script&gt;" in markup
    assert "<b>" not in markup
    for gone in ("<script>", "alert(1)", "onclick", "javascript:"):
        assert gone not in markup
    url = f"https://flyte.example.com/v2/domain/{DOMAIN}/project/{PROJECT}/runs/html-run"
    assert f'href="{url}"' in markup
    text = next(p for p in sent.message.walk() if p.get_content_type() == "text/plain")
    assert "Run: html-run" in text.get_content()  # the SDK's default body, rendered


async def test_a_webhook_gets_the_users_method_headers_and_body_with_hostile_error_text(
    plane: Flyte2Plane, sink: HttpSink, tmp_path: Path
) -> None:
    hook = flyte.notify.Webhook(
        on_phase=(ActionPhase.FAILED, ActionPhase.TIMED_OUT),
        url=f"{sink.base}/runs/{{{{.Run.Name}}}}",
        method="PUT",
        headers={"X-Run": "{{.Run.Name}}", "Content-Type": "application/json"},
        body={"run": "{{.Run.Name}}", "why": "{{.Error}}", "phase": "{{.Phase}}"},
    )
    hostile = 'a "quoted" \\ back\nslash {{.Run.Name}} </script>'
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, sink=sink)
    async with watching(settings) as running:
        run = await start_run(plane, "hook-run", hook)
        await asyncio.to_thread(plane.finish, run, TIMED_OUT, error=hostile)
        [delivery] = await settled(running.notifier, run, 1)
    assert delivery.status is DeliveryStatus.DELIVERED, delivery.last_reply
    [request] = sink.requests
    assert request.method == "PUT"
    assert request.path == "/runs/hook-run"
    assert request.headers["X-Run"] == "hook-run"
    assert request.json() == {"run": "hook-run", "why": hostile, "phase": "timed_out"}
    # The URL is a credential as often as not: the ledger shows no path.
    assert "/runs/hook-run" not in delivery.recipient


async def test_slack_and_teams_get_their_providers_semantics(
    plane: Flyte2Plane, tmp_path: Path
) -> None:
    async with SlackApiServer() as slack, TeamsWebhookServer() as teams:
        settings = settings_for(
            f"sqlite:///{tmp_path / 'x.db'}",
            plane,
            inline_webhooks=InlineWebhookConfig(
                slack_hosts=[f"127.0.0.1:{slack.port}"], teams_hosts=[f"127.0.0.1:{teams.port}"]
            ),
            allow={"inline_webhook_urls": [f"{slack.base}/services/*", f"{teams.base}/*"]},
        )
        slack.script_webhook(429, "rate_limited")  # Slack says wait: the post comes again
        notify = (
            flyte.notify.Slack(
                on_phase=ActionPhase.FAILED,
                webhook_url=slack.webhook_url,
                message=":x: {{.Run.Name}} {{.Phase}}: {{.Error}}",
            ),
            flyte.notify.Teams(on_phase=ActionPhase.FAILED, webhook_url=teams.workflow_url),
        )
        async with watching(settings) as running:
            run = await start_run(plane, "chat-run", notify)
            await asyncio.to_thread(plane.finish, run, FAILED, error='bad "input"')
            found = await settled(running.notifier, run, 2)
        assert {d.status for d in found} == {DeliveryStatus.DELIVERED}, [
            d.last_reply for d in found
        ]
        posts = slack.calls_to(WEBHOOK)
        assert [p.status for p in posts] == [429, 200]
        assert json.loads(posts[-1].raw) == {"text": ':x: chat-run failed: bad "input"'}
        # The SDK's Teams(title, message) body became the card a Workflows webhook takes.
        [card_post] = teams.posted
        card = card_post.card
        assert card["type"] == "AdaptiveCard"
        texts = [block["text"] for block in card["body"]]
        assert texts[0] == "Run chat-run failed"
        assert 'Error: bad "input"' in texts[1]


async def test_a_webhook_url_outside_the_allow_list_is_dead_lettered_and_never_requested(
    plane: Flyte2Plane, sink: HttpSink, tmp_path: Path
) -> None:
    hook = flyte.notify.Webhook(on_phase=ActionPhase.FAILED, url=f"{sink.base}/x")
    settings = settings_for(
        f"sqlite:///{tmp_path / 'x.db'}",
        plane,
        allow={"inline_webhook_urls": ["https://hooks.slack.com/services/*"]},
    )
    async with watching(settings) as running:
        run = await start_run(plane, "refused-run", hook)
        await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        [delivery] = await settled(running.notifier, run, 1)
    assert delivery.status is DeliveryStatus.DEAD
    assert "inline_webhook_urls" in delivery.last_reply
    assert sink.requests == []


async def test_named_delivery_and_named_rule_use_the_configured_recipients(
    plane: Flyte2Plane, smtp: SmtpServer, sink: HttpSink, tmp_path: Path
) -> None:
    settings = settings_for(
        f"sqlite:///{tmp_path / 'x.db'}",
        plane,
        smtp,
        sink,
        flyte2=flyte2_config(
            plane,
            rules={
                "oncall": NamedRuleConfig(
                    phases=["FAILED", "TIMED_OUT"], recipients=["oncall@example.com", "webhook:ops"]
                )
            },
            deliveries={"chat": NamedDeliveryConfig(recipients=["webhook:ops"])},
        ),
    )
    async with watching(settings) as running:
        by_rule = await start_run(plane, "rule-run", flyte.notify.NamedRule("oncall"))
        by_delivery = await start_run(
            plane,
            "delivery-run",
            flyte.notify.NamedDelivery(on_phase=ActionPhase.SUCCEEDED, name="chat"),
        )
        await asyncio.to_thread(plane.finish, by_rule, TIMED_OUT, error="too slow")
        await asyncio.to_thread(plane.finish, by_delivery, SUCCEEDED)
        rule_deliveries = await settled(running.notifier, by_rule, 2)
        delivery_deliveries = await settled(running.notifier, by_delivery, 1)
    assert {(d.channel, d.recipient) for d in rule_deliveries} == {
        ("email", "oncall@example.com"),
        ("webhook", "ops"),
    }
    assert [(d.channel, d.recipient) for d in delivery_deliveries] == [("webhook", "ops")]
    [mail] = await smtp.wait_for_messages(1)
    assert mail.message["Subject"] == "Flyte run proj/development/rule-run timed out"
    assert "too slow" in mail.message.get_body(("plain",)).get_content()
    posted = sorted(r.json()["execution"]["name"] for r in sink.requests)
    assert posted == ["delivery-run", "rule-run"]


async def test_names_nobody_defined_are_said_not_silent(plane: Flyte2Plane, tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane)
    async with watching(settings) as running:
        no_rule = await start_run(plane, "no-rule", flyte.notify.NamedRule("ghost"))
        no_delivery = await start_run(
            plane,
            "no-delivery",
            flyte.notify.NamedDelivery(on_phase=ActionPhase.FAILED, name="nope"),
        )
        for run in (no_rule, no_delivery):
            await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        [dead] = await settled(running.notifier, no_delivery, 1)
        await until(lambda: _ended(running.notifier, no_rule), "the unknown rule's run is recorded")
        recorded = await running.notifier.execution(run_id(no_rule))
    assert dead.status is DeliveryStatus.DEAD
    assert "no named delivery 'nope'" in dead.last_reply
    assert recorded is not None
    assert recorded.source is NotificationSource.FLYTE2
    assert "no named rule 'ghost'" in recorded.lookup_error


async def _ended(notifier: Notifier, run: RunKey) -> bool:
    found = await notifier.execution(run_id(run))
    return found is not None and found.terminal_phase is not None


async def test_a_named_rule_on_paused_sends_the_prompt_once_per_action(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(
        f"sqlite:///{tmp_path / 'x.db'}",
        plane,
        smtp,
        flyte2=flyte2_config(
            plane,
            rules={
                "approvals": NamedRuleConfig(
                    phases=["PAUSED", "FAILED"], recipients=["ops@example.com"]
                )
            },
        ),
    )
    async with watching(settings) as running:
        run = await start_run(plane, "gate-run", flyte.notify.NamedRule("approvals"))
        await asyncio.to_thread(
            plane.pause, run, prompt="Deploy model v7 to prod?", description="accuracy 0.93"
        )
        [paused] = await settled(running.notifier, run, 1)
        await asyncio.sleep(1.0)  # several polls later: still once
        assert len(await deliveries(running.notifier, run)) == 1
        await asyncio.to_thread(plane.finish, run, FAILED, error="rejected")
        found = await settled(running.notifier, run, 2)
    assert paused.phase == PAUSED
    mails = await smtp.wait_for_messages(2)
    first = mails[0].message
    assert "waiting for input" in first["Subject"]
    assert "Deploy model v7 to prod?" in first.get_body(("plain",)).get_content()
    assert "accuracy 0.93" in first.get_body(("plain",)).get_content()
    assert sorted(d.phase for d in found) == [6, PAUSED]


# -- what the control plane does to a watcher --------------------------------------------


@pytest.fixture
def busy_plane() -> Iterator[Flyte2Plane]:
    """A plane whose WatchRuns snapshot holds two runs: three that keep running fill it
    (running runs come first), so runs that end never reach a watcher through it."""
    with Flyte2Plane(snapshot_limit=1) as server:
        for i in range(3):
            server.start_run(PROJECT, DOMAIN, f"busy-{i}")
        yield server


async def test_runs_that_ended_before_the_first_watch_are_history_not_alerts(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    email = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["ana@example.com"])
    old = await start_run(plane, "long-ago", email)
    await asyncio.to_thread(plane.finish, old, FAILED, error="last week")
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        await plane.wait_for_watchers(1)  # its snapshot carries the old run
        new = await start_run(plane, "just-now", email)
        await asyncio.to_thread(plane.finish, new, FAILED, error="now")
        await settled(running.notifier, new, 1)
        assert await running.notifier.execution(run_id(old)) is None
    assert [m.message["Subject"] for m in smtp.messages] == ["Run just-now failed"]
    asked = [c.request.run_id.name for c in plane.calls_to("GetRunDetails")]
    assert "long-ago" not in asked


async def test_runs_that_end_while_nobody_watches_are_notified_after_a_restart(
    busy_plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    plane = busy_plane
    email = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["ana@example.com"])
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings):
        before = await start_run(plane, "before", email)
    # Down: runs end, and the control plane's stream would not have said so anyway.
    await asyncio.to_thread(plane.finish, before, FAILED, error="while down")
    during = await start_run(plane, "during", email)
    await asyncio.to_thread(plane.finish, during, FAILED, error="also while down")
    async with watching(settings) as running:
        await settled(running.notifier, before, 1)
        await settled(running.notifier, during, 1)
    assert sorted(m.message["Subject"] for m in await smtp.wait_for_messages(2)) == [
        "Run before failed",
        "Run during failed",
    ]


async def test_a_dropped_stream_reconnects_and_no_run_is_lost_or_sent_twice(
    busy_plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    plane = busy_plane
    email = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["ana@example.com"])
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        runs = [await start_run(plane, f"drop-{i}", email) for i in range(6)]
        await plane.wait_for_watchers(1)
        await asyncio.to_thread(plane.finish, runs[0], FAILED, error="0")
        # Recorded before the drop: a reset also cuts a GetRunDetails in flight,
        # which is asked again (rightly), and the count below is of runs asked.
        await settled(running.notifier, runs[0], 1)
        await asyncio.to_thread(plane.drop_streams, "reset")
        await asyncio.to_thread(plane.finish, runs[1], FAILED, error="1")  # nobody listening
        await asyncio.to_thread(plane.stop)
        await asyncio.to_thread(plane.finish, runs[2], FAILED, error="2")  # the plane is down
        await until(lambda: not running.watch.status.ready, "the watch sees the plane down")
        await asyncio.to_thread(plane.start)
        for run in runs[3:]:
            await asyncio.to_thread(plane.finish, run, FAILED, error="after")
        for run in runs:
            await settled(running.notifier, run, 1)
        await asyncio.sleep(1.5)  # reconciliations and snapshots replay them all: nothing new
    names = sorted(m.message["Subject"] for m in smtp.messages)
    assert names == sorted(f"Run drop-{i} failed" for i in range(6))
    details = [c for c in plane.calls_to("GetRunDetails")]
    assert len(details) == 6  # once per run: ended runs in the ledger are never asked again


async def test_runs_ending_one_by_one_on_a_distant_control_plane_are_asked_about_together(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    """Each end is a stream message of its own, and each costs a GetRunDetails round
    trip: what arrives while one is asked about is asked about together next."""
    email = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["ana@example.com"])
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    # No reconciliation meanwhile: the stream alone tells of these runs.
    async with watching(settings, reconcile_every=3600) as running:
        runs = [await start_run(plane, f"far-{i}", email) for i in range(8)]
        plane.details_delay = 0.3
        for i, run in enumerate(runs):
            await asyncio.to_thread(plane.finish, run, FAILED, error=f"error {i}")
        for run in runs:
            await settled(running.notifier, run, 1)
    assert plane.most_details_at_once > 1
    assert len(plane.calls_to("GetRunDetails")) == len(runs)
    subjects = sorted(str(m.message["Subject"]) for m in smtp.messages)
    assert subjects == sorted(f"Run far-{i} failed" for i in range(8))


async def test_an_empty_project_is_ready_though_the_stream_says_nothing(
    plane: Flyte2Plane, tmp_path: Path
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane)
    async with watching(settings, project="nobody-runs-here") as running:
        await plane.wait_for_watchers(1)
        assert running.watch.status.ready
        assert running.watch.status.last_message_at is None


async def test_the_error_of_the_last_attempt_is_used_when_the_run_has_none_yet(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    email = flyte.notify.Email(
        on_phase=(ActionPhase.FAILED, ActionPhase.ABORTED),
        recipients=["ana@example.com"],
        body="{{.Error}}",
    )
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        retried = await start_run(plane, "retried", email)
        await asyncio.to_thread(plane.retry, retried, "OOMKilled")
        await asyncio.to_thread(plane.finish, retried, FAILED, events=False)
        aborted = await start_run(plane, "aborted", email)
        await asyncio.to_thread(plane.abort, aborted, "not needed today")
        await settled(running.notifier, retried, 1)
        await settled(running.notifier, aborted, 1)
    bodies = {m.message["Subject"]: m.message.get_content().strip() for m in smtp.messages}
    assert bodies["Run retried failed"] == "OOMKilled"
    assert bodies["Run aborted aborted"] == "not needed today"
    assert plane.phase_of(aborted) == ABORTED


async def test_named_rules_managed_over_the_api_are_used_for_new_runs(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        stored, warnings = await running.notifier.put_named_rule(
            NamedRule(
                NamedKind.RULE,
                "team",
                ("team@example.com",),
                frozenset({6}),
                project=PROJECT,
            )
        )
        assert warnings == []
        run = await start_run(plane, "api-rule", flyte.notify.NamedRule("team"))
        await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        [delivery] = await settled(running.notifier, run, 1)
    assert stored.source == "api"
    assert delivery.recipient == "team@example.com"


def test_the_watch_parses_no_ledger_json_it_did_not_write() -> None:
    # The execution's JSON column for rules survives a round trip through the codec.
    from flytenotify.domain import EmailEnvelope, InlineEmail, InlineWebhook, Mailbox, RunRule
    from flytenotify.store.codec import dump_rules, load_rules

    rules = (
        RunRule(
            frozenset({6}), email=InlineEmail(EmailEnvelope((Mailbox("a@b.c", "A"),)), "s", "t")
        ),
        RunRule(
            frozenset({4, 7}), webhook=InlineWebhook("https://x/y", "PUT", (("K", "v"),), "{}")
        ),
        RunRule(frozenset({PAUSED}), name="n", recipients=("#c",)),
        RunRule(frozenset({8}), name="m", problem="missing"),
    )
    assert load_rules(dump_rules(rules)) == rules
    assert json.loads(dump_rules(rules))[0]["email"]["envelope"]["to"][0]["name"] == "A"


# -- credentials ----------------------------------------------------------------------------


async def _one_run_mailed(plane: Flyte2Plane, settings: Settings, smtp: SmtpServer) -> None:
    email = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["ana@example.com"])
    async with watching(settings) as running:
        run = await start_run(plane, "authed", email)
        await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        [delivery] = await settled(running.notifier, run, 1)
    assert delivery.status is DeliveryStatus.DELIVERED


async def test_a_token_file_is_sent_as_a_bearer_token(smtp: SmtpServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with Flyte2Plane(token="s3cret-token") as plane:
        settings = settings_for(
            f"sqlite:///{tmp_path / 'x.db'}",
            plane,
            smtp,
            flyte2=flyte2_config(plane, token_file=token),
        )
        await _one_run_mailed(plane, settings, smtp)
        assert not any(call.refused for call in plane.calls)
        assert {call.headers.get("authorization") for call in plane.calls_to("ListRuns")} == {
            "Bearer s3cret-token"
        }


@pytest.mark.parametrize("given_as", ["client_id", "api_key"])
async def test_client_credentials_get_a_token_from_the_advertised_endpoint(
    smtp: SmtpServer, tmp_path: Path, given_as: str
) -> None:
    secret = "pass word&more"  # form-encoded in the token request's Basic credentials
    with (
        TokenEndpoint("flytenotify", secret) as tokens,
        Flyte2Plane(token="never-issued", token_endpoint=tokens.url) as plane,
    ):
        tokens.admin = plane  # type: ignore[assignment]  # the plane accepts what it issues
        if given_as == "client_id":
            auth: dict[str, Any] = {"client_id": "flytenotify", "client_secret": secret}
        else:  # the flyte SDK's API key: endpoint:client_id:client_secret:org, in base64
            packed = f"flyte.example.com:flytenotify:{secret}:org"
            auth = {"api_key": base64.b64encode(packed.encode()).decode()}
        settings = settings_for(
            f"sqlite:///{tmp_path / 'x.db'}", plane, smtp, flyte2=flyte2_config(plane, **auth)
        )
        await _one_run_mailed(plane, settings, smtp)
    assert len(tokens.issued) == 1  # kept, not fetched per call
    assert tokens.issued[0].form["grant_type"] == "client_credentials"


async def test_refused_credentials_keep_the_watch_not_ready_saying_why(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    with Flyte2Plane(token="the-right-one") as plane:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
        assert settings.flyte2 is not None
        async with Notifier(settings) as notifier:
            watch = RunWatch(ControlPlane(settings.flyte2), PROJECT, DOMAIN)
            stop = asyncio.Event()
            task = asyncio.create_task(watch.run(notifier, stop))
            try:
                await until(lambda: bool(watch.status.last_error), "the watch to fail")
                assert not watch.status.ready
                assert "UNAUTHENTICATED" in watch.status.last_error
                assert "credentials" in watch.status.last_error
            finally:
                stop.set()
                await asyncio.wait_for(task, WAIT)


# -- the console -----------------------------------------------------------------------------


async def test_the_console_shows_watches_named_rules_and_a_runs_rules_without_secrets(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    secret_url = "https://hooks.slack.com/services/T0SECRET/B0SECRET/xoxsecretpart"
    settings = settings_for(
        f"sqlite:///{tmp_path / 'x.db'}",
        plane,
        smtp,
        flyte2=flyte2_config(
            plane,
            rules={"oncall": NamedRuleConfig(phases=["FAILED"], recipients=["webhook:nope"])},
        ),
    )
    notify = (
        flyte.notify.Email(
            on_phase=ActionPhase.FAILED, recipients=["ana@example.com"], bcc=["audit@example.com"]
        ),
        flyte.notify.Slack(on_phase=ActionPhase.FAILED, webhook_url=secret_url),
    )
    async with watching(settings) as running:
        run = await start_run(plane, "console-run", notify)
        await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        await settled(running.notifier, run, 2)
        app = create_app(running.notifier, ServerConfig(), sources=[running.watch])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as web:
            page = (await web.get("/ui/flyte2")).text
            execution = (await web.get(f"/ui/executions/{PROJECT}/{DOMAIN}/console-run")).text
    assert f"{PROJECT}/{DOMAIN}" in page
    assert "connected" in page
    assert "oncall" in page
    assert "webhook:nope" in page  # and why it will not be reached:
    assert "no webhook named &#39;nope&#39;" in page or "no webhook named 'nope'" in page
    assert "Rules of the run" in execution
    assert "ana@example.com" in execution
    assert "(+1 Bcc)" in execution
    assert "audit@example.com" not in execution
    assert "xoxsecretpart" not in execution
    assert "T0SECRET" not in execution


# -- what is refused, and said --------------------------------------------------------------


async def test_a_template_that_cannot_be_rendered_is_a_dead_letter_saying_where(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    email = flyte.notify.Email(
        on_phase=ActionPhase.FAILED,
        recipients=["ana@example.com"],
        subject="{{.Run.Name}} of {{.Run.Task}}",
    )
    settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", plane, smtp)
    async with watching(settings) as running:
        run = await start_run(plane, "bad-template", email)
        await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        [dead] = await settled(running.notifier, run, 1)
    assert dead.status is DeliveryStatus.DEAD
    assert dead.last_reply.startswith("cannot render the email's template in the subject: 1:")
    assert ".Run.Task" in dead.last_reply
    assert smtp.messages == []


async def test_an_inline_email_to_an_address_allow_refuses_is_not_sent_at_all(
    plane: Flyte2Plane, smtp: SmtpServer, tmp_path: Path
) -> None:
    email = flyte.notify.Email(
        on_phase=ActionPhase.FAILED, recipients=["ana@example.com"], cc=["someone@evil.example"]
    )
    settings = settings_for(
        f"sqlite:///{tmp_path / 'x.db'}", plane, smtp, allow={"email": ["example.com"]}
    )
    async with watching(settings) as running:
        run = await start_run(plane, "refused-mail", email)
        await asyncio.to_thread(plane.finish, run, FAILED, error="x")
        [dead] = await settled(running.notifier, run, 1)
    assert dead.status is DeliveryStatus.DEAD
    assert "someone@evil.example" in dead.last_reply
    assert "allow.email" in dead.last_reply
    assert smtp.messages == []


def test_rules_only_other_clients_can_write_are_each_checked() -> None:
    # The flyte SDK writes none of these; the proto allows them, so another
    # client may. Built by hand for that reason only.
    from flyteidl2.common import phase_pb2
    from flyteidl2.notification import definition_pb2 as d
    from flyteidl2.task import run_pb2

    from flytenotify.intake.flyte2_runs import read_rules

    both = d.DeliveryConfigTemplate(
        email=d.EmailDeliveryTemplate(
            to=[d.EmailRecipient(address="a@example.com", name="Ana")],
            provider_template=d.ProviderEmailTemplate(template_id="tmpl-7"),
        ),
        webhook=d.WebhookDeliveryTemplate(url="https://x.example/hook"),
    )
    spec = run_pb2.RunSpec(
        notification_rules=run_pb2.InlineRuleList(
            rules=[
                run_pb2.InlineRule(
                    on_phases=[phase_pb2.ACTION_PHASE_FAILED, phase_pb2.ACTION_PHASE_RECOVERED],
                    delivery_template=both,
                ),
                run_pb2.InlineRule(
                    on_phases=[phase_pb2.ACTION_PHASE_RUNNING], delivery_config_name="chat"
                ),
                run_pb2.InlineRule(on_phases=[phase_pb2.ACTION_PHASE_PAUSED]),
            ]
        )
    )
    email, webhook, running, nothing = read_rules(spec, "p", "d", []).rules
    assert email.phases == webhook.phases == frozenset({6})  # RECOVERED cannot be selected
    assert "provider template ('tmpl-7')" in email.problem
    assert webhook.webhook is not None
    assert webhook.webhook.method == "POST"  # unspecified, as the SDK's default
    assert webhook.problem == ""
    assert running.phases == frozenset()
    assert "RUNNING" in running.problem
    assert nothing.phases == frozenset({PAUSED})
    assert "names no delivery" in nothing.problem
