"""Answering from Slack: the buttons on flytenotify's messages, clicked.

The loopback Slack holds the messages flytenotify posted, and makes the
interactivity callback Slack sends for a click on one of their buttons, signed
with the app's signing secret as Slack signs; it goes to the app's Request URL
(``/api/v1/chat/slack/interactions``). What the message reads afterwards, what
FlyteAdmin was sent and what the ledger holds are asserted, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from flytenotify import Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import (
    ActionsConfig,
    DatabaseConfig,
    DeadlineSpec,
    GroupingConfig,
    Settings,
    SlackConfig,
    TemplateConfig,
)
from flytenotify.domain import (
    DeadlineId,
    DeliveryStatus,
    EntityId,
    ExecutionEvent,
    ExecutionId,
    TimerKind,
)
from flytenotify.intake.egress import EgressIntake
from flytenotify.intake.source import Received
from flytenotify.metrics import Metrics
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.chat import SLACK_ANSWER_WITHIN, WORKING
from tests import flyteadmin_egress, gates
from tests.chat import fail, failing_run, serving
from tests.flyteadmin_egress import workflow_event
from tests.helpers import event_json
from tests.servers.flyteadmin import FlyteAdminServer, admin_execution
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer

ALERTS = "C0ALERTS01"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/api/v1/chat/slack/interactions"
ALICE, MALLORY = "U0ALICE", "U0MALLORY"
WAIT = 20.0


def slack_section(slack: SlackApiServer, secret: str | None = SECRET) -> SlackConfig:
    return SlackConfig(
        bot_token=SecretStr(DEFAULT_TOKEN),
        base_url=slack.base_url,
        per_channel_interval=0.0,
        signing_secret=SecretStr(secret) if secret else None,
    )


def settings_for(
    database_url: str, slack: SlackApiServer, secret: str | None = SECRET, **more: Any
) -> Settings:
    values: dict[str, Any] = {
        "database": DatabaseConfig(url=database_url),
        "grouping": GroupingConfig(by=[]),
        "slack": slack_section(slack, secret),
        "templates": TemplateConfig(console_url="https://flyte.example.com/console"),
        **more,
    }
    return Settings(**values)


async def wait_until(check: Callable[[], Any], what: str) -> Any:
    deadline_at = time.monotonic() + WAIT
    while not (found := check()):
        assert time.monotonic() < deadline_at, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return found


def root_ts(slack: SlackApiServer) -> str:
    (root,) = slack.top_level(ALERTS)
    return str(root["ts"])


def notes(slack: SlackApiServer, ts: str) -> list[str]:
    """What the context blocks of a message say (where answers are shown)."""
    return [
        element["text"]
        for block in slack.messages[(ALERTS, ts)]["blocks"]
        if block["type"] == "context"
        for element in block["elements"]
    ]


async def click(
    client: httpx.AsyncClient,
    slack: SlackApiServer,
    ts: str,
    action: str,
    user: str = ALICE,
    **signing: Any,
) -> tuple[httpx.Response, tuple[bytes, dict[str, str]]]:
    """Click a button as Slack calls back: the answer, and the callback (to replay)."""
    sent = slack.interaction(
        ALERTS,
        ts,
        f"flytenotify_{action}",
        user_id=user,
        signing_secret=signing.pop("secret", SECRET),
        **signing,
    )
    return await replay(client, sent), sent


async def replay(client: httpx.AsyncClient, sent: tuple[bytes, dict[str, str]]) -> httpx.Response:
    body, headers = sent
    return await client.post(URL, content=body, headers=headers)


async def timers_gone(notifier: Notifier, ident: DeadlineId) -> None:
    for _ in range(int(WAIT / 0.05)):
        if not await notifier.deadline_timers(ident):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"deadline {ident}'s timers never came due")


# -- Acknowledge -------------------------------------------------------------------------------


async def test_acknowledge_updates_the_message_records_who_and_stops_the_deadlines_alerts(
    database_url: str,
) -> None:
    deadline = DeadlineSpec.model_validate(
        {"recipients": ["#alerts"], "max_queued": "1s", "max_running": "1s"}
    ).deadline(DeadlineId("proj", "prod", "etl-sla"))
    run = ExecutionId("proj", "prod", "e1")
    async with (
        SlackApiServer() as slack,
        serving(settings_for(database_url, slack)) as (notifier, client),
    ):
        notifier.start_dispatching()
        await notifier.put_deadline(deadline)
        await notifier.report_event(workflow_event("e1", "QUEUED", project="proj", domain="prod"))
        await wait_until(lambda: slack.posts(ALERTS), "the deadline's alert")
        ts = root_ts(slack)
        assert "flytenotify_ack" in slack.buttons(ALERTS, ts)

        answer, sent = await click(client, slack, ts, "ack")
        assert answer.status_code == 200, answer.text
        (ack,) = await notifier.acknowledgements(run)
        assert (ack.actor, ack.proof, ack.message) == (
            "slack:U0ALICE",
            "slack-signature",
            f"{ALERTS}/{ts}",
        )
        shown = notes(slack, ts)[-1]
        assert shown == f"Acknowledged by <@{ALICE}> at {ack.acknowledged_at:%H:%M} UTC"
        assert "flytenotify_ack" not in slack.buttons(ALERTS, ts)
        (update,) = slack.calls_to("chat.update")
        assert (update.body["channel"], update.body["ts"]) == (ALERTS, ts)

        # The audit trail shows it: the API's execution and the console's timeline.
        detail = (await client.get("/api/v1/executions/proj/prod/e1")).json()
        (shown_ack,) = detail["acknowledgements"]
        assert (shown_ack["actor"], shown_ack["message"]) == (ack.actor, ack.message)
        page = (await client.get("/ui/executions/proj/prod/e1")).text
        assert 'Acknowledged</strong> by <span class="wrap">slack:U0ALICE</span>' in page

        # The same callback again (a replay within Slack's window): nothing new.
        again = await replay(client, sent)
        assert again.status_code == 200
        assert len(await notifier.acknowledgements(run)) == 1
        assert notes(slack, ts)[-1].startswith(f"Already acknowledged by <@{ALICE}> at ")

        # Running past max_running now alerts nobody: the timer is dropped unsaid.
        await notifier.report_event(workflow_event("e1", "RUNNING", project="proj", domain="prod"))
        ident = DeadlineId("proj", "prod", "etl-sla")
        assert set(await notifier.deadline_timers(ident)) == {"max_running"}
        await timers_gone(notifier, ident)
        alerts = await notifier.deadline_alerts(ident)
        assert [a.breach for a in alerts] == [TimerKind.MAX_QUEUED]
        assert len(await notifier.deliveries(DeliveryFilter(execution=run))) == 1
    assert len(slack.posts(ALERTS)) == 1
    # The CLI shows it too.
    show = ["executions", "show", "proj/prod/e1", "--db", database_url]
    shown = await asyncio.to_thread(CliRunner().invoke, main, [*show, "--json"])
    assert shown.exit_code == 0, shown.output
    (listed,) = json.loads(shown.output)["acknowledgements"]
    assert listed["actor"] == "slack:U0ALICE"
    text = await asyncio.to_thread(CliRunner().invoke, main, show)
    assert "acknowledged: by slack:U0ALICE at " in text.output


async def test_a_later_state_rewriting_the_message_still_says_who_acknowledged_it(
    database_url: str,
) -> None:
    """A run late to start is acknowledged from its alert; its failure then rewrites
    that message: the note stays, and Acknowledge is not offered again."""
    deadline = DeadlineSpec.model_validate({"recipients": ["#alerts"], "max_queued": "1s"})
    run = failing_run("late1", "#alerts")
    async with (
        SlackApiServer() as slack,
        serving(settings_for(database_url, slack)) as (notifier, client),
    ):
        notifier.start_dispatching()
        await notifier.put_deadline(deadline.deadline(DeadlineId("proj", "prod", "start-sla")))
        queued = ExecutionEvent(run.id, P.QUEUED, datetime.now(UTC))
        await notifier.record_checked_events([queued], {run.id: run})
        await wait_until(lambda: slack.posts(ALERTS), "the deadline's alert")
        ts = root_ts(slack)
        answer, _ = await click(client, slack, ts, "ack")
        assert answer.status_code == 200, answer.text
        (ack,) = await notifier.acknowledgements(run.id)

        await fail(notifier, run)
        await wait_until(lambda: slack.replies(ALERTS, ts), "the failure's reply")
    acknowledged = f"Acknowledged by <@{ALICE}> at {ack.acknowledged_at:%H:%M} UTC"
    clicked, *rewrites = slack.calls_to("chat.update")
    assert acknowledged in str(clicked.body["blocks"])
    # The failure and the deadline's end each rewrote the message, and neither took
    # the note off; the failure's asks for no second acknowledgement.
    assert len(rewrites) == 2
    assert all(acknowledged in str(update.body["blocks"]) for update in rewrites)
    (failure,) = [u for u in rewrites if u.body["text"].startswith(":x: Execution")]
    offered = [
        element["action_id"]
        for block in failure.body["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]
    assert offered == ["flytenotify_mute_1h", "flytenotify_mute_4h", "flytenotify_open_console"]
    assert acknowledged in notes(slack, ts)
    assert len(slack.top_level(ALERTS)) == 1


# -- Mute -------------------------------------------------------------------------------------


async def test_mute_for_an_hour_silences_the_launch_plans_next_failure(database_url: str) -> None:
    async with (
        SlackApiServer() as slack,
        serving(settings_for(database_url, slack)) as (notifier, client),
    ):
        await fail(notifier, failing_run("r1", "#alerts"))
        ts = root_ts(slack)
        assert {"flytenotify_mute_1h", "flytenotify_mute_4h"} <= set(slack.buttons(ALERTS, ts))

        answer, sent = await click(client, slack, ts, "mute_1h")
        assert answer.status_code == 200, answer.text
        silences, _ = await notifier.silences(active=True)
        (silence,) = silences
        assert (silence.project, silence.domain, silence.launch_plan) == (
            "proj",
            "prod",
            "train",
        )
        assert (silence.author, silence.comment) == ("slack:U0ALICE", "muted from Slack")
        assert silence.ends_at is not None
        hour = (silence.ends_at - silence.starts_at).total_seconds()
        assert hour == 3600
        assert notes(slack, ts)[-1] == (
            f"Launch plan train muted by <@{ALICE}> until"
            f" {silence.ends_at:%H:%M} UTC (silence {silence.id})"
        )
        # A replay makes no second silence.
        await replay(client, sent)
        assert len((await notifier.silences(active=True))[0]) == 1
        assert "already muted" in notes(slack, ts)[-1]

        await fail(notifier, failing_run("r2", "#alerts"))
        (held,) = await notifier.deliveries(
            DeliveryFilter(execution=ExecutionId("proj", "prod", "r2"))
        )
    assert held.status is DeliveryStatus.SILENCED
    assert held.silence_id == silence.id
    assert len(slack.top_level(ALERTS)) == 1  # r2's failure was not posted


async def test_acknowledge_and_mute_can_be_kept_to_the_people_actions_allow(
    database_url: str,
) -> None:
    allowed = {
        "acknowledge_and_mute": "allowed",
        "allow": [{"project": "proj", "actors": [f"slack:{ALICE}"], "actions": ["abort"]}],
    }
    async with SlackApiServer() as slack:
        settings = settings_for(database_url, slack, actions=ActionsConfig.model_validate(allowed))
        async with serving(settings) as (notifier, client):
            run = await fail(notifier, failing_run("r3", "#alerts"))
            ts = root_ts(slack)
            assert {"flytenotify_ack", "flytenotify_mute_1h"} <= set(slack.buttons(ALERTS, ts))

            for action in ("ack", "mute_4h"):
                answer, _ = await click(client, slack, ts, action, user=MALLORY)
                assert answer.status_code == 200, answer.text
            refused = notes(slack, ts)[-2:]
            assert await notifier.acknowledgements(run) == []
            assert (await notifier.silences(active=True))[0] == []
            assert "flytenotify_ack" in slack.buttons(ALERTS, ts)  # still Alice's to click

            answer, _ = await click(client, slack, ts, "ack")
            assert answer.status_code == 200, answer.text
            (ack,) = await notifier.acknowledgements(run)
    assert refused == [
        f"Refused: <@{MALLORY}> is not allowed to acknowledge here",
        f"Refused: <@{MALLORY}> is not allowed to mute here",
    ]
    assert ack.actor == f"slack:{ALICE}"


# -- Approve, refused, replayed --------------------------------------------------------------

RUN = gates.recorded_execution()
NODES = {node.metadata.name: node for node in gates.gate_nodes()}


@pytest.fixture
def admin() -> Iterator[FlyteAdminServer]:
    plan = EntityId(RUN.project, RUN.domain, "release", "v1")
    with FlyteAdminServer() as server:
        server.add(admin_execution(RUN, launch_plan=plan, workflow=plan))
        server.reach_gates(RUN, gates.template(), only=["approve-deploy"])
        yield server


def node_message(gate: str) -> Received:
    event = gates.gate_node_event(RUN, NODES[gate])
    return Received(flyteadmin_egress.v2_node(event).nats_json(), position=f"node {gate}")


def gate_settings(
    database_url: str, admin: FlyteAdminServer, slack: SlackApiServer, allow: dict[str, Any]
) -> Settings:
    """FlyteAdmin's gates announced to #alerts ([waiting]), answered as ``allow`` lets."""
    return Settings.model_validate(
        {
            "database": {"url": database_url},
            "flyteadmin": admin.config().model_dump(exclude_none=True),
            "slack": slack_section(slack).model_dump(mode="python"),
            "waiting": {"releases": {"recipients": ["#alerts"]}},
            "actions": {"allow": [{"project": RUN.project, **allow}]},
        }
    )


