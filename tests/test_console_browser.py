"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright.

One browser per module. The service runs on 127.0.0.1 (tests/live_server.py)
with its real dispatcher, sending to the SMTP and Slack test servers of
tests/servers/; PagerDuty is left unconfigured, so its messages land in the
dev inbox. With FLYTENOTIFY_SCREENSHOTS=DIR every page is also saved as a PNG
(the README's pictures come from here).

No ``playwright install``: the browser is /usr/bin/chromium. Without it these
tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from flytenotify import Email, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.config import DatabaseConfig, GroupingConfig, ServerConfig, Settings, SlackConfig
from flytenotify.web.console.auth import COOKIE
from tests.helpers import event_json
from tests.live_server import LiveServer
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer

CHROMIUM = Path("/usr/bin/chromium")
MAIL_HOST = "mail.example"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Another site on this machine: a "mail client" page links to the console from
    # here. It is served on 127.0.0.1; to the browser it is a different site.
    f"--host-resolver-rules=MAP {MAIL_HOST} 127.0.0.1",
]
WAIT_MS = 15_000  # the most any expected change may take to show (a bound, not a measure)
TOKEN = "browser-test-token-0123456789abcdef0123456789"
EVIL_NAME = "<script>alert(1)<img src=x onerror=alert(2)>"
EVIL_ERROR = "<script>alert(3)</script> the input file is empty"
# An HTML template is used as written in the email's HTML part (as FlyteAdmin does):
# the sandboxed preview must not run its script.
EVIL_TEMPLATE = "<p>Run {{ name }} {{ phase }}.</p><script>alert('from the email')</script>"
BOUNCE = "bounce@example.com"
# What Postfix answers for an unknown mailbox: an address inside a long reply.
BOUNCE_REPLY = (
    f"550 5.1.1 <{BOUNCE}>: Recipient address rejected: User unknown in virtual mailbox table"
)

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # the test extra is not installed
    sync_playwright = None  # type: ignore[assignment]


def _unavailable() -> str | None:
    if sync_playwright is None:
        return "playwright (Python) is not installed: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install -y chromium"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


class _LoopThread:
    """An event loop on a thread, for the aiohttp-based Slack test server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackApiServer]:
    loop = _LoopThread()
    server = loop.run(SlackApiServer().start())
    yield server
    loop.run(server.stop())
    loop.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        server.script("RCPT", BOUNCE_REPLY, address=BOUNCE, times=1)
        yield server


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, slack: SlackApiServer
) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("console") / "ledger.db"
    settings = Settings(
        database=DatabaseConfig(url=str(db)),
        smtp=smtp.smtp_config(sender="flyte@example.com"),
        slack=SlackConfig(
            bot_token=SecretStr(DEFAULT_TOKEN), base_url=slack.base_url, per_channel_interval=0
        ),
    )
    with LiveServer(db, settings) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        plan = {
            "version": "v1",
            "notifications": [
                Email([P.FAILED], ["ops@example.com", BOUNCE, "dev-ops@example.com"]).to_dict(),
                Email([P.FAILED], ["html@example.com"], template=EVIL_TEMPLATE).to_dict(),
                Slack([P.FAILED], ["#alerts"]).to_dict(),
                PagerDuty([P.FAILED], ["data-oncall"]).to_dict(),
            ],
        }
        answer = api.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
        assert answer.status_code == 200, answer.text
        _fail(server, EVIL_NAME, EVIL_ERROR)
        yield server


def _fail(server: LiveServer, name: str, error: str = "boom") -> None:
    with httpx.Client(base_url=server.url, timeout=10) as api:
        created = api.post(
            "/api/v1/executions",
            json={
                "id": {"project": "proj", "domain": "prod", "name": name},
                "launch_plan": {"project": "proj", "domain": "prod", "name": "nightly"},
            },
        )
        assert created.status_code == 201, created.text
        sent = api.post("/api/v1/events", json=event_json(name, "FAILED", error=error))
        assert sent.status_code == 202, sent.text


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test; every dialog (alert) is recorded and dismissed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs  # type: ignore[attr-defined]
    yield opened
    context.close()
    assert dialogs == [], f"a script ran: {dialogs}"


def _shot(page: Page, name: str, full_page: bool = False) -> None:
    folder = os.environ.get("FLYTENOTIFY_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = str(Path(folder) / f"{name}.png")
    size = page.viewport_size
    if not full_page or size is None:
        page.screenshot(path=path)
        return
    # A window as tall as the page: Chromium leaves a sandboxed frame below the
    # fold unpainted in a full-page capture.
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": height})
    page.screenshot(path=path)
    page.set_viewport_size(size)


def _until(check: Callable[[], bool], page: Page, what: str) -> None:
    """Reload ``page`` until ``check()`` holds, within WAIT_MS."""
    for _ in range(WAIT_MS // 250):
        if check():
            return
        page.wait_for_timeout(250)
        page.reload()
    raise AssertionError(f"never happened: {what}")


def _delivery_id(service: LiveServer, recipient: str, status: str = "") -> int:
    """The delivery to ``recipient`` of the hostile execution, found with the console's filters."""
    query = {"recipient": recipient, "execution": f"proj/prod/{EVIL_NAME}"}
    if status:
        query["status"] = status
    with httpx.Client(base_url=service.url) as api:
        rows = api.get("/ui/deliveries/rows", params=query).text
    found = re.findall(r'<tr data-id="(\d+)"', rows)
    assert found, f"no delivery to {recipient} {status}"
    return int(found[0])


