"""Loopback sinks that record every message they accept, written for speed.

A benchmark sink must be faster than what it measures (aiosmtpd alone
saturates a core at ~1,250 sessions/s), so both sinks are bare asyncio
protocols: no parser libraries, one write per batch of pipelined commands.

- SMTP: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; pipelining-tolerant
  (every complete line in the buffer is answered, the answers go out in one
  write). No TLS, no AUTH: the benchmark is loopback and plain.
- HTTP/1.1 with keep-alive: answers as a webhook receiver (200), the
  PagerDuty Events v2 API (path ending in ``enqueue``: 202 JSON) and Slack's
  ``chat.postMessage`` (``{"ok": true, ...}``).

Every accepted message is recorded as ``(time.time(), id)``, where ``id`` is
the first ``run-<n>`` found in it (the execution or alert name), so the
harness can match it to the event that caused it.

Latency: with a delay set (``SinkProcess.set_delay``), each message's answer
is held back that long, as a slow provider's would be: the HTTP response, and
for SMTP the reply to the end of DATA (where a relay scans and queues; the
other commands answer at once, as over a network with a short round trip).
The sinks count the messages waiting for their answer and keep the peak: the
sends a client had in flight at once, as the provider saw them.

The sinks run in their own process (:class:`SinkProcess`) so they never share
an event loop, or a core's time slice, with the load generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import re
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

# Python's default backlog (100) overflows under a burst of new connections;
# the kernel then drops SYNs and the client retransmits after 1 s, which shows
# up as a mysterious 1 s latency tail.
BACKLOG = 4096
ID_PATTERN = re.compile(rb"run-(\d+)")

Receipt = tuple[float, int]  # (time.time() at acceptance, n of run-<n>; -1 if none)


def message_id(data: bytes) -> int:
    found = ID_PATTERN.search(data)
    return int(found.group(1)) if found else -1


@dataclass
class Recorder:
    """What the sinks accepted, per sink kind."""

    receipts: dict[str, list[Receipt]] = field(
        default_factory=lambda: {"smtp": [], "http": [], "pagerduty": [], "slack": []}
    )
    connections: int = 0
    delay: float = 0.0  # seconds each message's answer is held back
    waiting: int = 0  # messages whose answer is held back now
    peak_waiting: int = 0

    def add(self, kind: str, data: bytes) -> None:
        self.receipts[kind].append((time.time(), message_id(data)))

    def answer(
        self, transport: asyncio.Transport, reply: bytes, message: bool, close: bool = False
    ) -> None:
        """Write ``reply`` now, or after the delay if it answers a message; then maybe close."""
        if not message or self.delay <= 0:
            self._write(transport, reply, close)
            return
        self.waiting += 1
        self.peak_waiting = max(self.peak_waiting, self.waiting)
        asyncio.get_running_loop().call_later(
            self.delay, self._answer_late, transport, reply, close
        )

    def _answer_late(self, transport: asyncio.Transport, reply: bytes, close: bool) -> None:
        self.waiting -= 1
        self._write(transport, reply, close)

    @staticmethod
    def _write(transport: asyncio.Transport, reply: bytes, close: bool) -> None:
        if not transport.is_closing():
            transport.write(reply)
            if close:
                transport.close()

    def counts(self) -> dict[str, int]:
        return {kind: len(items) for kind, items in self.receipts.items()}

    def reset(self) -> None:
        for items in self.receipts.values():
            items.clear()
        self.connections = 0
        self.peak_waiting = self.waiting


# --- SMTP ---------------------------------------------------------------------------


_EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 33554432\r\n"
_OK = b"250 OK\r\n"
_END_OF_DATA = b"\r\n.\r\n"


class SmtpSink(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.buffer = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.recorder.connections += 1
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies = bytearray()
        closing = False
        message = False  # a message ended in this read: its reply is held back
        while not closing:
            if self.in_data:
                end = self.buffer.find(_END_OF_DATA)
                if end < 0:
                    break
                self.recorder.add("smtp", bytes(self.buffer[:end]))
                del self.buffer[: end + len(_END_OF_DATA)]
                self.in_data = False
                replies += b"250 2.0.0 queued\r\n"
                message = True
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            reply, closing = self._command(line)
            replies += reply
        if self.transport is not None and (replies or closing):
            self.recorder.answer(self.transport, bytes(replies), message, closing)

    def _command(self, line: bytes) -> tuple[bytes, bool]:
        verb = line[:4].upper()
        if verb == b"EHLO":
            return _EHLO, False
        if verb == b"DATA":
            # The message may start right after "DATA\r\n" in the same packet;
            # "\r\n" is put back so a terminator at its very start is still found.
            self.in_data = True
            self.buffer[:0] = b"\r\n"
            return b"354 end with <CRLF>.<CRLF>\r\n", False
        if verb == b"QUIT":
            return b"221 bye\r\n", True
        if verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return _OK, False
        return b"502 5.5.2 not implemented\r\n", False


# --- HTTP ---------------------------------------------------------------------------


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_WEBHOOK = _response("200 OK", b'{"status":"ok"}')
_PAGERDUTY = _response(
    "202 Accepted", b'{"status":"success","message":"Event processed","dedup_key":"bench"}'
)
_SLACK = _response("200 OK", b'{"ok":true,"channel":"C0BENCH00","ts":"1700000000.000100"}')


class HttpSink(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.recorder.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = bytearray()
        close = False
        while not close:
            request = self._take_request()
            if request is None:
                break
            head, body = request
            out += self._answer(head, body)
            close = b"\r\nconnection: close" in head.lower()
        if self.transport is not None and (out or close):
            self.recorder.answer(self.transport, bytes(out), bool(out), close)

    def _take_request(self) -> tuple[bytes, bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end])
        length = _content_length(head)
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return head, body

    def _answer(self, head: bytes, body: bytes) -> bytes:
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        if path.endswith(b"chat.postMessage"):
            self.recorder.add("slack", body)
            return _SLACK
        if path.endswith(b"enqueue"):
            self.recorder.add("pagerduty", body)
            return _PAGERDUTY
        self.recorder.add("http", body)
        return _WEBHOOK


def _content_length(head: bytes) -> int:
    # Every client in this benchmark (httpx, aiohttp, Go net/http with a byte
    # body) sends Content-Length; chunked bodies are not supported.
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    end = lower.find(b"\r\n", start)
    return int(lower[start : end if end >= 0 else None].strip())


# --- the sink process ----------------------------------------------------------------


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    smtp = await loop.create_server(
        lambda: SmtpSink(recorder), "127.0.0.1", 0, backlog=BACKLOG, reuse_address=True
    )
    http = await loop.create_server(
        lambda: HttpSink(recorder), "127.0.0.1", 0, backlog=BACKLOG, reuse_address=True
    )
    ports = {"smtp": _port(smtp), "http": _port(http)}
    conn.send(ports)
    stopped = loop.create_future()
    loop.add_reader(conn.fileno(), _on_command, conn, recorder, stopped)
    await stopped
    loop.remove_reader(conn.fileno())
    smtp.close()
    http.close()


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def _on_command(conn: Connection, recorder: Recorder, stopped: asyncio.Future[None]) -> None:
    try:
        command = conn.recv()
    except EOFError:
        # The harness is gone (killed before it could say stop). Stop too:
        # the closed pipe stays readable, and this callback would run forever.
        if not stopped.done():
            stopped.set_result(None)
        return
    if isinstance(command, tuple) and command[0] == "delay":
        recorder.delay = float(command[1])
        conn.send(True)
    elif command == "counts":
        conn.send(recorder.counts())
    elif command == "collect":
        conn.send(
            {
                "receipts": recorder.receipts,
                "connections": recorder.connections,
                "peak_waiting": recorder.peak_waiting,
            }
        )
    elif command == "reset":
        recorder.reset()
        conn.send(True)
    elif command == "stop":
        conn.send(True)
        if not stopped.done():
            stopped.set_result(None)


def _child(conn: Connection) -> None:
    asyncio.run(_serve(conn))


class SinkProcess:
    """The sinks in a child process, driven through a pipe.

    Use as a context manager; ``ports`` has the ``smtp`` and ``http`` ports.
    """

    def __init__(self) -> None:
        # "spawn" gives the child a clean interpreter: no copy of the parent's
        # event loop or threads, whatever state the harness is in.
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_child, args=(child_conn,), daemon=True)
        self.ports: dict[str, int] = {}

    def __enter__(self) -> SinkProcess:
        self._process.start()
        if not self._conn.poll(30):
            raise RuntimeError("the sink process did not start within 30 s")
        self.ports = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def _ask(self, command: str | tuple[str, float]) -> Any:
        self._conn.send(command)
        if not self._conn.poll(60):
            raise RuntimeError(f"the sink process did not answer {command!r}")
        return self._conn.recv()

    def counts(self) -> dict[str, int]:
        return dict(self._ask("counts"))

    def collect(self) -> dict[str, Any]:
        return dict(self._ask("collect"))

    def reset(self) -> None:
        self._ask("reset")

    def set_delay(self, seconds: float) -> None:
        """Hold back each message's answer ``seconds`` from now on (0: answer at once)."""
        self._ask(("delay", seconds))

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(RuntimeError, OSError):
                self._ask("stop")
            self._process.join(10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)


def demo() -> None:
    """A quick self-check: ``python bench/sinks.py`` prints the ports and a round trip."""
    with SinkProcess() as sinks:
        print(json.dumps(sinks.ports))
        print(sinks.counts())


if __name__ == "__main__":
    demo()
