"""The console's sessions and CSRF tokens.

Two cookies, so that one can never overwrite the other:

* :data:`COOKIE`, a logged-in session, exists only when API tokens are set.
  It is set by a successful login and by nothing else, so a request that
  arrives without it (a browser withholds a cookie on some cross-site
  requests) never replaces it with a logged-out one. Its value is signed,
  ``expiry.nonce.a.signature``, and the session is also a row in the ledger
  (:meth:`~flytenotify.store.base.Store.start_console_session`): logging out
  deletes the row, which ends the session for every replica sharing the
  ledger, whoever still holds a copy of the cookie.
* :data:`FORM_COOKIE` carries the CSRF token of a visitor who has no session:
  the login form's, or every form's when no tokens are set and the console is
  open (as the JSON API is).

The signing key is derived from the configured API tokens: removing or
changing a token ends every session. Without tokens the key is random per
process.

The CSRF token of a session is an HMAC of its nonce: a form posts it in a
hidden field, and a POST without the right one is refused with 403. The
cookies are ``SameSite=Lax``: a link followed from a mail client or chat
(a top-level GET) carries the session, so the page opens for a logged-in
reader, while another site's POSTs, frames and scripts do not, and the CSRF
token refuses any POST that did not come from one of our own forms.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final, Protocol

COOKIE = "flytenotify_console"
FORM_COOKIE = "flytenotify_console_form"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
SAME_SITE: Final = "lax"


class SessionLedger(Protocol):
    """Where logged-in sessions are kept (the store: shared by every replica)."""

    async def start_console_session(
        self, session_id: str, now: float, expires_at: float
    ) -> None: ...

    async def console_session_live(self, session_id: str, now: float) -> bool: ...

    async def end_console_session(self, session_id: str) -> bool: ...


@dataclass(frozen=True)
class Session:
    nonce: str
    csrf_token: str
    # Logged in with a token (or no token needed); otherwise it only carries the
    # login form's CSRF token.
    authenticated: bool
    expiry: int = 0

    @property
    def record_id(self) -> str:
        """The session's row in the ledger: a digest, so the row cannot be used as a cookie."""
        return hashlib.sha256(self.nonce.encode("ascii")).hexdigest()


class Sessions:
    """Issues and checks session cookies; ``required`` when API tokens are set."""

    def __init__(self, tokens: list[str], ledger: SessionLedger) -> None:
        self._digests = [_digest(t) for t in tokens]
        self._ledger = ledger
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

    # -- a visitor without a session --------------------------------------------------

    def visitor(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The form session of a :data:`FORM_COOKIE` that is ours and not expired."""
        session = self._check(cookie, "n", now)
        if session is None or self.required:
            return session
        return Session(session.nonce, session.csrf_token, True, session.expiry)

    def new_visitor(self, now: float | None = None) -> tuple[str, Session]:
        """A new :data:`FORM_COOKIE` value and its session (logged in when no token is needed)."""
        cookie, session = self._issue("n", now)
        if self.required:
            return cookie, session
        return cookie, Session(session.nonce, session.csrf_token, True, session.expiry)

    # -- logged-in sessions -----------------------------------------------------------

    async def log_in(self, now: float | None = None) -> tuple[str, Session]:
        """A new :data:`COOKIE` value, its session recorded in the ledger (a new nonce
        every time, so a session planted before login is not the one that logs in)."""
        moment = time.time() if now is None else now
        cookie, session = self._issue("a", moment)
        await self._ledger.start_console_session(session.record_id, moment, session.expiry)
        return cookie, session

    async def logged_in(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a :data:`COOKIE` that is ours, unexpired and not logged out."""
        if not self.required:
            return None
        moment = time.time() if now is None else now
        session = self._check(cookie, "a", moment)
        if session is None or not await self._ledger.console_session_live(
            session.record_id, moment
        ):
            return None
        return session

    async def log_out(self, session: Session) -> None:
        """End ``session`` on the server: its cookie opens nothing anywhere from now on."""
        if session.authenticated and self.required:
            await self._ledger.end_console_session(session.record_id)

    def csrf_accepted(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(session.csrf_token, given)

    # -- cookies ------------------------------------------------------------------------

    def _issue(self, mark: str, now: float | None) -> tuple[str, Session]:
        expiry = int((now if now is not None else time.time()) + SESSION_SECONDS)
        nonce = secrets.token_urlsafe(18)
        payload = f"{expiry}.{nonce}.{mark}"
        session = self._session(nonce, mark == "a", expiry)
        return f"{payload}.{self._sign(payload)}", session

    def _check(self, cookie: str | None, mark: str, now: float | None) -> Session | None:
        if not cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        expiry, _, rest = payload.partition(".")
        nonce, _, given_mark = rest.partition(".")
        # ASCII only: compare_digest refuses other text (a hostile cookie is no 500).
        if not (cookie.isascii() and expiry.isdigit() and nonce):
            return None
        if given_mark != mark or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        if int(expiry) < (now if now is not None else time.time()):
            return None
        return self._session(nonce, mark == "a", int(expiry))

    def _session(self, nonce: str, authenticated: bool, expiry: int) -> Session:
        csrf = hmac.new(self._key, f"csrf:{nonce}".encode(), "sha256").hexdigest()
        return Session(nonce, csrf, authenticated, expiry)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), "sha256").hexdigest()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
