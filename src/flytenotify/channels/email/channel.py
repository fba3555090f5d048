"""The email channel: its ``[smtp]`` section, its sends, and what the server's replies mean.

:class:`EmailChannel` builds each delivery's message (:mod:`.mime`), waits
for the relay's budget (``max_per_minute``, shared by every replica), and
sends it on a session from its pool (:mod:`.pool`): an idle one, or one it
opens (connect, STARTTLS, AUTH, EHLO); a reused session found dead before
anything was sent is replaced once, transparently. The transaction is MAIL,
RCPT for each address, DATA. The message's Date is reported back as the
attempt's start, so the ledger holds all the message is made of.

The server's reply code decides the outcome: 2xx delivered, 4xx transient,
5xx permanent. Anything without a reply (refused connection, timeout, lost
connection, failed TLS handshake) is transient, with a reply text that says
what happened. :meth:`EmailChannel.send` never raises for such faults.

The module ends with what the registry knows of email (:data:`CHANNEL`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import logging
import os
import socket
import ssl
import time
from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal

from aiosmtplib import SMTP, SMTPException, SMTPResponseException, SMTPStatus
from aiosmtplib.email import quote_address
from pydantic import Field, SecretStr, field_validator

from flytenotify.channels._pacing import Busy, Pacer
from flytenotify.channels.base import (
    ChannelSpec,
    Outcome,
    SendResult,
    SharedPacing,
    Unreachable,
    always,
)
from flytenotify.channels.email.mime import (
    address_problem,
    encode_message,
    envelope_recipients,
    follows,
    message_content,
    message_id,
    parse_address,
)
from flytenotify.channels.email.pool import (
    CONNECTION_ERRORS,
    IDLE_TIMEOUT,
    Pool,
    Slot,
    greet,
    quit_session,
    reset_session,
)
from flytenotify.chat import LinkSigner
from flytenotify.domain import Delivery
from flytenotify.sections import Section, read_secret

log = logging.getLogger(__name__)


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
    # Seconds for connecting and each step of a session's set-up, and for a
    # message's whole transaction (MAIL to the reply after its data).
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


# A send waits this long at most for the relay's budget (max_per_minute), then
# returns transient with the wait, for the engine to schedule.
_BUDGET_WAIT = 10.0


class EmailCheckError(Exception):
    """``check()`` could not connect, secure or log in; the message says why."""


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


class _Expiry:
    """Closes ``smtp`` after ``seconds`` unless cancelled first."""

    def __init__(self, smtp: SMTP, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._smtp = smtp
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._smtp.close()

    def cancel(self) -> None:
        self._handle.cancel()


class _Failure(Exception):
    """A finished outcome raised out of the connection code, with how it ended."""

    def __init__(self, result: SendResult, *, stale: bool = False) -> None:
        super().__init__(result.reply)
        self.result = result
        # True when a reused connection turned out dead before anything was sent:
        # safe and right to try once more on a fresh connection.
        self.stale = stale


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
        self._pool = Pool(config.pool_size, idle_timeout)
        # The dispatcher keeps this channel's sends in flight within the pool.
        self.max_in_flight = config.pool_size
        self._local_hostname: str | None = None
        self._pacer = Pacer(_BUDGET_WAIT, shared=shared_pacing)
        self._links: LinkSigner | None = None  # set by offer_answers

    def destination(self, delivery: Delivery) -> str:
        """The relay: every message goes through it, so its sends are limited together."""
        return self._where

    def offer_answers(self, settings: Any) -> None:
        """Emails to one person carry signed answer links from now on, when
        ``[actions] link_secret`` and ``[templates] public_url`` say how."""
        self._links = LinkSigner.of(settings, "email")

    def links(self, delivery: Delivery) -> list[tuple[str, str]]:
        """The signed ``(label, URL)`` answers the email for ``delivery`` carries."""
        if self._links is None or delivery.digest is not None:
            return []
        if delivery.message.envelope is not None:
            return []  # a user's email to several people: nobody to vouch for
        return self._links.links(delivery, "email")

    async def send(self, delivery: Delivery) -> SendResult:
        # The Date of the message, reported back as the attempt's start: the
        # ledger then holds all the message is made of (see encode_message).
        sent_at = time.time()
        try:
            links = self.links(delivery)
            payload = encode_message(delivery, self._config.sender, sent_at, links)
            rcpt_to = [b"TO:" + _envelope(address) for address in envelope_recipients(delivery)]
        except ValueError as exc:
            return SendResult.permanent(f"message not sent: {exc}")
        result = await self._paced(rcpt_to, payload)
        if result.outcome is not Outcome.DELIVERED:
            return dataclasses.replace(result, sent_at=sent_at)
        digest = delivery.digest
        key = digest.id if digest is not None else delivery.idempotency_key
        return dataclasses.replace(
            result,
            sent_at=sent_at,
            provider_message_id=message_id(key),
            in_reply_to=follows(delivery),
        )

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
        except (SMTPException, *CONNECTION_ERRORS) as exc:
            raise EmailCheckError(f"EHLO to {self._where} failed: {describe(exc)}") from exc
        finally:
            await quit_session(smtp)
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

    async def _send_in(self, slot: Slot, rcpt_to: list[bytes], payload: bytes) -> SendResult:
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
                await greet(smtp)
        except SMTPResponseException as exc:
            smtp.close()
            reply = f"{stage} {self._where} refused: {exc.code} {exc.message}"
            raise _Failure(_by_code(exc.code, reply)) from exc
        except (SMTPException, *CONNECTION_ERRORS) as exc:
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

    async def _transact(self, slot: Slot, rcpt_to: list[bytes], payload: bytes) -> SendResult:
        """MAIL, RCPT, DATA on the slot's connection; the reply decides the outcome.

        A message to several addresses (an inline email's To + Cc + Bcc) goes to
        those the server accepts; those it refuses are named in the reply. Sent
        again, it would reach the others twice: only all refused is a failure.
        """
        smtp = slot.smtp
        assert smtp is not None
        stage = "MAIL"
        refused: list[str] = []
        # One timer for the transaction, not aiosmtplib's own for each reply: its
        # asyncio.wait_for per command was a twentieth of an email's CPU. When the
        # relay has not answered within smtp.timeout, the session is closed, which
        # ends the wait for its reply.
        timer = _Expiry(smtp, self._config.timeout)
        try:
            # SMTP.mail() and .rcpt() would parse and quote both addresses again for
            # every message (~20 us of CPU); the quoted forms are made once and cached.
            reply = await smtp.execute_command(b"MAIL", self._mail_from, timeout=None)
            if reply.code != SMTPStatus.completed:
                raise SMTPResponseException(reply.code, reply.message)
            stage = "RCPT"
            for address in rcpt_to:
                reply = await smtp.execute_command(b"RCPT", address, timeout=None)
                if reply.code in (SMTPStatus.completed, SMTPStatus.will_forward):
                    continue
                if len(refused) == len(rcpt_to) - 1:  # the last one left: nobody to send to
                    raise SMTPResponseException(reply.code, reply.message)
                refused.append(f"{address[3:].decode('ascii')} ({reply.code} {reply.message})")
            stage = "DATA"
            reply = await smtp.data(payload, timeout=None)
        except SMTPResponseException as exc:
            return await self._refused(slot, stage, exc)
        except (SMTPException, *CONNECTION_ERRORS) as exc:
            why = f"timed out after {timer.seconds:g} s" if timer.expired else describe(exc)
            reason = f"{stage} on {self._where} failed: {why}"
            # A dead reused connection shows at MAIL, before any of the message was sent.
            stale = slot.reused and stage == "MAIL" and isinstance(exc, ConnectionError)
            raise _Failure(SendResult.transient(reason), stale=stale and not timer.expired) from exc
        finally:
            timer.cancel()
        slot.reusable = True
        not_to = f"; refused by the server: {', '.join(refused)}" if refused else ""
        return SendResult.delivered(f"{reply.code} {reply.message}{not_to}")

    async def _refused(self, slot: Slot, stage: str, exc: SMTPResponseException) -> SendResult:
        reply = f"{stage} refused: {exc.code} {exc.message}"
        if exc.code == 421 and slot.reused and stage == "MAIL":
            # 421: the server is closing this old session; nothing was sent yet.
            raise _Failure(SendResult.transient(reply), stale=True)
        slot.reusable = await reset_session(slot)
        return _by_code(exc.code, reply)


@functools.lru_cache(maxsize=4096)
def _envelope(address: str) -> bytes:
    # aiosmtplib's own quoting (and its refusal of what cannot go on a command
    # line), done once per address rather than once per message.
    return quote_address(address).encode("ascii")


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
    return message_content(delivery)[1]


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
    threads=True,
    answers=True,
)
