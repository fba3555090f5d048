"""Silences: when one is in effect (time zones, DST), what it matches, what it holds.

The time rules are checked on the pure functions with times chosen on both
sides of each boundary; everything else through a real Notifier on a real
ledger (SQLite file and PostgreSQL: the ``database_url`` fixture) with a clock
the test sets, and, where a message goes out, a real SMTP server that says
what it received.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flytenotify import Email, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings
from flytenotify.domain import (
    DeliveryStatus,
    EmailEnvelope,
    EntityId,
    ExecutionId,
    Mailbox,
    Recurrence,
    RenderedMessage,
    Silence,
)
from flytenotify.engine import silences
from flytenotify.errors import Conflict, InputError, UnknownReference
from flytenotify.store.base import DeliveryFilter, NewDelivery
from tests.helpers import event_json
from tests.servers.smtp import SmtpServer

PARIS = ZoneInfo("Europe/Paris")
NIGHTS = Recurrence("0 22 * * *", 8 * 3600, "Europe/Paris")  # 22:00-06:00 Paris time
PLAN = EntityId("proj", "prod", "nightly", "v1")
OTHER_PLAN = EntityId("proj", "prod", "hourly", "v1")
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
# The recipients of PLAN's notifications for FAILED.
EVERYONE = frozenset({"ops@example.com", "lead@data.example.org", "#data-alerts"})


class Clock:
    """The time a Notifier sees: set by the test, never slept through."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def _silence(**given: object) -> Silence:
    fields: dict[str, object] = {
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=2),
        "comment": "backfill tonight",
        "author": "alice@example.com",
    }
    fields.update(given)
    return Silence(**fields)  # type: ignore[arg-type]


def _every(cron: str, duration: int = 3600, timezone: str = "UTC") -> dict[str, object]:
    return {"project": "p", "recurring": Recurrence(cron, duration, timezone)}


def _paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


# -- when: one-off and recurring, time zones and DST ---------------------------------------------


def test_a_one_off_silence_is_in_effect_from_its_start_until_its_end() -> None:
    silence = _silence()
    assert not silences.in_effect(silence, T0 - timedelta(microseconds=1))
    assert silences.in_effect(silence, T0)
    assert silences.in_effect(silence, T0 + timedelta(hours=2, microseconds=-1))
    assert not silences.in_effect(silence, T0 + timedelta(hours=2))
    ended = _silence(ended_at=T0 + timedelta(minutes=5))
    assert silences.in_effect(ended, T0 + timedelta(minutes=4))
    assert not silences.in_effect(ended, T0 + timedelta(minutes=5))
    states = [silences.state(silence, T0 + timedelta(hours=h)) for h in (-1, 1, 3)]
    assert states == ["scheduled", "active", "expired"]
    assert silences.state(ended, T0 + timedelta(minutes=6)) == "ended"
    assert silences.next_start(silence, T0 - timedelta(hours=1)) == T0
    assert silences.next_start(silence, T0 + timedelta(hours=1)) is None


