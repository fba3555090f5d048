"""Inline webhooks (the requests users' own Flyte 2 code declares), against real loopback servers.

Deliveries are written to a real ledger and sent by the real dispatcher; the
truth is what the Slack, Teams and plain HTTP servers in tests/servers/
received (method, headers, body bytes) and what the ledger says.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import ValidationError

from flytenotify.app import Notifier
from flytenotify.channels import registry
from flytenotify.channels._url_policy import (
    UrlPattern,
    UrlRefused,
    display_url,
    forbidden_address,
    parse_target,
    redact,
)
from flytenotify.channels.base import Outcome, SendResult
from flytenotify.channels.inline_webhook import (
    ALLOW_KEY,
    ForbiddenAddress,
    InlineWebhookChannel,
    InlineWebhookConfig,
    PublicOnlyResolver,
)
from flytenotify.config import AllowConfig, DatabaseConfig, RetryConfig, ServerConfig, Settings
from flytenotify.domain import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Execution,
    ExecutionEvent,
    ExecutionId,
    HttpRequest,
    RenderedMessage,
)
from flytenotify.settings_loader import ConfigError, load_config
from flytenotify.store.base import EventWrite, NewDelivery
from flytenotify.web.api import create_app
from flytenotify.web.console.previews import Sent, message_view
from tests.helpers import rendered_delivery, write_config
from tests.servers.http_sink import HttpSink
from tests.servers.slack_api import WEBHOOK, SlackApiServer
from tests.servers.teams_webhook import CONNECTOR_FAILURE, TeamsWebhookServer

RETRY = RetryConfig(base_delay=0.05, max_delay=0.2, max_attempts=4, lease=10.0)
FAILED = 6
SLACK_PATTERNS = ["https://hooks.slack.com/services/*", "https://*.webhook.office.com/*"]
SECRET = "XyZsEcReTtOkEn123"
ADAPTIVE_CARD = json.dumps(
    {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{"type": "TextBlock", "text": "nightly failed"}],
                },
            }
        ],
    }
)
JSON = (("Content-Type", "application/json"),)


# -- helpers ----------------------------------------------------------------------------


def settings(tmp_path: Path, *patterns: str, database: str = "", **section: Any) -> Settings:
    return Settings(
        database=DatabaseConfig(url=database or str(tmp_path / "ledger.db")),
        retry=RETRY,
        allow=AllowConfig(inline_webhook_urls=list(patterns)),
        inline_webhooks=InlineWebhookConfig(**section) if section else None,
    )


def post(url: str, body: str = "", headers: tuple[tuple[str, str], ...] = JSON) -> HttpRequest:
    return HttpRequest("POST", url, headers, body)


def message(request: HttpRequest) -> RenderedMessage:
    return RenderedMessage("nightly failed", "nightly failed", "", "", request=request)


async def enqueue(
    notifier: Notifier, *requests: HttpRequest, channel: str = "inline_webhook"
) -> list[int]:
    """The deliveries of one terminal event, one per request, written to the ledger."""
    now = datetime.now(UTC)
    execution_id = ExecutionId("proj", "dev", f"run-{now.timestamp()}")
    deliveries = [
        NewDelivery(
            idempotency_key=f"{execution_id}/{FAILED}/{i}/{channel}/{display_url(r.url)}",
            notification_index=i,
            kind="webhook",
            channel=channel,
            recipient=display_url(r.url),
            message=message(r),
        )
        for i, r in enumerate(requests)
    ]
    event = ExecutionEvent(execution_id, FAILED, now)
    execution = Execution(execution_id, None, (), now)
    (result,) = await notifier.store.record_events([EventWrite(event, execution, deliveries)])
    assert len(result.delivery_ids) == len(requests)
    notifier.dispatcher.wake()
    return list(result.delivery_ids)


async def deliver(config: Settings, *requests: HttpRequest) -> list[tuple[Delivery, list[Attempt]]]:
    """Each request's delivery once the dispatcher is done with it, and its attempts."""
    async with Notifier(config) as notifier:
        ids = await enqueue(notifier, *requests)
        await notifier.run_until_idle(max_wait=30, include_retries=True)
        found = []
        for delivery_id in ids:
            delivery = await notifier.delivery(delivery_id)
            assert delivery is not None
            found.append((delivery, await notifier.attempts(delivery_id)))
        return found


