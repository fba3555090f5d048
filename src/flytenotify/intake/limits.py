"""What intake accepts: one place for the rules on identifiers, free text, numbers and JSON.

Every way into the ledger (the HTTP API, the broker sources, the CLI, Python
callers of :class:`~flytenotify.app.Notifier`) goes through these checks, so a
value that a store cannot hold is refused at the door with its field named,
the same on SQLite and PostgreSQL:

- identifiers (project, domain, name, version) have a length limit and no
  control characters or lone surrogates: PostgreSQL text cannot hold NUL, no
  UTF-8 encoder can write a lone surrogate, and an identifier is part of a
  btree index entry, which PostgreSQL caps at 2,704 bytes. The limits below keep
  the longest key (a launch plan's four parts, 4 bytes per character at worst)
  under that cap;
- free text (an error message, a URI, a producer id) is never refused: it is
  cut to its limit with :data:`TRUNCATED` at the end, and NUL or lone
  surrogates become U+FFFD, so one odd event cannot jam a producer that retries;
- integers in paths and query strings are ASCII digits within 0..2**63-1 (a
  64-bit database integer), not whatever ``str.isdigit`` accepts;
- JSON nests at most :data:`MAX_JSON_DEPTH` levels;
- event times have a time zone and lie in :data:`EARLIEST_TIME`..:data:`LATEST_TIME`,
  where the ledger keeps them to the microsecond.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from flytenotify.domain import Deadline, NamedKind, NamedRule
from flytenotify.errors import InputError, Problem

# Characters an identifier may not hold: C0 and C1 controls (NUL among them)
# and lone surrogates (a str can hold one; UTF-8 cannot).
_NOT_IN_IDENTIFIER = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Free text keeps tabs and newlines; NUL and lone surrogates cannot be stored.
_NOT_IN_TEXT = re.compile(r"[\x00\ud800-\udfff]")

# Characters, per part. Flyte projects and domains name a Kubernetes namespace
# ("project-domain"), so 63 is more than they can be; names and versions get 255.
# A recipient (an email address is at most 254) is part of a delivery's unique
# idempotency key with the execution's id: 4 * (63 + 63 + 255 + 254) + the rest
# stays under the index row limit too.
IDENTIFIER_LIMITS = {"project": 63, "domain": 63, "name": 255, "version": 255, "recipient": 254}
# Parts that may hold "/" (elsewhere it separates "project/domain/name").
_SLASH_ALLOWED = frozenset({"version", "recipient"})

# C0 and C1 controls, as a JSON Schema character range: refused in identifiers (and
# in the OpenAPI document's patterns, so that data the document calls valid is
# data the service accepts).
NO_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"


def identifier_pattern(part: str, shortest: int = 1) -> str:
    """The identifier rule of ``part`` (a key of ``IDENTIFIER_LIMITS``) as a regex."""
    slash = "" if part in _SLASH_ALLOWED else "/"
    return f"^[^{NO_CONTROL}{slash}]{{{shortest},{IDENTIFIER_LIMITS[part]}}}$"


# A recipient as a schema: it starts with a visible character; the rest is checked
# where it is used.
RECIPIENT = {
    "type": "string",
    "pattern": f"^[^\\s{NO_CONTROL}][^{NO_CONTROL}]{{0,{IDENTIFIER_LIMITS['recipient'] - 1}}}$",
}

# A part that passes every check above, in one match: every event's ids go
# through here, and the checks one by one were a seventh of parsing an event.
_GOOD_PART = {
    part: re.compile(
        rf"[^\x00-\x1f\x7f-\x9f\ud800-\udfff{'' if part in _SLASH_ALLOWED else '/'}]{{1,{limit}}}"
    )
    for part, limit in IDENTIFIER_LIMITS.items()
}
# A notification's body template: refused beyond this, it is configuration.
TEMPLATE_LIMIT = 16_384
# Free text, in characters; longer text is cut and ends with TRUNCATED.
TEXT_LIMITS = {
    "error.message": 16_384,
    "error.code": 1_024,
    "error.error_uri": 2_048,
    "output_uri": 2_048,
    "producer_id": 1_024,
}
TRUNCATED = "… [truncated]"
# Event times the ledger keeps to the microsecond. It stores Unix seconds as a
# double, which holds every microsecond below 2**33 s (the year 2242); before the
# epoch is no producer's clock. A time outside is refused, never rounded: the
# largest ISO time, 9999-12-31T23:59:59.999999, rounds up to a year datetime
# cannot hold.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)  # not included
MAX_JSON_DEPTH = 64
MAX_INT = 2**63 - 1


def identifier_problems(
    value: object, field: str, part: str, required: bool = True
) -> list[Problem]:
    """What is wrong with one identifier part (``part`` is a key of IDENTIFIER_LIMITS)."""
    if required and (value is None or value == ""):
        return [Problem(field, "is required: a non-empty string")]
    if value == "":
        return []  # an optional part left empty
    if not isinstance(value, str):
        return [Problem(field, f"must be a string, got {type(value).__name__}")]
    limit = IDENTIFIER_LIMITS[part]
    if len(value) > limit:
        return [Problem(field, f"is {len(value)} characters long; at most {limit} are allowed")]
    bad = _NOT_IN_IDENTIFIER.search(value)
    if bad is not None:
        return [
            Problem(
                field,
                f"must not contain control characters or lone surrogates,"
                f" found {bad.group()!r} at position {bad.start()}",
            )
        ]
    if part not in _SLASH_ALLOWED and "/" in value:
        # "project/domain/name" is how an execution is named in queries and logs.
        return [Problem(field, f"must not contain '/', got {value!r}")]
    return []


def id_problems(
    parts: Mapping[str, object], field: str, version_required: bool = False
) -> list[Problem]:
    """Problems of an execution id or entity id given as ``{part: value}``."""
    prefix = f"{field}." if field else ""
    problems: list[Problem] = []
    for part, value in parts.items():
        if isinstance(value, str) and _GOOD_PART[part].fullmatch(value):
            continue
        required = part != "version" or version_required
        problems += identifier_problems(value, f"{prefix}{part}", part, required)
    return problems


def recipient_problems(value: str, field: str) -> list[Problem]:
    """What is wrong with a recipient: too long, a control character or a lone surrogate.

    No channel's address holds a control character, and CR/LF or a tab in one
    is how a header or a second recipient would be smuggled in.
    """
    limit = IDENTIFIER_LIMITS["recipient"]
    if len(value) > limit:
        return [Problem(field, f"is {len(value)} characters long; at most {limit} are allowed")]
    bad = _NOT_IN_IDENTIFIER.search(value)
    if bad is not None:
        return [
            Problem(
                field,
                f"must not contain control characters or lone surrogates,"
                f" found {bad.group()!r} at position {bad.start()}",
            )
        ]
    return []


def time_problems(value: datetime, field: str) -> list[Problem]:
    """What is wrong with an event time: no time zone, or outside what the ledger keeps."""
    if value.utcoffset() is None:
        return [Problem(field, f"must have a time zone (UTC), got {value.isoformat()}")]
    if not EARLIEST_TIME <= value < LATEST_TIME:
        return [
            Problem(
                field,
                f"must be from {iso_time(EARLIEST_TIME)} up to, not including,"
                f" {iso_time(LATEST_TIME)}; got {value.isoformat()}",
            )
        ]
    return []


def iso_time(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with ``Z``: how the limits name times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def template_problems(value: str, field: str) -> list[Problem]:
    """What is wrong with a body template: too long, or a character no store can hold."""
    if len(value) > TEMPLATE_LIMIT:
        return [Problem(field, f"is {len(value)} characters long; at most {TEMPLATE_LIMIT}")]
    bad = _NOT_IN_TEXT.search(value)
    if bad is not None:
        return [Problem(field, f"must not contain {bad.group()!r} (position {bad.start()})")]
    return []


def clean_text(value: str, limit: int) -> str:
    """``value`` made storable: NUL and lone surrogates replaced, cut to ``limit`` characters."""
    if not value.isascii() or "\x00" in value:
        value = _NOT_IN_TEXT.sub("\ufffd", value)
    if len(value) > limit:
        value = value[: limit - len(TRUNCATED)] + TRUNCATED
    return value


def parse_int(raw: str, field: str, low: int = 0, high: int = MAX_INT) -> int:
    """``raw`` as an integer in ``low..high``, ASCII digits only; InputError naming ``field``."""
    digits = (raw.lstrip("0") or "0") if raw.isascii() and raw.isdigit() else ""
    # A length check first: int() of thousands of digits is slow, then refused.
    if digits and len(digits) <= len(str(high)) and low <= int(digits) <= high:
        return int(digits)
    raise InputError(Problem(field, f"must be an integer between {low} and {high}, got {raw!r}"))


def loads_json(body: bytes | str, field: str = "body") -> Any:
    """Decoded JSON, or InputError naming ``field``: invalid, not UTF-8, or nested too deep."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InputError(
            Problem(
                field,
                f"is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
            )
        ) from None
    if _deeper_than(data, MAX_JSON_DEPTH):
        raise InputError(Problem(field, f"nests deeper than {MAX_JSON_DEPTH} levels"))
    return data


