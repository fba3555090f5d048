"""The HTTP API: a thin JSON layer over :class:`~flytenotify.app.Notifier`.

Every route is one :class:`Operation` in :data:`OPERATIONS`: what Starlette
routes, and what the OpenAPI document says of it (:mod:`flytenotify.web.openapi`),
with the shapes of :mod:`flytenotify.web.schemas`. Every client mistake is a
4xx with ``{"error": ..., "problems": [{"field", "message"}]}``; a 5xx means a
fault of ours. See docs/http-api.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette import responses
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flytenotify.actions import ANONYMOUS_ACTOR, api_token_actor
from flytenotify.app import Notifier
from flytenotify.config import ServerConfig
from flytenotify.core.notification import Notification
from flytenotify.domain import (
    ActionOutcome,
    Actor,
    DeadlineId,
    Delivery,
    EntityId,
    ExecutionEvent,
    ExecutionId,
    NamedKind,
    NamedRule,
    Silence,
)
from flytenotify.engine import resolve
from flytenotify.errors import (
    Conflict,
    Forbidden,
    InputError,
    NotificationConfigError,
    Problem,
    UnknownReference,
    UpstreamRefused,
    UpstreamUnavailable,
)
from flytenotify.intake import cloudevents
from flytenotify.intake.events import (
    event_from_bytes,
    event_from_json,
)
from flytenotify.intake.limits import (
    MAX_INT,
    id_problems,
    identifier_pattern,
    loads_json,
    parse_int,
)
from flytenotify.intake.source import Source
from flytenotify.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from flytenotify.metrics import Metrics
from flytenotify.store.base import DeliveryFilter, EventOutcome
from flytenotify.store.errors import StoreUnavailable
from flytenotify.store.migrations import NEWEST
from flytenotify.web import chat, flyteidl_json, openapi
from flytenotify.web import schemas as s
from flytenotify.web.openapi import Operation
from flytenotify.workers import Supervisor

log = logging.getLogger("flytenotify.api")

JSON = "application/json"
PROTOBUF = ("application/x-protobuf", "application/protobuf", "application/octet-stream")
CLOUDEVENTS = "application/cloudevents+json"

Handler = Callable[[Request], Awaitable[Response]]
# Probes must work without a token; everything else needs one when tokens are set.
# The chat platforms' callbacks carry their own proof instead (web/chat.py).
OPEN_PATHS = frozenset({"/healthz", "/readyz", chat.SLACK_PATH, chat.MATTERMOST_PATH})
# The web console asks for a token itself and keeps a session cookie (console/auth.py).
CONSOLE = "/ui"
REALM = "flytenotify"


class JSONResponse(responses.JSONResponse):
    """Starlette's JSON answer, encoded by orjson: a batch's answer lists every event."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def answer(shape: s.Shape, status: int = 200) -> JSONResponse:
    return JSONResponse(shape.to_json(), status_code=status)


class ApiError(Exception):
    """A 4xx answer with its problems."""

    def __init__(self, status: int, error: str, problems: list[Problem] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems or []


def error_response(status: int, error: str, problems: list[Problem] | None = None) -> JSONResponse:
    return answer(s.ErrorBody(error=error, problems=problems or []), status)


def create_app(
    notifier: Notifier,
    server: ServerConfig | None = None,
    metrics: Metrics | None = None,
    *,
    api: bool = True,
    sources: Sequence[Source] = (),
    workers: Supervisor | None = None,
) -> Starlette:
    """The Starlette application serving ``notifier``.

    ``metrics`` should be the :class:`Metrics` whose ``observe_attempt`` the
    notifier's dispatcher reports to; without it, attempts are not counted.
    ``api=False`` serves only health, readiness and metrics (a dispatcher replica).
    ``sources`` are the intake sources running beside it, and ``workers`` the
    dispatcher workers it supervises: both reported by ``/readyz``.
    """
    server = server or ServerConfig()
    handlers = _Api(notifier, server, metrics or Metrics(), sources, workers)
    operations = [op for op in OPERATIONS if api or op.path in _DISPATCHER_PATHS]
    routes: list[BaseRoute] = _routes(handlers, operations)
    if api:
        tokens = server.tokens()
        routes += [Mount(CONSOLE, _OnFirstRequest(lambda: _console(notifier, tokens, sources)))]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        found = error_response(exc.status_code, exc.detail, _routing_problems(exc.status_code))
        found.headers.update(exc.headers or {})  # a 405 says which methods are allowed
        return found

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(_TokenGate, api=handlers)],
    )
    app.state.notifier = notifier
    app.state.metrics = handlers.metrics
    return app


def _console(notifier: Notifier, tokens: Sequence[str], sources: Sequence[Source]) -> ASGIApp:
    # Imported here: jinja2 and the console's pages are about 2 MiB of a
    # process's memory, which only a process whose console is opened pays.
    from flytenotify.web.console import console_app

    return console_app(notifier, tokens, sources)


