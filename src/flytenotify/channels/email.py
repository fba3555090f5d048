"""The email channel: one MIME message per delivery, sent over pooled SMTP.

Three concerns live here, in this order:

* **The message.** :func:`encode_message` turns a delivery into the bytes of
  a standard ``multipart/alternative`` message (text + HTML); it assembles
  them directly, because EmailMessage costs ~1 ms of CPU per message
  (:func:`build_message` parses the bytes back, for inspection). Its
  Message-ID is derived from the delivery's idempotency key, so a message
  retried after a crash carries the same id and the receiving side can drop
  the duplicate. No value from a delivery can add a header: CR/LF in a subject
  is folded to spaces and a recipient that is not one plain address is refused.
* **The connections.** Opening an SMTP session (TCP, TLS, EHLO, AUTH) costs
  several round trips, which is why Alertmanager tops out near 1,000 mails/s.
  We keep up to ``pool_size`` sessions open, reuse them for one transaction at
  a time, reset them after a refusal and drop them when idle or broken.
* **The outcome.** The server's reply code decides: 2xx delivered, 4xx
  transient, 5xx permanent. Anything without a reply (refused connection,
  timeout, lost connection, failed TLS handshake) is transient, with a reply
  text that says what happened. :meth:`EmailChannel.send` never raises for
  such faults.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import dataclasses
import email.policy
import errno
import functools
import hashlib
import html
import os
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Literal

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPStatus,
    SMTPTimeoutError,
)
from aiosmtplib.email import quote_address
from pydantic import Field, SecretStr, field_validator

from flytenotify.channels._pacing import Busy, Pacer
from flytenotify.channels.base import (
    ChannelSpec,
    SendResult,
    SharedPacing,
    Unreachable,
    always,
    digest_lines,
)
from flytenotify.domain import Delivery, Digest
from flytenotify.sections import Section, read_secret


class SmtpConfig(Section):
    """``[smtp]``: how to reach the SMTP server that sends email."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    tls: Literal["none", "starttls", "implicit"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    verify_certificates: bool = True  # off only for tests against a self-signed server
    ca_file: Path | None = None  # trust this CA bundle in addition to the system's
    timeout: float = Field(default=30.0, gt=0)
    sender: str = "flytenotify@localhost"
    # Sessions open at once: the most emails in flight to this relay. The
    # dispatcher opens them as the relay keeps up (dispatch.initial_per_destination,
    # then AIMD); at 300 ms a message, 300 sessions carry 1,000 emails/s. Set it
    # to the relay's own limit per client (Postfix: 50) if it has one.
    pool_size: int = Field(default=512, ge=1, le=16384)
    # Messages per minute the relay accepts, across replicas; 0: no budget.
    max_per_minute: int = Field(default=0, ge=0)

    _secret_pairs = (("password", "password_file"),)

    @field_validator("sender")
    @classmethod
    def _one_address(cls, sender: str) -> str:
        _name, address = parseaddr(sender)
        if "@" not in address or any(c in sender for c in "\r\n"):
            raise ValueError(f"must be one email address, got {sender!r}")
        return sender

    def resolved_password(self) -> str | None:
        return read_secret(self.password, self.password_file)


__all__ = [
    "IDLE_TIMEOUT",
    "EmailChannel",
    "EmailCheckError",
    "address_problem",
    "build_message",
    "describe",
    "digest_html",
    "digest_text",
    "encode_message",
    "message_id",
    "parse_address",
    "single_line",
]

IDLE_TIMEOUT = 30.0  # seconds an unused connection stays open (servers drop them after ~5 min)
# A send waits this long at most for the relay's budget (max_per_minute), then
# returns transient with the wait, for the engine to schedule.
_BUDGET_WAIT = 10.0
_QUIT_TIMEOUT = 2.0  # a polite QUIT on close must not hold up shutdown
_MESSAGE_ID_DOMAIN = "flytenotify"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Errors that mean "no usable reply from the server": the connection is the problem.
_CONNECTION_ERRORS = (SMTPServerDisconnected, SMTPTimeoutError, OSError, TimeoutError)


class EmailCheckError(Exception):
    """``check()`` could not connect, secure or log in; the message says why."""


