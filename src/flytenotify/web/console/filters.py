"""The deliveries list's filters: read from the query string, checked, and kept for links."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from flytenotify.domain import DeliveryStatus, ExecutionId
from flytenotify.errors import InputError, Problem
from flytenotify.intake.limits import (
    MAX_INT,
    id_problems,
    identifier_problems,
    parse_int,
    recipient_problems,
)
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.schemas import MAX_MESSAGE_ID, MESSAGE_KINDS

PAGE_SIZE = 50
# Query parameters that filter, in the order the form shows them.
FILTER_KEYS = (
    "status",
    "channel",
    "recipient",
    "project",
    "domain",
    "launch_plan",
    "execution",
    "message",
    "silence",
)


@dataclass(frozen=True)
class ListQuery:
    """A checked deliveries query: its filters, a keyset cursor and what was wrong."""

    values: dict[str, str] = field(default_factory=dict)
    before: int | None = None
    problems: tuple[Problem, ...] = ()

    def store_filter(self, limit: int = PAGE_SIZE) -> DeliveryFilter:
        v = self.values
        execution = ExecutionId.parse(v["execution"]) if "execution" in v else None
        return DeliveryFilter(
            execution=execution,
            status=DeliveryStatus(v["status"]) if "status" in v else None,
            channel=v.get("channel"),
            recipient=v.get("recipient"),
            project=v.get("project"),
            domain=v.get("domain"),
            launch_plan=v.get("launch_plan"),
            message=v.get("message"),
            silence=int(v["silence"]) if "silence" in v else None,
            before_id=self.before,
            newest_first=True,
            limit=limit,
        )

    def query_string(self, **extra: str | int) -> str:
        return urlencode({**self.values, **{k: str(v) for k, v in extra.items()}})


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Filters from a query string; an empty field is no filter, a bad one a problem."""
    values = {k: params[k].strip() for k in FILTER_KEYS if params.get(k, "").strip()}
    problems: list[Problem] = []
    if "status" in values and values["status"] not in {s.value for s in DeliveryStatus}:
        allowed = ", ".join(s.value for s in DeliveryStatus)
        problems.append(Problem("status", f"must be one of {allowed}"))
    for key, part in (("channel", "project"), ("project", "project"), ("domain", "domain")):
        if key in values:
            problems += identifier_problems(values[key], key, part)
    if "launch_plan" in values:
        problems += identifier_problems(values["launch_plan"], "launch_plan", "name")
    if "recipient" in values:
        problems += recipient_problems(values["recipient"], "recipient")
    if "execution" in values:
        problems += _execution_problems(values["execution"])
    if "message" in values:
        problems += _message_problems(values["message"])
    if "silence" in values:
        try:
            parse_int(values["silence"], "silence", 1, MAX_INT)
        except InputError as error:
            problems += error.problems
    before = None
    if params.get("before"):
        try:
            before = parse_int(params["before"], "before", 1, MAX_INT)
        except InputError as error:
            problems += error.problems
    bad = {p.field for p in problems}
    kept = {k: v for k, v in values.items() if k not in bad}
    return ListQuery(kept, before, tuple(problems))


def _message_problems(raw: str) -> list[Problem]:
    if raw.startswith(MESSAGE_KINDS) and len(raw) <= MAX_MESSAGE_ID and raw.isprintable():
        return []
    return [Problem("message", "must be a message id: digest:<uuid> or single:<idempotency key>")]


def _execution_problems(raw: str) -> list[Problem]:
    try:
        execution = ExecutionId.parse(raw)
    except ValueError as error:
        return [Problem("execution", str(error))]
    parts = {"project": execution.project, "domain": execution.domain, "name": execution.name}
    return [Problem("execution", f"{p.field}: {p.message}") for p in id_problems(parts, "")]
