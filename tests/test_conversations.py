"""One message per execution and destination, kept up to date; recoveries once.

Through the whole engine against the loopback Slack, Mattermost, PagerDuty and
SMTP servers: a run's later message updates its first one in place and replies
in its thread (Slack, Mattermost), keeps its incident (PagerDuty) or threads by
its headers (email); a deleted first message is replaced by a new one; a
launch plan's success after failures is said once, where the last failure
went; two replicas racing on one execution's first message post one.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
from dataclasses import replace
from datetime import UTC, datetime
from email.parser import BytesParser
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from flytenotify import PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.channels.base import Outcome
from flytenotify.channels.mattermost import MattermostConfig
from flytenotify.channels.slack import SlackChannel
from flytenotify.channels.teams import TeamsTarget
from flytenotify.channels.webhook import DELIVERY_HEADER
from flytenotify.config import (
    DatabaseConfig,
    DispatchConfig,
    GroupingConfig,
    PagerDutyConfig,
    RecoveryConfig,
    RetryConfig,
    ServerConfig,
    Settings,
    SlackConfig,
    WebhookTarget,
)
from flytenotify.domain import (
    PAUSED,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    NotificationSource,
    PausedAction,
    RunRule,
    Thread,
)
from flytenotify.store import store_for_url
from flytenotify.store.postgres import PostgresStore
from flytenotify.web.api import create_app
from tests.helpers import PLAN, event_json, execution, rendered_delivery
from tests.servers.http_sink import HttpSink
from tests.servers.mattermost_api import BOT_TOKEN, MattermostServer
from tests.servers.pagerduty_api import PagerDutyApiServer
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer
from tests.servers.teams_webhook import TeamsWebhookServer

ALERTS = "C0ALERTS01"
ROUTING_KEY = "r" * 32
RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=6, lease=10.0)
TASK = EntityId("proj", "prod", "train", "v3")


def settings_for(database_url: str, **sections: Any) -> Settings:
    # Grouping off: each message goes at once, on its own.
    values: dict[str, Any] = {"retry": RETRY, "grouping": GroupingConfig(by=[]), **sections}
    return Settings(database=DatabaseConfig(url=database_url), **values)


def slack_section(slack: SlackApiServer) -> SlackConfig:
    return SlackConfig(
        bot_token=SecretStr(DEFAULT_TOKEN), base_url=slack.base_url, per_channel_interval=0.0
    )


def run_with(name: str, *recipients: str) -> Execution:
    """A Flyte 2 run of TASK whose rule asks for PAUSED, FAILED and SUCCEEDED."""
    phases = frozenset({PAUSED, P.FAILED, P.SUCCEEDED})
    return Execution(
        id=execution(name),
        launch_plan=TASK,
        notifications=(),
        created_at=datetime.now(UTC),
        source=NotificationSource.FLYTE2,
        rules=(RunRule(phases, name="oncall", recipients=recipients),),
    )


def run_event(run: Execution, phase: int, action: str = "") -> ExecutionEvent:
    paused = PausedAction(action, prompt="Deploy?") if action else None
    error = None
    return ExecutionEvent(run.id, phase, datetime.now(UTC), error=error, paused=paused)


async def report(n: Notifier, run: Execution, phase: int, action: str = "") -> None:
    await n.record_checked_events([run_event(run, phase, action)], {run.id: run})
    await n.run_until_idle(include_retries=True, max_wait=20)


async def deliveries_of(n: Notifier, name: str) -> list[Delivery]:
    found = await n.deliveries()
    return sorted((d for d in found if d.execution_id.name == name), key=lambda d: d.id)


# -- Slack ---------------------------------------------------------------------------------


async def test_slack_a_runs_later_message_updates_the_first_and_replies_in_its_thread(
    database_url: str,
) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(database_url, slack=slack_section(slack))
        run = run_with("gate-1", "#alerts")
        async with Notifier(settings) as n:
            await report(n, run, PAUSED, "approve")
            await report(n, run, P.FAILED)
            first, second = await deliveries_of(n, "gate-1")

    (root,) = slack.top_level(ALERTS)  # one message in the channel, not two
    assert first.provider_message_id == f"{ALERTS}/{root['ts']}"
    assert first.in_reply_to == ""
    # Updated in place to the latest state...
    assert root.get("edited") is True
    assert "failed" in root["text"]
    assert "waiting for input" not in root["text"]
    assert "failed" in root["blocks"][0]["text"]["text"]
    # ...and the thread says what happened.
    (reply,) = slack.replies(ALERTS, root["ts"])
    assert "failed" in reply["text"]
    assert second.in_reply_to == first.provider_message_id
    assert second.provider_message_id == f"{ALERTS}/{reply['ts']}"
    assert {first.status, second.status} == {DeliveryStatus.DELIVERED}
    (update,) = slack.calls_to("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (ALERTS, root["ts"])


@pytest.mark.parametrize("gone", ["message_not_found", "cant_update_message", "edit_window_closed"])
async def test_slack_a_first_message_that_cannot_be_updated_is_replaced_by_a_new_post(
    gone: str, tmp_path: Any
) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", slack=slack_section(slack))
        run = run_with("gate-2", "#alerts")
        async with Notifier(settings) as n:
            await report(n, run, PAUSED, "approve")
            (first,) = await deliveries_of(n, "gate-2")
            ts = first.provider_message_id.split("/")[1]
            if gone == "message_not_found":
                slack.delete(ALERTS, ts)  # someone deleted it
            else:
                slack.fail("chat.update", gone)
            await report(n, run, PAUSED, "approve-again")
            _, second = await deliveries_of(n, "gate-2")
            # The conversation goes on from the new post: the next message replies there.
            await report(n, run, P.FAILED)
            *_, third = await deliveries_of(n, "gate-2")

    assert second.status is DeliveryStatus.DELIVERED
    assert second.in_reply_to == ""  # a new first message, recorded as such
    assert gone in second.last_reply
    assert "posted anew" in second.last_reply
    new_root = second.provider_message_id
    assert new_root
    assert new_root != first.provider_message_id
    assert third.in_reply_to == new_root
    (reply,) = slack.replies(ALERTS, new_root.split("/")[1])
    assert "failed" in reply["text"]


# -- Mattermost ----------------------------------------------------------------------------


async def test_mattermost_a_runs_later_message_patches_the_post_and_replies_under_it(
    database_url: str,
) -> None:
    async with MattermostServer() as mm:
        section = MattermostConfig(url=mm.base, bot_token=SecretStr(BOT_TOKEN), team="ops")
        settings = settings_for(database_url, mattermost=section)
        run = run_with("gate-3", "mattermost:alerts")
        async with Notifier(settings) as n:
            await report(n, run, PAUSED, "approve")
            await report(n, run, PAUSED, "approve-again")
            first, second = await deliveries_of(n, "gate-3")
            (root,) = mm.roots()
            mm.delete(root["id"])
            await report(n, run, P.FAILED)
            *_, third = await deliveries_of(n, "gate-3")

    assert first.provider_message_id == root["id"]
    assert "edit_at" in root
    assert "approve-again" in root["message"]
    (patch,) = [r for r in mm.requests if r.method == "PUT"][:1]
    assert patch.path == f"/api/v4/posts/{root['id']}/patch"
    (reply,) = mm.replies(root["id"])
    assert "waiting for input" in reply["message"]
    assert reply["channel_id"] == root["channel_id"]
    assert second.in_reply_to == root["id"]
    assert second.provider_message_id == reply["id"]
    # The post was deleted: a 404 on the patch, and a new post in its place.
    assert third.in_reply_to == ""
    assert third.status is DeliveryStatus.DELIVERED
    assert "404" in third.last_reply
    assert "posted anew" in third.last_reply
    assert third.provider_message_id in mm.stored


# -- email ---------------------------------------------------------------------------------


async def test_email_a_runs_later_message_is_in_reply_to_its_first(database_url: str) -> None:
    async with SmtpServer() as smtp:
        settings = settings_for(database_url, smtp=smtp.smtp_config())
        run = run_with("gate-4", "ops@example.com")
        async with Notifier(settings) as n:
            await report(n, run, PAUSED, "approve")
            await report(n, run, P.FAILED)
            first, second = await deliveries_of(n, "gate-4")
        received = await smtp.wait_for_messages(2)

    parser = BytesParser(policy=email.policy.default)
    opened, followed = (parser.parsebytes(message.raw) for message in received)
    assert "In-Reply-To" not in opened
    assert "References" not in opened
    assert followed["In-Reply-To"] == opened["Message-ID"]
    assert followed["References"] == opened["Message-ID"]
    assert first.provider_message_id == opened["Message-ID"]
    assert second.provider_message_id == followed["Message-ID"]
    assert second.in_reply_to == opened["Message-ID"]


# -- Teams and webhooks: they cannot edit, so they say what they follow ------------------


async def test_teams_and_webhooks_follow_ups_name_the_earlier_message(database_url: str) -> None:
    async with HttpSink() as sink, TeamsWebhookServer() as teams:
        settings = settings_for(
            database_url,
            webhooks={"ops": WebhookTarget(url=sink.url("/ops"))},
            teams={"ops": TeamsTarget(url=SecretStr(teams.workflow_url))},
        )
        run = run_with("gate-5", "webhook:ops", "teams:ops")
        async with Notifier(settings) as n:
            await report(n, run, PAUSED, "approve")
            await report(n, run, P.FAILED)
            found = await deliveries_of(n, "gate-5")

    opened, followed = (request.json() for request in sink.requests)
    assert opened["follows"] is None
    first_id = sink.requests[0].headers[DELIVERY_HEADER]
    assert followed["follows"] == {"delivery_id": first_id, "execution": "proj/prod/gate-5"}
    assert followed["event"]["phase"] == "FAILED"
    first_card, later_card = (request.card for request in teams.posted)
    assert "Follows" not in json.dumps(first_card)
    assert later_card["body"][0]["text"] == "Follows the earlier message about proj/prod/gate-5"
    hook = [d for d in found if d.channel == "webhook"]
    assert hook[0].provider_message_id == first_id
    assert hook[1].in_reply_to == first_id
    card = [d for d in found if d.channel == "teams"]
    assert card[1].in_reply_to == f"single:{card[0].idempotency_key}"


# -- recoveries ----------------------------------------------------------------------------


async def fail_then_succeed(n: Notifier, failed: list[str], succeeded: list[str]) -> None:
    for name in failed:
        await n.create_execution(execution(name), PLAN)
        await n.report_event(event_json(name, "FAILED", error="disk full"))
        await n.run_until_idle(include_retries=True, max_wait=20)
    for name in succeeded:
        await n.create_execution(execution(name), PLAN)
        await n.report_event(event_json(name, "SUCCEEDED"))
        await n.run_until_idle(include_retries=True, max_wait=20)


async def test_slack_a_recovery_replies_once_in_the_last_failures_thread(
    database_url: str,
) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(database_url, slack=slack_section(slack))
        async with Notifier(settings) as n:
            await n.register_launch_plan(PLAN, [Slack([P.FAILED], ["#alerts"])])
            await fail_then_succeed(n, ["etl-1", "etl-2", "etl-3"], ["etl-4", "etl-5"])
            recoveries = [d for d in await n.deliveries() if d.is_recovery]
            shown = await shown_by_api_and_console(n, recoveries[0].id)

    first, second, last = slack.top_level(ALERTS)  # the failures; nothing new on top
    assert not slack.replies(ALERTS, first["ts"])
    assert not slack.replies(ALERTS, second["ts"])
    (reply,) = slack.replies(ALERTS, last["ts"])  # the success after them, once
    assert "nightly succeeded again after 3 failures" in reply["text"]
    assert "etl-4" in reply["text"]
    # The last failure's message, marked recovered: still about its own execution.
    assert last.get("edited") is True
    assert "etl-3" in last["text"]
    assert "failed" in last["text"]
    assert "Recovered" in str(last["blocks"][-1])
    (recovery,) = recoveries
    assert (recovery.execution_id.name, recovery.follows) == ("etl-4", "proj/prod/etl-3")
    assert recovery.in_reply_to == f"{ALERTS}/{last['ts']}"
    assert recovery.status is DeliveryStatus.DELIVERED
    api, page = shown
    assert api["provider_message_id"] == recovery.provider_message_id
    assert api["in_reply_to"] == recovery.in_reply_to
    assert api["follows"] == "proj/prod/etl-3"
    assert recovery.provider_message_id in page
    assert recovery.in_reply_to in page


async def fail_together_then_succeed(n: Notifier, failed: list[str], succeeded: str) -> None:
    """``failed`` reported before anything is sent, so one claim folds them into a
    digest; then ``succeeded``, once the digest went out."""
    for name in failed:
        await n.create_execution(execution(name), PLAN)
        await n.report_event(event_json(name, "FAILED", error="disk full"))
    await n.run_until_idle(include_retries=True, max_wait=20)
    await n.create_execution(execution(succeeded), PLAN)
    await n.report_event(event_json(succeeded, "SUCCEEDED"))
    await n.run_until_idle(include_retries=True, max_wait=20)


STORM = GroupingConfig(window=0.2)  # by destination and launch plan, the default


async def test_slack_a_digests_message_is_updated_and_its_executions_follow_it(
    database_url: str,
) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(database_url, slack=slack_section(slack), grouping=STORM)
        async with Notifier(settings) as n:
            await n.register_launch_plan(PLAN, [Slack([P.FAILED], ["#alerts"])])
            await fail_together_then_succeed(n, ["etl-1", "etl-2", "etl-3"], "etl-4")
            failures = [d for d in await n.deliveries() if d.phase == P.FAILED]
            (recovery,) = [d for d in await n.deliveries() if d.is_recovery]

    (digest,) = slack.top_level(ALERTS)  # one message for the storm, and nothing new on top
    assert "3 executions of nightly failed" in digest["text"]
    assert {f.provider_message_id for f in failures} == {f"{ALERTS}/{digest['ts']}"}
    # The success after them replies in the digest's thread...
    (reply,) = slack.replies(ALERTS, digest["ts"])
    assert "nightly succeeded again after 3 failures" in reply["text"]
    assert recovery.in_reply_to == f"{ALERTS}/{digest['ts']}"
    assert recovery.follows == "proj/prod/etl-3"
    # ... and the digest is updated in place: still the digest, marked recovered.
    (update,) = slack.calls_to("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (ALERTS, digest["ts"])
    assert digest.get("edited") is True
    assert all(name in digest["text"] for name in ("etl-1", "etl-2", "etl-3"))
    assert "3 executions of nightly failed" in str(digest["blocks"][0])
    assert "Recovered" in str(digest["blocks"][-1])


async def test_mattermost_a_digests_post_is_patched_and_its_executions_follow_it(
    database_url: str,
) -> None:
    async with MattermostServer() as mm:
        section = MattermostConfig(url=mm.base, bot_token=SecretStr(BOT_TOKEN), team="ops")
        settings = settings_for(database_url, mattermost=section, grouping=STORM)
        async with Notifier(settings) as n:
            plan = [Slack([P.FAILED], ["mattermost:alerts"])]
            await n.register_launch_plan(PLAN, plan)
            await fail_together_then_succeed(n, ["etl-1", "etl-2"], "etl-3")
            (recovery,) = [d for d in await n.deliveries() if d.is_recovery]

    (root,) = mm.roots()
    assert "2 executions of nightly failed" in root["message"]
    assert "edit_at" in root
    assert "**Recovered:**" in root["message"]
    assert "etl-1" in root["message"]
    assert "etl-2" in root["message"]
    (reply,) = mm.replies(root["id"])
    assert "succeeded again after 2 failures" in reply["message"]
    assert recovery.in_reply_to == root["id"]


async def shown_by_api_and_console(n: Notifier, delivery_id: int) -> tuple[dict[str, Any], str]:
    """The delivery as ``GET /api/v1/deliveries/{id}`` answers it, and its console page."""
    app = create_app(n, ServerConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        api = await client.get(f"/api/v1/deliveries/{delivery_id}")
        page = await client.get(f"/ui/deliveries/{delivery_id}")
    assert api.status_code == 200
    assert page.status_code == 200
    return api.json(), page.text


async def test_pagerduty_a_recovery_resolves_the_failures_own_incident(
    database_url: str,
) -> None:
    async with PagerDutyApiServer() as pagerduty:
        section = PagerDutyConfig(
            events_url=pagerduty.events_url,
            routing_keys={"data-oncall": SecretStr(ROUTING_KEY)},
            dedup="execution",  # each failure its own incident
        )
        settings = settings_for(database_url, pagerduty=section)
        async with Notifier(settings) as n:
            await n.register_launch_plan(PLAN, [PagerDuty([P.FAILED], ["data-oncall"])])
            await fail_then_succeed(n, ["etl-1", "etl-2"], ["etl-3", "etl-4"])

    actions = [(event["event_action"], event["dedup_key"]) for event in pagerduty.accepted]
    assert actions == [
        ("trigger", "proj/prod/etl-1"),
        ("trigger", "proj/prod/etl-2"),
        ("resolve", "proj/prod/etl-2"),  # the last failure's incident, once
    ]


async def test_recoveries_can_be_turned_off_for_a_launch_plan_or_everywhere(
    tmp_path: Any,
) -> None:
    async with SlackApiServer() as slack:
        for name, recovery in (
            ("excluded", RecoveryConfig(exclude=["nightly"])),
            ("scoped", RecoveryConfig(exclude=["proj/prod/nightly"])),
            ("off", RecoveryConfig(enabled=False)),
        ):
            settings = settings_for(
                f"sqlite:///{tmp_path / name}.db", slack=slack_section(slack), recovery=recovery
            )
            async with Notifier(settings) as n:
                await n.register_launch_plan(PLAN, [Slack([P.FAILED], ["#alerts"])])
                await fail_then_succeed(n, [f"{name}-1"], [f"{name}-2"])
                assert not [d for d in await n.deliveries() if d.is_recovery]
    assert all(not slack.replies(ALERTS, m["ts"]) for m in slack.top_level(ALERTS))


def test_an_exclusion_is_a_name_or_a_full_launch_plan() -> None:
    with pytest.raises(ValueError, match="PROJECT/DOMAIN/NAME"):
        RecoveryConfig(exclude=["proj/nightly"])


# -- two replicas, one ledger ----------------------------------------------------------------


async def test_replicas_joining_one_conversation_at_once_agree_on_one_first_message(
    postgres_url: str,
) -> None:
    """The ledger's part: of many joins racing per conversation, exactly one is first."""
    stores = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    for store in stores:
        await store.open()
    try:
        keys = [f"proj/prod/run-{i}|slack|#alerts" for i in range(30)]
        joins = [
            store.join_conversation(key, delivery_id)
            for key in keys
            for delivery_id, store in ((1, stores[0]), (2, stores[1]), (3, stores[0]))
        ]
        found = await asyncio.gather(*joins)
    finally:
        for store in stores:
            await store.close()
    by_key: dict[str, set[int]] = {}
    for key, conversation in zip([k for k in keys for _ in range(3)], found, strict=True):
        by_key.setdefault(key, set()).add(conversation.root_delivery)
        assert conversation.thread is None
    assert all(len(roots) == 1 for roots in by_key.values())


