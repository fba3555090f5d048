"""The ledger's actions table, on both stores: every action kept, each decision once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from flytenotify.domain import (
    PAUSED,
    ActionKind,
    ActionOutcome,
    Actor,
    Execution,
    ExecutionEvent,
    ExecutionId,
    PausedAction,
)
from flytenotify.store import store_for_url
from flytenotify.store.base import EventWrite, NewAction, Store

RUN = ExecutionId("proj", "prod", "e1")
ALICE = Actor("slack:U1", "slack-signature")
BOB = Actor("api-token:3f2a9c1e0b7d4a56", "api-token")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = store_for_url(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def approval(actor: Actor, outcome: ActionOutcome, decision: str | None) -> NewAction:
    return NewAction(
        RUN,
        ActionKind.APPROVE,
        actor,
        outcome,
        datetime.now(UTC),
        target="approve-deploy",
        value=True,
        detail="" if decision else "FlyteAdmin is unavailable",
        decision=decision,
    )


async def test_a_decision_is_written_once_and_every_attempt_is_kept(store: Store) -> None:
    failed, written = await store.record_action(approval(BOB, ActionOutcome.FAILED, None))
    assert written
    assert failed.decision is None
    first, written = await store.record_action(
        approval(ALICE, ActionOutcome.DONE, f"{RUN}/gate/approve-deploy")
    )
    assert written
    again, written = await store.record_action(
        approval(BOB, ActionOutcome.DONE, f"{RUN}/gate/approve-deploy")
    )
    assert not written
    assert again == first  # the first decision, as it was
    assert (again.actor, again.value, again.outcome) == ("slack:U1", True, ActionOutcome.DONE)
    assert again.summary().startswith("approved by slack:U1 at ")
    found = await store.list_actions(RUN)
    assert [(a.actor, a.outcome) for a in found] == [
        ("api-token:3f2a9c1e0b7d4a56", ActionOutcome.FAILED),
        ("slack:U1", ActionOutcome.DONE),
    ]
    assert await store.decided_action(f"{RUN}/gate/approve-deploy") == first
    assert await store.list_actions(ExecutionId("proj", "prod", "other")) == []


async def test_a_paused_event_keeps_what_waits(store: Store) -> None:
    gate = PausedAction("approve-deploy", prompt="Deploy?", expects="bool")
    event = ExecutionEvent(RUN, PAUSED, datetime.now(UTC), "flyteadmin", paused=gate)
    execution = Execution(RUN, None, (), datetime.now(UTC))
    await store.record_events([EventWrite(event, execution, ())])
    [(recorded, outcome)] = await store.list_events(RUN)
    assert recorded.paused == gate
    assert outcome == "recorded"