async def send_once(config: Settings, request: HttpRequest) -> SendResult:
    """One attempt through the channel the registry builds from ``config``."""
    spec = registry.get("inline_webhook")
    assert spec is not None
    channel = spec.build(config.channel("inline_webhook"), None)
    delivery = rendered_delivery("email", "inline_webhook", display_url(request.url))
    try:
        return await channel.send(replace(delivery, message=message(request)))
    finally:
        await channel.close()


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as server:
        yield server


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiServer]:
    async with SlackApiServer() as server:
        yield server


@pytest.fixture
async def teams() -> AsyncIterator[TeamsWebhookServer]:
    async with TeamsWebhookServer() as server:
        yield server


def slack_config(tmp_path: Path, slack: SlackApiServer, **section: Any) -> Settings:
    pattern = f"{slack.base}/services/*"
    return settings(tmp_path, pattern, slack_hosts=[f"127.0.0.1:{slack.port}"], **section)


def teams_config(tmp_path: Path, teams: TeamsWebhookServer) -> Settings:
    return settings(tmp_path, f"{teams.base}/*", teams_hosts=[f"127.0.0.1:{teams.port}"])


# -- matching URLs against [allow] inline_webhook_urls ------------------------------------


def allowed(url: str, patterns: list[str] = SLACK_PATTERNS) -> bool:
    try:
        target = parse_target(url)
    except UrlRefused:
        return False
    return any(UrlPattern.parse(pattern).matches(target) for pattern in patterns)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T0/B0/abc",
        "https://HOOKS.Slack.COM/services/T0/B0/abc",  # host names have no case
        "https://hooks.slack.com:443/services/T0/B0/abc",  # the default port, written out
        "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d",
        "https://a.b.webhook.office.com/x?y=1",  # * stands for one label or several
    ],
)
def test_urls_the_patterns_name_are_allowed(url: str) -> None:
    assert allowed(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com.evil.com/services/x",  # the pattern's host as a prefix
        "https://evil.com/hooks.slack.com/services/x",  # ... in the path
        "https://hooks.slack.com@evil.com/services/x",  # ... as userinfo
        "https://evil.com#.webhook.office.com/x",  # ... in a fragment
        "https://evil.com?.webhook.office.com/x",  # ... in a query
        "https://evil.com\\.webhook.office.com/x",  # a backslash some parsers read as /
        "https://evil.com/.webhook.office.com/x",
        "https://evil.com:443.webhook.office.com/x",
        "https://evilwebhook.office.com/x",  # the dot before the fixed domain is required
        "https://webhook.office.com/x",  # * stands for at least one character
        "http://hooks.slack.com/services/x",  # the scheme is compared exactly
        "https://hooks.slack.com:8443/services/x",  # so is the port
        "https://hooks.slack.com/servicesX/y",
        "https://hooks.slack.com./services/x",  # a trailing dot is refused, not stripped
        "https://hooks.slack.com%2eevil.com/services/x",  # encoded characters in the host
        "https://hooks.slack.com/services/x/..%2f..%2fadmin",  # an encoded / in the path
        "https://hooks.slack.com/services/%2e%2e/%2e%2e/admin",  # yarl collapses: /admin
        "https://h\u043e\u043eks.slack.com/services/x",  # Cyrillic o's: IDNA xn--hks-...
        "https://hooks.slack.com/services/x y",
        " https://hooks.slack.com/services/x\n",
        "https://[::1]/services/x",
        "ftp://hooks.slack.com/services/x",
        "//hooks.slack.com/services/x",
        "https://hooks.slack.com/services/" + "x" * 2000,  # over the 2,000 characters allowed
    ],
)
def test_bypass_attempts_match_no_pattern(url: str) -> None:
    assert not allowed(url)


def test_hosts_are_compared_in_their_idna_form() -> None:
    assert allowed("https://bücher.example.com/x", ["https://*.example.com/*"])
    assert allowed("https://xn--bcher-kva.example.com/x", ["https://bücher.example.com/*"])
    assert allowed("http://[::1]:8081/x", ["http://[0:0::1]:8081/*"])