@pytest.mark.parametrize(
    ("moment", "silenced"),
    [
        # Winter (CET, UTC+1): 22:00-06:00 Paris is 21:00-05:00 UTC.
        (datetime(2025, 1, 15, 20, 59, tzinfo=UTC), False),  # 21:59 Paris
        (datetime(2025, 1, 15, 21, 0, tzinfo=UTC), True),  # 22:00 Paris
        (datetime(2025, 1, 15, 23, 30, tzinfo=UTC), True),  # 00:30 Paris, the next day
        (datetime(2025, 1, 16, 4, 59, tzinfo=UTC), True),  # 05:59 Paris
        (datetime(2025, 1, 16, 5, 0, tzinfo=UTC), False),  # 06:00 Paris: over
        (datetime(2025, 1, 16, 12, 0, tzinfo=UTC), False),
        # Summer (CEST, UTC+2): 22:00-06:00 Paris is 20:00-04:00 UTC.
        (datetime(2025, 7, 15, 20, 0, tzinfo=UTC), True),  # 22:00 Paris, 20:00 in UTC
        (datetime(2025, 7, 15, 19, 59, tzinfo=UTC), False),
        (datetime(2025, 7, 16, 3, 59, tzinfo=UTC), True),  # 05:59 Paris
        (datetime(2025, 7, 16, 4, 30, tzinfo=UTC), False),  # 06:30 Paris, 04:30 in UTC
        # Spring forward (30 March 2025, 02:00 CET -> 03:00 CEST): the night is 7 h
        # long, 21:00 UTC to 04:00 UTC; eight elapsed hours would end at 05:00 UTC.
        (datetime(2025, 3, 29, 21, 0, tzinfo=UTC), True),  # 22:00 CET
        (datetime(2025, 3, 30, 1, 30, tzinfo=UTC), True),  # 03:30 CEST, after the gap
        (datetime(2025, 3, 30, 3, 59, tzinfo=UTC), True),  # 05:59 CEST
        (datetime(2025, 3, 30, 4, 0, tzinfo=UTC), False),  # 06:00 CEST
        (datetime(2025, 3, 30, 4, 30, tzinfo=UTC), False),
        # Fall back (26 October 2025, 03:00 CEST -> 02:00 CET): 9 h, 20:00 to 05:00 UTC.
        (datetime(2025, 10, 25, 19, 59, tzinfo=UTC), False),  # 21:59 CEST
        (datetime(2025, 10, 25, 20, 0, tzinfo=UTC), True),  # 22:00 CEST
        (datetime(2025, 10, 26, 0, 30, tzinfo=UTC), True),  # 02:30 CEST, the first time
        (datetime(2025, 10, 26, 1, 30, tzinfo=UTC), True),  # 02:30 CET, the second time
        (datetime(2025, 10, 26, 4, 30, tzinfo=UTC), True),  # 05:30 CET
        (datetime(2025, 10, 26, 5, 0, tzinfo=UTC), False),  # 06:00 CET
    ],
)
def test_a_recurring_window_is_read_on_its_time_zones_wall_clock(
    moment: datetime, silenced: bool
) -> None:
    silence = _silence(starts_at=datetime(2025, 1, 1, tzinfo=UTC), ends_at=None, recurring=NIGHTS)
    assert silences.in_effect(silence, moment) is silenced
    assert silences.state(silence, moment) == ("active" if silenced else "scheduled")


def test_a_recurring_silence_says_when_its_next_window_opens_and_keeps_to_its_bounds() -> None:
    silence = _silence(
        starts_at=datetime(2025, 3, 28, tzinfo=UTC),
        ends_at=datetime(2025, 3, 31, tzinfo=UTC),
        recurring=NIGHTS,
    )
    noon = datetime(2025, 3, 29, 11, 0, tzinfo=UTC)
    assert silences.next_start(silence, noon) == _paris(2025, 3, 29, 22, 0)
    after_the_change = datetime(2025, 3, 30, 11, 0, tzinfo=UTC)
    assert silences.next_start(silence, after_the_change) == _paris(2025, 3, 30, 22, 0)
    # The window of the 30th opens before the end; that of the 31st would not.
    assert silences.in_effect(silence, _paris(2025, 3, 30, 23, 0))
    assert not silences.in_effect(silence, _paris(2025, 3, 31, 3, 0))  # after ends_at
    assert silences.state(silence, _paris(2025, 3, 31, 3, 0)) == "expired"
    # Started in the middle of a window: in effect from its start.
    late = _silence(starts_at=_paris(2025, 3, 29, 23, 30), ends_at=None, recurring=NIGHTS)
    assert silences.next_start(late, _paris(2025, 3, 29, 12, 0)) == late.starts_at
    assert not silences.in_effect(late, _paris(2025, 3, 29, 23, 0))
    assert silences.in_effect(late, _paris(2025, 3, 29, 23, 30))


