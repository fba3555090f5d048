"""PagerDuty channel: Events API v2 (``POST /v2/enqueue``).

A recipient (the address a flytekit ``PagerDuty`` notification names) maps to
an integration routing key in ``[pagerduty.routing_keys]``. FAILED, TIMED_OUT
and ABORTED *trigger* an alert; SUCCEEDED *resolves* it. Both use the same
``dedup_key`` -- by default one per launch plan (``project/domain/launch plan``)
so that the next successful run of a schedule closes the incident its failure
opened; ``dedup = "execution"`` keys by execution instead.

A conversation (the later events of an execution, its recovery by the next
success of its launch plan) keeps the dedup key of its first event: a
recovery resolves the very incident the failure triggered, whatever ``dedup``
says. An event's id is its dedup key.

A deadline's alert triggers an incident of its own, keyed by the deadline and
the execution (``deadline/DEADLINE/EXECUTION``, whatever ``dedup`` or the
conversation says): its follow-up, when the execution ends, *resolves* that
very incident, and never the one a failure of the same execution opened.

PagerDuty answers 202 when it accepted the event, 400 for an event it will
never accept, 429 and 5xx when it wants us back later.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr
from yarl import URL

from flytenotify.channels._http import (
    TRANSPORT_ERRORS,
    USER_AGENT,
    decode_reply,
    describe_aiohttp_error,
    env_proxy,
    http_status_result,
    new_session,
    parse_retry_after,
    url_destination,
)
from flytenotify.channels._pacing import Busy, Pacer
from flytenotify.channels.base import (
    ChannelDefaults,
    ChannelSpec,
    Outcome,
    SendResult,
    SharedPacing,
    digest_lines,
)
from flytenotify.domain import Delivery, DeliveryReason, Digest, phase_name
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.sections import Section

__all__ = [
    "PagerDutyChannel",
    "PagerDutyConfig",
    "deadline_dedup_key",
    "dedup_key",
    "pagerduty_event",
]

log = logging.getLogger(__name__)

PagerDutySeverity = Literal["critical", "error", "warning", "info"]


def _default_severity() -> dict[str, PagerDutySeverity]:
    return {"FAILED": "error", "TIMED_OUT": "error", "ABORTED": "warning"}


class PagerDutyConfig(Section):
    """``[pagerduty]``: Events API v2. Recipients map to integration routing keys."""

    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    routing_keys: dict[str, SecretStr] = Field(default_factory=dict)  # recipient -> routing key
    dedup: Literal["launch_plan", "execution"] = "launch_plan"
    severity: dict[str, PagerDutySeverity] = Field(default_factory=_default_severity)
    source: str = "flytenotify"
    timeout: float = Field(default=10.0, gt=0)
    # Seconds between events to one routing key, kept across replicas: PagerDuty
    # documents 120 events a minute per key (0.5). 0 sends as fast as it can.
    per_key_interval: float = Field(default=0.5, ge=0)


# Limits from the Events API v2 reference.
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255

_TRUNCATED = "… (truncated)"
_DEFAULT_SEVERITY = "error"
# The key of [pagerduty.severity] for deadlines' alerts (the others are phases).
DEADLINE_SEVERITY_KEY = "DEADLINE"
_DEADLINE_KEY_PREFIX = "deadline/"
_REPLY_BODY_LIMIT = 500


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATED)] + _TRUNCATED


def dedup_key(delivery: Delivery, mode: str) -> str:
    """The incident key: per launch plan (default) or per execution.

    Without a known launch plan the execution is the only stable key there is.
    """
    eid = delivery.execution_id
    lp = delivery.launch_plan
    if delivery.reason is not DeliveryReason.PHASE:
        return deadline_dedup_key(delivery)
    if mode == "launch_plan" and lp is not None and lp.name:
        key = f"{lp.project}/{lp.domain}/{lp.name}"
    else:
        key = f"{eid.project}/{eid.domain}/{eid.name}"
    return _bounded(key)


def deadline_dedup_key(delivery: Delivery) -> str:
    """The incident of a deadline's alert: one per deadline and execution, which the
    alert triggers and its follow-up resolves."""
    deadline = delivery.message.variables.get("deadline", "")
    return _bounded(f"{_DEADLINE_KEY_PREFIX}{deadline}/{delivery.execution_id}")


def _bounded(key: str) -> str:
    if len(key) > MAX_DEDUP_KEY:
        # PagerDuty rejects longer keys; a digest keeps it stable and unique.
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        key = f"{key[: MAX_DEDUP_KEY - len(digest) - 1]}#{digest}"
    return key


def conversation_dedup_key(delivery: Delivery, mode: str) -> str:
    """The key of the incident ``delivery`` is about: its conversation's first
    event's, when it continues one, else :func:`dedup_key`.

    A deadline's incident stays apart from the execution's own: its follow-up
    resolves whatever happened, so sharing a key would close a failure's incident.
    """
    if delivery.reason is not DeliveryReason.PHASE:
        return deadline_dedup_key(delivery)
    thread = delivery.thread
    root = thread.root_id if thread is not None else ""
    if root and len(root) <= MAX_DEDUP_KEY and not root.startswith(_DEADLINE_KEY_PREFIX):
        return root
    return dedup_key(delivery, mode)


def _timestamp(text: str) -> str | None:
    # PagerDuty rejects the whole event for a malformed timestamp: send only a valid one.
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return None


def _summary(delivery: Delivery, phase: str) -> str:
    subject = delivery.message.subject.strip()
    if not subject:
        subject = f"Flyte execution {delivery.execution_id} {phase}"
    return _truncate(subject, MAX_SUMMARY)


def _custom_details(delivery: Delivery, phase: str) -> dict[str, Any]:
    variables = delivery.message.variables
    details: dict[str, Any] = {
        "execution": str(delivery.execution_id),
        "launch_plan": str(delivery.launch_plan) if delivery.launch_plan else None,
        "workflow": variables.get("workflow") or None,
        "phase": phase,
        "occurred_at": variables.get("occurred_at") or None,
        "duration": variables.get("duration") or None,
        "error": variables.get("error.message") or None,
        "error_code": variables.get("error.code") or None,
        "error_kind": variables.get("error.kind") or None,
        "console_url": variables.get("console_url") or None,
        "message": delivery.message.text or None,
    }
    return {key: value for key, value in details.items() if value is not None}


# How many executions a digest's event lists (the count is always exact).
DIGEST_LISTED = 50


def _digest_details(digest: Digest) -> dict[str, Any]:
    listed = [
        {
            key: value
            for key, value in (
                ("execution", line.execution),
                ("phase", line.phase),
                ("error", line.error),
                ("console_url", line.console_url),
            )
            if value
        }
        for line in digest_lines(digest)[:DIGEST_LISTED]
    ]
    return {
        "count": digest.count,
        "executions": listed,
        "all_executions": digest.link or digest.list_command,
        "digest_id": digest.id,
    }


def _trigger_payload(delivery: Delivery, config: PagerDutyConfig, phase: str) -> dict[str, Any]:
    eid = delivery.execution_id
    lp = delivery.launch_plan
    digest = delivery.digest
    deadline = delivery.reason is DeliveryReason.DEADLINE
    # A deadline's breach is told apart from a phase: its own severity and class.
    severity = (
        config.severity.get(DEADLINE_SEVERITY_KEY, "warning")
        if deadline
        else config.severity.get(phase, _DEFAULT_SEVERITY)
    )
    kind = (
        f"deadline {delivery.message.variables.get('breach', '')}".strip()
        if deadline
        else f"workflow execution {phase.lower()}"
    )
    payload: dict[str, Any] = {
        "summary": _truncate(digest.title, MAX_SUMMARY) if digest else _summary(delivery, phase),
        "source": config.source,
        "severity": severity,
        # What broke (the launch plan, else the execution), where, and what kind of thing.
        "component": lp.name if lp is not None and lp.name else eid.name,
        "group": f"{eid.project}/{eid.domain}",
        "class": kind,
        "custom_details": _digest_details(digest) if digest else _custom_details(delivery, phase),
    }
    timestamp = _timestamp(delivery.message.variables.get("occurred_at", ""))
    if timestamp is not None:
        payload["timestamp"] = timestamp
    return payload


def pagerduty_event(
    delivery: Delivery, routing_key: str, config: PagerDutyConfig
) -> dict[str, Any]:
    """The Events API v2 body for ``delivery``."""
    phase = phase_name(delivery.phase)
    if delivery.reason is DeliveryReason.PHASE:
        resolves = delivery.phase == WorkflowExecutionPhase.SUCCEEDED
    else:  # a deadline's alert triggers; its follow-up resolves, however the execution ended
        resolves = delivery.reason is DeliveryReason.DEADLINE_RESOLVED
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if resolves else "trigger",
        "dedup_key": conversation_dedup_key(delivery, config.dedup),
        "client": "flytenotify",
    }
    console_url = delivery.message.variables.get("console_url", "")
    if console_url:
        event["client_url"] = console_url
    if resolves:
        return event  # PagerDuty ignores a payload on resolve
    event["payload"] = _trigger_payload(delivery, config, phase)
    if console_url:
        event["links"] = [{"href": console_url, "text": "Execution in the Flyte console"}]
    return event


def _reply(response: aiohttp.ClientResponse, answer: bytes) -> str:
    """PagerDuty's answer for the audit trail: status, message, dedup_key or errors."""
    reason = response.reason or ""
    try:
        # Whatever the Content-Type says: a proxy's HTML error page simply is not JSON.
        body = json.loads(answer)
    except ValueError:  # includes UnicodeDecodeError
        body = None
    if not isinstance(body, dict):
        text = decode_reply(answer, response.charset, _REPLY_BODY_LIMIT)
        return f"{response.status} {reason}".rstrip() + (f": {text}" if text else "")
    parts = [str(response.status), str(body.get("message") or reason)]
    if body.get("dedup_key"):
        parts.append(f"dedup_key={body['dedup_key']}")
    if body.get("errors"):
        parts.append(f"errors={body['errors']}")
    return " ".join(parts)


