"""CPU per webhook request of Python HTTP clients, against the benchmark's HTTP sink.

    .venv/bin/python bench/http_clients.py                  # 10,000 POSTs, 64 at a time
    .venv/bin/python bench/http_clients.py --requests 20000 --in-flight 256

aiohttp (what the HTTP channels use) always; aiosonic and pyreqwest too when
they are installed in the same environment (they are not dependencies:
``pip install aiosonic pyreqwest`` into a throwaway copy of .venv). Each client
POSTs a 2 KB JSON body with the webhook channel's headers over keep-alive
connections to the sink (a process of its own, answering at once) and reads
the answer; CPU is this process's user + system time over all its threads
(pyreqwest's Rust runtime works in threads of its own), per request. Prints
each client's requests/s and CPU per request, the median of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import statistics
import time
from collections.abc import Awaitable, Callable

import orjson
import uvloop
from sinks import SinkProcess

BODY = orjson.dumps({"event": {"phase": "FAILED"}, "text": "y" * 1800})
HEADERS = {
    "Content-Type": "application/json",
    "X-Flytenotify-Delivery": "bench",
    "X-Flytenotify-Signature": "v1=" + "0" * 64,
}
WARM_UP = 200  # requests before measuring: every connection is open by then

Send = Callable[[], Awaitable[None]]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(send: Send, requests: int, in_flight: int) -> tuple[float, float]:
    """(requests/s, CPU microseconds per request) of ``requests`` sends."""
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            await send()

    await asyncio.gather(*(one() for _ in range(WARM_UP)))
    cpu, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    elapsed, used = time.perf_counter() - started, cpu_seconds() - cpu
    return requests / elapsed, 1e6 * used / requests


async def with_aiohttp(url: str, requests: int, in_flight: int) -> tuple[float, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                assert response.status == 200

        return await measure(send, requests, in_flight)


async def with_aiosonic(url: str, requests: int, in_flight: int) -> tuple[float, float]:
    import aiosonic  # type: ignore[import-not-found]
    from aiosonic.connectors import TCPConnector  # type: ignore[import-not-found]

    pools = {":default": aiosonic.pools.PoolConfig(size=in_flight)}
    client = aiosonic.HTTPClient(TCPConnector(pool_configs=pools))

    async def send() -> None:
        response = await client.post(url, data=BODY, headers=HEADERS)
        await response.content()
        assert response.status_code == 200

    return await measure(send, requests, in_flight)


async def with_pyreqwest(url: str, requests: int, in_flight: int) -> tuple[float, float]:
    from pyreqwest.client import ClientBuilder  # type: ignore[import-not-found]

    async with ClientBuilder().max_connections(in_flight).build() as client:

        async def send() -> None:
            request = client.post(url).body_bytes(BODY).headers(HEADERS).build()
            response = await request.send()
            await response.bytes()
            assert response.status == 200

        return await measure(send, requests, in_flight)


CLIENTS = {"aiohttp": with_aiohttp, "aiosonic": with_aiosonic, "pyreqwest": with_pyreqwest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    installed = [name for name in CLIENTS if importlib.util.find_spec(name) is not None]
    with SinkProcess() as sinks:
        sinks.set_delay(0.0)
        url = f"http://127.0.0.1:{sinks.ports['http']}/hook"
        for name in installed:
            runs = [
                uvloop.run(CLIENTS[name](url, args.requests, args.in_flight))
                for _ in range(args.runs)
            ]
            rate = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{name:10} {rate:8,.0f} requests/s {cpu:6.0f} µs CPU per request")
    missing = sorted(set(CLIENTS) - set(installed))
    if missing:
        print(f"not installed here: {', '.join(missing)}")


if __name__ == "__main__":
    main()
