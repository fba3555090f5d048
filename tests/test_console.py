"""The web console over plain HTTP: pages, escaping, CSRF, login cookies, filters, paging.

A real Notifier on a real ledger (SQLite file, and PostgreSQL where marked by
the ``database_url`` fixture), the real Starlette app, httpx's ASGI transport.
The browser tests are in test_console_browser.py.
"""

from __future__ import annotations

import email.utils
import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from flytenotify import Email, Notification, PagerDuty, Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, GroupingConfig, ServerConfig, Settings
from flytenotify.domain import DeliveryStatus, EntityId, ExecutionId
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.api import create_app, document
from flytenotify.web.console import slack_html
from flytenotify.web.console.auth import COOKIE
from tests.helpers import event_json
from tests.servers.smtp import SmtpServer

PLAN = EntityId("proj", "prod", "nightly", "v1")
# No "/" is allowed in an execution name; this is as hostile as one can be.
EVIL_NAME = "<script>alert(1)<img src=x onerror=alert(2)>"
EVIL_ERROR = "<script>alert(3)</script> & <b>bold</b>"
TOKEN = "console-test-token-0123456789abcdef0123456789"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


async def _fill(notifier: Notifier) -> ExecutionId:
    """One failed execution with a hostile name and error, and its deliveries dispatched."""
    await notifier.register_launch_plan(
        PLAN,
        [
            Email([P.FAILED], ["ops@example.com"]),
            Slack([P.FAILED], ["#data-alerts"]),
            PagerDuty([P.FAILED], ["data-oncall"]),
        ],
    )
    execution = ExecutionId("proj", "prod", EVIL_NAME)
    await notifier.create_execution(execution, PLAN)
    await notifier.report_event(event_json(EVIL_NAME, "FAILED", error=EVIL_ERROR))
    await notifier.run_until_idle()
    return execution


def _client(notifier: Notifier, tokens: list[str] = (), https: bool = False) -> httpx.AsyncClient:  # type: ignore[assignment]
    server = ServerConfig(api_tokens=[SecretStr(t) for t in tokens])
    app = create_app(notifier, server)
    base = "https://console.test" if https else "http://console.test"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@pytest.fixture
async def notifier(tmp_path: Path) -> AsyncIterator[Notifier]:
    settings = Settings(database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    async with Notifier(settings, dev_inbox=True) as n:
        yield n


@pytest.fixture
async def client(notifier: Notifier) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(notifier) as c:
        yield c


def _csrf(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def _row_ids(page: httpx.Response) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page.text)]


# -- every page, escaped ---------------------------------------------------------------


async def test_every_page_renders_hostile_values_as_text(database_url: str) -> None:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as notifier, _client(notifier) as client:
        execution = await _fill(notifier)
        ids = [d.id for d in await notifier.deliveries()]
        exec_path = "/ui/executions/proj/prod/" + httpx.URL(path=EVIL_NAME).raw_path.decode()
        paths = [
            "/ui/deliveries",
            "/ui/deliveries/rows",
            *[f"/ui/deliveries/{i}" for i in ids],
            exec_path,
            "/ui/dead-letters",
            "/ui/launch-plans",
            "/ui/status",
            "/ui/inbox",
        ]
        for path in paths:
            page = await client.get(path)
            assert page.status_code == 200, (path, page.text)
            assert page.headers["content-security-policy"].startswith("default-src 'none'")
            assert "script-src 'self'" in page.headers["content-security-policy"]
            # Our own script tag is the only one; the hostile ones are text.
            assert page.text.count("<script") == (0 if path.endswith("/rows") else 1), path
            assert "<img src=x" not in page.text, path
            assert "<b>bold" not in page.text, path
        timeline = await client.get(exec_path)
        assert html.escape(EVIL_NAME) in timeline.text
        assert html.escape(EVIL_ERROR, quote=False) in timeline.text
        assert "Event FAILED" in timeline.text
        assert f"#{ids[0]}" in timeline.text
        assert str(execution) in html.unescape(timeline.text)