_HEADERS = {"Content-Type": "application/json", "User-Agent": USER_AGENT}


class PagerDutyChannel(ChannelDefaults):
    """Sends Events API v2 events over one keep-alive HTTP session."""

    name: str = "pagerduty"

    def __init__(
        self, config: PagerDutyConfig, *, shared_pacing: SharedPacing | None = None
    ) -> None:
        self._config = config
        # PagerDuty limits events per routing key; lanes are keyed by a digest so
        # the key itself never reaches the ledger's pacing table.
        self._pacer = Pacer(max_wait=config.timeout, shared=shared_pacing)
        self._routing_keys = {
            recipient: key.get_secret_value() for recipient, key in config.routing_keys.items()
        }
        self._url = URL(config.events_url)  # parsed once, not by aiohttp per request
        self._destination = url_destination(self._url)
        self._proxy = env_proxy(self._url)
        # Created on the first send: an aiohttp session belongs to the running loop.
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = new_session(self._config.timeout)
        return session

    def destination(self, delivery: Delivery) -> str:
        """The Events API host (each routing key is paced on its own as well)."""
        return self._destination

    async def send(self, delivery: Delivery) -> SendResult:
        routing_key = self._routing_keys.get(delivery.recipient)
        if routing_key is None:
            return SendResult.permanent(
                f"no routing key configured for recipient {delivery.recipient}"
            )
        event = pagerduty_event(delivery, routing_key, self._config)
        # The bytes httpx's json= sent: compact UTF-8, no NaN (PagerDuty would reject it).
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        lane = "pagerduty:" + hashlib.sha256(routing_key.encode()).hexdigest()[:16]
        try:
            status, headers, reply = await self._pacer.run(
                lane, self._config.per_key_interval, lambda: self._post(body)
            )
        except Busy as busy:
            reply = f"next free slot for this routing key in {busy.wait:.1f}s (rate limit)"
            return SendResult.transient(reply, retry_after=busy.wait)
        except TRANSPORT_ERRORS as err:
            return SendResult.transient(describe_aiohttp_error(err, self._config.timeout))
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if status == 429:
            self._pacer.block(lane, retry_after or 1.0)
        result = http_status_result(status, reply, retry_after)
        if result.outcome is not Outcome.DELIVERED:
            return result
        thread = delivery.thread
        in_reply_to = thread.root_id if thread is not None else ""
        return replace(result, provider_message_id=event["dedup_key"], in_reply_to=in_reply_to)

    async def _post(self, body: str) -> tuple[int, Mapping[str, str], str]:
        async with self._http().post(
            self._url,
            data=body.encode("utf-8"),
            headers=_HEADERS,
            allow_redirects=False,
            proxy=self._proxy,
        ) as response:
            answer = await response.read()
            return response.status, response.headers, _reply(response, answer)

    async def check(self) -> str:
        """What is configured; the Events API has no call that sends nothing."""
        recipients = ", ".join(sorted(self._routing_keys)) or "none"
        return (
            f"pagerduty: {self._config.events_url}, dedup per {self._config.dedup}, "
            f"routing keys for: {recipients}"
        )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