# -- what a valid silence is ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({}, "all", "must match something"),
        ({"all": True, "project": "proj"}, "all", "not with project"),
        ({"project": "p", "ends_at": T0}, "ends_at", "after starts_at"),
        ({"project": "p", "ends_at": T0 - timedelta(hours=1)}, "ends_at", "after starts_at"),
        ({"project": "p", "ends_at": None}, "ends_at", "one-off"),
        ({"project": "p", "starts_at": datetime(2025, 1, 1)}, "starts_at", "time zone"),
        ({"project": "p", "comment": "  "}, "comment", "required"),
        ({"project": "p", "author": ""}, "author", "required"),
        ({"project": "p", "author": " alice"}, "author", "visible"),
        ({"project": "p", "author": "al\nice"}, "author", "\\n"),
        ({"project": "p", "comment": "x" * 2001}, "comment", "at most 2000"),
        ({"project": ""}, "project", "required"),
        ({"launch_plan": "a/b"}, "launch_plan", "'/'"),
        ({"recipient": "  "}, "recipient", "empty"),
        ({"phases": frozenset({2})}, "phases", "must be among"),
        (_every("0 22 * *"), "recurring.cron", "five"),
        (_every("0 25 * * *"), "recurring.cron", "valid"),
        (_every("0 0 30 2 *"), "recurring.cron", "never"),
        (_every("@daily", duration=30), "recurring.duration", "1m"),
        (_every("@daily", timezone="Mars/Olympus"), "recurring.timezone", "knows"),
        (_every("@daily", timezone="../etc/passwd"), "recurring.timezone", "IANA"),
    ],
)  # fmt: skip
def test_a_bad_silence_is_refused_naming_its_field(
    given: dict[str, object], field: str, words: str
) -> None:
    found = silences.problems(_silence(**given), now=T0 - timedelta(minutes=1))
    assert [p.field for p in found] == [field], found
    assert words in found[0].message


def test_an_end_in_the_past_is_refused_and_durations_read_as_people_write_them() -> None:
    (problem,) = silences.problems(_silence(project="p"), now=T0 + timedelta(hours=3))
    assert (problem.field, "in the past" in problem.message) == ("ends_at", True)
    assert [silences.parse_duration(d) for d in ("8h", "90m", "1h30m", "2d", "45s", 60)] == [
        28800,
        5400,
        5400,
        172800,
        45,
        60,
    ]
    for bad in ("", "8 h", "h", "1.5h", True, 2.5):
        with pytest.raises(ValueError, match="such as 8h"):
            silences.parse_duration(bad)
    assert silences.format_duration(5400) == "1h30m"


def test_an_inline_email_is_held_only_when_every_address_it_goes_to_is() -> None:
    """One message to several addresses (a Flyte 2 inline email): held only if the
    silence matches each of them, so nobody it does not name loses a message."""
    subject = silences.Subject(ExecutionId("ml", "prod", "r1"), None, P.FAILED)

    def inline(*cc: str) -> NewDelivery:
        envelope = EmailEnvelope(to=(Mailbox("a@corp.example"),), cc=tuple(map(Mailbox, cc)))
        message = RenderedMessage("s", "t", "", "", envelope=envelope)
        return NewDelivery("k", 0, "email", "email", "a@corp.example", message)

    corp = _silence(id=7, recipient="corp.example")
    one, both = silences.hold([inline("b@corp.example"), inline("c@else.example")], subject, [corp])
    assert (one.silence_id, both.silence_id) == (7, None)
    just_a = _silence(id=8, recipient="a@corp.example")
    assert silences.hold([inline()], subject, [just_a])[0].silence_id == 8


# -- through the Notifier: what a silence holds ----------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def notifier(database_url: str, clock: Clock) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url), grouping=GroupingConfig(by=[]))
    async with Notifier(settings, dev_inbox=True, clock=clock) as n:
        await n.register_launch_plan(
            PLAN,
            [
                Email([P.FAILED, P.SUCCEEDED], ["ops@example.com", "lead@data.example.org"]),
                Slack([P.FAILED], ["#data-alerts"]),
            ],
        )
        await n.register_launch_plan(OTHER_PLAN, [Email([P.FAILED], ["ops@example.com"])])
        yield n