async def test_replicas_joining_a_claims_conversations_at_once_agree_on_each_first(
    database_url: str,
) -> None:
    """join_conversations, a claim's joins in one statement: replicas racing on the
    same conversations (in their sorted order, as the dispatcher gives them) agree."""
    stores = [store_for_url(database_url), store_for_url(database_url)]
    for store in stores:
        await store.open()
    keys = sorted(f"proj/prod/run-{i}|slack|#alerts" for i in range(30))
    try:
        found = await asyncio.gather(
            *(
                store.join_conversations([(key, delivery_id) for key in keys])
                for delivery_id, store in ((1, stores[0]), (2, stores[1]))
            )
        )
        again = await stores[0].join_conversations([(keys[0], 3)])
    finally:
        for store in stores:
            await store.close()
    first, second = found
    assert set(first) == set(second) == set(keys)
    for key in keys:
        assert first[key].root_delivery == second[key].root_delivery
        assert first[key].root_delivery in (1, 2)
        assert first[key].thread is None
    # A later join finds the conversation opened, and joins it.
    assert again[keys[0]].root_delivery == first[keys[0]].root_delivery


async def test_two_replicas_racing_on_one_executions_first_message_post_one(
    postgres_url: str,
) -> None:
    """Two dispatchers on one PostgreSQL ledger, each claiming one of an execution's
    two messages to one channel at once: one posts, the other waits and threads."""
    async with SlackApiServer() as slack:
        slack.delay = 0.5  # the first post is still in flight when the other looks
        settings = settings_for(
            postgres_url,
            slack=slack_section(slack),
            dispatch=DispatchConfig(per_channel={"slack": 1}),
        )
        async with Notifier(settings) as a, Notifier(settings) as b:
            await a.register_launch_plan(
                PLAN,
                [Slack([P.FAILED], ["#alerts"]), Slack([P.FAILED, P.SUCCEEDED], ["#alerts"])],
            )
            await a.create_execution(execution("race-1"), PLAN)
            await a.report_event(event_json("race-1", "FAILED", error="boom"))
            await asyncio.gather(
                a.run_until_idle(include_retries=True, max_wait=30),
                b.run_until_idle(include_retries=True, max_wait=30),
            )
            found = await deliveries_of(a, "race-1")

    (root,) = slack.top_level(ALERTS)
    (reply,) = slack.replies(ALERTS, root["ts"])
    assert "failed" in reply["text"]
    roots = [d for d in found if not d.in_reply_to]
    (first,) = roots
    assert first.provider_message_id == f"{ALERTS}/{root['ts']}"
    assert [d.in_reply_to for d in found if d is not first] == [first.provider_message_id]
    assert {d.status for d in found} == {DeliveryStatus.DELIVERED}


