"""Webhook channel: a signed JSON POST to a named, configured URL.

A delivery's recipient is a target *name* (the engine strips ``webhook:``);
the URL, headers and secret come from configuration only, so nothing in an
event can redirect a notification elsewhere. Redirects are not followed for
the same reason.

Every request carries::

    Content-Type: application/json
    X-Flytenotify-Delivery: <idempotency key>     (the same on every retry)
    X-Flytenotify-Timestamp: <unix seconds>
    X-Flytenotify-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

The signature is ``HMAC-SHA256(secret, f"{t}.{raw_body}")``; receivers check it
with :func:`verify_signature`, which also rejects stale timestamps (replays).
A target without a secret is sent unsigned (no signature header).

A later message of a conversation (the same execution's, or a recovery's)
names the earlier one it follows in ``follows``: its ``delivery_id`` and
execution. The receiver can thread them; nothing is edited.

"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from yarl import URL

from flytenotify.channels._http import (
    TRANSPORT_ERRORS,
    USER_AGENT,
    answer_result,
    decode_reply,
    describe_aiohttp_error,
    env_proxy,
    new_session,
    parse_retry_after,
    status_reply,
    url_destination,
)
from flytenotify.channels.base import (
    ChannelDefaults,
    ChannelSpec,
    Outcome,
    SendResult,
    SharedPacing,
    always,
    follows_earlier,
    named_target,
)
from flytenotify.domain import Delivery, Digest, phase_name
from flytenotify.sections import Section, http_url, read_secret

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "encode_body",
    "sign",
    "verify_signature",
    "webhook_payload",
]

log = logging.getLogger(__name__)

DELIVERY_HEADER = "X-Flytenotify-Delivery"
TIMESTAMP_HEADER = "X-Flytenotify-Timestamp"
SIGNATURE_HEADER = "X-Flytenotify-Signature"

# How much of a receiver's answer is kept in the audit trail.
_REPLY_BODY_LIMIT = 300


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------


class WebhookTarget(Section):
    """``[webhooks.NAME]``: a webhook destination, addressed by recipients ``webhook:NAME``."""

    url: str
    secret: SecretStr | None = None
    secret_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0)

    _secret_pairs = (("secret", "secret_file"),)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url)

    @field_validator("headers")
    @classmethod
    def _one_kind_of_credentials(
        cls, headers: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        # The HTTP client turns user:password@ in the URL into an Authorization
        # header and refuses a request that has both: every send would fail.
        parts = urlsplit(info.data.get("url", ""))
        has_userinfo = parts.username is not None or parts.password is not None
        if has_userinfo and any(k.lower() == "authorization" for k in headers):
            raise ValueError(
                "an Authorization header cannot be combined with user:password@ in url "
                "(no request could be sent); keep the credentials in one of the two"
            )
        return headers

    def resolved_secret(self) -> str | None:
        return read_secret(self.secret, self.secret_file)


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def _mac_bytes(key: bytes, timestamp: int, body: bytes) -> str:
    # hmac.digest is OpenSSL's one-shot HMAC: no Python-level HMAC object per call.
    return hmac.digest(key, b"%d.%b" % (timestamp, body), hashlib.sha256).hex()


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return _mac_bytes(secret.encode("utf-8"), timestamp, body)


def sign(secret: str, timestamp: int, body: bytes | str) -> str:
    """The ``X-Flytenotify-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, _as_bytes(body))}"


def _parse_signature(header_value: str) -> tuple[int, list[str]] | None:
    timestamp: int | None = None
    macs: list[str] = []
    for part in header_value.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        return None
    return timestamp, macs


