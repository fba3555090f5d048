"""The raw limit: the sinks blasted directly by lean asyncio clients.

Every other result is reported as a fraction of these numbers, measured in the
same run: a system cannot deliver faster than the sink takes messages, so a
ratio says how much of the available capacity it uses.

- SMTP over reused connections, MAIL/RCPT/DATA pipelined (what a pooled
  sender can reach);
- SMTP with a new connection per message (what Alertmanager does);
- HTTP/1.1 keep-alive POSTs (webhooks, PagerDuty, Slack).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# A message of about the size flytenotify sends (headers, a text and an HTML part).
_FILLER = b"x" * 70
_MESSAGE = b"\r\n".join(
    [b"Subject: Flyte execution bench/development/run-%d failed", b"To: ops@example.com"]
    + [_FILLER] * 30
)
_JSON = b'{"event":{"execution_id":{"name":"run-%d"}},"text":"' + b"y" * 1500 + b'"}'


async def _expect(reader: asyncio.StreamReader, code: bytes) -> None:
    """Read one (possibly multi-line) SMTP reply and check its code."""
    while True:
        line = await reader.readline()
        if not line.startswith(code):
            raise RuntimeError(f"sink answered {line!r}, expected {code!r}")
        if line[3:4] != b"-":
            return


async def _smtp_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _expect(reader, b"220")
    writer.write(b"EHLO raw\r\n")
    await _expect(reader, b"250")
    return reader, writer


async def _smtp_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    # Pipelined: the envelope and DATA in one write, then the body.
    writer.write(b"MAIL FROM:<raw@bench>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\n")
    await _expect(reader, b"250")
    await _expect(reader, b"250")
    await _expect(reader, b"354")
    writer.write(_MESSAGE % n + b"\r\n.\r\n")
    await _expect(reader, b"250")


async def _smtp_reused(port: int, numbers: range) -> None:
    reader, writer = await _smtp_open(port)
    for n in numbers:
        await _smtp_one(reader, writer, n)
    writer.write(b"QUIT\r\n")
    writer.close()


async def _smtp_fresh(port: int, numbers: range) -> None:
    for n in numbers:
        reader, writer = await _smtp_open(port)
        await _smtp_one(reader, writer, n)
        writer.write(b"QUIT\r\n")
        await _expect(reader, b"221")
        writer.close()


async def _http_keepalive(port: int, numbers: range) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for n in numbers:
        body = _JSON % n
        writer.write(
            b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()


Worker = Callable[[int, range], Awaitable[None]]
MODES: dict[str, Worker] = {
    "smtp_reused": _smtp_reused,
    "smtp_new_connection": _smtp_fresh,
    "http_keepalive": _http_keepalive,
}


async def blast(mode: str, port: int, count: int, connections: int) -> float:
    """Send ``count`` messages over ``connections`` parallel connections; seconds taken."""
    worker = MODES[mode]
    started = time.perf_counter()
    await asyncio.gather(*(worker(port, range(i, count, connections)) for i in range(connections)))
    return time.perf_counter() - started
