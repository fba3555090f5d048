"""Flyte 2's control plane: its ``RunService`` over Connect, as the flyte SDK calls it.

One :class:`ControlPlane` per ``[flyte2]`` section: a connectrpc client on a
pyqwest transport (TLS with the system's trust plus ``ca_cert_file``, or
plaintext with ``insecure``), and the credentials of :mod:`flytenotify.flyte_auth`
sent as ``Bearer`` tokens in the header the server's ``AuthMetadataService``
names. A call refused as unauthenticated is tried once more with fresh
credentials, as the SDK does.

Every failure a caller can wait out (unreachable, a timeout, ``UNAVAILABLE``,
a refusal of our credentials until they are fixed) raises
:class:`~flytenotify.errors.UpstreamUnavailable` with one line saying what
happened; the watch reconnects and tries again.

The calls that act for people (:mod:`flytenotify.actions`: ``SignalEvent``,
``AbortRun``, ``CreateRun``) raise :class:`~flytenotify.errors.UpstreamRefused`
with the server's words when it refuses for good (``INVALID_ARGUMENT``,
``FAILED_PRECONDITION``, ``ALREADY_EXISTS``, ``PERMISSION_DENIED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pyqwest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.auth import auth_service_connect, auth_service_pb2
from flyteidl2.common import identifier_pb2, list_pb2, phase_pb2
from flyteidl2.workflow import run_definition_pb2, run_service_connect, run_service_pb2

from flytenotify.domain import ValueKind
from flytenotify.errors import UpstreamRefused, UpstreamUnavailable
from flytenotify.flyte_auth import (
    DEFAULT_HEADER,
    NO_DISCOVERY,
    RETRY_AFTER,
    AuthDiscovery,
    ClientCredentials,
    TokenEndpoint,
    credentials_for,
)
from flytenotify.intake.flyte2_spec import Flyte2Config

_T = TypeVar("_T")

# Our own credentials refused, or a call refused as malformed: tried again
# after the operator fixes the configuration, but say it plainly.
_REFUSALS = frozenset({Code.UNAUTHENTICATED, Code.PERMISSION_DENIED})

# ListActions' filter for actions waiting for input: the server compares the
# phase column with the number, as text.
_PAUSED_PHASE = list_pb2.Filter(
    function=list_pb2.Filter.EQUAL, field="phase", values=[str(phase_pb2.ACTION_PHASE_PAUSED)]
)


# What a call acting for a person may be refused with for good: said, not retried.
_FINAL = frozenset(
    {Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.ALREADY_EXISTS, Code.PERMISSION_DENIED}
)
# The payload field of each kind of value a condition takes (the SDK's _encode_payload).
_PAYLOAD_FIELDS = {
    ValueKind.BOOL: "bool_value",
    ValueKind.INT: "int_value",
    ValueKind.FLOAT: "float_value",
    ValueKind.STR: "string_value",
}


class RunNotFound(Exception):
    """The control plane has no such run (or action): nothing to notify about it."""


def signal_payload(kind: ValueKind, value: bool | int | float | str) -> Any:
    """The ``EventPayload`` the flyte SDK's ``Condition.signal`` sends for ``value``."""
    return run_service_pb2.EventPayload(**{_PAYLOAD_FIELDS[kind]: value})


