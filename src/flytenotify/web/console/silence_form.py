"""The console's silence form: its fields read into a :class:`~flytenotify.domain.Silence`.

What a field's text means is decided here (an empty field is no matcher, a
time is ISO 8601, a duration ``2h``); what a valid silence is, the Notifier
decides (:func:`flytenotify.engine.silences.problems`), so the form, the API
and the CLI refuse the same things with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flytenotify.domain import RULE_PHASES, Recurrence, Silence
from flytenotify.engine.silences import parse_duration
from flytenotify.errors import Problem

# Text fields, in the order the form shows them.
TEXT_FIELDS = (
    "project",
    "domain",
    "launch_plan",
    "trigger",
    "recipient",
    "starts_at",
    "ends_at",
    "lasting",
    "cron",
    "duration",
    "timezone",
    "comment",
    "author",
)
# What a new form holds: a one-off silence of two hours from now.
DEFAULTS = {"lasting": "2h", "timezone": "UTC"}


@dataclass
class SilenceForm:
    """A silence form as filled in, and what was wrong with it."""

    values: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    phases: list[str] = field(default_factory=list)
    all: bool = False
    problems: list[Problem] = field(default_factory=list)


def read(form: Any, now: datetime) -> tuple[SilenceForm, Silence | None]:
    """The form as filled in, and the silence it describes (None when a field could
    not even be read)."""
    values = {name: str(form.get(name) or "").strip() for name in TEXT_FIELDS}
    filled = SilenceForm(
        values=values,
        phases=[str(p).upper() for p in form.getlist("phases")],
        all=form.get("all") == "on",
    )
    problems = filled.problems
    phases = set()
    for name in filled.phases:
        if name in RULE_PHASES:
            phases.add(RULE_PHASES[name])
        else:
            problems.append(Problem("phases", f"must be among {', '.join(RULE_PHASES)}"))
    starts_at = _time(values["starts_at"], "starts_at", problems) or now
    ends_at = _time(values["ends_at"], "ends_at", problems)
    lasting = _duration(values["lasting"], "lasting", problems)
    if ends_at is not None and lasting is not None:
        problems.append(Problem("lasting", "give an end or how long it lasts, not both"))
    elif lasting is not None:
        ends_at = starts_at + timedelta(seconds=lasting)
    recurring = _recurring(values, problems)
    if problems:
        return filled, None
    silence = Silence(
        project=values["project"] or None,
        domain=values["domain"] or None,
        launch_plan=values["launch_plan"] or None,
        trigger=values["trigger"] or None,
        phases=frozenset(phases),
        recipient=values["recipient"] or None,
        all=filled.all,
        starts_at=starts_at,
        ends_at=ends_at,
        recurring=recurring,
        comment=values["comment"],
        author=values["author"],
    )
    return filled, silence


def _recurring(values: dict[str, str], problems: list[Problem]) -> Recurrence | None:
    cron, duration = values["cron"], _duration(values["duration"], "duration", problems)
    if not cron and duration is None:
        return None
    if not cron or duration is None:
        field_ = "recurring.cron" if not cron else "recurring.duration"
        problems.append(
            Problem(field_, "a recurring silence needs a cron expression and a duration")
        )
        return None
    return Recurrence(cron, duration, values["timezone"] or "UTC")


def _time(text: str, name: str, problems: list[Problem]) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        problems.append(Problem(name, f"must be an ISO 8601 time with a time zone, got {text!r}"))
        return None


def _duration(text: str, name: str, problems: list[Problem]) -> int | None:
    if not text:
        return None
    try:
        return parse_duration(text)
    except ValueError as error:
        problems.append(Problem(name, str(error)))
        return None
