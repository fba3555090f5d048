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
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import grpc
from flyteidl.admin import execution_pb2
from flyteidl.core import identifier_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc

from flytenotify.config import FlyteAdminConfig
from flytenotify.domain import EntityId, Execution, ExecutionId, NotificationSource
from flytenotify.errors import NotificationConfigError, UpstreamUnavailable
from flytenotify.wire import to_notification

log = logging.getLogger(__name__)

DEFAULT_METADATA_KEY = "authorization"  # FlyteAdmin's default grpcAuthorizationHeader
RETRY_AFTER = 5.0  # seconds a caller is told to wait when FlyteAdmin cannot answer
DEFAULT_TOKEN_LIFETIME = 300.0  # seconds, for a token answer without a usable expires_in
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


Metadata = tuple[tuple[str, str], ...]  # gRPC call metadata: (key, value) pairs


class LookupRefused(Exception):
    """FlyteAdmin's final answer about one execution (``NOT_FOUND: ...``)."""


@dataclass(frozen=True)
class AuthDiscovery:
    """What FlyteAdmin's AuthMetadataService advertises."""

    token_endpoint: str
    scopes: tuple[str, ...]
    audience: str
    metadata_key: str


class _Credentials(Protocol):
    description: str

    async def metadata(self, admin: FlyteAdmin) -> Metadata:
        """The call metadata that authenticates one call (empty: none)."""
        ...

    async def refresh(self, admin: FlyteAdmin, refused: Metadata) -> bool:
        """New credentials after ``refused`` got UNAUTHENTICATED; False if none can be had."""
        ...


class _NoCredentials:
    description = "no credentials"

    async def metadata(self, admin: FlyteAdmin) -> Metadata:
        return ()

    async def refresh(self, admin: FlyteAdmin, refused: Metadata) -> bool:
        return False


class _TokenFile:
    """A bearer token read from a file, read again whenever the file changes.

    Kubernetes rotates projected tokens by swapping a symlink, so the file's
    identity (inode, size, modification time) changes and the next call reads it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"bearer token from {path}"
        self._seen: tuple[int, int, int, int] | None = None
        self._token = ""

    def _read(self) -> str:
        try:
            info = os.stat(self.path)
            identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            if identity != self._seen:
                self._token = self.path.read_text(encoding="utf-8").strip()
                self._seen = identity
        except OSError as error:
            # Perhaps mid-rotation: keep the event for later rather than send no token.
            raise UpstreamUnavailable(
                f"flyteadmin.token_file: cannot read {self.path}: {error}", RETRY_AFTER
            ) from None
        if not self._token:
            raise UpstreamUnavailable(f"flyteadmin.token_file: {self.path} is empty", RETRY_AFTER)
        return self._token

    async def metadata(self, admin: FlyteAdmin) -> Metadata:
        key = (await admin.discovery(required=False)).metadata_key
        return ((key, f"Bearer {self._read()}"),)

    async def refresh(self, admin: FlyteAdmin, refused: Metadata) -> bool:
        before = self._token
        self._seen = None
        return self._read() != before


class _ClientCredentials:
    """OAuth2 client credentials: a token cached until shortly before it expires."""

    def __init__(self, client_id: str, secret: str, scopes: list[str]) -> None:
        self.client_id = client_id
        self._secret = secret
        self._scopes = scopes
        self.description = f"OAuth2 client credentials as {client_id}"
        self._token = ""
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self, admin: FlyteAdmin) -> Metadata:
        discovery = await admin.discovery(required=True)
        async with self._lock:  # one token request at a time, not one per event
            if not self._token or time.monotonic() >= self._refresh_at:
                await self._fetch(admin, discovery)
        return ((discovery.metadata_key, f"Bearer {self._token}"),)

    async def refresh(self, admin: FlyteAdmin, refused: Metadata) -> bool:
        async with self._lock:
            # Calls in flight together are refused together: the first one to
            # get here fetches a new token, the others use it.
            if any(value == f"Bearer {self._token}" for _, value in refused):
                self._token = ""
        return True

    async def _fetch(self, admin: FlyteAdmin, discovery: AuthDiscovery) -> None:
        form = {"grant_type": "client_credentials"}
        scopes = self._scopes or list(discovery.scopes)
        if scopes:
            form["scope"] = " ".join(scopes)
        if discovery.audience:
            form["audience"] = discovery.audience
        headers = {
            "Authorization": basic_authorization(self.client_id, self._secret),
            "Accept": "application/json",
            "Cache-Control": "no-cache",
        }
        answer = await admin.post_form(discovery.token_endpoint, form, headers)
        token, lifetime = _token_from(answer, discovery.token_endpoint)
        self._token = token
        # Renew before it expires: a tenth of its life early, at most a minute.
        self._refresh_at = time.monotonic() + lifetime - min(60.0, lifetime / 10)
        log.info(
            "FlyteAdmin: got an access token for %s from %s (expires in %.0f s)",
            self.client_id,
            discovery.token_endpoint,
            lifetime,
        )


def basic_authorization(client_id: str, secret: str) -> str:
    """HTTP Basic for a token request: both parts form-encoded first (RFC 6749, 2.3.1)."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _token_from(answer: Any, endpoint: str) -> tuple[str, float]:
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
        raise UpstreamUnavailable(
            f"token endpoint {endpoint} answered without an access_token", RETRY_AFTER
        )
    # Some identity providers send expires_in as a string. Without it, assume a
    # short life rather than keep a dead token.
    try:
        seconds = float(answer.get("expires_in", DEFAULT_TOKEN_LIFETIME))
    except (TypeError, ValueError):
        seconds = DEFAULT_TOKEN_LIFETIME
    return answer["access_token"], seconds if seconds > 0 else DEFAULT_TOKEN_LIFETIME