async def _run(
    n: Notifier,
    name: str,
    phase: str = "FAILED",
    plan: EntityId = PLAN,
    project: str = "proj",
    domain: str = "prod",
) -> dict[str, tuple[DeliveryStatus, int | None]]:
    """One execution of ``plan`` reaching ``phase``: its deliveries by recipient."""
    await n.create_execution(ExecutionId(project, domain, name), plan)
    event = event_json(name, phase, project=project, domain=domain)
    result = await n.report_event(event)
    assert result.delivery_ids
    found = await n.deliveries(DeliveryFilter(execution=ExecutionId(project, domain, name)))
    return {d.recipient: (d.status, d.silence_id) for d in found}


@pytest.mark.parametrize(
    ("matcher", "run", "held"),
    [
        ({"project": "proj"}, {}, EVERYONE),
        ({"project": "other"}, {}, set()),
        ({"domain": "prod"}, {}, EVERYONE),
        ({"domain": "dev"}, {}, set()),
        ({"launch_plan": "nightly"}, {}, EVERYONE),
        ({"launch_plan": "nightly"}, {"plan": OTHER_PLAN}, set()),
        ({"phases": frozenset({P.SUCCEEDED})}, {"phase": "SUCCEEDED"}, EVERYONE - {"#data-alerts"}),
        ({"phases": frozenset({P.SUCCEEDED})}, {}, set()),
        ({"recipient": "OPS@example.com"}, {}, {"ops@example.com"}),
        ({"recipient": "data.example.org"}, {}, {"lead@data.example.org"}),
        ({"recipient": "data-alerts"}, {}, {"#data-alerts"}),  # a Slack channel, without "#"
        ({"recipient": "example"}, {}, set()),  # no form of any recipient
        ({"trigger": "nightly-cron"}, {}, set()),  # a run no trigger started
        ({"project": "proj", "recipient": "#data-alerts"}, {}, {"#data-alerts"}),
        ({"all": True}, {}, EVERYONE),
    ],
)  # fmt: skip
async def test_each_matcher_holds_what_it_names_and_nothing_else(
    notifier: Notifier, matcher: dict[str, object], run: dict[str, object], held: set[str]
) -> None:
    silence, _ = await notifier.create_silence(_silence(**matcher))
    found = await _run(notifier, "e1", **run)  # type: ignore[arg-type]
    assert {r for r, (status, _) in found.items() if status is DeliveryStatus.SILENCED} == held
    for recipient, (status, silence_id) in found.items():
        silenced = recipient in held
        assert status is (DeliveryStatus.SILENCED if silenced else DeliveryStatus.PENDING)
        assert silence_id == (silence.id if silenced else None)
    # What a silence holds is never claimed: nothing of it reaches the inbox.
    await notifier.run_until_idle()
    sent = {m.recipient for m in await notifier.inbox()}
    assert sent == set(found) - held


async def test_a_recurring_silence_holds_only_in_its_windows(
    notifier: Notifier, clock: Clock
) -> None:
    nights = _silence(project="proj", ends_at=None, recurring=NIGHTS, starts_at=T0)
    silence, held = await notifier.create_silence(nights)
    assert (held, notifier.silence_state(silence)) == (0, "scheduled")  # noon in Paris
    assert set((await _run(notifier, "noon")).values()) == {(DeliveryStatus.PENDING, None)}
    clock.at = _paris(2025, 1, 15, 23, 30)  # 22:30 UTC
    assert notifier.silence_state(silence) == "active"
    at_night = set((await _run(notifier, "night")).values())
    assert at_night == {(DeliveryStatus.SILENCED, silence.id)}
    clock.at = _paris(2025, 7, 16, 6, 0)  # summer, the window just closed (04:00 UTC)
    assert set((await _run(notifier, "dawn")).values()) == {(DeliveryStatus.PENDING, None)}
    clock.at = _paris(2025, 7, 16, 5, 59)  # a minute before, in a summer night
    assert set((await _run(notifier, "late")).values()) == {(DeliveryStatus.SILENCED, silence.id)}


