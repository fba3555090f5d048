"""A loopback Microsoft Teams webhook, in both of its flavours.

- ``/workflows/<id>/triggers/manual/paths/invoke``: a Workflows (Power Automate)
  webhook. It answers 202 with an empty body for a message carrying an
  Adaptive Card, 400 ``{"error": {"code": "InvalidRequestContent", ...}}`` for
  a body that is not one.
- ``/webhookb2/<id>``: a retired Office 365 connector. It answers 200 ``1``
  when it posted the card, and, as the real one does, reports Teams'
  refusals inside a 200: "Webhook message delivery failed with error:
  Microsoft Teams endpoint returned HTTP error 429 with ContextId ...".

Both answer 413 for a body over 28 KB, as Teams does, and refuse a card with
an action other than a link (``Action.OpenUrl``), which nothing could answer.
:meth:`TeamsWebhookServer.script` makes the next requests answer a given status
and body (optionally with ``Retry-After``). Every request is recorded in
``requests``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.servers.http_sink import LoopbackServer, ScriptedReply

__all__ = ["CONNECTOR_FAILURE", "TeamsRequest", "TeamsWebhookServer"]

MAX_BYTES = 28 * 1024
CONNECTOR_FAILURE = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
    "HTTP error {status} with ContextId tcid=0,server=msgapi-production,cv=abc.0.."
)


@dataclass(frozen=True)
class TeamsRequest:
    at: float
    path: str
    headers: CIMultiDict[str]
    body: bytes
    status: int
    answer: str

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def card(self) -> Any:
        return self.json()["attachments"][0]["content"]


class TeamsWebhookServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TeamsRequest] = []
        self._script: deque[ScriptedReply] = deque()

    @property
    def workflow_url(self) -> str:
        return f"{self.base}/workflows/f00d/triggers/manual/paths/invoke?api-version=1&sig=S3CR3T"

    @property
    def connector_url(self) -> str:
        return f"{self.base}/webhookb2/abc@def/IncomingWebhook/S3CR3T/ghi"

    @property
    def posted(self) -> list[TeamsRequest]:
        """Requests whose card Teams would have shown."""
        return [r for r in self.requests if r.status in (200, 202) and r.answer in ("", "1")]

    def script(
        self, status: int, *, body: str = "", count: int = 1, retry_after: str | None = None
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._script.extend([ScriptedReply(status, body, headers)] * count)

    def connector_refuses(self, status: int, count: int = 1) -> None:
        """The connector answers 200 with Teams' ``status`` in its text, as the real one does."""
        self.script(200, body=CONNECTOR_FAILURE.format(status=status), count=count)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/workflows/{id}/triggers/manual/paths/invoke", self._workflow)
        app.router.add_post("/webhookb2/{tail:.*}", self._connector)

    async def _workflow(self, request: web.Request) -> web.Response:
        return await self._answer(request, legacy=False)

    async def _connector(self, request: web.Request) -> web.Response:
        return await self._answer(request, legacy=True)

    async def _answer(self, request: web.Request, legacy: bool) -> web.Response:
        at = time.monotonic()
        body = await request.read()
        reply = self._script.popleft() if self._script else _judge(body, legacy)
        self.requests.append(
            TeamsRequest(
                at, request.path, CIMultiDict(request.headers), body, reply.status, reply.body
            )
        )
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)


def _judge(body: bytes, legacy: bool) -> ScriptedReply:
    if len(body) > MAX_BYTES:
        return ScriptedReply(413, "Payload Too Large")
    problem = _card_problem(body)
    if problem is not None:
        if legacy:
            return ScriptedReply(
                400, f"Bad payload received by generic incoming webhook. {problem}"
            )
        error = {"error": {"code": "InvalidRequestContent", "message": problem}}
        return ScriptedReply(400, json.dumps(error))
    return ScriptedReply(200, "1") if legacy else ScriptedReply(202, "")


def _card_problem(body: bytes) -> str | None:
    try:
        message = json.loads(body)
    except ValueError:
        return "The request body is not valid JSON."
    if not isinstance(message, dict) or message.get("type") != "message":
        return "'type' must be 'message'."
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "'attachments' must hold a card."
    card = attachments[0]
    if card.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return "the attachment is not an Adaptive Card."
    content = card.get("content")
    if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
        return "the card's 'type' must be 'AdaptiveCard'."
    if not isinstance(content.get("body"), list) or not content.get("version"):
        return "the card needs 'version' and 'body'."
    for action in content.get("actions", []):
        # A webhook's card cannot call anyone back: only links work in it.
        if action.get("type") != "Action.OpenUrl":
            return f"a webhook's card takes only Action.OpenUrl, got {action.get('type')!r}."
        if not str(action.get("url", "")).startswith(("https://", "http://")):
            return "an Action.OpenUrl needs an http(s) 'url'."
    return None
