"""A loopback Flyte 2 control plane for tests: ``RunService`` over Connect on 127.0.0.1.

:class:`Flyte2Plane` serves flyteidl2's ``RunService`` (``WatchRuns``, ``ListRuns``,
``GetRunDetails``, ``GetActionDetails``, ``ListActions``, ``CreateRun``, ``AbortRun``,
``SignalEvent``, ``GetActionDataURIs``) and
``AuthMetadataService`` with the ASGI applications flyteidl2 generates, on uvicorn (HTTP/1.1,
as the SDK's pyqwest client speaks to a plaintext endpoint), in a thread of its own, so it
serves async tests and synchronous ones alike. It answers as the open-source server does
(flyteorg/flyte ``main``: ``runs/service/run_service.go``, the list query in
``runs/repository/impl/action.go``), including its quirks:

- ``WatchRuns`` subscribes, then sends ONE message with the snapshot — root actions of the
  target project ordered ``phase ASC, created_at DESC``, up to ``snapshot_limit + 1`` of them
  (the repository fetches one row more than the limit and WatchRuns does not trim it) — and
  nothing at all, not even response headers, when there is no run; then one message with one
  ``Run`` each time the root action's phase is written (``set_phase``, ``finish``, ``abort``),
  read at delivery time. Child actions (a paused condition) send nothing.
- ``ListRuns`` pages by offset (``limit`` 50 by default, at most 200; the token is the next
  offset), sorts ``phase ASC, created_at DESC`` unless told otherwise, filters on the server's
  column list and ``paused_actions_only``.
- ``GetRunDetails`` fills ``error_info`` from the last attempt only when that attempt is the
  one ``status.attempts`` names (phase and attempts are written apart from the events carrying
  the error: see :meth:`Flyte2Plane.retry`); ``abort_info`` for ABORTED; nothing for TIMED_OUT.
- ``SignalEvent`` answers as the actions service does (``actions/k8s/client.go`` ``Signal``):
  the payload must be a primitive (INVALID_ARGUMENT), the action a condition of the run
  (NOT_FOUND, FAILED_PRECONDITION); the same value again is fine (idempotent), another one
  FAILED_PRECONDITION "already signalled with a different value", as is a condition that
  already ended ("already completed"); a value of another type than the condition's is
  INVALID_ARGUMENT. A signalled condition SUCCEEDS (the reconciler's part, done at once
  here) and ``GetActionDetails`` then carries ``signal_info.output``.

Every run's ``RunSpec`` is made by the real ``flyte`` SDK: :meth:`Flyte2Plane.start_run` runs
``flyte.with_runcontext(notifications=...).run(...)`` of a remote task against a second,
private listener of the same plane (the driver's door: plaintext, no auth, calls not recorded),
which also serves the calls that path makes first (``TaskService.GetTaskDetails``,
``ClusterService.SelectCluster``, ``DataProxyService.UploadInputs``). So ``CreateRun`` receives
exactly what the SDK builds, and runs can be started or finished while the public listener is
down.

The public listener (``plane.endpoint``) optionally wants ``authorization: Bearer <token>``
(the key the SDK sends, and that ``GetPublicClientConfig`` advertises) on every call but
``AuthMetadataService``, and answers HTTP 401 / UNAUTHENTICATED otherwise, as a proxy in front
of the open-source server does (that server checks no token itself). For client credentials,
``requires_auth=True, token_endpoint=...`` advertises an OAuth2 token endpoint through
``GetOAuth2Metadata``; tokens are accepted with :meth:`Flyte2Plane.accept_token`. It can be TLS (a
certificate from the test CA). Every call it receives is recorded (:attr:`Flyte2Plane.calls`).
:meth:`Flyte2Plane.drop_streams` ends every open ``WatchRuns`` from the server side;
:meth:`Flyte2Plane.stop` / :meth:`Flyte2Plane.start` take the public listener down and bring it
back on the same port, with the runs kept::

    with Flyte2Plane(token="secret") as plane:
        run = plane.start_run("proj", "development", "r1",
                              notifications=flyte.notify.Email(on_phase=ActionPhase.FAILED,
                                                               recipients=("a@b.c",)))
        plane.finish(run, FAILED, error="boom")
        approval = plane.pause(run, prompt="Deploy?", description="to prod")
        plane.drop_streams()
        assert len(plane.calls_to("GetRunDetails")) == 1
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from flyteidl2.auth import auth_service_pb2
from flyteidl2.auth.auth_service_connect import (
    AuthMetadataService,
    AuthMetadataServiceASGIApplication,
)
from flyteidl2.cluster import payload_pb2
from flyteidl2.cluster.service_connect import ClusterService, ClusterServiceASGIApplication
from flyteidl2.common import identifier_pb2, list_pb2, phase_pb2
from flyteidl2.core import identifier_pb2 as core_identifier_pb2
from flyteidl2.core import interface_pb2, literals_pb2, tasks_pb2, types_pb2
from flyteidl2.dataproxy import dataproxy_service_pb2
from flyteidl2.dataproxy.dataproxy_service_connect import (
    DataProxyService,
    DataProxyServiceASGIApplication,
)
from flyteidl2.task import run_pb2, task_definition_pb2, task_service_pb2
from flyteidl2.task.task_service_connect import TaskService, TaskServiceASGIApplication
from flyteidl2.workflow import run_definition_pb2, run_service_pb2
from flyteidl2.workflow.run_service_connect import RunService, RunServiceASGIApplication

from tests.servers.smtp import HOST, default_ca

__all__ = [
    "ABORTED",
    "FAILED",
    "PAUSED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "TIMED_OUT",
    "ActionKey",
    "Flyte2Plane",
    "PlaneCall",
    "RunKey",
]

QUEUED = phase_pb2.ACTION_PHASE_QUEUED
RUNNING = phase_pb2.ACTION_PHASE_RUNNING
SUCCEEDED = phase_pb2.ACTION_PHASE_SUCCEEDED
FAILED = phase_pb2.ACTION_PHASE_FAILED
ABORTED = phase_pb2.ACTION_PHASE_ABORTED
TIMED_OUT = phase_pb2.ACTION_PHASE_TIMED_OUT
PAUSED = phase_pb2.ACTION_PHASE_PAUSED
TERMINAL = frozenset({SUCCEEDED, FAILED, ABORTED, TIMED_OUT, phase_pb2.ACTION_PHASE_RECOVERED})

ROOT = "a0"  # the server's name for a run's root action
WATCH_SNAPSHOT_LIMIT = 100  # convertWatchRequestToListInput
LIST_DEFAULT_LIMIT = 50  # impl/requests.go
LIST_MAX_LIMIT = 200
RUN_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s rand.String, as generateRunName uses
STORAGE_PREFIX = "s3://flyte-data"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
SDK_TIMEOUT = 60.0
AUTH_SERVICE = "/flyteidl2.auth.AuthMetadataService/"

DropMode = Literal["reset", "end", "error"]


@dataclass(frozen=True)
class RunKey:
    project: str
    domain: str
    name: str

    def identifier(self) -> Any:
        return identifier_pb2.RunIdentifier(
            project=self.project, domain=self.domain, name=self.name
        )


@dataclass(frozen=True)
class ActionKey:
    run: RunKey
    name: str

    def identifier(self) -> Any:
        return identifier_pb2.ActionIdentifier(run=self.run.identifier(), name=self.name)


@dataclass(frozen=True)
class PlaneCall:
    """One call the public listener received."""

    method: str  # e.g. "GetRunDetails"
    request: Any  # the decoded request message; None when refused before decoding
    headers: dict[str, str]  # lower-case names
    refused: bool  # answered UNAUTHENTICATED without reaching the service
    at: float  # time.monotonic()


@dataclass
class _Attempt:
    """What the events of one attempt say (the server's action_events, merged)."""

    number: int
    phase: int
    started: datetime
    ended: datetime | None = None
    error: Any = None  # run_definition_pb2.ErrorInfo


@dataclass
class _Action:
    name: str
    parent: str | None
    kind: int  # run_definition_pb2.ActionType
    phase: int
    created_at: datetime
    updated_at: datetime
    function_name: str
    task_id: Any = None  # task_definition_pb2.TaskIdentifier (task actions)
    task_spec: Any = None  # task_definition_pb2.TaskSpec (task actions)
    condition: Any = None  # run_definition_pb2.ConditionAction (condition actions)
    attempts: int = 1  # status.attempts, as UpdateActionStatus last wrote it
    ended_at: datetime | None = None
    abort_reason: str | None = None
    events: dict[int, _Attempt] = field(default_factory=dict)
    signal: Any = None  # the core Literal a condition was signalled with
    trigger: str | None = None  # the trigger that started the run (root actions)


@dataclass
class _Run:
    key: RunKey
    spec: Any  # task_pb2 RunSpec, as stored
    source: int
    actions: dict[str, _Action]
    inputs_uri: str = ""  # where its inputs were offloaded (RunInfo.inputs_uri)

    @property
    def root(self) -> _Action:
        return self.actions[ROOT]


@dataclass
class _Watcher:
    target: Any  # the WatchRunsRequest
    queue: asyncio.Queue[RunKey | DropMode]


class _DatabaseError(Exception):
    """What PostgreSQL would refuse (the server answers INTERNAL)."""


# -- the server's list query: columns, filters, order ------------------------------------

_Row = tuple[_Run, _Action]
ColumnKind = Literal["text", "int", "time"]


def _task_field(name: str) -> Callable[[_Row], object]:
    def get(row: _Row) -> object:
        task_id = row[1].task_id
        if task_id is None:
            return row[1].function_name if name == "name" else None
        return getattr(task_id, name) or None

    return get


def _duration_ms(row: _Row) -> object:
    action = row[1]
    if action.ended_at is None:
        return None
    return int((action.ended_at - action.created_at) / timedelta(milliseconds=1))


# models.ActionColumnsSet: the columns a ListRequest may filter and sort on. Those this double
# does not model (creators, trigger revisions and types) are NULL, as they are for a run
# nobody triggered.
_COLUMNS: dict[str, tuple[ColumnKind, Callable[[_Row], object]]] = {
    "project": ("text", lambda row: row[0].key.project),
    "domain": ("text", lambda row: row[0].key.domain),
    "run_name": ("text", lambda row: row[0].key.name),
    "phase": ("int", lambda row: row[1].phase),
    "action_type": ("int", lambda row: row[1].kind),
    "run_source": ("text", lambda row: run_definition_pb2.RunSource.Name(row[0].source)),
    "created_by_subject": ("text", lambda row: None),
    "trigger_task_name": ("text", lambda row: row[1].trigger and row[1].task_id.name),
    "trigger_name": ("text", lambda row: row[1].trigger),
    "trigger_revision": ("int", lambda row: None),
    "trigger_type": ("text", lambda row: None),
    "task_project": ("text", _task_field("project")),
    "task_domain": ("text", _task_field("domain")),
    "task_name": ("text", _task_field("name")),
    "task_version": ("text", _task_field("version")),
    "function_name": ("text", lambda row: row[1].function_name),
    "created_at": ("time", lambda row: row[1].created_at),
    "updated_at": ("time", lambda row: row[1].updated_at),
    "ended_at": ("time", lambda row: row[1].ended_at),
    "duration_ms": ("int", _duration_ms),
}

# sortParameter + ListActions: with no sort, non-terminal runs first, then newest first.
_DEFAULT_ORDER = (("phase", True), ("created_at", False), ("run_name", False), ("name", False))


def _column(name: str) -> tuple[ColumnKind, Callable[[_Row], object]]:
    if name == "name":  # the action's name: a tiebreaker the server appends, not filterable
        return "text", lambda row: row[1].name
    return _COLUMNS[name]


def _parse_value(kind: ColumnKind, raw: str) -> object:
    try:
        if kind == "int":
            return int(raw)
        if kind == "time":
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError as error:
        raise _DatabaseError(f"invalid input syntax for {kind}: {raw!r}") from error
    return raw


def _like(pattern: str, value: str, *, fold: bool) -> bool:
    if fold:
        pattern, value = pattern.lower(), value.lower()
    return pattern in value


_Predicate = Callable[[_Row], bool]
_COMPARISONS: dict[int, Callable[[Any, Any], bool]] = {
    list_pb2.Filter.EQUAL: lambda a, b: a == b,
    list_pb2.Filter.NOT_EQUAL: lambda a, b: a != b,
    list_pb2.Filter.GREATER_THAN: lambda a, b: a > b,
    list_pb2.Filter.GREATER_THAN_OR_EQUAL: lambda a, b: a >= b,
    list_pb2.Filter.LESS_THAN: lambda a, b: a < b,
    list_pb2.Filter.LESS_THAN_OR_EQUAL: lambda a, b: a <= b,
}
_LIKES = {
    list_pb2.Filter.CONTAINS: lambda v, s: _like(s, v, fold=False),
    list_pb2.Filter.CONTAINS_CASE_INSENSITIVE: lambda v, s: _like(s, v, fold=True),
    list_pb2.Filter.ENDS_WITH: lambda v, s: v.endswith(s),
    list_pb2.Filter.NOT_ENDS_WITH: lambda v, s: not v.endswith(s),
}


def _filter(proto: Any) -> _Predicate:
    """``ConvertProtoFilters`` and ``basicFilter.QueryExpression``, evaluated in memory.

    Raises ConnectError INVALID_ARGUMENT where the server does; a value PostgreSQL would not
    take raises _DatabaseError (INTERNAL) when the filter runs, as the query would fail.
    """
    if proto.field not in _COLUMNS:
        raise ConnectError(Code.INVALID_ARGUMENT, f"invalid filter field: {proto.field}")
    function = proto.function
    if (
        function not in _COMPARISONS
        and function not in _LIKES
        and function != (list_pb2.Filter.VALUE_IN)
    ):
        name = list_pb2.Filter.Function.Name(function)
        raise ConnectError(Code.INVALID_ARGUMENT, f"unsupported filter function: {name}")
    if not proto.values:
        raise ConnectError(Code.INVALID_ARGUMENT, f"filter {proto.field} has no values")
    kind, get = _COLUMNS[proto.field]
    values = list(proto.values)

    def matches(row: _Row) -> bool:
        actual = get(row)
        if function == list_pb2.Filter.VALUE_IN:
            if len(values) == 1:  # the server hands a lone string to pq.Array
                raise _DatabaseError("pq: Unable to convert string to array")
            wanted = [_parse_value(kind, v) for v in values]
            return actual is not None and actual in wanted
        if function in _LIKES:
            if kind != "text":
                raise _DatabaseError(f"operator does not exist: {kind} ~~ unknown")
            return actual is not None and bool(_LIKES[function](str(actual), values[0]))
        # One value compares as that value; several make PostgreSQL fail on the array.
        if len(values) > 1:
            raise _DatabaseError(f"cannot compare {proto.field} with an array")
        expected = _parse_value(kind, values[0])
        return actual is not None and _COMPARISONS[function](actual, expected)

    return matches


def _order(request: Any) -> list[tuple[str, bool]]:
    """``GetSortByFieldsV2`` and the tiebreakers ``ListActions`` appends."""
    sorts = list(request.sort_by_fields)
    if not sorts and request.HasField("sort_by") and request.sort_by.key:
        sorts = [request.sort_by]
    if not sorts:
        return list(_DEFAULT_ORDER)
    order: list[tuple[str, bool]] = []
    for sort in sorts:
        if sort.key not in _COLUMNS:
            raise ConnectError(Code.INVALID_ARGUMENT, f"invalid sort field: {sort.key}")
        order.append((sort.key, sort.direction == list_pb2.Sort.ASCENDING))
    keys = {key for key, _ in order}
    order += [(key, True) for key in ("run_name", "name") if key not in keys]
    return order


def _compare(order: list[tuple[str, bool]], left: _Row, right: _Row) -> int:
    """PostgreSQL's ORDER BY: NULL is larger than any value (last ascending, first descending)."""
    for key, ascending in order:
        get = _column(key)[1]
        a, b = get(left), get(right)
        if a == b:
            continue
        if a is None:
            result = 1
        elif b is None:
            result = -1
        else:
            result = -1 if a < b else 1  # type: ignore[operator]
        return result if ascending else -result
    return 0


def _sorted(rows: Iterable[_Row], order: list[tuple[str, bool]]) -> list[_Row]:
    return sorted(rows, key=functools.cmp_to_key(functools.partial(_compare, order)))


def _page_input(request: Any) -> tuple[int, int]:
    """``NewListResourceInputFromProto``: (limit, offset)."""
    limit = request.limit or LIST_DEFAULT_LIMIT
    if limit > LIST_MAX_LIMIT:
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            f"invalid limit: {limit} (exceeds maximum of {LIST_MAX_LIMIT})",
        )
    token = request.token
    if not token:
        return limit, 0
    if not token.isdigit():
        raise ConnectError(Code.INVALID_ARGUMENT, f'invalid token: "{token}"')
    return limit, int(token)


