"""A loopback FlyteAdmin for tests: real gRPC on 127.0.0.1, and an OAuth2 token endpoint.

:class:`FlyteAdminServer` serves flyteidl's ``AdminService`` (``GetExecution``,
``GetActiveLaunchPlan``: the active version of a launch plan, the one whose
schedule FlyteAdmin's scheduler runs, NOT_FOUND when none is active, as
FlyteAdmin answers; ``RelaunchExecution``, ``RecoverExecution``,
``TerminateExecution``), ``SignalService`` (``ListSignals``, ``SetSignal``) and
``AuthMetadataService`` (``GetOAuth2Metadata``, ``GetPublicClientConfig``) with
the servicer base classes flyteidl ships, on a gRPC server with its own threads,
so it serves async tests and synchronous ones (a CLI run by ``CliRunner``)
alike. Optionally TLS (a certificate from the test CA) and authentication:
``GetExecution`` then wants ``Bearer <token>`` in the metadata key the server
advertises, as FlyteAdmin's auth interceptor does, and answers UNAUTHENTICATED
otherwise.

:class:`TokenEndpoint` is an aiohttp server on its own thread that issues
client-credentials tokens (HTTP Basic client authentication) and records
each request; tokens it issues are the ones the admin server accepts.

Every ``GetExecution`` is recorded in ``calls``, every other call in
``requests``; ``fail`` scripts status codes for the next calls of a method;
``stop``/``start`` take the server down and bring it back on the same port.

Signals behave as FlyteAdmin's signal manager (flyteadmin/pkg/manager/impl/signal_manager.go,
validation/signal_validator.go, repositories/gormimpl/signal_repo.go): they exist once
FlytePropeller reaches a gate node (:meth:`FlyteAdminServer.reach_gates`, from a workflow
template flytekit serialized: an ``approve()`` gate is a BOOLEAN signal, ``wait_for_input()`` a
signal of its type); ``ListSignals`` wants a limit above 0 and pages by offset; ``SetSignal``
refuses an unknown signal or a value of another type (INVALID_ARGUMENT) and otherwise writes
the value, over one already set: FlyteAdmin keeps no "already answered" state (FlytePropeller
reads the value once). Relaunch and recover create a new execution under the name asked for
(or a generated one); a name that exists is ALREADY_EXISTS, as FlyteAdmin's database says.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import secrets
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import grpc
from aiohttp import web
from flyteidl.admin import execution_pb2, launch_plan_pb2, signal_pb2
from flyteidl.core import execution_pb2 as core_execution_pb2
from flyteidl.core import identifier_pb2, types_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc, signal_pb2_grpc
from google.protobuf import timestamp_pb2

from flytenotify.config import FlyteAdminConfig
from flytenotify.domain import EntityId, ExecutionId
from tests.servers.smtp import HOST, default_ca, free_port

__all__ = [
    "AdminCall",
    "AdminRequest",
    "FlyteAdminServer",
    "TokenEndpoint",
    "TokenRequest",
    "admin_execution",
    "admin_launch_plan",
]

STOP_GRACE = 1.0
# FlyteAdmin's execution names (validation/execution_validator.go): a Kubernetes label.
EXECUTION_NAME = re.compile(r"^[a-z][a-z\-0-9]*$")
EXECUTION_NAME_LENGTH = 63
_TERMINAL_PHASES = frozenset(
    core_execution_pb2.WorkflowExecution.Phase.Value(name)
    for name in ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT")
)


def admin_execution(
    execution_id: ExecutionId,
    *,
    launch_plan: EntityId,
    workflow: EntityId,
    notifications: Iterable[Any] = (),
    created_at: datetime | None = None,
) -> Any:
    """A ``flyteidl.admin.Execution`` as FlyteAdmin answers GetExecution.

    ``notifications`` (anything with ``to_flyte_idl()``) go into
    ``closure.notifications``, where FlyteAdmin keeps the merged ones.
    """
    execution = execution_pb2.Execution(
        id=identifier_pb2.WorkflowExecutionIdentifier(
            project=execution_id.project, domain=execution_id.domain, name=execution_id.name
        )
    )
    execution.spec.launch_plan.CopyFrom(_identifier(identifier_pb2.LAUNCH_PLAN, launch_plan))
    execution.closure.workflow_id.CopyFrom(_identifier(identifier_pb2.WORKFLOW, workflow))
    execution.closure.notifications.extend(n.to_flyte_idl() for n in notifications)
    if created_at is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(created_at)
        execution.closure.created_at.CopyFrom(stamp)
    return execution


def _signal_id(execution_id: ExecutionId, signal_id: str) -> Any:
    return identifier_pb2.SignalIdentifier(
        signal_id=signal_id,
        execution_id=identifier_pb2.WorkflowExecutionIdentifier(
            project=execution_id.project, domain=execution_id.domain, name=execution_id.name
        ),
    )


def admin_launch_plan(plan: EntityId, schedule: Any = None) -> Any:
    """A ``flyteidl.admin.LaunchPlan`` as FlyteAdmin stores an active version, its
    ``spec.entity_metadata.schedule`` the given ``flyteidl.admin.Schedule`` (if any)."""
    launch_plan = launch_plan_pb2.LaunchPlan(
        id=_identifier(identifier_pb2.LAUNCH_PLAN, plan),
        closure=launch_plan_pb2.LaunchPlanClosure(state=launch_plan_pb2.ACTIVE),
    )
    if schedule is not None:
        launch_plan.spec.entity_metadata.schedule.CopyFrom(schedule)
    return launch_plan


def _identifier(kind: int, entity: EntityId) -> Any:
    return identifier_pb2.Identifier(
        resource_type=kind,
        project=entity.project,
        domain=entity.domain,
        name=entity.name,
        version=entity.version,
    )


@dataclass(frozen=True)
class AdminCall:
    execution: ExecutionId
    metadata: dict[str, str]  # the call's metadata, keys lower-case as gRPC sends them
    code: grpc.StatusCode  # what the server answered
    at: float  # time.monotonic()


@dataclass(frozen=True)
class AdminRequest:
    """A call other than GetExecution: its method, request and answer."""

    method: str  # e.g. "SetSignal"
    request: Any  # the decoded request message
    code: grpc.StatusCode


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    executions: dict[ExecutionId, Any] = field(default_factory=dict)
    launch_plans: dict[tuple[str, str, str], Any] = field(default_factory=dict)  # active ones
    launch_plan_calls: list[tuple[str, str, str]] = field(default_factory=list)
    calls: list[AdminCall] = field(default_factory=list)
    requests: list[AdminRequest] = field(default_factory=list)
    # The next answers of each method, scripted (GetExecution's by default).
    failures: dict[str, deque[tuple[grpc.StatusCode, str]]] = field(default_factory=dict)
    # Executions GetExecution answers with this code every time (one that is down).
    refused: dict[ExecutionId, grpc.StatusCode] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    discovery_calls: int = 0
    # (execution, signal id) -> admin.Signal, in creation order (the table's order).
    signals: dict[tuple[ExecutionId, str], Any] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _authorized(server: FlyteAdminServer, metadata: dict[str, str]) -> bool:
    """FlyteAdmin's auth interceptor: ``Bearer <token>`` in the advertised metadata key."""
    if not server.requires_auth:
        return True
    scheme, _, token = metadata.get(server.metadata_key, "").partition(" ")
    return scheme == "Bearer" and token in server.state.tokens


