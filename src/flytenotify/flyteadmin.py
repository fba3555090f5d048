"""Looking executions up in FlyteAdmin: its gRPC ``AdminService.GetExecution``.

FlyteAdmin freezes each execution's notifications at creation (the launch
plan's, or the execution's non-empty override; none with ``disable_all``) and
keeps them in ``ExecutionClosure.notifications``. An event for an execution
flytenotify never saw is resolved from there, so Flyte users register their
launch plans once, with Flyte.

Authentication follows flytekit's client: plaintext (``insecure``), TLS with
the system trust or ``ca_cert_file``, and on top of either an OAuth2 access
token: client credentials against the token endpoint FlyteAdmin advertises
(``AuthMetadataService.GetOAuth2Metadata``, with scopes, audience and the
metadata key from ``GetPublicClientConfig``), or a static token read from
``token_file``. The token is sent as ``Bearer <token>`` in the metadata key
FlyteAdmin advertises (``authorization`` unless it says otherwise).

What a look-up answers:

- the execution, with FlyteAdmin's notifications, launch plan, workflow and
  creation time (``source`` ``flyteadmin``);
- a refusal that is final (``NOT_FOUND``, ``PERMISSION_DENIED``,
  ``INVALID_ARGUMENT``, or ``UNAUTHENTICATED`` with a fresh token): the
  execution with no notifications, ``source`` ``none`` and the refusal in
  ``lookup_error``;
- :class:`~flytenotify.errors.UpstreamUnavailable` for anything that may pass
  (unreachable, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, a token endpoint that
  does not give a token, ...): the caller records nothing and tries later.

The same client acts on executions for people (:mod:`flytenotify.actions`):
``SignalService.ListSignals`` and ``SetSignal`` for gate nodes,
``RelaunchExecution``, ``RecoverExecution`` and ``TerminateExecution``. Their
final refusals (an unknown signal, a value of another type, a name taken) raise
:class:`~flytenotify.errors.UpstreamRefused` with FlyteAdmin's words.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from croniter import croniter
from flyteidl.admin import common_pb2, execution_pb2, launch_plan_pb2, schedule_pb2, signal_pb2
from flyteidl.core import identifier_pb2, literals_pb2, types_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc, signal_pb2_grpc
from google.protobuf import json_format

from flytenotify.config import FlyteAdminConfig
from flytenotify.domain import EntityId, Execution, ExecutionId, NotificationSource, ValueKind
from flytenotify.errors import NotificationConfigError, UpstreamRefused, UpstreamUnavailable
from flytenotify.flyte_auth import (
    DEFAULT_HEADER,
    NO_DISCOVERY,
    RETRY_AFTER,
    AuthDiscovery,
    ClientCredentials,
    TokenEndpoint,
    credentials_for,
)
from flytenotify.schedules import Schedule, aws_cron
from flytenotify.wire import to_notification

log = logging.getLogger(__name__)

# gRPC's reconnect backoff grows to two minutes by default; events wait for FlyteAdmin
# to come back, so try again within seconds of it being back.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 5000),
)

# FlyteAdmin's own answer about this execution: asking again will not change it.
_FINAL_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


SIGNAL_PAGE = 100  # signals per ListSignals page (FlyteAdmin wants a limit above 0)
SIGNAL_PAGES = 20  # an execution's gates on at most this many pages

# A scalar a gate takes, as a core Literal's primitive names it.
_PRIMITIVE_FIELDS = {
    ValueKind.BOOL: "boolean",
    ValueKind.INT: "integer",
    ValueKind.FLOAT: "float_value",
    ValueKind.STR: "string_value",
}
GateValue = bool | int | float | str


# Besides the final codes: FlyteAdmin's other answers that asking again will not change.
_ACTION_REFUSALS = frozenset({grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION})


class LookupRefused(Exception):
    """FlyteAdmin's final answer about one execution (``NOT_FOUND: ...``)."""


@dataclass(frozen=True)
class Signal:
    """A gate node's signal as FlyteAdmin holds it: what it expects, and its value once set.

    ``expects`` is None for a type no person can type in (not a simple one);
    ``type_text`` names the type in any case (``BOOLEAN``, or the LiteralType's JSON).
    """

    signal_id: str
    expects: ValueKind | None
    type_text: str
    value: GateValue | None  # None while pending (or a value that is no scalar)
    answered: bool


