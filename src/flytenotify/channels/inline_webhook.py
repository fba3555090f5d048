"""Inline webhooks: the HTTP requests users' own code declares (Flyte 2's ``flyte.notify``).

A Flyte 2 workflow declares ``Slack(webhook_url=...)``, ``Teams(webhook_url=...)``
or ``Webhook(url=..., method=..., headers=..., body=...)``; each becomes one
rendered :class:`~flytenotify.domain.HttpRequest` on its delivery's message,
which this channel sends as it is: the user's method, headers and body bytes,
nothing added but a ``User-Agent`` when they set none.

Because the URL comes from users' code, a request is sent only when:

- the URL matches a pattern of ``[allow] inline_webhook_urls`` (matched part by
  part, see :mod:`flytenotify.channels._url_policy`); an empty list sends
  nothing;
- every address it connects to is public: loopback, private, link-local
  (cloud metadata), CGNAT, multicast, reserved and unspecified addresses, and
  IPv6 forms of them, are refused where the connection is made, on the
  addresses DNS actually returned, so a name re-pointed between the check and
  the connection (DNS rebinding) gains nothing. A pattern naming its host
  without a wildcard (``http://alerts.internal/*``) trusts that host, wherever
  it points;
- the request is one HTTP allows a rule to make: not ``TRACE`` or
  ``CONNECT``, at most 20 headers, none that frames the message or the
  connection (``Host``, ``Content-Length``, ``Transfer-Encoding``,
  ``Connection``, ``TE``, ``Upgrade``, ``Proxy-*``...), no CR, LF or NUL.

Otherwise the delivery is dead-lettered with the reason and nothing is
requested. Redirects are never followed (a 3xx is permanent, its
``Location`` in the reply), no proxy is used (the address check must see the
addresses connected to), and only the start of an answer is read.

The receiver's host decides how its answer reads: Slack's incoming-webhook
host (``hooks.slack.com``) as :mod:`flytenotify.channels.slack` reads its own
webhook's answers, paced to about one message per second per webhook across
replicas; Teams' webhook hosts as :mod:`flytenotify.channels.teams` does
(Workflows' 202, a connector's 200 carrying an error, 429 pacing); any other
as the webhook channel does (2xx delivered, 408/429/5xx later, other 4xx
never). The URL is a credential: the ledger's recipient, every reply and the
preview show it through :func:`~flytenotify.channels._url_policy.display_url`,
and secret-looking header values are never shown.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from pydantic import AfterValidator, Field, PrivateAttr
from yarl import URL

from flytenotify.channels._http import (
    TRANSPORT_ERRORS,
    USER_AGENT,
    answer_result,
    decode_reply,
    describe_aiohttp_error,
    new_session,
    parse_retry_after,
    status_reply,
    url_destination,
)
from flytenotify.channels._pacing import Busy, Pacer
from flytenotify.channels._url_policy import (
    ELIDED,
    HostPattern,
    Target,
    UrlPattern,
    UrlRefused,
    display_url,
    forbidden_address,
    parse_target,
    printable,
    redact,
)
from flytenotify.channels.base import ChannelDefaults, ChannelSpec, SendResult, SharedPacing
from flytenotify.channels.slack import incoming_webhook_answer
from flytenotify.channels.teams import (
    as_workflows_message,
    is_connector_url,
    throttled,
    webhook_answer,
)
from flytenotify.domain import Delivery, HttpRequest
from flytenotify.sections import Section

__all__ = [
    "ALLOW_KEY",
    "ForbiddenAddress",
    "HostEntry",
    "InlineWebhookChannel",
    "InlineWebhookConfig",
    "PublicOnlyResolver",
    "request_problem",
]

# The [allow] key whose URL patterns inline webhooks may be sent to.
ALLOW_KEY = "inline_webhook_urls"

SLACK_HOSTS = ("hooks.slack.com",)
TEAMS_HOSTS = (
    "*.webhook.office.com",  # Office 365 connectors (retired)
    "outlook.office.com",  # older connector URLs
    "*.logic.azure.com",  # Workflows (Power Automate)
    "*.powerplatform.com",  # Workflows' newer URLs (*.environment.api.powerplatform.com)
)

# Flyte's WebhookDeliveryTemplate allows at most this many headers.
MAX_HEADERS = 20
_REPLY_BODY_LIMIT = 300  # characters of an answer kept in the audit trail
_REPLY_READ_LIMIT = 16 * 1024  # bytes of an answer read at most: the receiver is not trusted


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HostEntry:
    """``host`` or ``host:port`` (``*`` wildcards as in URL patterns; no port: any)."""

    host: HostPattern
    port: int | None

    @classmethod
    def parse(cls, text: str) -> HostEntry:
        host, port = text.strip(), ""
        if host.startswith("["):  # [IPv6] or [IPv6]:port
            close = host.find("]")
            host, port = host[: close + 1], host[close + 1 :].removeprefix(":")
        elif ":" in host:
            host, _, port = host.rpartition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise UrlRefused(f"{text!r}: the port must be a number from 1 to 65535")
        return cls(HostPattern.parse(host), int(port) if port else None)

    def matches(self, target: Target) -> bool:
        return self.host.matches(target.host) and self.port in (None, target.port)


def _host_entry(text: str) -> str:
    HostEntry.parse(text)  # raises, naming the problem
    return text


HostList = list[Annotated[str, AfterValidator(_host_entry)]]


class InlineWebhookConfig(Section):
    """``[inline_webhooks]``: how webhooks from users' code are sent (optional: the
    defaults apply without it). Where they may go is ``[allow] inline_webhook_urls``."""

    timeout: float = Field(default=10.0, gt=0)  # seconds for the whole request and answer
    # Hosts whose answers read as Slack's incoming webhooks, and Teams' webhooks.
    slack_hosts: HostList = Field(default_factory=lambda: list(SLACK_HOSTS))
    teams_hosts: HostList = Field(default_factory=lambda: list(TEAMS_HOSTS))
    # Seconds between posts to one webhook, across replicas: Slack allows
    # about one message a second; Teams throttles above four a second.
    slack_interval: float = Field(default=1.0, ge=0)
    teams_interval: float = Field(default=0.5, ge=0)

    # [allow] inline_webhook_urls, filled in from the whole settings (never a key here).
    _allowed: tuple[UrlPattern, ...] = PrivateAttr(default=())

    @property
    def allowed(self) -> tuple[UrlPattern, ...]:
        return self._allowed

    def allowing(self, patterns: tuple[UrlPattern, ...]) -> InlineWebhookConfig:
        """This section with ``patterns`` as the URLs it may send to."""
        completed = self.model_copy()
        completed._allowed = tuple(patterns)
        return completed


# --------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------

_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
# Header names are HTTP tokens (RFC 9110): no spaces, separators, CR, LF or NUL.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Set by the connection for the message it frames; a rule setting them could
# smuggle a second request past the receiver, or reach through a proxy.
_CONNECTION_HEADERS = frozenset(
    (
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
    )
)
# Added by aiohttp unless told not to: the request goes out as the user wrote it.
_NOT_ADDED = frozenset({"Accept", "Accept-Encoding", "Content-Type"})


def request_problem(request: HttpRequest) -> str | None:
    """Why ``request`` must not be sent as written, or None. Never quotes a header value."""
    if request.method in ("TRACE", "CONNECT"):
        return f"method {request.method} is never sent (it reflects or tunnels through a server)"
    if request.method not in _METHODS:
        return f"method {printable(request.method)!r} is not one of {', '.join(_METHODS)}"
    if len(request.headers) > MAX_HEADERS:
        return f"{len(request.headers)} headers, more than the {MAX_HEADERS} allowed"
    for name, value in request.headers:
        if not _TOKEN.fullmatch(name):
            return f"header name {printable(name)!r} is not an HTTP token"
        if any(char in "\r\n\0" or (ord(char) < 32 and char != "\t") for char in value):
            return f"the value of header {name} holds a control character (CR, LF, NUL...)"
        lowered = name.lower()
        if lowered in _CONNECTION_HEADERS or lowered.startswith("proxy-"):
            return f"header {name} belongs to the connection, not to a rule"
    return None


def _headers(request: HttpRequest) -> CIMultiDict[str]:
    headers = CIMultiDict(request.headers)
    if "User-Agent" not in headers:
        headers["User-Agent"] = USER_AGENT
    return headers


# Header values that are credentials, by a word in the header's name.
_SECRET_HEADER_WORDS = (
    "auth",
    "token",
    "secret",
    "key",
    "signature",
    "password",
    "session",
    "cookie",
    "credential",
)
_AUTH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,19} ")


def shown_header(name: str, value: str) -> str:
    """``name: value`` for people: a credential's value elided (its scheme, "Bearer", kept)."""
    if any(word in name.lower() for word in _SECRET_HEADER_WORDS):
        scheme = _AUTH_SCHEME.match(value)
        value = (scheme.group(0) if scheme else "") + ELIDED
    return printable(f"{name}: {value}")


