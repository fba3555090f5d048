"""A loopback Slack: the Web API methods flytenotify calls, and an incoming webhook.

It behaves as Slack documents, closely enough to test a client against:

- ``POST /api/<method>`` with the token as ``Authorization: Bearer`` (or a
  ``token`` parameter); parameters from the query string, a form body or a
  JSON body, as Slack accepts them. Answers are JSON ``{"ok": ...}`` with
  HTTP 200, ``ok: false`` and an ``error`` code for a refused call.
- Methods: ``chat.postMessage`` (``channel_not_found``, ``is_archived``,
  ``not_in_channel``, ``no_text``, ``msg_too_long``, ``invalid_blocks`` when a
  block breaks Slack's size limits; with ``thread_ts`` a reply in that
  message's thread), ``chat.update`` (a conversation ID, never a name, and the
  message's ``ts``: ``channel_not_found``, ``message_not_found`` for a message
  that does not exist or was deleted, ``cant_update_message`` for one the bot
  did not post, ``no_text``, ``msg_too_long``, ``invalid_blocks``;
  ``edit_window_closed`` is scripted with :meth:`SlackApiServer.fail`),
  ``users.lookupByEmail`` (``users_not_found``), ``conversations.open``,
  ``auth.test``, ``usergroups.users.list`` (from ``usergroups``; ``no_such_subteam``),
  ``views.open`` (a modal, kept in ``views``; ``invalid_trigger_id``
  for a trigger no click gave).
- ``POST /services/...``: an incoming webhook answering as Slack documents,
  as text: ``ok`` (200), ``invalid_payload`` (400, a body that is not JSON),
  ``no_text`` (400), ``no_service`` (404, a webhook in ``revoked_webhooks``),
  ``channel_is_archived`` (410, one in ``archived_webhooks``), and 429 with
  ``Retry-After`` under :meth:`SlackApiServer.rate_limit` with ``method=WEBHOOK``.

Scripting: :meth:`SlackApiServer.rate_limit` answers HTTP 429 with a
``Retry-After`` for the next calls, :meth:`SlackApiServer.fail` makes the next
calls of a method fail with a given error (and HTTP status), and ``archived``
and ``not_in_channel`` mark channels. Every call is recorded in ``calls``
with its arrival time on ``time.monotonic()``; every message posted is kept
in ``messages`` by (channel ID, ts) as it now reads, and :meth:`delete` deletes
one (or :meth:`post_as_someone` posts one the bot cannot edit).

Interactivity: :meth:`SlackApiServer.interaction` makes the callback Slack sends
when a person clicks a button on a message it holds (a ``block_actions``
payload, form-encoded, signed with the app's signing secret as Slack signs:
:func:`slack_signature`), for a test to send to the app's Request URL;
:meth:`SlackApiServer.submission` the ``view_submission`` of a modal the app
opened, with a value typed in.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.servers.http_sink import LoopbackServer

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_TOKEN",
    "WEBHOOK",
    "SlackApiServer",
    "SlackCall",
    "slack_signature",
]

DEFAULT_TOKEN = "xoxb-flytenotify-test"
DEFAULT_CHANNELS = {"general": "C0GENERAL1", "alerts": "C0ALERTS01", "ops": "C0OPS00001"}
WEBHOOK = "incoming-webhook"  # the ``method`` recorded for incoming-webhook posts
TEAM_ID = "T0TEST"

Answer = dict[str, Any]


@dataclass(frozen=True)
class SlackCall:
    method: str  # "chat.postMessage", ..., or WEBHOOK
    at: float  # time.monotonic() on arrival
    body: dict[str, Any]  # query, form and JSON parameters merged
    status: int  # HTTP status answered
    answer: Answer | str
    # Incoming-webhook posts only: the path, headers and body bytes as received.
    path: str = ""
    headers: CIMultiDict[str] | None = None
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == 200 and (self.answer == "ok" or self.answer_field("ok") is True)

    def answer_field(self, key: str) -> Any:
        return self.answer.get(key) if isinstance(self.answer, dict) else None


@dataclass(frozen=True)
class _Failure:
    method: str | None  # None: any method
    status: int
    error: str
    retry_after: int | None = None


class SlackApiServer(LoopbackServer):
    """A Slack workspace with a few channels and users, on 127.0.0.1."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        channels: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.channels = dict(DEFAULT_CHANNELS if channels is None else channels)  # name -> ID
        self.users = {email.lower(): uid for email, uid in (users or {}).items()}  # -> user ID
        self.archived: set[str] = set()  # channel IDs
        self.not_in_channel: set[str] = set()  # channel IDs the bot is not a member of
        self.dms: dict[str, str] = {}  # user ID -> DM channel ID
        self.calls: list[SlackCall] = []
        self.delay = 0.0  # seconds each Web API answer is held back (for timeouts)
        self._failures: list[_Failure] = []
        self._webhook_replies: deque[tuple[int, str]] = deque()
        self.revoked_webhooks: set[str] = set()  # webhook paths answering 404 no_service
        self.archived_webhooks: set[str] = set()  # ... 410 channel_is_archived
        self._ts = itertools.count(1)
        # (channel ID, ts) -> the message as it now reads ("text", "blocks",
        # "thread_ts" for a reply, "edited" once updated, "bot" when the bot posted it).
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.views: list[dict[str, Any]] = []  # modals opened (views.open), in order
        self.usergroups: dict[str, list[str]] = {}  # user group ID -> its members' IDs

    # -- addresses and scripting ----------------------------------------------

    @property
    def base_url(self) -> str:
        """For ``SlackConfig.base_url``."""
        return f"{self.base}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/services/T0TEST/B0TEST/not-a-secret"

    def rate_limit(
        self, retry_after: int, *, count: int = 1, method: str | None = "chat.postMessage"
    ) -> None:
        """Answer the next ``count`` calls of ``method`` (None: any) with 429."""
        failure = _Failure(method, 429, "ratelimited", retry_after)
        self._failures.extend([failure] * count)

    def fail(self, method: str, error: str, *, count: int = 1, status: int = 200) -> None:
        """Answer the next ``count`` calls of ``method`` with ``ok: false, error``."""
        self._failures.extend([_Failure(method, status, error)] * count)

    def script_webhook(self, status: int, body: str, *, count: int = 1) -> None:
        """Answer the next ``count`` incoming-webhook posts with ``status`` and ``body``."""
        self._webhook_replies.extend([(status, body)] * count)

    def delete(self, channel_id: str, ts: str) -> None:
        """Someone deleted the message: chat.update answers message_not_found."""
        del self.messages[(channel_id, ts)]

    def post_as_someone(self, channel_id: str, text: str) -> str:
        """A message a person posted (the bot cannot update it); its ts."""
        ts = self._next_ts()
        self.messages[(channel_id, ts)] = {"text": text, "blocks": [], "ts": ts, "bot": False}
        return ts

    def replies(self, channel_id: str, thread_ts: str) -> list[dict[str, Any]]:
        """The messages in the thread of ``thread_ts``, in order."""
        return [
            message
            for (channel, _), message in self.messages.items()
            if channel == channel_id and message.get("thread_ts") == thread_ts
        ]

    def top_level(self, channel_id: str) -> list[dict[str, Any]]:
        """The messages of a channel that are no reply, in order."""
        return [
            message
            for (channel, _), message in self.messages.items()
            if channel == channel_id and "thread_ts" not in message
        ]

    def interaction(
        self,
        channel_id: str,
        ts: str,
        action_id: str,
        *,
        user_id: str,
        signing_secret: str,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The interactivity callback Slack sends when ``user_id`` clicks the button
        ``action_id`` on a message: a ``block_actions`` payload, form-encoded, and its
        headers, signed as Slack signs (``v0:TIMESTAMP:BODY``, HMAC-SHA256 with the
        app's signing secret) at ``timestamp`` (now unless given)."""
        message = self.messages[(channel_id, ts)]
        block, element = _find_button(message["blocks"], action_id)
        payload = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0TESTAPP",
            "token": "verification-token-is-deprecated",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": f"{next(self._ts)}.trigger",
            "team": {"id": TEAM_ID, "domain": "flytenotify-test"},
            "channel": {"id": channel_id, "name": self._channel_name(channel_id)},
            "message": {key: value for key, value in message.items() if key != "bot"},
            "response_url": f"{self.base}/actions/{TEAM_ID}/response",
            "actions": [
                {
                    "type": element["type"],
                    "action_id": action_id,
                    "block_id": block.get("block_id", ""),
                    "text": element["text"],
                    "value": element.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        when = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(when),
            "X-Slack-Signature": slack_signature(signing_secret, when, body),
        }
        return body, headers

    def submission(
        self, view: dict[str, Any], value: str, *, user_id: str, signing_secret: str
    ) -> tuple[bytes, dict[str, str]]:
        """The ``view_submission`` callback Slack sends when ``user_id`` submits a modal
        with ``value`` typed into its (one) plain-text input, signed as Slack signs."""
        (block,) = [b for b in view["blocks"] if b.get("type") == "input"]
        action_id = block["element"]["action_id"]
        state = {block["block_id"]: {action_id: {"type": "plain_text_input", "value": value}}}
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "flytenotify-test"},
            "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0TESTAPP",
            "trigger_id": f"{next(self._ts)}.trigger",
            "view": {**view, "state": {"values": state}, "team_id": TEAM_ID},
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": slack_signature(signing_secret, now, body),
        }
        return body, headers

    def buttons(self, channel_id: str, ts: str) -> list[str]:
        """The action ids of the buttons a message shows now."""
        return [
            element["action_id"]
            for block in self.messages[(channel_id, ts)]["blocks"]
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        ]

    def _channel_name(self, channel_id: str) -> str:
        names = {cid: name for name, cid in self.channels.items()}
        return names.get(channel_id, "directmessage")

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def calls_to(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    def posts(self, channel_id: str | None = None) -> list[SlackCall]:
        """Accepted ``chat.postMessage`` calls, to ``channel_id`` if given."""
        return [
            call
            for call in self.calls_to("chat.postMessage")
            if call.ok and (channel_id is None or call.answer_field("channel") == channel_id)
        ]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/services/{tail:.*}", self._webhook)

    # -- Web API ----------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        method = request.match_info["method"]
        params = await _params(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        status, answer, headers = self._answer(method, params, request)
        self.calls.append(SlackCall(method, at, _redacted(params), status, answer))
        return web.json_response(answer, status=status, headers=headers)

    def _answer(
        self, method: str, params: dict[str, Any], request: web.Request
    ) -> tuple[int, Answer, dict[str, str]]:
        failure = self._take_failure(method)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return failure.status, {"ok": False, "error": failure.error}, headers
        auth_error = self._auth_error(params, request)
        if auth_error:
            return 200, {"ok": False, "error": auth_error}, {}
        handler = self._handlers().get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return 200, handler(params), {}

    def _take_failure(self, method: str) -> _Failure | None:
        for i, failure in enumerate(self._failures):
            if failure.method in (None, method):
                return self._failures.pop(i)
        return None

    def _auth_error(self, params: dict[str, Any], request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header else params.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Answer]]:
        return {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "users.lookupByEmail": self._lookup_by_email,
            "conversations.open": self._open,
            "auth.test": self._auth_test,
            "views.open": self._open_view,
            "usergroups.users.list": self._usergroup_users,
        }

    def _channel_id(self, channel: str) -> str | None:
        name = channel.removeprefix("#")
        if name in self.channels:
            return self.channels[name]
        known = set(self.channels.values()) | set(self.dms.values())
        return channel if channel in known else None

    def _post_message(self, params: dict[str, Any]) -> Answer:
        channel = self._channel_id(str(params.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.archived:
            return {"ok": False, "error": "is_archived"}
        if channel in self.not_in_channel:
            return {"ok": False, "error": "not_in_channel"}
        text = str(params.get("text") or "")
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)  # form-encoded calls send blocks as JSON text
        refused = _content_problem(text, blocks)
        if refused is not None:
            return refused
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "blocks": blocks or [],
            "ts": ts,
        }
        thread_ts = str(params.get("thread_ts") or "")
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.messages[(channel, ts)] = {**message, "bot": True}
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, params: dict[str, Any]) -> Answer:
        # chat.update takes a conversation ID only: "#name" is channel_not_found.
        channel = str(params.get("channel", ""))
        known = set(self.channels.values()) | set(self.dms.values())
        if channel not in known:
            return {"ok": False, "error": "channel_not_found"}
        ts = str(params.get("ts", ""))
        message = self.messages.get((channel, ts))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message["bot"]:
            return {"ok": False, "error": "cant_update_message"}
        text = str(params.get("text") or "")
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        refused = _content_problem(text, blocks)
        if refused is not None:
            return refused
        # Blocks not given are kept, as Slack documents.
        message.update(text=text, blocks=message["blocks"] if blocks is None else blocks)
        message["edited"] = True
        shown = {key: value for key, value in message.items() if key != "bot"}
        return {"ok": True, "channel": channel, "ts": ts, "text": text, "message": shown}

    def _usergroup_users(self, params: dict[str, Any]) -> Answer:
        members = self.usergroups.get(str(params.get("usergroup") or ""))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def _open_view(self, params: dict[str, Any]) -> Answer:
        trigger = str(params.get("trigger_id") or "")
        if not trigger.endswith(".trigger"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = params.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or view.get("type") != "modal":
            return {"ok": False, "error": "invalid_arguments"}
        if len(str(view.get("private_metadata", ""))) > 3000:
            return {"ok": False, "error": "invalid_arguments"}
        opened = {**view, "id": f"V{next(self._ts):08d}"}
        self.views.append(opened)
        return {"ok": True, "view": opened}

    def _lookup_by_email(self, params: dict[str, Any]) -> Answer:
        email = str(params.get("email", "")).lower()
        user_id = self.users.get(email)
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": {"id": user_id, "profile": {"email": email}}}

    def _open(self, params: dict[str, Any]) -> Answer:
        users = [u for u in str(params.get("users", "")).split(",") if u]
        if len(users) != 1:
            return {"ok": False, "error": "users_list_not_supplied"}
        if users[0] not in self.users.values():
            return {"ok": False, "error": "user_not_found"}
        dm = self.dms.setdefault(users[0], f"D{users[0][1:]}")
        return {"ok": True, "channel": {"id": dm}}

    def _auth_test(self, params: dict[str, Any]) -> Answer:
        return {
            "ok": True,
            "url": "https://flytenotify-test.slack.com/",
            "team": "flytenotify-test",
            "user": "flytenotify",
            "team_id": "T0TEST",
            "user_id": "U0BOT",
            "bot_id": "B0BOT",
        }

    # -- incoming webhook -------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        status, text, headers = self._webhook_answer(request.path, body)
        params = body if isinstance(body, dict) else {}
        received = CIMultiDict(request.headers)
        self.calls.append(SlackCall(WEBHOOK, at, params, status, text, request.path, received, raw))
        return web.Response(status=status, text=text, headers=headers)

    def _webhook_answer(self, path: str, body: Any) -> tuple[int, str, dict[str, str]]:
        failure = self._take_failure(WEBHOOK)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return failure.status, failure.error, headers
        if self._webhook_replies:
            status, text = self._webhook_replies.popleft()
            return status, text, {}
        if path in self.revoked_webhooks:
            return 404, "no_service", {}
        if path in self.archived_webhooks:
            return 410, "channel_is_archived", {}
        if not isinstance(body, dict):
            return 400, "invalid_payload", {}
        if not body.get("text") and not body.get("blocks"):
            return 400, "no_text", {}
        problems = block_problems(body["blocks"]) if "blocks" in body else []
        return (400, "invalid_blocks", {}) if problems else (200, "ok", {})


def _content_problem(text: str, blocks: Any) -> Answer | None:
    """Slack's refusal of a message's text and blocks, or None."""
    if not text and not blocks:
        return {"ok": False, "error": "no_text"}
    if len(text) > 40_000:
        return {"ok": False, "error": "msg_too_long"}
    problems = block_problems(blocks) if blocks is not None else []
    if problems:
        return {"ok": False, "error": "invalid_blocks", "errors": problems}
    return None


async def _params(request: web.Request) -> dict[str, Any]:
    """Query string, then a form or JSON body: how Slack reads a method's arguments."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    elif request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
    return params


def _redacted(params: dict[str, Any]) -> dict[str, Any]:
    return {k: ("(redacted)" if k == "token" else v) for k, v in params.items()}


def block_problems(blocks: Any) -> list[str]:
    """What Slack would reject in ``blocks`` (the size limits of the Block Kit reference)."""
    if not isinstance(blocks, list):
        return ["blocks must be a list"]
    if len(blocks) > 50:
        return [f"{len(blocks)} blocks, at most 50 allowed"]
    problems: list[str] = []
    for i, block in enumerate(blocks):
        problems += [f"blocks[{i}]: {p}" for p in _block_problems(block)]
    return problems


def slack_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``X-Slack-Signature`` of a request: ``v0=`` and the hex HMAC-SHA256 of
    ``v0:TIMESTAMP:BODY`` keyed by the signing secret."""
    signed = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _find_button(blocks: list[dict[str, Any]], action_id: str) -> tuple[dict[str, Any], Any]:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return block, element
    raise KeyError(f"no button {action_id!r} on the message")


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _block_problems(block: Any) -> list[str]:
    if not isinstance(block, dict):
        return ["not an object"]
    kind = block.get("type")
    if kind == "header":
        text = block.get("text", {})
        if not isinstance(text, dict) or text.get("type") != "plain_text":
            return ["header text must be plain_text"]
        return [] if 0 < len(_text_of(text)) <= 150 else ["header text must be 1-150 characters"]
    if kind == "section":
        return _section_problems(block)
    if kind == "context":
        elements = block.get("elements", [])
        return [] if 0 < len(elements) <= 10 else ["context needs 1-10 elements"]
    if kind == "actions":
        return _actions_problems(block)
    if kind == "divider":
        return []
    return [f"unknown block type {kind!r}"]


def _section_problems(block: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    text, fields = block.get("text"), block.get("fields")
    if text is None and not fields:
        problems.append("section needs text or fields")
    if text is not None and not 0 < len(_text_of(text)) <= 3000:
        problems.append("section text must be 1-3000 characters")
    if fields is not None:
        if len(fields) > 10:
            problems.append("at most 10 fields")
        problems += [f"field {j} too long" for j, f in enumerate(fields) if len(_text_of(f)) > 2000]
    return problems


def _actions_problems(block: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    elements = block.get("elements", [])
    if not 0 < len(elements) <= 25:
        problems.append("actions needs 1-25 elements")
    if len(str(block.get("block_id", ""))) > 255:
        problems.append("block_id over 255 characters")
    for element in elements:
        if len(str(element.get("action_id", ""))) > 255:
            problems.append("action_id over 255 characters")
        if len(str(element.get("value", ""))) > 2000:
            problems.append("button value over 2000 characters")
        if len(_text_of(element.get("text"))) > 75:
            problems.append("button text over 75 characters")
        if len(str(element.get("url", ""))) > 3000:
            problems.append("button url over 3000 characters")
    return problems
