"""The web console: server-rendered pages over :class:`~flytenotify.app.Notifier`.

Mounted at ``/ui`` by :func:`flytenotify.web.api.create_app`. Pages read through
the Notifier and the store's read methods; the only writes are re-drives,
creating and ending silences, and logging in or out, all POSTs checked against
the session's CSRF token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flytenotify.app import Notifier
from flytenotify.channels import registry
from flytenotify.channels.base import error_label
from flytenotify.chat import verify_link
from flytenotify.core.notification import declared_as
from flytenotify.domain import (
    RULE_PHASES,
    Actor,
    DeadlineAlert,
    DeadlineId,
    Delivery,
    DeliveryStatus,
    ExecutionError,
    ExecutionId,
    NamedKind,
    Silence,
    phase_name,
)
from flytenotify.engine.silences import describe, next_start
from flytenotify.errors import Conflict, Forbidden, InputError
from flytenotify.intake.limits import MAX_INT, id_problems, parse_int
from flytenotify.intake.source import Source
from flytenotify.schedules import format_duration, spoken_duration
from flytenotify.store.base import DeliveryFilter, InboxMessage
from flytenotify.store.errors import StoreUnavailable
from flytenotify.web.answers import answer_click
from flytenotify.web.console import silence_form
from flytenotify.web.console.auth import (
    COOKIE,
    CSRF_FIELD,
    FORM_COOKIE,
    SAME_SITE,
    SESSION_SECONDS,
    Session,
    Sessions,
)
from flytenotify.web.console.filters import PAGE_SIZE, ListQuery, parse_list_query
from flytenotify.web.console.previews import DIGEST_PREFIX, message_view, sent_message
from flytenotify.web.schemas import RuleView

PREFIX = "/ui"
MAX_FORM_BYTES = 256 * 1024
MAX_FORM_FIELDS = 1000
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_TIMELINE_DELIVERIES = 500
# Rows of the audit trail that are an operator's act, not an attempt, as the pages say them.
OPERATOR_ACTS = {"redrive": "Re-drive", "silenced": "Held by a silence", "released": "Release"}
# Every page: scripts only from our own files, no framing, forms only to us.
# The email preview's srcdoc iframe inherits this, on top of its empty sandbox.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC = Path(__file__).parent / "static"

Handler = Callable[[Request], Awaitable[Response]]


def console_app(
    notifier: Notifier, tokens: Sequence[str], sources: Sequence[Source] = ()
) -> Starlette:
    """The console as an ASGI app, to be mounted at :data:`PREFIX`."""
    console = _Console(notifier, Sessions(list(tokens), notifier.store), sources)
    page = console.page
    routes = [
        Route("/", page(console.home), methods=["GET"]),
        Route("/login", page(console.login, public=True), methods=["GET", "POST"]),
        Route("/logout", page(console.logout), methods=["POST"]),
        Route("/deliveries", page(console.deliveries), methods=["GET"]),
        Route("/deliveries/rows", page(console.delivery_rows), methods=["GET"]),
        Route("/deliveries/{id}", page(console.delivery), methods=["GET"]),
        Route("/executions/{project}/{domain}/{name}", page(console.execution), methods=["GET"]),
        Route("/dead-letters", page(console.dead_letters), methods=["GET"]),
        Route("/dead-letters/redrive", page(console.redrive), methods=["POST"]),
        Route("/launch-plans", page(console.launch_plans), methods=["GET"]),
        Route("/silences", page(console.silences), methods=["GET", "POST"]),
        Route("/silences/{id}", page(console.silence), methods=["GET"]),
        Route("/silences/{id}/end", page(console.end_silence), methods=["POST"]),
        Route("/flyte2", page(console.flyte2), methods=["GET"]),
        Route("/deadlines", page(console.deadlines), methods=["GET"]),
        Route("/deadlines/{project}/{domain}/{name}", page(console.deadline), methods=["GET"]),
        Route("/status", page(console.status), methods=["GET"]),
        Route("/inbox", page(console.inbox), methods=["GET"]),
        # A signed link's own proof is its token: no session needed (the CSRF check stays).
        Route("/act", page(console.act, public=True), methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        # Only a logged-in visitor learns which console paths exist (as the
        # API's 401 before routing): anyone else is asked to log in first.
        if console.sessions.required and not await console.logged_in(request):
            request.state.session = console.sessions.new_visitor()[1]
            return console.login_required(request)
        return console.error_page(request, exc.status_code, str(exc.detail))

    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # event | delivery | attempt | action | acknowledgement
    item: Any
    delivery: Delivery | None = None


class _Console:
    def __init__(self, notifier: Notifier, sessions: Sessions, sources: Sequence[Source]) -> None:
        self.notifier = notifier
        self.sessions = sessions
        self.sources = list(sources)
        self.env = Environment(
            loader=PackageLoader("flytenotify.web.console", "templates"),
            autoescape=True,  # every value is escaped unless it is Markup we built
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = when
        self.env.filters["phase"] = phase_name
        self.env.filters["declared_as"] = declared_as
        self.env.filters["error_label"] = _error_label
        self.env.filters["duration"] = format_duration
        self.env.filters["spoken"] = spoken_duration
        self.env.globals.update(
            prefix=PREFIX,
            quote=quote,
            CSRF_FIELD=CSRF_FIELD,
            digest_prefix=DIGEST_PREFIX,
            operator_acts=OPERATOR_ACTS,
        )

    # -- plumbing ------------------------------------------------------------------

    def page(self, handler: Handler, *, public: bool = False) -> Handler:
        """``handler`` behind the session check, the CSRF check and the security headers."""

        async def endpoint(request: Request) -> Response:
            # The session cookie is set at login and nowhere else: a request that
            # came without it (withheld by the browser, say) never replaces it.
            session = await self.sessions.logged_in(request.cookies.get(COOKIE))
            form_cookie = None
            if session is None:
                session = self.sessions.visitor(request.cookies.get(FORM_COOKIE))
            if session is None:
                form_cookie, session = self.sessions.new_visitor()
            request.state.session = session
            try:
                response = await self._checked(handler, request, session, public)
            except HTTPException as error:
                response = self.error_page(request, error.status_code, str(error.detail))
            except StoreUnavailable as error:  # not reachable yet, or full: try later
                response = self.error_page(request, 503, f"The database cannot answer now: {error}")
                response.headers["Retry-After"] = "30"
            if form_cookie is not None and "set-cookie" not in response.headers:
                self._set_cookie(request, response, FORM_COOKIE, form_cookie)
            return response

        return endpoint

    async def logged_in(self, request: Request) -> bool:
        return await self.sessions.logged_in(request.cookies.get(COOKIE)) is not None

    async def _checked(
        self, handler: Handler, request: Request, session: Session, public: bool
    ) -> Response:
        if not session.authenticated and not public:
            return self.login_required(request)
        if request.method == "POST" and not await self._csrf_ok(request, session):
            raise HTTPException(
                403,
                "This form's CSRF token is missing or wrong (the page may be from an"
                " older session): reload the page and try again.",
            )
        return await handler(request)

    def login_required(self, request: Request) -> Response:
        if request.method != "GET":
            return self.error_page(request, 401, "Log in with an API token first.")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", 303)

    async def _csrf_ok(self, request: Request, session: Session) -> bool:
        form = await self._form(request)
        given = form.get(CSRF_FIELD)
        return isinstance(given, str) and self.sessions.csrf_accepted(session, given)

    async def _form(self, request: Request) -> FormData:
        """The posted form, read once (the CSRF check and the handler both look at it).

        The console's forms are plain ``application/x-www-form-urlencoded``; the
        standard library reads them, no multipart parser is needed.
        """
        form: FormData | None = getattr(request.state, "form", None)
        if form is None:
            kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != FORM_TYPE:
                raise HTTPException(415, f"a form must be sent as {FORM_TYPE}, got {kind!r}")
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_FORM_BYTES:
                    raise HTTPException(413, f"form too large: at most {MAX_FORM_BYTES} bytes")
            try:
                fields: list[tuple[str, str | UploadFile]] = list(
                    parse_qsl(body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
                )
            except ValueError:  # more fields than allowed
                raise HTTPException(413, f"form has more than {MAX_FORM_FIELDS} fields") from None
            form = FormData(fields)
            request.state.form = form
        return form

    def _set_cookie(self, request: Request, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=SESSION_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite=SAME_SITE,
            secure=request.url.scheme == "https",
        )

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        session: Session = request.state.session
        body = self.env.get_template(template).render(
            csrf_token=session.csrf_token,
            logged_in=self.sessions.required and session.authenticated,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(body, status_code=status_code)
        response.headers.update(SECURITY_HEADERS)
        return response

    def error_page(self, request: Request, status: int, message: str) -> Response:
        if not hasattr(request.state, "session"):  # a route that does not exist
            _, session = self.sessions.new_visitor()
            request.state.session = Session(session.nonce, session.csrf_token, False)
        return self.render(request, "error.html", status, status=status, message=message)

    # -- pages ---------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/deliveries", 303)

    async def login(self, request: Request) -> Response:
        target = _safe_next(request.query_params.get("next", ""))
        if request.method == "GET":
            if not self.sessions.required:
                return RedirectResponse(target, 303)
            return self.render(request, "login.html", target=target, error="")
        form = await self._form(request)
        token = form.get("token")
        if not isinstance(token, str) or not self.sessions.token_accepted(token):
            return self.render(
                request, "login.html", 401, target=target, error="That token is not accepted."
            )
        cookie, _ = await self.sessions.log_in()
        response = RedirectResponse(target, 303)
        self._set_cookie(request, response, COOKIE, cookie)
        return response

    async def logout(self, request: Request) -> Response:
        # Ended in the ledger: a copy of the cookie kept anywhere opens nothing now.
        await self.sessions.log_out(request.state.session)
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(
            COOKIE,
            path=PREFIX,
            httponly=True,
            samesite=SAME_SITE,
            secure=request.url.scheme == "https",
        )
        return response

    async def deliveries(self, request: Request) -> Response:
        query = parse_list_query(request.query_params)
        items = await self.notifier.deliveries(query.store_filter())
        return self.render(
            request,
            "deliveries.html",
            400 if query.problems else 200,
            query=query,
            items=items,
            older=_older_cursor(items),
            statuses=[s.value for s in DeliveryStatus],
            channels=[*registry.names(), registry.INBOX, registry.UNROUTABLE],
        )

    async def delivery_rows(self, request: Request) -> Response:
        """The first page's rows alone: what the list's live update fetches."""
        query = parse_list_query(request.query_params)
        if query.problems:
            raise HTTPException(400, "; ".join(f"{p.field}: {p.message}" for p in query.problems))
        items = await self.notifier.deliveries(query.store_filter())
        return self.render(request, "_rows.html", items=items)

    async def delivery(self, request: Request) -> Response:
        delivery = await self._delivery(request.path_params["id"])
        attempts = await self.notifier.attempts(delivery.id)
        sent = await sent_message(self.notifier, delivery, attempts)
        smtp = self.notifier.settings.channel("email")  # None or {} when not configured
        view = message_view(sent, getattr(smtp, "sender", None))
        return self.render(
            request,
            "delivery.html",
            delivery=delivery,
            attempts=attempts,
            sent=sent,
            view=view,
        )

    async def execution(self, request: Request) -> Response:
        parts = {k: request.path_params[k] for k in ("project", "domain", "name")}
        if id_problems(parts, ""):
            raise HTTPException(404, "no such execution: not a valid execution id")
        execution_id = ExecutionId(**parts)
        execution = await self.notifier.execution(execution_id)
        if execution is None:
            raise HTTPException(404, f"no execution {execution_id}")
        events = await self.notifier.events(execution_id)
        deliveries = await self.notifier.deliveries(
            DeliveryFilter(execution=execution_id, limit=MAX_TIMELINE_DELIVERIES)
        )
        timeline = [TimelineEntry(e.occurred_at, "event", (e, outcome)) for e, outcome in events]
        for delivery in deliveries:
            timeline.append(TimelineEntry(delivery.created_at, "delivery", delivery, delivery))
            for attempt in await self.notifier.attempts(delivery.id):
                timeline.append(TimelineEntry(attempt.finished_at, "attempt", attempt, delivery))
        actions = await self.notifier.action_history(execution_id)
        for action in actions:
            timeline.append(TimelineEntry(action.requested_at, "action", action))
        for ack in await self.notifier.acknowledgements(execution_id):
            timeline.append(TimelineEntry(ack.acknowledged_at, "acknowledgement", ack))
        timeline.sort(key=lambda entry: entry.at)
        return self.render(
            request,
            "execution.html",
            execution=execution,
            rules=[RuleView.of(rule).to_json() for rule in execution.rules],
            actions=actions,
            timeline=timeline,
            deliveries=deliveries,
            capped=len(deliveries) == MAX_TIMELINE_DELIVERIES,
        )

    async def dead_letters(self, request: Request) -> Response:
        query = ListQuery({"status": DeliveryStatus.DEAD.value}, _cursor(request))
        items = await self.notifier.deliveries(query.store_filter())
        return self.render(
            request,
            "dead_letters.html",
            items=items,
            older=_older_cursor(items),
            redriven=request.query_params.get("redriven", ""),
            skipped=request.query_params.get("skipped", ""),
        )

    async def redrive(self, request: Request) -> Response:
        form = await self._form(request)
        # A row's own button re-drives that row alone, whatever else is ticked.
        ids = _ids([form["one"]] if form.get("one") else form.getlist("id"))
        if not ids:
            raise HTTPException(400, "Select at least one dead letter to re-drive.")
        if form.get("confirm") != "yes":
            found = [d for d in [await self.notifier.delivery(i) for i in ids] if d is not None]
            return self.render(request, "redrive_confirm.html", items=found)
        redriven = [i for i in ids if await self.notifier.redrive(i) is not None]
        answer = {"redriven": len(redriven), "skipped": len(ids) - len(redriven)}
        return RedirectResponse(f"{PREFIX}/dead-letters?{urlencode(answer)}", 303)

    async def act(self, request: Request) -> Response:
        """A signed link from an email or a Teams card: GET asks to confirm (and changes
        nothing), POST does it, once, as ``email:<recipient>`` or ``teams:<webhook>``."""
        secret = self.notifier.settings.actions.resolved_link_secret()
        if not secret:
            raise HTTPException(
                404, "Signed links are not configured here ([actions] link_secret)."
            )
        form = await self._form(request) if request.method == "POST" else None
        token = form.get("token") if form is not None else request.query_params.get("token")
        try:
            link = verify_link(token, secret.encode(), self.notifier.now().timestamp())
        except (Forbidden, InputError) as refused:
            status = 403 if isinstance(refused, Forbidden) else 400
            raise HTTPException(status, f"This link cannot be used: {refused}") from None
        actor = Actor(link.actor, "signed-link")
        if form is None:
            return self.render(request, "act.html", link=link, token=token, done=None)
        who, when, first = await self.notifier.use_link(link.nonce, actor)
        if not first:
            note = f"This link was used already, by {who} at {when:%Y-%m-%d %H:%M} UTC."
            return self.render(request, "act.html", 409, link=link, token=None, done=note)
        answer = await answer_click(self.notifier, link.button, actor, "", link.platform)
        if answer.retry:
            await self.notifier.release_link(link.nonce)  # nothing was done: it works again
        done = answer.note.replace("{who}", link.signer)
        return self.render(request, "act.html", link=link, token=None, done=done)

    async def launch_plans(self, request: Request) -> Response:
        found = await self.notifier.launch_plans()
        plans = [plan for plan, _ in found]
        warnings = {plan.id: problems for plan, problems in found}
        return self.render(request, "launch_plans.html", plans=plans, warnings=warnings)

    async def silences(self, request: Request) -> Response:
        """Every silence, newest first, and the form that creates one (POST)."""
        form = silence_form.SilenceForm()
        status = 200
        if request.method == "POST":
            form, silence = silence_form.read(await self._form(request), self.notifier.now())
            if silence is not None:
                try:
                    stored, held = await self.notifier.create_silence(silence)
                except InputError as error:
                    form.problems = error.problems
                else:
                    target = f"{PREFIX}/silences/{stored.id}?{urlencode({'held': held})}"
                    return RedirectResponse(target, 303)
            status = 400
        active = request.query_params.get("active") == "true"
        before = _cursor(request)
        items, more = await self.notifier.silences(True if active else None, before, PAGE_SIZE)
        return self.render(
            request,
            "silences.html",
            status,
            items=[(s, self.notifier.silence_state(s).value, describe(s)) for s in items],
            active=active,
            older=more,
            form=form,
            phases=list(RULE_PHASES),
        )

    async def silence(self, request: Request) -> Response:
        """One silence: what it matches, when, and the deliveries it held."""
        silence = await self._silence(request.path_params["id"])
        held = await self.notifier.deliveries(
            DeliveryFilter(silence=silence.id, newest_first=True, limit=PAGE_SIZE)
        )
        now = self.notifier.now()
        return self.render(
            request,
            "silence.html",
            silence=silence,
            state=self.notifier.silence_state(silence).value,
            matched=describe(silence),
            next_start=next_start(silence, now),
            items=held,
            more=len(held) == PAGE_SIZE,
            holding=sum(1 for d in held if d.status is DeliveryStatus.SILENCED),
            held=request.query_params.get("held", ""),
            released=request.query_params.get("released", ""),
            ended=request.query_params.get("ended", ""),
        )

    async def end_silence(self, request: Request) -> Response:
        silence = await self._silence(request.path_params["id"])
        form = await self._form(request)
        author = str(form.get("author") or "").strip()
        release = form.get("release") == "on"
        try:
            _, released = await self.notifier.end_silence(silence.id, author, release)
        except InputError as error:
            raise HTTPException(
                409 if isinstance(error, Conflict) else 400,
                "; ".join(f"{p.field}: {p.message}" for p in error.problems),
            ) from None
        answer = {"ended": 1, **({"released": released} if release else {})}
        return RedirectResponse(f"{PREFIX}/silences/{silence.id}?{urlencode(answer)}", 303)

    async def flyte2(self, request: Request) -> Response:
        """The Flyte 2 watches of this process, and the named rules and deliveries."""
        entries = await self.notifier.named_rules()
        warnings = {
            (e.kind, e.name, e.project, e.domain): self.notifier.named_routing_problems(e)
            for e in entries
        }
        return self.render(
            request,
            "flyte2.html",
            watches=[(s.name, s.status) for s in self.sources if s.name.startswith("flyte2:")],
            rules=[e for e in entries if e.kind is NamedKind.RULE],
            deliveries=[e for e in entries if e.kind is NamedKind.DELIVERY],
            warnings=warnings,
        )

    async def deadlines(self, request: Request) -> Response:
        """Every deadline, and the executions over one now (their alerts not closed yet)."""
        await self.notifier.refresh_deadlines()  # a replica may have changed them
        found = self.notifier.deadlines()
        over = await self.notifier.open_alerts(limit=PAGE_SIZE)
        return self.render(
            request,
            "deadlines.html",
            deadlines=found,
            warnings={d.id: self.notifier.deadline_routing_problems(d) for d in found},
            over=over,
            executions=await self._alerted_executions(over),
        )

    async def deadline(self, request: Request) -> Response:
        """One deadline: what it says, what it waits for, and the alerts it sent."""
        parts = {k: request.path_params[k] for k in ("project", "domain", "name")}
        if id_problems(parts, ""):
            raise HTTPException(404, "no such deadline: not a valid deadline name")
        ident = DeadlineId(**parts)
        await self.notifier.refresh_deadlines()
        found = self.notifier.deadline(ident)
        if found is None:
            raise HTTPException(404, f"no deadline {ident}")
        alerts = await self.notifier.deadline_alerts(ident, _cursor(request), PAGE_SIZE)
        return self.render(
            request,
            "deadline.html",
            deadline=found,
            warnings=self.notifier.deadline_routing_problems(found),
            timers=await self.notifier.deadline_timers(ident),
            alerts=alerts,
            executions=await self._alerted_executions(alerts),
            older=alerts[-1].id if len(alerts) == PAGE_SIZE else None,
        )

    async def _alerted_executions(self, alerts: Sequence[DeadlineAlert]) -> set[ExecutionId]:
        """Those of the alerts' executions the ledger holds (a missed start has none)."""
        return set(await self.notifier.executions([alert.execution for alert in alerts]))

    async def status(self, request: Request) -> Response:
        channels = await self._channel_rows()
        ledger = await self.notifier.ledger_state()
        return self.render(
            request,
            "status.html",
            channels=channels,
            sources=[(s.name, s.status) for s in self.sources],
            ledger=ledger,
            now=datetime.now(UTC),
        )

    async def inbox(self, request: Request) -> Response:
        """The dev inbox as it holds the messages: one entry per message, a digest once."""
        items = await self.notifier.store.list_inbox_newest(_cursor(request), PAGE_SIZE)
        chosen = items[0] if items else None
        if request.query_params.get("open"):
            chosen = await self._inbox_message(request.query_params["open"])
        sent = view = None
        if chosen is not None:
            delivery = await self.notifier.delivery(chosen.delivery_id)
            if delivery is not None:
                sent = await sent_message(self.notifier, delivery)
                view = message_view(sent, stored=chosen.body)
        carried = {m.id: await self.notifier.delivery(m.delivery_id) for m in items}
        return self.render(
            request,
            "inbox.html",
            items=items,
            carried=carried,
            older=items[-1].id if len(items) == PAGE_SIZE else None,
            chosen=chosen,
            sent=sent,
            view=view,
            dev_inbox=self.notifier.dev_inbox,
            unconfigured=[
                c for c, state in self.notifier.channel_states().items() if state != "configured"
            ],
        )

    # -- reading -------------------------------------------------------------------

    async def _delivery(self, raw: str) -> Delivery:
        try:
            delivery_id = parse_int(raw, "id", 1, MAX_INT)
        except InputError:
            raise HTTPException(404, f"no delivery {raw!r}: not a delivery id") from None
        delivery = await self.notifier.delivery(delivery_id)
        if delivery is None:
            raise HTTPException(404, f"no delivery {delivery_id}")
        return delivery

    async def _silence(self, raw: str) -> Silence:
        try:
            silence_id = parse_int(raw, "id", 1, MAX_INT)
        except InputError:
            raise HTTPException(404, f"no silence {raw!r}: not a silence id") from None
        silence = await self.notifier.silence(silence_id)
        if silence is None:
            raise HTTPException(404, f"no silence {silence_id}")
        return silence

    async def _inbox_message(self, raw: str) -> InboxMessage:
        try:
            message_id = parse_int(raw, "open", 1, MAX_INT)
        except InputError:
            raise HTTPException(404, f"no inbox message {raw!r}: not a message id") from None
        message = await self.notifier.store.get_inbox_message(message_id)
        if message is None:
            raise HTTPException(404, f"no inbox message {message_id}")
        return message

    async def _channel_rows(self) -> list[dict[str, Any]]:
        """Each channel's state, then the dev inbox's and the unroutable dead letters'."""
        states = {
            name: state.replace("-", " ") for name, state in self.notifier.channel_states().items()
        }
        if self.notifier.dev_inbox:
            states[registry.INBOX] = "dev inbox"
        # Recipients no channel could take are dead-lettered under this name.
        states[registry.UNROUTABLE] = "no channel"
        return [await self._channel_status(name, state) for name, state in states.items()]

    async def _channel_status(self, name: str, state: str) -> dict[str, Any]:
        success = await self._newest(name, DeliveryStatus.DELIVERED)
        failures = [
            d
            for d in [
                await self._newest(name, DeliveryStatus.RETRYING),
                await self._newest(name, DeliveryStatus.DEAD),
            ]
            if d is not None
        ]
        failure = max(failures, key=lambda d: d.id) if failures else None
        return {
            "name": name,
            "state": state,
            "success": success,
            "success_at": await self._last_attempt_at(success),
            "failure": failure,
            "failure_at": await self._last_attempt_at(failure),
        }

    async def _newest(self, channel: str, status: DeliveryStatus) -> Delivery | None:
        query = DeliveryFilter(channel=channel, status=status, newest_first=True, limit=1)
        found = await self.notifier.deliveries(query)
        return found[0] if found else None

    async def _last_attempt_at(self, delivery: Delivery | None) -> datetime | None:
        if delivery is None:
            return None
        attempts = await self.notifier.attempts(delivery.id)
        return attempts[-1].finished_at if attempts else delivery.created_at


