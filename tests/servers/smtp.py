"""Real SMTP servers on 127.0.0.1 for tests: record, secure, authenticate, misbehave.

:class:`SmtpServer` wraps an aiosmtpd server that runs on its own thread and
event loop, so it serves both async tests and synchronous ones (a CLI run by
``CliRunner`` blocks the test's thread). Use it as a context manager, sync or
async, or through the ``smtp_servers`` fixture, which stops every server it
made at the end of the test::

    async with SmtpServer(tls="starttls", auth=("bot", "s3cret")) as server:
        channel = EmailChannel(server.smtp_config())
        await channel.send(delivery)
        [received] = await server.wait_for_messages(1)
        assert received.message["Subject"] == "..."

Misbehaviour is scripted per command (:meth:`SmtpServer.script`): a reply
code for a given recipient, the first N times or always, a delay, or a
dropped connection. A server made with ``port=free_port()`` and not started
yet is a port that refuses connections; ``start()`` brings it up.
"""

from __future__ import annotations

import asyncio
import atexit
import email
import email.policy
import functools
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from flytenotify.config import SmtpConfig

__all__ = [
    "HOST",
    "Received",
    "Rule",
    "SmtpServer",
    "TestCA",
    "default_ca",
    "free_port",
    "smtp_servers_fixture",
]

HOST = "127.0.0.1"
SERVER_NAME = "smtp.test"  # fixed EHLO name: aiosmtpd would otherwise resolve our FQDN
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

