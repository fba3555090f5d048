"""The email channel against real SMTP servers on 127.0.0.1 (tests/servers/smtp.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import email.utils
import re
import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flytenotify.channels.base import Channel, Outcome, SendResult
from flytenotify.channels.email import (
    EmailChannel,
    EmailCheckError,
    build_message,
    encode_message,
    message_id,
    single_line,
)
from flytenotify.config import SmtpConfig
from flytenotify.domain import Delivery, DeliveryStatus, ExecutionId, RenderedMessage
from tests.helpers import CONSOLE_BASE, rendered_delivery
from tests.servers.smtp import SmtpServer, free_port, smtp_servers_fixture  # noqa: F401

Servers = Callable[..., SmtpServer]

SUBJECT = "Workflow ⚠ échoué: proj/dev/abc123"
TEXT = "Execution proj/dev/abc123 failed.\nError: boom ✗\n"
HTML = "<p>Execution <b>proj/dev/abc123</b> failed.</p>\n<pre>boom &lt;✗&gt;</pre>"


def make_delivery(
    recipient: str = "alice@example.com",
    *,
    key: str | None = None,
    subject: str = SUBJECT,
    number: int = 1,
) -> Delivery:
    return Delivery(
        id=number,
        idempotency_key=key or f"proj/dev/abc123:FAILED:0:email:{recipient}:{number}",
        execution_id=ExecutionId("proj", "dev", "abc123"),
        phase=5,
        notification_index=0,
        kind="email",
        channel="email",
        recipient=recipient,
        message=RenderedMessage(subject=subject, text=TEXT, html=HTML, slack_text=TEXT),
        status=DeliveryStatus.PENDING,
        attempts=0,
        created_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )


async def send_one(server: SmtpServer, delivery: Delivery, **config: object) -> SendResult:
    channel = EmailChannel(server.smtp_config(**config))
    try:
        return await channel.send(delivery)
    finally:
        await channel.close()


# --- the message -----------------------------------------------------------------------------


async def test_plain_delivery_is_a_proper_mime_message() -> None:
    delivery = make_delivery()
    async with SmtpServer() as server:
        result = await send_one(server, delivery, sender="flyte@example.org")
        [received] = await server.wait_for_messages(1)

    assert result.outcome is Outcome.DELIVERED
    assert result.reply.startswith("250 ")
    assert received.mail_from == "flyte@example.org"
    assert received.rcpt_tos == ("alice@example.com",)
    msg = received.message
    assert msg["From"] == "flyte@example.org"
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == SUBJECT  # decoded back from RFC 2047
    assert b"=?utf-8?" in received.raw.split(b"\r\n\r\n")[0]  # ...and encoded on the wire
    assert received.raw.isascii()  # 7-bit clean: no 8BITMIME needed
    assert msg["MIME-Version"] == "1.0"
    assert msg["Message-ID"] == message_id(delivery.idempotency_key)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Flytenotify-Delivery"] == delivery.idempotency_key
    sent_at = email.utils.parsedate_to_datetime(msg["Date"])
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 60
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().replace("\r\n", "\n") == TEXT  # CRLF is the wire's line end
    html_document = html.get_content().replace("\r\n", "\n")
    assert HTML in html_document
    assert "<title>Workflow ⚠ échoué: proj/dev/abc123</title>" in html_document


async def test_the_html_part_links_to_the_console() -> None:
    delivery = rendered_delivery("email", "email", "alice@example.com")  # the default body
    async with SmtpServer() as server:
        result = await send_one(server, delivery)
        [received] = await server.wait_for_messages(1)
    assert result.outcome is Outcome.DELIVERED
    html = received.message.get_body(("html",))
    assert html is not None
    url = f"{CONSOLE_BASE}/projects/proj/domains/dev/executions/e1"
    assert f'Details: <a href="{url}">{url}</a>' in html.get_content()
    text = received.message.get_body(("plain",))
    assert text is not None
    assert f"Details: {url}" in text.get_content()


def test_message_id_depends_only_on_the_idempotency_key() -> None:
    first = build_message(make_delivery(key="k-1", subject="a"), "f@x.org")
    again = build_message(make_delivery(key="k-1", subject="b"), "f@x.org")
    other = build_message(make_delivery(key="k-2"), "f@x.org")
    assert first["Message-ID"] == again["Message-ID"] == message_id("k-1")
    assert other["Message-ID"] != first["Message-ID"]
    assert first["Message-ID"].endswith("@flytenotify>")


async def test_a_retried_delivery_keeps_its_message_id() -> None:
    delivery = make_delivery()
    async with SmtpServer() as server:
        await send_one(server, delivery)
        await send_one(server, delivery)
        first, second = await server.wait_for_messages(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]


async def test_crlf_in_the_subject_cannot_add_headers() -> None:
    delivery = make_delivery(subject="failed\r\nBcc: mallory@evil.test\r\nX-Evil: 1")
    async with SmtpServer() as server:
        result = await send_one(server, delivery)
        [received] = await server.wait_for_messages(1)
    assert result.outcome is Outcome.DELIVERED
    assert received.rcpt_tos == ("alice@example.com",)
    assert received.message["Bcc"] is None
    assert received.message["X-Evil"] is None
    assert received.message["Subject"] == "failed Bcc: mallory@evil.test X-Evil: 1"


@pytest.mark.parametrize(
    "recipient",
    [
        "alice@example.com\r\nBcc: mallory@evil.test",
        "alice@example.com\nmallory@evil.test",
        "Alice <alice@example.com>",
        "alice@example.com, mallory@evil.test",
        "not-an-address",
    ],
)
async def test_a_recipient_that_is_not_one_address_is_refused(recipient: str) -> None:
    async with SmtpServer() as server:
        result = await send_one(server, make_delivery(recipient))
        assert server.sessions == 0  # refused before connecting
    assert result.outcome is Outcome.PERMANENT
    assert "message not sent" in result.reply


def test_a_bad_sender_is_a_configuration_error() -> None:
    # The configuration refuses it (tests/test_config.py); the channel checks
    # again for a configuration built without validation.
    config = SmtpServer().smtp_config().model_copy(update={"sender": "x@y.org\r\nBcc: z@y.org"})
    with pytest.raises(ValueError, match=r"^smtp\.sender: address contains control"):
        EmailChannel(config)


def test_the_channel_implements_the_protocol() -> None:
    channel = EmailChannel(SmtpServer().smtp_config())
    assert isinstance(channel, Channel)
    assert channel.name == "email"


# --- TLS and AUTH ----------------------------------------------------------------------------


async def test_starttls_with_verified_certificate() -> None:
    async with SmtpServer(tls="starttls") as server:
        result = await send_one(server, make_delivery())
        [received] = await server.wait_for_messages(1)
        assert server.sessions == 1  # the TLS upgrade is the same connection
    assert result.outcome is Outcome.DELIVERED
    assert received.tls


async def test_implicit_tls() -> None:
    async with SmtpServer(tls="implicit") as server:
        result = await send_one(server, make_delivery())
        [received] = await server.wait_for_messages(1)
    assert result.outcome is Outcome.DELIVERED
    assert received.tls


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_an_untrusted_certificate_is_transient_with_a_tls_reason(tls: str) -> None:
    async with SmtpServer(tls=tls) as server:  # type: ignore[arg-type]
        result = await send_one(server, make_delivery(), ca_file=None)  # system CAs only
        assert server.messages == []
    assert result.outcome is Outcome.TRANSIENT
    assert "TLS certificate verification failed" in result.reply
    assert f"127.0.0.1:{server.port}" in result.reply


async def test_verification_can_be_switched_off() -> None:
    async with SmtpServer(tls="starttls") as server:
        result = await send_one(server, make_delivery(), ca_file=None, verify_certificates=False)
    assert result.outcome is Outcome.DELIVERED


async def test_auth_success(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")  # as written by `echo`: the newline is not part of it
    async with SmtpServer(tls="starttls", auth=("bot", "s3cret")) as server:
        result = await send_one(server, make_delivery(), password=None, password_file=secret)
        [received] = await server.wait_for_messages(1)
    assert result.outcome is Outcome.DELIVERED
    assert received.login == "bot"


async def test_an_unreadable_password_file_is_transient(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    async with SmtpServer(tls="starttls", auth=("bot", "s3cret")) as server:
        result = await send_one(server, make_delivery(), password=None, password_file=missing)
    assert result.outcome is Outcome.TRANSIENT
    assert result.reply == f"cannot read smtp.password_file {missing}: No such file or directory"


async def test_auth_failure_is_permanent() -> None:
    async with SmtpServer(tls="starttls", auth=("bot", "s3cret")) as server:
        result = await send_one(server, make_delivery(), password="wrong")
        assert server.messages == []
        assert ("bot", False) in server.logins
    assert result.outcome is Outcome.PERMANENT
    assert result.reply.startswith(f"AUTH with 127.0.0.1:{server.port} refused: 535")


async def test_auth_over_implicit_tls() -> None:
    async with SmtpServer(tls="implicit", auth=("bot", "s3cret")) as server:
        result = await send_one(server, make_delivery())
        [received] = await server.wait_for_messages(1)
    assert result.outcome is Outcome.DELIVERED
    assert received.login == "bot"


# --- replies and outcomes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply", "outcome"),
    [
        ("MAIL", "451 4.3.0 try again later", Outcome.TRANSIENT),
        ("MAIL", "553 5.7.1 sender not allowed", Outcome.PERMANENT),
        ("RCPT", "450 4.2.1 mailbox busy", Outcome.TRANSIENT),
        ("RCPT", "550 5.1.1 no such user here", Outcome.PERMANENT),
        ("DATA", "452 4.3.1 insufficient storage", Outcome.TRANSIENT),
        ("DATA", "554 5.7.1 message looks like spam", Outcome.PERMANENT),
    ],
)
async def test_the_reply_code_decides(command: str, reply: str, outcome: Outcome) -> None:
    async with SmtpServer() as server:
        server.script(command, reply)  # type: ignore[arg-type]
        result = await send_one(server, make_delivery())
        assert server.messages == []
    assert result.outcome is outcome
    assert reply in result.reply  # the server's words, kept for the audit trail
    assert command in result.reply


async def test_a_busy_mailbox_is_delivered_once_the_server_accepts() -> None:
    async with SmtpServer() as server:
        rule = server.script("RCPT", "450 4.2.1 busy", address="alice@example.com", times=2)
        channel = EmailChannel(server.smtp_config())
        outcomes = [(await channel.send(make_delivery())).outcome for _ in range(3)]
        await channel.close()
        assert rule.used == 2
        assert len(server.messages) == 1
    assert outcomes == [Outcome.TRANSIENT, Outcome.TRANSIENT, Outcome.DELIVERED]


async def test_refused_and_accepted_recipients_on_one_connection() -> None:
    async with SmtpServer() as server:
        server.script("RCPT", "550 5.1.1 unknown user", address="ghost@example.com")
        channel = EmailChannel(server.smtp_config(pool_size=1))
        ghost = await channel.send(make_delivery("ghost@example.com"))
        alice = await channel.send(make_delivery("alice@example.com"))
        await channel.close()
        [received] = await server.wait_for_messages(1)
        commands = [command for _, command in server.commands]
        assert server.sessions == 1
    assert ghost.outcome is Outcome.PERMANENT
    assert "550 5.1.1 unknown user" in ghost.reply
    assert alice.outcome is Outcome.DELIVERED
    assert received.rcpt_tos == ("alice@example.com",)
    # The refused transaction was reset before the connection was used again.
    assert commands[:4] == [
        "MAIL flytenotify@localhost",
        "RCPT ghost@example.com",
        "RSET",
        "MAIL flytenotify@localhost",
    ]


async def test_concurrent_deliveries_share_a_few_connections() -> None:
    async with SmtpServer() as server:
        server.script("RCPT", "550 5.1.1 unknown user", address="ghost@example.com")
        channel = EmailChannel(server.smtp_config(pool_size=3))
        deliveries = [make_delivery(f"user{i}@example.com", number=i) for i in range(20)]
        deliveries[7] = make_delivery("ghost@example.com", number=7)
        results = await asyncio.gather(*(channel.send(d) for d in deliveries))
        await channel.close()
        received = await server.wait_for_messages(19)
        sessions = server.sessions
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.DELIVERED) == 19
    assert outcomes[7] is Outcome.PERMANENT
    assert sorted(m.recipient for m in received) == sorted(
        d.recipient for d in deliveries if d.recipient != "ghost@example.com"
    )
    assert 1 <= sessions <= 3 < len(received)


async def test_sequential_deliveries_reuse_one_connection() -> None:
    async with SmtpServer(tls="starttls", auth=("bot", "s3cret")) as server:
        channel = EmailChannel(server.smtp_config())
        for i in range(20):
            assert (await channel.send(make_delivery(number=i))).outcome is Outcome.DELIVERED
        await channel.close()
        assert len(server.messages) == 20
        assert server.sessions == 1
        assert server.logins == [("bot", True)]
        assert server.commands[-1] == (1, "QUIT")  # close() says goodbye
        await server.wait_for_open_sessions(0, within=2.0)


async def test_a_connection_the_server_dropped_is_replaced_transparently() -> None:
    async with SmtpServer(idle_timeout=0.2) as server:
        channel = EmailChannel(server.smtp_config())
        first = await channel.send(make_delivery(number=1))
        await asyncio.sleep(0.5)  # the server hangs up on the idle connection
        second = await channel.send(make_delivery(number=2))
        await channel.close()
        assert server.sessions == 2
    assert first.outcome is second.outcome is Outcome.DELIVERED


async def test_a_connection_lost_mid_transaction_is_transient() -> None:
    async with SmtpServer() as server:
        server.script("RCPT", disconnect=True, times=1)
        channel = EmailChannel(server.smtp_config())
        lost = await channel.send(make_delivery(number=1))
        after = await channel.send(make_delivery(number=2))
        await channel.close()
    assert lost.outcome is Outcome.TRANSIENT
    # aiosmtplib words it "Connection lost" or "Unexpected EOF received", by timing.
    assert re.fullmatch(rf"RCPT on 127\.0\.0\.1:{server.port} failed: .*(lost|EOF).*", lost.reply)
    assert after.outcome is Outcome.DELIVERED


async def test_a_reused_connection_dropped_at_mail_is_retried_on_a_fresh_one() -> None:
    async with SmtpServer() as server:
        channel = EmailChannel(server.smtp_config())
        assert (await channel.send(make_delivery(number=1))).outcome is Outcome.DELIVERED
        server.script("MAIL", disconnect=True, times=1)
        result = await channel.send(make_delivery(number=2))
        await channel.close()
        assert server.sessions == 2
        assert len(server.messages) == 2
    assert result.outcome is Outcome.DELIVERED


async def test_a_reused_connection_closing_with_421_is_retried_on_a_fresh_one() -> None:
    async with SmtpServer() as server:
        channel = EmailChannel(server.smtp_config())
        await channel.send(make_delivery(number=1))
        server.script("MAIL", "421 4.4.2 smtp.test closing idle session", times=1)
        result = await channel.send(make_delivery(number=2))
        await channel.close()
        assert server.sessions == 2
    assert result.outcome is Outcome.DELIVERED


async def test_421_on_a_fresh_connection_is_transient() -> None:
    async with SmtpServer() as server:
        server.script("MAIL", "421 4.3.2 system shutting down", times=1)
        result = await send_one(server, make_delivery())
    assert result.outcome is Outcome.TRANSIENT
    assert result.reply == "MAIL refused: 421 4.3.2 system shutting down"


async def test_idle_connections_are_closed_by_the_channel() -> None:
    async with SmtpServer() as server:
        channel = EmailChannel(server.smtp_config(), idle_timeout=0.1)
        await channel.send(make_delivery(number=1))
        assert server.open_sessions == 1
        await server.wait_for_open_sessions(0, within=2.0)  # no traffic needed to close it
        await channel.send(make_delivery(number=2))
        await channel.close()
        await server.wait_for_open_sessions(0, within=2.0)
        assert server.sessions == 2


async def test_only_connections_idle_too_long_are_closed() -> None:
    async with SmtpServer() as server:
        # Margins of a second either side, for a slow machine.
        channel = EmailChannel(server.smtp_config(), idle_timeout=2.0)
        await asyncio.gather(*(channel.send(make_delivery(number=n)) for n in (1, 2)))
        assert server.open_sessions == 2
        await asyncio.sleep(1.0)
        await channel.send(make_delivery(number=3))  # uses, and so refreshes, one of the two
        # The other, idle since the start, goes when its time is up; the used one stays...
        await server.wait_for_open_sessions(1, within=3.0)
        await channel.send(make_delivery(number=4))  # ...and carries the next message
        await channel.close()
    assert server.sessions == 2
    assert len(server.messages) == 4


async def test_a_slow_server_times_out_as_transient() -> None:
    async with SmtpServer() as server:
        server.script("DATA", delay=1.0)
        result = await send_one(server, make_delivery(), timeout=0.2)
    assert result.outcome is Outcome.TRANSIENT
    assert result.reply.startswith(f"DATA on 127.0.0.1:{server.port} failed: timed out")


async def test_smtp_timeout_bounds_a_messages_whole_transaction() -> None:
    # Each reply comes within the timeout, MAIL's and RCPT's together do not: the
    # relay is given smtp.timeout for the message, not for each of its replies.
    async with SmtpServer() as server:
        server.script("MAIL", delay=0.3, times=1)
        server.script("RCPT", delay=0.3, times=1)
        channel = EmailChannel(server.smtp_config(timeout=0.5))
        try:
            slow = await channel.send(make_delivery())
            fine = await channel.send(make_delivery())
        finally:
            await channel.close()
        assert slow.outcome is Outcome.TRANSIENT
        assert slow.reply == f"RCPT on 127.0.0.1:{server.port} failed: timed out after 0.5 s"
        assert fine.outcome is Outcome.DELIVERED, fine.reply
        assert len(server.messages) == 1
        assert server.sessions == 2  # the timed-out session was closed, not reused


async def test_a_server_that_is_down_then_up(smtp_servers: Servers) -> None:
    server = smtp_servers(start=False, port=free_port())
    channel = EmailChannel(server.smtp_config())
    down = await channel.send(make_delivery())
    server.start()
    up = await channel.send(make_delivery())
    await channel.close()
    assert down.outcome is Outcome.TRANSIENT
    assert down.reply == f"connect to 127.0.0.1:{server.port} failed: Connection refused"
    assert up.outcome is Outcome.DELIVERED
    assert len(server.messages) == 1


# --- check() ---------------------------------------------------------------------------------


async def test_check_reports_the_server(smtp_servers: Servers) -> None:
    server = smtp_servers(tls="starttls", auth=("bot", "s3cret"))
    summary = await EmailChannel(server.smtp_config()).check()
    assert summary.startswith(f"127.0.0.1:{server.port}: 220 ")
    assert "EHLO 250 smtp.test" in summary
    assert "AUTH" in summary
    assert "starttls, logged in as bot" in summary
    assert server.logins == [("bot", True)]
    assert server.messages == []


async def test_check_fails_clearly_when_the_server_is_down() -> None:
    port = free_port()
    channel = EmailChannel(SmtpServer(port=port).smtp_config())
    with pytest.raises(EmailCheckError, match=rf"connect to 127.0.0.1:{port} failed: Connection"):
        await channel.check()


async def test_check_fails_clearly_on_bad_credentials(smtp_servers: Servers) -> None:
    server = smtp_servers(tls="implicit", auth=("bot", "s3cret"))
    channel = EmailChannel(server.smtp_config(password="nope"))
    with pytest.raises(EmailCheckError, match=r"AUTH with .* refused: 535"):
        await channel.check()


# --- the test servers themselves ---------------------------------------------------------------


def test_the_server_also_serves_synchronous_code() -> None:
    # A CLI test blocks its thread (asyncio.run inside CliRunner): the server must not care.
    with SmtpServer(tls="starttls") as server:
        assert server.ca_file is not None
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.starttls(context=context)
            client.sendmail("a@x.org", ["b@x.org"], b"Subject: hi\r\n\r\nhello\r\n")
        assert [m.recipient for m in server.messages] == ["b@x.org"]
    assert not server.running


# --- the wire format, for any content ----------------------------------------------------------

# Characters that have tripped MIME writers: encoded-word and QP markers, SMTP's
# lone dot, header-looking text, CR and LF alone, controls, non-Latin scripts,
# characters outside the BMP, and spaces that line ends would swallow.
_AWKWARD = ["=?utf-8?q?x?=", "=", ".", "\r", "\n", "\r\n", "\t", " ", "  ", "From ", "Bcc: x"]
_AWKWARD += ["\x00", "\x0b", "\x7f", "\x85", "\u2028", "é", "✗", "日本語", "🚀", "a" * 90]
_awkward_text = st.lists(
    st.one_of(st.sampled_from(_AWKWARD), st.text(max_size=20)), max_size=40
).map("".join)


def delivery_with(subject: str, text: str, html: str = "<p>hi</p>", key: str = "k") -> Delivery:
    message = RenderedMessage(subject=subject, text=text, html=html, slack_text=text)
    return dataclasses.replace(make_delivery(), idempotency_key=key, message=message)


def assert_wire_safe(raw: bytes) -> None:
    """7-bit, CRLF line ends only, and no line over RFC 5322's 998 characters."""
    assert raw.isascii()
    assert raw.endswith(b"\r\n")
    lines = raw[:-2].split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert max(len(line) for line in lines) <= 998


