"""The HTTP API: a thin JSON layer over :class:`~flytenotify.app.Notifier`.

Every client mistake is a 4xx with ``{"error": ..., "problems": [{"field",
"message"}]}``; a 5xx means a fault of ours. See docs/http-api.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
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

from flytenotify.app import Notifier
from flytenotify.core.notification import Notification
from flytenotify.domain import (
    RULE_PHASES,
    Delivery,
    DeliveryStatus,
    EntityId,
    ExecutionEvent,
    ExecutionId,
    NamedKind,
    NamedRule,
)
from flytenotify.engine import resolve
from flytenotify.errors import (
    Conflict,
    InputError,
    NotificationConfigError,
    Problem,
    UnknownReference,
    UpstreamUnavailable,
)
from flytenotify.intake import cloudevents
from flytenotify.intake.events import (
    entity_id_from_json,
    event_from_bytes,
    event_from_json,
    execution_id_from_json,
)
from flytenotify.intake.limits import (
    MAX_INT,
    id_problems,
    identifier_problems,
    loads_json,
    parse_int,
)
from flytenotify.intake.source import Source
from flytenotify.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from flytenotify.metrics import Metrics
from flytenotify.settings_loader import ServerConfig
from flytenotify.store.base import (
    DeliveryFilter,
    EventOutcome,
    EventResult,
    StoreUnavailable,
)
from flytenotify.store.migrations import NEWEST
from flytenotify.web import openapi as openapi_document
from flytenotify.web.console import console_app
from flytenotify.web.schemas import (
    MAX_LIMIT,
    MAX_MESSAGE_ID,
    attempt_json,
    delivery_json,
    entity_json,
    execution_json,
    id_json,
    inbox_json,
    named_rule_json,
    plan_json,
    source_json,
)

log = logging.getLogger("flytenotify.web.api")

JSON = "application/json"
PROTOBUF = ("application/x-protobuf", "application/protobuf", "application/octet-stream")

Handler = Callable[[Request], Awaitable[Response]]
# Probes must work without a token; everything else needs one when tokens are set.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# The web console asks for a token itself and keeps a session cookie (console/auth.py).
CONSOLE = "/ui"
REALM = "flytenotify"


class JSONResponse(responses.JSONResponse):
    """Starlette's JSON answer, encoded by orjson: a batch's answer lists every event."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """A 4xx answer with its problems."""

    def __init__(self, status: int, error: str, problems: list[Problem] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems or []


def error_response(status: int, error: str, problems: list[Problem] | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "error": error,
            "problems": [{"field": p.field, "message": p.message} for p in problems or []],
        },
        status_code=status,
    )


def create_app(
    notifier: Notifier,
    server: ServerConfig | None = None,
    metrics: Metrics | None = None,
    *,
    api: bool = True,
    sources: Sequence[Source] = (),
) -> Starlette:
    """The Starlette application serving ``notifier``.

    ``metrics`` should be the :class:`Metrics` whose ``observe_attempt`` the
    notifier's dispatcher reports to; without it, attempts are not counted.
    ``api=False`` serves only health, readiness and metrics (a dispatcher replica).
    ``sources`` are the broker sources running beside it, reported by ``/readyz``.
    """
    server = server or ServerConfig()
    handlers = _Api(notifier, server, metrics or Metrics(), sources)
    routes: list[BaseRoute] = [
        Route("/healthz", handlers.wrap(handlers.healthz), methods=["GET"]),
        Route("/readyz", handlers.wrap(handlers.readyz), methods=["GET"]),
        Route("/metrics", handlers.wrap(handlers.metrics_text), methods=["GET"]),
    ]
    if api:
        routes += _api_routes(handlers)
        routes += [Mount(CONSOLE, console_app(notifier, server.tokens(), sources))]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        answer = error_response(exc.status_code, exc.detail, _routing_problems(exc.status_code))
        answer.headers.update(exc.headers or {})  # a 405 says which methods are allowed
        return answer

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(_TokenGate, api=handlers)],
    )
    app.state.notifier = notifier
    app.state.metrics = handlers.metrics
    return app


def _api_routes(api: _Api) -> list[Route]:
    return [
        Route("/openapi.json", api.wrap(api.openapi), methods=["GET"]),
        Route(
            "/api/v1/launch-plans/{project}/{domain}/{name}",
            api.wrap(api.launch_plan),
            methods=["GET", "PUT"],
        ),
        Route("/api/v1/executions", api.wrap(api.create_execution), methods=["POST"]),
        Route(
            "/api/v1/executions/{project}/{domain}/{name}",
            api.wrap(api.show_execution),
            methods=["GET"],
        ),
        Route("/api/v1/events:batch", api.wrap(api.events_batch), methods=["POST"]),
        Route("/api/v1/events", api.wrap(api.event), methods=["POST"]),
        Route("/api/v1/deliveries", api.wrap(api.list_deliveries), methods=["GET"]),
        Route("/api/v1/deliveries/{id}", api.wrap(api.show_delivery), methods=["GET"]),
        Route("/api/v1/deliveries/{id}/retry", api.wrap(api.retry_delivery), methods=["POST"]),
        Route("/api/v1/inbox", api.wrap(api.inbox), methods=["GET"]),
        *(
            route
            for path, kind in _NAMED_PATHS.items()
            for route in (
                Route(path, api.wrap(partial(api.list_named, kind)), methods=["GET"]),
                Route(
                    f"{path}/{{name}}",
                    api.wrap(partial(api.named, kind)),
                    methods=["GET", "PUT", "DELETE"],
                ),
            )
        ),
    ]


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
    ) -> None:
        self.notifier = notifier
        self.sources = list(sources)
        self.server = server
        self.metrics = metrics
        self.tokens = [_digest(t.encode()) for t in server.tokens()]

    # -- plumbing ------------------------------------------------------------------

    def wrap(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                return error_response(error.status, error.error, error.problems)
            except UnknownReference as error:
                return error_response(404, "not found", error.problems)
            except Conflict as error:
                return error_response(409, "conflict", error.problems)
            except (InputError, NotificationConfigError) as error:
                # A problem with no field is one with the request body as a whole.
                problems = [Problem(p.field or "body", p.message) for p in error.problems]
                return error_response(400, "invalid request", problems)
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

        return endpoint

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
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        channels = self.notifier.channel_states()
        try:
            version = await self.notifier.schema_version()
        except Exception as error:  # any database failure means "not ready"
            log.warning("readiness check failed: %s", error)
            return JSONResponse(
                {"status": "unavailable", "database": {"error": str(error)}, "channels": channels},
                status_code=503,
            )
        database: dict[str, Any] = {"schema_version": version, "schema_expected": NEWEST}
        full = self.notifier.ledger_full()
        if version != NEWEST:
            database["error"] = (
                f"schema version {version}, expected {NEWEST}: run flytenotify db upgrade"
            )
        elif full is not None:  # reads still work; writes do not
            database["error"] = full
        if "error" in database:
            return JSONResponse(
                {"status": "unavailable", "database": database, "channels": channels},
                status_code=503,
            )
        body: dict[str, Any] = {"status": "ready", "database": database, "channels": channels}
        if self.sources:
            body["intake"] = {s.name: source_json(s.status) for s in self.sources}
            if not all(s.status.ready for s in self.sources):
                body["status"] = "unavailable"
                return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document.document())

    async def metrics_text(self, request: Request) -> Response:
        body = self.metrics.render(await self.notifier.ledger_state())
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    # -- launch plans and executions -----------------------------------------------

    async def launch_plan(self, request: Request) -> Response:
        project, domain, name = _path_id(request)
        if request.method == "GET":
            plan = await self.notifier.launch_plan(EntityId(project, domain, name))
            if plan is None:
                raise ApiError(
                    404,
                    f"no launch plan {project}/{domain}/{name} is registered",
                    [Problem("name", "no launch plan of this name is registered")],
                )
            return JSONResponse(plan_json(plan.id, plan.notifications))
        if _content_type(request) in PROTOBUF:
            registered = await self.notifier.register_launch_plan(
                _launch_plan_message(await self._body(request), project, domain, name)
            )
        else:
            data = await self._json(request)
            if not isinstance(data, dict):
                raise InputError(Problem("", "the body must be a JSON object"))
            problems = [
                Problem(key, "unknown field")
                for key in data
                if key not in ("version", "notifications")
            ]
            version = data.get("version")
            problems += identifier_problems(version, "version", "version")
            notifications = data.get("notifications", [])
            problems += _notification_shape(notifications)
            if problems:
                raise InputError(problems)
            registered = await self.notifier.register_launch_plan(
                EntityId(project, domain, name, str(version)), notifications
            )
        answer = plan_json(registered.id, registered.notifications)
        # Accepted (the configuration may be fixed later), but said out loud now.
        answer["warnings"] = self._routing_warnings(registered.notifications)
        return JSONResponse(answer)

    def _routing_warnings(self, notifications: Sequence[Notification]) -> list[dict[str, str]]:
        problems = resolve.routing_problems(
            notifications, self.notifier.settings, self.notifier.dev_inbox
        )
        return [{"field": p.field, "message": p.message} for p in problems]

    async def create_execution(self, request: Request) -> Response:
        data = await self._json(request)
        if not isinstance(data, dict):
            raise InputError(Problem("", "the body must be a JSON object"))
        known = ("id", "launch_plan", "workflow", "notifications", "disable_all")
        problems = [Problem(key, "unknown field") for key in data if key not in known]
        execution_id = _collect(problems, lambda: execution_id_from_json(data.get("id"), "id"))
        launch_plan = workflow = None
        # A field given must be valid: null is not "left out" here.
        if "launch_plan" in data:
            launch_plan = _collect(
                problems, lambda: entity_id_from_json(data["launch_plan"], "launch_plan")
            )
        if "workflow" in data:
            workflow = _collect(problems, lambda: entity_id_from_json(data["workflow"], "workflow"))
        notifications = data.get("notifications", [])
        problems += _notification_shape(notifications)
        disable_all = data.get("disable_all", False)
        if not isinstance(disable_all, bool):
            problems.append(Problem("disable_all", f"must be true or false, got {disable_all!r}"))
        if problems or execution_id is None:
            raise InputError(problems)
        execution = await self.notifier.create_execution(
            execution_id,
            launch_plan,
            notifications=notifications,
            disable_all=disable_all,
            workflow=workflow,
        )
        return JSONResponse(
            {
                "id": id_json(execution.id),
                "launch_plan": entity_json(execution.launch_plan),
                "workflow": entity_json(execution.workflow),
                "notifications": [n.to_dict() for n in execution.notifications],
                "created_at": execution.created_at.isoformat(),
                # Overrides come from the caller: say now which recipients will not be reached.
                "warnings": self._routing_warnings(execution.notifications),
            },
            status_code=201,
        )

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
            DeliveryFilter(execution=execution_id, limit=MAX_LIMIT)
        )
        return JSONResponse(execution_json(execution, events, deliveries))

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
        return JSONResponse(
            _result_json(result),
            status_code=202 if result.outcome is EventOutcome.ENQUEUED else 200,
        )

    async def _cloud_event(self, request: Request, kind: str) -> Response:
        parsed = cloudevents.parse(kind, request.headers, await self._body(request))
        if parsed.event is None:
            self.metrics.event_received("ignored")
            return JSONResponse({"outcome": "ignored", "cloud_event": _cloud_json(parsed)})
        (result,) = await self.notifier.record_checked_events([parsed.event])
        self.metrics.event_received(result.outcome.value)
        return JSONResponse(
            {**_result_json(result), "cloud_event": _cloud_json(parsed)},
            status_code=202 if result.outcome is EventOutcome.ENQUEUED else 200,
        )

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
        answers: list[dict[str, Any] | None] = []
        events: list[ExecutionEvent] = []
        for i, item in enumerate(data):
            try:
                events.append(event_from_json(item))
                answers.append(None)  # filled in once the good events are recorded
            except InputError as error:
                self.metrics.event_received("invalid")
                answers.append(_rejected_json(error, f"events[{i}]"))
        results = iter(await self.notifier.record_checked_events(events) if events else [])
        for i, answer in enumerate(answers):
            if answer is None:
                result = next(results)
                self.metrics.event_received(result.outcome.value)
                answers[i] = _result_json(result)
        return JSONResponse({"results": answers})

    # -- deliveries and the inbox --------------------------------------------------

    async def list_deliveries(self, request: Request) -> Response:
        query = _delivery_filter(request.query_params)
        items = await self.notifier.deliveries(query)
        more = len(items) == query.limit
        return JSONResponse(
            {
                "items": [delivery_json(d) for d in items],
                "next": str(items[-1].id) if items and more else None,
            }
        )

    async def show_delivery(self, request: Request) -> Response:
        delivery = await self._delivery(request)
        body = delivery_json(delivery)
        body["attempts"] = [attempt_json(a) for a in await self.notifier.attempts(delivery.id)]
        body["message"] = {"subject": delivery.message.subject, "text": delivery.message.text}
        return JSONResponse(body)

    async def retry_delivery(self, request: Request) -> Response:
        delivery = await self._delivery(request)
        redriven = await self.notifier.redrive(delivery.id)
        if redriven is None:
            raise ApiError(
                409,
                f"delivery {delivery.id} is {delivery.status.value}, not dead",
                [Problem("status", "only a dead delivery can be retried")],
            )
        return JSONResponse(delivery_json(redriven))

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
        params = request.query_params
        after = _int_param(params, "cursor", 0)
        limit = _int_param(params, "limit", 100, 1, MAX_LIMIT)
        items = await self.notifier.inbox(after or None, limit)
        return JSONResponse(
            {
                "items": [inbox_json(m) for m in items],
                "next": str(items[-1].id) if items and len(items) == limit else None,
            }
        )

    # -- Flyte 2's named rules and deliveries ------------------------------------------

    async def list_named(self, kind: NamedKind, request: Request) -> Response:
        entries = await self.notifier.named_rules(kind)
        return JSONResponse({"items": [named_rule_json(entry) for entry in entries]})

    async def named(self, kind: NamedKind, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "PUT":
            entry = _named_rule_body(kind, name, await self._json(request))
            stored, problems = await self.notifier.put_named_rule(entry)
            answer = named_rule_json(stored)
            answer["warnings"] = [{"field": p.field, "message": p.message} for p in problems]
            return JSONResponse(answer)
        project, domain = _scope_params(request.query_params)
        found = [
            entry
            for entry in await self.notifier.named_rules(kind)
            if (entry.name, entry.project, entry.domain) == (name, project, domain)
        ]
        if request.method == "GET" and found:
            return JSONResponse(named_rule_json(found[0]))
        if request.method == "DELETE":
            if await self.notifier.delete_named_rule(kind, name, project, domain):
                return Response(status_code=204)
            if found:  # the configuration file's: changed there, not here
                raise Conflict(
                    Problem("name", "the configuration file defines it; change it there")
                )
        raise _no_named(kind, name, project, domain)


# -- conversions -------------------------------------------------------------------


_NAMED_PATHS = {
    "/api/v1/flyte2/rules": NamedKind.RULE,
    "/api/v1/flyte2/deliveries": NamedKind.DELIVERY,
}
_NAMED_FIELDS = frozenset({"phases", "recipients", "project", "domain"})


def _named_rule_body(kind: NamedKind, name: str, data: Any) -> NamedRule:
    """A named rule or delivery from its JSON body; InputError naming each bad field."""
    if not isinstance(data, dict):
        raise InputError(Problem("", "the body must be a JSON object"))
    allowed = _NAMED_FIELDS if kind is NamedKind.RULE else _NAMED_FIELDS - {"phases"}
    problems = [Problem(key, "unknown field") for key in data if key not in allowed]
    recipients = _string_list(data.get("recipients"), "recipients", problems)
    phases: set[int] = set()
    if kind is NamedKind.RULE:
        for i, phase in enumerate(_string_list(data.get("phases"), "phases", problems)):
            number = RULE_PHASES.get(phase.upper()) if phase.isascii() else None
            if number is None:
                known = ", ".join(RULE_PHASES)
                problems.append(Problem(f"phases[{i}]", f"must be one of {known}, got {phase!r}"))
            else:
                phases.add(number)
    scope = {part: data.get(part, "") for part in ("project", "domain")}
    for part, value in scope.items():
        if not isinstance(value, str):
            problems.append(Problem(part, f"must be a string, got {type(value).__name__}"))
    if problems:
        raise InputError(problems)
    return NamedRule(
        kind, name, tuple(recipients), frozenset(phases), scope["project"], scope["domain"]
    )


def _string_list(value: Any, field: str, problems: list[Problem]) -> list[str]:
    if not isinstance(value, list) or not value:
        problems.append(Problem(field, "must be a non-empty list of strings"))
        return []
    wrong = [i for i, item in enumerate(value) if not isinstance(item, str)]
    problems += [Problem(f"{field}[{i}]", "must be a string") for i in wrong]
    return [item for item in value if isinstance(item, str)]


def _scope_params(params: Mapping[str, str]) -> tuple[str, str]:
    problems: list[Problem] = []
    for part in ("project", "domain"):
        value = params.get(part, "")
        if value:
            problems += identifier_problems(value, part, part)
    if problems:
        raise InputError(problems)
    return params.get("project", ""), params.get("domain", "")


def _no_named(kind: NamedKind, name: str, project: str, domain: str) -> ApiError:
    scope = f"{project or '*'}/{domain or '*'}"
    what = "named rule" if kind is NamedKind.RULE else "named delivery"
    return ApiError(
        404,
        f"no {what} {name!r} for {scope}",
        [Problem("name", f"no {what} of this name and scope (project, domain)")],
    )


def _rejected_json(error: InputError, prefix: str) -> dict[str, Any]:
    return {
        "outcome": "rejected",
        "problems": [
            {"field": f"{prefix}.{p.field}".rstrip("."), "message": p.message}
            for p in error.problems
        ],
    }


def _routing_problems(status: int) -> list[Problem]:
    if status == 404:
        return [Problem("path", "no such route")]
    if status == 405:
        return [Problem("method", "not allowed on this route")]
    return []


def _result_json(result: EventResult) -> dict[str, Any]:
    body: dict[str, Any] = {"outcome": result.outcome.value}
    if result.outcome is EventOutcome.ENQUEUED:
        body["delivery_ids"] = list(result.delivery_ids)
    return body


def _cloud_json(parsed: cloudevents.ParsedCloudEvent) -> dict[str, str]:
    return {"id": parsed.id, "type": parsed.type, "source": parsed.source}


def _collect(problems: list[Problem], parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except InputError as error:
        problems.extend(error.problems)
        return None


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


def _notification_shape(notifications: object) -> list[Problem]:
    """Notifications in a request are JSON objects; the parser checks the rest."""
    if not isinstance(notifications, list):
        return [Problem("notifications", "must be a list of notifications")]
    return [
        Problem(f"notifications[{i}]", f"must be an object, got {item!r}")
        for i, item in enumerate(notifications)
        if not isinstance(item, dict)
    ]


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


def _int_param(
    params: Mapping[str, str], name: str, default: int, low: int = 0, high: int = MAX_INT
) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    return parse_int(raw, name, low, high)


def _delivery_filter(params: Mapping[str, str]) -> DeliveryFilter:
    problems: list[Problem] = []
    execution = status = since = None
    # A parameter given empty is a mistake, not an absent one: refused like any other.
    if "execution" in params:
        execution = _execution_param(params["execution"], problems)
    if "status" in params:
        try:
            status = DeliveryStatus(params["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            problems.append(Problem("status", f"must be one of {allowed}"))
    if "since" in params:
        since = _parse_since(params["since"], problems)
    channel = params.get("channel")
    if channel is not None:
        # Channel names follow the identifier rules (no NUL for PostgreSQL).
        problems += identifier_problems(channel, "channel", "project")
    message = params.get("message")
    if (message is not None and not 0 < len(message) <= MAX_MESSAGE_ID) or "\x00" in (
        message or ""
    ):
        problems.append(
            Problem("message", f"must be a message id (1 to {MAX_MESSAGE_ID} characters, no NUL)")
        )
    cursor = _collect_int(problems, params, "cursor", 0)
    limit = _collect_int(problems, params, "limit", 100, 1, MAX_LIMIT)
    if problems:
        raise InputError(problems)
    return DeliveryFilter(
        execution=execution,
        status=status,
        channel=channel,
        since=since,
        after_id=cursor or None,
        message=message,
        limit=limit,
    )


def _collect_int(
    problems: list[Problem], params: Mapping[str, str], name: str, default: int, *bounds: int
) -> int:
    try:
        return _int_param(params, name, default, *bounds)
    except InputError as error:
        problems.extend(error.problems)
        return default


def _execution_param(raw: str, problems: list[Problem]) -> ExecutionId | None:
    try:
        execution = ExecutionId.parse(raw)
    except ValueError as error:
        problems.append(Problem("execution", str(error)))
        return None
    parts = {"project": execution.project, "domain": execution.domain, "name": execution.name}
    found = id_problems(parts, "execution")
    problems += found
    return None if found else execution


def _parse_since(raw: str, problems: list[Problem]) -> float | None:
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        problems.append(Problem("since", f"must be a finite number of seconds, got {raw!r}"))
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        problems.append(Problem("since", f"must be an ISO 8601 time or Unix seconds, got {raw!r}"))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