async def test_a_first_message_whose_send_failed_is_taken_over_by_the_next(
    database_url: str,
) -> None:
    """The first delivery's post fails (Slack 500) and waits for its retry: the
    next delivery of the conversation posts first, and the retry follows it."""
    async with SlackApiServer() as slack:
        slack.fail("chat.postMessage", "internal_error", status=500)
        settings = settings_for(
            database_url,
            slack=slack_section(slack),
            dispatch=DispatchConfig(per_channel={"slack": 1}),  # one at a time, in order
            retry=RETRY.model_copy(update={"base_delay": 1.0, "max_delay": 1.0}),
        )
        async with Notifier(settings) as n:
            await n.register_launch_plan(
                PLAN,
                [Slack([P.FAILED], ["#alerts"]), Slack([P.FAILED, P.SUCCEEDED], ["#alerts"])],
            )
            await n.create_execution(execution("flaky-1"), PLAN)
            await n.report_event(event_json("flaky-1", "FAILED", error="boom"))
            await n.run_until_idle(include_retries=True, max_wait=30)
            # Whichever was claimed first failed (its attempts say which).
            took_over, failed_first = sorted(
                await deliveries_of(n, "flaky-1"), key=lambda d: d.attempts
            )

    (root,) = slack.top_level(ALERTS)
    (reply,) = slack.replies(ALERTS, root["ts"])
    assert "failed" in reply["text"]
    assert took_over.in_reply_to == ""
    assert took_over.provider_message_id == f"{ALERTS}/{root['ts']}"
    assert failed_first.attempts == 2
    assert failed_first.in_reply_to == took_over.provider_message_id
    assert failed_first.provider_message_id == f"{ALERTS}/{reply['ts']}"