async def test_ending_without_release_keeps_what_it_held_silenced(
    notifier: Notifier, clock: Clock
) -> None:
    silence, _ = await notifier.create_silence(_silence(launch_plan="nightly"))
    await _run(notifier, "e1")
    clock.at = T0 + timedelta(minutes=10)
    ended, released = await notifier.end_silence(silence.id, "bob")
    assert (released, ended.ended_by, ended.ended_at) == (0, "bob", clock.at)
    assert notifier.silence_state(ended) == "ended"
    await notifier.run_until_idle()
    held = await notifier.deliveries(DeliveryFilter(silence=silence.id))
    assert {d.status for d in held} == {DeliveryStatus.SILENCED}
    assert await notifier.inbox() == []
    # Over: new deliveries go out.
    assert {s for s, _ in (await _run(notifier, "e2")).values()} == {DeliveryStatus.PENDING}
    with pytest.raises(Conflict, match="ended by bob already"):
        await notifier.end_silence(silence.id, "carol", release=True)
    with pytest.raises(UnknownReference):
        await notifier.end_silence(silence.id + 1, "carol")
    with pytest.raises(InputError, match="author"):
        await notifier.end_silence(silence.id, "")


async def test_ending_with_release_sends_what_it_held_now(database_url: str) -> None:
    clock = Clock(T0)
    async with SmtpServer() as smtp:
        settings = Settings(
            database=DatabaseConfig(url=database_url),
            smtp=smtp.smtp_config(sender="flyte@example.com"),
            grouping=GroupingConfig(by=[]),
        )
        async with Notifier(settings, clock=clock) as n:
            await n.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
            silence, _ = await n.create_silence(_silence(recipient="example.com"))
            for name in ("e1", "e2"):
                assert set((await _run(n, name)).values()) == {
                    (DeliveryStatus.SILENCED, silence.id)
                }
            await n.run_until_idle()
            assert smtp.messages == []  # held: nothing went out
            clock.at = T0 + timedelta(minutes=30)
            _, released = await n.end_silence(silence.id, "bob", release=True)
            assert released == 2
            await n.run_until_idle()
            received = await smtp.wait_for_messages(2)
            assert {m.rcpt_tos for m in received} == {("ops@example.com",)}
            named = {
                name for m in received for name in ("e1", "e2") if name in m.message["Subject"]
            }
            assert named == {"e1", "e2"}
            assert len({m.message["Message-ID"] for m in received}) == 2
            held = await n.deliveries(DeliveryFilter(silence=silence.id))
            assert {d.status for d in held} == {DeliveryStatus.DELIVERED}
            assert {d.silence_id for d in held} == {silence.id}  # kept, for the record
            trail = [(a.outcome, a.reply) for a in await n.attempts(held[0].id)]
            assert trail[0] == ("released", f"released when bob ended silence {silence.id}")
            assert trail[1][0] == "delivered"


async def test_a_new_silence_holds_the_waiting_deliveries_it_matches(
    notifier: Notifier,
) -> None:
    await _run(notifier, "before")
    waiting = await notifier.deliveries()
    assert len(waiting) == 3
    (in_flight,) = await notifier.store.claim("someone", time.time() + 1, 60.0, {"inbox": 1})
    silence, held = await notifier.create_silence(_silence(project="proj"))
    assert held == 2  # the one being sent right now is left to its send
    for delivery in await notifier.deliveries():
        trail = [(a.outcome, a.reply) for a in await notifier.attempts(delivery.id)]
        if delivery.id == in_flight.id:
            assert (delivery.status, delivery.silence_id, trail) == (
                DeliveryStatus.PENDING,
                None,
                [],
            )
        else:
            assert (delivery.status, delivery.silence_id) == (DeliveryStatus.SILENCED, silence.id)
            assert trail == [("silenced", f"held by silence {silence.id} (alice@example.com)")]
    # A silence not in effect yet holds nothing now.
    later = _silence(project="proj", starts_at=T0 + timedelta(hours=1))
    scheduled, held_now = await notifier.create_silence(later)
    assert held_now == 0
    # Nor does one ended before its hold is written (an end racing its creation).
    await notifier.end_silence(silence.id, "bob")
    await notifier.end_silence(scheduled.id, "bob")
    after = await _run(notifier, "after")
    fresh = [d.id for d in await notifier.deliveries(DeliveryFilter(status=DeliveryStatus.PENDING))]
    assert len(fresh) == 1 + len(after)  # and the one in flight
    store = notifier.store
    assert await store.hold_deliveries(scheduled.id, fresh, time.time(), "") == 0
    elsewhere, _ = await notifier.create_silence(_silence(domain="elsewhere"))
    assert await store.hold_deliveries(elsewhere.id, fresh, time.time(), "") == len(fresh) - 1