# --- the message -----------------------------------------------------------------------------
#
# The message is assembled as bytes from a few C-implemented pieces (binascii's
# quoted-printable and base64, hashlib) instead of with EmailMessage: the
# policy-driven header registry and generator cost ~1 ms of CPU per message,
# most of what the channel spent on a delivery. What goes on the wire is what
# EmailMessage with email.policy.SMTP would write (7-bit, CRLF, folded headers,
# RFC 2047 words for non-ASCII); the tests parse it back with email.policy.default.

_LINE = 78  # RFC 5322's recommended line length, as email.policy.SMTP folds
_MAX_PLAIN_WORD = 900  # longer header words are encoded, so no line exceeds RFC 5322's 998
_WORD_BYTES = 45  # UTF-8 bytes per encoded word: "=?utf-8?b?" + 60 base64 + "?=" is 72 chars
_B64_LINE_BYTES = 57  # 76 base64 characters per body line, as the stdlib writes
# A body that may go out as it is: printable ASCII and tabs only, no line over _LINE.
_RAW_BODY = re.compile(rf"(?:[\t\x20-\x7e]{{0,{_LINE}}}\n)*")


def message_id(idempotency_key: str) -> str:
    """The Message-ID for a delivery: the same key always gives the same id."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{_MESSAGE_ID_DOMAIN}>"


def single_line(value: str) -> str:
    """``value`` with control characters (CR, LF, tab, ...) folded into single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def parse_address(value: str) -> Address:
    """One plain ``local@domain`` address, or ``ValueError``.

    Refusing anything else (display names, lists, CR/LF, control characters)
    is what keeps a crafted recipient from adding headers or recipients.
    """
    if _CONTROL.search(value):
        raise ValueError(f"address contains control characters: {value!r}")
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError) as exc:  # the parser raises all three
        raise ValueError(f"not a single email address: {value!r}") from exc
    # The canonical form must be the input: no comments or spacing the parser dropped.
    if not address.username or not address.domain or address.addr_spec != value:
        raise ValueError(f"not a single email address: {value!r}")
    if not value.isascii():
        # Internationalised addresses need SMTPUTF8 end to end; not supported yet.
        raise ValueError(f"non-ASCII email address is not supported: {value!r}")
    return address


@functools.lru_cache(maxsize=4096)
def address_problem(value: str) -> str | None:
    """Why ``value`` is not exactly one plain ``local@domain`` address, or None.

    Said in words a person can act on: a list, a display name, whitespace or a
    control character is named as such. Cached like :func:`_checked_address`:
    routing asks this for every recipient of every event.
    """
    if "<" in value or ">" in value:
        return "it has a display name or angle brackets; write only local@domain"
    if "," in value or ";" in value:
        return "it has a comma or semicolon, as a list of addresses has; name each on its own"
    control = _CONTROL.search(value)
    if control is not None:
        return f"it has the control character {control.group()!r} at position {control.start()}"
    space = next((i for i, c in enumerate(value) if c.isspace()), None)
    if space is not None:
        return f"it has whitespace at position {space}"
    try:
        parse_address(value)
    except ValueError:
        if not value.isascii():
            return "it is not ASCII (internationalised addresses are not supported)"
        return "it is not of the form local@domain"
    return None


@functools.lru_cache(maxsize=4096)
def _checked_address(value: str) -> str:
    # The address parser costs ~25 us and alerts go to the same few recipients
    # again and again. Only accepted addresses are cached (lru_cache does not
    # keep exceptions), so a refused one is refused again every time.
    return parse_address(value).addr_spec