# -- helpers -----------------------------------------------------------------------


def when(moment: datetime | float | None) -> Markup:
    """A time shown absolute (UTC) and relative; the page's script keeps "ago" current."""
    if moment is None:
        return Markup('<span class="muted">never</span>')
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    moment = moment.astimezone(UTC)
    absolute = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(
        '<time datetime="{iso}" title="{absolute}">{absolute}</time>'
        ' <span class="ago" data-at="{epoch}">{ago}</span>'
    ).format(
        iso=moment.isoformat(),
        absolute=absolute,
        epoch=f"{moment.timestamp():.3f}",
        ago=relative(moment.timestamp()),
    )


def relative(epoch: float, now: float | None = None) -> str:
    seconds = (now if now is not None else time.time()) - epoch
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            break
    else:
        amount = f"{int(seconds)} s"
    return f"in {amount}" if future else f"{amount} ago"


def _older_cursor(items: list[Delivery]) -> int | None:
    return items[-1].id if len(items) == PAGE_SIZE else None


def _cursor(request: Request) -> int | None:
    raw = request.query_params.get("before", "")
    try:
        return parse_int(raw, "before", 1, MAX_INT) if raw else None
    except InputError:
        raise HTTPException(400, f"before: must be a delivery id, got {raw!r}") from None


def _ids(values: list[Any]) -> list[int]:
    ids: list[int] = []
    for value in values:
        try:
            ids.append(parse_int(str(value), "id", 1, MAX_INT))
        except InputError:
            raise HTTPException(400, f"id: not a delivery id: {value!r}") from None
    return list(dict.fromkeys(ids))


def _safe_next(target: str) -> str:
    """Where to go after logging in: a console path only, never another site."""
    if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/deliveries"


def _error_label(error: ExecutionError) -> str:
    """``USER:ValueError``: an error's kind and code, said once each."""
    return error_label({"error.kind": error.kind.value, "error.code": error.code})