def _serve(
    server: FlyteAdminServer,
    method: str,
    request: Any,
    context: grpc.ServicerContext,
    answer: Callable[[], Any],
) -> Any:
    """Authenticate, play a scripted failure, or answer; record the call either way."""
    state = server.state
    metadata = {k.lower(): v for k, v in context.invocation_metadata()}
    with state.lock:
        scripted = state.failures.get(method)
        try:
            if not _authorized(server, metadata):
                raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "token is missing or not valid")
            if scripted:
                raise _Refused(*scripted.popleft())
            found = answer()
        except _Refused as refused:
            state.requests.append(AdminRequest(method, request, refused.code))
            context.abort(refused.code, refused.details)
        state.requests.append(AdminRequest(method, request, grpc.StatusCode.OK))
        return found


class _Admin(admin_pb2_grpc.AdminServiceServicer):  # type: ignore[misc]
    def __init__(self, server: FlyteAdminServer) -> None:
        self.server = server

    def GetExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        state = self.server.state
        wanted = ExecutionId(request.id.project, request.id.domain, request.id.name)
        metadata = {k.lower(): v for k, v in context.invocation_metadata()}
        with state.lock:
            code, details, found = self._answer(wanted, metadata)
            state.calls.append(AdminCall(wanted, metadata, code, time.monotonic()))
        if code != grpc.StatusCode.OK:
            context.abort(code, details)
        return found

    def GetActiveLaunchPlan(self, request: Any, context: grpc.ServicerContext) -> Any:
        state = self.server.state
        wanted = (request.id.project, request.id.domain, request.id.name)
        metadata = {k.lower(): v for k, v in context.invocation_metadata()}
        with state.lock:
            state.launch_plan_calls.append(wanted)
            code, details, _ = self._answer(None, metadata)
            found = state.launch_plans.get(wanted)
        if code == grpc.StatusCode.OK and found is None:
            code, details = (
                grpc.StatusCode.NOT_FOUND,
                f"missing entity of type launch plan {wanted}",
            )
        if code != grpc.StatusCode.OK:
            context.abort(code, details)
        return found

    def _answer(
        self, wanted: ExecutionId | None, metadata: dict[str, str]
    ) -> tuple[grpc.StatusCode, str, Any]:
        state = self.server.state
        if self.server.requires_auth:
            header = metadata.get(self.server.metadata_key, "")
            scheme, _, token = header.partition(" ")
            if scheme != "Bearer" or token not in state.tokens:
                return grpc.StatusCode.UNAUTHENTICATED, "token is missing or not valid", None
        scripted = state.failures.get("GetExecution")
        if scripted:
            code, details = scripted.popleft()
            return code, details, None
        if wanted is None:
            return grpc.StatusCode.OK, "", None
        if wanted in state.refused:
            return state.refused[wanted], f"scripted for {wanted.name}", None
        found = state.executions.get(wanted)
        if found is None:
            return grpc.StatusCode.NOT_FOUND, f"missing entity of type execution {wanted}", None
        return grpc.StatusCode.OK, "", found

    def RelaunchExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _serve(
            self.server,
            "RelaunchExecution",
            request,
            context,
            lambda: self.server._launch_again(request.id, request.name, "RELAUNCH"),
        )

    def TerminateExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _serve(
            self.server, "TerminateExecution", request, context, lambda: self._terminate(request)
        )

    def _terminate(self, request: Any) -> Any:
        ident = request.id
        found = self.server.state.executions.get(
            ExecutionId(ident.project, ident.domain, ident.name)
        )
        if found is None:
            raise _Refused(grpc.StatusCode.NOT_FOUND, f"missing entity of type execution {ident}")
        if found.closure.phase in _TERMINAL_PHASES:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Cannot abort an already terminated workflow execution",
            )
        found.closure.phase = core_execution_pb2.WorkflowExecution.ABORTED
        found.closure.abort_metadata.cause = request.cause
        return execution_pb2.ExecutionTerminateResponse()

    def RecoverExecution(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _serve(
            self.server,
            "RecoverExecution",
            request,
            context,
            lambda: self.server._launch_again(request.id, request.name, "RECOVERED"),
        )


class _Signals(signal_pb2_grpc.SignalServiceServicer):  # type: ignore[misc]
    def __init__(self, server: FlyteAdminServer) -> None:
        self.server = server

    def ListSignals(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _serve(self.server, "ListSignals", request, context, lambda: self._list(request))

    def SetSignal(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _serve(self.server, "SetSignal", request, context, lambda: self._set(request))

    def _list(self, request: Any) -> Any:
        ident = request.workflow_execution_id
        if not (ident.project and ident.domain and ident.name):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "missing execution_id")
        if request.limit <= 0:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "invalid value for limit")
        offset = int(request.token) if request.token.isdigit() else 0
        if request.token and not request.token.isdigit():
            raise _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid pagination token {request.token} for ListSignals",
            )
        wanted = ExecutionId(ident.project, ident.domain, ident.name)
        found = [s for (eid, _), s in self.server.state.signals.items() if eid == wanted]
        page = found[offset : offset + request.limit]
        token = str(offset + len(page)) if len(page) == request.limit else ""
        return signal_pb2.SignalList(signals=page, token=token)

    def _set(self, request: Any) -> Any:
        if not request.HasField("id"):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "missing id")
        if not request.id.signal_id:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "missing signal_id")
        if not request.HasField("value"):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "missing value")
        ident = request.id.execution_id
        key = (ExecutionId(ident.project, ident.domain, ident.name), request.id.signal_id)
        signal = self.server.state.signals.get(key)
        if signal is None:
            raise _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"failed to validate that signal [{key[1]}] exists, err: [signal does not exist]",
            )
        given = _literal_type(request.value)
        if given is None or given != signal.type:
            raise _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"requested signal value [{request.value}] is not castable to existing signal"
                f" type [{signal.type}]",
            )
        signal.value.CopyFrom(request.value)  # over any value set before, as FlyteAdmin does
        return signal_pb2.SignalSetResponse()