async def announce(notifier: Notifier, slack: SlackApiServer, gate: str) -> str:
    """The egress says RUN reached ``gate``; the ts of the message announcing it."""
    await EgressIntake(notifier, Metrics(), "nats").handle([node_message(gate)])
    await notifier.run_until_idle(include_retries=True, max_wait=WAIT)
    return root_ts(slack)


async def test_approve_from_slack_sets_the_signal_once_and_a_stranger_is_refused(
    database_url: str, admin: FlyteAdminServer
) -> None:
    async with SlackApiServer() as slack:
        settings = gate_settings(database_url, admin, slack, {"actors": ["slack:U0ALICE"]})
        async with serving(settings) as (notifier, client):
            ts = await announce(notifier, slack, "approve-deploy")
            assert slack.buttons(ALERTS, ts)[:2] == ["flytenotify_approve", "flytenotify_reject"]

            refused, _ = await click(client, slack, ts, "approve", user=MALLORY)
            assert refused.status_code == 200
            assert notes(slack, ts)[-1] == f"Refused: <@{MALLORY}> is not allowed to approve here"
            assert admin.requests_to("SetSignal") == []
            assert "flytenotify_approve" in slack.buttons(ALERTS, ts)  # still to be answered

            approved, sent = await click(client, slack, ts, "approve")
            assert approved.status_code == 200
            assert admin.signal_value(RUN, "approve-deploy").scalar.primitive.boolean is True
            shown = notes(slack, ts)[-1]
            assert shown.startswith(f"Approved by <@{ALICE}> at ")
            assert "flytenotify_approve" not in slack.buttons(ALERTS, ts)
            assert "flytenotify_reject" not in slack.buttons(ALERTS, ts)

            replayed = await replay(client, sent)
            assert replayed.status_code == 200
            assert notes(slack, ts)[-1].startswith("Already approved by slack:U0ALICE at ")
            history = await notifier.action_history(RUN)
    assert len(admin.requests_to("SetSignal")) == 1
    assert [(a.actor, a.outcome.value) for a in history] == [
        ("slack:U0MALLORY", "refused"),
        ("slack:U0ALICE", "done"),
    ]
    assert history[1].proof == "slack-signature"


