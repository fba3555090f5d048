"""The console's sessions and CSRF tokens.

A session is a signed cookie, ``expiry.nonce.signature``, so every API replica
behind one load balancer accepts the sessions of the others and nothing is
stored. The signing key is derived from the configured API tokens: removing
or changing a token ends every session. Without tokens the console is open
(as the JSON API is), the key is random per process, and the cookie exists
only to carry the CSRF token of the forms.

The CSRF token of a session is an HMAC of its nonce: a form posts it in a
hidden field, and a POST without the right one is refused with 403. The
cookie is ``SameSite=Strict`` as well, so another site cannot even make the
browser send it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "flytenotify_console"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    nonce: str
    csrf_token: str
    # Logged in with a token; a session without one only carries the login form's CSRF token.
    authenticated: bool


class Sessions:
    """Issues and checks session cookies; ``required`` when API tokens are set."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [_digest(t) for t in tokens]
        self.required = bool(tokens)
        if tokens:
            material = b"".join(sorted(self._digests))
            self._key = hmac.new(material, b"flytenotify console session", "sha256").digest()
        else:
            self._key = secrets.token_bytes(32)

    def token_accepted(self, given: str) -> bool:
        """Whether ``given`` is one of the API tokens (every one compared: no early exit)."""
        digest = _digest(given.strip())
        return any([hmac.compare_digest(digest, d) for d in self._digests])

    def issue(self, authenticated: bool, now: float | None = None) -> tuple[str, Session]:
        """A new cookie value and the session it stands for (a new nonce every time,
        so a session planted before login is not the one that logs in)."""
        expiry = int((now if now is not None else time.time()) + SESSION_SECONDS)
        nonce = secrets.token_urlsafe(18)
        payload = f"{expiry}.{nonce}.{'a' if authenticated else 'n'}"
        return f"{payload}.{self._sign(payload)}", self._session(nonce, authenticated)

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie that is ours and not expired, else None."""
        if not cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        expiry, _, rest = payload.partition(".")
        nonce, _, mark = rest.partition(".")
        if not (expiry.isascii() and expiry.isdigit() and nonce and mark in ("a", "n")):
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        if int(expiry) < (now if now is not None else time.time()):
            return None
        return self._session(nonce, mark == "a" or not self.required)

    def csrf_accepted(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(session.csrf_token, given)

    def _session(self, nonce: str, authenticated: bool) -> Session:
        csrf = hmac.new(self._key, f"csrf:{nonce}".encode(), "sha256").hexdigest()
        return Session(nonce, csrf, authenticated)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), "sha256").hexdigest()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
