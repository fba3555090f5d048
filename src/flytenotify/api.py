"""The HTTP API: a thin JSON layer over :class:`~flytenotify.app.Notifier`.

Every client mistake is a 4xx with ``{"error": ..., "problems": [{"field",
"message"}]}``; a 5xx means a fault of ours. See docs/http-api.md.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette import responses
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flytenotify.app import Notifier
from flytenotify.domain import (
    Attempt,
    Delivery,
    DeliveryStatus,
    EntityId,
    Execution,
    ExecutionEvent,
    ExecutionId,
)
from flytenotify.engine import resolve
from flytenotify.errors import InputError, NotificationConfigError, Problem, UpstreamUnavailable
from flytenotify.intake import cloudevents
from flytenotify.intake.events import (
    entity_id_from_json,
    event_from_bytes,
    event_from_json,
    execution_id_from_json,
)
from flytenotify.intake.source import Source, SourceStatus
from flytenotify.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from flytenotify.metrics import Metrics
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.openapi import OPENAPI
from flytenotify.settings_loader import ServerConfig
from flytenotify.store.base import (
    DeliveryFilter,
    EventOutcome,
    EventResult,
    InboxMessage,
    StoreUnavailable,
)
from flytenotify.store.migrations import NEWEST

log = logging.getLogger("flytenotify.api")

JSON = "application/json"
PROTOBUF = ("application/x-protobuf", "application/protobuf", "application/octet-stream")
MAX_LIMIT = 1000
CHANNELS = (resolve.EMAIL, resolve.SLACK, resolve.PAGERDUTY, resolve.WEBHOOK)

Handler = Callable[[Request], Awaitable[Response]]


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
    handlers = _Api(notifier, server or ServerConfig(), metrics or Metrics(), sources)
    routes = [
        Route("/healthz", handlers.wrap(handlers.healthz, auth=False), methods=["GET"]),
        Route("/readyz", handlers.wrap(handlers.readyz, auth=False), methods=["GET"]),
        Route("/metrics", handlers.wrap(handlers.metrics_text), methods=["GET"]),
    ]
    if api:
        routes += _api_routes(handlers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
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
    ]


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
        self.tokens = [t.encode() for t in server.tokens()]

    # -- plumbing ------------------------------------------------------------------

    def wrap(self, handler: Handler, auth: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                if auth and self.tokens:
                    self._authenticate(request)
                return await handler(request)
            except ApiError as error:
                return error_response(error.status, error.error, error.problems)
            except (InputError, NotificationConfigError) as error:
                return error_response(400, "invalid request", error.problems)
            except UpstreamUnavailable as error:
                # Not the client's mistake: nothing was recorded, sending again later works.
                log.warning("answering 503: %s", error)
                response = error_response(503, str(error))
                response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
                return response
            except StoreUnavailable as error:  # still waiting for the database at start-up
                return error_response(503, "unavailable", [Problem("database", str(error))])

        return endpoint

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            given = token.strip().encode()
            # Compare with every token (no early exit on a match).
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
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
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
        return _decode(await self._body(request))

    # -- health --------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        channels = {name: self._channel_state(name) for name in CHANNELS}
        try:
            version = await self.notifier.store.schema_version()
        except Exception as error:  # any database failure means "not ready"
            log.warning("readiness check failed: %s", error)
            return JSONResponse(
                {"status": "unavailable", "database": {"error": str(error)}, "channels": channels},
                status_code=503,
            )
        database: dict[str, Any] = {"schema_version": version, "schema_expected": NEWEST}
        if version != NEWEST:
            database["error"] = (
                f"schema version {version}, expected {NEWEST}: run flytenotify db upgrade"
            )
            return JSONResponse(
                {"status": "unavailable", "database": database, "channels": channels},
                status_code=503,
            )
        body: dict[str, Any] = {"status": "ready", "database": database, "channels": channels}
        if self.sources:
            body["intake"] = {s.name: _source_json(s.status) for s in self.sources}
            if not all(s.status.ready for s in self.sources):
                body["status"] = "unavailable"
                return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    def _channel_state(self, name: str) -> str:
        if name in self.notifier.channels:
            return "configured"
        return "dev-inbox" if self.notifier.dev_inbox else "unconfigured"

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def metrics_text(self, request: Request) -> Response:
        body = await self.metrics.render(self.notifier.store)
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    # -- launch plans and executions -----------------------------------------------

    async def launch_plan(self, request: Request) -> Response:
        project, domain, name = (request.path_params[k] for k in ("project", "domain", "name"))
        if request.method == "GET":
            plan = await self.notifier.store.get_launch_plan(EntityId(project, domain, name))
            if plan is None:
                raise ApiError(404, f"no launch plan {project}/{domain}/{name} is registered")
            return JSONResponse(_plan_json(plan.id, plan.notifications))
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
            if not isinstance(version, str) or not version:
                problems.append(Problem("version", "is required: a non-empty string"))
            notifications = data.get("notifications", [])
            problems += _notification_shape(notifications)
            if problems:
                raise InputError(problems)
            registered = await self.notifier.register_launch_plan(
                EntityId(project, domain, name, str(version)), notifications
            )
        answer = _plan_json(registered.id, registered.notifications)
        # Accepted (the configuration may be fixed later), but said out loud now.
        answer["warnings"] = [
            {"field": p.field, "message": p.message}
            for p in resolve.routing_problems(
                registered.notifications, self.notifier.settings, self.notifier.dev_inbox
            )
        ]
        return JSONResponse(answer)

    async def create_execution(self, request: Request) -> Response:
        data = await self._json(request)
        if not isinstance(data, dict):
            raise InputError(Problem("", "the body must be a JSON object"))
        known = ("id", "launch_plan", "workflow", "notifications", "disable_all")
        problems = [Problem(key, "unknown field") for key in data if key not in known]
        execution_id = _collect(problems, lambda: execution_id_from_json(data.get("id"), "id"))
        launch_plan = workflow = None
        if data.get("launch_plan") is not None:
            launch_plan = _collect(
                problems, lambda: entity_id_from_json(data["launch_plan"], "launch_plan")
            )
        if data.get("workflow") is not None:
            workflow = _collect(problems, lambda: entity_id_from_json(data["workflow"], "workflow"))
        notifications = data.get("notifications") or []
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
                "id": _id_json(execution.id),
                "launch_plan": _entity_json(execution.launch_plan),
                "workflow": _entity_json(execution.workflow),
                "notifications": [n.to_dict() for n in execution.notifications],
                "created_at": execution.created_at.isoformat(),
            },
            status_code=201,
        )

    async def show_execution(self, request: Request) -> Response:
        project, domain, name = (request.path_params[k] for k in ("project", "domain", "name"))
        execution_id = ExecutionId(project, domain, name)
        execution = await self.notifier.execution(execution_id)
        if execution is None:
            raise ApiError(404, f"no execution {execution_id}")
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
        (result,) = await self.notifier.report_events([event])
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
        (result,) = await self.notifier.report_events([parsed.event])
        self.metrics.event_received(result.outcome.value)
        return JSONResponse(
            {**_result_json(result), "cloud_event": _cloud_json(parsed)},
            status_code=202 if result.outcome is EventOutcome.ENQUEUED else 200,
        )

    async def events_batch(self, request: Request) -> Response:
        data = await self._json(request)
        if isinstance(data, dict) and isinstance(data.get("events"), list):
            data = data["events"]
        if not isinstance(data, list):
            self.metrics.event_received("invalid")
            raise InputError(Problem("events", "the body must be a JSON array of events"))
        events, problems = [], []
        for i, item in enumerate(data):
            try:
                events.append(event_from_json(item))
            except InputError as error:
                problems += [
                    Problem(f"events[{i}].{p.field}".rstrip("."), p.message) for p in error.problems
                ]
        if problems:
            self.metrics.event_received("invalid", len(data))
            raise InputError(problems)
        results = await self.notifier.report_events(events)
        for result in results:
            self.metrics.event_received(result.outcome.value)
        return JSONResponse({"results": [_result_json(r) for r in results]})

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
        if not raw.isdigit():
            raise ApiError(404, f"no delivery {raw}")
        delivery = await self.notifier.delivery(int(raw))
        if delivery is None:
            raise ApiError(404, f"no delivery {raw}")
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


# -- conversions (shared with the CLI) ---------------------------------------------


def _source_json(status: SourceStatus) -> dict[str, Any]:
    def when(stamp: float | None) -> str | None:
        return _iso(datetime.fromtimestamp(stamp, UTC)) if stamp is not None else None

    return {
        "state": status.state,
        "detail": status.detail,
        "backlog": status.backlog,
        "last_error": status.last_error or None,
        "last_error_at": when(status.last_error_at),
        "last_message_at": when(status.last_message_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "execution": str(delivery.execution_id),
        "phase": WorkflowExecutionPhase.enum_to_string(delivery.phase),
        "channel": delivery.channel,
        "kind": delivery.kind,
        "recipient": delivery.recipient,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_reply": delivery.last_reply,
        "created_at": _iso(delivery.created_at),
        "next_attempt_at": _iso(delivery.next_attempt_at),
    }


def execution_json(
    execution: Execution,
    events: list[tuple[ExecutionEvent, str]],
    deliveries: list[Delivery],
) -> dict[str, Any]:
    """An execution, where its notifications came from, its events and deliveries."""
    return {
        "id": _id_json(execution.id),
        "launch_plan": _entity_json(execution.launch_plan),
        "workflow": _entity_json(execution.workflow),
        "created_at": _iso(execution.created_at),
        "notifications_source": execution.source.value,
        "lookup_error": execution.lookup_error or None,
        "notifications": [n.to_dict() for n in execution.notifications],
        "events": [_event_json(event, outcome) for event, outcome in events],
        "deliveries": [delivery_json(d) for d in deliveries],
    }


def _event_json(event: ExecutionEvent, outcome: str) -> dict[str, Any]:
    error = event.error
    return {
        "phase": event.phase_name,
        "occurred_at": _iso(event.occurred_at),
        "outcome": outcome,
        "error": (
            {"message": error.message, "code": error.code, "kind": error.kind.value}
            if error is not None
            else None
        ),
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": _iso(attempt.started_at),
        "finished_at": _iso(attempt.finished_at),
        "outcome": attempt.outcome,
        "reply": attempt.reply,
    }


def inbox_json(message: InboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "delivery_id": message.delivery_id,
        "kind": message.kind,
        "recipient": message.recipient,
        "subject": message.subject,
        "body": message.body,
        "received_at": datetime.fromtimestamp(message.received_at, UTC).isoformat(),
    }


def _result_json(result: EventResult) -> dict[str, Any]:
    body: dict[str, Any] = {"outcome": result.outcome.value}
    if result.outcome is EventOutcome.ENQUEUED:
        body["delivery_ids"] = list(result.delivery_ids)
    return body


def _cloud_json(parsed: cloudevents.ParsedCloudEvent) -> dict[str, str]:
    return {"id": parsed.id, "type": parsed.type, "source": parsed.source}


def _id_json(execution_id: ExecutionId) -> dict[str, str]:
    return {
        "project": execution_id.project,
        "domain": execution_id.domain,
        "name": execution_id.name,
    }


def _entity_json(entity: EntityId | None) -> dict[str, str] | None:
    if entity is None:
        return None
    return {
        "project": entity.project,
        "domain": entity.domain,
        "name": entity.name,
        "version": entity.version,
    }


def _plan_json(plan_id: EntityId, notifications: Any) -> dict[str, Any]:
    return {"id": _entity_json(plan_id), "notifications": [n.to_dict() for n in notifications]}


def _collect(problems: list[Problem], parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except InputError as error:
        problems.extend(error.problems)
        return None


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request body too large", [Problem("body", f"at most {limit} bytes")])


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as error:
        raise InputError(Problem("body", f"is not UTF-8: {error}")) from None
    except json.JSONDecodeError as error:
        raise InputError(
            Problem(
                "body",
                f"is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
            )
        ) from None


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
    params: Mapping[str, str], name: str, default: int, low: int = 0, high: int | None = None
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f" between {low} and {high}" if high is not None else f" >= {low}"
        raise InputError(Problem(name, f"must be an integer{bound}, got {raw!r}"))
    return int(raw)


def _delivery_filter(params: Mapping[str, str]) -> DeliveryFilter:
    problems: list[Problem] = []
    execution = status = since = None
    if params.get("execution"):
        try:
            execution = ExecutionId.parse(params["execution"])
        except ValueError as error:
            problems.append(Problem("execution", str(error)))
    if params.get("status"):
        try:
            status = DeliveryStatus(params["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            problems.append(Problem("status", f"must be one of {allowed}"))
    if params.get("since"):
        since = _parse_since(params["since"], problems)
    cursor = _collect_int(problems, params, "cursor", 0)
    limit = _collect_int(problems, params, "limit", 100, 1, MAX_LIMIT)
    if problems:
        raise InputError(problems)
    return DeliveryFilter(
        execution=execution,
        status=status,
        channel=params.get("channel") or None,
        since=since,
        after_id=cursor or None,
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


def _parse_since(raw: str, problems: list[Problem]) -> float | None:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        problems.append(Problem("since", f"must be an ISO 8601 time or Unix seconds, got {raw!r}"))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