# -- protobuf views of the state ----------------------------------------------------------


def _timestamp(moment: datetime) -> Any:
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _metadata(action: _Action) -> Any:
    """``actionMetadataFromModel``."""
    metadata = run_definition_pb2.ActionMetadata(
        action_type=action.kind, funtion_name=action.function_name, parent=action.parent or ""
    )
    if action.trigger is not None:
        task = action.task_id
        metadata.trigger_name = action.trigger
        metadata.trigger_id.CopyFrom(
            identifier_pb2.TriggerIdentifier(
                name=identifier_pb2.TriggerName(
                    org=task.org,
                    project=task.project,
                    domain=task.domain,
                    name=action.trigger,
                    task_name=task.name,
                ),
                revision=1,
            )
        )
    if action.kind == run_definition_pb2.ACTION_TYPE_TASK:
        spec = action.task_spec.task_template if action.task_spec is not None else None
        metadata.task.CopyFrom(
            run_definition_pb2.TaskActionMetadata(
                id=action.task_id,
                task_type=spec.type if spec is not None else "",
                short_name=action.task_spec.short_name if action.task_spec is not None else "",
            )
        )
    elif action.kind == run_definition_pb2.ACTION_TYPE_CONDITION:
        metadata.condition.CopyFrom(
            run_definition_pb2.ConditionActionMetadata(
                name=action.condition.name, type=action.condition.type
            )
        )
    return metadata