def encode_message(delivery: Delivery, sender: str, sent_at: float | None = None) -> bytes:
    """The message for ``delivery`` as it goes on the wire: headers, a text and an HTML part.

    A pure function of the delivery, the sender and ``sent_at`` (Unix seconds,
    the ``Date``; now when not given): the Message-ID and the MIME boundary
    come from the idempotency key (a digest's id), so the console shows the
    very bytes the relay was given, and a resend after a crash is the same message.

    Raises ``ValueError`` when a recipient or the sender is not one plain
    address; the subject is made single-line rather than refused, because an
    alert must still go out when an error message in it has a newline.
    """
    addressed = _addressed(delivery)
    sender = _checked_address(sender)
    subject, text_body, html_body = _content(delivery)
    subject = single_line(subject)
    text = _body(text_body)
    key = delivery.digest.id if delivery.digest is not None else delivery.idempotency_key
    date = datetime.fromtimestamp(time.time() if sent_at is None else sent_at, UTC)
    headers = (
        # Only checked addresses, single-line values and RFC 2047 words go in
        # here, so nothing from a delivery can start a header of its own.
        f"From: {sender}\r\n"
        f"{addressed}"
        f"{_header('Subject', subject)}"
        # "+0000", not formatdate()'s "GMT": RFC 5322 calls named zones obsolete.
        f"Date: {format_datetime(date)}\r\n"
        f"Message-ID: {message_id(key)}\r\n"
        # Auto-Submitted (RFC 3834) and the Exchange header stop vacation auto-replies.
        "Auto-Submitted: auto-generated\r\n"
        "X-Auto-Response-Suppress: All\r\n"
        f"{_header('X-Flytenotify-Delivery', single_line(key))}"
        "MIME-Version: 1.0\r\n"
    )
    if not html_body and delivery.message.envelope is not None and delivery.digest is None:
        # A user's inline email without an HTML template is plain text only.
        return b"".join(
            (
                f"{headers}"
                'Content-Type: text/plain; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {text[0]}\r\n\r\n".encode("ascii"),
                text[1],
            )
        )
    document = _body(_html_document(subject, html_body))
    boundary = _boundary(key, text, document)
    return b"".join(
        (
            f"{headers}"
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
            f"\r\n--{boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {text[0]}\r\n\r\n".encode("ascii"),
            text[1],
            (
                f"\r\n--{boundary}\r\n"
                'Content-Type: text/html; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {document[0]}\r\n\r\n"
            ).encode("ascii"),
            document[1],
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


def _addressed(delivery: Delivery) -> str:
    """The To (and Cc) header lines: the recipient, or an inline email's envelope.

    Bcc addresses go in the SMTP envelope only (:func:`envelope_recipients`):
    no header names them. Display names come from users' code: folded onto
    one line, then quoted or RFC 2047-encoded by ``formataddr``.
    """
    envelope = delivery.message.envelope
    if envelope is None or delivery.digest is not None:
        return f"To: {_checked_address(delivery.recipient)}\r\n"
    lines = ""
    for name, boxes in (("To", envelope.to), ("Cc", envelope.cc)):
        if boxes:
            shown = [
                formataddr((single_line(box.name), _checked_address(box.address)), "utf-8")
                for box in boxes
            ]
            lines += f"{name}: " + ",\r\n ".join(shown) + "\r\n"
    # RFC 5322 wants a destination header; a Bcc-only message says so, as mail clients do.
    return lines or "To: undisclosed-recipients:;\r\n"


def envelope_recipients(delivery: Delivery) -> list[str]:
    """Every address the message goes to (RCPT TO): the recipient, or To + Cc + Bcc."""
    envelope = delivery.message.envelope
    if envelope is None or delivery.digest is not None:
        return [_checked_address(delivery.recipient)]
    return list(dict.fromkeys(_checked_address(box.address) for box in envelope.everyone))


def _content(delivery: Delivery) -> tuple[str, str, str]:
    """Subject, text and HTML body: the rendered message's, or the digest's."""
    if delivery.digest is None:
        message = delivery.message
        return message.subject, message.text, message.html
    digest = delivery.digest
    return digest.title, digest_text(digest), digest_html(digest)


def _digest_where(digest: Digest) -> str:
    return f"All {digest.count}: {digest.link or digest.list_command} ({digest.id})"


def digest_text(digest: Digest) -> str:
    """Every execution a digest carries, one paragraph each."""
    lines = [f"{digest.title}.", ""]
    for line in digest_lines(digest):
        lines.append(f"- {line.execution} {line.phase}")
        if line.error:
            code = f"{line.error_code}: " if line.error_code else ""
            lines.append(f"  {code}{line.error}")
        if line.console_url:
            lines.append(f"  {line.console_url}")
    return "\n".join([*lines, "", _digest_where(digest)])


def digest_html(digest: Digest) -> str:
    """Every execution a digest carries, as a table; every value HTML-escaped."""
    cell = 'style="text-align:left;padding:2px 8px;border-bottom:1px solid #ddd"'
    rows = []
    for line in digest_lines(digest):
        name = html.escape(line.execution)
        if line.console_url.startswith(("https://", "http://")):
            name = f'<a href="{html.escape(line.console_url)}">{name}</a>'
        error = ": ".join(html.escape(part) for part in (line.error_code, line.error) if part)
        rows.append(
            f"<tr><td {cell}>{name}</td><td {cell}>{html.escape(line.phase)}</td>"
            f"<td {cell}>{error}</td></tr>"
        )
    where = html.escape(digest.list_command)
    if digest.link.startswith(("https://", "http://")):
        where = f'<a href="{html.escape(digest.link)}">the list in flytenotify</a>'
    return (
        f"<p>{html.escape(digest.title)}.</p>\n"
        f'<table style="border-collapse:collapse"><tr><th {cell}>Execution</th>'
        f"<th {cell}>Phase</th><th {cell}>Error</th></tr>\n"
        + "\n".join(rows)
        + f"\n</table>\n<p>All {digest.count}: {where} ({html.escape(digest.id)})</p>"
    )


def build_message(delivery: Delivery, sender: str, sent_at: float | None = None) -> EmailMessage:
    """:func:`encode_message` parsed back into an :class:`EmailMessage`, for inspection.

    Sending uses the bytes directly; this is for tests and tools that want to
    look at headers and parts.
    """
    raw = encode_message(delivery, sender, sent_at)
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)  # what policy.default's message factory makes
    return parsed


def _header(name: str, value: str) -> str:
    """``Name: value`` and its CRLF, folded at spaces; ``value`` must be single-line.

    Words that are not plain ASCII become RFC 2047 encoded words, runs of them
    together so the spaces between them survive (a decoder drops whitespace
    between two encoded words); plain words stay readable.
    """
    tokens: list[str] = []
    pending: list[str] = []  # a run of words that need encoding
    for word in value.split(" ") if value else ():
        if word.isascii() and "=?" not in word and len(word) <= _MAX_PLAIN_WORD:
            if pending:
                tokens += _encoded_words(" ".join(pending))
                pending = []
            tokens.append(word)
        else:
            pending.append(word)
    if pending:
        tokens += _encoded_words(" ".join(pending))
    line = f"{name}:"
    lines: list[str] = []
    for token in tokens:
        if len(line) + 1 + len(token) > _LINE and line != f"{name}:":
            lines.append(line)
            line = ""
        line = f"{line} {token}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 encoded words, each whole UTF-8 characters (RFC 2047 section 5)."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        data = char.encode("utf-8", "replace")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(_encoded_word(chunk))
            chunk.clear()
        chunk += data
    if chunk or not words:
        words.append(_encoded_word(chunk))
    return words


def _encoded_word(data: bytes | bytearray) -> str:
    return f"=?utf-8?b?{binascii.b2a_base64(data, newline=False).decode('ascii')}?="


def _body(text: str) -> tuple[str, bytes]:
    """A body part's Content-Transfer-Encoding and its 7-bit CRLF-terminated lines.

    The choice is the stdlib's: as it is when it is short-lined printable ASCII,
    otherwise quoted-printable, or base64 when that is shorter (mostly non-Latin text).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if _RAW_BODY.fullmatch(text):
        return "7bit", text.replace("\n", "\r\n").encode("ascii")
    data = text.replace("\n", "\r\n").encode("utf-8", "replace")
    # istext: CRLF stays a line break, and trailing spaces, "=", control
    # characters and a lone "." line are escaped; lines are soft-broken at 76.
    quoted = binascii.b2a_qp(data, istext=True)
    lines = -(-len(data) // _B64_LINE_BYTES)
    if len(quoted) <= -(-len(data) // 3) * 4 + 2 * lines:
        return "quoted-printable", quoted
    encoded = b"\r\n".join(
        binascii.b2a_base64(data[at : at + _B64_LINE_BYTES], newline=False)
        for at in range(0, len(data), _B64_LINE_BYTES)
    )
    return "base64", encoded + b"\r\n"


def _boundary(key: str, *parts: tuple[str, bytes]) -> str:
    # Derived from the key, so a message is the same bytes however often it is
    # built. "=_" never occurs in quoted-printable or base64 output; a 7-bit
    # body could hold the candidate (the key is no secret), so it is checked, as
    # the stdlib generator does, and the next candidate taken. A body of n bytes
    # holds at most n distinct candidates, so n + 1 tries always find one.
    limit = sum(len(body) for _, body in parts) + 1
    for attempt in range(limit):
        seed = f"{attempt}:{key}".encode("utf-8", "replace")
        boundary = f"=_{hashlib.sha256(seed).hexdigest()[:32]}"
        if not any(boundary.encode("ascii") in body for _, body in parts):
            return boundary
    raise AssertionError("unreachable: a body cannot hold every candidate boundary")


def _html_document(subject: str, body: str) -> str:
    # ``body`` is already escaped HTML from the renderer; only the title needs escaping.
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


# --- outcomes --------------------------------------------------------------------------------


def _by_code(code: int, reply: str) -> SendResult:
    """The outcome a server reply code stands for (RFC 5321 section 4.2.1)."""
    if 200 <= code < 300:
        return SendResult.delivered(reply)
    if 400 <= code < 500:
        return SendResult.transient(reply)
    if 500 <= code < 600:
        return SendResult.permanent(reply)
    # Not a valid SMTP code (aiosmtplib uses -1 for garbled replies): the link is suspect.
    return SendResult.transient(reply)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe(exc: BaseException) -> str:
    """A short human reason for a failure that came without an SMTP reply."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or cause}"
    for cause in causes:
        if isinstance(cause, OSError) and (reason := _os_reason(cause)):
            return reason
    if any(isinstance(cause, TimeoutError) for cause in causes):
        return f"timed out ({exc})" if str(exc) else "timed out"
    return str(exc) or type(exc).__name__


def _os_reason(exc: OSError) -> str | None:
    # asyncio words a refused connect as "Connect call failed (addr)"; the errno says it better.
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno)
    return exc.strerror  # e.g. resolver errors: "Name or service not known"


