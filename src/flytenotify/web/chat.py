"""The chat platforms' callbacks: a click on a message's button, answered (flytenotify.chat).

- ``POST /api/v1/chat/slack/interactions``: Slack's interactivity Request URL.
  Every request is verified with the app's signing secret (``[slack]
  signing_secret``) by slack_sdk's :class:`SignatureVerifier`: a missing, wrong
  or stale (over 5 minutes) signature is refused with 401 and changes
  nothing. The body is form-encoded, ``payload=<JSON>``: ``block_actions`` (a
  click), or the ``view_submission`` of the modal a typed gate's Answer… opens.
  Slack waits 3 seconds: work that takes longer goes on after the answer.
- ``POST /api/v1/chat/mattermost/actions``: the URL of a Mattermost message
  button's integration. Mattermost signs nothing, so each button carries an
  HMAC of what it asks and until when (``[mattermost] action_secret``); a
  forged or expired one is refused with 401 and changes nothing.

Neither needs an API token (the platforms cannot send one): the signature is the
proof. A verified click is done as ``slack:<user id>`` / ``mattermost:<user
name>``, and what came of it is shown on the message itself (Slack:
``chat.update``; Mattermost: the answer's ``update``), or as an ephemeral text
to the person who clicked when the message cannot be updated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson
from slack_sdk.signature import SignatureVerifier

from flytenotify.app import Notifier
from flytenotify.channels._chat import escape_markdown
from flytenotify.channels.mattermost import ACTIONS_PATH, USER_NAME, MattermostChannel
from flytenotify.channels.slack import (
    ACTIONS_BLOCK,
    ANSWER_PREFIX,
    ANSWER_VIEW,
    GROUP_KIND,
    MAX_BLOCKS,
    MAX_FIELD,
    SlackChannel,
    answer_view,
    escape_mrkdwn,
    truncate,
)
from flytenotify.chat import Button, ChatAction, verify_context
from flytenotify.domain import Actor
from flytenotify.errors import Forbidden, InputError, Problem
from flytenotify.metrics import Metrics
from flytenotify.web import schemas as s
from flytenotify.web.answers import ClickAnswer, answer_click

log = logging.getLogger("flytenotify.chat")

SLACK_PATH = "/api/v1/chat/slack/interactions"
MATTERMOST_PATH = ACTIONS_PATH  # the URL the channel's buttons carry
STALE_AFTER = 5 * 60  # seconds: Slack's own advice for its request timestamps
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_CONSOLE_ACTION = "flytenotify_open_console"  # a link button: Slack calls back anyway


class ChatRefusal(Exception):
    """A callback refused before anything was done: its HTTP status and problems."""

    def __init__(self, status: int, error: str, problems: list[Problem]) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems


# -- Slack ----------------------------------------------------------------------------------


async def slack_interaction(
    notifier: Notifier,
    headers: Any,
    body: bytes,
    metrics: Metrics,
    clock: Callable[[], float] = time.time,
) -> s.SlackAnswer | None:
    """Answer one Slack interactivity callback; what to answer Slack with (None: an
    empty 200). Raises :class:`ChatRefusal` (404 not configured, 401 unverified,
    400 malformed) before doing anything."""
    secret = _slack_secret(notifier)
    if secret is None:
        metrics.chat_callbacks.labels("slack", "not_configured").inc()
        raise ChatRefusal(
            404,
            "not configured",
            [Problem("slack.signing_secret", "is not set: Slack buttons are not answered here")],
        )
    try:
        _verify_slack(secret, headers, body, clock())
    except ChatRefusal as refused:
        metrics.chat_callbacks.labels("slack", "unverified").inc()
        log.warning("slack: callback refused: %s", refused.problems[0].message)
        raise
    try:
        payload = _slack_payload(body)
        submitted = _Submitted.of(payload) if payload["type"] == SUBMISSION else None
        click = _SlackClick.of(payload) if submitted is None else None
    except InputError as wrong:
        metrics.chat_callbacks.labels("slack", "invalid").inc()
        raise ChatRefusal(400, "invalid request", wrong.problems) from None
    if submitted is not None:
        metrics.chat_callbacks.labels("slack", "answered").inc()
        return await _answer_submitted(notifier, submitted)
    if click is None:
        return None  # the console link: nothing to do
    metrics.chat_callbacks.labels("slack", "answered").inc()
    if click.button.action is ChatAction.ANSWER:
        return await _ask_for_value(notifier, click)
    work = asyncio.create_task(_answer_on_slack(notifier, click))
    try:
        # Slack wants an answer within 3 seconds; the work goes on after it if it must.
        return await asyncio.wait_for(asyncio.shield(work), SLACK_ANSWER_WITHIN)
    except TimeoutError:
        _carried_on.add(work)
        work.add_done_callback(_finished)
        return s.SlackAnswer.ephemeral(WORKING)


# Seconds the work of a click may take before Slack is answered without it.
SLACK_ANSWER_WITHIN = 2.5
WORKING = "Working on it: the message will say what came of it."
_carried_on: set[asyncio.Task[Any]] = set()  # clicks still being answered after Slack was


def _finished(work: asyncio.Task[Any]) -> None:
    _carried_on.discard(work)
    if not work.cancelled():
        work.exception()  # logged where it was raised; retrieved so asyncio says nothing


async def _vouched(notifier: Notifier, actor: Actor, user: str) -> Actor:
    """``actor`` with the user groups named in ``[[actions.allow]]`` that Slack says
    ``user`` is in: what ``slack-group:`` entries are matched against."""
    wanted = notifier.settings.actions.named(GROUP_KIND)
    channel = notifier.channels.get("slack")
    if not wanted or not isinstance(channel, SlackChannel):
        return actor
    return dataclasses.replace(actor, groups=await channel.groups_of(user, wanted))


async def _answer_on_slack(notifier: Notifier, click: _SlackClick) -> s.SlackAnswer | None:
    """Do the click and show what came of it on the message; an ephemeral answer when
    the message could not say it (or nothing could be done now)."""
    try:
        actor = await _vouched(notifier, click.actor, click.user)
        answer = await answer_click(notifier, click.button, actor, click.message_id, "Slack")
    except Exception:
        log.exception("slack: a click on %s could not be answered", click.message_id)
        raise
    note = escape_mrkdwn(answer.note).replace("{who}", f"<@{click.user}>")
    failed = await _show_on_slack(notifier, click, answer, note)
    if failed or answer.retry:
        return s.SlackAnswer.ephemeral(note)
    return None


def _slack_secret(notifier: Notifier) -> str | None:
    config = notifier.settings.channel("slack")
    if config is None or not getattr(config, "enabled", False):
        return None
    secret: str | None = config.resolved_signing_secret()
    return secret or None


def _verify_slack(secret: str, headers: Any, body: bytes, now: float) -> None:
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        name = "X-Slack-Request-Timestamp" if not timestamp else "X-Slack-Signature"
        raise ChatRefusal(
            401, "unauthorized", [Problem(name, "is required (Slack signs requests)")]
        )
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        problem = Problem("X-Slack-Request-Timestamp", "must be Unix seconds")
        raise ChatRefusal(401, "unauthorized", [problem])
    if abs(now - int(timestamp)) > STALE_AFTER:
        problem = Problem(
            "X-Slack-Request-Timestamp",
            f"is more than {STALE_AFTER // 60} minutes away from now: a stale or replayed request",
        )
        raise ChatRefusal(401, "unauthorized", [problem])
    verifier = SignatureVerifier(secret)
    if not verifier.is_valid(body, timestamp, signature):
        problem = Problem("X-Slack-Signature", "does not match the request: not signed by Slack")
        raise ChatRefusal(401, "unauthorized", [problem])


def _slack_payload(body: bytes) -> dict[str, Any]:
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        raise InputError(Problem("payload", "the body is not UTF-8 form data")) from None
    given = form.get("payload")
    if not given:
        raise InputError(Problem("payload", "is required: Slack sends payload=<JSON>"))
    try:
        payload = orjson.loads(given[0])
    except orjson.JSONDecodeError:
        raise InputError(Problem("payload", "is not JSON")) from None
    if not isinstance(payload, dict):
        raise InputError(Problem("payload", "must be a JSON object"))
    if payload.get("type") not in ("block_actions", SUBMISSION):
        raise InputError(
            Problem(
                "payload.type",
                f"must be block_actions or {SUBMISSION}, got {payload.get('type')!r}",
            )
        )
    return payload


class _SlackClick:
    """A verified block_actions callback: who clicked which button on which message."""

    def __init__(self, payload: dict[str, Any], user: str, button: Button) -> None:
        self.payload = payload
        self.user = user
        self.button = button
        self.actor = Actor(f"slack:{user}", "slack-signature")
        container = payload.get("container")
        container = container if isinstance(container, dict) else {}
        self.channel = str(container.get("channel_id") or "")
        self.ts = str(container.get("message_ts") or "")

    @property
    def message_id(self) -> str:
        return f"{self.channel}/{self.ts}" if self.channel and self.ts else ""

    @classmethod
    def of(cls, payload: dict[str, Any]) -> _SlackClick | None:
        user = _slack_user(payload)
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            raise InputError(Problem("payload.actions", "must list the button clicked"))
        clicked = actions[0]
        action_id = clicked.get("action_id")
        if action_id == _CONSOLE_ACTION:
            return None
        if not isinstance(action_id, str) or not action_id.startswith(ANSWER_PREFIX):
            raise InputError(
                Problem(
                    "payload.actions[0].action_id", f"is not a flytenotify button: {action_id!r}"
                )
            )
        button = Button.decode(clicked.get("value"), "payload.actions[0].value")
        if action_id != f"{ANSWER_PREFIX}{button.action.value}":
            raise InputError(
                Problem("payload.actions[0].action_id", "does not match the button's value")
            )
        return cls(payload, user, button)


SUBMISSION = "view_submission"  # a modal's form sent: the value a typed gate asked for


class _Submitted:
    """A verified view_submission of flytenotify's modal: who answered which gate, on
    which message, with what text."""

    def __init__(self, user: str, button: Button, message_id: str, value: str) -> None:
        self.user = user
        self.button = button
        self.message_id = message_id
        self.value = value
        self.actor = Actor(f"slack:{user}", "slack-signature")

    @classmethod
    def of(cls, payload: dict[str, Any]) -> _Submitted:
        user = _slack_user(payload)
        view = payload.get("view")
        if not isinstance(view, dict) or view.get("callback_id") != ANSWER_VIEW:
            raise InputError(Problem("payload.view.callback_id", f"must be {ANSWER_VIEW}"))
        try:
            metadata = orjson.loads(str(view.get("private_metadata") or ""))
        except orjson.JSONDecodeError:
            metadata = None
        if not isinstance(metadata, dict):
            field = "payload.view.private_metadata"
            raise InputError(Problem(field, "is not what flytenotify's form carries"))
        button = Button.from_json(metadata.get("button"), "payload.view.private_metadata.button")
        if button.action is not ChatAction.ANSWER:
            field = "payload.view.private_metadata.button.action"
            raise InputError(Problem(field, "must be answer"))
        value = _at(view, "state", "values", "value", "value", "value")
        if not isinstance(value, str):
            raise InputError(Problem("payload.view.state.values.value", "must hold the text"))
        message = metadata.get("message")
        return cls(user, button, message if isinstance(message, str) else "", value)


async def _ask_for_value(notifier: Notifier, click: _SlackClick) -> s.SlackAnswer | None:
    """Open the modal asking for a typed gate's value (Slack gives 3 seconds to)."""
    channel = notifier.channels.get("slack")
    trigger = click.payload.get("trigger_id")
    if not isinstance(channel, SlackChannel) or not isinstance(trigger, str):
        return s.SlackAnswer.ephemeral("This gate cannot be answered from here: use the console.")
    failed = await channel.open_view(trigger, answer_view(click.button, click.message_id))
    if failed:
        log.warning("slack: could not open the form for %s: %s", click.message_id, failed)
        return s.SlackAnswer.ephemeral(f"Could not open the form ({failed}): use the console.")
    return None


