"""A loopback Mattermost server: incoming webhooks and the REST API v4 parts we use.

- ``POST /hooks/<id>``: 200 ``ok`` (text/plain); 400 with Mattermost's JSON
  error (``{"id", "message", "detailed_error", "request_id", "status_code"}``)
  for an unknown webhook, a missing text or one over 16,383 characters.
- ``GET /api/v4/teams/name/<team>/channels/name/<channel>``: the channel, or
  404 ``app.channel.get_by_name.missing.app_error``.
- ``POST /api/v4/posts``: 201 with the post; 403 when the bot is not a member
  of the channel; 400 for a message over 16,383 characters; with ``root_id``
  a reply in that post's thread (400 ``api.post.create_post.root_id.app_error``
  for a root that is not a post of the channel).
- ``PUT /api/v4/posts/<id>/patch``: 200 with the post, its ``message``
  replaced and ``edit_at`` set; 404 ``app.post.get.app_error`` for a post
  that does not exist or was deleted (:meth:`MattermostServer.delete`).
- ``GET /api/v4/posts/<id>``: the post as it now reads (404 when gone).
- ``GET /api/v4/users/me``: the bot.

Message buttons: :meth:`MattermostServer.action` makes the request Mattermost
sends to a button's integration URL when someone clicks it, and
:meth:`MattermostServer.apply` does with the answer what Mattermost does (its
``update`` replaces the post's message and props).

The REST API wants ``Authorization: Bearer <token>`` (401 otherwise).
:meth:`MattermostServer.rate_limit` makes the next requests answer 429 with
``X-Ratelimit-*`` headers and the text "limit exceeded", as Mattermost's
rate limiter does. Every request is recorded in ``requests``; every post made
through the REST API is kept in ``stored`` by id as it now reads.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.servers.http_sink import LoopbackServer

__all__ = ["BOT_TOKEN", "MattermostRequest", "MattermostServer"]

BOT_TOKEN = "mm-bot-token-0123456789"
MAX_RUNES = 16_383


@dataclass(frozen=True)
class MattermostRequest:
    at: float
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class MattermostServer(LoopbackServer):
    hooks: dict[str, str] = field(default_factory=lambda: {"h00k": "town-square"})
    # (team, channel name) -> channel id; the bot is a member of these unless listed in outside
    channels: dict[tuple[str, str], str] = field(
        default_factory=lambda: {("ops", "alerts"): "chan0alerts", ("ops", "private"): "chan0priv"}
    )
    outside: set[str] = field(default_factory=lambda: {"chan0priv"})
    token: str = BOT_TOKEN

    def __post_init__(self) -> None:
        super().__init__()
        self.requests: list[MattermostRequest] = []
        self._limited: deque[dict[str, str]] = deque()
        self.stored: dict[str, dict[str, Any]] = {}  # post id -> the post as it now reads

    def delete(self, post_id: str) -> None:
        """Someone deleted the post: patching it answers 404."""
        del self.stored[post_id]

    def replies(self, root_id: str) -> list[dict[str, Any]]:
        return [post for post in self.stored.values() if post.get("root_id") == root_id]

    def roots(self) -> list[dict[str, Any]]:
        return [post for post in self.stored.values() if not post.get("root_id")]

    def action(
        self, post_id: str, action_id: str, *, user_id: str, user_name: str
    ) -> tuple[str, Any]:
        """What Mattermost sends when ``user_name`` clicks the button ``action_id`` on a
        post (its ``DoPostAction``): the integration's URL and the JSON body, the
        button's ``context`` as the post carries it."""
        post = self.stored[post_id]
        for attachment in post.get("props", {}).get("attachments", []):
            for button in attachment.get("actions", []):
                if button.get("id") == action_id:
                    integration = button["integration"]
                    body = {
                        "user_id": user_id,
                        "user_name": user_name,
                        "channel_id": post["channel_id"],
                        "channel_name": "alerts",
                        "team_id": "team0ops",
                        "team_domain": "ops",
                        "post_id": post_id,
                        "trigger_id": uuid.uuid4().hex,
                        "type": "",
                        "data_source": "",
                        "context": integration.get("context", {}),
                    }
                    return integration["url"], body
        raise KeyError(f"no button {action_id!r} on post {post_id}")

    def apply(self, post_id: str, answer: dict[str, Any]) -> None:
        """What Mattermost does with an integration's answer: ``update`` replaces the
        post's message and props (its id and channel kept)."""
        update = answer.get("update")
        if update:
            post = self.stored[post_id]
            post["message"] = update.get("message", post["message"])
            if "props" in update:
                post["props"] = update["props"]
            post["edit_at"] = int(time.time() * 1000)

    def buttons(self, post_id: str) -> list[str]:
        """The ids of the buttons a post shows now."""
        return [
            button["id"]
            for attachment in self.stored[post_id].get("props", {}).get("attachments", [])
            for button in attachment.get("actions", [])
        ]

    def hook_url(self, hook_id: str = "h00k") -> str:
        return f"{self.base}/hooks/{hook_id}"

    def posts(self) -> list[dict[str, Any]]:
        """What was posted and accepted, webhooks and REST alike."""
        return [r.json() for r in self.requests if r.method == "POST" and r.status in (200, 201)]

    def calls_to(self, path_start: str) -> list[MattermostRequest]:
        return [r for r in self.requests if r.path.startswith(path_start)]

    def rate_limit(
        self, *, count: int = 1, reset: str = "1", retry_after: str | None = None
    ) -> None:
        headers = {
            "X-Ratelimit-Limit": "10",
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Reset": reset,
        }
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        self._limited.extend([headers] * count)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{hook}", self._hook)
        app.router.add_get("/api/v4/teams/name/{team}/channels/name/{channel}", self._channel)
        app.router.add_post("/api/v4/posts", self._post)
        app.router.add_put("/api/v4/posts/{post}/patch", self._patch)
        app.router.add_get("/api/v4/posts/{post}", self._get_post)
        app.router.add_get("/api/v4/users/me", self._me)

    async def _record(self, request: web.Request, response: web.Response) -> web.Response:
        self.requests.append(
            MattermostRequest(
                time.monotonic(),
                request.method,
                request.path,
                CIMultiDict(request.headers),
                await request.read(),
                response.status,
            )
        )
        return response

    def _throttled(self) -> web.Response | None:
        if not self._limited:
            return None
        return web.Response(status=429, text="limit exceeded\n", headers=self._limited.popleft())

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            return None
        return _error(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        )

    async def _hook(self, request: web.Request) -> web.Response:
        response = self._throttled() or await self._hook_answer(request)
        return await self._record(request, response)

    async def _hook_answer(self, request: web.Request) -> web.Response:
        if request.match_info["hook"] not in self.hooks:
            return _error(400, "web.incoming_webhook.invalid.app_error", "Invalid webhook.")
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return _error(400, "api.webhook.incoming.parse.app_error", "Unable to parse the data.")
        text = payload.get("text") if isinstance(payload, dict) else None
        if not text:
            return _error(400, "web.incoming_webhook.text.app_error", "No text specified.")
        if len(text) > MAX_RUNES:
            return _error(400, "model.post.is_valid.msg.app_error", "Invalid message.")
        return web.Response(status=200, text="ok", content_type="text/plain")

    async def _channel(self, request: web.Request) -> web.Response:
        response = self._throttled() or self._unauthorised(request) or self._channel_answer(request)
        return await self._record(request, response)

    def _channel_answer(self, request: web.Request) -> web.Response:
        team, name = request.match_info["team"], request.match_info["channel"]
        channel_id = self.channels.get((team, name))
        if channel_id is None:
            return _error(
                404,
                "app.channel.get_by_name.missing.app_error",
                "Unable to find the existing channel.",
            )
        return web.json_response({"id": channel_id, "name": name, "team_name": team})

    async def _post(self, request: web.Request) -> web.Response:
        response = (
            self._throttled() or self._unauthorised(request) or await self._post_answer(request)
        )
        return await self._record(request, response)

    async def _post_answer(self, request: web.Request) -> web.Response:
        post = json.loads(await request.read())
        if (
            post.get("channel_id") not in self.channels.values()
            or post["channel_id"] in self.outside
        ):
            return _error(
                403,
                "api.context.permissions.app_error",
                "You do not have the appropriate permissions.",
            )
        if len(post.get("message", "")) > MAX_RUNES:
            return _error(400, "model.post.is_valid.msg.app_error", "Invalid message.")
        root = self.stored.get(post.get("root_id") or "")
        if post.get("root_id") and (root is None or root["channel_id"] != post["channel_id"]):
            return _error(
                400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter."
            )
        created = {"id": uuid.uuid4().hex[:26], **post, "create_at": int(time.time() * 1000)}
        self.stored[created["id"]] = dict(created)
        return web.json_response(created, status=201)

    async def _patch(self, request: web.Request) -> web.Response:
        response = (
            self._throttled() or self._unauthorised(request) or await self._patch_answer(request)
        )
        return await self._record(request, response)

    async def _patch_answer(self, request: web.Request) -> web.Response:
        post = self.stored.get(request.match_info["post"])
        if post is None:
            return _error(404, "app.post.get.app_error", "Unable to get the post.")
        patch = json.loads(await request.read())
        message = patch.get("message")
        if message is not None:
            if len(message) > MAX_RUNES:
                return _error(400, "model.post.is_valid.msg.app_error", "Invalid message.")
            post["message"] = message
        if "props" in patch:
            post["props"] = patch["props"]
        post["edit_at"] = int(time.time() * 1000)
        return web.json_response(post, status=200)

    async def _get_post(self, request: web.Request) -> web.Response:
        response = self._unauthorised(request) or self._get_post_answer(request)
        return await self._record(request, response)

    def _get_post_answer(self, request: web.Request) -> web.Response:
        post = self.stored.get(request.match_info["post"])
        if post is None:
            return _error(404, "app.post.get.app_error", "Unable to get the post.")
        return web.json_response(post)

    async def _me(self, request: web.Request) -> web.Response:
        response = self._unauthorised(request) or web.json_response(
            {"id": "b0t", "username": "flytenotify-bot", "is_bot": True}
        )
        return await self._record(request, response)


def _error(status: int, error_id: str, message: str) -> web.Response:
    body = {
        "id": error_id,
        "message": message,
        "detailed_error": "",
        "request_id": uuid.uuid4().hex[:26],
        "status_code": status,
    }
    return web.json_response(body, status=status)