def signal_literal(kind: ValueKind, value: GateValue) -> Any:
    """The ``core.Literal`` flytekit's TypeEngine makes of ``value`` for a gate of ``kind``."""
    primitive = literals_pb2.Primitive(**{_PRIMITIVE_FIELDS[kind]: value})
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=primitive))


def literal_value(literal: Any) -> GateValue | None:
    """The primitive a literal holds (None for anything else)."""
    if not literal.scalar.HasField("primitive"):
        return None
    which = literal.scalar.primitive.WhichOneof("value")
    if which not in _PRIMITIVE_FIELDS.values():
        return None
    found: GateValue = getattr(literal.scalar.primitive, which)
    return found


def _signal(message: Any) -> Signal:
    kind = message.type
    simple = kind.simple if kind.WhichOneof("type") == "simple" else 0
    expects = ValueKind.of_simple(simple)
    if kind.WhichOneof("type") == "simple":
        type_text = types_pb2.SimpleType.Name(simple)
    else:
        type_text = json_format.MessageToJson(kind, indent=None)
    answered = message.HasField("value") and message.value.ByteSize() > 0
    return Signal(
        signal_id=message.id.signal_id,
        expects=expects,
        type_text=type_text,
        value=literal_value(message.value) if answered else None,
        answered=answered,
    )


