"""Silences: when one is in effect, what it holds, and what a valid one is.

A delivery planned while a silence that matches it is in effect is recorded
with status ``silenced`` and the silence's id instead of ``pending``: the
dispatcher never claims it, and nothing is lost. Ending a silence early may
release what it held (pending again, due at once); a silence that ends by
itself (its end passes, or a recurring window closes) leaves what it held
silenced, visible and re-drivable one by one like a dead letter: what was
quiet then is stale now, and a flood of old alerts the moment a window closes
is what a silence was for.

Matching, one matcher at a time (each left out matches everything):
``project`` and ``domain`` are the execution's; ``launch_plan`` its launch
plan's name, any version (a Flyte 2 run's task); ``trigger`` the Flyte 2
trigger that started a run (a run started by hand has none); ``phases`` the
event's phase (a deadline's alert: the phase the run was in); ``recipient`` the delivery's recipient
exactly (without regard to case) or any form of it an ``[allow]`` entry may
name (an address's domain; a Slack channel with or without ``#``). An inline
email, one message to several addresses, is held when every one of them
matches.

Time: a one-off silence is in effect from ``starts_at`` until ``ends_at``. A
recurring one during each of its windows between those: a window opens
whenever its cron expression fires on the wall clock of its time zone and
lasts ``duration`` of that wall clock, so ``0 22 * * *`` for 8 h in
Europe/Paris is 22:00 to 06:00 Paris time every night, the nights the clocks
change included (seven or nine hours long then).
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flytenotify import schedules
from flytenotify.channels import registry
from flytenotify.channels.base import plain_allow_forms
from flytenotify.domain import (
    RULE_PHASES,
    Delivery,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
    Recurrence,
    Silence,
    phase_name,
)
from flytenotify.errors import Problem
from flytenotify.intake.limits import identifier_problems, recipient_problems, time_problems
from flytenotify.schedules import format_duration
from flytenotify.store.base import NewDelivery

# A window lasts at least a minute (cron fires per minute) and at most a year.
MIN_DURATION = 60
MAX_DURATION = 366 * 86400
COMMENT_LIMIT = 2_000
AUTHOR_LIMIT = 254
CRON_LIMIT = 200
# An IANA name: "UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5".
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,3}")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Free text a store can hold: no NUL, no lone surrogate; an author's name is one line.
_NOT_IN_COMMENT = re.compile(r"[\x00\ud800-\udfff]")
_NOT_IN_AUTHOR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class State(enum.StrEnum):
    """Where a silence is in its life, at a given time."""

    ACTIVE = "active"  # in effect: what it matches is silenced now
    SCHEDULED = "scheduled"  # not yet in effect, or between two of its windows
    EXPIRED = "expired"  # its end passed
    ENDED = "ended"  # someone ended it


# -- time ---------------------------------------------------------------------------------------


def in_effect(silence: Silence, moment: datetime) -> bool:
    """Whether ``silence`` silences what is planned at ``moment``."""
    if silence.ended_at is not None and silence.ended_at <= moment:
        return False
    if moment < silence.starts_at:
        return False
    if silence.ends_at is not None and moment >= silence.ends_at:
        return False
    return silence.recurring is None or in_window(silence.recurring, moment)


def in_window(recurring: Recurrence, moment: datetime) -> bool:
    """Whether one of ``recurring``'s windows holds ``moment``.

    On the wall clock of its time zone: the window that may hold it is the one
    opened by the first firing after ``moment - duration``, if that firing is
    not after ``moment`` (the windows' ends are not part of them).
    """
    wall = _wall(moment, recurring.timezone)
    try:
        opened = croniter(recurring.cron, wall - timedelta(seconds=recurring.duration))
        start: datetime = opened.get_next(datetime)
    except Exception:  # stored before it was checked: a silence that never fires
        return False
    return start <= wall


def state(silence: Silence, now: datetime) -> State:
    if silence.ended_at is not None:
        return State.ENDED
    if silence.ends_at is not None and silence.ends_at <= now:
        return State.EXPIRED
    return State.ACTIVE if in_effect(silence, now) else State.SCHEDULED


def next_start(silence: Silence, now: datetime) -> datetime | None:
    """When ``silence`` next comes into effect after ``now``; None when it is in
    effect now or never will be again."""
    if state(silence, now) is not State.SCHEDULED:
        return None
    recurring = silence.recurring
    if now < silence.starts_at and (recurring is None or in_effect(silence, silence.starts_at)):
        return silence.starts_at  # a one-off one, or one that starts inside a window
    if recurring is None:
        return None
    zone = ZoneInfo(recurring.timezone)
    after = _wall(max(now, silence.starts_at), recurring.timezone)
    try:
        wall: datetime = croniter(recurring.cron, after).get_next(datetime)
    except Exception:
        return None
    start = wall.replace(tzinfo=zone).astimezone(UTC)
    return start if silence.ends_at is None or start < silence.ends_at else None


def _wall(moment: datetime, timezone: str) -> datetime:
    """``moment`` as the wall clock of ``timezone`` reads it (naive)."""
    return moment.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)


def parse_duration(raw: object) -> int:
    """Seconds, from a whole number of them or ``8h``, ``90m``, ``1h30m``, ``2d``, ``45s``."""
    if isinstance(raw, bool):
        raise ValueError(f"must be seconds or a duration such as 8h or 1h30m, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text.isdigit() and len(text) <= 10:
            return int(text)
        with contextlib.suppress(ValueError):
            return int(schedules.parse_duration(text))
    raise ValueError(f"must be seconds or a duration such as 8h or 1h30m, got {raw!r}")


# -- matching -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What silences are matched against: one delivery's facts."""

    project: str
    domain: str
    launch_plan: str  # its name, "" when unknown
    phase: int
    kind: str
    channel: str
    recipient: str
    addresses: tuple[str, ...] = ()  # an inline email's every address
    trigger: str = ""  # the Flyte 2 trigger that started the run, if one did


def matches(silence: Silence, target: Target) -> bool:
    """Whether every matcher ``silence`` gives matches ``target``."""
    scalars = (
        (silence.project, target.project),
        (silence.domain, target.domain),
        (silence.launch_plan, target.launch_plan),
        (silence.trigger, target.trigger),
    )
    if any(wanted is not None and wanted != found for wanted, found in scalars):
        return False
    if silence.phases and target.phase not in silence.phases:
        return False
    return silence.recipient is None or _recipient_matches(silence.recipient, target)


def _recipient_matches(wanted: str, target: Target) -> bool:
    wanted = wanted.strip().lower()
    if target.addresses:
        return all(wanted in plain_allow_forms(address) for address in target.addresses)
    return wanted in _forms(target)


def _forms(target: Target) -> set[str]:
    """The forms of the target's recipient an ``[allow]`` entry may name: its channel's
    (for the dev inbox, the channel it stands in for)."""
    spec = registry.get(target.channel)
    if spec is None and target.channel == registry.INBOX:
        spec = registry.standing_in_for(target.kind, target.recipient)
    return (
        spec.allow_forms(target.recipient)
        if spec is not None
        else plain_allow_forms(target.recipient)
    )


@dataclass(frozen=True)
class Subject:
    """What planned deliveries are about: an execution in a phase, of a launch plan
    (a Flyte 2 run: of a task), perhaps started by a Flyte 2 trigger."""

    execution_id: ExecutionId
    launch_plan: EntityId | None
    phase: int
    trigger: str = ""

    @classmethod
    def of(cls, event: ExecutionEvent, execution: Execution) -> Subject:
        plan = execution.launch_plan or event.launch_plan
        return cls(event.execution_id, plan, event.phase, execution.trigger)


def hold(
    deliveries: Sequence[NewDelivery], subject: Subject, silences: Sequence[Silence]
) -> list[NewDelivery]:
    """``deliveries`` with the id of the first of ``silences`` (those in effect now)
    that matches each, if any: those are recorded silenced."""
    if not silences:
        return list(deliveries)
    held = []
    for delivery in deliveries:
        target = _target(subject, delivery)
        found = next((s.id for s in silences if matches(s, target)), None)
        held.append(replace(delivery, silence_id=found) if found is not None else delivery)
    return held


def holds(silence: Silence, delivery: Delivery, trigger: str = "") -> bool:
    """Whether ``silence`` matches a delivery already in the ledger (whose run the
    Flyte 2 ``trigger`` started, if one did)."""
    subject = Subject(delivery.execution_id, delivery.launch_plan, delivery.phase, trigger)
    return matches(silence, _target(subject, delivery))


def _target(subject: Subject, delivery: NewDelivery | Delivery) -> Target:
    envelope = delivery.message.envelope
    return Target(
        project=subject.execution_id.project,
        domain=subject.execution_id.domain,
        launch_plan=subject.launch_plan.name if subject.launch_plan is not None else "",
        phase=subject.phase,
        kind=delivery.kind,
        channel=delivery.channel,
        recipient=delivery.recipient,
        addresses=tuple(box.address for box in envelope.everyone) if envelope else (),
        trigger=subject.trigger,
    )


# -- what a valid silence is --------------------------------------------------------------------


def problems(silence: Silence, now: datetime) -> list[Problem]:
    """Everything wrong with a silence to be created at ``now``, each naming its field
    as the HTTP API spells it."""
    found = _matcher_problems(silence)
    found += comment_problems(silence.comment)
    found += author_problems(silence.author)
    found += time_problems(silence.starts_at, "starts_at")
    if silence.ends_at is not None:
        found += time_problems(silence.ends_at, "ends_at")
    if any(p.field in ("starts_at", "ends_at") for p in found):
        return found  # a time without a zone cannot be compared
    if silence.ends_at is None and silence.recurring is None:
        found.append(
            Problem("ends_at", "is required for a one-off silence (or give recurring windows)")
        )
    elif silence.ends_at is not None and silence.ends_at <= silence.starts_at:
        found.append(Problem("ends_at", "must be after starts_at"))
    elif silence.ends_at is not None and silence.ends_at <= now:
        found.append(Problem("ends_at", "is in the past: the silence would silence nothing"))
    if silence.recurring is not None:
        found += recurrence_problems(silence.recurring)
    return found


def _matcher_problems(silence: Silence) -> list[Problem]:
    found: list[Problem] = []
    for field, part in (
        ("project", "project"),
        ("domain", "domain"),
        ("launch_plan", "name"),
        ("trigger", "name"),
    ):
        value = getattr(silence, field)
        if value is not None:
            found += identifier_problems(value, field, part)
    if silence.recipient is not None:
        if not silence.recipient.strip():
            found.append(Problem("recipient", "must not be empty"))
        else:
            found += recipient_problems(silence.recipient, "recipient")
    known = set(RULE_PHASES.values())
    for phase in sorted(silence.phases - known):
        found.append(Problem("phases", f"must be among {', '.join(RULE_PHASES)}, got {phase}"))
    if silence.all and silence.matchers:
        given = ", ".join(silence.matchers)
        found.append(Problem("all", f"silences every delivery: give it alone, not with {given}"))
    elif not silence.all and not silence.matchers:
        found.append(
            Problem(
                "all",
                "a silence must match something: give project, domain, launch_plan, trigger,"
                " phases or recipient, or all: true to silence every delivery",
            )
        )
    return found


def recurrence_problems(recurring: Recurrence) -> list[Problem]:
    found: list[Problem] = []
    cron = _cron_problem(recurring.cron)
    if cron is not None:
        found.append(Problem("recurring.cron", cron))
    if not MIN_DURATION <= recurring.duration <= MAX_DURATION:
        found.append(
            Problem(
                "recurring.duration",
                f"must be from {format_duration(MIN_DURATION)} to {MAX_DURATION // 86400}d,"
                f" got {recurring.duration} seconds",
            )
        )
    zone = zone_problem(recurring.timezone)
    if zone is not None:
        found.append(Problem("recurring.timezone", zone))
    return found


def _cron_problem(expression: str) -> str | None:
    fields = expression.split()
    macro = len(fields) == 1 and fields[0].lower() in _CRON_MACROS
    if len(expression) > CRON_LIMIT or not (len(fields) == 5 or macro):
        return (
            "must be five fields (minute hour day-of-month month day-of-week) or one of"
            f" {', '.join(_CRON_MACROS)}, got {expression[:CRON_LIMIT]!r}"
        )
    if not expression.isascii() or not croniter.is_valid(expression):
        return f"is not a valid cron expression: {expression!r}"
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except Exception:  # valid field by field, yet no day has it (30 February)
        return f"never fires: {expression!r}"
    return None


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone this machine knows, or None."""
    if not (len(name) <= 64 and _ZONE_NAME.fullmatch(name)):
        return f"must be an IANA time zone name such as Europe/Paris or UTC, got {name[:64]!r}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"is not a time zone this machine knows: {name!r}"
    return None


def comment_problems(comment: str, field: str = "comment") -> list[Problem]:
    """What is wrong with why a silence was made: free text, lines and all."""
    return _text_problems(comment, field, COMMENT_LIMIT, _NOT_IN_COMMENT)


def author_problems(author: str, field: str = "author") -> list[Problem]:
    """What is wrong with who creates or ends a silence: their name, on one line,
    starting with a visible character."""
    if author[:1].isspace():
        return [Problem(field, "must start with a visible character")]
    return _text_problems(author, field, AUTHOR_LIMIT, _NOT_IN_AUTHOR)


def _text_problems(value: str, field: str, limit: int, forbidden: re.Pattern[str]) -> list[Problem]:
    if not value.strip():
        return [Problem(field, "is required: a non-empty string")]
    if len(value) > limit:
        return [Problem(field, f"is {len(value)} characters long; at most {limit} are allowed")]
    bad = forbidden.search(value)
    if bad is not None:
        return [Problem(field, f"must not contain {bad.group()!r} (position {bad.start()})")]
    return []


def describe(silence: Silence) -> str:
    """What a silence matches and when, in one line (the CLI, the console, logs)."""
    matched = [f"{name}={value}" for name, value in silence.matchers.items() if name != "phases"]
    if silence.phases:
        matched.append("phases=" + ",".join(phase_name(p) for p in sorted(silence.phases)))
    what = " ".join(matched) if matched else "everything"
    if silence.recurring is None:
        return what
    every = silence.recurring
    return f"{what}, {every.cron} for {format_duration(every.duration)} ({every.timezone})"