def normalized_body(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


@settings(max_examples=150, deadline=None)
@given(subject=_awkward_text, text=_awkward_text, html=_awkward_text, key=_awkward_text)
@example(subject="x" * 2000, text="y" * 2000, html="", key="k" * 1200)
@example(subject="é" * 400, text="日本語のテキスト\n" * 50, html="🚀" * 300, key="ключ")
@example(subject="", text="", html="", key="")
@example(subject="a " * 100, text=".\n..\nFrom me\ntrailing  \n", html="=\t\n", key="a b")
def test_any_content_goes_out_7bit_and_parses_back_exactly(
    subject: str, text: str, html: str, key: str
) -> None:
    raw = encode_message(delivery_with(subject, text, html, key), "flyte@example.org")

    assert_wire_safe(raw)
    head = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    # Headers fold at 78 unless a single unbreakable word is longer.
    for line in head:
        words = line.split()
        assert len(line) <= 78 or len(words) == (1 if line.startswith(b" ") else 2), line
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects
    assert msg["Subject"] == single_line(subject)
    assert msg["X-Flytenotify-Delivery"] == single_line(key)
    assert msg["To"] == "alice@example.com"
    assert [name for name in msg if name in ("From", "To", "Subject", "Bcc")] == [
        "From",
        "To",
        "Subject",
    ]
    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    assert text_part.get_content().replace("\r\n", "\n") == normalized_body(text)
    assert normalized_body(html) in html_part.get_content().replace("\r\n", "\n")


def test_the_message_is_a_pure_function_of_what_the_ledger_holds() -> None:
    """The same delivery and send time give the same bytes; another time changes only Date."""
    delivery = delivery_with("s", "Execution run-7 failed.\n", key="proj/prod/run-7/6/0/email/a")
    sent_at = 1_767_600_300.75  # 2026-01-05 08:05:00.75 UTC
    first = encode_message(delivery, "flyte@example.org", sent_at)
    assert encode_message(delivery, "flyte@example.org", sent_at) == first
    msg = email.message_from_bytes(first, policy=email.policy.default)
    assert msg["Date"] == "Mon, 05 Jan 2026 08:05:00 +0000"
    later = encode_message(delivery, "flyte@example.org", sent_at + 3600)
    assert later.replace(b"09:05:00", b"08:05:00") == first
    other = encode_message(dataclasses.replace(delivery, idempotency_key="k-2"), "f@x.org", sent_at)
    boundary = msg.get_boundary()
    other_boundary = email.message_from_bytes(other, policy=email.policy.default).get_boundary()
    assert boundary is not None
    assert other_boundary not in (None, boundary)


def test_a_body_holding_the_boundary_gets_another_one() -> None:
    """The key is no secret: a body written to contain its boundary must not split the message."""
    key = "k-boundary"
    plain = encode_message(delivery_with("s", "x\n", key=key), "flyte@example.org", 0.0)
    boundary = email.message_from_bytes(plain, policy=email.policy.default).get_boundary()
    assert boundary is not None
    hostile = f"--{boundary}\nContent-Type: text/html\n\n<script>x</script>\n"
    raw = encode_message(delivery_with("s", hostile, key=key), "flyte@example.org", 0.0)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_boundary() not in (None, boundary)
    assert not msg.defects
    text = msg.get_body(("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n") == hostile
    assert encode_message(delivery_with("s", hostile, key=key), "flyte@example.org", 0.0) == raw


async def test_the_attempt_starts_at_the_date_the_message_carries() -> None:
    delivery = make_delivery()
    async with SmtpServer() as server:
        result = await send_one(server, delivery)
        [received] = await server.wait_for_messages(1)
    assert result.outcome is Outcome.DELIVERED
    assert result.sent_at is not None
    sent = datetime.fromtimestamp(result.sent_at, UTC)
    assert received.message["Date"] == email.utils.format_datetime(sent)


def test_plain_subject_words_stay_readable_and_long_headers_fold() -> None:
    subject = "Flyte execution run-42 " + "très " * 30 + "failed"
    raw = encode_message(delivery_with(subject, "body\n"), "flyte@example.org")
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert head.startswith("From: flyte@example.org\r\nTo: alice@example.com\r\n")
    assert "Subject: Flyte execution run-42\r\n =?utf-8?b?" in head  # ASCII words as they are
    assert "\r\n =?utf-8?b?" in head  # folded between encoded words
    assert all(len(line) <= 78 for line in head.split("\r\n"))
    assert re.search(r"\r\nDate: [^\r]* \+0000\r\n", head)  # a numeric zone, not obsolete "GMT"
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject


def test_short_ascii_bodies_go_as_they_are() -> None:
    raw = encode_message(delivery_with("s", "Execution run-7 failed.\n"), "flyte@example.org")
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nExecution run-7 failed.\r\n" in raw


def test_build_message_is_the_sent_bytes_parsed() -> None:
    delivery = make_delivery()
    msg = build_message(delivery, "flyte@example.org")
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == SUBJECT
    assert msg.get_content_type() == "multipart/alternative"


async def test_a_server_without_ehlo_is_greeted_with_helo() -> None:
    # aiosmtpd always speaks ESMTP, so this is a tiny RFC 821 server.
    commands: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 old.test\r\n")
        while line := await reader.readline():
            command = line.decode("ascii").strip()
            commands.append(command.split(" ", 1)[0].upper())
            verb = commands[-1]
            if verb == "EHLO":
                writer.write(b"502 5.5.2 command not recognized\r\n")
            elif verb == "DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        channel = EmailChannel(SmtpConfig(host="127.0.0.1", port=port, timeout=5))
        result = await channel.send(make_delivery())
        await channel.close()
    finally:
        server.close()
        await server.wait_closed()
    assert result.outcome is Outcome.DELIVERED
    assert commands == ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "QUIT"]