async def test_a_slack_group_entry_allows_its_members_as_slack_says(
    database_url: str, admin: FlyteAdminServer
) -> None:
    async with SlackApiServer() as slack:
        slack.usergroups["S0RELEASE"] = [ALICE, "U0BOB"]
        groups = ["slack-group:S0RELEASE", "slack-group:S0GONE"]
        allow = {"actions": ["approve", "reject"], "actors": groups}
        settings = gate_settings(database_url, admin, slack, allow)
        async with serving(settings) as (notifier, client):
            ts = await announce(notifier, slack, "approve-deploy")
            # A group entry alone offers the buttons.
            assert slack.buttons(ALERTS, ts)[:2] == ["flytenotify_approve", "flytenotify_reject"]

            await click(client, slack, ts, "approve", user=MALLORY)
            assert notes(slack, ts)[-1] == f"Refused: <@{MALLORY}> is not allowed to approve here"
            assert admin.requests_to("SetSignal") == []

            await click(client, slack, ts, "approve")
            assert admin.signal_value(RUN, "approve-deploy").scalar.primitive.boolean is True
            assert notes(slack, ts)[-1].startswith(f"Approved by <@{ALICE}> at ")
            history = await notifier.action_history(RUN)
    # Each group named was asked of Slack: a listed one once (cached), one Slack
    # does not know at each click (nobody is in it, and that is not remembered).
    asked = sorted(c.body["usergroup"] for c in slack.calls_to("usergroups.users.list"))
    assert asked == ["S0GONE", "S0GONE", "S0RELEASE"]
    assert [(a.actor, a.outcome.value) for a in history] == [
        ("slack:U0MALLORY", "refused"),
        ("slack:U0ALICE", "done"),
    ]


