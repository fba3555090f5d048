"""A loopback PagerDuty Events API v2: ``POST /v2/enqueue``.

It validates events the way the Events API v2 reference describes them and
answers as PagerDuty does:

- 202 ``{"status": "success", "message": "Event processed", "dedup_key": ...}``
- 400 ``{"status": "invalid event", "message": "Event object is invalid",
  "errors": [...]}`` for a 32-character ``routing_key`` missing, an unknown
  ``event_action``, a trigger without ``payload.summary`` (<= 1024 characters),
  ``payload.source`` or a valid ``payload.severity``, an acknowledge/resolve
  without ``dedup_key``, a ``dedup_key`` over 255 characters or a timestamp
  that is not ISO 8601.

:meth:`PagerDutyApiServer.script` makes the next requests answer 429 or 500
(optionally with ``Retry-After``). Every request is recorded in ``events``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.servers.http_sink import LoopbackServer

__all__ = ["PagerDutyApiServer", "PagerDutyEvent", "event_problems"]

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass(frozen=True)
class PagerDutyEvent:
    at: float  # time.monotonic() on arrival
    body: Any  # the parsed JSON, None if it was not JSON
    status: int
    answer: dict[str, Any]


@dataclass(frozen=True)
class _Scripted:
    status: int
    retry_after: str | None


class PagerDutyApiServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[PagerDutyEvent] = []
        self.delay = 0.0  # seconds each answer is held back (for timeouts)
        self._script: deque[_Scripted] = deque()

    @property
    def events_url(self) -> str:
        """For ``PagerDutyConfig.events_url``."""
        return f"{self.base}/v2/enqueue"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The bodies of the events answered 202."""
        return [event.body for event in self.events if event.status == 202]

    def script(self, status: int, *, count: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (429, 500, ...)."""
        self._script.extend([_Scripted(status, retry_after)] * count)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if self.delay:
            await asyncio.sleep(self.delay)
        status, answer, headers = self._answer(body)
        self.events.append(PagerDutyEvent(at, body, status, answer))
        return web.json_response(answer, status=status, headers=headers)

    def _answer(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self._script:
            scripted = self._script.popleft()
            headers = {"Retry-After": scripted.retry_after} if scripted.retry_after else {}
            return scripted.status, _scripted_answer(scripted.status), headers
        problems = event_problems(body)
        if problems:
            answer = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": problems,
            }
            return 400, answer, {}
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        answer = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        return 202, answer, {}


def _scripted_answer(status: int) -> dict[str, Any]:
    if status == 429:
        return {"status": "throttle event", "message": "Requests for this service are throttled"}
    return {"status": "error", "message": f"scripted {status}"}


def event_problems(body: Any) -> list[str]:
    """Why PagerDuty would reject ``body`` (empty when it is a valid event)."""
    if not isinstance(body, dict):
        return ["Event object is not a JSON object"]
    problems: list[str] = []
    routing_key = body.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != 32:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if action not in ACTIONS:
        problems.append(
            "'event_action' is invalid (must be one of: 'trigger', 'acknowledge', 'resolve')"
        )
    dedup_key = body.get("dedup_key")
    if action in ("acknowledge", "resolve") and not dedup_key:
        problems.append("'dedup_key' is missing or blank")
    if isinstance(dedup_key, str) and len(dedup_key) > 255:
        problems.append("'dedup_key' is longer than 255 characters")
    if action == "trigger":
        problems += _payload_problems(body.get("payload"))
    return problems


def _payload_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or blank"]
    problems: list[str] = []
    for key in ("summary", "source"):
        if not isinstance(payload.get(key), str) or not payload[key].strip():
            problems.append(f"'payload.{key}' is missing or blank")
    if len(str(payload.get("summary", ""))) > 1024:
        problems.append("'payload.summary' is longer than 1024 characters")
    if payload.get("severity") not in SEVERITIES:
        problems.append(
            "'payload.severity' is invalid (must be one of: 'critical', 'error', 'warning', 'info')"
        )
    timestamp = payload.get("timestamp")
    if timestamp is not None and not _is_iso8601(timestamp):
        problems.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
    return problems


def _is_iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