TlsMode = Literal["none", "starttls", "implicit"]
Command = Literal["MAIL", "RCPT", "DATA"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class TestCA:
    """A throwaway CA (trustme) and a server certificate for 127.0.0.1 and localhost."""

    __test__ = False  # not a test class, despite the name

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert(HOST, "localhost")
        self._dir = tempfile.TemporaryDirectory(prefix="flytenotify-ca-")
        atexit.register(self._dir.cleanup)  # CAs live as long as the test run
        self.ca_file = Path(self._dir.name) / "ca.pem"  # give this to SmtpConfig.ca_file
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        return context


@functools.cache
def default_ca() -> TestCA:
    """One CA for the whole test run: making keys is the slow part of TLS tests."""
    return TestCA()


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage  # parsed with email.policy.default
    session: int  # number of the connection it came over (1, 2, ...)
    tls: bool  # the connection was encrypted (STARTTLS or implicit TLS)
    login: str | None  # the AUTH user, if the client logged in

    @property
    def recipient(self) -> str:
        return self.rcpt_tos[0]


@dataclass
class Rule:
    """A scripted answer to one command; see :meth:`SmtpServer.script`."""

    command: Command
    reply: str | None = None  # None: the normal reply (after the delay)
    address: str | None = None  # MAIL: the sender; RCPT/DATA: a recipient; None: any
    times: int | None = None  # how many more times it applies; None: always
    delay: float = 0.0  # seconds to wait before answering
    disconnect: bool = False  # close the connection instead of answering
    used: int = 0  # how many times it applied

    def matches(self, command: str, addresses: list[str]) -> bool:
        if command != self.command or self.times == 0:
            return False
        return self.address is None or self.address in addresses


@dataclass
class _State:
    """What the server saw; written on the server thread, read by tests under the lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[Received] = field(default_factory=list)
    sessions: int = 0
    closed: int = 0
    commands: list[tuple[int, str]] = field(default_factory=list)  # (session, "RCPT a@b")
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    rules: list[Rule] = field(default_factory=list)

    def log(self, session: int, command: str) -> None:
        with self.lock:
            self.commands.append((session, command))

    def take_rule(self, command: str, addresses: list[str]) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(command, addresses):
                    rule.used += 1
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None


class _CountingSMTP(SMTP):
    """aiosmtpd's protocol (one per connection), numbering and reporting its connection."""

    def __init__(
        self, handler: _Handler, connections: set[asyncio.BaseTransport], **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.number = 0
        self._state = handler.state
        self._connections = connections  # the server's open connections, for stop()
        self._socket: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.number == 0:  # STARTTLS calls this again for the same connection
            with self._state.lock:
                self._state.sessions += 1
                self.number = self._state.sessions
            self._socket = transport
            self._connections.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        with self._state.lock:
            self._state.closed += 1
        if self._socket is not None:
            self._connections.discard(self._socket)
        super().connection_lost(error)


def _number(server: SMTP) -> int:
    return cast(_CountingSMTP, server).number


def _encrypted(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Handler:
    """aiosmtpd hooks: apply the script, enforce AUTH, record what arrives."""

    def __init__(self, state: _State, login: tuple[str, str] | None) -> None:
        self.state = state
        self.login = login

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.state.log(_number(server), f"MAIL {address}")
        if self.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        scripted = await self._scripted(server, "MAIL", [address])
        if scripted is None:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return scripted or "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.state.log(_number(server), f"RCPT {address}")
        scripted = await self._scripted(server, "RCPT", [address])
        if scripted is None:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return scripted or "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.state.log(_number(server), "DATA")
        scripted = await self._scripted(server, "DATA", list(envelope.rcpt_tos))
        if scripted is not None:
            return scripted
        raw = cast(bytes, envelope.original_content or envelope.content)
        number = self._record(server, session, envelope, raw)
        return f"250 2.0.0 OK queued as {number}"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.state.log(_number(server), "RSET")
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.state.log(_number(server), "QUIT")
        return "221 Bye"

    async def handle_exception(self, error: Exception) -> str:
        return "421 4.3.0 test server error"  # e.g. a client that fails the TLS handshake

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        user = password = ""
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
        ok = self.login is not None and (user, password) == self.login
        with self.state.lock:
            self.state.logins.append((user, ok))
        return AuthResult(success=ok, handled=False, auth_data=user)  # failure: 535

    async def _scripted(self, server: SMTP, command: str, addresses: list[str]) -> str | None:
        """The scripted reply to send instead of the normal one, if a rule applies."""
        rule = self.state.take_rule(command, addresses)
        if rule is None:
            return None
        if rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.disconnect and server.transport is not None:
            server.transport.close()
            return "421 4.4.2 connection dropped"  # written to a closed transport: never seen
        return rule.reply

    def _record(self, server: SMTP, session: Session, envelope: Envelope, raw: bytes) -> int:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=message,
            session=_number(server),
            tls=_encrypted(server),
            login=login,
        )
        with self.state.lock:
            self.state.messages.append(received)
            return len(self.state.messages)


class SmtpServer:
    """An SMTP server on 127.0.0.1 for one test; see the module docstring.

    ``tls``: ``"none"``, ``"starttls"`` (offers STARTTLS) or ``"implicit"`` (TLS
    from the first byte). ``auth``: a (user, password) pair that must log in
    before MAIL; any other login gets 535. ``idle_timeout``: the server hangs
    up on a connection that says nothing for that long.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        tls: TlsMode = "none",
        auth: tuple[str, str] | None = None,
        ca: TestCA | None = None,
        idle_timeout: float = 60.0,
    ) -> None:
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.tls: TlsMode = tls
        self.auth = auth
        self.ca = ca if ca is not None or tls == "none" else default_ca()
        self.idle_timeout = idle_timeout
        self._state = _State()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.BaseTransport] = set()
        # Loading a key pair per connection would slow down many-connection tests.
        self._tls_context = self.ca.server_context() if self.ca is not None else None

    # --- what the server saw (safe to read while it runs) ---

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed the server's certificate, for ``SmtpConfig.ca_file``."""
        return self.ca.ca_file if self.ca is not None else None

    @property
    def messages(self) -> list[Received]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def sessions(self) -> int:
        """Connections accepted so far (a STARTTLS upgrade is the same connection)."""
        with self._state.lock:
            return self._state.sessions

    @property
    def open_sessions(self) -> int:
        """Connections currently open (accepted and not yet closed by either side)."""
        with self._state.lock:
            return self._state.sessions - self._state.closed

    async def wait_for_open_sessions(self, count: int, within: float = 5.0) -> None:
        """Wait until exactly ``count`` connections are open, or TimeoutError."""
        deadline = time.monotonic() + within
        while self.open_sessions != count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.open_sessions} open sessions, not {count}")
            await asyncio.sleep(0.01)

    @property
    def commands(self) -> list[tuple[int, str]]:
        """(session, command) for MAIL, RCPT, DATA, RSET and QUIT, in order."""
        with self._state.lock:
            return list(self._state.commands)

    @property
    def logins(self) -> list[tuple[str, bool]]:
        """(user, accepted) for every AUTH attempt."""
        with self._state.lock:
            return list(self._state.logins)

    def to(self, recipient: str) -> list[Received]:
        """The messages received for ``recipient``."""
        return [m for m in self.messages if recipient in m.rcpt_tos]

    async def wait_for_messages(self, count: int, within: float = 5.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; all of them, or TimeoutError."""
        deadline = time.monotonic() + within
        while len(messages := self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(messages)} of {count} messages after {within}s")
            await asyncio.sleep(0.01)
        return messages

    # --- scripting ---

    def script(
        self,
        command: Command,
        reply: str | None = None,
        *,
        address: str | None = None,
        times: int | None = None,
        delay: float = 0.0,
        disconnect: bool = False,
    ) -> Rule:
        """Answer ``command`` differently, for ``address`` (or anyone), ``times`` (or always).

        ``server.script("RCPT", "450 4.2.1 busy", address="a@x", times=2)`` refuses
        ``a@x`` twice, then accepts it; ``server.script("RCPT", "550 5.1.1 no such
        user", address="b@x")`` always refuses ``b@x``. Rules are tried in the
        order they were added. The returned rule's ``used`` counts its uses.
        """
        rule = Rule(command, reply, address, times, delay, disconnect)
        with self._state.lock:
            self._state.rules.append(rule)
        return rule

    def smtp_config(self, **overrides: Any) -> SmtpConfig:
        """A client configuration for this server: address, TLS mode, CA and login."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "ca_file": self.ca_file,
            "timeout": 5.0,
        }
        if self.auth is not None:
            settings["username"], settings["password"] = self.auth
        settings.update(overrides)
        return SmtpConfig(**settings)

    # --- lifecycle ---

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        """Listen on ``self.port``; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already running")
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_quiet_exception_handler)
        thread = threading.Thread(target=loop.run_forever, name=f"smtp-{self.port}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            future = asyncio.run_coroutine_threadsafe(self._listen(), loop)
            self._server = future.result(timeout=START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the port and every open connection; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(STOP_TIMEOUT)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    async def _listen(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            self._protocol,
            self.host,
            self.port,
            ssl=self._tls_context if self.tls == "implicit" else None,
        )

    def _protocol(self) -> _CountingSMTP:
        handler = _Handler(self._state, self.auth)
        return _CountingSMTP(
            handler,
            self._connections,
            hostname=SERVER_NAME,
            tls_context=self._tls_context if self.tls == "starttls" else None,
            # aiosmtpd sees only STARTTLS as encryption; an implicit-TLS link is one too.
            auth_require_tls=self.tls == "starttls",
            authenticator=handler.authenticate,
            timeout=self.idle_timeout,
            loop=asyncio.get_running_loop(),
        )

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._connections):
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # no goodbye: like a crashed or unplugged server
            else:
                transport.close()
        self._connections.clear()
        # Let aiosmtpd's per-connection tasks see the lost connections and finish.
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # A client that rejects our certificate makes asyncio log a scary traceback
    # on the server side; that is the expected outcome of such a test, not news.
    if isinstance(context.get("exception"), ssl.SSLError | ConnectionError):
        return
    loop.default_exception_handler(context)


@pytest.fixture(name="smtp_servers")
def smtp_servers_fixture() -> Iterator[Callable[..., SmtpServer]]:
    """Make started servers (``smtp_servers(tls="starttls")``); all stopped at test end.

    Pass ``start=False`` for a server that is not listening yet (a down port).
    Register with ``pytest_plugins = ["tests.servers.smtp"]`` in a conftest, or
    import ``smtp_servers_fixture`` into the test module.
    """
    made: list[SmtpServer] = []

    def make(*, start: bool = True, **options: Any) -> SmtpServer:
        server = SmtpServer(**options)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()