class _OnFirstRequest:
    """An ASGI app built when its first request comes, not at start-up."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = self._build()
        await self._app(scope, receive, send)


def _routes(api: _Api, operations: Sequence[Operation]) -> list[BaseRoute]:
    """One Starlette route per path, answering each of its operations' methods."""
    by_path: dict[str, dict[str, Operation]] = defaultdict(dict)
    for operation in operations:
        by_path[operation.path][operation.method] = operation
    routes: list[BaseRoute] = []
    for path, methods in by_path.items():

        async def endpoint(request: Request, methods: dict[str, Operation] = methods) -> Response:
            return await api.run(methods[request.method], request)

        routes.append(Route(path, endpoint, methods=list(methods)))
    return routes


class _TokenGate:
    """Authenticates before routing: an anonymous caller gets 401 for every path but
    the probes, so a 404 or 405 cannot tell it which routes exist."""

    def __init__(self, app: ASGIApp, api: _Api) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.api.tokens and _needs_token(scope["path"]):
            request = Request(scope)
            try:
                self.api.authenticate(request)
            except ApiError as error:
                response = error_response(error.status, error.error, error.problems)
                response.headers["WWW-Authenticate"] = _challenge(request)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _challenge(request: Request) -> str:
    """The ``WWW-Authenticate`` of a 401 (RFC 6750): a token was given and is wrong,
    or none was given at all."""
    given = request.headers.get("authorization", "").lower().startswith("bearer ")
    return f'Bearer realm="{REALM}"' + (', error="invalid_token"' if given else "")


def _needs_token(path: str) -> bool:
    console = path == CONSOLE or path.startswith(f"{CONSOLE}/")
    return path not in OPEN_PATHS and not console