class ControlPlane:
    """The calls flytenotify makes to Flyte 2 (runs, actions, auth discovery)."""

    def __init__(self, config: Flyte2Config) -> None:
        self.config = config
        self.url = config.base_url
        self._tokens = TokenEndpoint(config)
        self.credentials = credentials_for(config, "flyte2", self._tokens)
        ca = config.ca_cert_file.read_bytes() if config.ca_cert_file is not None else None
        transport = pyqwest.HTTPTransport(
            tls_ca_cert=ca,
            tls_include_system_certs=True,
            connect_timeout=config.timeout,
            # The stream has no keep-alive messages: TCP's notices a dead peer.
            tcp_keepalive_interval=30.0,
            use_system_dns=True,
            follow_redirects=False,
        )
        http = pyqwest.Client(transport)
        self.runs = run_service_connect.RunServiceClient(self.url, http_client=http)
        self._auth = auth_service_connect.AuthMetadataServiceClient(self.url, http_client=http)
        self._discovery: AuthDiscovery | None = None
        self._discovery_lock = asyncio.Lock()

    @property
    def description(self) -> str:
        """Where the control plane is and how we talk to it, for logs (no secrets)."""
        if self.url.startswith("http://"):
            transport = "plaintext"
        elif self.config.ca_cert_file is not None:
            transport = f"TLS trusting {self.config.ca_cert_file}"
        else:
            transport = "TLS, system trust"
        return f"{self.url} ({transport}, {self.credentials.description})"

    async def close(self) -> None:
        await self.runs.close()
        await self._auth.close()
        await self._tokens.close()

    # -- the calls ---------------------------------------------------------------------

    async def list_runs(
        self,
        project: str,
        domain: str,
        *,
        token: str = "",
        limit: int = 200,
        ended_since: str = "",
        paused_only: bool = False,
    ) -> run_service_pb2.ListRunsResponse:
        """One page of a project's runs; ``ended_since`` (ISO 8601) keeps those that
        ended since then, oldest end first; ``paused_only`` those with a paused action."""
        request = list_pb2.ListRequest(limit=limit, token=token)
        if ended_since:
            request.filters.append(
                list_pb2.Filter(
                    function=list_pb2.Filter.GREATER_THAN_OR_EQUAL,
                    field="ended_at",
                    values=[ended_since],
                )
            )
            request.sort_by_fields.append(
                list_pb2.Sort(key="ended_at", direction=list_pb2.Sort.ASCENDING)
            )
        message = run_service_pb2.ListRunsRequest(
            request=request,
            project_id=_project(project, domain),
            paused_actions_only=paused_only,
        )
        return await self._unary(self.runs.list_runs, message, f"ListRuns of {project}/{domain}")

    async def run_details(
        self, project: str, domain: str, name: str
    ) -> run_service_pb2.GetRunDetailsResponse:
        run_id = identifier_pb2.RunIdentifier(project=project, domain=domain, name=name)
        request = run_service_pb2.GetRunDetailsRequest(run_id=run_id)
        what = f"GetRunDetails of {project}/{domain}/{name}"
        return await self._unary(self.runs.get_run_details, request, what)

    async def paused_actions(
        self, run_id: identifier_pb2.RunIdentifier
    ) -> run_service_pb2.ListActionsResponse:
        """The run's actions in PAUSED (one page: a run has few)."""
        request = run_service_pb2.ListActionsRequest(
            run_id=run_id,
            request=list_pb2.ListRequest(
                limit=200,
                filters=[
                    list_pb2.Filter(function=list_pb2.Filter.EQUAL, field="phase", values=["9"])
                ],
            ),
        )
        what = f"ListActions of {run_id.project}/{run_id.domain}/{run_id.name}"
        return await self._unary(self.runs.list_actions, request, what)

    async def action_details(
        self, action_id: identifier_pb2.ActionIdentifier
    ) -> run_service_pb2.GetActionDetailsResponse:
        request = run_service_pb2.GetActionDetailsRequest(action_id=action_id)
        run = action_id.run
        what = f"GetActionDetails of {run.project}/{run.domain}/{run.name} {action_id.name}"
        return await self._unary(self.runs.get_action_details, request, what)

    async def conditions(
        self, run_id: identifier_pb2.RunIdentifier
    ) -> run_service_pb2.ListActionsResponse:
        """The run's condition actions, whatever their phase (one page: a run has few)."""
        request = run_service_pb2.ListActionsRequest(
            run_id=run_id,
            request=list_pb2.ListRequest(
                limit=200,
                filters=[
                    list_pb2.Filter(
                        function=list_pb2.Filter.EQUAL,
                        field="action_type",
                        values=[str(run_definition_pb2.ACTION_TYPE_CONDITION)],
                    )
                ],
            ),
        )
        what = f"ListActions of {run_id.project}/{run_id.domain}/{run_id.name}"
        return await self._unary(self.runs.list_actions, request, what)

    # -- acting for people ---------------------------------------------------------------

    async def signal(
        self,
        action_id: identifier_pb2.ActionIdentifier,
        parent: str,
        kind: ValueKind,
        value: bool | int | float | str,
    ) -> None:
        """Answer a condition (``SignalEvent``), as the SDK's ``Condition.signal`` does."""
        request = run_service_pb2.SignalEventRequest(
            action_id=action_id, parent_action_name=parent, payload=signal_payload(kind, value)
        )
        run = action_id.run
        what = f"SignalEvent of {run.project}/{run.domain}/{run.name} {action_id.name}"
        await self._unary(self.runs.signal_event, request, what, final=_FINAL)

    async def abort_run(self, run_id: identifier_pb2.RunIdentifier, reason: str) -> None:
        request = run_service_pb2.AbortRunRequest(run_id=run_id, reason=reason)
        what = f"AbortRun of {run_id.project}/{run_id.domain}/{run_id.name}"
        await self._unary(self.runs.abort_run, request, what, final=_FINAL)

    async def inputs_uri(self, action_id: identifier_pb2.ActionIdentifier) -> str:
        """Where the action's inputs are kept (``GetActionDataURIs``)."""
        request = run_service_pb2.GetActionDataURIsRequest(action_id=action_id)
        run = action_id.run
        what = f"GetActionDataURIs of {run.project}/{run.domain}/{run.name} {action_id.name}"
        answer = await self._unary(self.runs.get_action_data_u_r_is, request, what, final=_FINAL)
        return str(answer.inputs_uri)

    async def create_run(
        self, request: run_service_pb2.CreateRunRequest
    ) -> run_service_pb2.CreateRunResponse:
        run = request.run_id
        what = f"CreateRun of {run.project}/{run.domain}/{run.name}"
        return await self._unary(self.runs.create_run, request, what, final=_FINAL)

    async def watch_runs(
        self, project: str, domain: str
    ) -> AsyncIterator[run_service_pb2.WatchRunsResponse]:
        """The project's run updates as they come (a snapshot first, if it has runs).

        The server sends nothing, not even headers, before its first message:
        this yields nothing until then, which says nothing about the connection.
        """
        request = run_service_pb2.WatchRunsRequest(project_id=_project(project, domain))
        headers = await self.credentials.headers(self)
        try:
            async for message in self.runs.watch_runs(request, headers=dict(headers)):
                yield message
        except ConnectError as error:
            raise self._unavailable(error, f"WatchRuns of {project}/{domain}") from None

    async def check(self, project: str, domain: str) -> str:
        """Reach the control plane (and get a token) now; what was found, or raise why."""
        found = [f"Flyte 2 at {self.description}"]
        if isinstance(self.credentials, ClientCredentials):
            discovery = await self.discovery(required=True)
            await self.credentials.headers(self)
            found.append(f"got a token from {discovery.token_endpoint}")
        page = await self.list_runs(project, domain, limit=1)
        found.append(
            f"ListRuns of {project}/{domain} answers ({len(page.runs)} run(s) on a page of 1)"
        )
        return "; ".join(found)

    # -- auth --------------------------------------------------------------------------

    async def discovery(self, *, required: bool) -> AuthDiscovery:
        """What the control plane's AuthMetadataService advertises, asked once."""
        async with self._discovery_lock:
            if self._discovery is None:
                self._discovery = await self._discover(required)
            return self._discovery

    async def _discover(self, required: bool) -> AuthDiscovery:
        timeout_ms = int(self.config.timeout * 1000)
        try:
            client = await self._auth.get_public_client_config(
                auth_service_pb2.GetPublicClientConfigRequest(), timeout_ms=timeout_ms
            )
            oauth = (
                await self._auth.get_o_auth2_metadata(
                    auth_service_pb2.GetOAuth2MetadataRequest(), timeout_ms=timeout_ms
                )
                if required
                else None
            )
        except ConnectError as error:
            if not required and error.code in (Code.UNIMPLEMENTED, Code.NOT_FOUND):
                return NO_DISCOVERY
            raise UpstreamUnavailable(
                f"Flyte 2 at {self.url}: auth discovery (AuthMetadataService) failed:"
                f" {error.code.name}: {error.message or 'no details'}",
                RETRY_AFTER,
            ) from None
        token_endpoint = oauth.token_endpoint if oauth is not None else ""
        if required and not token_endpoint:
            raise UpstreamUnavailable(
                f"Flyte 2 at {self.url} advertises no OAuth2 token endpoint", RETRY_AFTER
            )
        return AuthDiscovery(
            token_endpoint=token_endpoint,
            scopes=tuple(client.scopes),
            audience=client.audience,
            header=client.authorization_metadata_key or DEFAULT_HEADER,
        )

    async def _unary(
        self,
        call: Callable[..., Awaitable[_T]],
        request: Any,
        what: str,
        *,
        final: frozenset[Code] = frozenset(),
    ) -> _T:
        """One call; ``final`` are the codes that refuse it for good (UpstreamRefused)."""
        timeout_ms = int(self.config.timeout * 1000)
        headers = await self.credentials.headers(self)
        try:
            return await call(request, headers=dict(headers), timeout_ms=timeout_ms)
        except ConnectError as error:
            if error.code != Code.UNAUTHENTICATED or not await self.credentials.refresh(
                self, headers
            ):
                raise self._failure(error, what, final) from None
        # Once more with new credentials, as the SDK does.
        try:
            headers = await self.credentials.headers(self)
            return await call(request, headers=dict(headers), timeout_ms=timeout_ms)
        except ConnectError as error:
            raise self._failure(error, what, final) from None

    def _failure(self, error: ConnectError, what: str, final: frozenset[Code]) -> Exception:
        if error.code == Code.NOT_FOUND:
            return RunNotFound(f"{what}: {error.message or 'not found'}")
        if error.code in final:
            return UpstreamRefused(error.code.name, error.message or "no details")
        return self._unavailable(error, what)

    def _unavailable(self, error: ConnectError, what: str) -> UpstreamUnavailable:
        task = asyncio.current_task()
        if error.code == Code.CANCELED and task is not None and task.cancelling():
            # connectrpc reports our own cancellation as CANCELED: it is one.
            raise asyncio.CancelledError
        hint = ""
        if error.code in _REFUSALS:
            hint = " (check [flyte2]'s credentials: api_key, client_id or token_file)"
        elif error.code == Code.UNAVAILABLE and self.url.startswith("https://"):
            hint = (
                " (if the endpoint is plaintext, set insecure = true or write it http://...)"
                if "tls" in error.message.lower() or "ssl" in error.message.lower()
                else ""
            )
        return UpstreamUnavailable(
            f"Flyte 2 at {self.url}: {what} failed: {error.code.name}:"
            f" {error.message or 'no details'}{hint}",
            RETRY_AFTER,
        )


def _project(project: str, domain: str) -> identifier_pb2.ProjectIdentifier:
    return identifier_pb2.ProjectIdentifier(name=project, domain=domain)
