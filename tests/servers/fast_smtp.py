"""A lean SMTP sink on 127.0.0.1 for volume tests: accepts everything, records little.

aiosmtpd parses every message fully and runs a general state machine; at
10,000 messages that is the bottleneck of a test meant to measure the
dispatchers. This sink speaks just enough SMTP for a client that does not use
TLS or AUTH (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), reads only the
header block of each message and keeps (Message-ID, Subject, recipient).

It runs on its own thread and event loop, so synchronous tests (which start
dispatcher processes and wait for them) can use it::

    with FastSmtpSink() as sink:
        ...  # point SmtpConfig(host="127.0.0.1", port=sink.port) at it
        assert sink.count() == 10_000
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import TracebackType

HOST = "127.0.0.1"
_READY_TIMEOUT = 5.0


@dataclass(frozen=True)
class Arrival:
    message_id: str
    subject: str
    recipient: str


def _header(block: bytes, name: bytes) -> str:
    """One header's (unfolded) value from a raw header block; "" if absent."""
    prefix = name.lower() + b":"
    lines = block.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(prefix):
            value = line[len(prefix) :]
            for more in lines[i + 1 :]:
                if not more[:1].isspace():
                    break
                value += more
            return value.decode("utf-8", "replace").strip()
    return ""


class FastSmtpSink:
    def __init__(self) -> None:
        self.port = 0
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FastSmtpSink:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=_READY_TIMEOUT)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._session, HOST, 0, backlog=256)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Sessions still open (a killed client's) are cut, not waited for.
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=_READY_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_READY_TIMEOUT)

    def __enter__(self) -> FastSmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what arrived -----------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return len(self._arrivals)

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    # -- the protocol -----------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        recipient = ""
        self._writers.add(writer)
        try:
            writer.write(b"220 fast.test ESMTP sink\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-fast.test\r\n250-8BITMIME\r\n250 SIZE 33554432\r\n")
                elif verb == b"RCPT":
                    recipient = line.split(b":", 1)[1].strip().strip(b"<>").decode()
                    writer.write(b"250 2.1.5 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    headers = data.split(b"\r\n\r\n", 1)[0]
                    arrival = Arrival(
                        _header(headers, b"Message-ID"), _header(headers, b"Subject"), recipient
                    )
                    with self._lock:
                        self._arrivals.append(arrival)
                    writer.write(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:  # HELO, MAIL, RSET, NOOP: nothing to remember
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # a client went away (or was killed): nothing to clean up
        finally:
            self._writers.discard(writer)
            writer.close()