class _Api:
    def __init__(
        self,
        notifier: Notifier,
        server: ServerConfig,
        metrics: Metrics,
        sources: Sequence[Source] = (),
        workers: Supervisor | None = None,
    ) -> None:
        self.notifier = notifier
        self.sources = list(sources)
        self.workers = workers
        self.server = server
        self.metrics = metrics
        self.tokens = [_digest(t.encode()) for t in server.tokens()]

    # -- plumbing ------------------------------------------------------------------

    async def run(self, operation: Operation, request: Request) -> Response:
        """The operation's answer; every mistake and outage as its 4xx or 503."""
        try:
            response: Response = await operation.handler(self, request)
            return response
        except ApiError as error:
            return error_response(error.status, error.error, error.problems)
        except UnknownReference as error:
            return error_response(404, "not found", error.problems)
        except Conflict as error:
            return error_response(409, "conflict", error.problems)
        except Forbidden as error:
            return error_response(403, "forbidden", error.problems)
        except (InputError, NotificationConfigError) as error:
            # A problem with no field is one with the request body as a whole.
            problems = [Problem(p.field or "body", p.message) for p in error.problems]
            return error_response(400, "invalid request", problems)
        except UpstreamRefused as error:
            # Flyte's own final answer to what was asked of it: said as it said it.
            return error_response(502, f"Flyte refused it: {error}")
        except UpstreamUnavailable as error:
            # Not the client's mistake: nothing was recorded, sending again later works.
            log.warning("answering 503: %s", error)
            response = error_response(503, str(error))
            response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
            return response
        except StoreUnavailable as error:  # still waiting for the database, or it is full
            response = error_response(503, "unavailable", [Problem("database", str(error))])
            response.headers["Retry-After"] = str(round(error.retry_after))
            return response

    def authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            # Digests have one length, so the comparison time says nothing about
            # the token's length; every token is compared (no early exit).
            given = _digest(token.strip().encode())
            matches = [hmac.compare_digest(given, t) for t in self.tokens]
            if any(matches):
                return
        raise ApiError(
            401,
            "unauthorized",
            [Problem("Authorization", "a valid 'Bearer <token>' header is required")],
        )

    def actor(self, request: Request) -> Actor:
        """Who calls: the bearer token's identity (it passed the gate), or anonymous
        on an API without tokens."""
        if not self.tokens:
            return ANONYMOUS_ACTOR
        _, _, token = request.headers.get("authorization", "").partition(" ")
        return api_token_actor(token.strip())

    async def _body(self, request: Request) -> bytes:
        limit = self.server.max_body_bytes
        declared = request.headers.get("content-length", "")
        # ASCII digits only; the length test keeps int() away from a huge number.
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > limit)
        ):
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: Request) -> Any:
        kind = _content_type(request)
        if kind and kind != JSON and not kind.endswith("+json"):
            raise ApiError(
                415,
                "unsupported media type",
                [Problem("Content-Type", f"must be {JSON}, got {kind!r}")],
            )
        return loads_json(await self._body(request))

    # -- health --------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return answer(s.Health())

    async def readyz(self, request: Request) -> Response:
        channels = self.notifier.channel_states()
        try:
            version = await self.notifier.schema_version()
        except Exception as error:  # any database failure means "not ready"
            log.warning("readiness check failed: %s", error)
            down = s.DatabaseState(error=str(error))
            return answer(s.Readiness(status="unavailable", database=down, channels=channels), 503)
        wrong: str | None = None
        full = self.notifier.ledger_full()
        if version != NEWEST:
            wrong = f"schema version {version}, expected {NEWEST}: run flytenotify db upgrade"
        elif full is not None:  # reads still work; writes do not
            wrong = full
        database = s.DatabaseState(schema_version=version, schema_expected=NEWEST, error=wrong)
        if wrong is not None:
            unavailable = s.Readiness(status="unavailable", database=database, channels=channels)
            return answer(unavailable, 503)
        intake = {src.name: s.SourceView.of(src.status) for src in self.sources} or None
        ready = all(src.status.ready for src in self.sources)
        workers = self.workers
        body = s.Readiness(
            status="ready" if ready else "unavailable",
            database=database,
            channels=channels,
            intake=intake,
            workers=s.WorkersState(running=workers.running, wanted=workers.wanted)
            if workers is not None
            else None,
        )
        return answer(body, 200 if ready else 503)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(document())

    async def metrics_text(self, request: Request) -> Response:
        body = self.metrics.render(await self.notifier.ledger_state())
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    # -- launch plans and executions -----------------------------------------------

    async def launch_plan(self, request: Request) -> Response:
        project, domain, name = _path_id(request)
        plan = await self.notifier.launch_plan(EntityId(project, domain, name))
        if plan is None:
            raise ApiError(
                404,
                f"no launch plan {project}/{domain}/{name} is registered",
                [Problem("name", "no launch plan of this name is registered")],
            )
        return answer(_plan_view(plan.id, plan.notifications))

    async def register_launch_plan(self, request: Request) -> Response:
        project, domain, name = _path_id(request)
        if _content_type(request) in PROTOBUF:
            registered = await self.notifier.register_launch_plan(
                _launch_plan_message(await self._body(request), project, domain, name)
            )
        else:
            body = s.parse(s.LaunchPlanBody, await self._json(request))
            registered = await self.notifier.register_launch_plan(
                EntityId(project, domain, name, body.version), body.notifications
            )
        # Accepted (the configuration may be fixed later), but said out loud now.
        warnings = self._routing_warnings(registered.notifications)
        return answer(_plan_view(registered.id, registered.notifications, warnings))

    def _routing_warnings(self, notifications: Sequence[Notification]) -> list[Problem]:
        return resolve.routing_problems(
            notifications, self.notifier.settings, self.notifier.dev_inbox
        )

    async def create_execution(self, request: Request) -> Response:
        body = s.parse(s.ExecutionBody, await self._json(request))
        execution = await self.notifier.create_execution(
            ExecutionId(body.id.project, body.id.domain, body.id.name),
            _entity_id(body.launch_plan),
            notifications=body.notifications,
            disable_all=body.disable_all,
            workflow=_entity_id(body.workflow),
        )
        created = s.ExecutionView(
            id=s.ids_view(execution.id),
            launch_plan=s.entity_view(execution.launch_plan),
            workflow=s.entity_view(execution.workflow),
            notifications=[n.to_dict() for n in execution.notifications],
            created_at=execution.created_at,
            # Overrides come from the caller: say now which recipients will not be reached.
            warnings=self._routing_warnings(execution.notifications),
        )
        return answer(created, 201)

    async def show_execution(self, request: Request) -> Response:
        execution_id = ExecutionId(*_path_id(request))
        execution = await self.notifier.execution(execution_id)
        if execution is None:
            raise ApiError(
                404,
                f"no execution {execution_id}",
                [Problem("name", "no execution of this name is known")],
            )
        events = await self.notifier.events(execution_id)
        deliveries = await self.notifier.deliveries(
            DeliveryFilter(execution=execution_id, limit=s.MAX_LIMIT)
        )
        actions = await self.notifier.action_history(execution_id)
        acknowledged = await self.notifier.acknowledgements(execution_id)
        detail = s.ExecutionDetail.of(
            execution,
            events=[s.EventView.of(execution, event, outcome) for event, outcome in events],
            deliveries=[s.DeliveryView.of(d) for d in deliveries],
            actions=[s.ActionView.of(a) for a in actions],
            acknowledgements=[s.AcknowledgementView.of(a) for a in acknowledged],
        )
        return answer(detail)

    # -- acting on Flyte -------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        execution_id = ExecutionId(*_path_id(request))
        body = s.parse_action(await self._json(request))
        done = await self.notifier.act(
            execution_id,
            body.action,
            self.actor(request),
            signal_id=getattr(body, "signal_id", ""),
            value=getattr(body, "value", None),
        )
        if done.record.outcome is ActionOutcome.PENDING:
            status = 202  # another request holds the decision and is asking Flyte now
        else:
            status = 201 if done.new and done.record.outcome is ActionOutcome.DONE else 200
        return answer(s.ActionView.of(done.record), status)

    async def list_actions(self, request: Request) -> Response:
        execution_id = ExecutionId(*_path_id(request))
        found = await self.notifier.action_history(execution_id)
        return answer(s.ActionList(items=[s.ActionView.of(a) for a in found]))

    # -- answers from chat -----------------------------------------------------------

    async def slack_interactions(self, request: Request) -> Response:
        body = await self._body(request)
        try:
            found = await chat.slack_interaction(self.notifier, request.headers, body, self.metrics)
        except chat.ChatRefusal as refused:
            raise ApiError(refused.status, refused.error, refused.problems) from None
        return Response(status_code=200) if found is None else answer(found)

    async def mattermost_actions(self, request: Request) -> Response:
        data = await self._json(request)
        try:
            found = await chat.mattermost_action(self.notifier, data, self.metrics)
        except chat.ChatRefusal as refused:
            raise ApiError(refused.status, refused.error, refused.problems) from None
        return answer(found)

    # -- events --------------------------------------------------------------------

    async def event(self, request: Request) -> Response:
        kind = _content_type(request)
        try:
            if cloudevents.is_cloud_event(kind, request.headers):
                return await self._cloud_event(request, kind)
            if kind in PROTOBUF:
                event = _event_from_protobuf(await self._body(request))
            else:
                event = event_from_json(await self._json(request))
        except InputError:
            self.metrics.event_received("invalid")
            raise
        (result,) = await self.notifier.record_checked_events([event])
        self.metrics.event_received(result.outcome.value)
        enqueued = result.outcome is EventOutcome.ENQUEUED
        return answer(s.EventResultView.of(result), 202 if enqueued else 200)

    async def _cloud_event(self, request: Request, kind: str) -> Response:
        parsed = cloudevents.parse(kind, request.headers, await self._body(request))
        said = s.CloudEventView(id=parsed.id, type=parsed.type, source=parsed.source)
        if parsed.event is None:
            self.metrics.event_received("ignored")
            return answer(s.EventResultView(outcome="ignored", cloud_event=said))
        (result,) = await self.notifier.record_checked_events([parsed.event])
        self.metrics.event_received(result.outcome.value)
        enqueued = result.outcome is EventOutcome.ENQUEUED
        return answer(s.EventResultView.of(result, said), 202 if enqueued else 200)

    async def events_batch(self, request: Request) -> Response:
        """One result per event: the good ones are recorded even when others are rejected.

        All-or-nothing would leave a producer that retries the same batch stuck
        forever behind one bad event; a rejected event says why instead.
        """
        data = await self._json(request)
        if isinstance(data, dict) and isinstance(data.get("events"), list):
            data = data["events"]
        if not isinstance(data, list):
            self.metrics.event_received("invalid")
            raise InputError(Problem("events", "the body must be a JSON array of events"))
        results: list[s.EventResultView | s.Rejected | None] = []
        events: list[ExecutionEvent] = []
        for i, item in enumerate(data):
            try:
                events.append(event_from_json(item))
                results.append(None)  # filled in once the good events are recorded
            except InputError as error:
                self.metrics.event_received("invalid")
                results.append(_rejected(error, f"events[{i}]"))
        recorded = iter(await self.notifier.record_checked_events(events) if events else [])
        for i, result in enumerate(results):
            if result is None:
                outcome = next(recorded)
                self.metrics.event_received(outcome.outcome.value)
                results[i] = s.EventResultView.of(outcome)
        return answer(s.BatchResults(results=[r for r in results if r is not None]))

    # -- deliveries and the inbox --------------------------------------------------

    async def list_deliveries(self, request: Request) -> Response:
        query = s.parse(s.DeliveryQuery, dict(request.query_params))
        items = await self.notifier.deliveries(query.store_filter())
        more = len(items) == query.limit
        return answer(
            s.DeliveryPage(
                items=[s.DeliveryView.of(d) for d in items],
                next=str(items[-1].id) if items and more else None,
            )
        )

    async def show_delivery(self, request: Request) -> Response:
        delivery = await self._delivery(request)
        attempts = await self.notifier.attempts(delivery.id)
        return answer(
            s.DeliveryDetail.of(delivery, attempts=[s.AttemptView.of(a) for a in attempts])
        )

    async def retry_delivery(self, request: Request) -> Response:
        delivery = await self._delivery(request)
        redriven = await self.notifier.redrive(delivery.id)
        if redriven is None:
            raise ApiError(
                409,
                f"delivery {delivery.id} is {delivery.status.value}, not dead or silenced",
                [Problem("status", "only a dead or silenced delivery can be retried")],
            )
        return answer(s.DeliveryView.of(redriven))

    async def _delivery(self, request: Request) -> Delivery:
        raw = request.path_params["id"]
        try:
            delivery_id = parse_int(raw, "id", 1, MAX_INT)
        except InputError as error:
            # Not an id any delivery can have: as unknown as a number never used.
            raise ApiError(404, f"no delivery {raw}", error.problems) from None
        delivery = await self.notifier.delivery(delivery_id)
        if delivery is None:
            raise ApiError(404, f"no delivery {raw}", [Problem("id", "no delivery has this id")])
        return delivery

    async def inbox(self, request: Request) -> Response:
        query = s.parse(s.PageQuery, dict(request.query_params))
        items = await self.notifier.inbox(query.cursor or None, query.limit)
        return answer(
            s.InboxPage(
                items=[s.InboxView.of(m) for m in items],
                next=str(items[-1].id) if items and len(items) == query.limit else None,
            )
        )

    # -- silences --------------------------------------------------------------------

    async def create_silence(self, request: Request) -> Response:
        body = s.parse(s.SilenceBody, await self._json(request))
        silence = body.silence(self.notifier.now())
        stored, held = await self.notifier.create_silence(silence)
        return answer(self._silence_view(stored, held=held), 201)

    async def list_silences(self, request: Request) -> Response:
        query = s.parse(s.SilenceQuery, dict(request.query_params))
        items, more = await self.notifier.silences(query.active, query.cursor or None, query.limit)
        views = [self._silence_view(silence) for silence in items]
        return answer(s.SilencePage(items=views, next=str(more) if more else None))

    async def show_silence(self, request: Request) -> Response:
        silence_id = _silence_id(request)
        silence = await self.notifier.silence(silence_id)
        if silence is None:
            raise _no_silence(silence_id)
        return answer(self._silence_view(silence))

    async def end_silence(self, request: Request) -> Response:
        silence_id = _silence_id(request)
        body = s.parse(s.SilenceEndBody, await self._json(request))
        ended, released = await self.notifier.end_silence(silence_id, body.author, body.release)
        return answer(self._silence_view(ended, released=released))

    def _silence_view(self, silence: Silence, **extra: Any) -> s.View:
        return s.silence_view(silence, self.notifier.now(), **extra)

    # -- Flyte 2's named rules and deliveries ------------------------------------------

    async def list_named(self, kind: NamedKind, request: Request) -> Response:
        entries = await self.notifier.named_rules(kind)
        return answer(s.NamedRuleList(items=[s.NamedRuleView.of(e) for e in entries]))

    async def named(self, kind: NamedKind, request: Request) -> Response:
        name = request.path_params["name"]
        scope = s.parse(s.ScopeQuery, dict(request.query_params))
        for entry in await self.notifier.named_rules(kind):
            if (entry.name, entry.project, entry.domain) == (name, scope.project, scope.domain):
                return answer(s.NamedRuleView.of(entry))
        raise _no_named(kind, name, scope.project, scope.domain)

    async def put_named(self, kind: NamedKind, request: Request) -> Response:
        model = s.NamedRuleBody if kind is NamedKind.RULE else s.NamedDeliveryBody
        body = s.parse(model, await self._json(request))
        phases = frozenset(getattr(body, "phases", ()))
        entry = NamedRule(
            kind,
            request.path_params["name"],
            tuple(body.recipients),
            phases,
            body.project,
            body.domain,
        )
        stored, problems = await self.notifier.put_named_rule(entry)
        return answer(s.NamedRuleView.of(stored, warnings=problems))

    async def delete_named(self, kind: NamedKind, request: Request) -> Response:
        name = request.path_params["name"]
        scope = s.parse(s.ScopeQuery, dict(request.query_params))
        if await self.notifier.delete_named_rule(kind, name, scope.project, scope.domain):
            return Response(status_code=204)
        configured = [
            e
            for e in await self.notifier.named_rules(kind)
            if (e.name, e.project, e.domain) == (name, scope.project, scope.domain)
        ]
        if configured:  # the configuration file's: changed there, not here
            raise Conflict(Problem("name", "the configuration file defines it; change it there"))
        raise _no_named(kind, name, scope.project, scope.domain)

    # -- deadlines ----------------------------------------------------------------------

    async def list_deadlines(self, request: Request) -> Response:
        # Read again: a replica may have changed them since this one last looked.
        await self.notifier.refresh_deadlines()
        items = [s.DeadlineView.of(deadline) for deadline in self.notifier.deadlines()]
        return answer(s.DeadlineList(items=items))

    async def show_deadline(self, request: Request) -> Response:
        ident = DeadlineId(*_path_id(request))
        await self.notifier.refresh_deadlines()
        deadline = self.notifier.deadline(ident)
        if deadline is None:
            raise _no_deadline(ident)
        return answer(s.DeadlineView.of(deadline))

    async def put_deadline(self, request: Request) -> Response:
        ident = DeadlineId(*_path_id(request))
        body = s.parse(s.DeadlineBody, await self._json(request))
        stored, problems = await self.notifier.put_deadline(body.deadline(ident))
        return answer(s.DeadlineView.of(stored, warnings=problems))

    async def delete_deadline(self, request: Request) -> Response:
        ident = DeadlineId(*_path_id(request))
        if await self.notifier.delete_deadline(ident):
            return Response(status_code=204)
        found = self.notifier.deadline(ident)
        if found is not None and found.source == "config":  # changed there, not here
            raise Conflict(Problem("name", "the configuration file defines it; change it there"))
        raise _no_deadline(ident)


