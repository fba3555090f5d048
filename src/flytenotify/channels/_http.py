"""HTTP details the HTTP channels (Slack, PagerDuty, webhooks, Teams...) read the same way."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

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


def status_reply(status: int, reason: str, text: str) -> str:
    """The audit-trail line of an answer: ``404 Not Found: <the start of its body>``."""
    return f"{status} {reason}".rstrip() + (f": {text}" if text else "")


def answer_result(
    status: int, reply: str, retry_after: float | None = None, location: str | None = None
) -> SendResult:
    """:func:`http_status_result` for a channel that never follows redirects: a 3xx
    would carry the request to a URL nobody configured, so it is a permanent
    failure (naming ``location``, the redirect's target, when given)."""
    if 300 <= status < 400:
        target = f"; Location: {location}" if location else ""
        return SendResult.permanent(f"{reply} (redirects are not followed{target})")
    return http_status_result(status, reply, retry_after)


def describe_transport_error(err: BaseException) -> str:
    """A short audit-trail line for a connection error or timeout."""
    detail = str(err).strip()
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__


# --------------------------------------------------------------------------
# aiohttp plumbing for the webhook and PagerDuty channels
# --------------------------------------------------------------------------

# Every way a request can fail on the wire rather than with an HTTP status:
# aiohttp.ClientError covers refused/reset connections (ClientConnectionError),
# truncated or malformed answers (ClientPayloadError, ClientResponseError) and
# socket timeouts; TimeoutError (= asyncio.TimeoutError) is the total timeout.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)

# The pool itself is not bounded: the dispatcher bounds the sends in flight, per
# destination (adapted to its answers) and in all (dispatch.max_in_flight), and
# a second, fixed bound here would silently cap what those settings allow.
# aiohttp hands out an idle connection from a per-host deque in O(1); httpx's
# pool scanned every connection on every request, which dominated the profile.
KEEPALIVE_S = 30.0
DNS_CACHE_TTL_S = 300

USER_AGENT = "flytenotify"


def new_session(
    timeout: float | None = None,
    *,
    resolver: AbstractResolver | None = None,
    auto_decompress: bool = True,
) -> aiohttp.ClientSession:
    """A keep-alive session with a bounded pool; call it inside the running loop.

    ``timeout`` is the session default (``total``, covering the wait for a pooled
    connection, the request and the whole answer); a request can override it.
    ``resolver`` replaces the system's name resolution (one that refuses some
    addresses); ``auto_decompress=False`` leaves answers as they came, for
    receivers that are not trusted to keep a compressed answer small.
    """
    connector = aiohttp.TCPConnector(
        limit=0,  # unbounded: see above
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_S,
        ttl_dns_cache=DNS_CACHE_TTL_S,
        resolver=resolver,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        # Cookies from a receiver must not follow us to the next delivery.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=auto_decompress,
    )


def env_proxy(url: URL) -> URL | None:
    """The proxy ``HTTP(S)_PROXY``/``NO_PROXY`` name for ``url``, resolved once.

    httpx honoured these variables by default; aiohttp only does with
    ``trust_env``, which re-reads the environment on every request. Reading it
    once per configured URL keeps the behaviour without the per-request cost.
    Proxy credentials go in the proxy URL (``http://user:pass@proxy:3128``).
    """
    try:
        proxy, auth = get_env_proxy_for_url(url)
    except LookupError:
        return None
    if auth is not None and not proxy.user:
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return proxy


def describe_aiohttp_error(err: BaseException, timeout: float) -> str:
    """The audit-trail line for one of :data:`TRANSPORT_ERRORS`."""
    if isinstance(err, TimeoutError) and not str(err).strip():
        # aiohttp's total timeout carries no message; say what ran out.
        return f"TimeoutError: no complete answer within {timeout:g}s"
    return describe_transport_error(err)


def decode_reply(body: bytes, charset: str | None, limit: int) -> str:
    """The start of an answer body as text for the audit trail (never raises)."""
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    return text.strip()[:limit]


def url_destination(url: URL) -> str:
    """The destination a URL's sends count against: its scheme, host and port."""
    return f"{url.scheme}://{url.host}:{url.port}"


# Answers a channel keeps from the look-ups it makes before it posts (Slack's
# people and their direct-message channels, Mattermost's channel ids), each in
# a cachetools.TTLCache for the channel's lookup_cache_ttl, so that a burst of
# notifications costs one look-up and a renamed channel is noticed once its
# entry expires. Past this many, the least recently used go first.
LOOKUPS_KEPT = 4096
