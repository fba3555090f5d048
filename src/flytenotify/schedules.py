"""Durations and schedules as deadlines write them, read once for every face.

Durations are written ``90s``, ``10m``, ``2h``, ``1d`` or combined in that
order (``1h30m``): whole numbers without leading zeros, so a value is never
zero or negative. A deadline's own schedule is a five-field cron expression in
UTC (minute, hour, day of month, month, day of week) of numbers, ``*``,
ranges, lists and steps; a schedule read from FlyteAdmin may be any cron
expression croniter reads (``@daily``), or a fixed rate.

The same rules hold in the configuration file, the HTTP API (whose OpenAPI
document carries :data:`DURATION_PATTERN` and :data:`CRON_PATTERN`) and the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadDateError, croniter

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
# At most 999 days, 9999 hours...: whatever fits the pattern is a duration the ledger keeps.
_AMOUNT = {
    "d": "[1-9][0-9]{0,2}",
    "h": "[1-9][0-9]{0,3}",
    "m": "[1-9][0-9]{0,4}",
    "s": "[1-9][0-9]{0,5}",
}


def _duration_pattern() -> str:
    # Each unit at most once, in order, at least one: written out, since JSON
    # Schema's regular expressions (and those that generate test data) know no
    # lookahead.
    parts = [f"{_AMOUNT[unit]}{unit}" for unit, _ in _UNITS]
    choices = []
    for first in range(len(parts)):
        rest = "".join(f"({part})?" for part in parts[first + 1 :])
        choices.append(parts[first] + rest)
    return "^(" + "|".join(choices) + ")$"


DURATION_PATTERN = _duration_pattern()
DURATION_EXAMPLES = "90s, 10m, 2h, 1d or 1h30m"
_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``1h30m`` is 5400.0); ValueError saying what is wrong."""
    if not _DURATION.match(text):
        if text.strip().startswith("-") or re.fullmatch(r"(0+[dhms])+", text):
            raise ValueError(f"must be positive, got {text!r}")
        raise ValueError(
            f"must be a duration such as {DURATION_EXAMPLES} (whole numbers without leading"
            f" zeros, units d, h, m, s in that order), got {text!r}"
        )
    seconds = 0
    for amount, unit in re.findall(r"([0-9]+)([dhms])", text):
        seconds += int(amount) * dict(_UNITS)[unit]
    return float(seconds)


def format_duration(seconds: float) -> str:
    """``5400`` as ``1h30m``: how a deadline's durations are shown (and written back)."""
    left = max(0, round(seconds))
    parts = []
    for unit, size in _UNITS:
        amount, left = divmod(left, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


def spoken_duration(seconds: float) -> str:
    """How long something took, for people: ``12m 3s``, ``2h 10m`` (two units at most)."""
    whole = max(0, int(seconds))
    amounts = [
        (whole // 86400, "d"),
        (whole % 86400 // 3600, "h"),
        (whole % 3600 // 60, "m"),
        (whole % 60, "s"),
    ]
    first = next((i for i, (amount, _) in enumerate(amounts) if amount), len(amounts) - 1)
    shown = [f"{amount}{unit}" for amount, unit in amounts[first : first + 2] if amount]
    return " ".join(shown) or "0s"


# -- cron ---------------------------------------------------------------------------------

_FIELDS = (
    "[0-5]?[0-9]",  # minute
    "1?[0-9]|2[0-3]",  # hour
    "0?[1-9]|[12][0-9]|3[01]",  # day of month
    "0?[1-9]|1[0-2]",  # month
    "[0-7]",  # day of week (0 and 7 are Sunday)
)
_STEP = "(/[1-9][0-9]?)?"


def _field(value: str) -> str:
    item = f"(\\*{_STEP}|({value})(-({value}))?{_STEP})"
    return f"{item}(,{item})*"


CRON_PATTERN = "^" + " ".join(_field(value) for value in _FIELDS) + "$"
CRON_MAX_LENGTH = 200
_CRON = re.compile(CRON_PATTERN)


def check_cron(expression: str) -> str:
    """A deadline's own cron expression, checked; ValueError saying what is wrong."""
    if len(expression) > CRON_MAX_LENGTH or not _CRON.match(expression):
        raise ValueError(
            "must be a cron expression of five fields in UTC (minute hour day-of-month month"
            f" day-of-week; numbers, *, ranges, lists and steps), got {expression!r}"
        )
    if not croniter.is_valid(expression):
        raise ValueError(f"is not a cron expression croniter can read: {expression!r}")
    try:
        croniter(expression, datetime.now(UTC)).get_next(float)
    except CroniterBadDateError:
        raise ValueError(f"never fires: {expression!r} names no date that exists") from None
    return expression


@dataclass(frozen=True)
class Schedule:
    """When a launch plan is meant to start: a cron expression (UTC) or every so many seconds.

    Kept in a schedule's timer as text (:meth:`text`): ``cron:0 2 * * *``,
    ``every:3600``.
    """

    cron: str = ""
    every: float = 0.0

    @property
    def text(self) -> str:
        return f"cron:{self.cron}" if self.cron else f"every:{self.every:g}"

    @classmethod
    def parse(cls, text: str) -> Schedule:
        kind, _, value = text.partition(":")
        if kind == "cron" and croniter.is_valid(value):
            return cls(cron=value)
        if kind == "every" and float(value) > 0:
            return cls(every=float(value))
        raise ValueError(f"not a schedule: {text!r}")

    def next_after(self, moment: float) -> float:
        """The first fire time after ``moment`` (Unix seconds); for a fixed rate, one
        period after it (the rate is kept from run to run, not from a fixed origin)."""
        if self.cron:
            return float(croniter(self.cron, datetime.fromtimestamp(moment, UTC)).get_next(float))
        return moment + self.every

    def describe(self) -> str:
        return f"{self.cron} (UTC)" if self.cron else f"every {spoken_duration(self.every)}"


def aws_cron(expression: str) -> str:
    """FlyteAdmin's deprecated ``cron_expression`` (AWS's six fields, ``?`` for "any",
    a year last) as five standard fields."""
    fields = expression.split()
    if len(fields) == 6:
        fields = fields[:5]
    return " ".join("*" if field == "?" else field for field in fields)