def _literal_type(literal: Any) -> Any:
    """The simple type of a primitive literal (propeller's LiteralTypeForLiteral, for the
    primitives a signal carries); None for anything else."""
    primitive = literal.scalar.primitive
    which = primitive.WhichOneof("value") if literal.scalar.HasField("primitive") else None
    simple = {
        "integer": types_pb2.INTEGER,
        "float_value": types_pb2.FLOAT,
        "string_value": types_pb2.STRING,
        "boolean": types_pb2.BOOLEAN,
    }.get(which or "")
    return types_pb2.LiteralType(simple=simple) if simple is not None else None


class _AuthMetadata(auth_pb2_grpc.AuthMetadataServiceServicer):  # type: ignore[misc]
    def __init__(self, server: FlyteAdminServer) -> None:
        self.server = server

    def GetOAuth2Metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.server.state.lock:
            self.server.state.discovery_calls += 1
        return auth_pb2.OAuth2MetadataResponse(
            issuer=self.server.token_endpoint.rsplit("/", 2)[0],
            token_endpoint=self.server.token_endpoint,
            grant_types_supported=["client_credentials"],
        )

    def GetPublicClientConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.server.state.lock:
            self.server.state.discovery_calls += 1
        return auth_pb2.PublicClientAuthConfigResponse(
            client_id="flytectl",
            scopes=list(self.server.scopes),
            authorization_metadata_key=self.server.metadata_key,
            audience=self.server.audience,
        )