async def test_the_email_is_shown_in_an_empty_sandbox(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    await _fill(notifier)
    (email,) = await notifier.deliveries(DeliveryFilter(recipient="ops@example.com"))
    page = await client.get(f"/ui/deliveries/{email.id}")
    (iframe,) = re.findall(r"<iframe[^>]*>", page.text)
    assert 'sandbox=""' in iframe
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', iframe).group(1))  # type: ignore[union-attr]
    # The HTML part as the email channel encodes it: the error escaped once more inside.
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in srcdoc
    assert "<script" not in srcdoc
    assert "Message-ID" in page.text
    assert "multipart/alternative" in page.text
    assert "To</th><td>ops@example.com" in page.text


async def test_slack_and_pagerduty_previews(notifier: Notifier, client: httpx.AsyncClient) -> None:
    await _fill(notifier)
    (slack,) = await notifier.deliveries(DeliveryFilter(recipient="#data-alerts"))
    page = await client.get(f"/ui/deliveries/{slack.id}")
    assert 'class="slack-header"' in page.text
    assert 'class="slack-fields"' in page.text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page.text  # inside the error block
    (pd,) = await notifier.deliveries(DeliveryFilter(recipient="data-oncall"))
    page = await client.get(f"/ui/deliveries/{pd.id}")
    assert '<pre class="json">' in page.text
    assert "&#34;event_action&#34;: &#34;trigger&#34;" in (page.text)


@pytest.mark.parametrize(
    "path",
    [
        "/ui/deliveries/999999",
        "/ui/deliveries/abc",
        "/ui/deliveries/0",
        "/ui/executions/proj/prod/never-ran",
        "/ui/inbox?open=424242",
        "/ui/no-such-page",
    ],
)
async def test_unknown_ids_and_pages_are_404(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Back to the deliveries" in page.text


# -- CSRF and re-drives ------------------------------------------------------------------


@pytest.fixture
async def dead(tmp_path: Path) -> AsyncIterator[Notifier]:
    """No channel configured and no dev inbox: a Slack channel recipient is dead-lettered."""
    settings = Settings(database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'dead.db'}"))
    async with Notifier(settings, dev_inbox=False) as n:
        await n.register_launch_plan(PLAN, [Slack([P.FAILED], ["#data-alerts"])])
        await n.create_execution(ExecutionId("proj", "prod", "run-1"), PLAN)
        await n.report_event(event_json("run-1", "FAILED"))
        await n.run_until_idle()
        yield n


async def test_redrive_without_the_csrf_token_is_refused(dead: Notifier) -> None:
    (letter,) = await dead.deliveries()
    assert letter.status is DeliveryStatus.DEAD
    async with _client(dead) as client:
        await client.get("/ui/dead-letters")  # a session cookie, but no token posted
        for form in ({"id": str(letter.id)}, {"id": str(letter.id), "csrf_token": "0" * 64}):
            refused = await client.post("/ui/dead-letters/redrive", data=form)
            assert refused.status_code == 403
            assert "CSRF token is missing or wrong" in refused.text
        # Another session's token is no good either.
        async with _client(dead) as other:
            foreign = _csrf(await other.get("/ui/dead-letters"))
        refused = await client.post(
            "/ui/dead-letters/redrive", data={"id": str(letter.id), "csrf_token": foreign}
        )
        assert refused.status_code == 403
    assert (await dead.delivery(letter.id)).status is DeliveryStatus.DEAD  # type: ignore[union-attr]


async def test_redrive_asks_for_confirmation_then_redrives(dead: Notifier) -> None:
    (letter,) = await dead.deliveries()
    async with _client(dead) as client:
        page = await client.get("/ui/dead-letters")
        assert _row_ids(page) == [letter.id]
        assert "no Slack" in page.text or letter.last_reply[:20] in html.unescape(page.text)
        token = _csrf(page)
        asked = await client.post(
            "/ui/dead-letters/redrive", data={"one": str(letter.id), "csrf_token": token}
        )
        assert asked.status_code == 200
        assert "Yes, re-drive" in asked.text
        assert (await dead.delivery(letter.id)).status is DeliveryStatus.DEAD  # type: ignore[union-attr]
        done = await client.post(
            "/ui/dead-letters/redrive",
            data={"id": str(letter.id), "confirm": "yes", "csrf_token": _csrf(asked)},
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/ui/dead-letters?redriven=1&skipped=0"
    redriven = await dead.delivery(letter.id)
    assert redriven is not None
    assert redriven.status is DeliveryStatus.PENDING
    assert [a.outcome for a in await dead.attempts(letter.id)][-1] == "redrive"


async def test_redrive_refuses_malformed_ids(dead: Notifier) -> None:
    async with _client(dead) as client:
        token = _csrf(await client.get("/ui/dead-letters"))
        for form in ({}, {"id": "x"}, {"id": "-1"}):
            answer = await client.post(
                "/ui/dead-letters/redrive", data={**form, "csrf_token": token}
            )
            assert answer.status_code == 400, form
            assert "id" in answer.text.lower()


# -- tokens, sessions, cookies ---------------------------------------------------------------


async def test_with_tokens_every_page_needs_a_login(notifier: Notifier) -> None:
    await _fill(notifier)
    async with _client(notifier, [TOKEN]) as client:
        for path in ("/ui/deliveries", "/ui/status", "/ui/deliveries/1", "/ui/static/console.css"):
            answer = await client.get(path)
            if path.startswith("/ui/static"):
                assert answer.status_code == 200  # the stylesheet is public
                continue
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/login?next=%2Fui%2F")
        refused = await client.post("/ui/dead-letters/redrive", data={"id": "1"})
        assert refused.status_code == 401
        rows = await client.get("/ui/deliveries/rows")
        assert rows.status_code == 303
        assert "ops@example.com" not in rows.text


async def test_login_sets_a_lax_http_only_cookie(notifier: Notifier) -> None:
    await _fill(notifier)
    async with _client(notifier, [TOKEN]) as client:
        form = await client.get("/ui/login?next=/ui/status")
        assert form.status_code == 200
        assert 'type="password"' in form.text
        token = _csrf(form)
        wrong = await client.post(
            "/ui/login?next=/ui/status", data={"token": "nope" * 10, "csrf_token": token}
        )
        assert wrong.status_code == 401
        assert "not accepted" in wrong.text
        no_csrf = await client.post("/ui/login", data={"token": TOKEN})
        assert no_csrf.status_code == 403
        ok = await client.post(
            "/ui/login?next=/ui/status", data={"token": TOKEN, "csrf_token": _csrf(wrong)}
        )
        assert ok.status_code == 303
        assert ok.headers["location"] == "/ui/status"
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        flags = {part.strip().lower() for part in cookie.split(";")}
        # Lax: a link followed from a mail client carries it; another site's POSTs do not.
        assert {"httponly", "samesite=lax", "path=/ui"} <= flags
        assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
        status = await client.get("/ui/status")
        assert status.status_code == 200
        assert "Log out" in status.text

        # The JSON API keeps its bearer tokens: the console's cookie opens nothing there.
        assert (await client.get("/api/v1/deliveries")).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/v1/deliveries", headers=bearer)).status_code == 200

        # A cookie changed by hand is no session.
        # (the last hex digit of the signature changed: "00" at its end was a no-op
        # once in 256 sessions)
        real = client.cookies[COOKIE]
        client.cookies.set(COOKIE, real[:-1] + ("1" if real[-1] == "0" else "0"), path="/ui")
        assert (await client.get("/ui/status")).status_code == 303


async def test_login_over_tls_makes_the_cookie_secure(notifier: Notifier) -> None:
    async with _client(notifier, [TOKEN], https=True) as client:
        token = _csrf(await client.get("/ui/login"))
        ok = await client.post("/ui/login", data={"token": TOKEN, "csrf_token": token})
        assert ok.status_code == 303
        assert "secure" in {p.strip().lower() for p in ok.headers["set-cookie"].split(";")}


async def test_logout_ends_the_session_and_next_stays_on_the_console(notifier: Notifier) -> None:
    async with _client(notifier, [TOKEN]) as client:
        token = _csrf(await client.get("/ui/login"))
        ok = await client.post(
            "/ui/login?next=//evil.example/x", data={"token": TOKEN, "csrf_token": token}
        )
        assert ok.headers["location"] == "/ui/deliveries"
        page = await client.get("/ui/deliveries")
        out = await client.post("/ui/logout", data={"csrf_token": _csrf(page)})
        assert out.status_code == 303
        assert (await client.get("/ui/deliveries")).status_code == 303


async def _log_in(client: httpx.AsyncClient) -> str:
    """Log ``client`` in; the session cookie's value."""
    token = _csrf(await client.get("/ui/login"))
    ok = await client.post("/ui/login", data={"token": TOKEN, "csrf_token": token})
    assert ok.status_code == 303
    return client.cookies[COOKIE]


def _sets_session_cookie(answer: httpx.Response) -> bool:
    return any(c.startswith(f"{COOKIE}=") for c in answer.headers.get_list("set-cookie"))


async def test_a_request_without_the_session_cookie_never_replaces_it(notifier: Notifier) -> None:
    """A browser withholds the cookie on some cross-site requests: such a request
    must not answer with a logged-out cookie that overwrites the logged-in one."""
    await _fill(notifier)
    (one, *_) = await notifier.deliveries()
    async with _client(notifier, [TOKEN]) as client, _client(notifier, [TOKEN]) as bare:
        await _log_in(client)
        asked = [
            ("GET", f"/ui/deliveries/{one.id}"),
            ("GET", "/ui/login"),
            ("GET", "/ui/no-such-page"),
            ("POST", "/ui/logout"),
            ("POST", "/ui/dead-letters/redrive"),
        ]
        for method, path in asked:
            answer = await bare.request(method, path, data={"id": str(one.id)})
            assert answer.status_code in (200, 303, 401), (method, path)
            assert not _sets_session_cookie(answer), (method, path)
            bare.cookies.clear()
        page = await client.get(f"/ui/deliveries/{one.id}")
    assert page.status_code == 200
    assert "Log out" in page.text


async def test_logging_out_ends_the_session_for_every_replica(database_url: str) -> None:
    """The session is kept in the ledger: logging out on one replica ends it on all,
    and a copy of the cookie opens nothing anywhere afterwards."""
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with (
        Notifier(settings) as one,
        Notifier(settings) as two,
        _client(one, [TOKEN]) as first,
        _client(two, [TOKEN]) as second,
    ):
        cookie = await _log_in(first)
        second.cookies.set(COOKIE, cookie, path="/ui")
        page = await second.get("/ui/deliveries")
        assert page.status_code == 200  # the other replica knows the session
        out = await second.post("/ui/logout", data={"csrf_token": _csrf(page)})
        assert out.status_code == 303
        kept = await first.get("/ui/deliveries")  # the cookie, kept by another tab
        assert kept.status_code == 303
        assert kept.headers["location"].startswith("/ui/login")
        again = await first.post("/ui/logout", data={"csrf_token": _csrf(page)})
        assert again.status_code == 401
        await _log_in(first)  # a new login is a new session
        assert (await first.get("/ui/deliveries")).status_code == 200


async def test_json_401s_say_how_to_authenticate(notifier: Notifier) -> None:
    async with _client(notifier, [TOKEN]) as client:
        none = await client.get("/api/v1/deliveries")
        wrong = await client.get("/nowhere", headers={"Authorization": "Bearer " + "x" * 40})
    assert none.status_code == wrong.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="flytenotify"'
    assert wrong.headers["www-authenticate"] == 'Bearer realm="flytenotify", error="invalid_token"'
    described = document()["paths"]["/api/v1/deliveries"]["get"]["responses"]["401"]
    assert "WWW-Authenticate" in described["headers"]  # the OpenAPI document says so too


async def test_without_a_session_only_the_paths_the_docs_list_answer(notifier: Notifier) -> None:
    """docs/http-api.md lists the console paths that answer without a session; every
    other console path, existing or not, sends the visitor to the login page."""
    docs = (Path(__file__).parent.parent / "docs" / "http-api.md").read_text(encoding="utf-8")
    table = docs.split("<!-- public-console-paths", 1)[1].split("\n\n", 1)[0]
    public = re.findall(r"^\| `(/ui/[^`]*)` \|", table, re.MULTILINE)
    assert public == ["/ui/login", "/ui/static/console.css", "/ui/static/console.js", "/ui/act"]
    gated = [
        "/ui/",
        "/ui/deliveries",
        "/ui/deliveries/1",
        "/ui/inbox",
        "/ui/static/",
        "/ui/static/nothing.css",
        "/ui/static/../auth.py",
        "/ui/no-such-page",
    ]
    async with _client(notifier, [TOKEN]) as client:
        for path in public[:-1]:
            assert (await client.get(path)).status_code == 200, path
        # A signed link's page answers for itself: here, no link_secret is configured.
        assert (await client.get("/ui/act?token=x")).status_code == 404
        for path in gated:
            answer = await client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/login?next="), path
        assert (await client.delete("/ui/deliveries")).status_code == 401
        await _log_in(client)
        assert (await client.get("/ui/no-such-page")).status_code == 404  # now it may know
        assert (await client.get("/ui/static/nothing.css")).status_code == 404


# -- filters and paging ------------------------------------------------------------------------


async def _many(notifier: Notifier) -> None:
    other = EntityId("proj", "prod", "hourly", "v3")
    await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["a@example.com"])])
    await notifier.register_launch_plan(
        other, [Email([P.FAILED], ["b@example.com"]), Slack([P.FAILED], ["#ops"])]
    )
    for name, plan, domain in (("r1", PLAN, "prod"), ("r2", other, "prod"), ("r3", other, "dev")):
        await notifier.create_execution(ExecutionId("proj", domain, name), plan)
        await notifier.report_event(event_json(name, "FAILED", domain=domain))
    await notifier.run_until_idle()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("recipient=b%40example.com", {("r2", "b@example.com"), ("r3", "b@example.com")}),
        ("launch_plan=nightly", {("r1", "a@example.com")}),
        ("domain=dev", {("r3", "b@example.com"), ("r3", "#ops")}),
        ("project=proj&domain=prod&recipient=%23ops", {("r2", "#ops")}),
        ("execution=proj%2Fdev%2Fr3&status=delivered", {("r3", "b@example.com"), ("r3", "#ops")}),
        ("status=dead", set()),
        ("channel=inbox&launch_plan=hourly&domain=prod", {("r2", "b@example.com"), ("r2", "#ops")}),
    ],
)
async def test_filters(database_url: str, query: str, expected: set[tuple[str, str]]) -> None:
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as notifier, _client(notifier) as client:
        await _many(notifier)
        every = {d.id: (d.execution_id.name, d.recipient) for d in await notifier.deliveries()}
        for path in ("/ui/deliveries", "/ui/deliveries/rows"):
            page = await client.get(f"{path}?{query}")
            assert page.status_code == 200
            assert {every[i] for i in _row_ids(page)} == expected, path


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("execution=just-a-name", "execution"),
        ("domain=a%2Fb", "domain"),
        ("recipient=a%00b", "recipient"),
        ("before=abc", "before"),
    ],
)
async def test_bad_filters_say_which_field(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    page = await client.get(f"/ui/deliveries?{query}")
    assert page.status_code == 400
    assert f"<code>{field}</code>" in page.text
    assert (await client.get(f"/ui/deliveries/rows?{query}")).status_code == 400


async def test_pages_go_back_by_id(notifier: Notifier, client: httpx.AsyncClient) -> None:
    recipients = [f"user{i}@example.com" for i in range(120)]
    await notifier.register_launch_plan(PLAN, [Email([P.FAILED], recipients)])
    await notifier.create_execution(ExecutionId("proj", "prod", "big"), PLAN)
    await notifier.report_event(event_json("big", "FAILED"))
    seen: list[int] = []
    path = "/ui/deliveries?domain=prod"
    for _ in range(5):
        page = await client.get(path)
        seen += _row_ids(page)
        older = re.search(r'href="(/ui/deliveries\?[^"]*before=\d+)">Older', page.text)
        if older is None:
            break
        path = html.unescape(older.group(1))
    assert seen == sorted(
        (d.id for d in await notifier.deliveries(DeliveryFilter(limit=500))), reverse=True
    )
    assert len(seen) == 120


# -- launch plans and status ---------------------------------------------------------------


async def test_launch_plans_warn_about_recipients_no_channel_routes(dead: Notifier) -> None:
    async with _client(dead) as client:
        page = await client.get("/ui/launch-plans")
    assert page.status_code == 200
    assert "proj/prod/nightly@v1" in page.text
    assert "No channel can route" in page.text
    assert "#data-alerts" in page.text


async def test_status_shows_channels_and_the_ledger(dead: Notifier) -> None:
    (letter,) = await dead.deliveries()
    async with _client(dead) as client:
        page = await client.get("/ui/status")
    assert page.status_code == 200
    states = dead.channel_states()
    for name, state in states.items():  # every channel of the registry
        assert re.search(rf"<td>{name}</td>\s*<td><span class=\"badge[^>]*>{state}<", page.text)
    # None is configured but the inline webhooks, which need no section of their own.
    assert {name for name, state in states.items() if state == "configured"} == {"inline_webhook"}
    assert f'href="/ui/deliveries/{letter.id}"' in page.text  # slack's last error
    assert re.search(r"status=dead\">dead</a></th><td>1<", page.text)


# -- Slack's mrkdwn, drawn safely --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mrkdwn", "drawn"),
    [
        (
            "*bold* _it_ ~gone~ `x<y`",
            "<strong>bold</strong> <em>it</em> <del>gone</del> <code>x&lt;y</code>",
        ),
        ("a &lt;script&gt; &amp; b", "a &lt;script&gt; &amp; b"),
        (
            "<https://x.example/a?b=1&amp;c=2|the &lt;b&gt;link>",
            '<a href="https://x.example/a?b=1&amp;c=2" rel="noopener noreferrer"'
            ' target="_blank">the &lt;b&gt;link</a>',
        ),
        ("<javascript:alert(1)|click>", "click"),
        (
            "<!channel> and <!here>",
            '<span class="slack-mention">@channel</span> and'
            ' <span class="slack-mention">@here</span>',
        ),
        (
            "```\n<script>*x*</script>\n```",
            '<pre class="slack-pre">&lt;script&gt;*x*&lt;/script&gt;</pre>',
        ),
        (":x: failed\nnext", "\u274c failed<br>next"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
    ],
)
def test_mrkdwn_is_drawn_as_safe_html(mrkdwn: str, drawn: str) -> None:
    assert str(slack_html.mrkdwn(mrkdwn)) == drawn


def test_block_kit_blocks_are_drawn() -> None:
    message = {
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "<b>Title</b> :x:"}},
            {"type": "divider"},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*A*\n1"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "_small_"}]},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open"},
                        "url": "https://f.example",
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Bad"},
                        "url": "javascript:x",
                    },
                ],
            },
            {"type": "image"},
        ]
    }
    drawn = str(slack_html.blocks(message))
    assert '<div class="slack-header">&lt;b&gt;Title&lt;/b&gt; \u274c</div>' in drawn
    assert '<hr class="slack-divider">' in drawn
    assert '<div class="slack-field"><strong>A</strong><br>1</div>' in drawn
    assert '<div class="slack-context"><span><em>small</em></span></div>' in drawn
    assert 'href="https://f.example"' in drawn
    assert "javascript:" not in drawn
    assert "[image block]" in drawn