def _status(action: _Action) -> Any:
    status = run_definition_pb2.ActionStatus(
        phase=action.phase,
        start_time=_timestamp(action.created_at),
        attempts=action.attempts,
    )
    if action.ended_at is not None:
        status.end_time.CopyFrom(_timestamp(action.ended_at))
        status.duration_ms = int((action.ended_at - action.created_at) / timedelta(milliseconds=1))
    return status


def _action_proto(run: _Run, action: _Action) -> Any:
    return run_definition_pb2.Action(
        id=identifier_pb2.ActionIdentifier(run=run.key.identifier(), name=action.name),
        metadata=_metadata(action),
        status=_status(action),
    )


def _run_proto(run: _Run) -> Any:
    """``convertRunToProto``: no labels, no error, no spec."""
    return run_definition_pb2.Run(action=_action_proto(run, run.root))


def _attempt_proto(attempt: _Attempt) -> Any:
    proto = run_definition_pb2.ActionAttempt(
        attempt=attempt.number, phase=attempt.phase, start_time=_timestamp(attempt.started)
    )
    if attempt.ended is not None:
        proto.end_time.CopyFrom(_timestamp(attempt.ended))
    if attempt.error is not None:
        proto.error_info.CopyFrom(attempt.error)
    return proto


def _details_proto(run: _Run, action: _Action) -> Any:
    """``buildActionDetails``: errors come from the events, phase from the action row."""
    details = run_definition_pb2.ActionDetails(
        id=identifier_pb2.ActionIdentifier(run=run.key.identifier(), name=action.name),
        metadata=_metadata(action),
        status=_status(action),
        attempts=[_attempt_proto(action.events[n]) for n in sorted(action.events)],
    )
    if action.task_spec is not None:
        details.task.CopyFrom(action.task_spec)
    if action.condition is not None:
        details.condition.CopyFrom(action.condition)
        if action.signal is not None and action.phase == SUCCEEDED:
            details.signal_info.CopyFrom(run_definition_pb2.SignalInfo(output=action.signal))
    if action.phase == FAILED and details.attempts:
        last = details.attempts[-1]
        if last.attempt == action.attempts:
            # Go sets the oneof to the attempt's ErrorInfo even when that is nil, which goes on
            # the wire as an empty message.
            details.error_info.CopyFrom(last.error_info)
    elif action.phase == ABORTED:
        details.abort_info.CopyFrom(run_definition_pb2.AbortInfo(reason=action.abort_reason or ""))
    return details