# -- the tests ---------------------------------------------------------------------------------


def test_the_list_updates_when_an_event_arrives(page: Page, service: LiveServer) -> None:
    page.goto(f"{service.url}/ui/deliveries")
    page.get_by_text("Updates live").wait_for()
    assert page.locator("tr[data-id]", has_text="run-live").count() == 0
    _fail(service, "run-live")
    page.locator("tr[data-id]", has_text="proj/prod/run-live").first.wait_for()  # no reload
    # And the rows' statuses follow the dispatcher.
    page.locator("tr[data-id]", has_text="run-live").filter(has_text="#alerts").filter(
        has_text="delivered"
    ).wait_for()
    _shot(page, "deliveries")
    page.set_viewport_size({"width": 390, "height": 844})
    _shot(page, "deliveries-narrow")


def test_filters(page: Page, service: LiveServer) -> None:
    page.goto(f"{service.url}/ui/deliveries")
    page.get_by_label("Recipient").fill("#alerts")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/deliveries?*recipient=%23alerts*")
    rows = page.locator("tbody tr[data-id]")
    assert rows.count() >= 1
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").nth(3).inner_text() == "#alerts"
    page.get_by_label("Status").select_option("dead")
    page.get_by_label("Recipient").fill("")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=dead*")
    statuses = page.locator("tbody tr[data-id] .badge").all_inner_texts()
    assert statuses
    assert set(statuses) == {"dead"}


def test_a_delivery_shows_the_email_and_the_slack_message(page: Page, service: LiveServer) -> None:
    email_id = _delivery_id(service, "ops@example.com")
    page.goto(f"{service.url}/ui/deliveries/{email_id}")
    frame = page.frame_locator("iframe.email-html")
    frame.locator("body").get_by_text("the input file is empty").wait_for()
    assert page.locator("iframe.email-html").get_attribute("sandbox") == ""
    assert page.get_by_role("cell", name="multipart/alternative;", exact=False).count() == 1
    assert "<script>alert(3)</script>" in page.locator("pre.email-text").inner_text()
    _shot(page, "delivery-email", full_page=True)

    slack_id = _delivery_id(service, "#alerts")
    page.goto(f"{service.url}/ui/deliveries/{slack_id}")
    preview = page.get_by_test_id("slack-preview")
    assert "failed" in preview.locator(".slack-header").inner_text()
    assert preview.locator(".slack-field").count() >= 4
    assert "<script>alert(3)</script>" in preview.locator(".slack-pre").inner_text()
    _shot(page, "delivery-slack", full_page=True)


