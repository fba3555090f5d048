"""Deadlines through ``flytenotify serve`` as real processes: a pending timer survives a
kill -9, and replicas sharing PostgreSQL fire each timer exactly once.

Events go in over the HTTP API as FlytePropeller reports them (the protobuf
``WorkflowExecutionEvent``, serialised); alerts end in the loopback SMTP server.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.flyteadmin_egress import workflow_event
from tests.servers.smtp import SmtpServer
from tests.test_serve import start_serve, stop

WAIT = 30.0
PROJECT, DOMAIN = "proj", "prod"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def config_file(home: Path, smtp: SmtpServer, max_queued: str) -> Path:
    path = home / "flytenotify.toml"
    path.write_text(
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsender = "flyte@example.com"\n'
        # A message in flight at a kill is sent again this soon after.
        "[retry]\nlease = 3.0\n"
        # One message per execution is what these tests count.
        "[grouping]\nby = []\n"
        f'[deadlines.stuck]\nproject = "{PROJECT}"\ndomain = "{DOMAIN}"\n'
        f'max_queued = "{max_queued}"\nrecipients = ["ops@example.com"]\n'
    )
    return path


def queued(base: str, name: str) -> None:
    body = workflow_event(name, "QUEUED", project=PROJECT, domain=DOMAIN).SerializeToString()
    answer = httpx.post(
        f"{base}/api/v1/events",
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "recorded"


_ALERT = re.compile(r"Deadline stuck: (?P<run>\S+) queued for (?P<seconds>\d+)s")


def alerted(smtp: SmtpServer, limit: int) -> Counter[str]:
    """How many alerts each run got. Each must say its run queued for at least
    ``limit`` seconds: more when the timer fired late (a restart, a busy
    machine), as the alert then says."""
    found: Counter[str] = Counter()
    for message in smtp.messages:
        subject = str(message.message["Subject"])
        match = _ALERT.fullmatch(subject)
        assert match is not None, subject
        assert int(match["seconds"]) >= limit, subject
        found[match["run"]] += 1
    return found


async def wait_until(check: object, what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_timer_pending_at_a_kill_9_fires_once_after_the_restart(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    config = config_file(tmp_path, smtp, "3s")
    first, base = await asyncio.to_thread(start_serve, tmp_path, "--config", str(config))
    try:
        await asyncio.to_thread(queued, base, "e1")
        first.send_signal(signal.SIGKILL)  # well before the timer is due
        await asyncio.to_thread(first.wait, WAIT)
    finally:
        stop(first)
    assert smtp.messages == []
    second, _ = await asyncio.to_thread(start_serve, tmp_path, "--config", str(config))
    try:
        await wait_until(lambda: smtp.messages, "the alert after the restart")
        await asyncio.sleep(2.0)  # anything sent twice would be here by now
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, WAIT)
    finally:
        stop(second)
    assert alerted(smtp, 3) == Counter({f"{PROJECT}/{DOMAIN}/e1": 1})


async def test_two_replicas_on_postgresql_fire_each_timer_once(
    smtp: SmtpServer, tmp_path: Path, postgres_url: str
) -> None:
    total = 12
    processes: list[subprocess.Popen[str]] = []
    bases = []
    try:
        for replica in ("a", "b"):
            home = tmp_path / replica
            home.mkdir()
            config = config_file(home, smtp, "2s")
            process, base = await asyncio.to_thread(
                start_serve, home, "--config", str(config), "--db", postgres_url
            )
            processes.append(process)
            bases.append(base)
        for i in range(total):  # half to each replica: both arm, both fire
            await asyncio.to_thread(queued, bases[i % 2], f"q-{i}")
        expected = {f"{PROJECT}/{DOMAIN}/q-{i}" for i in range(total)}
        await wait_until(lambda: set(alerted(smtp, 2)) == expected, f"all {total} alerts")
        await asyncio.sleep(2.0)
    finally:
        for process in processes:
            stop(process)
    counts = alerted(smtp, 2)
    assert all(count == 1 for count in counts.values()), counts
    assert len(counts) == total