def _error_info(error: str | Any, kind: str, code: str) -> Any:
    if not isinstance(error, str):
        return error
    return run_definition_pb2.ErrorInfo(
        message=error, kind=run_definition_pb2.ErrorInfo.Kind.Value(f"KIND_{kind}"), code=code
    )


# -- the services --------------------------------------------------------------------------


class _Services(RunService, TaskService, ClusterService, DataProxyService, AuthMetadataService):
    """One listener's view of the plane; the public one records what it is asked."""

    def __init__(self, plane: Flyte2Plane, *, public: bool) -> None:
        self.plane = plane
        self.public = public

    def _record(self, method: str, request: Any, ctx: RequestContext[Any, Any]) -> None:
        if self.public:
            self.plane._record(method, request, dict(ctx.request_headers().items()), refused=False)

    # RunService ---------------------------------------------------------------------------

    async def create_run(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("CreateRun", request, ctx)
        run = self.plane._create_run(request)
        return run_service_pb2.CreateRunResponse(run=run)

    async def abort_run(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("AbortRun", request, ctx)
        key = RunKey(request.run_id.project, request.run_id.domain, request.run_id.name)
        reason = request.reason if request.HasField("reason") else "User requested abort"
        if not self.plane._has_run(key):
            raise ConnectError(
                Code.NOT_FOUND, f"run not found: {key.project}/{key.domain}/{key.name}"
            )
        self.plane.abort(key, reason)
        return run_service_pb2.AbortRunResponse()

    async def signal_event(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("SignalEvent", request, ctx)
        self.plane._signal(request.action_id, request.payload)
        return run_service_pb2.SignalEventResponse()

    async def get_action_data_u_r_is(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("GetActionDataURIs", request, ctx)
        ident = request.action_id
        key = RunKey(ident.run.project, ident.run.domain, ident.run.name)
        with self.plane._lock:
            run = self.plane._runs.get(key)
            action = run.actions.get(ident.name) if run is not None else None
            if run is None or action is None:
                raise ConnectError(Code.NOT_FOUND, "action not found: record not found")
            return run_service_pb2.GetActionDataURIsResponse(inputs_uri=run.inputs_uri)

    async def get_run_details(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("GetRunDetails", request, ctx)
        plane = self.plane
        plane.details_now += 1
        plane.most_details_at_once = max(plane.most_details_at_once, plane.details_now)
        try:
            await asyncio.sleep(plane.details_delay)
            return self._run_details(request)
        finally:
            plane.details_now -= 1

    def _run_details(self, request: Any) -> Any:
        key = RunKey(request.run_id.project, request.run_id.domain, request.run_id.name)
        with self.plane._lock:
            run = self.plane._runs.get(key)
            if run is None:
                raise ConnectError(
                    Code.NOT_FOUND, f"run not found: {key.project}/{key.domain}/{key.name}"
                )
            details = run_definition_pb2.RunDetails(
                run_spec=run.spec, action=_details_proto(run, run.root)
            )
        return run_service_pb2.GetRunDetailsResponse(details=details)

    async def get_action_details(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("GetActionDetails", request, ctx)
        ident = request.action_id
        key = RunKey(ident.run.project, ident.run.domain, ident.run.name)
        with self.plane._lock:
            run = self.plane._runs.get(key)
            action = run.actions.get(ident.name) if run is not None else None
            if run is None or action is None:
                raise ConnectError(Code.NOT_FOUND, "action not found: action not found")
            details = _details_proto(run, action)
        return run_service_pb2.GetActionDetailsResponse(details=details)

    async def list_runs(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("ListRuns", request, ctx)
        runs, token = self.plane._list(request.request, self.plane._run_scope(request))
        return run_service_pb2.ListRunsResponse(runs=runs, token=token)

    async def list_actions(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("ListActions", request, ctx)
        key = RunKey(request.run_id.project, request.run_id.domain, request.run_id.name)

        def in_run(row: _Row) -> bool:
            return row[0].key == key

        found, token = self.plane._list(request.request, in_run, as_actions=True)
        return run_service_pb2.ListActionsResponse(actions=found, token=token)

    async def watch_runs(self, request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
        self._record("WatchRuns", request, ctx)
        watcher = _Watcher(request, asyncio.Queue())
        self.plane._watchers.append(watcher)
        try:
            snapshot = self.plane._watch_snapshot(request)
            if snapshot:
                yield run_service_pb2.WatchRunsResponse(runs=snapshot)
            while True:
                item = await _next_or_gone(watcher.queue)
                if item is None:  # the client went away: the server's ctx.Done, a nil return
                    return
                if item == "error":
                    raise ConnectError(Code.UNAVAILABLE, "the stream was dropped")
                if item in ("end", "reset"):
                    return
                assert isinstance(item, RunKey)
                update = self.plane._watch_update(request, item)
                if update is not None:
                    yield run_service_pb2.WatchRunsResponse(runs=[update])
        finally:
            self.plane._watchers.remove(watcher)

    # What the SDK's run path calls before CreateRun -------------------------------------

    async def get_task_details(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("GetTaskDetails", request, ctx)
        details = task_definition_pb2.TaskDetails(
            task_id=request.task_id, spec=self.plane._task_spec(request.task_id)
        )
        return task_service_pb2.GetTaskDetailsResponse(details=details)

    async def select_cluster(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("SelectCluster", request, ctx)
        return payload_pb2.SelectClusterResponse()  # no endpoint: the control plane serves it

    async def upload_inputs(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("UploadInputs", request, ctx)
        run = request.run_id
        uri = f"{STORAGE_PREFIX}/{run.project}/{run.domain}/{run.name}/inputs/inputs.pb"
        offloaded = dataproxy_service_pb2.UploadInputsResponse()
        offloaded.offloaded_input_data.uri = uri
        offloaded.offloaded_input_data.inputs_hash = "inputs-hash"
        return offloaded

    # AuthMetadataService ----------------------------------------------------------------

    async def get_public_client_config(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("GetPublicClientConfig", request, ctx)
        return auth_service_pb2.GetPublicClientConfigResponse(
            client_id="flytectl", authorization_metadata_key="authorization"
        )

    async def get_o_auth2_metadata(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        self._record("GetOAuth2Metadata", request, ctx)
        if not self.plane.token_endpoint:
            raise ConnectError(
                Code.UNIMPLEMENTED,
                "oauth2 metadata is not configured; "
                "set runs.authMetadata.externalAuthServerBaseUrl",
            )
        return auth_service_pb2.GetOAuth2MetadataResponse(
            issuer=self.plane.token_endpoint.rsplit("/", 2)[0],
            token_endpoint=self.plane.token_endpoint,
            grant_types_supported=["client_credentials"],
        )


_Asgi = Callable[[Any, Any, Any], Awaitable[None]]

# Set for each request by the router: the client has disconnected. connectrpc notices a gone
# client only when a stream sends its next message; the Go server's ctx is done at once, and
# tests count open streams, so a waiting WatchRuns must notice too.
_CLIENT_GONE: contextvars.ContextVar[asyncio.Event] = contextvars.ContextVar("client_gone")


async def _next_or_gone(queue: asyncio.Queue[RunKey | DropMode]) -> RunKey | DropMode | None:
    """The watcher's next item, or None once its client has disconnected."""
    gone = _CLIENT_GONE.get()
    getting = asyncio.ensure_future(queue.get())
    leaving = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({getting, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
        if not getting.done():
            getting.cancel()
    return getting.result() if getting.done() and not getting.cancelled() else None


def _router(plane: Flyte2Plane, services: _Services) -> _Asgi:
    """One ASGI app for every service, with the proxy's token check on the public listener."""
    apps: list[Any] = [
        RunServiceASGIApplication(services),
        TaskServiceASGIApplication(services),
        ClusterServiceASGIApplication(services),
        DataProxyServiceASGIApplication(services),
        AuthMetadataServiceASGIApplication(services),
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if services.public and not path.startswith(AUTH_SERVICE) and not plane._authorized(scope):
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", ())}
            plane._record(path.rsplit("/", 1)[-1], None, headers, refused=True)
            body = json.dumps({"code": "unauthenticated", "message": "missing or invalid token"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        gone = asyncio.Event()

        async def receive_watched() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            return message

        _CLIENT_GONE.set(gone)
        for candidate in apps:
            if path.startswith(candidate.path + "/"):
                await candidate(scope, receive_watched, send)
                return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


# -- listeners -----------------------------------------------------------------------------


class _Listener:
    """uvicorn on one socket of the plane's loop; stop aborts every connection first."""

    def __init__(self, app: _Asgi, port: int, *, tls: bool) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: uvicorn writes a response's head and body
        # apart, and with Nagle's algorithm the body waits for the client's delayed ACK
        # (40 ms a call on loopback; the Go server sets TCP_NODELAY, as Go always does).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((HOST, port))
        self.socket = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        config.load()
        if tls:
            config.ssl = default_ca().server_context()
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.socket]))
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it
            assert time.monotonic() < deadline, "the Flyte 2 plane did not come up"
            await asyncio.sleep(0.01)

    def abort_connections(self) -> None:
        for connection in list(self.server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    async def stop(self) -> None:
        self.abort_connections()
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, STOP_TIMEOUT)
        self.socket.close()


# -- the plane -----------------------------------------------------------------------------


class Flyte2Plane:
    """``with Flyte2Plane() as plane: RunServiceClient(plane.endpoint)``; see the module doc."""

    def __init__(
        self,
        *,
        token: str | None = None,
        requires_auth: bool = False,
        tls: bool = False,
        snapshot_limit: int = WATCH_SNAPSHOT_LIMIT,
        token_endpoint: str = "",
    ) -> None:
        self.tls = tls
        self.snapshot_limit = snapshot_limit
        self.token_endpoint = token_endpoint  # advertised by GetOAuth2Metadata when set
        self._tokens: set[str] = {token} if token else set()
        self.requires_auth = requires_auth or token is not None
        self._lock = threading.RLock()
        self._runs: dict[RunKey, _Run] = {}
        self._calls: list[PlaneCall] = []
        self._watchers: list[_Watcher] = []  # touched on the plane's loop only
        self._clock = datetime.now(UTC)
        self._identity = uuid.uuid4().hex  # which plane the SDK was last pointed at
        # A control plane far away: GetRunDetails answers after this many seconds;
        # how many were being answered at once, now and at most (on the plane's loop).
        self.details_delay = 0.0
        self.details_now = 0
        self.most_details_at_once = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._public: _Listener | None = None
        self._door: _Listener | None = None
        self.port = 0

    # -- running ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The public listener's URL, as the SDK's ``normalize_rpc_endpoint`` makes it."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._public is not None

    def _call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(START_TIMEOUT + 5)

    def start(self) -> Self:
        """Bring the public listener up (again, on the same port, with the runs kept)."""
        if not self._thread.is_alive():
            self._thread.start()
        if self._door is None:
            door = _Listener(_router(self, _Services(self, public=False)), 0, tls=False)
            self._call(door.start)
            self._door = door
        if self._public is None:
            public = _Listener(_router(self, _Services(self, public=True)), self.port, tls=self.tls)
            self._call(public.start)
            self._public = public
            self.port = public.port
        return self

    def stop(self) -> None:
        """Down, as a crashed server: open streams and connections are cut, new ones refused."""
        if self._public is not None:
            self._drop("reset")
            self._call(self._public.stop)
            self._public = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._door is not None:
            self._call(self._door.stop)
            self._door = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT)
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- streams ----------------------------------------------------------------------------

    @property
    def watchers(self) -> int:
        """How many WatchRuns streams are open (subscribed) right now."""
        return int(self._call(self._count_watchers))

    async def _count_watchers(self) -> int:
        return len(self._watchers)

    async def wait_for_watchers(self, count: int = 1) -> None:
        """Wait (in an async test) until exactly ``count`` WatchRuns streams are open."""
        deadline = time.monotonic() + START_TIMEOUT
        while (now := await asyncio.to_thread(lambda: self.watchers)) != count:
            assert time.monotonic() < deadline, f"{now} WatchRuns streams open, not {count}"
            await asyncio.sleep(0.02)

    def drop_streams(self, mode: DropMode = "reset") -> None:
        """End every open WatchRuns from the server side.

        ``reset``: the connections are cut (as a crash, or a proxy timing out); ``end``: the
        stream ends cleanly (OK); ``error``: it ends with UNAVAILABLE.
        """
        self._drop(mode)

    def _drop(self, mode: DropMode) -> None:
        async def drop() -> None:
            if mode == "reset" and self._public is not None:
                # Cut first: a stream woken before would end cleanly on the wire.
                self._public.abort_connections()
            for watcher in self._watchers:
                watcher.queue.put_nowait(mode)

        self._call(drop)

    def _publish(self, key: RunKey) -> None:
        """notifyRunUpdate: every watcher hears of the run (it filters and re-reads it)."""

        def publish() -> None:
            for watcher in self._watchers:
                watcher.queue.put_nowait(key)

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(publish)

    # -- what was asked ----------------------------------------------------------------------

    def _record(self, method: str, request: Any, headers: dict[str, str], *, refused: bool) -> None:
        call = PlaneCall(method, request, headers, refused, time.monotonic())
        with self._lock:
            self._calls.append(call)

    @property
    def calls(self) -> list[PlaneCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[PlaneCall]:
        return [call for call in self.calls if call.method == method]

    def accept_token(self, token: str) -> None:
        """Accept this bearer token too (what ``tests.servers.flyteadmin.TokenEndpoint`` calls
        for each token it issues, given this plane as its ``admin``)."""
        with self._lock:
            self._tokens.add(token)

    def _authorized(self, scope: Any) -> bool:
        if not self.requires_auth:
            return True
        headers = dict(scope.get("headers", ()))
        scheme, _, token = headers.get(b"authorization", b"").decode().partition(" ")
        with self._lock:
            return scheme == "Bearer" and token in self._tokens

    # -- the state behind the services ---------------------------------------------------------

    def _now(self) -> datetime:
        """Wall-clock time, strictly increasing, so orders by time are never ties."""
        with self._lock:
            self._clock = max(datetime.now(UTC), self._clock + timedelta(microseconds=1))
            return self._clock

    def _has_run(self, key: RunKey) -> bool:
        with self._lock:
            return key in self._runs

    def _task_spec(self, task_id: Any) -> Any:
        """A registered python task with no inputs, as of the installed SDK."""
        import flyte

        template = tasks_pb2.TaskTemplate(type="python", interface=interface_pb2.TypedInterface())
        template.id.CopyFrom(
            core_identifier_pb2.Identifier(
                resource_type=core_identifier_pb2.TASK,
                project=task_id.project,
                domain=task_id.domain,
                name=task_id.name,
                version=task_id.version,
                org=task_id.org,
            )
        )
        template.metadata.runtime.version = flyte.__version__
        return task_definition_pb2.TaskSpec(task_template=template)

    def _create_run(self, request: Any) -> Any:
        """``CreateRun``: a new QUEUED root action; an existing name gets the existing run."""
        if request.HasField("run_id"):
            ident = request.run_id
            key = RunKey(ident.project, ident.domain, ident.name)
        else:
            name = "r" + "".join(random.choices(RUN_NAME_ALPHABET, k=19))
            key = RunKey(request.project_id.name, request.project_id.domain, name)
        spec = run_pb2.RunSpec()
        spec.CopyFrom(request.run_spec)
        if not spec.raw_data_storage.raw_data_prefix:
            spec.raw_data_storage.raw_data_prefix = STORAGE_PREFIX
        task_id = (
            request.task_id if request.HasField("task_id") else request.task_spec.task_template.id
        )
        task_spec = request.task_spec if request.HasField("task_spec") else self._task_spec(task_id)
        if not spec.HasField("run_start_time"):  # the SDK's runtime is >= 2.3.6
            spec.run_start_time.CopyFrom(_timestamp(datetime.now(UTC)))
        inputs_uri = (
            request.offloaded_input_data.uri
            if request.HasField("offloaded_input_data")
            else f"{STORAGE_PREFIX}/{key.project}/{key.domain}/{key.name}/inputs.pb"
        )
        with self._lock:
            if key not in self._runs:  # ON CONFLICT DO NOTHING, then the existing row
                now = self._now()
                root = _Action(
                    name=ROOT,
                    parent=None,
                    kind=run_definition_pb2.ACTION_TYPE_TASK,
                    phase=QUEUED,
                    created_at=now,
                    updated_at=now,
                    function_name=task_id.name,
                    task_id=task_definition_pb2.TaskIdentifier(
                        org=task_id.org,
                        project=task_id.project,
                        domain=task_id.domain,
                        name=task_id.name,
                        version=task_id.version,
                    ),
                    task_spec=task_spec,
                )
                self._runs[key] = _Run(key, spec, request.source, {ROOT: root}, inputs_uri)
            return _run_proto(self._runs[key])

    def _run_scope(self, request: Any) -> _Predicate:
        scope = request.WhichOneof("scope_by")
        paused_only = request.paused_actions_only

        def matches(row: _Row) -> bool:
            run = row[0]
            if scope == "project_id":
                project = request.project_id
                if (run.key.project, run.key.domain) != (project.name, project.domain):
                    return False
            elif scope == "trigger_name":
                named = request.trigger_name
                if run.root.trigger != named.name or run.key.project != named.project:
                    return False
            elif scope in ("task_name", "task_id"):
                task = getattr(request, scope)
                if run.root.task_id is None or run.root.task_id.name != task.name:
                    return False
            return not paused_only or any(a.phase == PAUSED for a in run.actions.values())

        return matches

    def _rows(self, *, as_actions: bool) -> list[_Row]:
        if as_actions:
            return [(run, action) for run in self._runs.values() for action in run.actions.values()]
        return [(run, run.root) for run in self._runs.values()]

    def _list(self, request: Any, scope: _Predicate, *, as_actions: bool = False) -> Any:
        """The ListRuns / ListActions query: scope AND filters, order, offset page of limit."""
        limit, offset = _page_input(request)
        order = _order(request)
        filters = [_filter(f) for f in request.filters]
        with self._lock:
            try:
                rows = [
                    row
                    for row in self._rows(as_actions=as_actions)
                    if scope(row) and all(f(row) for f in filters)
                ]
            except _DatabaseError as error:
                raise ConnectError(Code.INTERNAL, f"failed to list actions: {error}") from error
            page = _sorted(rows, order)[offset : offset + limit + 1]
            token = str(offset + limit) if len(page) > limit else ""
            page = page[:limit]
            if as_actions:
                return [_action_proto(run, action) for run, action in page], token
            return [_run_proto(run) for run, _ in page], token

    def _watch_matches(self, request: Any, run: _Run) -> bool:
        """``runMatchesFilter``: only a project target filters anything."""
        if request.WhichOneof("target") != "project_id":
            return True
        project = request.project_id
        return (run.key.project, run.key.domain) == (project.name, project.domain)

    def _watch_snapshot(self, request: Any) -> list[Any]:
        with self._lock:
            rows = [
                (run, run.root) for run in self._runs.values() if self._watch_matches(request, run)
            ]
            page = _sorted(rows, list(_DEFAULT_ORDER))[: self.snapshot_limit + 1]
            return [_run_proto(run) for run, _ in page]

    def _watch_update(self, request: Any, key: RunKey) -> Any:
        with self._lock:
            run = self._runs.get(key)
            if run is None or not self._watch_matches(request, run):
                return None
            return _run_proto(run)

    def _run(self, key: RunKey) -> _Run:
        run = self._runs.get(key)
        assert run is not None, f"no run {key}"
        return run

    def _write_phase(self, action: _Action, phase: int, attempts: int | None) -> None:
        """``UpdateActionPhase``: only forward, out of FAILED/TIMED_OUT, or PAUSED → terminal."""
        allowed = (
            action.phase <= phase
            or action.phase in (FAILED, TIMED_OUT)
            or (action.phase == PAUSED and phase in TERMINAL)
        )
        if not allowed:
            return
        now = self._now()
        action.phase = phase
        action.updated_at = now
        if attempts is not None:
            action.attempts = attempts
        if phase in TERMINAL and action.ended_at is None:
            action.ended_at = now

    # -- the driver: what the data plane would do to a run -------------------------------------

    def start_run(
        self,
        project: str,
        domain: str,
        name: str | None = None,
        *,
        notifications: Any = None,
        task: str = "wf.main",
        version: str = "v1",
        phase: int | None = RUNNING,
        trigger: str | None = None,
    ) -> RunKey:
        """Create a run through the real SDK, then (unless ``phase`` is None) move its root there.

        ``notifications`` is what ``flyte.with_runcontext(notifications=...)`` takes (a
        ``flyte.notify`` notification, a tuple of them, or a ``NamedRule``). A run only
        created (``phase=None``) is QUEUED and, as on the real server, not yet announced to
        WatchRuns: that happens with its first phase write. ``trigger`` names the trigger
        that started it: the root's metadata then carries ``trigger_name`` and
        ``trigger_id``, as for a run a trigger fired.
        """
        target = _SdkTarget(self._door_endpoint(), self._identity)
        created = _sdk_run(target, project, domain, name, notifications, task, version)
        key = RunKey(project, domain, created)
        if trigger is not None:
            with self._lock:
                self._run(key).root.trigger = trigger
        if phase is not None:
            self.set_phase(key, phase)
        return key

    def copy_run(self, template: RunKey, name: str) -> RunKey:
        """A new run ``name`` of ``template``'s project with its spec (as the SDK built it),
        made as ``CreateRun`` makes one and, as ``start_run(phase=None)``, not yet announced.

        The SDK's run path takes a tenth of a second per run: a benchmark driving thousands
        of runs makes one with :meth:`start_run` and copies it.
        """
        key = RunKey(template.project, template.domain, name)
        with self._lock:
            source = self._run(template)
            request = run_service_pb2.CreateRunRequest(run_spec=source.spec, source=source.source)
            request.run_id.CopyFrom(key.identifier())
            request.task_spec.CopyFrom(source.root.task_spec)
            self._create_run(request)
        return key

    def _door_endpoint(self) -> str:
        assert self._door is not None, "start the plane first"
        return f"http://{HOST}:{self._door.port}"

    def set_phase(self, run: RunKey, phase: int, *, attempts: int | None = None) -> None:
        """``UpdateActionStatus`` of the root: WatchRuns hears of it (even if nothing changed)."""
        with self._lock:
            self._write_phase(self._run(run).root, phase, attempts)
        self._publish(run)

    def record_attempt(
        self,
        run: RunKey,
        attempt: int,
        phase: int,
        *,
        error: str | Any = None,
        kind: Literal["USER", "SYSTEM"] = "USER",
        code: str = "",
        action: str = ROOT,
    ) -> None:
        """``RecordActionEvents``: the executor's report of one attempt (no WatchRuns message)."""
        with self._lock:
            target = self._run(run).actions[action]
            now = self._now()
            event = target.events.setdefault(attempt, _Attempt(attempt, phase, now))
            event.phase = phase
            if phase in TERMINAL:
                event.ended = now
            if error is not None:
                event.error = _error_info(error, kind, code)

    def finish(
        self,
        run: RunKey,
        phase: int,
        *,
        error: str | Any = None,
        kind: Literal["USER", "SYSTEM"] = "USER",
        code: str = "",
        events: bool = True,
    ) -> None:
        """The run ends in ``phase``: the current attempt's events (with ``error``), then the phase.

        ``events=False`` writes the phase only, as when the executor's events have not arrived:
        GetRunDetails then has no error for the current attempt.
        """
        with self._lock:
            attempt = self._run(run).root.attempts
        if events:
            self.record_attempt(run, attempt, phase, error=error, kind=kind, code=code)
        self.set_phase(run, phase)

    def retry(
        self, run: RunKey, error: str | Any, *, kind: Literal["USER", "SYSTEM"] = "USER"
    ) -> None:
        """The current attempt fails with ``error`` and the task restarts in place (attempts + 1).

        Then ``finish(run, FAILED, events=False)`` gives the case where the root action has no
        ``error_info`` while the last attempt it has events for does.
        """
        with self._lock:
            attempt = self._run(run).root.attempts
        self.record_attempt(run, attempt, FAILED, error=error, kind=kind)
        with self._lock:
            root = self._run(run).root
            root.attempts = attempt + 1
            root.updated_at = self._now()
        self._publish(run)

    def abort(self, run: RunKey, reason: str = "User requested abort") -> None:
        """``AbortRun``: the root is ABORTED with the reason; WatchRuns hears of it."""
        with self._lock:
            root = self._run(run).root
            now = self._now()
            root.phase = ABORTED
            root.abort_reason = reason
            root.updated_at = now
            if root.ended_at is None:
                root.ended_at = now
        self._publish(run)

    def pause(
        self,
        run: RunKey,
        *,
        prompt: str = "Approve?",
        description: str = "",
        condition: str = "approval",
        action: str | None = None,
        parent: str = ROOT,
        data_type: type = bool,
        prompt_type: Literal["text", "markdown"] = "text",
        timeout: float | None = None,
        webhook: tuple[str, dict[str, Any] | None] | None = None,
    ) -> ActionKey:
        """A condition action under ``parent`` starts waiting for input (PAUSED).

        The ConditionAction is built by the SDK (``Action.from_condition``, as its controller
        does for ``flyte.new_condition``). As on the real server the root stays as it is and
        WatchRuns sends nothing; ListRuns(paused_actions_only) and ListActions see it.
        """
        from flyte._internal.controllers.remote._action import Action

        key = ActionKey(run, action or f"{condition}-{next(_ACTION_NUMBERS)}")
        built = Action.from_condition(
            parent_action_name=parent,
            action_id=key.identifier(),
            condition_name=condition,
            prompt=prompt,
            data_type=data_type,
            run_output_base=f"{STORAGE_PREFIX}/{run.project}/{run.domain}/{run.name}/",
            inputs_uri=f"{STORAGE_PREFIX}/{run.project}/{run.domain}/{run.name}/{key.name}/inputs.pb",
            description=description,
            timeout_seconds=timeout,
            prompt_type=prompt_type,
            webhook_url=webhook[0] if webhook else None,
            webhook_payload=webhook[1] if webhook else None,
        )
        with self._lock:
            target = self._run(run)
            now = self._now()
            target.actions[key.name] = _Action(
                name=key.name,
                parent=parent,
                kind=run_definition_pb2.ACTION_TYPE_CONDITION,
                phase=PAUSED,
                created_at=now,
                updated_at=now,
                function_name=condition,
                condition=built.condition,
            )
        return key

    def _signal(self, ident: Any, payload: Any) -> None:
        """The actions service's ``Signal``, and the reconciler's transition that follows."""
        value = _payload_literal(payload)
        cr_name = f"{ident.run.name}-{ident.name}"
        if value is None:
            raise ConnectError(
                Code.INVALID_ARGUMENT, "signal value must be a concrete bool/int/float/str literal"
            )
        key = RunKey(ident.run.project, ident.run.domain, ident.run.name)
        with self._lock:
            run = self._runs.get(key)
            action = run.actions.get(ident.name) if run is not None else None
            if action is None:
                raise ConnectError(Code.NOT_FOUND, f"condition action {cr_name} not found")
            if action.kind != run_definition_pb2.ACTION_TYPE_CONDITION:
                raise ConnectError(Code.FAILED_PRECONDITION, f"action {cr_name} is not a condition")
            if action.signal is not None:
                if action.signal == value:
                    return  # idempotent retry of the same signal
                raise ConnectError(
                    Code.FAILED_PRECONDITION,
                    f"condition {cr_name} already signalled with a different value",
                )
            if action.phase in TERMINAL:
                raise ConnectError(
                    Code.FAILED_PRECONDITION, f"condition {cr_name} already completed"
                )
            declared = action.condition.type.simple
            given = _SIMPLE_OF[value.scalar.primitive.WhichOneof("value")]
            if declared != given:
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"signal value type {types_pb2.SimpleType.Name(given)} does not match"
                    f" declared condition type {types_pb2.SimpleType.Name(declared)}",
                )
            action.signal = value
            self._write_phase(action, SUCCEEDED, None)

    def signal_with_sdk(self, action: ActionKey, value: bool | int | float | str) -> None:
        """Signal the condition as a person using the flyte SDK does (``flyte.remote.Condition``
        ``.signal``), through the driver's door: the SDK builds the request."""
        with self._lock:
            run = self._run(action.run)
            proto = _action_proto(run, run.actions[action.name])
        target = _SdkTarget(self._door_endpoint(), self._identity)
        _in_sdk_thread(lambda: _sdk_signal_here(target, action.run, proto, value))

    def signal_of(self, action: ActionKey) -> Any:
        """The literal a condition was signalled with (None: not signalled)."""
        with self._lock:
            return self._run(action.run).actions[action.name].signal

    def resume(self, action: ActionKey, phase: int = SUCCEEDED) -> None:
        """The condition is signalled (SUCCEEDED) or times out (FAILED); no WatchRuns message."""
        with self._lock:
            self._write_phase(self._run(action.run).actions[action.name], phase, None)

    def phase_of(self, run: RunKey, action: str = ROOT) -> int:
        with self._lock:
            return self._run(run).actions[action].phase

    def run_spec(self, run: RunKey) -> Any:
        """The RunSpec CreateRun stored (a copy)."""
        with self._lock:
            spec = run_pb2.RunSpec()
            spec.CopyFrom(self._run(run).spec)
            return spec


_ACTION_NUMBERS = itertools.count(1)

# The primitive a literal holds -> the simple type it satisfies (literalPrimitiveKind).
_SIMPLE_OF = {
    "boolean": types_pb2.BOOLEAN,
    "integer": types_pb2.INTEGER,
    "float_value": types_pb2.FLOAT,
    "string_value": types_pb2.STRING,
}


def _payload_literal(payload: Any) -> Any:
    """``payloadToLiteral``: the EventPayload's value as a core Literal (None: no value)."""
    which = payload.WhichOneof("value")
    field = {
        "bool_value": "boolean",
        "int_value": "integer",
        "float_value": "float_value",
        "string_value": "string_value",
    }.get(which or "")
    if field is None:
        return None
    primitive = literals_pb2.Primitive(**{field: getattr(payload, which)})
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=primitive))


# -- the SDK's run path ----------------------------------------------------------------------


@dataclass(frozen=True)
class _SdkTarget:
    endpoint: str  # the driver's door
    plane: str  # the plane's identity: a later plane may get the same port


_sdk_lock = threading.Lock()
_sdk_target: _SdkTarget | None = None


def _in_sdk_thread(work: Callable[[], Any]) -> Any:
    """``work`` in a thread of its own: the SDK blocks until its own loop thread answers,
    which must not hold up an async test's loop, and it must not run inside that loop."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SDK_TIMEOUT)
    if errors:
        raise errors[0]
    assert result, f"the SDK did not answer within {SDK_TIMEOUT} s"
    return result[0]


def _point_sdk_at(target: _SdkTarget, project: str, domain: str) -> None:
    import flyte

    global _sdk_target
    if _sdk_target != target:  # flyte.init is process-wide: point it at this plane
        flyte.init(endpoint=target.endpoint, insecure=True, project=project, domain=domain)
        _sdk_target = target


def _sdk_signal_here(target: _SdkTarget, run: RunKey, action: Any, value: Any) -> bool:
    import flyte.remote

    with _sdk_lock:
        _point_sdk_at(target, run.project, run.domain)
        flyte.remote.Condition(pb2=action).signal(value)
    return True


def _sdk_run(
    target: _SdkTarget,
    project: str,
    domain: str,
    name: str | None,
    notifications: Any,
    task: str,
    version: str,
) -> str:
    """Run a remote task with the SDK against the plane's door; the created run's name."""
    return str(
        _in_sdk_thread(
            lambda: _sdk_run_here(target, project, domain, name, notifications, task, version)
        )
    )


def _sdk_run_here(
    target: _SdkTarget,
    project: str,
    domain: str,
    name: str | None,
    notifications: Any,
    task: str,
    version: str,
) -> str:
    import flyte
    import flyte.remote

    with _sdk_lock:
        _point_sdk_at(target, project, domain)
        remote_task = flyte.remote.Task.get(task, project=project, domain=domain, version=version)
        context: dict[str, Any] = {"mode": "remote", "project": project, "domain": domain}
        if name is not None:
            context["name"] = name
        if notifications is not None:
            context["notifications"] = notifications
        run = flyte.with_runcontext(**context).run(remote_task)
        return str(run.name)