async def test_forms_are_bounded_and_urlencoded(dead: Notifier) -> None:
    async with _client(dead) as client:
        token = _csrf(await client.get("/ui/dead-letters"))
        as_json = await client.post("/ui/dead-letters/redrive", json={"csrf_token": token})
        assert as_json.status_code == 415
        assert "application/x-www-form-urlencoded" in as_json.text
        many = [("id", "1")] * 1001 + [("csrf_token", token)]
        crowded = await client.post(
            "/ui/dead-letters/redrive",
            content=str(httpx.QueryParams(many)),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert crowded.status_code == 413
        huge = await client.post(
            "/ui/dead-letters/redrive",
            content="csrf_token=" + "x" * 300_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 413
    (letter,) = await dead.deliveries()
    assert letter.status is DeliveryStatus.DEAD


# -- the message as sent: digests, the inbox, the same bytes every time ---------------------


def _smtp_settings(tmp_path: Path, smtp: SmtpServer, database_url: str = "") -> Settings:
    return Settings(
        database=DatabaseConfig(url=database_url or f"sqlite:///{tmp_path / 'sent.db'}"),
        smtp=smtp.smtp_config(sender="flyte@example.com"),
    )


async def _storm(notifier: Notifier, names: list[str], recipients: list[Notification]) -> None:
    """Executions of one launch plan failing together: due together, sent as digests."""
    await notifier.register_launch_plan(PLAN, recipients)
    await notifier.report_events(
        [event_json(n, "FAILED", error=f"{n}: input is empty", launch_plan=PLAN) for n in names]
    )
    await notifier.run_until_idle()


def _shown_headers(page: httpx.Response) -> dict[str, str]:
    """The email headers a delivery page shows, as text."""
    table = re.search(r'<table class="headers">(.*?)</table>', page.text, re.DOTALL)
    assert table is not None, "no email headers on the page"
    cells = re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table.group(1), re.DOTALL)
    return {html.unescape(name): html.unescape(value) for name, value in cells}


async def test_a_digest_member_shows_the_digest_it_was_sent_in(tmp_path: Path) -> None:
    names = ["storm-1", "storm-2", "storm-3"]
    with SmtpServer() as smtp:
        settings = _smtp_settings(tmp_path, smtp)
        async with Notifier(settings) as notifier, _client(notifier) as client:
            await _storm(notifier, names, [Email([P.FAILED], ["ops@example.com"])])
            (received,) = smtp.messages  # one digest, naming all three
            rows = sorted(await notifier.deliveries(), key=lambda d: d.id)
            assert {d.message_id for d in rows} == {received.message["X-Flytenotify-Delivery"]}
            member = rows[1]
            page = await client.get(f"/ui/deliveries/{member.id}")
            listing = await client.get("/ui/deliveries")
    assert page.status_code == 200
    note = re.search(r'data-testid="digest-note">(.*?)</div>', page.text, re.DOTALL)
    assert note is not None, "the page does not say the delivery went out in a digest"
    assert f"delivery #{member.id} is one of them" in note.group(1)
    for row in rows:
        assert f'href="/ui/deliveries/{row.id}">#{row.id}</a>' in note.group(1)
    assert note.group(1).count("(this delivery)") == 1
    # The message shown is the digest the SMTP server received, not the row's own.
    shown = _shown_headers(page)
    for header in ("Subject", "Message-ID", "Date", "Content-Type", "From", "To"):
        assert " ".join(shown[header].split()) == " ".join(str(received.message[header]).split())
    assert shown["Subject"] == "3 executions of nightly failed"
    text = received.message.get_body(("plain",))
    assert text is not None
    shown_text = re.search(r'<pre class="email-text">(.*?)</pre>', page.text, re.DOTALL)
    assert shown_text is not None
    assert html.unescape(shown_text.group(1)) == text.get_content()
    # The list says which message carried each row, and links to the digest's rows.
    digest_link = (
        f"/ui/deliveries?message={httpx.URL(params={'m': member.message_id}).query.decode()[2:]}"
    )
    assert listing.text.count(">digest of 3</a>") == 3
    assert html.escape(digest_link) in listing.text


async def test_the_list_of_one_digest_is_its_rows(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        async with Notifier(_smtp_settings(tmp_path, smtp)) as notifier, _client(notifier) as c:
            await _storm(notifier, ["a-1", "a-2"], [Email([P.FAILED], ["ops@example.com"])])
            await notifier.register_launch_plan(
                EntityId("proj", "prod", "other", "v1"), [Email([P.FAILED], ["x@example.com"])]
            )
            await notifier.report_event(
                event_json("b-1", "FAILED", launch_plan=EntityId("proj", "prod", "other", "v1"))
            )
            await notifier.run_until_idle()
            digest = next(d for d in await notifier.deliveries() if d.message_size == 2)
            page = await c.get("/ui/deliveries", params={"message": digest.message_id})
            bad = await c.get("/ui/deliveries", params={"message": "nonsense"})
            every = {d.id: d.execution_id.name for d in await notifier.deliveries()}
    assert sorted(every[i] for i in _row_ids(page)) == ["a-1", "a-2"]
    assert bad.status_code == 400
    assert "<code>message</code>" in bad.text


async def test_the_inbox_lists_each_message_once_as_the_api_does(database_url: str) -> None:
    """Three executions failing together, to an email and a Slack recipient with no
    channel configured: two digests in the dev inbox, not six entries."""
    settings = Settings(database=DatabaseConfig(url=database_url))
    async with Notifier(settings, dev_inbox=True) as notifier, _client(notifier) as client:
        recipients = [Email([P.FAILED], ["ops@example.com"]), Slack([P.FAILED], ["#ops"])]
        await _storm(notifier, ["i-1", "i-2", "i-3"], recipients)
        api = (await client.get("/api/v1/inbox")).json()["items"]
        page = await client.get("/ui/inbox")
        opened = {
            m["id"]: await client.get("/ui/inbox", params={"open": str(m["id"])}) for m in api
        }
        assert len(await notifier.deliveries()) == 6
    assert len(api) == 2
    listed = [int(i) for i in re.findall(r'<li data-id="(\d+)"', page.text)]
    assert listed == sorted((m["id"] for m in api), reverse=True)  # newest first
    subjects = re.findall(r'<span class="mail-subject">(.*?)</span>', page.text)
    assert sorted(html.unescape(s) for s in subjects) == sorted(m["subject"] for m in api)
    assert page.text.count("digest of 3") == 2
    for message in api:
        shown = opened[message["id"]]
        assert shown.status_code == 200
        assert 'data-testid="digest-note"' in shown.text
        for name in ("i-1", "i-2", "i-3"):
            assert f"proj/prod/{name}" in shown.text
        if message["kind"] == "slack":  # the stored Block Kit, drawn
            assert "slack-preview" in shown.text
            pretty = json.dumps(json.loads(message["body"]), indent=2, ensure_ascii=False)
            drawn = re.search(r'<pre class="json">(.*?)</pre>', shown.text, re.DOTALL)
            assert drawn is not None
            assert html.unescape(drawn.group(1)) == pretty
        else:  # the stored text is the email's text part
            part = re.search(r'<pre class="email-text">(.*?)</pre>', shown.text, re.DOTALL)
            assert part is not None
            wire = html.unescape(part.group(1)).replace("\r\n", "\n")  # CRLF: the wire's
            assert wire.rstrip("\n") == message["body"].rstrip("\n")


async def test_the_inbox_pages_back_by_message(tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'pages.db'}"),
        grouping=GroupingConfig(by=[]),
    )
    recipients = [f"user{i}@example.com" for i in range(70)]
    async with Notifier(settings, dev_inbox=True) as notifier, _client(notifier) as client:
        await notifier.register_launch_plan(PLAN, [Email([P.FAILED], recipients)])
        await notifier.report_event(event_json("many", "FAILED", launch_plan=PLAN))
        await notifier.run_until_idle()
        every = [m.id for m in await notifier.inbox(limit=1000)]
        seen: list[int] = []
        path = "/ui/inbox"
        for _ in range(5):
            page = await client.get(path)
            seen += [int(i) for i in re.findall(r'<li data-id="(\d+)"', page.text)]
            older = re.search(r'href="(/ui/inbox\?before=\d+)">Older', page.text)
            if older is None:
                break
            path = older.group(1)
        bad = await client.get("/ui/inbox?before=x")
        missing = await client.get("/ui/inbox?open=x")
    assert len(every) == 70
    assert seen == sorted(every, reverse=True)
    assert bad.status_code == 400
    assert missing.status_code == 404


async def test_the_message_as_sent_is_the_same_bytes_on_every_load(
    tmp_path: Path, database_url: str
) -> None:
    """The Date, the Message-ID and the MIME boundary the SMTP server received are
    the ones the page shows, however often it is loaded."""
    with SmtpServer() as smtp:
        settings = _smtp_settings(tmp_path, smtp, database_url)
        async with Notifier(settings) as notifier, _client(notifier) as client:
            await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
            await notifier.report_event(event_json("once", "FAILED", launch_plan=PLAN))
            await notifier.run_until_idle()
            (received,) = smtp.messages
            (delivery,) = await notifier.deliveries()
            (attempt,) = await notifier.attempts(delivery.id)
            first = await client.get(f"/ui/deliveries/{delivery.id}")
            second = await client.get(f"/ui/deliveries/{delivery.id}")
    shown = _shown_headers(first)
    assert shown == _shown_headers(second)
    assert shown["Date"] == received.message["Date"]
    assert shown["Date"] == email.utils.format_datetime(attempt.started_at.replace(microsecond=0))
    boundary = received.message.get_boundary()
    assert boundary is not None
    assert f'boundary="{boundary}"' in shown["Content-Type"]
    assert shown["Message-ID"] == received.message["Message-ID"]


async def test_a_message_not_sent_yet_has_no_date_yet(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        async with Notifier(_smtp_settings(tmp_path, smtp)) as notifier, _client(notifier) as c:
            await notifier.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
            await notifier.report_event(event_json("later", "FAILED", launch_plan=PLAN))
            (delivery,) = await notifier.deliveries()
            page = await c.get(f"/ui/deliveries/{delivery.id}")
    assert "Date" not in _shown_headers(page)
    assert "Not sent yet" in page.text
    assert "not sent yet</span>" in page.text  # the summary's message row


async def test_a_redrive_in_the_audit_trail_has_no_attempt_number(dead: Notifier) -> None:
    """A re-drive is not an attempt: it must not repeat the number of the one before."""
    (letter,) = await dead.deliveries()
    await dead.redrive(letter.id)
    await dead.run_until_idle()  # still no Slack: dead again, after attempt 2
    async with _client(dead) as client:
        page = await client.get(f"/ui/deliveries/{letter.id}")
        timeline = await client.get("/ui/executions/proj/prod/run-1")
    trail = re.search(r"<h2>Audit trail</h2>.*?<tbody>(.*?)</tbody>", page.text, re.DOTALL)
    assert trail is not None
    numbers = re.findall(r'<td data-label="Attempt">(\d*)</td>', trail.group(1))
    assert numbers == ["1", "", "2"]
    assert "Re-drive of" in timeline.text
    assert timeline.text.count("Attempt 1 of") == 1


async def test_a_delivery_names_its_notification_as_declared_and_errors_say_their_kind_once(
    notifier: Notifier, client: httpx.AsyncClient
) -> None:
    await notifier.register_launch_plan(PLAN, [PagerDuty([P.FAILED], ["data-oncall"])])
    await notifier.report_event(event_json("run-9", "FAILED", error="boom", launch_plan=PLAN))
    await notifier.run_until_idle()
    (delivery,) = await notifier.deliveries()
    page = (await client.get(f"/ui/deliveries/{delivery.id}")).text
    assert "PagerDuty (#0)" in page
    timeline = (await client.get("/ui/executions/proj/prod/run-9")).text
    assert "USER:Error: boom" in timeline  # the helper's error: kind USER, code USER:Error
    assert "USER USER:Error" not in timeline