async def _answer_submitted(notifier: Notifier, submitted: _Submitted) -> s.SlackAnswer | None:
    """Signal the gate with the value sent; a refusal (a value of the wrong type, not
    allowed) is shown under the form's field, which stays open."""
    answer = await answer_click(
        notifier,
        submitted.button,
        await _vouched(notifier, submitted.actor, submitted.user),
        submitted.message_id,
        "Slack",
        value=submitted.value,
    )
    note = escape_mrkdwn(answer.note).replace("{who}", f"<@{submitted.user}>")
    if not answer.settled:
        plain = answer.note.replace("{who}", "you")
        return s.SlackAnswer(response_action="errors", errors={"value": truncate(plain, 2000)})
    channel = notifier.channels.get("slack")
    channel_id, _, ts = submitted.message_id.partition("/")
    if isinstance(channel, SlackChannel) and ts:
        failed = await channel.reply(channel_id, ts, note)
        if failed:
            log.warning("slack: could not say %r on %s: %s", note, submitted.message_id, failed)
    return None


def _slack_user(payload: dict[str, Any]) -> str:
    user = _at(payload, "user", "id")
    if not isinstance(user, str) or not _SLACK_USER.fullmatch(user):
        raise InputError(Problem("payload.user.id", f"must be a Slack user id, got {user!r}"))
    return user