@pytest.fixture
def admin_at_replicas() -> Iterator[FlyteAdminServer]:
    """FlyteAdmin with the run waiting at its typed gate alone."""
    plan = EntityId(RUN.project, RUN.domain, "release", "v1")
    with FlyteAdminServer() as server:
        server.add(admin_execution(RUN, launch_plan=plan, workflow=plan))
        server.reach_gates(RUN, gates.template(), only=["replicas"])
        yield server


async def test_a_typed_gate_is_answered_in_a_modal_its_value_checked_first(
    database_url: str, admin_at_replicas: FlyteAdminServer
) -> None:
    admin = admin_at_replicas
    async with SlackApiServer() as slack:
        settings = gate_settings(database_url, admin, slack, {"actors": ["slack:U0ALICE"]})
        async with serving(settings) as (notifier, client):
            ts = await announce(notifier, slack, "replicas")
            assert slack.buttons(ALERTS, ts)[0] == "flytenotify_answer"

            opened, _ = await click(client, slack, ts, "answer")
            assert opened.status_code == 200
            assert opened.content == b""  # the modal is open: nothing else to say
            (view,) = slack.views

            async def submit(value: str) -> httpx.Response:
                sent = slack.submission(view, value, user_id=ALICE, signing_secret=SECRET)
                return await replay(client, sent)

            wrong = await submit("three")
            assert wrong.status_code == 200
            assert wrong.json() == {
                "response_action": "errors",
                "errors": {"value": "Refused: the gate expects an integer (int), got 'three'"},
            }
            assert admin.requests_to("SetSignal") == []

            right = await submit("3")
            assert right.status_code == 200
            assert right.content == b""  # the modal closes
            again = await submit("4")
            assert again.content == b""
    assert admin.signal_value(RUN, "replicas").scalar.primitive.integer == 3
    assert len(admin.requests_to("SetSignal")) == 1
    said, repeated = [m["text"] for m in slack.replies(ALERTS, ts)]
    assert said.startswith(f"Signalled by <@{ALICE}> at ")
    assert said.endswith(": set replicas to 3")
    assert repeated.startswith("Already signalled by slack:U0ALICE at ")