# --- connections -----------------------------------------------------------------------------


class _Failure(Exception):
    """A finished outcome raised out of the connection code, with how it ended."""

    def __init__(self, result: SendResult, *, stale: bool = False) -> None:
        super().__init__(result.reply)
        self.result = result
        # True when a reused connection turned out dead before anything was sent:
        # safe and right to try once more on a fresh connection.
        self.stale = stale


class _Slot:
    """The right to use one connection; holds it while one transaction runs."""

    def __init__(self, smtp: SMTP | None) -> None:
        self.smtp = smtp
        self.reused = smtp is not None
        self.reusable = False  # set only once a transaction ended cleanly

    def discard(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self.smtp = None
        self.reused = False
        self.reusable = False


class _Pool:
    """At most ``size`` open connections; idle ones are reused, newest first.

    Every open connection is either idle here or held by exactly one slot, and
    a new one is only opened when none is idle, so the total never exceeds
    ``size`` while the semaphore bounds the slots.
    """

    def __init__(self, size: int, idle_timeout: float) -> None:
        self._slots = asyncio.Semaphore(size)
        # Oldest first: given back in time order, reused from the newest end,
        # so the stale ones are always at the front.
        self._idle: collections.deque[tuple[SMTP, float]] = collections.deque()
        self._idle_timeout = idle_timeout
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[_Slot]:
        async with self._slots:
            slot = _Slot(self._take_idle())
            try:
                yield slot
            finally:
                self._give_back(slot)

    def _take_idle(self) -> SMTP | None:
        self._drop_stale()
        while self._idle:
            smtp, _ = self._idle.pop()
            if smtp.is_connected:  # the server may have hung up while it sat idle
                return smtp
            smtp.close()
        return None

    def _give_back(self, slot: _Slot) -> None:
        smtp = slot.smtp
        if smtp is None:
            return
        if slot.reusable and smtp.is_connected and not self._closed:
            self._idle.append((smtp, time.monotonic()))
            self._schedule_reaper()
        else:
            smtp.close()

    def _drop_stale(self) -> None:
        # From the front only: a scan of every idle connection on each take
        # was 5% of an email's CPU with hundreds of them open.
        deadline = time.monotonic() - self._idle_timeout
        while self._idle and self._idle[0][1] <= deadline:
            smtp, _ = self._idle.popleft()
            smtp.close()

    def _schedule_reaper(self) -> None:
        # Without traffic nobody calls _take_idle, so a timer closes idle connections.
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self._idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        self._drop_stale()
        if self._idle:
            self._schedule_reaper()

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, collections.deque()
        await asyncio.gather(*(_quit(smtp) for smtp, _ in idle))


async def _quit(smtp: SMTP) -> None:
    try:
        await smtp.quit(timeout=_QUIT_TIMEOUT)
    except (SMTPException, *_CONNECTION_ERRORS):
        pass  # we are leaving anyway
    finally:
        smtp.close()


# --- the channel -----------------------------------------------------------------------------


class EmailChannel:
    """Delivers email deliveries to one SMTP server (a relay or a provider)."""

    name = "email"

    def __init__(
        self,
        config: SmtpConfig,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        shared_pacing: SharedPacing | None = None,
    ) -> None:
        try:
            parse_address(config.sender)
            self._mail_from = b"FROM:" + _envelope(config.sender)
        except ValueError as exc:  # a configuration error: fail at startup, not per message
            raise ValueError(f"smtp.sender: {exc}") from exc
        self._config = config
        self._where = f"{config.host}:{config.port}"
        self._tls_context = _tls_context(config) if config.tls != "none" else None
        self._pool = _Pool(config.pool_size, idle_timeout)
        # The dispatcher keeps this channel's sends in flight within the pool.
        self.max_in_flight = config.pool_size
        self._local_hostname: str | None = None
        self._pacer = Pacer(_BUDGET_WAIT, shared=shared_pacing)

    def destination(self, delivery: Delivery) -> str:
        """The relay: every message goes through it, so its sends are limited together."""
        return self._where

    async def send(self, delivery: Delivery) -> SendResult:
        # The Date of the message, reported back as the attempt's start: the
        # ledger then holds all the message is made of (see encode_message).
        sent_at = time.time()
        try:
            payload = encode_message(delivery, self._config.sender, sent_at)
            rcpt_to = [b"TO:" + _envelope(address) for address in envelope_recipients(delivery)]
        except ValueError as exc:
            return SendResult.permanent(f"message not sent: {exc}")
        return dataclasses.replace(await self._paced(rcpt_to, payload), sent_at=sent_at)

    async def _paced(self, rcpt_to: list[bytes], payload: bytes) -> SendResult:
        if not self._config.max_per_minute:
            return await self._send(rcpt_to, payload)
        # The relay's budget, shared by every replica through the ledger.
        interval = 60.0 / self._config.max_per_minute
        try:
            return await self._pacer.run(
                f"smtp:{self._where}", interval, lambda: self._send(rcpt_to, payload)
            )
        except Busy as busy:
            reply = f"smtp.max_per_minute: next free slot in {busy.wait:.1f}s"
            return SendResult.transient(reply, retry_after=busy.wait)

    async def _send(self, rcpt_to: list[bytes], payload: bytes) -> SendResult:
        async with self._pool.slot() as slot:
            return await self._send_in(slot, rcpt_to, payload)

    async def close(self) -> None:
        await self._pool.close()

    async def check(self) -> str:
        """Connect, secure, log in and QUIT; a summary of what the server said.

        Raises :class:`EmailCheckError` with the reason when any step fails.
        """
        try:
            smtp, greeting = await self._open()
        except _Failure as exc:
            raise EmailCheckError(exc.result.reply) from exc
        try:
            summary = await self._summary(smtp, greeting)
        except (SMTPException, *_CONNECTION_ERRORS) as exc:
            raise EmailCheckError(f"EHLO to {self._where} failed: {describe(exc)}") from exc
        finally:
            await _quit(smtp)
        return summary

    async def _summary(self, smtp: SMTP, greeting: str) -> str:
        ehlo = smtp.last_ehlo_response or await smtp.ehlo()
        extensions = " ".join(sorted(name.upper() for name in smtp.esmtp_extensions))
        tls = self._config.tls if self._tls_context is not None else "no TLS"
        auth = f", logged in as {self._config.username}" if self._config.username else ""
        first_line = ehlo.message.splitlines()[0] if ehlo.message else ""
        return (
            f"{self._where}: {greeting}; EHLO {ehlo.code} {first_line} [{extensions}]; {tls}{auth}"
        )

    async def _send_in(self, slot: _Slot, rcpt_to: list[bytes], payload: bytes) -> SendResult:
        try:
            if slot.reused:
                try:
                    return await self._transact(slot, rcpt_to, payload)
                except _Failure as failure:
                    if not failure.stale:
                        raise
                    slot.discard()  # went away while idle: one fresh try, transparently
            slot.smtp, _ = await self._open()
            return await self._transact(slot, rcpt_to, payload)
        except _Failure as failure:
            slot.discard()
            return failure.result

    async def _open(self) -> tuple[SMTP, str]:
        """A connected, secured and logged-in session, and the server's greeting."""
        password = self._password()
        smtp = await self._client()
        stage = "connect to"
        try:
            greeting = await smtp.connect()
            if self._config.tls == "starttls":
                stage = "STARTTLS with"
                await smtp.starttls()
            if self._config.username is not None:
                stage = "AUTH with"
                await smtp.login(self._config.username, password)
            if smtp.is_ehlo_or_helo_needed:
                # _transact sends MAIL and RCPT with execute_command, which does not
                # greet the server first the way SMTP.mail() would.
                stage = "EHLO to"
                await _greet(smtp)
        except SMTPResponseException as exc:
            smtp.close()
            reply = f"{stage} {self._where} refused: {exc.code} {exc.message}"
            raise _Failure(_by_code(exc.code, reply)) from exc
        except (SMTPException, *_CONNECTION_ERRORS) as exc:
            smtp.close()
            reply = f"{stage} {self._where} failed: {describe(exc)}"
            raise _Failure(SendResult.transient(reply)) from exc
        except BaseException:  # cancelled: do not leak the half-open connection
            smtp.close()
            raise
        return smtp, f"{greeting.code} {greeting.message}"

    def _password(self) -> str:
        # Read for every new connection, so a rotated password file is picked up.
        if self._config.username is None:
            return ""
        try:
            return self._config.resolved_password() or ""
        except OSError as exc:
            where = self._config.password_file
            reply = f"cannot read smtp.password_file {where}: {describe(exc)}"
            raise _Failure(SendResult.transient(reply)) from exc

    async def _client(self) -> SMTP:
        if self._local_hostname is None:
            # aiosmtplib would otherwise resolve our FQDN again for every connection.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        config = self._config
        return SMTP(
            hostname=config.host,
            port=config.port,
            timeout=config.timeout,
            local_hostname=self._local_hostname,
            use_tls=config.tls == "implicit",
            start_tls=False,  # done explicitly in _open, so a missing STARTTLS is an error
            tls_context=self._tls_context,
        )

    async def _transact(self, slot: _Slot, rcpt_to: list[bytes], payload: bytes) -> SendResult:
        """MAIL, RCPT, DATA on the slot's connection; the reply decides the outcome.

        A message to several addresses (an inline email's To + Cc + Bcc) goes to
        those the server accepts; those it refuses are named in the reply. Sent
        again, it would reach the others twice: only all refused is a failure.
        """
        smtp = slot.smtp
        assert smtp is not None
        stage = "MAIL"
        refused: list[str] = []
        try:
            # SMTP.mail() and .rcpt() would parse and quote both addresses again for
            # every message (~20 us of CPU); the quoted forms are made once and cached.
            reply = await smtp.execute_command(b"MAIL", self._mail_from)
            if reply.code != SMTPStatus.completed:
                raise SMTPResponseException(reply.code, reply.message)
            stage = "RCPT"
            for address in rcpt_to:
                reply = await smtp.execute_command(b"RCPT", address)
                if reply.code in (SMTPStatus.completed, SMTPStatus.will_forward):
                    continue
                if len(refused) == len(rcpt_to) - 1:  # the last one left: nobody to send to
                    raise SMTPResponseException(reply.code, reply.message)
                refused.append(f"{address[3:].decode('ascii')} ({reply.code} {reply.message})")
            stage = "DATA"
            reply = await smtp.data(payload)
        except SMTPResponseException as exc:
            return await self._refused(slot, stage, exc)
        except (SMTPException, *_CONNECTION_ERRORS) as exc:
            reason = f"{stage} on {self._where} failed: {describe(exc)}"
            # A dead reused connection shows at MAIL, before any of the message was sent.
            stale = slot.reused and stage == "MAIL" and isinstance(exc, ConnectionError)
            raise _Failure(SendResult.transient(reason), stale=stale) from exc
        slot.reusable = True
        not_to = f"; refused by the server: {', '.join(refused)}" if refused else ""
        return SendResult.delivered(f"{reply.code} {reply.message}{not_to}")

    async def _refused(self, slot: _Slot, stage: str, exc: SMTPResponseException) -> SendResult:
        reply = f"{stage} refused: {exc.code} {exc.message}"
        if exc.code == 421 and slot.reused and stage == "MAIL":
            # 421: the server is closing this old session; nothing was sent yet.
            raise _Failure(SendResult.transient(reply), stale=True)
        slot.reusable = await _reset(slot)
        return _by_code(exc.code, reply)


async def _greet(smtp: SMTP) -> None:
    """EHLO, or HELO for a server that refuses EHLO: what SMTP.mail() does on first use."""
    try:
        await smtp.ehlo()
    except SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


@functools.lru_cache(maxsize=4096)
def _envelope(address: str) -> bytes:
    # aiosmtplib's own quoting (and its refusal of what cannot go on a command
    # line), done once per address rather than once per message.
    return quote_address(address).encode("ascii")


async def _reset(slot: _Slot) -> bool:
    """RSET after a refusal, so the next transaction starts clean; False if that failed."""
    smtp = slot.smtp
    if smtp is None or not smtp.is_connected:
        return False
    try:
        await smtp.rset()
    except (SMTPException, *_CONNECTION_ERRORS):
        return False
    return True


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    """The client TLS context: the system's CAs plus ``ca_file``, verification on by default."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    if not config.verify_certificates:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# --- what the registry knows ----------------------------------------------------------------


def _malformed(recipient: str) -> str | None:
    # Whatever has an "@" is meant as an email address (Slack looks people up
    # by theirs, PagerDuty integrations have one): it must be exactly one.
    return address_problem(recipient) if "@" in recipient else None


def _takes(kind: str, recipient: str, config: SmtpConfig | None) -> str | None:
    # Any address, whatever its notification kind: FlyteAdmin emails Slack
    # channel addresses and PagerDuty email integrations too.
    if "@" not in recipient:
        return None
    problem = address_problem(recipient)
    if problem is not None:
        raise Unreachable(f"{kind} recipient {recipient!r} is not one address: {problem}")
    if config is None:
        raise Unreachable(
            f"{kind} recipient {recipient!r} needs email, and no [smtp] is configured"
        )
    return recipient


def _allow_entry_problem(entry: str) -> str | None:
    local, at, domain = entry.rpartition("@")
    if (at and not local) or "@" in local or "." not in domain:
        return "must be a domain (example.com) or an address (ops@example.com)"
    return None


def _build(config: SmtpConfig, pacing: SharedPacing | None) -> EmailChannel:
    return EmailChannel(config, shared_pacing=pacing)


def _preview(delivery: Delivery) -> str:
    return _content(delivery)[1]


CHANNEL: ChannelSpec[SmtpConfig] = ChannelSpec(
    name="email",
    media=frozenset({"html"}),
    section="smtp",
    config=SmtpConfig,
    build=_build,
    takes=_takes,
    malformed=_malformed,
    preview=_preview,
    summary=lambda config: f"smtp {config.host}:{config.port}, tls={config.tls}",
    kinds=frozenset({"email"}),
    test_kind="email",
    route_order=90,  # the fallback: asked after every channel with its own API
    allow_entry_problem=_allow_entry_problem,
    digests=always,
)