def _at(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


async def _show_on_slack(
    notifier: Notifier, click: _SlackClick, answer: ClickAnswer, note: str
) -> str:
    """Update the clicked message with what came of it; "" when done, else why not."""
    channel = notifier.channels.get("slack")
    message = click.payload.get("message")
    if not isinstance(channel, SlackChannel) or not click.message_id:
        return "no message to update"
    if not isinstance(message, dict) or not isinstance(message.get("blocks"), list):
        return "the callback carries no message"
    blocks = [_without_answered(b, click, answer) for b in message["blocks"]]
    kept = [b for b in blocks if b is not None][: MAX_BLOCKS - 1]
    kept.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(note, MAX_FIELD)}]}
    )
    text = str(message.get("text") or note)
    failed = await channel.update_message(click.channel, click.ts, {"text": text, "blocks": kept})
    if failed:
        log.warning("slack: could not show %r on %s: %s", note, click.message_id, failed)
    return failed


def _without_answered(block: Any, click: _SlackClick, answer: ClickAnswer) -> dict[str, Any] | None:
    """The block as it stays: a settled answer's buttons come off our actions block."""
    if not isinstance(block, dict):
        return None
    if block.get("block_id") != ACTIONS_BLOCK or not answer.settled:
        return block
    gone = {f"{ANSWER_PREFIX}{a.value}" for a in click.button.action.family}
    given = block.get("elements")
    elements = [
        e
        for e in (given if isinstance(given, list) else [])
        if isinstance(e, dict) and e.get("action_id") not in gone
    ]
    return {**block, "elements": elements} if elements else None