def verify_signature(
    secret: str,
    header_value: str,
    body: bytes | str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True when ``header_value`` signs ``body`` with ``secret`` and is fresh.

    ``body`` must be the raw request body, byte for byte. A timestamp more than
    ``tolerance_s`` seconds from ``now`` (default: the current time) fails, so a
    captured request cannot be replayed later. Several ``v1=`` values are
    accepted (one matching is enough), which allows rotating a secret.
    """
    parsed = _parse_signature(header_value)
    if parsed is None:
        return False
    timestamp, macs = parsed
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, _as_bytes(body))
    # compare_digest for every candidate: no early exit that leaks timing.
    matches = [hmac.compare_digest(expected, candidate) for candidate in macs]
    return any(matches)


# --------------------------------------------------------------------------
# Payload
# --------------------------------------------------------------------------


def _entity(variables: dict[str, str], prefix: str) -> dict[str, str] | None:
    fields = {
        part: variables.get(f"{prefix}.{part}", "")
        for part in ("project", "domain", "name", "version")
    }
    return fields if fields["name"] else None


def _launch_plan(delivery: Delivery) -> dict[str, str] | None:
    lp = delivery.launch_plan
    if lp is not None:
        return {"project": lp.project, "domain": lp.domain, "name": lp.name, "version": lp.version}
    return _entity(delivery.message.variables, "launch_plan")


def _error(variables: dict[str, str]) -> dict[str, str] | None:
    message = variables.get("error.message", "")
    if not message:
        return None
    return {
        "message": message,
        "code": variables.get("error.code", ""),
        "kind": variables.get("error.kind", ""),
        "uri": variables.get("error.uri", ""),
    }


def webhook_payload(delivery: Delivery) -> dict[str, Any]:
    """The JSON document a webhook receives for ``delivery``."""
    variables = delivery.message.variables
    eid = delivery.execution_id
    execution_id = {"project": eid.project, "domain": eid.domain, "name": eid.name}
    return {
        "delivery_id": delivery.idempotency_key,
        # phase, deadline or deadline_resolved: what this message is about.
        "reason": delivery.reason.value,
        "event": {
            "execution_id": execution_id,
            "phase": phase_name(delivery.phase),
            "phase_code": delivery.phase,
            "occurred_at": variables.get("occurred_at") or None,
            "error": _error(variables),
        },
        "execution": {
            **execution_id,
            "workflow": _entity(variables, "workflow"),
            "console_url": variables.get("console_url") or None,
            "duration": variables.get("duration") or None,
        },
        "launch_plan": _launch_plan(delivery),
        "notification": {
            "kind": delivery.kind,
            "index": delivery.notification_index,
            "target": delivery.recipient,
        },
        "subject": delivery.message.subject,
        "text": delivery.message.text,
        "variables": dict(variables),
        "follows": _follows(delivery),
    }


def _follows(delivery: Delivery) -> dict[str, str] | None:
    """The earlier message of its conversation this one follows: that message's
    ``delivery_id`` and the execution it was about; None for a first message."""
    thread = delivery.thread
    root = thread.root_id if thread is not None else delivery.in_reply_to
    earlier = follows_earlier(delivery)
    if not root or earlier is None:
        return None
    return {"delivery_id": root.removeprefix("single:"), "execution": earlier}


DIGEST_SCHEMA = "flytenotify.digest/v1"


def digest_payload(digest: Digest) -> dict[str, Any]:
    """The JSON document a webhook receives for a digest (docs/channels.md, schema
    ``flytenotify.digest/v1``): every execution it carries, each as the single
    body's ``event`` and ``execution`` say it."""
    first = digest.deliveries[0]
    return {
        "schema": DIGEST_SCHEMA,
        "delivery_id": digest.id,
        "title": digest.title,
        "count": digest.count,
        "list_url": digest.link or None,
        "launch_plan": _launch_plan(first),
        "notification": {"kind": first.kind, "target": first.recipient},
        "executions": [_digest_entry(delivery) for delivery in digest.deliveries],
    }


def _digest_entry(delivery: Delivery) -> dict[str, Any]:
    single = webhook_payload(delivery)
    return {
        "delivery_id": delivery.idempotency_key,
        "event": single["event"],
        "execution": single["execution"],
        "launch_plan": single["launch_plan"],
    }


def _payload(delivery: Delivery) -> dict[str, Any]:
    if delivery.digest is not None:
        return digest_payload(delivery.digest)
    return webhook_payload(delivery)


def encode_body(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent.

    Copied to a buffer of its own size: orjson's result keeps the buffer it
    grew while writing (16 KiB for a 2 KB body), held for as long as the
    request is in flight, which made it most of a webhook send's memory.
    """
    return memoryview(orjson.dumps(payload)).tobytes()


# --------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------


# Headers the channel sets on every request; a configured header of the same
# name (in any letter case) is dropped so it can never replace the signature.
_OWN_HEADERS = frozenset(
    name.lower() for name in ("Content-Type", DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
)


class _Target:
    """A configured target with everything that does not change per request prepared once."""

    def __init__(self, config: WebhookTarget) -> None:
        self.url = config.url
        self.parsed_url = URL(config.url)  # aiohttp would otherwise parse the string per request
        self.destination = url_destination(self.parsed_url)
        self.proxy = env_proxy(self.parsed_url)
        self.timeout = config.timeout
        self.client_timeout = aiohttp.ClientTimeout(total=config.timeout)
        secret = config.resolved_secret()
        self.secret = secret
        self.key = secret.encode("utf-8") if secret else None
        headers = {k: v for k, v in config.headers.items() if k.lower() not in _OWN_HEADERS}
        if not any(k.lower() == "user-agent" for k in headers):
            headers["User-Agent"] = USER_AGENT
        headers["Content-Type"] = "application/json"
        self.headers = headers  # copied and completed per request

    def request_headers(self, delivery_id: str, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        headers = self.headers.copy()
        headers[DELIVERY_HEADER] = delivery_id
        headers[TIMESTAMP_HEADER] = str(timestamp)
        if self.key is not None:
            mac = _mac_bytes(self.key, timestamp, body)
            headers[SIGNATURE_HEADER] = f"t={timestamp},v1={mac}"
        return headers


class WebhookChannel(ChannelDefaults):
    """POSTs signed JSON to the configured webhook targets over one keep-alive session."""

    name: str = "webhook"

    def __init__(self, targets: dict[str, WebhookTarget]) -> None:
        self._targets = {name: _Target(target) for name, target in targets.items()}
        # Created on the first send: an aiohttp session belongs to the running loop.
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = new_session()
        return session

    def destination(self, delivery: Delivery) -> str:
        """The receiving host: its sends in flight are limited together."""
        target = self._targets.get(delivery.recipient)
        return target.destination if target is not None else ""

    async def send(self, delivery: Delivery) -> SendResult:
        target = self._targets.get(delivery.recipient)
        if target is None:
            return SendResult.permanent(f"unknown webhook target {delivery.recipient!r}")
        body = encode_body(_payload(delivery))
        digest = delivery.digest
        delivery_id = digest.id if digest is not None else delivery.idempotency_key
        headers = target.request_headers(delivery_id, body)
        try:
            # Redirects would send the payload (and our signature) to a URL nobody configured.
            async with self._http().post(
                target.parsed_url,
                data=body,
                headers=headers,
                timeout=target.client_timeout,
                allow_redirects=False,
                proxy=target.proxy,
            ) as response:
                answer = await response.read()
        except TRANSPORT_ERRORS as err:
            return SendResult.transient(describe_aiohttp_error(err, target.timeout))
        result = self._result(response, answer)
        if result.outcome is not Outcome.DELIVERED:
            return result
        # Its id is the delivery id the receiver got (a later message's follows names it).
        thread = delivery.thread
        in_reply_to = thread.root_id if thread is not None else ""
        return replace(result, provider_message_id=delivery_id, in_reply_to=in_reply_to)

    @staticmethod
    def _result(response: aiohttp.ClientResponse, answer: bytes) -> SendResult:
        text = decode_reply(answer, response.charset, _REPLY_BODY_LIMIT)
        reply = status_reply(response.status, response.reason or "", text)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return answer_result(response.status, reply, retry_after)

    async def check(self) -> str:
        """What is configured; a webhook has nothing to call without sending."""
        if not self._targets:
            return "webhook: no targets configured"
        described = ", ".join(
            # The host alone: a URL's user:password@ is a secret like any other.
            f"{name} -> {urlsplit(t.url).hostname} ({'signed' if t.secret else 'unsigned'})"
            for name, t in sorted(self._targets.items())
        )
        return f"webhook: {described}"

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


# --- what the registry knows ------------------------------------------------------

PREFIX = "webhook:"


def _build(targets: dict[str, WebhookTarget], _pacing: SharedPacing | None) -> WebhookChannel:
    return WebhookChannel(targets)


def _preview(delivery: Delivery) -> str:
    return json.dumps(_payload(delivery), indent=2, ensure_ascii=False)


CHANNEL: ChannelSpec[dict[str, WebhookTarget]] = ChannelSpec(
    name="webhook",
    section="webhooks",
    config=dict[str, WebhookTarget],
    build=_build,
    takes=named_target(PREFIX, "webhook"),
    preview=_preview,
    summary=lambda targets: ", ".join(sorted(targets)),
    prefix=PREFIX,
    route_order=10,
    allow_names=lambda targets: targets,
    digests=always,
    threads=True,
)