async def test_what_an_expired_silence_held_stays_silenced_and_can_be_redriven(
    notifier: Notifier, clock: Clock
) -> None:
    silence, _ = await notifier.create_silence(_silence(recipient="ops@example.com"))
    found = await _run(notifier, "e1")
    assert found["ops@example.com"] == (DeliveryStatus.SILENCED, silence.id)
    clock.at = T0 + timedelta(hours=3)  # past its end
    assert notifier.silence_state(silence) == "expired"
    assert (await _run(notifier, "e2"))["ops@example.com"] == (DeliveryStatus.PENDING, None)
    (held,) = await notifier.deliveries(DeliveryFilter(status=DeliveryStatus.SILENCED))
    assert held.silence_id == silence.id
    redriven = await notifier.redrive(held.id)
    assert redriven is not None
    assert redriven.status is DeliveryStatus.PENDING
    await notifier.run_until_idle()
    delivered = await notifier.delivery(held.id)
    assert delivered is not None
    assert delivered.status is DeliveryStatus.DELIVERED
    assert [a.outcome for a in await notifier.attempts(held.id)] == ["redrive", "delivered"]
    assert await notifier.redrive(held.id) is None  # delivered: neither dead nor silenced


async def test_a_silence_ended_while_a_batch_was_planned_holds_none_of_it(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake reads the silences before its transaction; one ended (and its held
    deliveries released) in between must not hold what the batch then writes."""
    silence, _ = await notifier.create_silence(_silence(project="proj"))
    read_before = await notifier.store.silences_in_effect(T0.timestamp())
    assert [s.id for s in read_before] == [silence.id]
    await notifier.end_silence(silence.id, "bob", release=True)

    async def stale(now: float) -> list[Silence]:
        return read_before  # what the batch read, before the silence ended

    monkeypatch.setattr(notifier.store, "silences_in_effect", stale)
    found = await _run(notifier, "e1")
    assert set(found.values()) == {(DeliveryStatus.PENDING, None)}


async def test_a_silence_outlives_a_restart(database_url: str) -> None:
    settings = Settings(database=DatabaseConfig(url=database_url), grouping=GroupingConfig(by=[]))
    clock = Clock(T0)
    async with Notifier(settings, dev_inbox=True, clock=clock) as first:
        await first.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
        nights = _silence(launch_plan="nightly", ends_at=None, recurring=NIGHTS)
        silence, _ = await first.create_silence(nights)
    clock.at = _paris(2025, 1, 16, 2, 0)
    async with Notifier(settings, dev_inbox=True, clock=clock) as second:
        assert await second.silence(silence.id) == silence
        found = await _run(second, "after-restart")
        assert found == {"ops@example.com": (DeliveryStatus.SILENCED, silence.id)}
        listed, more = await second.silences(active=True)
        assert ([s.id for s in listed], more) == ([silence.id], None)
        clock.at = _paris(2025, 1, 16, 12, 0)
        assert (await second.silences(active=True))[0] == []
        assert [s.id for s in (await second.silences(active=False))[0]] == [silence.id]


async def test_silences_are_listed_newest_first_a_page_at_a_time(notifier: Notifier) -> None:
    made = [(await notifier.create_silence(_silence(project=f"p{i}")))[0].id for i in range(5)]
    first, cursor = await notifier.silences(limit=2)
    assert [s.id for s in first] == made[::-1][:2]
    second, cursor = await notifier.silences(before_id=cursor, limit=2)
    assert [s.id for s in second] == made[::-1][2:4]
    last, cursor = await notifier.silences(before_id=cursor, limit=2)
    assert ([s.id for s in last], cursor) == ([made[0]], None)