# -- Mattermost -----------------------------------------------------------------------------


async def mattermost_action(
    notifier: Notifier,
    data: Any,
    metrics: Metrics,
    clock: Callable[[], float] = time.time,
) -> s.MattermostAnswer:
    """Answer one Mattermost button callback: the post as it now reads (``update``), or
    an ``ephemeral_text``. Raises :class:`ChatRefusal` before doing anything."""
    secret = _mattermost_secret(notifier)
    if secret is None:
        metrics.chat_callbacks.labels("mattermost", "not_configured").inc()
        raise ChatRefusal(
            404,
            "not configured",
            [Problem("mattermost.action_secret", "is not set: buttons are not answered here")],
        )
    try:
        body = s.parse(s.MattermostAction, data)
        button = verify_context(body.context, secret, clock())
        who = _mattermost_user(body)
    except Forbidden as forged:
        metrics.chat_callbacks.labels("mattermost", "unverified").inc()
        log.warning("mattermost: callback refused: %s", forged.problems[0].message)
        raise ChatRefusal(401, "unauthorized", forged.problems) from None
    except InputError as wrong:
        metrics.chat_callbacks.labels("mattermost", "invalid").inc()
        raise ChatRefusal(400, "invalid request", wrong.problems) from None
    actor = Actor(f"mattermost:{who}", "mattermost-hmac")
    answer = await answer_click(notifier, button, actor, body.post_id, "Mattermost")
    metrics.chat_callbacks.labels("mattermost", "answered").inc()
    note = escape_markdown(answer.note).replace("{who}", f"@{who}")
    channel = notifier.channels.get("mattermost")
    updated = None
    if isinstance(channel, MattermostChannel) and body.post_id and not answer.retry:
        updated = await channel.answered_post(body.post_id, note, button, answer.settled)
    if updated is None:
        return s.MattermostAnswer(ephemeral_text=note)
    return s.MattermostAnswer(update=s.MattermostUpdate(**updated))


def _mattermost_secret(notifier: Notifier) -> bytes | None:
    config = notifier.settings.channel("mattermost")
    if config is None or not getattr(config, "uses_api", False):
        return None
    secret: str | None = config.resolved_action_secret()
    return secret.encode() if secret else None


_MATTERMOST_ID = re.compile(r"[a-z0-9]{26}")


def _mattermost_user(body: s.MattermostAction) -> str:
    """Who clicked: the user name Mattermost gives, else the user id."""
    if USER_NAME.fullmatch(body.user_name):
        return body.user_name
    if _MATTERMOST_ID.fullmatch(body.user_id):
        return body.user_id
    raise InputError(Problem("user_id", f"must be a Mattermost user id, got {body.user_id!r}"))