async def test_relaunch_from_a_failure_message_where_actions_allow_it(
    database_url: str, admin: FlyteAdminServer
) -> None:
    plan = EntityId(RUN.project, RUN.domain, "release", "v1")
    allow = [{"project": RUN.project, "actors": ["slack:*"], "actions": ["relaunch"]}]
    async with SlackApiServer() as slack:
        settings = Settings.model_validate(
            {
                "database": {"url": database_url},
                "flyteadmin": admin.config().model_dump(exclude_none=True),
                "slack": slack_section(slack).model_dump(mode="python"),
                "actions": {"allow": allow},
            }
        )
        async with serving(settings) as (notifier, client):
            await notifier.register_launch_plan(plan, [Slack([P.FAILED], ["#alerts"])])
            await notifier.create_execution(RUN, launch_plan=plan)
            failed = event_json(
                RUN.name, "FAILED", project=RUN.project, domain=RUN.domain, error="boom"
            )
            await notifier.report_event(failed)
            await notifier.run_until_idle(include_retries=True, max_wait=WAIT)
            ts = root_ts(slack)
            # Relaunch is allowed to Slack users here; recover is not: no button for it.
            assert [b for b in slack.buttons(ALERTS, ts) if b != "flytenotify_open_console"] == [
                "flytenotify_ack",
                "flytenotify_mute_1h",
                "flytenotify_mute_4h",
                "flytenotify_relaunch",
            ]
            answer, _ = await click(client, slack, ts, "relaunch", user=MALLORY)
            assert answer.status_code == 200
            (record,) = await notifier.action_history(RUN)
    assert len(admin.requests_to("RelaunchExecution")) == 1
    assert (record.actor, record.outcome.value) == ("slack:U0MALLORY", "done")
    assert notes(slack, ts)[-1].startswith(f"Relaunched by <@{MALLORY}> at ")
    assert notes(slack, ts)[-1].endswith(f": {record.result}")
    assert "flytenotify_relaunch" not in slack.buttons(ALERTS, ts)


