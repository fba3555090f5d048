"""The ledger's rules as pure functions, and how its named queries are loaded.

Both stores run these very functions (test_store_backends.py checks them end
to end on SQLite and PostgreSQL); here each rule is pinned down on its own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from flytenotify import WorkflowExecutionPhase as P
from flytenotify.domain import (
    PAUSED,
    Delivery,
    DeliveryStatus,
    Execution,
    ExecutionEvent,
    ExecutionId,
    RenderedMessage,
)
from flytenotify.store import ledger
from flytenotify.store.base import (
    OTHER_CHANNELS,
    Completion,
    DeliveryFilter,
    EventOutcome,
    EventWrite,
    NewDelivery,
)
from flytenotify.store.queries import load, number_marks, parse, queries_for

E = EventOutcome
NOW = datetime.now(UTC)
DELIVERY = Delivery(
    1,
    "k",
    ExecutionId("p", "d", "n"),
    int(P.FAILED),
    0,
    "email",
    "email",
    "a@x.io",
    RenderedMessage("s", "t", "<p>t</p>", "t"),
    DeliveryStatus.PENDING,
    0,
    NOW,
)


def _event(name: str, phase: int) -> ExecutionEvent:
    return ExecutionEvent(ExecutionId("p", "d", name), int(phase), NOW)


def _write(name: str, phase: int, keys: tuple[str, ...] = ("k",)) -> EventWrite:
    message = RenderedMessage("s", "t", "<p>t</p>", "t")
    event = _event(name, phase)
    deliveries = [NewDelivery(k, 0, "email", "email", "a@x.io", message) for k in keys]
    return EventWrite(event, Execution(event.execution_id, None, (), NOW), deliveries)


# -- how an event advances its execution ------------------------------------------------------


@pytest.mark.parametrize(
    ("terminal", "phase", "has_deliveries", "outcome"),
    [
        (None, P.RUNNING, True, E.RECORDED),  # not terminal: kept for the audit trail
        (None, PAUSED, True, E.ENQUEUED),  # an action waiting for input, a rule asks about it
        (None, PAUSED, False, E.RECORDED),  # ... no rule does
        (None, P.FAILED, True, E.ENQUEUED),  # the first terminal phase enqueues
        (None, P.FAILED, False, E.NO_NOTIFICATIONS),  # ... or says nothing applies
        (P.FAILED, P.FAILED, True, E.DUPLICATE),  # the same terminal phase again: a replay
        (P.FAILED, P.SUCCEEDED, True, E.AFTER_TERMINAL),  # another terminal phase: late
        (P.SUCCEEDED, P.RUNNING, True, E.AFTER_TERMINAL),  # a late non-terminal event
    ],
)
def test_an_execution_becomes_terminal_once(
    terminal: int | None, phase: int, has_deliveries: bool, outcome: EventOutcome
) -> None:
    assert ledger.advance(terminal, _event("e", phase), has_deliveries) is outcome


def test_a_batch_is_decided_in_order_against_what_came_before() -> None:
    writes = [
        _write("new", P.RUNNING),
        _write("new", P.FAILED, ("n1", "n2")),
        _write("new", P.FAILED, ("n1", "n2")),
        _write("old", P.FAILED, ("o1",)),
        _write("quiet", P.ABORTED, ()),
        _write("quiet", P.ABORTED, ("q1",)),
    ]
    plan = ledger.plan_intake(writes, {("p", "d", "old"): int(P.SUCCEEDED)})
    assert plan.outcomes == [
        E.RECORDED,
        E.ENQUEUED,
        E.DUPLICATE,  # the batch's own earlier event made it terminal
        E.AFTER_TERMINAL,  # terminal before the batch
        E.NO_NOTIFICATIONS,
        E.DUPLICATE,
    ]
    assert plan.moves == [(("p", "d", "new"), int(P.FAILED)), (("p", "d", "quiet"), int(P.ABORTED))]
    assert plan.enqueued == [1]


def test_delivery_ids_go_to_the_event_that_wrote_them_once() -> None:
    writes = [_write("a", P.FAILED, ("a1", "a2", "a1")), _write("b", P.FAILED, ("a2", "b1"))]
    plan = ledger.plan_intake(writes, {})
    # a2 was written by the first event; b1 was already in the ledger (no id back).
    results = plan.event_results(writes, {"a1": 7, "a2": 5})
    assert [r.delivery_ids for r in results] == [(5, 7), ()]
    assert [r.outcome for r in results] == [E.ENQUEUED, E.ENQUEUED]


# -- claims and completions ------------------------------------------------------------------


def test_channels_not_named_share_one_claim_limit() -> None:
    room = ledger.ClaimRoom({"email": 2, OTHER_CHANNELS: 3, "idle": 0})
    rounds = room.rounds(["email", "idle", "slack", "webhook", "x"])
    assert next(rounds) == ("email", 2)
    room.took("email", [DELIVERY, DELIVERY])
    assert next(rounds) == ("slack", 3)  # "idle" is named with no room: not an "other"
    room.took("slack", [DELIVERY, DELIVERY])
    assert next(rounds) == ("webhook", 1)  # what slack took, webhook cannot
    room.took("webhook", [DELIVERY])
    assert list(rounds) == []  # and nothing is left for x
    assert not room
    assert len(room.claimed) == 5
    assert not ledger.ClaimRoom({OTHER_CHANNELS: 0})


def test_only_completions_whose_lease_is_still_held_are_written() -> None:
    def done(delivery_id: int, owner: str) -> Completion:
        return Completion(
            delivery_id, owner, 1.0, 2.0, "delivered", "ok", DeliveryStatus.DELIVERED, None
        )

    completions = [done(1, "me"), done(2, "me"), done(3, "me")]
    # Row 2 is leased to another process now; row 3 is no longer pending.
    held = ledger.held_completions(completions, {(1, "me"): 0, (2, "other"): 4})
    assert [(c.delivery_id, number) for c, number in held] == [(1, 1)]


# -- queries ----------------------------------------------------------------------------------


def test_delivery_filters_are_written_in_each_store_style() -> None:
    query = DeliveryFilter(
        execution=ExecutionId("p", "d", "n"), status=DeliveryStatus.DEAD, after_id=9, limit=5
    )
    postgres, args = ledger.delivery_filter(query, queries_for("postgresql").mark)
    assert postgres == (
        " WHERE project = $1 AND domain = $2 AND name = $3 AND status = $4 AND id > $5"
        " ORDER BY id LIMIT $6"
    )
    assert args == ["p", "d", "n", "dead", 9, 5]
    sqlite, same = ledger.delivery_filter(query, queries_for("sqlite").mark)
    assert sqlite == re.sub(r"\$\d", "?", postgres)
    assert same == args
    assert ledger.delivery_filter(DeliveryFilter(limit=3), queries_for("sqlite").mark) == (
        " ORDER BY id LIMIT ?",
        [3],
    )


def test_parameters_are_numbered_outside_strings_and_comments() -> None:
    sql = "SELECT '?' AS q, x FROM t -- why?\nWHERE a = ? AND b = 'it''s ?' AND c = ?"
    assert number_marks(sql) == (
        "SELECT '?' AS q, x FROM t -- why?\nWHERE a = $1 AND b = 'it''s ?' AND c = $2"
    )


def test_query_files_name_each_statement_once() -> None:
    text = "-- top comment\n-- name: one\n-- what it does\nSELECT 1;\n\n-- name: two\nSELECT 2\n"
    assert parse(text, "x.sql") == {"one": "SELECT 1", "two": "SELECT 2"}
    with pytest.raises(ValueError, match="'one' is defined twice"):
        parse(text + "-- name: one\nSELECT 3;\n", "x.sql")


def test_every_dialect_loads_with_shared_statements_numbered_and_includes_expanded() -> None:
    sqlite, postgres = queries_for("sqlite"), queries_for("postgresql")
    assert "project = ? AND domain = ? AND name = ?" in sqlite["select_execution"]
    assert "project = $1 AND domain = $2 AND name = $3" in postgres["select_execution"]
    assert "{{" not in "".join(postgres.statements.values())
    assert "{{" not in "".join(sqlite.statements.values())
    assert "SKIP LOCKED" in postgres["claim_due"]
    assert "WITH RECURSIVE" in postgres["next_due_in"]  # {{found_channels}}, included
    assert "REAL" in sqlite["create_schema_migrations"]  # the migrations' {{timestamp}}
    assert "DOUBLE PRECISION" in postgres["create_schema_migrations"]
    with pytest.raises(KeyError, match="no query named 'nope' for sqlite"):
        sqlite["nope"]


def test_a_statement_is_shared_or_per_dialect_never_both() -> None:
    common = "-- name: one\nSELECT ?;\n-- name: two\nSELECT 2;\n"
    with pytest.raises(ValueError, match=r"sqlite\.sql redefines common queries: two"):
        load(common, "-- name: two\nSELECT 3;\n", "sqlite")
    loaded = load(common, "-- name: three\n{{one}} + {{now}};\n-- name: now\nnow()\n", "postgresql")
    assert loaded["one"] == "SELECT $1"
    assert loaded["three"] == "SELECT $1 + now()"
    with pytest.raises(ValueError, match="'loop' includes itself"):
        load("", "-- name: loop\nSELECT {{loop}}\n", "sqlite")
