"""The bytes of an email: headers, encoded words, bodies, the boundary, digests' text and HTML.

:func:`encode_message` turns a delivery into the message as it goes on the
wire: a standard ``multipart/alternative`` (text + HTML), or plain text alone
for a user's inline email without an HTML template. It assembles the bytes
from a few C-implemented pieces (binascii's quoted-printable and base64,
hashlib) instead of with EmailMessage: the policy-driven header registry and
generator cost ~1 ms of CPU per message, most of what the channel spent on a
delivery. What goes on the wire is what EmailMessage with email.policy.SMTP
would write (7-bit, CRLF, folded headers, RFC 2047 words for non-ASCII);
:func:`build_message` parses it back with email.policy.default, for tests and
the console.

The message is a pure function of the delivery, the sender and the time it is
sent: its Message-ID and MIME boundary come from the idempotency key, so a
message retried after a crash carries the same id (the receiving side can drop
the duplicate) and the console shows the very bytes the relay was given. No
value from a delivery can add a header: CR/LF in a subject is folded to spaces
and a recipient that is not one plain address is refused (:func:`parse_address`).

A later message of a conversation (the same execution's, a recovery's) names
its first one's Message-ID in ``In-Reply-To`` and ``References``, so mail
clients show them as one thread (:func:`follows`).
"""

from __future__ import annotations

import binascii
import email.policy
import functools
import hashlib
import html
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr

from flytenotify.channels.base import digest_lines
from flytenotify.domain import Delivery, Digest

_MESSAGE_ID_DOMAIN = "flytenotify"
# Control characters (CR, LF, tab, NUL...): never in an address or a header value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

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


def encode_message(
    delivery: Delivery,
    sender: str,
    sent_at: float | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The message for ``delivery`` as it goes on the wire: headers, a text and an HTML part.

    A pure function of the delivery, the sender and ``sent_at`` (Unix seconds,
    the ``Date``; now when not given): the Message-ID and the MIME boundary
    come from the idempotency key (a digest's id), so the console shows the
    very bytes the relay was given, and a resend after a crash is the same message.

    ``links`` are the signed ``(label, URL)`` answers an email to one person carries
    (flytenotify.chat.LinkSigner), at the end of both bodies; the console builds
    the message again without them (they are the recipient's alone).

    Raises ``ValueError`` when a recipient or the sender is not one plain
    address; the subject is made single-line rather than refused, because an
    alert must still go out when an error message in it has a newline.
    """
    addressed = _addressed(delivery)
    sender = _checked_address(sender)
    subject, text_body, html_body = message_content(delivery, links)
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
        f"{_threading(delivery)}"
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


# A Message-ID as this module writes them (and RFC 5322's msg-id, simply): one
# line, no spaces or brackets inside.
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


def follows(delivery: Delivery) -> str:
    """The Message-ID of the first message of ``delivery``'s conversation when it
    follows one (handed to the channel as ``thread``, or recorded in the ledger,
    for the message built again as it was sent), else empty."""
    root = delivery.thread.root_id if delivery.thread is not None else delivery.in_reply_to
    return root if _MSG_ID.fullmatch(root) else ""


def _threading(delivery: Delivery) -> str:
    """In-Reply-To and References (RFC 5322 section 3.6.4): mail clients show the
    message in the thread of the conversation's first one."""
    root = follows(delivery)
    return f"In-Reply-To: {root}\r\nReferences: {root}\r\n" if root else ""


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


def message_content(
    delivery: Delivery, links: Sequence[tuple[str, str]] = ()
) -> tuple[str, str, str]:
    """Subject, text and HTML body: the rendered message's (with ``links`` after it),
    or the digest's."""
    if delivery.digest is None:
        message = delivery.message
        if not links:
            return message.subject, message.text, message.html
        text = f"{message.text.rstrip()}\n\n{_links_text(links)}\n"
        return message.subject, text, f"{message.html}\n{_links_html(links)}"
    digest = delivery.digest
    return digest.title, digest_text(digest), digest_html(digest)


_LINKS_SAY = "Answer from here (each link asks you to confirm, and works once):"


def _links_text(links: Sequence[tuple[str, str]]) -> str:
    return "\n".join([_LINKS_SAY, *(f"  {label}: {url}" for label, url in links)])


def _links_html(links: Sequence[tuple[str, str]]) -> str:
    shown = " · ".join(
        f'<a href="{html.escape(url)}">{html.escape(label)}</a>' for label, url in links
    )
    return f"<p>{html.escape(_LINKS_SAY)} {shown}</p>"


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