# --------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------


class ForbiddenAddress(OSError):
    """A host resolved only to addresses a request from users' code must not reach."""


class PublicOnlyResolver(AbstractResolver):
    """The system's name resolution, keeping only public addresses (see ``forbidden_address``).

    The connection is made to what this returns, so the check covers the
    addresses actually connected to, each time the name is resolved.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept, refused = [], []
        for result in found:
            address = ipaddress.ip_address(result["host"].partition("%")[0])
            reason = forbidden_address(address)
            if reason is None:
                kept.append(result)
            else:
                refused.append(f"{address} ({reason})")
        if not kept:
            raise ForbiddenAddress(f"{host} resolves to {', '.join(refused)}")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def _forbidden(error: BaseException) -> ForbiddenAddress | None:
    """The address refusal behind a connection error, if that is what it was."""
    cause = getattr(error, "os_error", None) or error.__cause__
    return cause if isinstance(cause, ForbiddenAddress) else None


# --------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------


class Provider(enum.Enum):
    """Whose answers the receiver gives."""

    SLACK = "Slack"
    TEAMS = "Teams"
    OTHER = "webhook"


_TRUSTED_ONLY = (
    f"; only a pattern of allow.{ALLOW_KEY} naming this host without a wildcard allows it"
)


@dataclass(frozen=True)
class _Send:
    """One request, checked and ready."""

    request: HttpRequest
    target: Target
    trusted: bool  # its host is named by a pattern: its addresses are not checked
    provider: Provider

    @property
    def lane(self) -> str:
        # The URL is a secret: only a digest of it reaches the ledger's pacing table.
        digest = hashlib.sha256(str(self.target.url).encode()).hexdigest()[:16]
        return f"inline-{self.provider.name.lower()}:{digest}"


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    retry_after: str | None
    location: str | None
    text: str


class InlineWebhookChannel(ChannelDefaults):
    """Sends the HTTP requests of users' own rules, where ``[allow]`` lets them go."""

    name: str = "inline_webhook"

    def __init__(
        self, config: InlineWebhookConfig, *, shared_pacing: SharedPacing | None = None
    ) -> None:
        self._allowed = config.allowed
        self._slack_hosts = [HostEntry.parse(entry) for entry in config.slack_hosts]
        self._teams_hosts = [HostEntry.parse(entry) for entry in config.teams_hosts]
        self._intervals = {
            Provider.SLACK: config.slack_interval,
            Provider.TEAMS: config.teams_interval,
        }
        self._timeout = config.timeout
        self._client_timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._pacer = Pacer(max_wait=config.timeout, shared=shared_pacing)
        # Created on the first send (an aiohttp session belongs to the running
        # loop): one whose resolver keeps public addresses only, and one for
        # hosts a pattern names, whatever their addresses.
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._resolvers: list[AbstractResolver] = []

    def _http(self, trusted: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(trusted)
        if session is None or session.closed:
            resolver = None
            if not trusted:
                resolver = PublicOnlyResolver()
                self._resolvers.append(resolver)
            session = new_session(resolver=resolver, auto_decompress=False)
            self._sessions[trusted] = session
        return session

    def destination(self, delivery: Delivery) -> str:
        """The receiving host: its sends in flight are limited together."""
        request = delivery.message.request
        if request is None:
            return ""
        try:
            return url_destination(parse_target(request.url).url)
        except UrlRefused:
            return ""

    async def send(self, delivery: Delivery) -> SendResult:
        checked = self._check(delivery)
        if isinstance(checked, SendResult):
            return checked
        interval = self._intervals.get(checked.provider, 0.0)
        try:
            if checked.provider is Provider.OTHER:
                answer = await self._request(checked)
            else:
                answer = await self._pacer.run(
                    checked.lane, interval, lambda: self._request(checked)
                )
        except Busy as busy:
            reply = f"next free slot in {busy.wait:.1f}s ({checked.provider.value} rate limit)"
            return SendResult.transient(reply, retry_after=busy.wait)
        except TRANSPORT_ERRORS as error:
            refused = _forbidden(error)
            if refused is not None:
                return SendResult.permanent(f"not sent: {refused}{_TRUSTED_ONLY}")
            reply = describe_aiohttp_error(error, self._timeout)
            return SendResult.transient(redact(reply, checked.request.url))
        return self._result(checked, answer)

    def _check(self, delivery: Delivery) -> _Send | SendResult:
        """The request ready to send, or why it is not sent (permanent: nothing changes that)."""
        message = delivery.message
        if message.problem:
            return SendResult.permanent(f"not rendered: {message.problem}")
        if delivery.digest is not None:
            return SendResult.permanent("an inline webhook has no digest form")
        request = message.request
        if request is None:
            return SendResult.permanent("the message carries no HTTP request to send")
        shown = display_url(request.url)
        try:
            target = parse_target(request.url)
        except UrlRefused as why:
            return SendResult.permanent(f"not sent to {shown}: {redact(str(why), request.url)}")
        matching = [pattern for pattern in self._allowed if pattern.matches(target)]
        if not matching:
            return SendResult.permanent(
                f"not sent: {shown} matches no pattern of allow.{ALLOW_KEY}"
            )
        problem = request_problem(request)
        if problem is not None:
            return SendResult.permanent(f"not sent to {shown}: {problem}")
        trusted = any(pattern.names(target) for pattern in matching)
        address = target.address
        reason = forbidden_address(address) if address is not None and not trusted else None
        if reason is not None:
            return SendResult.permanent(f"not sent: {address} is {reason}{_TRUSTED_ONLY}")
        return _Send(request, target, trusted, self._provider(target))

    def _provider(self, target: Target) -> Provider:
        if any(entry.matches(target) for entry in self._slack_hosts):
            return Provider.SLACK
        if any(entry.matches(target) for entry in self._teams_hosts):
            return Provider.TEAMS
        return Provider.OTHER

    async def _request(self, send: _Send) -> _Answer:
        request = send.request
        sent = request.body
        if sent and send.provider is Provider.TEAMS and not is_connector_url(request.url):
            sent = as_workflows_message(sent)
        async with self._http(send.trusted).request(
            request.method,
            send.target.url,
            data=sent.encode("utf-8") if sent else None,
            headers=_headers(request),
            skip_auto_headers=_NOT_ADDED,
            allow_redirects=False,
            timeout=self._client_timeout,
        ) as response:
            body = await _read_start(response.content, _REPLY_READ_LIMIT)
            text = decode_reply(body, response.charset, _REPLY_BODY_LIMIT)
            return _Answer(
                response.status,
                response.reason or "",
                response.headers.get("Retry-After"),
                response.headers.get("Location"),
                text,
            )

    def _result(self, send: _Send, answer: _Answer) -> SendResult:
        url = send.request.url
        status, reason, text = answer.status, redact(answer.reason, url), redact(answer.text, url)
        if 300 <= status < 400:
            reply = status_reply(status, reason, text)
            return answer_result(status, reply, location=_shown_location(send, answer.location))
        if send.provider is Provider.SLACK:
            result = incoming_webhook_answer(status, text, answer.retry_after)
            if status == 429:
                self._pacer.block(send.lane, result.retry_after or 1.0)
            return result
        retry_after = parse_retry_after(answer.retry_after)
        if send.provider is Provider.TEAMS:
            legacy = is_connector_url(str(send.target.url))
            result = webhook_answer(status, reason, text, retry_after, legacy)
            if throttled(status, answer.text):
                self._pacer.block(send.lane, retry_after or 1.0)
            return result
        return answer_result(status, status_reply(status, reason, text), retry_after)

    async def check(self) -> str:
        """Where requests may go (the hosts of the allowed patterns): nothing is sent."""
        hosts = sorted({pattern.host.text for pattern in self._allowed})
        allowed = ", ".join(hosts) if hosts else f"nowhere (allow.{ALLOW_KEY} is empty)"
        return f"inline_webhook: requests from users' code may go to {allowed}"

    async def close(self) -> None:
        for session in self._sessions.values():
            if not session.closed:
                await session.close()
        self._sessions.clear()
        for resolver in self._resolvers:  # a connector closes only a resolver it made
            await resolver.close()
        self._resolvers.clear()


async def _read_start(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most ``limit`` bytes of an answer: a receiver cannot make us hold more."""
    body = bytearray()
    while len(body) < limit:
        chunk = await stream.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _shown_location(send: _Send, location: str | None) -> str | None:
    """A redirect's target, relative ones resolved, said without its secret parts."""
    if not location:
        return None
    try:
        absolute = str(send.target.url.join(URL(location)))
    except (ValueError, UnicodeError):
        return "(an unreadable Location)"
    return display_url(absolute)


# --- what the registry knows ------------------------------------------------------


def _build(config: InlineWebhookConfig, pacing: SharedPacing | None) -> InlineWebhookChannel:
    return InlineWebhookChannel(config, shared_pacing=pacing)


def _from_settings(section: InlineWebhookConfig | None, settings: Any) -> InlineWebhookConfig:
    # Always available: without [inline_webhooks] its defaults apply, and what
    # may be sent is decided by [allow] inline_webhook_urls alone.
    return (section or InlineWebhookConfig()).allowing(settings.allow.url_patterns)


def _takes(_kind: str, _recipient: str, _config: InlineWebhookConfig | None) -> str | None:
    # No Flyte 1 recipient is an inline webhook: Flyte 2's rules are planned
    # with this channel and their request directly.
    return None


def preview(delivery: Delivery) -> str:
    """The request as sent: method and URL, headers, a blank line, the body; the
    URL's secret parts and credentials' values elided."""
    request = delivery.message.request
    if request is None:
        return f"(no HTTP request: {delivery.message.problem or 'nothing to send'})"
    lines = [f"{printable(request.method)} {display_url(request.url)}"]
    lines += [shown_header(name, value) for name, value in _headers(request).items()]
    return "\n".join(lines) + (f"\n\n{request.body}" if request.body else "")


def _summary(config: InlineWebhookConfig) -> str:
    count = len(config.allowed)
    if not count:
        return f"nothing allowed: allow.{ALLOW_KEY} is empty"
    return f"{count} URL pattern{'s' if count != 1 else ''} allowed"


CHANNEL: ChannelSpec[InlineWebhookConfig] = ChannelSpec(
    name="inline_webhook",
    section="inline_webhooks",
    config=InlineWebhookConfig,
    build=_build,
    takes=_takes,
    preview=preview,
    summary=_summary,
    route_order=90,
    from_settings=_from_settings,
    allow_key=ALLOW_KEY,
    shows=lambda delivery: delivery.message.request is not None,
)