async def test_slack_a_first_message_it_cannot_address_is_not_updated_but_posted_anew() -> None:
    """A conversation begun through an incoming webhook has no Slack id: with a bot
    token now, the next message is a new first one, not a chat.update of nonsense."""
    delivery = rendered_delivery("slack", "slack", "#alerts")
    threaded = replace(delivery, thread=Thread("single:proj/dev/e1/6/0/slack/#alerts"))
    async with SlackApiServer() as slack:
        channel = SlackChannel(slack_section(slack))
        try:
            result = await channel.send(threaded)
        finally:
            await channel.close()
    assert result.outcome is Outcome.DELIVERED
    assert (result.in_reply_to, slack.calls_to("chat.update")) == ("", [])
    (root,) = slack.top_level(ALERTS)
    assert result.provider_message_id == f"{ALERTS}/{root['ts']}"


def test_a_delivery_s_conversation_is_its_execution_and_destination() -> None:
    delivery = Delivery(
        id=1,
        idempotency_key="k",
        execution_id=ExecutionId("p", "d", "run"),
        phase=P.FAILED,
        notification_index=0,
        kind="slack",
        channel="slack",
        recipient="#alerts",
        message=None,  # type: ignore[arg-type]
        status=DeliveryStatus.PENDING,
        attempts=0,
        created_at=datetime.now(UTC),
    )
    assert delivery.conversation == "p/d/run|slack|#alerts"
    assert replace(delivery, follows="p/d/failed").conversation == "p/d/failed|slack|#alerts"