class FlyteAdmin:
    """A FlyteAdmin gRPC client for looking executions up (``grpc.aio``)."""

    def __init__(self, config: FlyteAdminConfig) -> None:
        self.config = config
        self._tokens = TokenEndpoint(config)
        self.credentials = credentials_for(config, "flyteadmin", self._tokens)
        # Made on first use: a grpc.aio channel belongs to the event loop it was made on.
        self._channel: grpc.aio.Channel | None = None
        # A stub builds a callable for each of its service's methods (AdminService has
        # dozens): made once per channel, not once per call.
        self._stubs: dict[type, Any] = {}
        self._discovery: AuthDiscovery | None = None
        self._discovery_lock = asyncio.Lock()

    @property
    def description(self) -> str:
        """Where FlyteAdmin is and how we talk to it, for logs (no secrets)."""
        if self.config.insecure:
            transport = "plaintext"
        elif self.config.ca_cert_file is not None:
            transport = f"TLS trusting {self.config.ca_cert_file}"
        else:
            transport = "TLS, system trust"
        return f"{self.config.endpoint} ({transport}, {self.credentials.description})"

    def _open_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self.config.insecure:
                self._channel = grpc.aio.insecure_channel(
                    self.config.endpoint, options=CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.secure_channel(
                    self.config.endpoint,
                    grpc.ssl_channel_credentials(_ca_bytes(self.config)),
                    options=CHANNEL_OPTIONS,
                )
        return self._channel

    def _stub(self, kind: type) -> Any:
        if kind not in self._stubs:
            self._stubs[kind] = kind(self._open_channel())
        return self._stubs[kind]

    @property
    def _admin(self) -> Any:
        return self._stub(admin_pb2_grpc.AdminServiceStub)

    @property
    def _auth(self) -> Any:
        return self._stub(auth_pb2_grpc.AuthMetadataServiceStub)

    @property
    def _signals(self) -> Any:
        return self._stub(signal_pb2_grpc.SignalServiceStub)

    async def close(self) -> None:
        self._stubs.clear()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        await self._tokens.close()

    # -- looking up ------------------------------------------------------------------

    async def get_execution(self, execution_id: ExecutionId) -> Execution:
        """The execution as FlyteAdmin has it, or recorded as refused (see the module doc).

        Raises :class:`UpstreamUnavailable` when FlyteAdmin cannot answer now.
        """
        try:
            reply = await self._get(execution_id)
        except LookupRefused as refusal:
            log.warning("FlyteAdmin refused to look up %s: %s", execution_id, refusal)
            return Execution(
                id=execution_id,
                launch_plan=None,
                notifications=(),
                created_at=datetime.now(UTC),
                source=NotificationSource.NONE,
                lookup_error=str(refusal),
            )
        return execution_from_admin(execution_id, reply)

    async def _get(self, execution_id: ExecutionId) -> Any:
        request = execution_pb2.WorkflowExecutionGetRequest(id=_execution_id(execution_id))
        return await self._authorized(lambda: self._admin.GetExecution, request, execution_id)

    # -- launch plans' schedules -----------------------------------------------------

    async def launch_plan_schedule(self, plan: EntityId) -> tuple[Schedule | None, str]:
        """The schedule FlyteAdmin runs ``plan`` by, or None and why it has none.

        Asked of the launch plan's *active* version (``GetActiveLaunchPlan``):
        only that version's schedule fires, and ``GetLaunchPlan`` would need a
        version the caller does not know. Its ``entity_metadata.schedule`` is a
        cron schedule (``cron_schedule.schedule``, or the older AWS-style
        ``cron_expression``) or a fixed rate. Raises :class:`UpstreamUnavailable`
        when FlyteAdmin cannot answer now.
        """
        request = launch_plan_pb2.ActiveLaunchPlanRequest(
            id=common_pb2.NamedEntityIdentifier(
                project=plan.project, domain=plan.domain, name=plan.name
            )
        )
        try:
            reply = await self._authorized(
                lambda: self._admin.GetActiveLaunchPlan, request, str(plan)
            )
        except LookupRefused as refusal:
            if str(refusal).startswith(grpc.StatusCode.NOT_FOUND.name):
                return None, f"launch plan {plan} has no active version in FlyteAdmin"
            return None, f"FlyteAdmin refused to read launch plan {plan}: {refusal}"
        return schedule_from_admin(reply.spec.entity_metadata, str(plan))

    async def _authorized(
        self,
        method: Callable[[], Callable[..., Awaitable[Any]]],
        request: Any,
        what: ExecutionId | str,
    ) -> Any:
        """A look-up: :meth:`_rpc`, its failure a :class:`LookupRefused` (FlyteAdmin's final
        word) or :class:`UpstreamUnavailable` (worth asking again)."""
        try:
            return await self._rpc(method, request)
        except grpc.aio.AioRpcError as error:
            raise self._classify(error, what) from None

    async def _rpc(self, method: Callable[[], Callable[..., Awaitable[Any]]], request: Any) -> Any:
        """One call with our credentials; refused as unauthenticated, once more with new ones
        (then UNAUTHENTICATED is FlyteAdmin's final word). Raises ``grpc.aio.AioRpcError``."""
        metadata = await self.credentials.headers(self)
        try:
            return await method()(request, metadata=metadata, timeout=self.config.timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            if not await self.credentials.refresh(self, metadata):
                raise
        metadata = await self.credentials.headers(self)
        return await method()(request, metadata=metadata, timeout=self.config.timeout)

    # -- acting on executions ----------------------------------------------------------

    async def signals(self, execution_id: ExecutionId) -> list[Signal]:
        """The execution's gate signals (``ListSignals``), pending and answered."""
        found: list[Signal] = []
        token = ""
        for _ in range(SIGNAL_PAGES):
            request = signal_pb2.SignalListRequest(
                workflow_execution_id=_execution_id(execution_id), limit=SIGNAL_PAGE, token=token
            )
            page = await self._act(lambda: self._signals.ListSignals, request, "ListSignals")
            found += [_signal(message) for message in page.signals]
            token = page.token
            if not token:
                break
        return found

    async def set_signal(
        self, execution_id: ExecutionId, signal_id: str, kind: ValueKind, value: GateValue
    ) -> None:
        """Answer a gate (``SetSignal``) as flytekit's ``FlyteRemote.approve`` and
        ``set_signal`` do."""
        request = signal_pb2.SignalSetRequest(
            id=identifier_pb2.SignalIdentifier(
                signal_id=signal_id, execution_id=_execution_id(execution_id)
            ),
            value=signal_literal(kind, value),
        )
        await self._act(lambda: self._signals.SetSignal, request, "SetSignal")

    async def relaunch(self, execution_id: ExecutionId, name: str) -> ExecutionId:
        """``RelaunchExecution`` as ``name``; the new execution's id."""
        request = execution_pb2.ExecutionRelaunchRequest(id=_execution_id(execution_id), name=name)
        made = await self._act(lambda: self._admin.RelaunchExecution, request, "RelaunchExecution")
        return ExecutionId(made.id.project, made.id.domain, made.id.name)

    async def recover(self, execution_id: ExecutionId, name: str) -> ExecutionId:
        """``RecoverExecution`` as ``name``: again from where it failed; the new execution's id."""
        request = execution_pb2.ExecutionRecoverRequest(id=_execution_id(execution_id), name=name)
        made = await self._act(lambda: self._admin.RecoverExecution, request, "RecoverExecution")
        return ExecutionId(made.id.project, made.id.domain, made.id.name)

    async def terminate(self, execution_id: ExecutionId, cause: str) -> None:
        """``TerminateExecution`` (abort) with ``cause``."""
        request = execution_pb2.ExecutionTerminateRequest(
            id=_execution_id(execution_id), cause=cause
        )
        await self._act(lambda: self._admin.TerminateExecution, request, "TerminateExecution")

    async def _act(
        self, method: Callable[[], Callable[..., Awaitable[Any]]], request: Any, what: str
    ) -> Any:
        try:
            return await self._rpc(method, request)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            details = error.details() or "no details"
            if code in _FINAL_CODES or code in _ACTION_REFUSALS:
                raise UpstreamRefused(code.name, details) from None
            raise UpstreamUnavailable(
                f"FlyteAdmin at {self.config.endpoint}: {what} failed: {code.name}: {details}",
                RETRY_AFTER,
            ) from None

    def _classify(self, error: grpc.aio.AioRpcError, what: ExecutionId | str) -> Exception:
        code = error.code()
        if code in _FINAL_CODES:
            return LookupRefused(f"{code.name}: {error.details() or 'no details'}")
        return UpstreamUnavailable(
            f"FlyteAdmin at {self.config.endpoint} could not look up {what}:"
            f" {code.name}: {error.details() or 'no details'}",
            RETRY_AFTER,
        )

    # -- auth discovery and the token endpoint ---------------------------------------

    async def discovery(self, *, required: bool) -> AuthDiscovery:
        """What AuthMetadataService advertises, asked once.

        ``required=False`` (a static token) settles for the default metadata key
        when FlyteAdmin has no AuthMetadataService; client credentials need its
        token endpoint.
        """
        async with self._discovery_lock:
            if self._discovery is None:
                self._discovery = await self._discover(required)
            return self._discovery

    async def _discover(self, required: bool) -> AuthDiscovery:
        timeout = self.config.timeout
        try:
            client = await self._auth.GetPublicClientConfig(
                auth_pb2.PublicClientAuthConfigRequest(), timeout=timeout
            )
            oauth = (
                await self._auth.GetOAuth2Metadata(
                    auth_pb2.OAuth2MetadataRequest(), timeout=timeout
                )
                if required
                else None
            )
        except grpc.aio.AioRpcError as error:
            if not required and error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return NO_DISCOVERY
            raise UpstreamUnavailable(
                f"FlyteAdmin at {self.config.endpoint}: auth discovery (AuthMetadataService)"
                f" failed: {error.code().name}: {error.details() or 'no details'}",
                RETRY_AFTER,
            ) from None
        token_endpoint = oauth.token_endpoint if oauth is not None else ""
        if required and not token_endpoint:
            raise UpstreamUnavailable(
                f"FlyteAdmin at {self.config.endpoint} advertises no OAuth2 token endpoint",
                RETRY_AFTER,
            )
        return AuthDiscovery(
            token_endpoint=token_endpoint,
            scopes=tuple(client.scopes),
            audience=client.audience,
            header=client.authorization_metadata_key or DEFAULT_HEADER,
        )

    # -- check-config --connect -------------------------------------------------------

    async def check(self) -> str:
        """Reach FlyteAdmin (and get a token) now; what was found, or raise saying why."""
        try:
            return await self._check()
        except UpstreamUnavailable:
            # gRPC reports a TLS client at a plaintext port as a handshake failure
            # and a plaintext client at a TLS port as "Socket closed": ask directly.
            mismatch = await self._transport_mismatch()
            if mismatch is None:
                raise
            raise RuntimeError(mismatch) from None

    async def _check(self) -> str:
        found = [f"FlyteAdmin at {self.description}"]
        if isinstance(self.credentials, ClientCredentials):
            discovery = await self.discovery(required=True)
            await self.credentials.headers(self)
            found.append(
                f"got a token from {discovery.token_endpoint}"
                f" (sent in metadata key {discovery.header!r})"
            )
        probe = ExecutionId("flytenotify", "check", "no-such-execution")
        try:
            await self._get(probe)
        except LookupRefused as refusal:
            # NOT_FOUND means we were let in and asked; anything else is a problem.
            if not str(refusal).startswith(grpc.StatusCode.NOT_FOUND.name):
                raise RuntimeError(f"GetExecution refused: {refusal}") from None
        found.append("GetExecution answers")
        return "; ".join(found)

    async def _transport_mismatch(self) -> str | None:
        """What to change when FlyteAdmin speaks TLS and we do not, or the other way round."""
        tls = await speaks_tls(self.config.endpoint, self.config.timeout)
        if tls is None or tls != self.config.insecure:
            return None  # unreachable, cannot tell, or not a mismatch
        if tls:
            return (
                f"{self.config.endpoint} speaks TLS, not plaintext: set insecure = false in"
                " [flyteadmin] (and ca_cert_file if its certificate is from a private CA)"
            )
        return (
            f"{self.config.endpoint} answers in plaintext, not TLS: set insecure = true in"
            " [flyteadmin] (as for flyte-core's flyteadmin:81 or flyte-binary's :8089 inside"
            " the cluster)"
        )


async def speaks_tls(endpoint: str, within: float) -> bool | None:
    """Whether the server at ``endpoint`` (host:port) answers a TLS handshake within ``within`` s.

    None when that cannot be told: not host:port (a gRPC target such as
    ``dns:///...``), unreachable, or closed without a word. The certificate is
    not checked here: only whether TLS is spoken at all.
    """
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")  # an IPv6 address
    if not host or not port.isdigit():
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])  # as gRPC asks
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(
                host, int(port), ssl=context, server_hostname=host
            )
    except ssl.SSLEOFError:
        return None  # closed mid-handshake: either kind of server may do that
    except ssl.SSLError as error:
        # An alert is TLS refusing us (a client certificate wanted, say); any
        # other failure is an answer that was not TLS (WRONG_VERSION_NUMBER).
        return "ALERT" in (error.reason or "")
    except (OSError, TimeoutError):
        return None
    writer.close()
    return True