async def test_a_click_slower_than_slacks_3_seconds_is_answered_at_once_and_shown_later(
    tmp_path: Any,
) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", slack)
        async with serving(settings) as (notifier, client):
            run = await fail(notifier, failing_run("r9", "#alerts"))
            ts = root_ts(slack)
            slack.delay = SLACK_ANSWER_WITHIN + 1.0  # chat.update takes longer than Slack waits
            answer, _ = await click(client, slack, ts, "ack")
            assert answer.status_code == 200
            assert answer.json()["text"] == WORKING
            assert len(await notifier.acknowledgements(run)) == 1  # done before the update
            await wait_until(lambda: slack.calls_to("chat.update"), "the message's update")
    assert notes(slack, ts)[-1].startswith(f"Acknowledged by <@{ALICE}> at ")


# -- refused before anything is done ------------------------------------------------------------


async def test_forged_stale_and_malformed_callbacks_change_nothing(tmp_path: Any) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", slack)
        async with serving(settings) as (notifier, client):
            await fail(notifier, failing_run("r3", "#alerts"))
            ts = root_ts(slack)
            forged, _ = await click(client, slack, ts, "ack", secret="not-the-signing-secret")
            stale, _ = await click(client, slack, ts, "ack", timestamp=int(time.time()) - 6 * 60)
            body, headers = slack.interaction(
                ALERTS, ts, "flytenotify_ack", user_id=ALICE, signing_secret=SECRET
            )
            altered = await client.post(
                URL, content=body.replace(b"ack", b"mute_4h"), headers=headers
            )
            unsigned = await client.post(URL, content=body)
            acknowledged = await notifier.acknowledgements(ExecutionId("proj", "prod", "r3"))
            silences, _ = await notifier.silences()
    for answer in (forged, altered):
        assert answer.status_code == 401
        assert answer.json()["problems"][0]["field"] == "X-Slack-Signature"
    assert stale.status_code == 401
    assert "stale" in stale.json()["problems"][0]["message"]
    assert unsigned.status_code == 401
    assert unsigned.json()["problems"][0]["field"] == "X-Slack-Request-Timestamp"
    assert acknowledged == []
    assert silences == []
    assert slack.calls_to("chat.update") == []