# -- the route table ------------------------------------------------------------------


_IDS = {part: identifier_pattern(part) for part in ("project", "domain", "name")}
_DELIVERY_ID = {"id": {"type": "integer", "minimum": 1, "maximum": MAX_INT}}
_SILENCE_ID = _DELIVERY_ID
_NAMED_ID = {"name": identifier_pattern("name")}


def _named(kind: NamedKind, base: str, what: str, body: type[s.Request]) -> list[Operation]:
    """The list and one-entry operations of named rules (or named deliveries)."""

    def bound(method: Callable[..., Awaitable[Response]]) -> Any:
        return lambda api, request: method(api, kind, request)

    one = f"{base}/{{name}}"
    return [
        Operation(
            "GET", base, f"Every {what} (the configuration file's and the API's)",
            bound(_Api.list_named), {200: (f"The {what}s", s.NamedRuleList)}, (401,),
        ),
        Operation(
            "GET", one, f"One {what}, of the scope the query names", bound(_Api.named),
            {200: (f"The {what}", s.NamedRuleView)}, (400, 401, 404),
            query=s.ScopeQuery, path_params=_NAMED_ID,
        ),
        Operation(
            "PUT", one, f"Create or replace a {what} in the scope the body names",
            bound(_Api.put_named),
            {200: ("Stored, with warnings for unreachable recipients", s.NamedRuleView)},
            (400, 401, 409, 413, 415), body={JSON: body}, path_params=_NAMED_ID,
        ),
        Operation(
            "DELETE", one, f"Delete a {what} managed over the API", bound(_Api.delete_named),
            {204: ("Deleted", None)}, (400, 401, 404, 409),
            query=s.ScopeQuery, path_params=_NAMED_ID,
        ),
    ]  # fmt: skip