def test_the_email_sandbox_runs_no_script(page: Page, service: LiveServer) -> None:
    html_id = _delivery_id(service, "html@example.com")
    page.goto(f"{service.url}/ui/deliveries/{html_id}")
    frame = page.frame_locator("iframe.email-html")
    frame.get_by_text("Run", exact=False).first.wait_for()
    # An empty sandbox is an opaque origin: the page cannot reach into it, nor it out.
    assert page.evaluate("document.querySelector('iframe.email-html').contentDocument") is None
    page.wait_for_timeout(300)  # give a script the chance it must not take
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_hostile_names_stay_inert_and_literal(page: Page, service: LiveServer) -> None:
    page.goto(f"{service.url}/ui/deliveries")
    page.get_by_text(f"proj/prod/{EVIL_NAME}").first.wait_for()
    page.get_by_text(f"proj/prod/{EVIL_NAME}").first.click()
    page.wait_for_url("**/ui/executions/**")
    page.get_by_text(EVIL_ERROR, exact=False).first.wait_for()
    assert EVIL_NAME in page.locator("h1").inner_text()
    _shot(page, "execution", full_page=True)
    for path in ("/ui/dead-letters", "/ui/inbox", "/ui/status", "/ui/launch-plans"):
        page.goto(f"{service.url}{path}")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_a_dead_letter_is_redriven_with_a_click(
    page: Page, service: LiveServer, smtp: SmtpServer
) -> None:
    dead_id = _delivery_id(service, BOUNCE, "dead")
    page.goto(f"{service.url}/ui/dead-letters")
    row = page.locator(f'tr[data-id="{dead_id}"]')
    assert f"550 5.1.1 <{BOUNCE}>" in row.inner_text()
    _shot(page, "dead-letters")
    row.get_by_role("button", name="Re-drive…").click()
    page.get_by_role("button", name="Yes, re-drive").click()
    page.get_by_text("Re-driven: 1").wait_for()
    page.goto(f"{service.url}/ui/deliveries/{dead_id}")
    _until(lambda: page.locator("h1 .badge").inner_text() == "delivered", page, "delivered")
    assert page.get_by_text("re-drive", exact=True).count() == 1  # in the audit trail
    assert [m for m in smtp.messages if BOUNCE in m.rcpt_tos]  # the SMTP server has it


def test_other_pages(page: Page, service: LiveServer) -> None:
    page.goto(f"{service.url}/ui/launch-plans")
    page.get_by_text("proj/prod/nightly@v1").wait_for()
    _shot(page, "launch-plans", full_page=True)
    page.goto(f"{service.url}/ui/status")
    email_row = page.locator("tr", has_text="email").first
    assert "configured" in email_row.inner_text()
    pagerduty_row = page.locator("tr", has=page.get_by_role("cell", name="pagerduty", exact=True))
    assert "dev inbox" in pagerduty_row.inner_text()
    _shot(page, "status", full_page=True)
    page.goto(f"{service.url}/ui/inbox")
    page.locator(".mail-list li.open").wait_for()
    assert "data-oncall" in page.locator(".mail-list").inner_text()
    assert '"event_action": "trigger"' in page.locator(".mail-view pre.json").inner_text()
    _shot(page, "inbox")


