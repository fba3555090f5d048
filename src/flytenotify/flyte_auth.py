"""Credentials for Flyte's APIs, as Flyte's own clients use them.

FlyteAdmin (Flyte 1, gRPC) and Flyte 2's control plane (Connect) authenticate
alike: an OAuth2 access token sent as ``Bearer <token>`` in the header (gRPC
metadata key) the server advertises (``authorization`` unless it says
otherwise). The token comes from one of:

- OAuth2 client credentials against the token endpoint the server advertises
  (``AuthMetadataService.GetOAuth2Metadata``, with the scopes, audience and
  header name of ``GetPublicClientConfig``), cached until shortly before it
  expires; an ``api_key`` is the same credentials packed the way the flyte SDK
  packs them (base64 of ``endpoint:client_id:client_secret:org``);
- a static token read from ``token_file``, read again when the file changes
  (Kubernetes rotates projected tokens by swapping a symlink);
- nothing, for a cluster without auth.

Each server's client implements :class:`AuthServer` (how it asks its
AuthMetadataService); the credentials here do the rest.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from flytenotify.errors import UpstreamUnavailable
from flytenotify.sections import FlyteAuth

log = logging.getLogger(__name__)

DEFAULT_HEADER = "authorization"  # Flyte's default authorization metadata key
RETRY_AFTER = 5.0  # seconds a caller is told to wait when a server cannot answer
DEFAULT_TOKEN_LIFETIME = 300.0  # seconds, for a token answer without a usable expires_in

Headers = tuple[tuple[str, str], ...]  # (name, value) pairs: gRPC metadata or HTTP headers


@dataclass(frozen=True)
class AuthDiscovery:
    """What a server's AuthMetadataService advertises."""

    token_endpoint: str
    scopes: tuple[str, ...]
    audience: str
    header: str  # the metadata key / header that carries "Bearer <token>"


NO_DISCOVERY = AuthDiscovery("", (), "", DEFAULT_HEADER)


class AuthServer(Protocol):
    """A Flyte API whose AuthMetadataService says how to get a token."""

    async def discovery(self, *, required: bool) -> AuthDiscovery:
        """What it advertises; ``required=False`` settles for the default header
        when the server has no AuthMetadataService."""
        ...


class Credentials(Protocol):
    description: str

    async def headers(self, server: AuthServer) -> Headers:
        """The headers (metadata) that authenticate one call; empty: none."""
        ...

    async def refresh(self, server: AuthServer, refused: Headers) -> bool:
        """New credentials after ``refused`` was refused as unauthenticated; False if
        none can be had (the refusal is then final)."""
        ...


class NoCredentials:
    description = "no credentials"

    async def headers(self, server: AuthServer) -> Headers:
        return ()

    async def refresh(self, server: AuthServer, refused: Headers) -> bool:
        return False


class TokenFile:
    """A bearer token read from a file, read again whenever the file changes."""

    def __init__(self, path: Path, section: str) -> None:
        self.path = path
        self.section = section
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
            # Perhaps mid-rotation: keep the work for later rather than send no token.
            raise UpstreamUnavailable(
                f"{self.section}.token_file: cannot read {self.path}: {error}", RETRY_AFTER
            ) from None
        if not self._token:
            raise UpstreamUnavailable(
                f"{self.section}.token_file: {self.path} is empty", RETRY_AFTER
            )
        return self._token

    async def headers(self, server: AuthServer) -> Headers:
        header = (await server.discovery(required=False)).header
        return ((header, f"Bearer {self._read()}"),)

    async def refresh(self, server: AuthServer, refused: Headers) -> bool:
        before = self._token
        self._seen = None
        return self._read() != before


class ClientCredentials:
    """OAuth2 client credentials: a token cached until shortly before it expires."""

    def __init__(
        self, client_id: str, secret: str, scopes: list[str], endpoint: TokenEndpoint
    ) -> None:
        self.client_id = client_id
        self._secret = secret
        self._scopes = scopes
        self._endpoint = endpoint
        self.description = f"OAuth2 client credentials as {client_id}"
        self._token = ""
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def headers(self, server: AuthServer) -> Headers:
        discovery = await server.discovery(required=True)
        async with self._lock:  # one token request at a time, not one per call
            if not self._token or time.monotonic() >= self._refresh_at:
                await self._fetch(discovery)
        return ((discovery.header, f"Bearer {self._token}"),)

    async def refresh(self, server: AuthServer, refused: Headers) -> bool:
        async with self._lock:
            # Calls in flight together are refused together: the first one to
            # get here fetches a new token, the others use it.
            if any(value == f"Bearer {self._token}" for _, value in refused):
                self._token = ""
        return True

    async def _fetch(self, discovery: AuthDiscovery) -> None:
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
        answer = await self._endpoint.post_form(discovery.token_endpoint, form, headers)
        token, lifetime = _token_from(answer, discovery.token_endpoint)
        self._token = token
        # Renew before it expires: a tenth of its life early, at most a minute.
        self._refresh_at = time.monotonic() + lifetime - min(60.0, lifetime / 10)
        log.info(
            "got an access token for %s from %s (expires in %.0f s)",
            self.client_id,
            discovery.token_endpoint,
            lifetime,
        )


class TokenEndpoint:
    """POSTs token requests (aiohttp), trusting the system CAs plus ``ca_cert_file``."""

    def __init__(self, config: FlyteAuth) -> None:
        self._timeout = config.timeout
        self._ssl = ssl_context(config)
        self._http: aiohttp.ClientSession | None = None

    async def post_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> Any:
        """POST a form to the token endpoint; its JSON answer, or UpstreamUnavailable."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            async with self._http.post(url, data=form, headers=headers, ssl=self._ssl) as reply:
                text = await reply.text()
                if reply.status != 200:
                    # A refused client is a configuration mistake: keep the work
                    # (it is tried again) until the secret is fixed.
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

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


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


def decode_api_key(key: str, section: str) -> tuple[str, str]:
    """The client id and secret packed in a flyte SDK API key.

    The SDK packs ``endpoint:client_id:client_secret:org`` in base64 and splits
    it on its first three colons; so an endpoint with a port cannot be
    unpacked: the error says so.
    """
    try:
        text = base64.b64decode(key.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(f"{section}.api_key: not a flyte API key (base64 text)") from None
    parts = text.split(":", 3)
    if len(parts) != 4 or not parts[1] or not parts[2]:
        raise ValueError(
            f"{section}.api_key: a flyte API key packs endpoint:client_id:client_secret:org;"
            f" this one has {len(parts)} part(s)"
        )
    return parts[1], parts[2]


def credentials_for(config: FlyteAuth, section: str, endpoint: TokenEndpoint) -> Credentials:
    """The credentials ``config`` (the ``[section]`` of the file) gives."""
    api_key = config.resolved_api_key()
    if api_key:
        client_id, secret = decode_api_key(api_key, section)
        return ClientCredentials(client_id, secret, list(config.scopes), endpoint)
    if config.client_id is not None:
        given = config.resolved_client_secret()
        if not given:
            raise ValueError(f"{section}.client_secret: required with client_id")
        return ClientCredentials(config.client_id, given, list(config.scopes), endpoint)
    if config.token_file is not None:
        return TokenFile(config.token_file, section)
    return NoCredentials()


def ssl_context(config: FlyteAuth) -> ssl.SSLContext:
    """The system's trust, plus ``ca_cert_file`` when set."""
    context = ssl.create_default_context()
    if config.ca_cert_file is not None:
        context.load_verify_locations(cafile=str(config.ca_cert_file))
    return context
