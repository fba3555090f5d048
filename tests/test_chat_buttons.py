"""Which buttons a message offers, once people have answered earlier messages about
its execution: a rewritten message asks nobody again what was already answered."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime

from flytenotify.chat import ChatAction, answer_lines, offered
from flytenotify.config import ActionsConfig
from flytenotify.domain import PAUSED, ActionKind, Answer, Delivery, ExecutionId, Thread
from tests.helpers import rendered_delivery

AT = datetime(2026, 3, 1, 2, 14, tzinfo=UTC)


class AllowEverything:
    def offers(self, action: ActionKind, execution: ExecutionId, kinds: Collection[str]) -> bool:
        return True

    def offers_answers(self, execution: ExecutionId, kinds: Collection[str]) -> bool:
        return True


def following(delivery: Delivery, *answers: Answer) -> Delivery:
    return replace(delivery, thread=Thread("C1/1.0", answers=answers))


def asked(delivery: Delivery) -> list[ChatAction]:
    return [b.action for b in offered(delivery, AllowEverything(), {"slack"}, forms=True)]


def gate(signal: str) -> Delivery:
    failed = rendered_delivery("slack", "slack", "#alerts")
    message = replace(failed.message, variables={"action": signal, "expects": "bool"})
    return replace(failed, phase=PAUSED, message=message)


def test_an_acknowledged_failure_offers_everything_but_acknowledge() -> None:
    failed = rendered_delivery("slack", "slack", "#alerts")
    assert asked(failed)[0] is ChatAction.ACKNOWLEDGE
    after = asked(following(failed, Answer("slack:U1", AT)))
    assert after == [
        ChatAction.MUTE_1H,
        ChatAction.MUTE_4H,
        ChatAction.RELAUNCH,
        ChatAction.RECOVER,
    ]


def test_a_relaunch_done_takes_relaunch_off_and_leaves_recover() -> None:
    failed = rendered_delivery("slack", "slack", "#alerts")
    relaunched = Answer("slack:U1", AT, ActionKind.RELAUNCH, result="proj/dev/e2")
    assert ChatAction.RELAUNCH not in asked(following(failed, relaunched))
    assert ChatAction.RECOVER in asked(following(failed, relaunched))


def test_an_answered_gate_hides_only_its_own_buttons() -> None:
    approved = Answer("slack:U1", AT, ActionKind.APPROVE, target="deploy")
    both = [ChatAction.APPROVE, ChatAction.REJECT]
    assert asked(following(gate("deploy"), approved)) == []
    assert asked(following(gate("rollback"), approved)) == both


def test_answers_are_said_with_the_platforms_mentions_and_the_rest_escaped() -> None:
    answers = [
        Answer("slack:U1", AT),
        Answer("email:a<b>@example.com", AT, ActionKind.RELAUNCH, result="proj/dev/<e2>"),
    ]
    lines = answer_lines(
        answers, "slack", lambda user: f"<@{user}>", lambda t: t.replace("<", "&lt;")
    )
    assert lines == [
        "Acknowledged by <@U1> at 2026-03-01 02:14 UTC",
        "Relaunched by email:a&lt;b>@example.com at 2026-03-01 02:14 UTC: proj/dev/&lt;e2>",
    ]


def test_kept_to_the_people_actions_allow_acknowledge_and_mute_need_an_entry_of_the_kind() -> None:
    failed = rendered_delivery("slack", "slack", "#alerts")
    entry = {"project": "proj", "actors": ["mattermost:ana"], "actions": ["relaunch"]}
    kept = ActionsConfig.model_validate({"acknowledge_and_mute": "allowed", "allow": [entry]})
    assert offered(failed, kept, {"slack"}) == []  # no Slack user is named anywhere
    mattermost = [b.action for b in offered(failed, kept, {"mattermost"})]
    assert mattermost == [
        ChatAction.ACKNOWLEDGE,
        ChatAction.MUTE_1H,
        ChatAction.MUTE_4H,
        ChatAction.RELAUNCH,
    ]
    other = replace(failed, execution_id=ExecutionId("elsewhere", "dev", "e1"))
    assert offered(other, kept, {"mattermost"}) == []  # outside the entry's project