_PLAN = "/api/v1/launch-plans/{project}/{domain}/{name}"
_ACTIONS = "/api/v1/executions/{project}/{domain}/{name}/actions"
_DEADLINE = "/api/v1/deadlines/{project}/{domain}/{name}"
_RESULT = s.EventResultView

OPERATIONS: list[Operation] = [
    Operation("GET", "/healthz", "Liveness", _Api.healthz, {200: ("Alive", s.Health)}, public=True),
    Operation(
        "GET", "/readyz", "Readiness: database, channels and intake sources", _Api.readyz,
        {200: ("Ready", s.Readiness),
         503: ("Database unreachable or full, or an intake source not connected", s.Readiness)},
        public=True,
    ),
    Operation(
        "GET", "/metrics", "Prometheus metrics (text exposition format 0.0.4)", _Api.metrics_text,
        {200: ("Metrics", {"text/plain": {"type": "string"}})}, (401,),
    ),
    Operation(
        "GET", "/openapi.json", "This document", _Api.openapi,
        {200: ("OpenAPI 3.1", {"type": "object"})}, (401,),
    ),
    Operation(
        "GET", _PLAN, "The latest registered version's notifications", _Api.launch_plan,
        {200: ("The launch plan", s.LaunchPlanView)}, (400, 401, 404), path_params=_IDS,
    ),
    Operation(
        "PUT", _PLAN,
        "Register a launch plan version's notifications (JSON, or a serialized admin.LaunchPlan)",
        _Api.register_launch_plan, {200: ("Registered", s.LaunchPlanView)},
        (400, 401, 404, 413, 415),
        body={JSON: s.LaunchPlanBody, PROTOBUF[0]: {"type": "string", "format": "binary"}},
        path_params=_IDS,
    ),
    Operation(
        "POST", "/api/v1/executions", "Create an execution; freezes its notifications",
        _Api.create_execution, {201: ("Created (or the existing one)", s.ExecutionView)},
        (400, 401, 404, 413, 415), body={JSON: s.ExecutionBody},
    ),
    Operation(
        "GET", "/api/v1/executions/{project}/{domain}/{name}",
        "An execution: where its notifications came from, its events with their outcomes,"
        " and its deliveries",
        _Api.show_execution, {200: ("The execution", s.ExecutionDetail)}, (400, 401, 404),
        path_params=_IDS,
    ),
    Operation(
        "POST", _ACTIONS,
        "Act on the execution: approve, reject or signal a gate, relaunch, recover or abort."
        " Recorded with who asked (the bearer token's identity) whatever comes of it",
        _Api.act,
        {201: ("Done now", s.ActionView),
         200: ("Decided before (the first decision, unchanged), or answered elsewhere",
               s.ActionView),
         202: ("Another request holds the decision and is asking Flyte now (pending)",
               s.ActionView)},
        (400, 401, 403, 404, 413, 415, 502, 503), body={JSON: s.ActionBody}, path_params=_IDS,
    ),
    Operation(
        "POST", chat.SLACK_PATH,
        "Slack's interactivity callback: a click on a message's button, verified with the"
        " app's signing secret (no API token), done, and shown on the message",
        _Api.slack_interactions,
        {200: ("Answered: the message was updated (empty), or an ephemeral text for the"
               " person who clicked when it could not be", s.SlackAnswer)},
        (400, 401, 404, 413), body={"application/x-www-form-urlencoded": s.SlackInteraction},
        public=True,
    ),
    Operation(
        "POST", chat.MATTERMOST_PATH,
        "Mattermost's call for a click on a message button: verified by the HMAC the"
        " button carries (no API token), done, and the post updated",
        _Api.mattermost_actions,
        {200: ("Answered: the post as it now reads, or an ephemeral text",
               s.MattermostAnswer)},
        (400, 401, 404, 413, 415), body={JSON: s.MattermostAction}, public=True,
    ),
    Operation(
        "GET", _ACTIONS, "The actions asked on the execution, in order, whatever came of them",
        _Api.list_actions, {200: ("The actions", s.ActionList)}, (400, 401), path_params=_IDS,
    ),
    Operation(
        "POST", "/api/v1/events",
        "Report a WorkflowExecutionEvent: JSON, protobuf, or a Flyte cloud event (structured,"
        " or binary with ce-* headers)",
        _Api.event,
        {200: ("Recorded; nothing (more) to send", _RESULT), 202: ("Deliveries enqueued", _RESULT)},
        (400, 401, 413, 415, 503),
        body={
            JSON: flyteidl_json.ref("Event"),
            PROTOBUF[0]: {"type": "string", "format": "binary"},
            CLOUDEVENTS: flyteidl_json.ref("CloudEvent"),
        },
    ),
    Operation(
        "POST", "/api/v1/events:batch",
        "Report many events: the good ones are recorded, each bad one is answered with"
        " outcome rejected and its problems (events[i].field)",
        _Api.events_batch, {200: ("One result per event, in order", s.BatchResults)},
        (400, 401, 413, 415, 503), body={JSON: flyteidl_json.BATCH},
    ),
    Operation(
        "GET", "/api/v1/deliveries", "List deliveries, oldest first", _Api.list_deliveries,
        {200: ("A page of deliveries", s.DeliveryPage)}, (400, 401), query=s.DeliveryQuery,
    ),
    Operation(
        "GET", "/api/v1/deliveries/{id}", "One delivery with its attempts and message",
        _Api.show_delivery, {200: ("The delivery", s.DeliveryDetail)}, (401, 404),
        path_params=_DELIVERY_ID,
    ),
    Operation(
        "POST", "/api/v1/deliveries/{id}/retry", "Send a dead (or silenced) delivery again",
        _Api.retry_delivery, {200: ("Pending again", s.DeliveryView)}, (401, 404, 409),
        path_params=_DELIVERY_ID,
    ),
    Operation(
        "POST", "/api/v1/silences",
        "Create a silence; one in effect now also holds the waiting deliveries it matches",
        _Api.create_silence,
        {201: ("Created, with how many waiting deliveries it held", s.SilenceView)},
        (400, 401, 413, 415), body={JSON: s.SilenceBody},
    ),
    Operation(
        "GET", "/api/v1/silences", "List silences, newest first", _Api.list_silences,
        {200: ("A page of silences", s.SilencePage)}, (400, 401), query=s.SilenceQuery,
    ),
    Operation(
        "GET", "/api/v1/silences/{id}", "One silence and its state now", _Api.show_silence,
        {200: ("The silence", s.SilenceView)}, (401, 404), path_params=_SILENCE_ID,
    ),
    Operation(
        "POST", "/api/v1/silences/{id}/end",
        "End a silence now; with release, what it held is sent at once",
        _Api.end_silence,
        {200: ("Ended, with how many deliveries were released", s.SilenceView)},
        (400, 401, 404, 409, 413, 415), body={JSON: s.SilenceEndBody},
        path_params=_SILENCE_ID,
    ),
    Operation(
        "GET", "/api/v1/inbox", "Messages in the dev inbox", _Api.inbox,
        {200: ("A page of messages", s.InboxPage)}, (400, 401), query=s.PageQuery,
    ),
    *_named(NamedKind.RULE, "/api/v1/flyte2/rules", "named rule", s.NamedRuleBody),
    *_named(NamedKind.DELIVERY, "/api/v1/flyte2/deliveries", "named delivery", s.NamedDeliveryBody),
    Operation(
        "GET", "/api/v1/deadlines", "Every deadline (the configuration file's and the API's)",
        _Api.list_deadlines, {200: ("The deadlines", s.DeadlineList)}, (401,),
    ),
    Operation(
        "GET", _DEADLINE, "One deadline", _Api.show_deadline,
        {200: ("The deadline", s.DeadlineView)}, (400, 401, 404), path_params=_IDS,
    ),
    Operation(
        "PUT", _DEADLINE,
        "Create or replace a deadline (a launch plan's own schedule is read from FlyteAdmin"
        " when none is given)",
        _Api.put_deadline,
        {200: ("Stored, with warnings for unreachable recipients", s.DeadlineView)},
        (400, 401, 409, 413, 415, 503), body={JSON: s.DeadlineBody}, path_params=_IDS,
    ),
    Operation(
        "DELETE", _DEADLINE, "Delete a deadline managed over the API (and its timers)",
        _Api.delete_deadline, {204: ("Deleted", None)}, (400, 401, 404, 409), path_params=_IDS,
    ),
]  # fmt: skip


