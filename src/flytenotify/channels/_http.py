"""HTTP details the HTTP channels (Slack, PagerDuty, webhook) read the same way."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from flytenotify.channels.base import SendResult


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    None when absent or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def http_status_result(status: int, reply: str, retry_after: float | None = None) -> SendResult:
    """The usual reading of an HTTP status: 2xx ok, 408/429/5xx later, other 4xx never."""
    if 200 <= status < 300:
        return SendResult.delivered(reply)
    if status in (408, 429) or status >= 500:
        return SendResult.transient(reply, retry_after)
    return SendResult.permanent(reply)


def describe_transport_error(err: BaseException) -> str:
    """A short audit-trail line for a connection error or timeout."""
    detail = str(err).strip()
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__