@pytest.mark.parametrize(
    "url",
    ["http://127.1/x", "http://2130706433/x", "http://0x7f.1/x", "http://0x7f000001/x"],
)
def test_numeric_hosts_other_than_dotted_quads_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused, match="dotted-quad"):
        parse_target(url)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("ftp://files.example.com/*", "only http and https"),
        ("https://*.com/*", "fixed domain of two labels"),
        ("https://example.*/*", "fixed domain of two labels"),
        ("https://hooks.slack.com", "has no path"),
        ("https://user@hooks.slack.com/*", "user:password@"),
        ("https://hooks.slack.com/*#x", "fragment"),
        ("https://hooks.slack.com:99999/*", "out of range"),
        ("https://hooks slack.com/*", "space"),
        ("hooks.slack.com/services/*", "scheme://host"),
    ],
)
def test_bad_patterns_are_refused_at_load_naming_the_entry(
    tmp_path: Path, pattern: str, problem: str
) -> None:
    path = write_config(
        tmp_path,
        f'[allow]\ninline_webhook_urls = ["https://hooks.slack.com/services/*", "{pattern}"]\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    (found,) = caught.value.problems
    assert found.startswith("allow.inline_webhook_urls[1]: "), found
    assert problem in found


def test_inline_webhooks_are_restricted_by_url_not_by_a_recipient_list() -> None:
    with pytest.raises(ValidationError, match=r"restricted by allow\.inline_webhook_urls"):
        AllowConfig.model_validate({"inline_webhook": ["anything"]})
    assert ALLOW_KEY in AllowConfig.model_fields  # one name for the key, in both places


def test_the_channel_is_always_there_and_sends_nothing_until_a_pattern_allows_it() -> None:
    config = Settings()
    spec = registry.get("inline_webhook")
    assert spec is not None
    assert config.configured("inline_webhook")
    assert spec.summary(config.channel("inline_webhook")) == (
        "nothing allowed: allow.inline_webhook_urls is empty"
    )
    allowing = Settings(allow=AllowConfig(inline_webhook_urls=SLACK_PATTERNS))
    assert spec.summary(allowing.channel("inline_webhook")) == "2 URL patterns allowed"


def test_provider_host_lists_are_checked_naming_the_entry(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[inline_webhooks]\nslack_hosts = ["ok.example.com", "a b"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    (found,) = caught.value.problems
    assert found.startswith("inline_webhooks.slack_hosts.1: "), found


# -- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.1",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",  # site-local
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:db8::1",  # documentation
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_addresses_off_the_public_internet_are_forbidden(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_not(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is None


class _Rebinding(AbstractResolver):
    """A name that points to a public address, then (the attacker's TTL of 0) to loopback."""

    def __init__(self) -> None:
        self.answers = ["93.184.216.34", "127.0.0.1"]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers.pop(0)
        entry: ResolveResult = {
            "hostname": host,
            "host": address,
            "port": port,
            "family": socket.AF_INET,
            "proto": 0,
            "flags": 0,
        }
        return [entry]

    async def close(self) -> None:
        return None


async def test_every_resolution_is_checked_so_rebinding_gains_nothing() -> None:
    resolver = PublicOnlyResolver(_Rebinding())
    (first,) = await resolver.resolve("rebind.example.com", 443)
    assert first["host"] == "93.184.216.34"
    with pytest.raises(ForbiddenAddress, match=r"127\.0\.0\.1 \(a loopback address\)"):
        await resolver.resolve("rebind.example.com", 443)


async def test_a_name_resolving_to_loopback_is_refused_unless_named(
    tmp_path: Path, sink: HttpSink
) -> None:
    url = f"http://localhost:{sink.port}/hook"
    ((wildcard, attempts),) = await deliver(
        settings(tmp_path, f"http://*:{sink.port}/*"), post(url, "{}")
    )
    assert wildcard.status is DeliveryStatus.DEAD
    assert len(attempts) == 1
    assert "localhost resolves to 127.0.0.1 (a loopback address)" in wildcard.last_reply
    assert "allow.inline_webhook_urls naming this host" in wildcard.last_reply
    assert sink.requests == []

    ((named, _),) = await deliver(
        settings(tmp_path, f"http://localhost:{sink.port}/*"), post(url, "{}")
    )
    assert named.status is DeliveryStatus.DELIVERED, named.last_reply
    assert [r.path for r in sink.requests] == ["/hook"]


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_a_private_address_written_in_the_url_is_refused_unless_named(
    tmp_path: Path, sink: HttpSink, host: str
) -> None:
    result = await send_once(
        settings(tmp_path, f"http://*:{sink.port}/*"), post(f"http://{host}:{sink.port}/x")
    )
    assert result.outcome is Outcome.PERMANENT
    assert "a loopback address" in result.reply
    assert sink.requests == []


async def test_a_redirect_is_not_followed(tmp_path: Path, sink: HttpSink) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/role"
    sink.script(302, headers={"Location": metadata})
    result = await send_once(settings(tmp_path, f"{sink.base}/*"), post(sink.url("/hook")))
    assert result.outcome is Outcome.PERMANENT
    assert result.reply == (
        "302 Found (redirects are not followed; Location: http://169.254.169.254/latest/m…/i…/s…/…)"
    )
    assert len(sink.requests) == 1


# -- the request as written --------------------------------------------------------------


async def test_a_webhook_is_sent_exactly_as_written(tmp_path: Path, sink: HttpSink) -> None:
    body = '{ "run": "nightly",\n  "phase":"FAILED" }'
    request = HttpRequest(
        "PUT",
        sink.url("/hooks/flyte?team=data&x=%E2%82%AC"),
        (("X-Team", "data"), ("Authorization", "Bearer s3cr3t"), ("x-dup", "1"), ("x-dup", "2")),
        body,
    )
    ((delivery, attempts),) = await deliver(settings(tmp_path, f"{sink.base}/hooks/*"), request)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert delivery.last_reply == "200 OK"
    assert [a.outcome for a in attempts] == ["delivered"]
    (received,) = sink.requests
    assert (received.method, received.path, received.body) == ("PUT", "/hooks/flyte", body.encode())
    assert received.headers["X-Team"] == "data"
    assert received.headers["Authorization"] == "Bearer s3cr3t"
    assert received.headers.getall("x-dup") == ["1", "2"]
    assert received.headers["User-Agent"] == "flytenotify"
    # Nothing the user did not write: no Content-Type, Accept or Accept-Encoding.
    for added in ("Content-Type", "Accept", "Accept-Encoding", "Cookie"):
        assert added not in received.headers, added


async def test_the_users_own_user_agent_and_an_empty_body(tmp_path: Path, sink: HttpSink) -> None:
    request = HttpRequest("POST", sink.url("/ping"), (("User-Agent", "my-pipeline/2"),))
    ((delivery, _),) = await deliver(settings(tmp_path, f"{sink.base}/*"), request)
    assert delivery.status is DeliveryStatus.DELIVERED
    (received,) = sink.requests
    assert received.headers.getall("User-Agent") == ["my-pipeline/2"]
    assert received.body == b""
    assert received.headers.get("Content-Length", "0") == "0"


@pytest.mark.parametrize(
    ("method", "headers", "problem"),
    [
        ("TRACE", (), "method TRACE is never sent"),
        ("CONNECT", (), "method CONNECT is never sent"),
        ("FETCH", (), "'FETCH' is not one of GET, HEAD, POST"),
        ("POST", (("Host", "evil.com"),), "header Host belongs to the connection"),
        ("POST", (("content-length", "0"),), "header content-length belongs"),
        ("POST", (("Transfer-Encoding", "chunked"),), "header Transfer-Encoding belongs"),
        ("POST", (("Connection", "close"),), "header Connection belongs"),
        ("POST", (("TE", "trailers"),), "header TE belongs"),
        ("POST", (("Upgrade", "websocket"),), "header Upgrade belongs"),
        ("POST", (("Proxy-Authorization", "Basic x"),), "header Proxy-Authorization belongs"),
        ("POST", (("X-A\r\nX-B", "1"),), "header name 'X-A??X-B' is not an HTTP token"),
        ("POST", (("X-A", "1\r\nX-Injected: 1"),), "header X-A holds a control character"),
        ("POST", (("X-A", "1\x00"),), "header X-A holds a control character"),
        ("POST", tuple((f"X-{i}", "v") for i in range(21)), "21 headers, more than the 20"),
    ],
)
async def test_requests_no_rule_may_make_are_dead_lettered_unsent(
    tmp_path: Path,
    sink: HttpSink,
    method: str,
    headers: tuple[tuple[str, str], ...],
    problem: str,
) -> None:
    request = HttpRequest(method, sink.url("/hook"), headers, "{}")
    ((delivery, attempts),) = await deliver(settings(tmp_path, f"{sink.base}/*"), request)
    assert (delivery.status, len(attempts)) == (DeliveryStatus.DEAD, 1)
    assert problem in delivery.last_reply
    assert sink.requests == []


async def test_a_url_no_pattern_allows_is_dead_lettered_naming_the_key(
    tmp_path: Path, sink: HttpSink
) -> None:
    requests = [post(sink.url("/hook"), "{}"), post(f"http://localhost:{sink.port}/hook")]
    found = await deliver(settings(tmp_path, "https://hooks.slack.com/services/*"), *requests)
    for delivery, attempts in found:
        assert (delivery.status, len(attempts)) == (DeliveryStatus.DEAD, 1)
        assert delivery.last_reply.endswith("matches no pattern of allow.inline_webhook_urls")
    assert sink.requests == []
    # With no patterns at all, nothing is sent either.
    ((nothing, _),) = await deliver(settings(tmp_path), post(sink.url("/hook")))
    assert nothing.status is DeliveryStatus.DEAD
    assert sink.requests == []


async def test_a_render_problem_is_dead_lettered_never_sent(tmp_path: Path, sink: HttpSink) -> None:
    spec = registry.get("inline_webhook")
    assert spec is not None
    channel = spec.build(settings(tmp_path, f"{sink.base}/*").channel("inline_webhook"), None)
    delivery = rendered_delivery("email", "inline_webhook", sink.url())
    broken = replace(message(post(sink.url())), problem="{% for %} is not supported")
    try:
        result = await channel.send(replace(delivery, message=broken))
    finally:
        await channel.close()
    assert (result.outcome, result.reply) == (
        Outcome.PERMANENT,
        "not rendered: {% for %} is not supported",
    )
    assert sink.requests == []


# -- any other host: the webhook channel's reading ------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "retry_after"),
    [
        (500, {}, Outcome.TRANSIENT, None),
        (408, {}, Outcome.TRANSIENT, None),
        (429, {"Retry-After": "7"}, Outcome.TRANSIENT, 7.0),
        (404, {}, Outcome.PERMANENT, None),
        (204, {}, Outcome.DELIVERED, None),
    ],
)
async def test_other_hosts_answers(
    tmp_path: Path,
    sink: HttpSink,
    status: int,
    headers: dict[str, str],
    outcome: Outcome,
    retry_after: float | None,
) -> None:
    sink.script(status, headers=headers)
    result = await send_once(settings(tmp_path, f"{sink.base}/*"), post(sink.url(), "{}"))
    assert (result.outcome, result.retry_after) == (outcome, retry_after)
    assert result.reply.startswith(str(status))


async def test_a_refused_connection_is_transient_and_says_no_secret(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T0/B0/{SECRET}"
    result = await send_once(settings(tmp_path, f"http://127.0.0.1:{port}/*"), post(url))
    assert result.outcome is Outcome.TRANSIENT
    assert "Cannot connect" in result.reply
    assert SECRET not in result.reply


# -- Slack's incoming webhooks ---------------------------------------------------------------


async def test_slack_receives_the_users_payload(tmp_path: Path, slack: SlackApiServer) -> None:
    body = json.dumps({"text": "nightly *failed*"})
    ((delivery, _),) = await deliver(slack_config(tmp_path, slack), post(slack.webhook_url, body))
    assert (delivery.status, delivery.last_reply) == (
        DeliveryStatus.DELIVERED,
        "incoming webhook: 200 ok",
    )
    (call,) = slack.calls_to(WEBHOOK)
    assert call.raw == body.encode()
    assert call.headers is not None
    assert call.headers["Content-Type"] == "application/json"
    assert call.path == "/services/T0TEST/B0TEST/not-a-secret"


@pytest.mark.parametrize(
    ("arrange", "body", "reply"),
    [
        (lambda s: None, "not json", "incoming webhook: 400 invalid_payload"),
        (lambda s: None, "{}", "incoming webhook: 400 no_text"),
        (
            lambda s: s.revoked_webhooks.add("/services/T0TEST/B0TEST/not-a-secret"),
            '{"text": "x"}',
            "incoming webhook: 404 no_service",
        ),
        (
            lambda s: s.archived_webhooks.add("/services/T0TEST/B0TEST/not-a-secret"),
            '{"text": "x"}',
            "incoming webhook: 410 channel_is_archived",
        ),
    ],
)
async def test_slacks_refusals_are_permanent(
    tmp_path: Path, slack: SlackApiServer, arrange: Any, body: str, reply: str
) -> None:
    arrange(slack)
    ((delivery, attempts),) = await deliver(
        slack_config(tmp_path, slack), post(slack.webhook_url, body)
    )
    assert (delivery.status, len(attempts), delivery.last_reply) == (DeliveryStatus.DEAD, 1, reply)


async def test_slack_is_paced_per_webhook(
    tmp_path: Path, slack: SlackApiServer, database_url: str
) -> None:
    # On either ledger: the pace is kept in its shared slots, as every replica's.
    first, second = (post(slack.webhook_url, json.dumps({"text": t})) for t in ("one", "two"))
    found = await deliver(slack_config(tmp_path, slack, database=database_url), first, second)
    assert [d.status for d, _ in found] == [DeliveryStatus.DELIVERED] * 2
    calls = slack.calls_to(WEBHOOK)
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 0.99  # about one message a second per webhook


async def test_slacks_429_is_waited_out(tmp_path: Path, slack: SlackApiServer) -> None:
    slack.rate_limit(2, method=WEBHOOK)
    first, second = (post(slack.webhook_url, json.dumps({"text": t})) for t in ("one", "two"))
    found = await deliver(slack_config(tmp_path, slack), first, second)
    assert [d.status for d, _ in found] == [DeliveryStatus.DELIVERED] * 2
    outcomes = sorted([a.outcome for a in attempts] for _, attempts in found)
    assert outcomes == [["delivered"], ["transient", "delivered"]]
    (limited,) = [a for _, attempts in found for a in attempts if a.outcome == "transient"]
    assert limited.reply == "incoming webhook: 429 ratelimited"
    calls = slack.calls_to(WEBHOOK)
    assert [c.status for c in calls] == [429, 200, 200]
    # Retry-After: 2 holds back every post to that webhook, not only the one refused.
    assert calls[1].at - calls[0].at >= 1.99


async def test_slacks_semantics_belong_to_slacks_host(
    tmp_path: Path, slack: SlackApiServer
) -> None:
    # The same server, not named in slack_hosts, is any webhook: its answer is
    # read as an HTTP status line, not as Slack's.
    slack.script_webhook(400, "invalid_payload")
    result = await send_once(settings(tmp_path, f"{slack.base}/*"), post(slack.webhook_url, "{}"))
    assert (result.outcome, result.reply) == (Outcome.PERMANENT, "400 Bad Request: invalid_payload")


# -- Teams --------------------------------------------------------------------------------


async def test_a_teams_workflow_takes_the_card(tmp_path: Path, teams: TeamsWebhookServer) -> None:
    ((delivery, _),) = await deliver(
        teams_config(tmp_path, teams), post(teams.workflow_url, ADAPTIVE_CARD)
    )
    assert (delivery.status, delivery.last_reply) == (DeliveryStatus.DELIVERED, "202 Accepted")
    (received,) = teams.requests
    assert received.body == ADAPTIVE_CARD.encode()
    assert delivery.recipient == (f"{teams.base}/workflows/f…/t…/m…/p…/…?api-version=…&sig=…")


@pytest.mark.parametrize(("refused", "outcome"), [(429, "transient"), (400, "permanent")])
async def test_a_connectors_200_with_an_error_is_no_delivery(
    tmp_path: Path, teams: TeamsWebhookServer, refused: int, outcome: str
) -> None:
    teams.connector_refuses(refused, count=10)
    ((delivery, attempts),) = await deliver(
        teams_config(tmp_path, teams), post(teams.connector_url, ADAPTIVE_CARD)
    )
    assert delivery.status is DeliveryStatus.DEAD
    assert attempts[0].outcome == outcome
    assert attempts[0].reply == "200 OK: " + CONNECTOR_FAILURE.format(status=refused)
    # The same answer from a host that is not Teams' is a delivery.
    result = await send_once(settings(tmp_path, f"{teams.base}/*"), post(teams.connector_url, "{}"))
    assert result.outcome is Outcome.DELIVERED


async def test_teams_too_large_is_permanent(tmp_path: Path, teams: TeamsWebhookServer) -> None:
    body = json.dumps({"type": "message", "text": "x" * 30_000})
    ((delivery, _),) = await deliver(teams_config(tmp_path, teams), post(teams.workflow_url, body))
    assert delivery.status is DeliveryStatus.DEAD
    assert delivery.last_reply == "413 Request Entity Too Large: Payload Too Large"


# -- secrets are never shown ------------------------------------------------------------------


def test_display_url_keeps_no_secret() -> None:
    assert display_url("https://hooks.slack.com/services/T01/B02/abcSECRET") == (
        "https://hooks.slack.com/services/T…/B…/…"
    )
    assert (
        display_url(
            "https://contoso.webhook.office.com/webhookb2/1a2b@3c4d/IncomingWebhook/5e6f/7a8b/9c"
        )
        == "https://contoso.webhook.office.com/webhookb2/1…/I…/5…/7…/…"
    )
    assert display_url(
        "https://prod-1.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke"
        "?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=SeCrEt"
    ) == (
        "https://prod-1.westus.logic.azure.com:443/workflows/a…/t…/m…/p…/…"
        "?api-version=…&sp=…&sv=…&sig=…"
    )
    assert display_url("https://user:pw@example.com/a") == "https://…@example.com/…"
    assert display_url("https://example.com/" + "t" * 40 + "/x") == "https://example.com/t…/…"
    assert display_url("hooks.slack.com/services/T/B/secret") == "(not an absolute URL)"
    url = "https://x.example.com/a/b/LongSecretPart?token=AnotherSecret"
    assert redact(f"404: no route {url} (/a/b/LongSecretPart)", url) == (
        "404: no route https://x.example.com/a/b…/…?token=… (/a/b/…)"
    )


async def test_the_api_and_the_inbox_show_no_secret(tmp_path: Path, slack: SlackApiServer) -> None:
    secret_url = f"{slack.base}/services/T0TEST/B0TEST/{SECRET}"
    headers = (
        ("Content-Type", "application/json"),
        ("Authorization", f"Bearer {SECRET}"),
        ("X-API-Key", SECRET),
    )
    request = post(secret_url, '{"text": "nightly failed"}', headers)
    # Slack answers quoting the URL it refused.
    slack.script_webhook(404, f"no_service: {secret_url}")
    config = slack_config(tmp_path, slack)
    async with Notifier(config, dev_inbox=True) as notifier:
        (sent,) = await enqueue(notifier, request)
        (kept,) = await enqueue(notifier, request, channel="inbox")
        await notifier.run_until_idle(max_wait=30, include_retries=True)
        app = create_app(notifier, ServerConfig())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            shown = (await client.get(f"/api/v1/deliveries/{sent}")).json()
            listed = (await client.get("/api/v1/deliveries")).text
            inbox = (await client.get("/api/v1/inbox")).json()["items"]
        delivery = await notifier.delivery(sent)
    assert delivery is not None
    (call,) = slack.calls_to(WEBHOOK)
    assert call.path.endswith(SECRET)  # it was sent with the secret...
    assert call.headers is not None
    assert call.headers["X-API-Key"] == SECRET
    assert shown["status"] == "dead"  # ...and refused, quoting it
    assert shown["recipient"] == f"{slack.base}/services/T…/B…/…"
    assert shown["last_reply"] == (
        f"incoming webhook: 404 no_service: {slack.base}/services/T…/B…/…"
    )
    assert SECRET not in json.dumps(shown)
    assert SECRET not in listed
    (item,) = inbox
    assert item["delivery_id"] == kept
    assert item["body"] == (
        f"POST {slack.base}/services/T…/B…/…\n"
        "Content-Type: application/json\n"
        "Authorization: Bearer …\n"
        "X-API-Key: …\n"
        "User-Agent: flytenotify\n"
        "\n"
        '{"text": "nightly failed"}'
    )
    shown_in_console = message_view(Sent(delivery, sent_at=None)).raw
    assert SECRET not in shown_in_console
    assert shown_in_console == item["body"]


async def test_check_names_hosts_only() -> None:
    channel = InlineWebhookChannel(
        Settings(allow=AllowConfig(inline_webhook_urls=SLACK_PATTERNS)).channel("inline_webhook")
    )
    assert await channel.check() == (
        "inline_webhook: requests from users' code may go to *.webhook.office.com, hooks.slack.com"
    )