def document() -> dict[str, Any]:
    """The OpenAPI document of this API (``GET /openapi.json``)."""
    return openapi.document(OPERATIONS)


# What a dispatcher replica serves (role dispatcher: no API, no console).
_DISPATCHER_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


# -- conversions -------------------------------------------------------------------


def _plan_view(
    plan_id: EntityId, notifications: Sequence[Notification], warnings: list[Problem] | None = None
) -> s.LaunchPlanView:
    return s.LaunchPlanView(
        id=s.entity_view(plan_id),  # type: ignore[arg-type]
        notifications=[n.to_dict() for n in notifications],
        warnings=warnings,
    )


def _entity_id(body: s.EntityIdBody | None) -> EntityId | None:
    if body is None:
        return None
    return EntityId(body.project, body.domain, body.name, body.version)


def _no_named(kind: NamedKind, name: str, project: str, domain: str) -> ApiError:
    scope = f"{project or '*'}/{domain or '*'}"
    what = "named rule" if kind is NamedKind.RULE else "named delivery"
    return ApiError(
        404,
        f"no {what} {name!r} for {scope}",
        [Problem("name", f"no {what} of this name and scope (project, domain)")],
    )


def _silence_id(request: Request) -> int:
    raw = request.path_params["id"]
    try:
        return parse_int(raw, "id", 1, MAX_INT)
    except InputError as error:
        # Not an id any silence can have: as unknown as a number never used.
        raise ApiError(404, f"no silence {raw}", error.problems) from None


