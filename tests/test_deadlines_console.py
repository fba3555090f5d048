"""The console's deadline pages: every deadline, what is over one now, and what each sent.

A real Notifier firing a real timer on a real ledger, the real Starlette app through
httpx's ASGI transport; every value is rendered as text (autoescape), and the pages
need a login when tokens are set.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, ServerConfig, Settings
from flytenotify.domain import DeadlineId
from flytenotify.web.api import create_app
from tests.test_deadlines import DOMAIN, PROJECT, deadline, event

# No "/" may be in a name; everything else a browser could run is tried.
EVIL = "<script>alert(1)<img src=x onerror=alert(2)>"
TOKEN = "console-deadline-token-0123456789abcdef01234"


@pytest.fixture
async def notifier(database_url: str) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as running:
        running.start_dispatching()
        yield running


def client(notifier: Notifier, tokens: list[str] | None = None) -> httpx.AsyncClient:
    server = ServerConfig(api_tokens=[SecretStr(t) for t in tokens or []])
    transport = httpx.ASGITransport(app=create_app(notifier, server))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def alerted(notifier: Notifier, name: str) -> None:
    """Wait until the deadline ``name`` has alerted once."""
    ident = DeadlineId(PROJECT, DOMAIN, name)
    deadline_at = time.monotonic() + 20
    while not await notifier.deadline_alerts(ident):
        assert time.monotonic() < deadline_at, "no alert"
        await asyncio.sleep(0.05)


def page_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.text


async def test_the_pages_show_deadlines_what_is_over_one_and_the_alerts(
    notifier: Notifier,
) -> None:
    await notifier.put_deadline(
        deadline(EVIL, max_queued="1s", recipients=[f"#{EVIL}", "ops@example.com"])
    )
    await notifier.report_event(event("e1", "QUEUED"))
    await alerted(notifier, EVIL)
    async with client(notifier) as browser:
        listing = page_text(await browser.get("/ui/deadlines"))
        assert EVIL not in listing  # escaped everywhere
        assert html.escape(EVIL) in listing
        assert "queued at most 1s" in listing
        over = listing.split('data-testid="over"', 1)[1].split("</table>", 1)[0]
        assert 'href="/ui/executions/proj/prod/e1"' in over
        assert "max_queued" in over
        url = "/ui/deadlines/proj/prod/" + quote(EVIL, safe="")
        assert f'href="{url}"' in over
        one = page_text(await browser.get(url))
        assert EVIL not in one
        alerts = one.split('data-testid="alerts"', 1)[1].split("</table>", 1)[0]
        assert 'href="/ui/executions/proj/prod/e1"' in alerts
        assert "not yet" in alerts  # the execution has not ended

        await notifier.report_event(event("e1", "SUCCEEDED"))
        listing = page_text(await browser.get("/ui/deadlines"))
        assert "No execution is over a deadline." in listing
        alerts = page_text(await browser.get(url)).split('data-testid="alerts"', 1)[1]
        assert "SUCCEEDED" in alerts.split("</table>", 1)[0]


async def test_a_schedules_timer_is_shown_waiting(notifier: Notifier) -> None:
    await notifier.put_deadline(
        deadline("nightly", launch_plan="etl", schedule="0 2 * * *", start_within="15m")
    )
    async with client(notifier) as browser:
        one = page_text(await browser.get("/ui/deadlines/proj/prod/nightly"))
        timers = one.split('data-testid="timers"', 1)[1].split("</table>", 1)[0]
        assert "start_within" in timers
        assert "02:15:00 UTC" in timers
        assert "starts within 15m of <code>0 2 * * *</code> (UTC)" in one


@pytest.mark.parametrize("path", ["/ui/deadlines/proj/prod/nope", "/ui/deadlines/proj/prod/%00"])
async def test_unknown_deadlines_are_404(notifier: Notifier, path: str) -> None:
    async with client(notifier) as browser:
        assert (await browser.get(path)).status_code == 404


async def test_with_tokens_the_pages_need_a_login(notifier: Notifier) -> None:
    async with client(notifier, [TOKEN]) as browser:
        for path in ("/ui/deadlines", "/ui/deadlines/proj/prod/x"):
            answer: Any = await browser.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/ui/login?next=")