def execution_from_admin(execution_id: ExecutionId, reply: Any) -> Execution:
    """Our :class:`Execution` from FlyteAdmin's ``flyteidl.admin.Execution``.

    A notification we cannot read is left out and named in ``lookup_error``;
    the others still fire.
    """
    notifications = []
    problems: list[str] = []
    for i, item in enumerate(reply.closure.notifications):
        try:
            notifications.append(to_notification(item, f"closure.notifications[{i}]"))
        except NotificationConfigError as error:
            problems.append(str(error))
    closure = reply.closure
    created = closure.created_at if closure.HasField("created_at") else None
    return Execution(
        id=execution_id,
        launch_plan=_entity(reply.spec.launch_plan) if reply.spec.HasField("launch_plan") else None,
        workflow=_entity(closure.workflow_id) if closure.HasField("workflow_id") else None,
        notifications=tuple(notifications),
        created_at=created.ToDatetime(tzinfo=UTC) if created is not None else datetime.now(UTC),
        source=NotificationSource.FLYTEADMIN,
        lookup_error="; ".join(problems),
    )


def _execution_id(execution_id: ExecutionId) -> Any:
    return identifier_pb2.WorkflowExecutionIdentifier(
        project=execution_id.project, domain=execution_id.domain, name=execution_id.name
    )