def test_a_silence_is_made_and_ended_with_the_form(page: Page, service: LiveServer) -> None:
    # A project no event of this module names: the other tests' deliveries are not held.
    page.goto(f"{service.url}/ui/silences")
    page.get_by_label("Project").fill("quiet-project")
    page.get_by_label("FAILED").check()
    page.get_by_label("For").fill("3h")
    page.get_by_label("Author").fill("alice@example.com")
    page.get_by_label("Comment").fill(f"backfill {EVIL_NAME}")
    page.get_by_role("button", name="Create silence").click()
    page.wait_for_url("**/ui/silences/*?held=0*")  # and the form's #new
    assert page.locator("h1 .badge").inner_text() == "active"
    assert "project=quiet-project phases=FAILED" in page.locator("table.kv").inner_text()
    assert f"backfill {EVIL_NAME}" in page.locator("table.kv").inner_text()  # text, not markup
    _shot(page, "silence", full_page=True)
    page.get_by_label("Author").fill("bob")
    page.get_by_label("Send what it held").check()
    page.get_by_role("button", name="End silence").click()
    page.get_by_text("Ended;").wait_for()
    assert page.locator("h1 .badge").inner_text() == "ended"
    page.goto(f"{service.url}/ui/silences")
    assert "quiet-project" in page.locator("#silences").inner_text()
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_the_token_prompt_guards_every_page(browser: Browser, tmp_path: Path) -> None:
    server = ServerConfig(api_tokens=[SecretStr(TOKEN)])
    with LiveServer(tmp_path / "tokens.db", server=server) as service:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        for path in ("/ui/deliveries", "/ui/dead-letters", "/ui/launch-plans", "/ui/status"):
            page.goto(f"{service.url}{path}")
            assert "/ui/login?next=" in page.url
            assert page.get_by_label("API token").is_visible()
        _shot(page, "login")
        page.get_by_label("API token").fill("wrong-token-wrong-token-wrong-token")
        page.get_by_role("button", name="Log in").click()
        page.get_by_text("That token is not accepted.").wait_for()
        page.get_by_label("API token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{service.url}/ui/status")
        (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        assert cookie["secure"] is False  # plain HTTP on 127.0.0.1
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/ui/login")
        page.goto(f"{service.url}/ui/deliveries")
        assert "/ui/login?next=" in page.url
        context.close()


# -- layout ------------------------------------------------------------------------------------

# Every word (a run of non-space characters) in the cells matched that the browser
# laid out over more than one line: a word broken mid-token.
BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const node = walker.currentNode;
      for (const word of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""


def test_words_stay_whole_and_pages_fit_a_phone(page: Page, service: LiveServer) -> None:
    _fail(service, "storm-6")
    page.goto(f"{service.url}/ui/deliveries")
    page.locator("tr[data-id]", has_text="dev-ops@example.com").filter(has_text="storm-6").filter(
        has_text="delivered"
    ).wait_for()
    assert page.evaluate(BROKEN_WORDS, "tbody tr[data-id] td") == []
    # ... and the list fits the window: no column pushed out of sight.
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("e => e.scrollWidth <= e.clientWidth")
    bounce = _delivery_id(service, BOUNCE)
    page.goto(f"{service.url}/ui/deliveries/{bounce}")
    assert BOUNCE_REPLY in page.locator("table.list").inner_text()
    assert page.evaluate(BROKEN_WORDS, "table.list td, table.kv td") == []
    page.set_viewport_size({"width": 390, "height": 844})
    email = _delivery_id(service, "dev-ops@example.com")
    for path in (f"/ui/deliveries/{bounce}", f"/ui/deliveries/{email}", "/ui/launch-plans"):
        page.goto(f"{service.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


# -- a reader's whole visit, black-box ------------------------------------------------------------


class _MailClient:
    """Another site, as a webmail would be: a page linking to the console and a form
    posting to it. Served on 127.0.0.1; the browser knows it as ``MAIL_HOST``."""

    def __init__(self) -> None:
        self.page = ""
        handler = self._handler()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://{MAIL_HOST}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        client = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = client.page.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> _MailClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def test_a_reader_logs_in_follows_a_mail_link_redrives_and_logs_out(
    browser: Browser, tmp_path: Path
) -> None:
    """The console with tokens, as one reader uses it: log in; follow a link from a
    mail client on another site (it opens logged in, on a delivery folded into a
    digest); another site's form cannot log the reader out; re-drive a dead
    letter; log out, after which a copy of the cookie opens nothing."""
    names = ["run-a", "run-b", "run-c"]
    with SmtpServer() as smtp, _MailClient() as mail:
        smtp.script("RCPT", BOUNCE_REPLY, address=BOUNCE, times=1)
        settings = Settings(
            database=DatabaseConfig(url=str(tmp_path / "visit.db")),
            smtp=smtp.smtp_config(sender="flyte@example.com"),
            grouping=GroupingConfig(window=1.0),
        )
        server = ServerConfig(api_tokens=[SecretStr(TOKEN)])
        with LiveServer(tmp_path / "visit.db", settings, server) as service:
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=service.url, headers=bearer, timeout=10) as api:
                plan = {
                    "version": "v1",
                    "notifications": [Email([P.FAILED], ["ops@example.com", BOUNCE]).to_dict()],
                }
                assert api.put("/api/v1/launch-plans/proj/prod/nightly", json=plan).is_success
                lp = {"project": "proj", "domain": "prod", "name": "nightly"}
                events = [
                    {**event_json(n, "FAILED", error=f"{n}: empty"), "launch_plan": lp}
                    for n in names
                ]
                assert api.post("/api/v1/events:batch", json=events).is_success

            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

            # Log in.
            page.goto(f"{service.url}/ui/deliveries")
            page.get_by_label("API token").fill(TOKEN)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{service.url}/ui/deliveries")
            digest_row = page.locator("tr[data-id]", has_text="ops@example.com").filter(
                has_text="digest of 3"
            )
            digest_row.first.wait_for()
            member = int(digest_row.nth(1).get_attribute("data-id") or 0)

            # A link in an email, followed from another site, opens the page logged in.
            mail.page = (
                f'<p><a id="open" href="{service.url}/ui/deliveries/{member}">See it</a></p>'
                f'<form method="post" action="{service.url}/ui/logout">'
                '<button id="trap">Claim your prize</button></form>'
            )
            page.goto(mail.url)
            page.locator("#open").click()
            page.wait_for_url(f"{service.url}/ui/deliveries/{member}")
            assert page.get_by_role("button", name="Log out").is_visible()
            note = page.get_by_test_id("digest-note")
            assert f"delivery #{member} is one of them" in note.inner_text()
            for name in names:
                assert f"proj/prod/{name}" in note.inner_text()
            assert note.locator("li.current").inner_text().endswith("(this delivery)")
            subject = page.locator(".email .headers tr", has_text="Subject").inner_text()
            assert "3 executions of nightly failed" in subject
            html_part = page.frame_locator("iframe.email-html")
            html_part.get_by_text("3 executions of nightly failed").first.wait_for()
            _shot(page, "delivery-digest", full_page=True)

            # Another site's form posts without the session: refused, and nobody is logged out.
            page.goto(mail.url)
            page.locator("#trap").click()
            page.get_by_text("Log in with an API token first.").wait_for()
            page.goto(f"{service.url}/ui/deliveries")
            assert page.url == f"{service.url}/ui/deliveries"
            assert page.get_by_role("button", name="Log out").is_visible()

            # The digest's rows, from the delivery page's link.
            page.goto(f"{service.url}/ui/deliveries/{member}")
            page.get_by_role("link", name="their deliveries").click()
            page.wait_for_url("**/ui/deliveries?message=digest*")
            assert page.locator("tbody tr[data-id]").count() == 3

            # Re-drive one of the dead letters (the bounce's digest was refused).
            page.goto(f"{service.url}/ui/dead-letters")
            dead = page.locator("tr[data-id]", has_text=BOUNCE).first
            dead_id = int(dead.get_attribute("data-id") or 0)
            dead.get_by_role("button", name="Re-drive…").click()
            page.get_by_role("button", name="Yes, re-drive").click()
            page.get_by_text("Re-driven: 1").wait_for()
            page.goto(f"{service.url}/ui/deliveries/{dead_id}")
            _until(lambda: page.locator("h1 .badge").inner_text() == "delivered", page, "sent")
            numbers = page.locator("table.list tbody tr td:first-child").all_inner_texts()
            assert numbers == ["1", "", "2"]  # the re-drive is no attempt of its own
            assert [m for m in smtp.messages if m.rcpt_tos == (BOUNCE,)]

            # Log out: the cookie, kept anywhere, opens nothing any more.
            (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
            page.get_by_role("button", name="Log out").click()
            page.wait_for_url("**/ui/login")
            kept = httpx.get(
                f"{service.url}/ui/deliveries", cookies={COOKIE: cookie["value"]}, timeout=10
            )
            assert kept.status_code == 303
            assert kept.headers["location"].startswith("/ui/login")
            page.goto(f"{service.url}/ui/deliveries/{member}")
            assert "/ui/login?next=" in page.url
            context.close()
            assert dialogs == []
