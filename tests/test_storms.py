"""Alert storms: a lone failure goes at once, a storm is folded into a few digests,
and every execution is named in exactly one message.

What the loopback Slack server received is the truth: each post is parsed for
the executions it names.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from flytenotify import Email, Notification, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.channels.mattermost import MattermostConfig, MattermostWebhook, mattermost_text
from flytenotify.channels.slack import digest_message
from flytenotify.channels.teams import TeamsTarget, teams_message
from flytenotify.channels.webhook import DELIVERY_HEADER
from flytenotify.cli import main
from flytenotify.config import (
    DatabaseConfig,
    GroupingConfig,
    PagerDutyConfig,
    RetryConfig,
    ServerConfig,
    Settings,
    SlackConfig,
    TemplateConfig,
    WebhookTarget,
)
from flytenotify.domain import Delivery, DeliveryStatus
from flytenotify.engine.dispatch import messages
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.api import create_app
from tests.helpers import PLAN, event_json, rendered_delivery
from tests.servers.http_sink import HttpSink
from tests.servers.mattermost_api import MattermostServer
from tests.servers.pagerduty_api import PagerDutyApiServer
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer, SlackCall
from tests.servers.smtp import SmtpServer
from tests.servers.teams_webhook import TeamsWebhookServer

ROOT = Path(__file__).parent.parent
STORM = 500
_CELL = 'style="text-align:left;padding:2px 8px;border-bottom:1px solid #ddd"'
NAME = re.compile(r"storm-\d{4}")


def slack_settings(url: str, slack: SlackApiServer, **grouping: object) -> Settings:
    return Settings(
        database=DatabaseConfig(url=url),
        # Slack's real pacing: one message per second per channel.
        slack=SlackConfig(bot_token=SecretStr(DEFAULT_TOKEN), base_url=slack.base_url),
        grouping=GroupingConfig.model_validate(grouping),
        retry=RetryConfig(base_delay=0.05, max_delay=0.2),
    )


def named(call: SlackCall) -> set[str]:
    """The executions a post names in its blocks (the fallback text repeats them)."""
    return set(NAME.findall(json.dumps(call.body["blocks"])))


def storm_events(names: Sequence[str]) -> list[dict[str, object]]:
    return [event_json(n, "FAILED", error=f"{n}: input is empty", launch_plan=PLAN) for n in names]


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)


async def post_storm(notifier: Notifier, count: int = STORM, seconds: float = 5.0) -> list[str]:
    """``count`` FAILED events of one launch plan over about ``seconds``."""
    names = [f"storm-{i:04d}" for i in range(count)]
    batches = [names[i : i + 25] for i in range(0, count, 25)]
    for batch in batches:
        await notifier.report_events(storm_events(batch))
        await asyncio.sleep(seconds / len(batches))
    return names


def assert_each_named_once(posts: Sequence[SlackCall], names: Sequence[str]) -> None:
    seen = Counter(name for post in posts for name in named(post))
    assert set(seen) == set(names), set(names) ^ set(seen)
    assert max(seen.values()) == 1, [name for name, times in seen.items() if times > 1]


async def register(notifier: Notifier) -> None:
    await notifier.register_launch_plan(PLAN, [Slack([P.FAILED], ["#alerts"])])


# -- a lone failure ------------------------------------------------------------------------


async def test_a_lone_failure_goes_at_once_as_a_single_message(database_url: str) -> None:
    """With grouping on (a long window) as with it off: one message, not a digest."""
    async with SlackApiServer() as slack:
        for grouping in ({"window": 60.0}, {"by": []}):
            before = len(slack.posts())
            settings = slack_settings(database_url, slack, **grouping)
            async with Notifier(settings) as notifier:
                await register(notifier)
                notifier.start_dispatching()
                name = f"storm-{len(slack.posts()):04d}"
                await notifier.report_event(storm_events([name])[0])
                # Well within the window: the message is not held back by it.
                await until(lambda n=before: len(slack.posts()) > n, 20.0, "the lone message")
                await notifier.stop_dispatching()
                (delivery,) = (await notifier.deliveries())[-1:]
            post = slack.posts()[-1]
            assert named(post) == {name}
            assert "executions of" not in post.body["blocks"][0]["text"]["text"]
            assert delivery.message_id.startswith("single:")
            assert delivery.message_size == 1


async def test_a_running_dispatcher_forgets_groups_closed_long_ago(tmp_path: Path) -> None:
    """One row per group key ever seen would grow the ledger forever."""
    path = tmp_path / "ledger.db"
    async with (
        SlackApiServer() as slack,
        Notifier(slack_settings(f"sqlite:///{path}", slack)) as notifier,
    ):
        now = time.time()
        with sqlite3.connect(path) as db:
            db.executemany(
                "INSERT INTO delivery_groups (group_key, open_until) VALUES (?, ?)",
                [
                    ("closed-2h-ago", now - 7200),
                    ("closed-1m-ago", now - 60),
                    ("open", now + 60),
                ],
            )
        notifier.start_dispatching()

        def kept() -> list[str]:
            with sqlite3.connect(path) as db:
                rows = db.execute("SELECT group_key FROM delivery_groups ORDER BY group_key")
                return [key for (key,) in rows]

        await until(lambda: "closed-2h-ago" not in kept(), 10.0, "the old group pruned")
        await notifier.stop_dispatching()
    assert kept() == ["closed-1m-ago", "open"]


# -- a storm -----------------------------------------------------------------------------------


async def test_a_storm_reaches_slack_as_a_handful_of_digests(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    async with SlackApiServer() as slack:
        async with Notifier(slack_settings(url, slack, window=5.0)) as notifier:
            await register(notifier)
            notifier.start_dispatching()
            started = time.monotonic()
            names = await post_storm(notifier)
            await until(lambda: _named_count(slack) >= STORM, 60.0, "every execution named")
            await notifier.stop_dispatching()
            deliveries = await notifier.deliveries(DeliveryFilter(limit=1000))
        posts = slack.posts()
        assert_each_named_once(posts, names)
        # The first message (a lone failure, at once) well before the window closed.
        assert posts[0].at - started < 5.0
        assert "storm-0000" in named(posts[0])
        assert len(posts) <= 10, [len(named(p)) for p in posts]
        assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
        # The ledger agrees: as many messages as posts, each row's size its message's.
        by_message = Counter(d.message_id for d in deliveries)
        assert len(by_message) == len(posts)
        assert all(d.message_size == by_message[d.message_id] for d in deliveries)


def _named_count(slack: SlackApiServer) -> int:
    return sum(len(named(post)) for post in slack.posts())


async def test_three_postgres_replicas_fold_a_storm_once(postgres_url: str) -> None:
    """Every replica claims when the window closes; one digest per chunk, not one per replica."""
    async with SlackApiServer() as slack:
        settings = slack_settings(postgres_url, slack, window=5.0)
        async with (
            Notifier(settings) as first,
            Notifier(settings) as second,
            Notifier(settings) as third,
        ):
            await register(first)
            for replica in (first, second, third):
                replica.start_dispatching()
            names = await post_storm(first)
            await until(lambda: _named_count(slack) >= STORM, 60.0, "every execution named")
            await asyncio.sleep(1.0)  # a duplicate digest would arrive by now
            for replica in (first, second, third):
                await replica.stop_dispatching()
        posts = slack.posts()
        assert_each_named_once(posts, names)
        assert len(posts) <= 10, [len(named(p)) for p in posts]


# -- kill -9 while a group is open --------------------------------------------------------


async def test_sigkill_while_a_group_is_open_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    async with SlackApiServer() as slack:
        async with Notifier(slack_settings(url, slack, window=4.0)) as intake:
            await register(intake)
            child = _start_child(url, slack)
            try:
                await intake.report_events(storm_events(["storm-0000"]))
                await until(lambda: len(slack.posts()) == 1, 30.0, "the first, lone message")
                # A send whose outcome is not written yet is sent again after a kill (its
                # lease passes): wait for the ledger to hold it delivered, as a loaded
                # machine can delay that write past the post.
                for _ in range(300):
                    if {d.status for d in await intake.deliveries()} == {DeliveryStatus.DELIVERED}:
                        break
                    await asyncio.sleep(0.1)
                # Its group is open now: these wait in the ledger for it to close.
                held = [f"storm-{i:04d}" for i in range(1, 21)]
                await intake.report_events(storm_events(held))
                os.kill(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
                assert len(slack.posts()) == 1
                child = _start_child(url, slack)
                await until(lambda: _named_count(slack) >= 21, 30.0, "the held ones")
                await asyncio.sleep(0.5)
            finally:
                child.kill()
                child.wait(timeout=10)
            deliveries = await intake.deliveries()
        posts = slack.posts()
        assert_each_named_once(posts, ["storm-0000", *held])
        assert [len(named(post)) for post in posts] == [1, 20]
        assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}


def _start_child(url: str, slack: SlackApiServer) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storm_child", url, slack.base_url, "4.0"], cwd=ROOT
    )


# -- the other channels' digest forms ------------------------------------------------------

FIVE = [f"storm-{i:04d}" for i in range(5)]


async def record_then_dispatch(settings: Settings, notification: Notification) -> list[Delivery]:
    """Five failures recorded before dispatching starts: the first claim finds their
    group closed and takes them all, one digest."""
    async with Notifier(settings) as notifier:
        await notifier.register_launch_plan(PLAN, [notification])
        await notifier.report_events(storm_events(FIVE))
        await notifier.run_until_idle(max_wait=20)
        return await notifier.deliveries()


def assert_one_digest(deliveries: Sequence[Delivery]) -> str:
    (message,) = {d.message_id for d in deliveries}
    assert message.startswith("digest:")
    assert [d.message_size for d in deliveries] == [5] * 5
    assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
    return message


async def test_email_digest_tables_every_execution(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
            smtp=smtp.smtp_config(),
            templates=TemplateConfig(public_url="https://notify.example.com"),
        )
        deliveries = await record_then_dispatch(settings, Email([P.FAILED], ["ops@example.com"]))
        message_id = assert_one_digest(deliveries)
        (mail,) = smtp.messages
    assert mail.message["Subject"] == "5 executions of nightly failed"
    text = mail.message.get_body(("plain",)).get_content()
    html = mail.message.get_body(("html",)).get_content()
    for name in FIVE:
        assert f"proj/prod/{name} FAILED" in text
        assert f"<td {_CELL}>proj/prod/{name}</td>" in html
    assert "input is empty" in text
    # Linked back to flytenotify's list of what the digest carried.
    assert f"https://notify.example.com/api/v1/deliveries?message={message_id}" in text


async def test_webhook_digest_body_lists_every_execution(tmp_path: Path) -> None:
    async with HttpSink() as sink:
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
            webhooks={"ops": WebhookTarget(url=sink.url("/flyte"))},
        )
        deliveries = await record_then_dispatch(settings, Email([P.FAILED], ["webhook:ops"]))
        message_id = assert_one_digest(deliveries)
        (request,) = sink.requests
    body = request.json()
    assert body["schema"] == "flytenotify.digest/v1"
    assert body["delivery_id"] == message_id == request.headers[DELIVERY_HEADER]
    assert body["count"] == 5
    names = [entry["execution"]["name"] for entry in body["executions"]]
    assert sorted(names) == FIVE
    assert {entry["event"]["phase"] for entry in body["executions"]} == {"FAILED"}


async def test_pagerduty_digest_is_one_event_with_the_count(tmp_path: Path) -> None:
    async with PagerDutyApiServer() as pagerduty:
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
            pagerduty=PagerDutyConfig(
                events_url=pagerduty.events_url, routing_keys={"oncall": SecretStr("r" * 32)}
            ),
        )
        deliveries = await record_then_dispatch(settings, PagerDuty([P.FAILED], ["oncall"]))
        assert_one_digest(deliveries)
        (event,) = pagerduty.accepted
    assert event["dedup_key"] == "proj/prod/nightly"
    details = event["payload"]["custom_details"]
    assert details["count"] == 5
    assert sorted(e["execution"] for e in details["executions"]) == [f"proj/prod/{n}" for n in FIVE]
    assert event["payload"]["summary"] == "5 executions of nightly failed"


async def test_teams_digest_card_names_every_execution(tmp_path: Path) -> None:
    async with TeamsWebhookServer() as teams:
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
            teams={"ops": TeamsTarget(url=SecretStr(teams.workflow_url), per_webhook_interval=0)},
        )
        deliveries = await record_then_dispatch(settings, Email([P.FAILED], ["teams:ops"]))
        assert_one_digest(deliveries)
        (request,) = teams.posted
    texts = [block["text"] for block in request.card["body"]]
    assert texts[0] == "5 executions of nightly failed"
    assert sorted(set(NAME.findall(" ".join(texts)))) == FIVE


async def test_mattermost_digest_table_names_every_execution(tmp_path: Path) -> None:
    async with MattermostServer() as mattermost:
        settings = Settings(
            database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
            mattermost=MattermostConfig(
                webhooks={"town": MattermostWebhook(url=SecretStr(mattermost.hook_url()))},
                per_channel_interval=0,
            ),
        )
        deliveries = await record_then_dispatch(settings, Email([P.FAILED], ["mattermost:town"]))
        message_id = assert_one_digest(deliveries)
        (post,) = mattermost.posts()
    assert "5 executions of nightly failed" in post["text"]
    assert sorted(set(NAME.findall(post["text"]))) == FIVE
    assert post["props"]["flytenotify_delivery"] == message_id


def test_digests_stay_within_provider_limits() -> None:
    """A thousand executions with long errors: every form within its provider's limit,
    the count exact, the ones left out said."""
    error = "Traceback (most recent call last): " + "x" * 2000
    rows = tuple(
        replace(
            rendered_delivery("slack", "slack", "#a", name=f"storm-{i:04d}", error=error),
            id=i,
            group_key="g",
        )
        for i in range(1000)
    )
    (digest,) = messages(rows, lambda _channel: 1000)
    assert digest.digest is not None
    assert digest.digest.count == 1000
    slack = digest_message(digest.digest)
    assert len(slack["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in slack["blocks"])
    assert len(json.dumps(teams_message(digest)).encode()) <= 28 * 1024
    assert len(mattermost_text(digest)) <= 16_383
    assert "1000 executions" in mattermost_text(digest)


# -- seeing what a digest carried -----------------------------------------------------------


async def test_a_digest_is_found_by_its_message_id_in_the_api_cli_and_inbox(
    tmp_path: Path,
) -> None:
    """Dev-inbox mode: the inbox keeps the digest in Slack's form; the API and the CLI
    list the deliveries it carried."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    async with Notifier(Settings(database=DatabaseConfig(url=url)), dev_inbox=True) as notifier:
        await notifier.register_launch_plan(PLAN, [Slack([P.FAILED], ["#alerts"])])
        await notifier.report_events(storm_events(FIVE))
        await notifier.run_until_idle(max_wait=20)
        message_id = assert_one_digest(await notifier.deliveries())
        (kept,) = await notifier.inbox()
        app = create_app(notifier, ServerConfig())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            carried = await client.get("/api/v1/deliveries", params={"message": message_id})
            other = await client.get("/api/v1/deliveries", params={"message": "digest:none"})
            empty = await client.get("/api/v1/deliveries", params={"message": ""})
    assert kept.subject == "5 executions of nightly failed"
    assert set(NAME.findall(kept.body)) == set(FIVE)
    items = carried.json()["items"]
    assert [(i["message_id"], i["message_size"]) for i in items] == [(message_id, 5)] * 5
    assert other.json()["items"] == []
    assert empty.status_code == 400
    assert [p["field"] for p in empty.json()["problems"]] == ["message"]
    # The CLI runs its own event loop: on a thread of its own.
    arguments = ["deliveries", "list", "--db", url, "--message", message_id, "--json"]
    listed = await asyncio.to_thread(CliRunner().invoke, main, arguments)
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.output)) == 5


def test_grouping_configuration_errors_name_the_key() -> None:
    with pytest.raises(ValidationError) as unknown:
        Settings.model_validate({"grouping": {"channels": {"sms": {"window": 5}}}})
    assert "grouping.channels" in str(unknown.value).replace("\n", ".")
    assert "'sms'" in str(unknown.value)
    with pytest.raises(ValidationError) as part:
        Settings.model_validate({"grouping": {"by": ["launch_plan", "weather"]}})
    assert "grouping.by.1" in str(part.value).replace("\n", ".")
    off = Settings.model_validate({"grouping": {"channels": {"email": {"enabled": False}}}})
    assert off.grouping.key_parts("email") == ()
    assert off.grouping.key_parts("slack") == ("launch_plan", "phase")