def _deeper_than(data: Any, limit: int) -> bool:
    # Iterative: the point is to stay clear of Python's recursion limit.
    if not isinstance(data, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def check_named_rule(entry: NamedRule) -> list[Problem]:
    """What is wrong with a named rule or named delivery given over the API or CLI."""
    problems = identifier_problems(entry.name, "name", "name")
    for field, value in (("project", entry.project), ("domain", entry.domain)):
        if value:
            problems += identifier_problems(value, field, field)
    if not entry.recipients:
        problems.append(Problem("recipients", "must name at least one recipient"))
    for i, recipient in enumerate(entry.recipients):
        if not recipient.strip():
            problems.append(Problem(f"recipients[{i}]", "must not be empty"))
        else:
            problems += recipient_problems(recipient, f"recipients[{i}]")
    if entry.kind is NamedKind.RULE and not entry.phases:
        problems.append(Problem("phases", "a named rule must name at least one phase"))
    return problems


def check_deadline(deadline: Deadline) -> list[Problem]:
    """What is wrong with a deadline given in Python (the API's and the CLI's were read
    by ``DeadlineSpec``, which says more, field by field)."""
    ident = deadline.id
    problems = id_problems(
        {"project": ident.project, "domain": ident.domain, "name": ident.name}, ""
    )
    if not deadline.recipients:
        problems.append(Problem("recipients", "must name at least one recipient"))
    for i, recipient in enumerate(deadline.recipients):
        if not recipient.strip():
            problems.append(Problem(f"recipients[{i}]", "must not be empty"))
        else:
            problems += recipient_problems(recipient, f"recipients[{i}]")
    durations = ("max_queued", "max_running", "start_within")
    for field in durations:
        seconds = getattr(deadline, field)
        if seconds is not None and not seconds > 0:
            problems.append(Problem(field, f"must be positive, got {seconds}"))
    if all(getattr(deadline, field) is None for field in durations) and not deadline.slower_than:
        problems.append(
            Problem(
                "max_queued",
                "a deadline needs at least one of max_queued, max_running, start_within"
                " and slower_than",
            )
        )
    return problems