def _no_silence(silence_id: int) -> ApiError:
    return ApiError(404, f"no silence {silence_id}", [Problem("id", "no silence has this id")])


def _no_deadline(ident: DeadlineId) -> ApiError:
    return ApiError(
        404, f"no deadline {ident}", [Problem("name", "no deadline of this name in this scope")]
    )


def _rejected(error: InputError, prefix: str) -> s.Rejected:
    return s.Rejected(
        problems=[Problem(f"{prefix}.{p.field}".rstrip("."), p.message) for p in error.problems]
    )


def _routing_problems(status: int) -> list[Problem]:
    if status == 404:
        return [Problem("path", "no such route")]
    if status == 405:
        return [Problem("method", "not allowed on this route")]
    return []


def _path_id(request: Request) -> tuple[str, str, str]:
    """project, domain and name from the path, held to the identifier rules."""
    project, domain, name = (request.path_params[k] for k in ("project", "domain", "name"))
    problems = id_problems({"project": project, "domain": domain, "name": name}, "")
    if problems:
        raise InputError(problems)
    return project, domain, name


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request body too large", [Problem("body", f"at most {limit} bytes")])


def _event_from_protobuf(body: bytes) -> ExecutionEvent:
    try:
        return event_from_bytes(body)
    except InputError as error:
        raise InputError([Problem(p.field or "body", p.message) for p in error.problems]) from None


def _launch_plan_message(body: bytes, project: str, domain: str, name: str) -> Any:
    from flyteidl.admin import launch_plan_pb2
    from google.protobuf.message import DecodeError

    message = launch_plan_pb2.LaunchPlan()
    try:
        message.ParseFromString(body)
    except DecodeError as error:
        raise InputError(Problem("body", f"not a serialized LaunchPlan: {error}")) from None
    given = (message.id.project, message.id.domain, message.id.name)
    if message.HasField("id") and given != (project, domain, name):
        raise InputError(
            Problem("id", f"{'/'.join(given)} does not match the URL {project}/{domain}/{name}")
        )
    return message


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