# --- what the registry knows ------------------------------------------------------


def _takes(kind: str, recipient: str, config: PagerDutyConfig | None) -> str | None:
    # A recipient with a routing key; any other is left to email (an integration address).
    if kind == "pager_duty" and config is not None and recipient in config.routing_keys:
        return recipient
    return None


def _build(config: PagerDutyConfig, pacing: SharedPacing | None) -> PagerDutyChannel:
    return PagerDutyChannel(config, shared_pacing=pacing)


def _preview(delivery: Delivery) -> str:
    event = pagerduty_event(delivery, "<routing key>", PagerDutyConfig())
    return json.dumps(event, indent=2, ensure_ascii=False)


CHANNEL: ChannelSpec[PagerDutyConfig] = ChannelSpec(
    name="pagerduty",
    section="pagerduty",
    config=PagerDutyConfig,
    build=_build,
    takes=_takes,
    preview=_preview,
    summary=lambda config: f"{len(config.routing_keys)} routing key(s)",
    kinds=frozenset({"pager_duty"}),
    test_kind="pager_duty",
    allow_names=lambda config: config.routing_keys,
    # One incident per launch plan: a storm's executions share it, and a digest
    # says how many. Per execution, each is its own incident: never folded.
    digests=lambda config: config.dedup == "launch_plan",
    threads=True,
)
