"""The engine end to end on a real SQLite file, delivering into the dev inbox.

Resolution semantics (FlyteAdmin's), the transactional outbox and
replays. Real channels are exercised in test_engine_email.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from flytenotify import Email, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, Settings, SlackConfig, SmtpConfig, WebhookTarget
from flytenotify.domain import DeliveryStatus, EntityId, ExecutionId
from flytenotify.errors import InputError
from flytenotify.store.base import DeliveryFilter, EventOutcome
from tests.helpers import PLAN, event_json, execution

DOC_EXAMPLES = [
    Email([P.SUCCEEDED], ["team-leads@example.com"]),
    Email([P.FAILED, P.SUCCEEDED], ["dev-ops@example.com", "on-call@example.com"]),
    Slack([P.FAILED], ["#data-alerts", "john.doe@example.com"]),
    PagerDuty([P.TIMED_OUT], ["pagerduty-service-email@example.com"]),
]


@pytest.fixture
async def notifier(database_url: str) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as n:
        await n.register_launch_plan(PLAN, DOC_EXAMPLES)
        yield n


async def inbox_recipients(n: Notifier) -> list[tuple[str, str]]:
    return sorted((m.kind, m.recipient) for m in await n.inbox())


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (
            "SUCCEEDED",
            [
                ("email", "dev-ops@example.com"),
                ("email", "on-call@example.com"),
                ("email", "team-leads@example.com"),
            ],
        ),
        (
            "FAILED",
            [
                ("email", "dev-ops@example.com"),
                ("email", "on-call@example.com"),
                ("slack", "#data-alerts"),
                ("slack", "john.doe@example.com"),
            ],
        ),
        ("TIMED_OUT", [("pager_duty", "pagerduty-service-email@example.com")]),
        ("ABORTED", []),
    ],
)
async def test_each_phase_reaches_exactly_its_recipients(
    notifier: Notifier, phase: str, expected: list[tuple[str, str]]
) -> None:
    await notifier.create_execution(execution("e1"), PLAN)
    result = await notifier.report_event(event_json("e1", phase, error="boom"))
    assert result.outcome is (EventOutcome.ENQUEUED if expected else EventOutcome.NO_NOTIFICATIONS)
    await notifier.run_until_idle()
    assert await inbox_recipients(notifier) == expected
    assert (await notifier.counts())["delivered"] == len(expected)


async def test_override_replaces_and_disable_all_empties(notifier: Notifier) -> None:
    override = [Email([P.FAILED], ["only-me@example.com"])]
    await notifier.create_execution(execution("over"), PLAN, notifications=override)
    await notifier.create_execution(execution("off"), PLAN, disable_all=True)
    await notifier.create_execution(execution("empty"), PLAN, notifications=[])
    for name in ("over", "off", "empty"):
        await notifier.report_event(event_json(name, "FAILED"))
    await notifier.run_until_idle()
    by_execution = {
        name: sorted(
            d.recipient
            for d in await notifier.deliveries(DeliveryFilter(execution=execution(name)))
        )
        for name in ("over", "off", "empty")
    }
    assert by_execution["over"] == ["only-me@example.com"]
    assert by_execution["off"] == []
    # An empty override list falls back to the launch plan's notifications.
    assert by_execution["empty"] == [
        "#data-alerts",
        "dev-ops@example.com",
        "john.doe@example.com",
        "on-call@example.com",
    ]


async def test_notifications_are_frozen_at_creation(notifier: Notifier) -> None:
    await notifier.create_execution(execution("frozen"), PLAN)
    # A later registration of the same launch plan changes nothing for it.
    await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["newcomer@example.com"])])
    await notifier.create_execution(execution("later"), PLAN)
    await notifier.report_event(event_json("frozen", "TIMED_OUT"))
    await notifier.report_event(event_json("later", "FAILED"))
    await notifier.run_until_idle()
    assert await inbox_recipients(notifier) == [
        ("email", "newcomer@example.com"),
        ("pager_duty", "pagerduty-service-email@example.com"),
    ]


async def test_latest_launch_plan_version_is_used_when_none_named(notifier: Notifier) -> None:
    v2 = EntityId(PLAN.project, PLAN.domain, PLAN.name, "v2")
    await notifier.register_launch_plan(v2, [Slack([P.FAILED], ["#v2-only"])])
    created = await notifier.create_execution(
        execution("latest"), EntityId(PLAN.project, PLAN.domain, PLAN.name)
    )
    assert created.launch_plan == v2
    assert [n.recipients_email for n in created.notifications] == [["#v2-only"]]  # type: ignore[attr-defined]


async def test_replays_and_later_phases_enqueue_nothing_new(notifier: Notifier) -> None:
    await notifier.create_execution(execution("e2"), PLAN)
    first = await notifier.report_event(event_json("e2", "FAILED"))
    again = await notifier.report_event(event_json("e2", "FAILED"))
    other = await notifier.report_event(event_json("e2", "SUCCEEDED"))
    running = await notifier.report_event(event_json("e2", "RUNNING"))
    assert first.outcome is EventOutcome.ENQUEUED
    assert len(first.delivery_ids) == 4
    assert (again.outcome, again.delivery_ids) == (EventOutcome.DUPLICATE, ())
    assert (other.outcome, other.delivery_ids) == (EventOutcome.AFTER_TERMINAL, ())
    assert (running.outcome, running.delivery_ids) == (EventOutcome.AFTER_TERMINAL, ())
    outcomes = [o for _, o in await notifier.store.list_events(execution("e2"))]
    assert outcomes == ["enqueued", "duplicate", "after_terminal", "after_terminal"]


async def test_thousand_events_sent_twice_enqueue_once(notifier: Notifier) -> None:
    plan = EntityId("proj", "prod", "single", "v1")
    await notifier.register_launch_plan(plan, [Email([P.FAILED], ["ops@example.com"])])
    events = [event_json(f"run-{i}", "FAILED", launch_plan=plan) for i in range(1000)]
    first = await notifier.report_events(events)
    second = await notifier.report_events(events)
    assert sum(len(r.delivery_ids) for r in first) == 1000
    assert sum(len(r.delivery_ids) for r in second) == 0
    assert {r.outcome for r in second} == {EventOutcome.DUPLICATE}
    assert (await notifier.counts())["pending"] == 1000


async def test_unknown_execution_uses_the_named_launch_plan(notifier: Notifier) -> None:
    result = await notifier.report_event(event_json("stray", "TIMED_OUT", launch_plan=PLAN))
    assert result.outcome is EventOutcome.ENQUEUED
    unknown = await notifier.report_event(event_json("orphan", "FAILED"))
    assert unknown.outcome is EventOutcome.NO_NOTIFICATIONS
    stored = await notifier.store.get_execution(execution("orphan"))
    assert stored is not None
    assert stored.notifications == ()


async def test_non_terminal_events_are_only_recorded(notifier: Notifier) -> None:
    await notifier.create_execution(execution("e3"), PLAN)
    for phase in ("QUEUED", "RUNNING", "FAILING"):
        assert (await notifier.report_event(event_json("e3", phase))).outcome is (
            EventOutcome.RECORDED
        )
    assert await notifier.deliveries() == []


async def test_bad_events_name_the_field(notifier: Notifier) -> None:
    with pytest.raises(InputError) as caught:
        await notifier.report_event({"executionId": {"project": "p", "domain": "d"}, "phase": 6})
    assert [p.field for p in caught.value.problems] == ["events[0].execution_id.name"]
    with pytest.raises(InputError, match="phase"):
        await notifier.report_event(event_json("x", "EXPLODED"))
    with pytest.raises(InputError, match="launch_plan"):
        await notifier.create_execution(execution("x"), EntityId("no", "such", "plan"))


async def test_unroutable_recipient_is_dead_lettered_with_the_reason(database_url: str) -> None:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings) as n:  # no dev inbox, no channels configured
        await n.create_execution(execution("r"), notifications=[Slack([P.FAILED], ["#nowhere"])])
        await n.report_event(event_json("r", "FAILED"))
        await n.run_until_idle()
        (dead,) = await n.deliveries(DeliveryFilter(status=DeliveryStatus.DEAD))
        assert dead.recipient == "#nowhere"
        assert "not an email address" in dead.last_reply
        (attempt,) = await n.attempts(dead.id)
        assert attempt.outcome == "permanent"


async def test_events_arrive_as_protobuf_bytes_bare_or_wrapped(notifier: Notifier) -> None:
    from flyteidl.admin import event_pb2 as admin_event_pb2
    from flyteidl.event import event_pb2

    await notifier.create_execution(execution("pb"), PLAN)
    bare = event_pb2.WorkflowExecutionEvent(phase=P.RUNNING, producer_id="propeller")
    bare.execution_id.project, bare.execution_id.domain, bare.execution_id.name = (
        "proj",
        "prod",
        "pb",
    )
    assert (await notifier.report_event(bare.SerializeToString())).outcome is (
        EventOutcome.RECORDED
    )
    bare.phase = P.FAILED
    wrapped = admin_event_pb2.WorkflowExecutionEventRequest(request_id="r1", event=bare)
    result = await notifier.report_event(wrapped.SerializeToString())
    assert result.outcome is EventOutcome.ENQUEUED
    with pytest.raises(InputError, match="not a valid protobuf"):
        await notifier.report_event(b"\xff\xff\xff")


async def test_unknown_phase_numbers_are_refused(notifier: Notifier) -> None:
    event = event_json("p", "FAILED")
    event["phase"] = 99
    with pytest.raises(InputError, match="unknown phase number 99"):
        await notifier.report_event(event)


async def test_dev_inbox_shows_each_message_as_its_channel_would_send_it(
    notifier: Notifier,
) -> None:
    import json

    await notifier.create_execution(execution("show"), PLAN)
    await notifier.report_event(event_json("show", "FAILED", error="<!channel> boom"))
    await notifier.run_until_idle()
    by_recipient = {m.recipient: m.body for m in await notifier.inbox()}
    email_text = by_recipient["dev-ops@example.com"]
    assert "The execution failed with error: [<!channel> boom]" in email_text
    slack = json.loads(by_recipient["#data-alerts"])
    assert slack["blocks"]
    assert "&lt;!channel&gt; boom" in json.dumps(slack["blocks"])
    await notifier.report_event(event_json("other", "TIMED_OUT", launch_plan=PLAN))
    await notifier.run_until_idle()
    (pagerduty,) = [json.loads(m.body) for m in await notifier.inbox() if m.kind == "pager_duty"]
    assert pagerduty["event_action"] == "trigger"
    assert pagerduty["dedup_key"] == "proj/prod/nightly"


# -- the plain-shape fast path of JSON events must read exactly as protobuf does --

_IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.isoformat().replace("+00:00", "Z"))


@st.composite
def plain_events(draw: st.DrawFn) -> dict[str, Any]:
    camel = draw(st.booleans())
    event: dict[str, Any] = {
        "executionId" if camel else "execution_id": {
            "project": draw(_IDS),
            "domain": draw(_IDS),
            "name": draw(_IDS),
        },
        "phase": draw(st.sampled_from(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED"])),
    }
    if draw(st.booleans()):
        event["occurredAt" if camel else "occurred_at"] = draw(_TIMES)
    if draw(st.booleans()):
        event["producerId" if camel else "producer_id"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        error: dict[str, str] = {}
        for key in draw(st.lists(st.sampled_from(["code", "message", "kind"]), unique=True)):
            error[key] = draw(st.sampled_from(["USER", "SYSTEM"]) if key == "kind" else st.text())
        event["error"] = error
    return event


@given(plain_events())
def test_plain_json_events_read_exactly_as_protobuf_reads_them(event: dict[str, Any]) -> None:
    from flytenotify.intake import events as ingest

    fast = ingest._plain_event(dict(event), None)
    assert fast is not None
    slow = ingest._event_via_protobuf(dict(event), None)
    if "occurredAt" not in event and "occurred_at" not in event:
        fast = replace(fast, occurred_at=slow.occurred_at)  # both "now", a moment apart
    assert fast == slow


@pytest.mark.parametrize(
    "event",
    [
        {"executionId": {"project": "p", "domain": "d", "name": "n"}, "phase": 6, "x": 1},
        {
            "executionId": {"project": "p", "domain": "d", "name": "n"},
            "phase": "FAILED",
            "execution_id": {"project": "p", "domain": "d", "name": "n"},
        },
        {
            "executionId": {"project": "p", "domain": "d", "name": "n"},
            "phase": "FAILED",
            "occurredAt": "2024-05-01T12:00:00.123456789Z",
        },
        {
            "executionId": {"project": "p", "domain": "d", "name": "n"},
            "phase": "FAILED",
            "error": {"kind": "WEIRD"},
        },
    ],
)
def test_anything_but_the_plain_shape_takes_the_protobuf_road(event: dict[str, Any]) -> None:
    from flytenotify.intake import events as ingest

    assert ingest._plain_event(dict(event), None) is None


async def test_a_message_is_rendered_in_the_forms_its_channels_send(database_url: str) -> None:
    """HTML only where email goes, Slack mrkdwn only where Slack goes; every form
    for a recipient no channel takes (a re-drive routes it again, perhaps to email)."""
    settings = Settings(
        database=DatabaseConfig(url=database_url),
        smtp=SmtpConfig(host="127.0.0.1"),
        slack=SlackConfig(bot_token=SecretStr("xoxb-test")),
        webhooks={"hook": WebhookTarget(url="http://127.0.0.1:9/hook")},
    )
    notifications = [
        Email([P.FAILED], ["webhook:hook"]),
        Email([P.FAILED], ["ops@example.com", "webhook:hook"]),
        Slack([P.FAILED], ["#alerts"]),
        Email([P.FAILED], ["webhook:nowhere"]),
    ]
    async with Notifier(settings) as n:
        await n.register_launch_plan(PLAN, notifications)
        await n.report_event(event_json("e-media", "FAILED", launch_plan=PLAN))
        stored = await n.deliveries(
            DeliveryFilter(execution=ExecutionId("proj", "prod", "e-media"))
        )
    forms = {
        (d.notification_index, d.channel): (bool(d.message.html), bool(d.message.slack_text))
        for d in stored
    }
    assert forms == {
        (0, "webhook"): (False, False),
        (1, "email"): (True, False),
        (1, "webhook"): (True, False),  # one message for the notification's recipients
        (2, "slack"): (False, True),
        (3, "unroutable"): (True, True),
    }
    assert all(d.message.text and d.message.subject and d.message.variables for d in stored)