_RATE_UNITS = {
    schedule_pb2.MINUTE: 60.0,
    schedule_pb2.HOUR: 3600.0,
    schedule_pb2.DAY: 86400.0,
}


def schedule_from_admin(metadata: Any, plan: str) -> tuple[Schedule | None, str]:
    """A ``LaunchPlanMetadata``'s schedule as flytenotify keeps it, or None and why."""
    if not metadata.HasField("schedule"):
        return None, f"launch plan {plan} has no schedule in FlyteAdmin"
    schedule = metadata.schedule
    which = schedule.WhichOneof("ScheduleExpression")
    if which == "rate" and schedule.rate.value > 0:
        return Schedule(every=schedule.rate.value * _RATE_UNITS[schedule.rate.unit]), ""
    if which == "cron_schedule":
        expression = schedule.cron_schedule.schedule
    elif which == "cron_expression":
        expression = aws_cron(schedule.cron_expression)
    else:
        return None, f"launch plan {plan} has an empty schedule in FlyteAdmin"
    if not croniter.is_valid(expression):
        return None, f"launch plan {plan}'s schedule {expression!r} is no cron expression"
    return Schedule(cron=expression), ""


def _entity(identifier: Any) -> EntityId:
    return EntityId(identifier.project, identifier.domain, identifier.name, identifier.version)


def _ca_bytes(config: FlyteAdminConfig) -> bytes | None:
    return config.ca_cert_file.read_bytes() if config.ca_cert_file is not None else None