def credentials_for(config: FlyteAdminConfig) -> _Credentials:
    if config.client_id is not None:
        secret = config.resolved_client_secret()
        if not secret:
            raise ValueError(
                "flyteadmin.client_secret: required with client_id (or client_secret_file)"
            )
        return _ClientCredentials(config.client_id, secret, list(config.scopes))
    if config.token_file is not None:
        return _TokenFile(config.token_file)
    return _NoCredentials()


class FlyteAdmin:
    """A FlyteAdmin gRPC client for looking executions up (``grpc.aio``)."""

    def __init__(self, config: FlyteAdminConfig) -> None:
        self.config = config
        self.credentials = credentials_for(config)
        self._ssl = _ssl_context(config)
        # Made on first use: a grpc.aio channel belongs to the event loop it was made on.
        self._channel: grpc.aio.Channel | None = None
        self._discovery: AuthDiscovery | None = None
        self._discovery_lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None

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

    @property
    def _admin(self) -> Any:
        return admin_pb2_grpc.AdminServiceStub(self._open_channel())

    @property
    def _auth(self) -> Any:
        return auth_pb2_grpc.AuthMetadataServiceStub(self._open_channel())

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self._http is not None:
            await self._http.close()

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
        request = execution_pb2.WorkflowExecutionGetRequest(
            id=identifier_pb2.WorkflowExecutionIdentifier(
                project=execution_id.project, domain=execution_id.domain, name=execution_id.name
            )
        )
        metadata = await self.credentials.metadata(self)
        try:
            return await self._call_admin(request, metadata)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise self._classify(error, execution_id) from None
            if not await self.credentials.refresh(self, metadata):
                raise self._classify(error, execution_id) from None
        # Once more with new credentials; UNAUTHENTICATED now is FlyteAdmin's final word.
        try:
            return await self._call_admin(request, await self.credentials.metadata(self))
        except grpc.aio.AioRpcError as error:
            raise self._classify(error, execution_id) from None

    async def _call_admin(self, request: Any, metadata: Metadata) -> Any:
        return await self._admin.GetExecution(
            request, metadata=metadata, timeout=self.config.timeout
        )

    def _classify(self, error: grpc.aio.AioRpcError, execution_id: ExecutionId) -> Exception:
        code = error.code()
        if code in _FINAL_CODES:
            return LookupRefused(f"{code.name}: {error.details() or 'no details'}")
        return UpstreamUnavailable(
            f"FlyteAdmin at {self.config.endpoint} could not look up {execution_id}:"
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
                return AuthDiscovery("", (), "", DEFAULT_METADATA_KEY)
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
            metadata_key=client.authorization_metadata_key or DEFAULT_METADATA_KEY,
        )

    async def post_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> Any:
        """POST a form to the token endpoint; its JSON answer, or UpstreamUnavailable."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout)
            )
        try:
            async with self._http.post(url, data=form, headers=headers, ssl=self._ssl) as reply:
                text = await reply.text()
                if reply.status != 200:
                    # A refused client is a configuration mistake: keep the events
                    # (the broker redelivers) until the secret is fixed.
                    raise UpstreamUnavailable(
                        f"token endpoint {url} answered HTTP {reply.status}: {text[:200]}",
                        RETRY_AFTER,
                    )
                try:
                    return await reply.json(content_type=None)
                except ValueError:
                    raise UpstreamUnavailable(
                        f"token endpoint {url} answered with no JSON: {text[:200]}", RETRY_AFTER
                    ) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UpstreamUnavailable(
                f"token endpoint {url} unreachable: {error or type(error).__name__}", RETRY_AFTER
            ) from None

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
        if isinstance(self.credentials, _ClientCredentials):
            discovery = await self.discovery(required=True)
            await self.credentials.metadata(self)
            found.append(
                f"got a token from {discovery.token_endpoint}"
                f" (sent in metadata key {discovery.metadata_key!r})"
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


def _entity(identifier: Any) -> EntityId:
    return EntityId(identifier.project, identifier.domain, identifier.name, identifier.version)


def _ca_bytes(config: FlyteAdminConfig) -> bytes | None:
    return config.ca_cert_file.read_bytes() if config.ca_cert_file is not None else None


def _ssl_context(config: FlyteAdminConfig) -> ssl.SSLContext:
    """For the token endpoint: the system's trust, plus ``ca_cert_file`` when set."""
    context = ssl.create_default_context()
    if config.ca_cert_file is not None:
        context.load_verify_locations(cafile=str(config.ca_cert_file))
    return context