async def test_a_well_signed_but_malformed_payload_is_400_naming_the_field(tmp_path: Any) -> None:
    from tests.servers.slack_api import slack_signature

    async with SlackApiServer() as slack:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", slack)
        async with serving(settings) as (_, client):

            async def send(payload: Any) -> httpx.Response:
                body = ("payload=" + json.dumps(payload)).encode()
                now = int(time.time())
                headers = {
                    "X-Slack-Request-Timestamp": str(now),
                    "X-Slack-Signature": slack_signature(SECRET, now, body),
                }
                return await client.post(URL, content=body, headers=headers)

            user = {"id": ALICE}
            value = json.dumps({"action": "ack", "project": "proj", "domain": "prod"})
            actions = [{"action_id": "flytenotify_ack", "value": value}]
            wrong_type = await send({"type": "shortcut", "user": user})
            other_view = await send(
                {"type": "view_submission", "user": user, "view": {"callback_id": "theirs"}}
            )
            no_name = await send({"type": "block_actions", "user": user, "actions": actions})
            bad_user = await send({"type": "block_actions", "user": {"id": "<!channel>"}})
            # Well formed where it matters, junk where Slack echoes the message: done, and
            # the message that cannot be updated is answered with an ephemeral text.
            good = json.dumps({"action": "ack", "project": "proj", "domain": "prod", "name": "x"})
            junk_blocks = [{"type": "actions", "block_id": "flytenotify_actions", "elements": [3]}]
            odd = await send(
                {
                    "type": "block_actions",
                    "user": user,
                    "actions": [{"action_id": "flytenotify_ack", "value": good}],
                    "container": {"channel_id": ALERTS, "message_ts": "1.000001"},
                    "message": {"text": "x", "blocks": [*junk_blocks, "junk"]},
                }
            )
    assert odd.status_code == 200, odd.text
    assert odd.json()["text"].startswith(f"Acknowledged by <@{ALICE}> at ")
    assert wrong_type.status_code == 400
    assert wrong_type.json()["problems"][0]["field"] == "payload.type"
    assert other_view.status_code == 400
    assert other_view.json()["problems"][0]["field"] == "payload.view.callback_id"
    assert no_name.status_code == 400
    assert [p["field"] for p in no_name.json()["problems"]] == ["payload.actions[0].value.name"]
    assert bad_user.status_code == 400
    assert bad_user.json()["problems"][0]["field"] == "payload.user.id"


async def test_without_a_signing_secret_there_are_no_buttons_and_no_endpoint(
    tmp_path: Any,
) -> None:
    async with SlackApiServer() as slack:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", slack, secret=None)
        async with serving(settings) as (notifier, client):
            await fail(notifier, failing_run("r4", "#alerts"))
            answer = await client.post(URL, content=b"payload=%7B%7D")
    assert answer.status_code == 404
    assert answer.json()["problems"][0]["field"] == "slack.signing_secret"
    ts = root_ts(slack)
    assert slack.buttons(ALERTS, ts) == ["flytenotify_open_console"]


def test_a_secret_that_can_show_no_buttons_is_said_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flytenotify.app import build_channels
    from flytenotify.channels.mattermost import MattermostConfig

    webhook_only = Settings(
        slack=SlackConfig(
            webhook_url=SecretStr("https://hooks.slack.com/services/T0/B0/x"),
            signing_secret=SecretStr(SECRET),
        ),
        mattermost=MattermostConfig(
            url="https://chat.example.com",
            bot_token=SecretStr("t"),
            action_secret=SecretStr(SECRET),
        ),
    )
    with caplog.at_level(logging.WARNING):
        build_channels(webhook_only)
    assert "incoming webhook, which cannot carry buttons" in caplog.text
    assert "without [templates] public_url no post has buttons" in caplog.text
