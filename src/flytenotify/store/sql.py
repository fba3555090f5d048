"""What every SQL backend of the ledger shares: the methods that are one named query.

A backend subclasses :class:`SQLStore`, names its :class:`Queries` and says
how to run a statement (:meth:`SQLStore._fetch`, :meth:`SQLStore._change`);
the methods here then read the same statements by the same names and map
the rows the same way on every backend. What needs several statements in
one transaction (intake, claims, completions) stays with each backend, whose
I/O differs, and asks ``ledger.py`` for its decisions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flytenotify.domain import (
    Acknowledgement,
    ActionOutcome,
    ActionRecord,
    Actor,
    Attempt,
    Deadline,
    DeadlineAlert,
    DeadlineId,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    LaunchPlan,
    NamedKind,
    NamedRule,
    Silence,
    Timer,
)
from flytenotify.intake.limits import MAX_INT
from flytenotify.store import codec, ledger
from flytenotify.store.base import (
    Conversation,
    DeliveryFilter,
    FailureStreak,
    InboxMessage,
    NewAction,
)
from flytenotify.store.queries import Queries

Row = Mapping[str, Any]


def conversation_from_row(row: Row) -> Conversation:
    status = row["root_status"]
    return Conversation(
        root_delivery=int(row["root_delivery"]),
        thread=row["thread"],
        root_status=DeliveryStatus(status) if status is not None else None,
    )


class SQLStore(ABC):
    queries: Queries

    @abstractmethod
    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        """The rows of one read-only statement."""

    @abstractmethod
    async def _change(self, sql: str, args: Sequence[Any]) -> int:
        """Run one writing statement in a transaction of its own; how many rows it changed."""

    @abstractmethod
    async def _change_returning(self, sql: str, args: Sequence[Any]) -> list[Row]:
        """Run one writing statement in a transaction of its own; the rows it returns."""

    async def _fetch_one(self, name: str, args: Sequence[Any]) -> Row | None:
        rows = await self._fetch(self.queries[name], args)
        return rows[0] if rows else None

    # -- launch plans and executions ------------------------------------------------------

    async def get_launch_plan(self, plan_id: EntityId) -> LaunchPlan | None:
        row = await self._fetch_one(*ledger.launch_plan_query(plan_id))
        return codec.launch_plan_from_row(row) if row else None

    async def latest_launch_plans(self) -> list[LaunchPlan]:
        rows = await self._fetch(self.queries["latest_launch_plans"], ())
        return [codec.launch_plan_from_row(row) for row in rows]

    async def get_execution(self, execution_id: ExecutionId) -> Execution | None:
        row = await self._fetch_one("select_execution", ledger.execution_key(execution_id))
        return codec.execution_from_row(row) if row else None

    # -- Flyte 2's named rules and deliveries ----------------------------------------------

    async def put_named_rule(self, rule: NamedRule) -> None:
        await self._change(self.queries["put_named_rule"], codec.named_rule_columns(rule))

    async def list_named_rules(self, kind: NamedKind) -> list[NamedRule]:
        rows = await self._fetch(self.queries["list_named_rules"], (kind.value,))
        return [codec.named_rule_from_row(row) for row in rows]

    async def delete_named_rule(
        self, kind: NamedKind, name: str, project: str, domain: str
    ) -> bool:
        changed = await self._change(
            self.queries["delete_named_rule"], (kind.value, name, project, domain)
        )
        return changed > 0

    # -- silences ------------------------------------------------------------------------------

    async def create_silence(self, silence: Silence) -> Silence:
        rows = await self._change_returning(
            self.queries["insert_silence"], codec.silence_columns(silence)
        )
        return codec.silence_from_row(rows[0])

    async def get_silence(self, silence_id: int) -> Silence | None:
        row = await self._fetch_one("select_silence", (silence_id,))
        return codec.silence_from_row(row) if row else None

    async def list_silences(
        self, before_id: int | None = None, limit: int = 100, not_over_at: float | None = None
    ) -> list[Silence]:
        below = before_id if before_id is not None else MAX_INT
        if not_over_at is None:
            rows = await self._fetch(self.queries["list_silences"], (below, limit))
        else:
            args = (not_over_at, below, limit)
            rows = await self._fetch(self.queries["list_silences_not_over"], args)
        return [codec.silence_from_row(row) for row in rows]

    async def silences_in_effect(self, now: float) -> list[Silence]:
        rows = await self._fetch(self.queries["silences_in_effect"], (now, now))
        return [codec.silence_from_row(row) for row in rows]

    # -- watches without a resume cursor (Flyte 2's runs) -----------------------------------

    async def watch_position(self, source: str) -> float | None:
        row = await self._fetch_one("watch_position", (source,))
        return float(row["position"]) if row else None

    async def advance_watch_position(self, source: str, position: float) -> None:
        await self._change(self.queries["advance_watch_position"], (source, position, codec.now()))

    # -- actions on Flyte -----------------------------------------------------------------------

    async def record_action(self, action: NewAction) -> tuple[ActionRecord, bool]:
        rows = await self._change_returning(
            self.queries["insert_action"], codec.action_columns(action)
        )
        if rows:
            return codec.action_from_row(rows[0]), True
        assert action.decision is not None  # only a decision can conflict
        first = await self.decided_action(action.decision)
        if first is None:  # decided, then gone: no path deletes actions
            raise RuntimeError(f"action decision {action.decision!r} vanished")
        return first, False

    async def finish_action(
        self,
        action_id: int,
        outcome: ActionOutcome,
        *,
        detail: str = "",
        result: str = "",
        value: bool | int | float | str | None = None,
        decision: str | None = None,
    ) -> ActionRecord:
        value_json = codec.dump_value(value)
        args = (outcome.value, detail, result, value_json, decision, action_id)
        rows = await self._change_returning(self.queries["finish_action"], args)
        return codec.action_from_row(rows[0])

    async def abandon_action(self, decision: str, pending_before: float) -> bool:
        changed = await self._change(self.queries["abandon_action"], (decision, pending_before))
        return changed > 0

    async def decided_action(self, decision: str) -> ActionRecord | None:
        row = await self._fetch_one("decided_action", (decision,))
        return codec.action_from_row(row) if row else None

    async def list_actions(self, execution_id: ExecutionId) -> list[ActionRecord]:
        rows = await self._fetch(self.queries["list_actions"], ledger.execution_key(execution_id))
        return [codec.action_from_row(row) for row in rows]

    # -- acknowledgements ---------------------------------------------------------------------

    async def acknowledge(
        self, execution_id: ExecutionId, actor: Actor, message: str, at: datetime
    ) -> tuple[Acknowledgement, bool]:
        columns = codec.acknowledgement_columns(execution_id, actor, message, at)
        rows = await self._change_returning(self.queries["insert_acknowledgement"], columns)
        if rows:
            return codec.acknowledgement_from_row(rows[0]), True
        key = (*ledger.execution_key(execution_id), actor.identity)
        first = await self._fetch_one("acknowledgement_by", key)
        if first is None:  # acknowledged, then gone: no path deletes acknowledgements
            raise RuntimeError(f"the acknowledgement of {execution_id} by {actor} vanished")
        return codec.acknowledgement_from_row(first), False

    async def list_acknowledgements(self, execution_id: ExecutionId) -> list[Acknowledgement]:
        key = ledger.execution_key(execution_id)
        rows = await self._fetch(self.queries["list_acknowledgements"], key)
        return [codec.acknowledgement_from_row(row) for row in rows]

    async def use_link(self, nonce: str, actor: str, at: datetime) -> tuple[str, datetime, bool]:
        rows = await self._change_returning(
            self.queries["use_link"], (nonce, actor, codec.timestamp(at))
        )
        if rows:
            return actor, at, True
        first = await self._fetch_one("used_link", (nonce,))
        if first is None:  # used, and released meanwhile: this use may go on another time
            return actor, at, False
        return first["actor"], codec.from_timestamp(first["used_at"]), False

    async def release_link(self, nonce: str) -> None:
        await self._change(self.queries["release_link"], (nonce,))

    # -- deadlines and their timers ----------------------------------------------------------

    async def list_deadlines(self) -> list[Deadline]:
        rows = await self._fetch(self.queries["list_deadlines"], ())
        return [codec.deadline_from_row(row) for row in rows]

    async def put_schedule_timer(self, timer: Timer) -> None:
        await self._change(self.queries["put_schedule_timer"], codec.timer_columns(timer))

    async def drop_timer(self, key: str) -> None:
        await self._change(self.queries["drop_timer"], (key,))

    async def release_timers(self, owner: str) -> int:
        return await self._change(self.queries["release_timers"], (owner,))

    async def recent_durations(self, series: str, limit: int) -> list[float]:
        rows = await self._fetch(self.queries["recent_durations"], (series, limit))
        return [float(row["seconds"]) for row in rows]

    async def alerts_of(self, deadline: DeadlineId, execution: ExecutionId) -> list[DeadlineAlert]:
        key = (*_deadline_key(deadline), *ledger.execution_key(execution))
        rows = await self._fetch(self.queries["alerts_of"], key)
        return [codec.alert_from_row(row) for row in rows]

    async def deadline_alerts(
        self, deadline: DeadlineId, before_id: int | None = None, limit: int = 100
    ) -> list[DeadlineAlert]:
        below = before_id if before_id is not None else MAX_INT
        args = (*_deadline_key(deadline), below, limit)
        rows = await self._fetch(self.queries["deadline_alerts"], args)
        return [codec.alert_from_row(row) for row in rows]

    async def open_alerts(
        self, before_id: int | None = None, limit: int = 100
    ) -> list[DeadlineAlert]:
        below = before_id if before_id is not None else MAX_INT
        rows = await self._fetch(self.queries["open_alerts"], (below, limit))
        return [codec.alert_from_row(row) for row in rows]

    async def deadline_timers(self, deadline: DeadlineId) -> dict[str, tuple[int, float]]:
        rows = await self._fetch(self.queries["deadline_timers"], _deadline_key(deadline))
        return {row["kind"]: (int(row["count"]), float(row["next_due"])) for row in rows}

    # -- the dev inbox -----------------------------------------------------------------------

    async def add_to_inbox(self, delivery: Delivery, body: str, now: float) -> None:
        await self._change(
            self.queries["insert_inbox"],
            (delivery.id, delivery.kind, delivery.recipient, _subject(delivery), body, now),
        )

    async def list_inbox(self, after_id: int | None = None, limit: int = 100) -> list[InboxMessage]:
        rows = await self._fetch(self.queries["list_inbox"], (after_id or 0, limit))
        return [InboxMessage(**row) for row in rows]

    async def list_inbox_newest(
        self, before_id: int | None = None, limit: int = 100
    ) -> list[InboxMessage]:
        newest = before_id - 1 if before_id is not None else MAX_INT
        rows = await self._fetch(self.queries["list_inbox_newest"], (newest, limit))
        return [InboxMessage(**row) for row in rows]

    async def get_inbox_message(self, message_id: int) -> InboxMessage | None:
        row = await self._fetch_one("select_inbox", (message_id,))
        return InboxMessage(**row) if row else None

    # -- console sessions ---------------------------------------------------------------------

    async def start_console_session(self, session_id: str, now: float, expires_at: float) -> None:
        await self._change(self.queries["prune_console_sessions"], (now,))
        await self._change(self.queries["insert_console_session"], (session_id, now, expires_at))

    async def console_session_live(self, session_id: str, now: float) -> bool:
        return await self._fetch_one("console_session_live", (session_id, now)) is not None

    async def end_console_session(self, session_id: str) -> bool:
        return await self._change(self.queries["delete_console_session"], (session_id,)) > 0

    # -- queries ------------------------------------------------------------------------------

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        row = await self._fetch_one("select_delivery", (delivery_id,))
        return codec.delivery_from_row(row) if row else None

    async def list_deliveries(self, query: DeliveryFilter) -> list[Delivery]:
        rows = await self._fetch(*deliveries_query(self.queries, query))
        return [codec.delivery_from_row(row) for row in rows]

    async def latest_of_message(self, message_id: str) -> list[Delivery]:
        rows = await self._fetch(self.queries["latest_of_message"], (message_id,))
        return [codec.delivery_from_row(row) for row in rows]

    async def list_attempts(self, delivery_id: int) -> list[Attempt]:
        rows = await self._fetch(self.queries["list_attempts"], (delivery_id,))
        return [codec.attempt_from_row(row) for row in rows]

    # -- conversations -------------------------------------------------------------------

    async def join_conversation(self, key: str, delivery_id: int) -> Conversation:
        # Two statements, no transaction: whatever the upsert decided (this
        # delivery first, or another), the select reads it once committed.
        await self._change(self.queries["join_conversation"], self._join_args(key, delivery_id))
        row = await self._fetch_one("select_conversation", (key,))
        assert row is not None  # just opened, and conversations are never deleted
        return conversation_from_row(row)

    async def join_conversations(
        self, joining: Sequence[tuple[str, int]]
    ) -> dict[str, Conversation]:
        if not joining:
            return {}
        await self._join_all(joining)
        rows = await self._fetch(
            self.queries["select_conversations"], self._keys([k for k, _ in joining])
        )
        return {row["conversation"]: conversation_from_row(row) for row in rows}

    @abstractmethod
    async def _join_all(self, joining: Sequence[tuple[str, int]]) -> None:
        """The upserts of :meth:`join_conversations`, as the dialect batches them."""

    @abstractmethod
    def _keys(self, keys: list[str]) -> tuple[Any, ...]:
        """A list of keys as ``select_conversations`` takes it."""

    def _join_args(self, key: str, delivery_id: int) -> tuple[Any, ...]:
        """The arguments of ``join_conversation``: leases are judged by the
        store's clock (PostgreSQL's is in the statement)."""
        return (key, delivery_id, codec.now(), codec.now())

    async def conversation_sent(self, key: str, delivery_id: int, thread: str) -> None:
        args = (delivery_id, thread, codec.now(), key)
        await self._change(self.queries["conversation_sent"], args)

    async def failure_streak(self, plan: str, look_back: int) -> FailureStreak | None:
        rows = await self._fetch(self.queries["plan_executions"], (plan, look_back))
        ended = [
            (ExecutionId(row["project"], row["domain"], row["name"]), int(row["terminal_phase"]))
            for row in rows
        ]
        streak = ledger.failures_since_success(ended)
        for execution_id, phase in streak:  # latest first: the last that notified anybody
            key = ledger.execution_key(execution_id)
            found = await self._fetch(self.queries["delivered_for_phase"], (*key, phase))
            if found:
                deliveries = tuple(codec.delivery_from_row(row) for row in found)
                return FailureStreak(len(streak), execution_id, deliveries)
        return None

    async def prune_groups(self, closed_before: float) -> int:
        return await self._change(self.queries["prune_groups"], (closed_before,))

    async def count_by_status(self) -> dict[str, int]:
        counts = {status.value: 0 for status in DeliveryStatus}
        for row in await self._fetch(self.queries["count_by_status"], ()):
            counts[row["status"]] = int(row["count"])
        return counts

    async def list_events(self, execution_id: ExecutionId) -> list[tuple[ExecutionEvent, str]]:
        key = ledger.execution_key(execution_id)
        rows = await self._fetch(self.queries["list_events"], key)
        return [(codec.event_from_row(row), row["outcome"]) for row in rows]


def deliveries_query(queries: Queries, query: DeliveryFilter) -> tuple[str, list[Any]]:
    """The statement and arguments :meth:`SQLStore.list_deliveries` runs for ``query``
    (the console's pages are explained with it on a large ledger)."""
    clauses, args = ledger.delivery_filter(query, queries.mark, queries["launch_plan_name"])
    return queries["select_deliveries"] + clauses, args


def _subject(delivery: Delivery) -> str:
    return delivery.digest.title if delivery.digest is not None else delivery.message.subject


def _deadline_key(deadline: DeadlineId) -> tuple[str, str, str]:
    return (deadline.project, deadline.domain, deadline.name)