class FlyteAdminServer:
    """``with FlyteAdminServer(tls=True, requires_auth=True) as admin: admin.config()``."""

    def __init__(
        self,
        *,
        tls: bool = False,
        requires_auth: bool = False,
        metadata_key: str = "authorization",
        token_endpoint: str = "",
        scopes: Sequence[str] = ("all",),
        audience: str = "",
    ) -> None:
        self.tls = tls
        self.requires_auth = requires_auth
        self.metadata_key = metadata_key
        self.token_endpoint = token_endpoint
        self.scopes = tuple(scopes)
        self.audience = audience
        self.state = _State()
        self.port = free_port()
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def config(self, **overrides: Any) -> FlyteAdminConfig:
        """A ``[flyteadmin]`` section pointing here (plaintext, or TLS trusting the test CA)."""
        base: dict[str, Any] = {"endpoint": self.endpoint, "timeout": 5.0}
        if self.tls:
            base["ca_cert_file"] = default_ca().ca_file
        else:
            base["insecure"] = True
        return FlyteAdminConfig(**(base | overrides))

    # -- scripting and what was seen -------------------------------------------------

    def add(self, execution: Any) -> None:
        """Serve this ``flyteidl.admin.Execution`` (see :func:`admin_execution`)."""
        ident = execution.id
        with self.state.lock:
            self.state.executions[ExecutionId(ident.project, ident.domain, ident.name)] = execution

    def activate(self, launch_plan: Any) -> None:
        """Serve this ``flyteidl.admin.LaunchPlan`` as its name's active version
        (see :func:`admin_launch_plan`)."""
        ident = launch_plan.id
        with self.state.lock:
            self.state.launch_plans[(ident.project, ident.domain, ident.name)] = launch_plan

    @property
    def launch_plan_calls(self) -> list[tuple[str, str, str]]:
        with self.state.lock:
            return list(self.state.launch_plan_calls)

    def fail(
        self,
        code: grpc.StatusCode,
        *,
        count: int = 1,
        details: str = "scripted",
        method: str = "GetExecution",
    ) -> None:
        """Answer the next ``count`` calls of ``method`` (that pass auth) with ``code``;
        GetExecution's failures answer GetActiveLaunchPlan too."""
        with self.state.lock:
            queue = self.state.failures.setdefault(method, deque())
            queue.extend([(code, details)] * count)

    def refuse(self, execution_id: ExecutionId, code: grpc.StatusCode) -> None:
        """Answer every GetExecution of ``execution_id`` with ``code``, whatever else is asked."""
        with self.state.lock:
            self.state.refused[execution_id] = code

    def reach_gates(
        self, execution_id: ExecutionId, template: Any, only: Iterable[str] | None = None
    ) -> list[str]:
        """FlytePropeller reaches the gate nodes of ``template`` (a ``core.WorkflowTemplate``;
        those of the signal ids ``only`` names, or all): each one's signal is created
        (GetOrCreateSignal), pending. The signal ids, in order."""
        wanted = set(only) if only is not None else None
        made: list[str] = []
        with self.state.lock:
            for node in template.nodes:
                if not node.HasField("gate_node"):
                    continue
                gate: Any = node.gate_node
                which = gate.WhichOneof("condition")
                if which == "approve":
                    signal_id = gate.approve.signal_id
                    kind = types_pb2.LiteralType(simple=types_pb2.BOOLEAN)
                elif which == "signal":
                    signal_id, kind = gate.signal.signal_id, gate.signal.type
                else:
                    continue  # a sleep: no signal
                if wanted is not None and signal_id not in wanted:
                    continue
                key = (execution_id, signal_id)
                if key not in self.state.signals:
                    self.state.signals[key] = signal_pb2.Signal(
                        id=_signal_id(execution_id, signal_id), type=kind
                    )
                made.append(signal_id)
        return made

    def signal_value(self, execution_id: ExecutionId, signal_id: str) -> Any:
        """The signal's value as FlyteAdmin holds it (None while pending)."""
        with self.state.lock:
            signal = self.state.signals[(execution_id, signal_id)]
            return signal.value if signal.HasField("value") else None

    def requests_to(self, method: str) -> list[AdminRequest]:
        with self.state.lock:
            return [r for r in self.state.requests if r.method == method]

    def _launch_again(self, ident: Any, name: str, mode: str) -> Any:
        """RelaunchExecution / RecoverExecution (called under the lock)."""
        source = ExecutionId(ident.project, ident.domain, ident.name)
        existing = self.state.executions.get(source)
        if existing is None:
            raise _Refused(grpc.StatusCode.NOT_FOUND, f"missing entity of type execution {source}")
        if name and (len(name) > EXECUTION_NAME_LENGTH or not EXECUTION_NAME.match(name)):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"invalid name format: {name}")
        new = ExecutionId(source.project, source.domain, name or "a" + secrets.token_hex(10)[:19])
        if new in self.state.executions:
            raise _Refused(
                grpc.StatusCode.ALREADY_EXISTS,
                "value with matching already exists (duplicate key value violates unique"
                ' constraint "executions_pkey")',
            )
        made = execution_pb2.Execution()
        made.CopyFrom(existing)
        made.id.name = new.name
        made.spec.metadata.mode = execution_pb2.ExecutionMetadata.ExecutionMode.Value(mode)
        made.spec.metadata.reference_execution.CopyFrom(ident)
        made.closure.Clear()
        self.state.executions[new] = made
        return execution_pb2.ExecutionCreateResponse(id=made.id)

    def accept_token(self, token: str) -> None:
        with self.state.lock:
            self.state.tokens.add(token)

    def forget_tokens(self) -> None:
        """Every token issued so far is no longer valid (as after a key rotation)."""
        with self.state.lock:
            self.state.tokens.clear()

    @property
    def calls(self) -> list[AdminCall]:
        with self.state.lock:
            return list(self.state.calls)

    def calls_for(self, execution_id: ExecutionId) -> list[AdminCall]:
        return [call for call in self.calls if call.execution == execution_id]

    # -- running -----------------------------------------------------------------------

    def start(self) -> Self:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        admin_pb2_grpc.add_AdminServiceServicer_to_server(_Admin(self), server)
        signal_pb2_grpc.add_SignalServiceServicer_to_server(_Signals(self), server)
        auth_pb2_grpc.add_AuthMetadataServiceServicer_to_server(_AuthMetadata(self), server)
        address = self.endpoint
        if self.tls:
            cert = default_ca().ca.issue_cert(HOST, "localhost")
            credentials = grpc.ssl_server_credentials(
                [(cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())]
            )
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        assert bound == self.port, f"could not bind {address}"
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Down: connections are refused until :meth:`start` (same port)."""
        if self._server is not None:
            self._server.stop(STOP_GRACE).wait(STOP_GRACE + 5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class TokenRequest:
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]
    status: int


class TokenEndpoint:
    """An OAuth2 token endpoint (client credentials) on 127.0.0.1, on its own thread.

    Tokens it issues are accepted by ``admin`` (when given) for ``lifetime`` seconds
    as far as the client is told (``expires_in``).
    """

    def __init__(
        self,
        client_id: str,
        secret: str,
        admin: FlyteAdminServer | None = None,
        *,
        lifetime: int = 3600,
        tls: bool = False,
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.admin = admin
        self.lifetime = lifetime
        self.tls = tls
        self.requests: list[TokenRequest] = []
        self.port = 0
        self._numbers = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}/oauth2/token"

    @property
    def issued(self) -> list[TokenRequest]:
        return [r for r in self.requests if r.status == 200]

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not self._authenticated(headers.get("authorization", "")):
            self.requests.append(TokenRequest(headers, form, 401))
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            self.requests.append(TokenRequest(headers, form, 400))
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        self.requests.append(TokenRequest(headers, form, 200))
        token = f"token-{next(self._numbers)}"
        if self.admin is not None:
            self.admin.accept_token(token)
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime}
        )

    def _authenticated(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme != "Basic":
            return False
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return (
            urllib.parse.unquote_plus(user) == self.client_id
            and urllib.parse.unquote_plus(password) == self.secret
        )

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/oauth2/token", self._token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        context = None
        if self.tls:
            context = default_ca().server_context()
        site = web.TCPSite(runner, HOST, 0, ssl_context=context)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
