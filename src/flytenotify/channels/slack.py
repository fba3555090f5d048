"""Slack channel: the Web API with a bot token, or an incoming webhook.

Recipients (bot-token mode):

- ``#name`` (or a bare lower-case channel name) or a conversation ID
  (``C...``, ``G...``, ``D...``): ``chat.postMessage`` to that conversation.
- an email address is a person: ``users.lookupByEmail``, ``conversations.open``,
  then ``chat.postMessage`` to the direct-message channel. Both lookups are
  cached for ``lookup_cache_ttl`` seconds. A user ID (``U...``, ``W...``) skips
  the lookup.

In incoming-webhook mode (a ``webhook_url`` and no bot token) every message
goes to the webhook's channel; the recipient is only logged.

Conversations (bot-token mode): the first message of an execution to a
conversation is posted; each later one (a retried run's failure, its
recovery) updates that message in place (``chat.update``) to the latest
state and adds a reply in its thread (``thread_ts``) saying what happened. A
message that can no longer be updated (``message_not_found``,
``cant_update_message``, ``edit_window_closed``: deleted, or past the
workspace's edit window) is replaced by a new post, which the conversation
follows from then on. A digest is the first message of each execution it
names: a later one updates the digest in place (the digest again, each
execution in its latest state) and replies in its thread. A message's id is
``CHANNEL_ID/ts``. An incoming
webhook cannot edit: a later message is a new post that names what it follows.

Messages are Block Kit with a ``text`` fallback. Every value is escaped for
mrkdwn (``&``, ``<``, ``>``) so ``<!channel>`` in an error pings nobody, and
everything is cut to Slack's limits with a visible marker rather than letting
Slack reject the message.

Pacing: Slack allows about one message per second per channel. Messages to
one destination go one at a time, each ``per_channel_interval`` after the
previous one finished; every destination has its own lane, so a burst to
``#a`` never delays ``#b``. An HTTP 429 blocks that channel (for the lookups:
that method) until its ``Retry-After`` has passed; the attempt itself returns
*transient* with ``retry_after`` so the engine records it and schedules the
retry. A later send waits out a short block (``max_wait``) and answers
transient at once for a longer one, without calling Slack. We use the
official ``slack_sdk`` clients, but without their retry handlers: retrying is
the engine's job, and a hidden retry would be missing from the audit trail.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
from cachetools import TTLCache
from pydantic import Field, SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from flytenotify.channels._http import (
    LOOKUPS_KEPT,
    describe_transport_error,
    http_status_result,
    new_session,
    parse_retry_after,
)
from flytenotify.channels._pacing import Busy, Pacer
from flytenotify.channels.base import (
    ChannelDefaults,
    ChannelSpec,
    DigestLine,
    Outcome,
    SendResult,
    SharedPacing,
    always,
    error_label,
    follows_earlier,
    plain_allow_forms,
)
from flytenotify.chat import Button, ChatAction, answer_lines, offered
from flytenotify.domain import Delivery, DeliveryReason, Digest, Thread, phase_name
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.sections import Section, read_secret

__all__ = [
    "PERMANENT_ERRORS",
    "SlackChannel",
    "digest_message",
    "escape_mrkdwn",
    "incoming_webhook_answer",
    "headline",
    "slack_message",
    "truncate",
]

log = logging.getLogger(__name__)


class SlackConfig(Section):
    """``[slack]``: Slack Web API (bot token) or an incoming webhook."""

    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    webhook_url: SecretStr | None = None  # incoming-webhook mode, for teams without a bot
    webhook_url_file: Path | None = None
    base_url: str = "https://slack.com/api/"  # tests point this at a loopback server
    per_channel_interval: float = Field(default=1.0, ge=0)  # Slack allows ~1 msg/s/channel
    lookup_cache_ttl: float = Field(default=3600.0, ge=0)  # users.lookupByEmail results
    timeout: float = Field(default=10.0, gt=0)

    # The Slack app's signing secret: with it, Web API messages carry answer buttons
    # and /api/v1/chat/slack/interactions takes their callbacks (verified by it).
    signing_secret: SecretStr | None = None
    signing_secret_file: Path | None = None

    _secret_pairs = (
        ("bot_token", "bot_token_file"),
        ("webhook_url", "webhook_url_file"),
        ("signing_secret", "signing_secret_file"),
    )

    def resolved_signing_secret(self) -> str | None:
        return read_secret(self.signing_secret, self.signing_secret_file)

    @property
    def answers(self) -> bool:
        """Whether messages carry answer buttons: only a bot's (an incoming webhook's
        messages cannot be interactive) and only when callbacks can be verified."""
        signing = self.signing_secret is not None or self.signing_secret_file is not None
        return self.uses_bot_token and signing

    def resolved_bot_token(self) -> str | None:
        return read_secret(self.bot_token, self.bot_token_file)

    def resolved_webhook_url(self) -> str | None:
        return read_secret(self.webhook_url, self.webhook_url_file)

    @property
    def enabled(self) -> bool:
        return any(
            v is not None
            for v in (self.bot_token, self.bot_token_file, self.webhook_url, self.webhook_url_file)
        )

    @property
    def uses_bot_token(self) -> bool:
        return self.bot_token is not None or self.bot_token_file is not None


_T = TypeVar("_T")

# Slack's documented limits (Block Kit reference, chat.postMessage).
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_TEXT = 4000  # chat.postMessage truncates longer text; we cut it visibly instead
MAX_URL = 3000
MAX_ELEMENTS = 25  # an actions block's elements

TRUNCATED = "… (truncated)"

# Errors Slack gives for a message that will never be accepted as sent. Any
# other ok:false answer is treated as transient: a delivery retried in vain
# ends up dead-lettered with the error, one refused in error would be lost.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "ekm_access_denied",
        "team_access_not_granted",
        "access_denied",
        "restricted_action",
        "users_not_found",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "too_many_attachments",
    }
)

# chat.update's answers for a message that can no longer be updated: deleted,
# not the bot's, or past the workspace's edit window. A new post takes its place.
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})

# A 429 block closer than this is sat out inside send(); a longer one makes the
# attempt return transient at once, leaving the wait to the engine's scheduler.
DEFAULT_MAX_WAIT = 10.0

# The identities a Slack user's click is vouched as ([[actions.allow]] kinds): the
# user, and the user groups Slack says they are in (usergroups.users.list).
SLACK_KINDS = frozenset({"slack", "slack-group"})
GROUP_KIND = "slack-group"


# --------------------------------------------------------------------------
# Message layout
# --------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters so a value is shown, never parsed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int, marker: str = TRUNCATED) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``marker`` if cut."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(marker))]
    # Do not leave half an escape such as "&l" from "&lt;" at the end.
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return (cut + marker)[:limit]


_PHASE_WORDING: dict[int, tuple[str, str]] = {
    WorkflowExecutionPhase.SUCCEEDED: (":white_check_mark:", "succeeded"),
    WorkflowExecutionPhase.FAILED: (":x:", "failed"),
    WorkflowExecutionPhase.ABORTED: (":no_entry_sign:", "was aborted"),
    WorkflowExecutionPhase.TIMED_OUT: (":hourglass:", "timed out"),
}


def headline(delivery: Delivery) -> str:
    """What ended how, e.g. ``:x: Execution proj/dev/a1b2 failed`` (plain text); for a
    deadline's alert or follow-up, its subject (``:alarm_clock: Deadline etl: ...``)."""
    if delivery.reason is DeliveryReason.DEADLINE:
        return f":alarm_clock: {delivery.message.subject}"
    if delivery.reason is DeliveryReason.DEADLINE_RESOLVED:
        emoji = _PHASE_WORDING.get(delivery.phase, (":information_source:", ""))[0]
        return f"{emoji} {delivery.message.subject}"
    phase = phase_name(delivery.phase)
    emoji, how = _PHASE_WORDING.get(delivery.phase, (":information_source:", f"ended {phase}"))
    return f"{emoji} Execution {delivery.execution_id} {how}"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(truncate(text, MAX_SECTION))}


def _field(label: str, value: str) -> dict[str, str]:
    return _mrkdwn(truncate(f"*{label}*\n{escape_mrkdwn(value)}", MAX_FIELD))


def _launch_plan_name(delivery: Delivery) -> str:
    lp = delivery.launch_plan
    variables = delivery.message.variables
    name = lp.name if lp else variables.get("launch_plan.name", "")
    version = lp.version if lp else variables.get("launch_plan.version", "")
    return f"{name}@{version}" if name and version else name


def _fields(delivery: Delivery) -> dict[str, Any]:
    eid = delivery.execution_id
    fields = [
        _field("Project", eid.project),
        _field("Domain", eid.domain),
        _field("Execution", eid.name),
        _field("Launch plan", _launch_plan_name(delivery) or "unknown"),
    ]
    workflow = delivery.message.variables.get("workflow.name", "")
    if workflow:
        fields.append(_field("Workflow", workflow))
    return {"type": "section", "fields": fields[:MAX_FIELDS]}


def _error_section(variables: dict[str, str]) -> dict[str, Any]:
    detail = error_label(variables)
    label = f"*Error* ({escape_mrkdwn(detail)})" if detail else "*Error*"
    # A ``` inside the message would close our code block early.
    message = escape_mrkdwn(variables["error.message"]).replace("```", "`\u200b``")
    room = MAX_SECTION - len(label) - len("\n```\n\n```")
    return _section(f"{label}\n```\n{truncate(message, room)}\n```")


ACTIONS_BLOCK = "flytenotify_actions"  # the block_id of a message's buttons
ANSWER_PREFIX = "flytenotify_"  # an answer button's action_id: this and its ChatAction
_STYLES = {ChatAction.APPROVE: "primary", ChatAction.REJECT: "danger"}


def _console_button(url: str) -> dict[str, Any] | None:
    if not url.startswith(("https://", "http://")) or len(url) > MAX_URL:
        return None
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": "View in Flyte console"},
        "url": url,
        "action_id": "flytenotify_open_console",
    }


def answer_button(button: Button) -> dict[str, Any]:
    """A Block Kit button for ``button``: its value says what it does (Slack signs
    the callback that carries it back)."""
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": button.action.label},
        "action_id": f"{ANSWER_PREFIX}{button.action.value}",
        "value": button.encode(),
    }
    style = _STYLES.get(button.action)
    if style:
        element["style"] = style
    return element


ANSWER_VIEW = "flytenotify_answer"  # the callback_id of the modal asking a gate's value


def answer_view(button: Button, message_id: str, expects: str = "") -> dict[str, Any]:
    """The modal asking for a typed gate's value; ``private_metadata`` says which gate
    and which message (Slack gives it back, signed, with the submission)."""
    metadata = json.dumps({"button": button.to_json(), "message": message_id})
    what = f" ({expects})" if expects else ""
    label = truncate(f"Value for {button.signal_id}{what}", 2000)
    return {
        "type": "modal",
        "callback_id": ANSWER_VIEW,
        "title": {"type": "plain_text", "text": "Answer the gate"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": metadata,
        "blocks": [
            {
                "type": "input",
                "block_id": "value",
                "label": {"type": "plain_text", "text": label},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }


def _actions(url: str, buttons: Sequence[Button]) -> dict[str, Any] | None:
    console = _console_button(url)
    elements = [answer_button(b) for b in buttons]
    elements += [console] if console is not None else []
    if not elements:
        return None
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": elements[:MAX_ELEMENTS]}


def _context(variables: dict[str, str]) -> dict[str, Any] | None:
    parts = [
        f"{label} {escape_mrkdwn(variables[key])}"
        for key, label in (("occurred_at", "Ended"), ("duration", "ran for"))
        if variables.get(key)
    ]
    if not parts:
        return None
    return {"type": "context", "elements": [_mrkdwn(truncate(" · ".join(parts), MAX_FIELD))]}


def slack_message(delivery: Delivery, buttons: Sequence[Button] = ()) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}`` for ``delivery``, within Slack's limits;
    ``buttons`` are the answers it offers (:func:`flytenotify.chat.offered`)."""
    if delivery.digest is not None:
        return digest_message(delivery.digest)
    message = delivery.message
    variables = message.variables
    title = headline(delivery)
    header = {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(title, MAX_HEADER), "emoji": True},
    }
    blocks: list[dict[str, Any] | None] = [header]
    if message.slack_text.strip():
        blocks.append(_section(message.slack_text))  # already escaped by the renderer
    blocks.append(_fields(delivery))
    if variables.get("error.message"):
        blocks.append(_error_section(variables))
    blocks.append(_actions(variables.get("console_url", ""), buttons))
    blocks.append(_context(variables))
    fallback = escape_mrkdwn(title)
    if message.slack_text.strip():
        fallback = f"{fallback}\n{message.slack_text}"
    present = [block for block in blocks if block is not None]
    return {"text": truncate(fallback, MAX_TEXT), "blocks": present[:MAX_BLOCKS]}


# How many executions a digest shows in full (error and console link); the
# rest are named in a compact list, as far as Slack's block limit allows.
DIGEST_DETAILED = 10
_DIGEST_ERROR = 300  # characters of each execution's error shown in a digest


def _digest_line(line: DigestLine) -> str:
    """One execution of a digest: its name (linked to the console) and error."""
    name = escape_mrkdwn(line.execution)
    url = line.console_url
    linked = url.startswith(("https://", "http://")) and len(url) < MAX_URL and "|" not in url
    text = f"<{url}|{name}>" if linked else f"*{name}*"
    if line.error:
        code = f"{escape_mrkdwn(line.error_code)}: " if line.error_code else ""
        text += f"\n{code}{truncate(escape_mrkdwn(line.error), _DIGEST_ERROR)}"
    return text


def _name_lists(deliveries: tuple[Delivery, ...], room: int) -> list[dict[str, Any]]:
    """Sections naming ``deliveries`` compactly, at most ``room`` of them; what does
    not fit is left to the full list."""
    sections: list[dict[str, Any]] = []
    text = ""
    for delivery in deliveries:
        name = f"`{escape_mrkdwn(str(delivery.execution_id))}`"
        if text and len(text) + len(name) + 2 > MAX_SECTION:
            if len(sections) + 1 >= room:
                break
            sections.append(_section(text))
            text = ""
        text = f"{text}, {name}" if text else name
    if text and len(sections) < room:
        sections.append(_section(text))
    return sections


def digest_message(digest: Digest) -> dict[str, Any]:
    """One message naming every execution of ``digest``, within Slack's limits.

    The first executions in full (error, console link), the others by name;
    then where to see them all: the link to flytenotify's list when
    ``templates.public_url`` is set, else the CLI command.
    """
    members = digest.deliveries
    emoji = _PHASE_WORDING.get(members[0].phase, (":information_source:", ""))[0]
    title = f"{emoji} {digest.title}"
    header = {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(title, MAX_HEADER), "emoji": True},
    }
    shown, rest = members[:DIGEST_DETAILED], members[DIGEST_DETAILED:]
    blocks: list[dict[str, Any]] = [header]
    blocks += [_section(_digest_line(DigestLine.of(delivery))) for delivery in shown]
    if rest:
        blocks.append(_section(f"*…and {len(rest)} more:*"))
        blocks += _name_lists(rest, MAX_BLOCKS - len(blocks) - 2)
    where = (
        f"<{digest.link}|All {digest.count} executions in flytenotify>"
        if digest.link
        else f"All {digest.count}: `{escape_mrkdwn(digest.list_command)}`"
    )
    context = f"{where} · {escape_mrkdwn(digest.id)}"
    blocks.append({"type": "context", "elements": [_mrkdwn(truncate(context, MAX_FIELD))]})
    names = ", ".join(str(d.execution_id) for d in members)
    fallback = f"{escape_mrkdwn(digest.title)}: {escape_mrkdwn(names)}"
    return {"text": truncate(fallback, MAX_TEXT), "blocks": blocks[:MAX_BLOCKS]}


def updated_root(delivery: Delivery, buttons: Sequence[Button] = ()) -> dict[str, Any]:
    """What a conversation's first message becomes when ``delivery`` follows it.

    The execution's latest state; for a recovery (another execution, the one
    that succeeded) the first message as it was, marked recovered. A digest
    stays the digest, each execution it names in its latest state.
    """
    thread = delivery.thread
    if thread is not None and thread.digest is not None:
        message = digest_message(thread.digest)
        return _marked_recovered(message, delivery) if delivery.is_recovery else message
    if not delivery.is_recovery or thread is None or thread.root is None:
        return _with_answers(slack_message(delivery, buttons), thread)
    return _marked_recovered(_with_answers(slack_message(thread.root), thread), delivery)


def _with_answers(message: dict[str, Any], thread: Thread | None) -> dict[str, Any]:
    """``message`` still saying who acknowledged or answered it ("Acknowledged by
    @ana at 02:14 UTC"), as the clicks' answers had written it."""
    answers = thread.answers if thread is not None else ()
    lines = answer_lines(answers, "slack", _mention, escape_mrkdwn)
    if not lines:
        return message
    block = {"type": "context", "elements": [_mrkdwn(truncate("\n".join(lines), MAX_FIELD))]}
    return {"text": message["text"], "blocks": [*message["blocks"][: MAX_BLOCKS - 1], block]}


def _mention(user: str) -> str:
    return f"<@{user}>" if user.isalnum() else escape_mrkdwn(user)


def _marked_recovered(message: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    recovered = f":white_check_mark: *Recovered:* {escape_mrkdwn(delivery.message.subject)}"
    block = {"type": "context", "elements": [_mrkdwn(truncate(recovered, MAX_FIELD))]}
    blocks = [*message["blocks"][: MAX_BLOCKS - 1], block]
    text = truncate(f"{message['text']}\n{escape_mrkdwn(delivery.message.subject)}", MAX_TEXT)
    return {"text": text, "blocks": blocks}


def thread_reply(delivery: Delivery) -> dict[str, Any]:
    """The reply in a conversation's thread saying what happened: the headline and text."""
    return {"text": slack_message(delivery)["text"]}


def follow_up_note(execution: str) -> str:
    """For a post that cannot update the first message: which one it follows."""
    return f"_Follows the earlier message about {escape_mrkdwn(execution)}_"


_MESSAGE_ID = re.compile(r"([CGD][A-Z0-9]{6,})/(\d+\.\d+)")


def _split_id(message_id: str) -> tuple[str, str] | None:
    """``CHANNEL_ID/ts`` as its parts, or None for an id of another form (a first
    message sent through an incoming webhook has none Slack would know)."""
    found = _MESSAGE_ID.fullmatch(message_id)
    return (found.group(1), found.group(2)) if found else None


# --------------------------------------------------------------------------
# Incoming webhooks' answers
# --------------------------------------------------------------------------


def incoming_webhook_answer(status: int, body: str, retry_after: str | None) -> SendResult:
    """What Slack's answer to an incoming-webhook post means.

    Slack answers ``ok`` (200), or an error code as text with the status:
    ``invalid_payload`` and ``no_text`` (400), ``action_prohibited`` (403),
    ``no_service`` and ``channel_not_found`` (404), ``channel_is_archived``
    (410): permanent, as every 4xx but 408 and 429 is. A 429 is transient
    after its ``Retry-After`` (a second when it gives none), a 5xx after the
    engine's backoff.
    """
    wait = parse_retry_after(retry_after)
    if status == 429:
        wait = wait or 1.0
    reply = f"incoming webhook: {status} {body.strip()[:300]}".rstrip()
    return http_status_result(status, reply, wait)


# --------------------------------------------------------------------------
# Recipients
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    kind: Literal["channel", "email", "user"]
    value: str


_CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{6,}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CHANNEL_NAME = re.compile(r"#\S+|[a-z0-9][a-z0-9._-]{0,79}")


def _parse_recipient(recipient: str) -> _Recipient | None:
    text = recipient.strip()
    if _EMAIL.fullmatch(text):
        return _Recipient("email", text)
    if _CONVERSATION_ID.fullmatch(text):
        return _Recipient("channel", text)
    if _USER_ID.fullmatch(text):
        return _Recipient("user", text)
    if _CHANNEL_NAME.fullmatch(text):
        return _Recipient("channel", text if text.startswith("#") else f"#{text}")
    return None


# --------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------


class _Stop(Exception):
    """Ends a send early with its result (a failed lookup, a rate limit...)."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.reply)
        self.result = result


class _Gone(Exception):
    """The message to update can no longer be updated (:data:`MESSAGE_GONE`)."""


def _slack_error(err: SlackApiError) -> str:
    data = getattr(err.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "")
    return ""


def _method_key(method: str) -> str:
    return f"method:{method}"


class SlackChannel(ChannelDefaults):
    """Posts Block Kit messages with a bot token, or to an incoming webhook."""

    name: str = "slack"

    def __init__(
        self,
        config: SlackConfig,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        shared_pacing: SharedPacing | None = None,
    ) -> None:
        self._config = config
        self._token = config.resolved_bot_token()
        self._webhook_url = None if self._token else config.resolved_webhook_url()
        if not self._token and not self._webhook_url:
            raise ValueError("slack: configure bot_token(_file) or webhook_url(_file)")
        self._pacer = Pacer(max_wait, shared=shared_pacing)
        ttl = config.lookup_cache_ttl
        self._users: TTLCache[str, str] = TTLCache(LOOKUPS_KEPT, ttl)  # email -> user ID
        # user group ID -> its members' IDs
        self._groups: TTLCache[str, frozenset[str]] = TTLCache(LOOKUPS_KEPT, ttl)
        self._dms: TTLCache[str, str] = TTLCache(LOOKUPS_KEPT, ttl)  # user ID -> DM channel ID
        self._http: aiohttp.ClientSession | None = None
        self._actions: Any = None  # [actions] once answers are offered (offer_answers)
        # slack_sdk's clients take an int timeout; ours lives on the session anyway.
        timeout = max(1, math.ceil(config.timeout))
        self._web = AsyncWebClient(
            token=self._token, base_url=config.base_url, timeout=timeout, retry_handlers=[]
        )
        self._hook = AsyncWebhookClient(
            url=self._webhook_url or "", timeout=timeout, retry_handlers=[]
        )

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop; shared for keep-alive.
        if self._http is None or self._http.closed:
            # Unbounded pool: the dispatcher limits Slack's sends in flight.
            self._http = new_session(self._config.timeout)
            self._web.session = self._http
            self._hook.session = self._http
        return self._http

    def offer_answers(self, settings: Any) -> None:
        """Messages carry answer buttons from now on, when the configuration can answer
        them (:attr:`SlackConfig.answers`); which ones ``[[actions.allow]]`` says."""
        if self._config.answers and self._token is not None:
            self._actions = settings.actions
        elif self._config.resolved_signing_secret():
            log.warning(
                "slack: signing_secret is set, but messages go through an incoming webhook,"
                " which cannot carry buttons: none are shown"
            )

    def buttons(self, delivery: Delivery) -> list[Button]:
        """The answer buttons a message about ``delivery`` carries here."""
        if self._actions is None:
            return []
        return offered(delivery, self._actions, SLACK_KINDS, forms=True)

    async def send(self, delivery: Delivery) -> SendResult:
        message = slack_message(delivery, self.buttons(delivery))
        self._session()
        try:
            if self._token is None:
                return await self._send_webhook(delivery, message)
            return await self._send_api(delivery, message)
        except _Stop as stop:
            return stop.result

    # -- Web API ------------------------------------------------------------

    async def _send_api(self, delivery: Delivery, message: dict[str, Any]) -> SendResult:
        recipient = _parse_recipient(delivery.recipient)
        if recipient is None:
            return SendResult.permanent(
                f"not a Slack channel (#name or ID) or email address: {delivery.recipient!r}"
            )
        try:
            lane = await self._conversation(recipient)
            root = _split_id(delivery.thread.root_id) if delivery.thread is not None else None
            if root is not None:
                return await self._follow(delivery, lane, *root)
            return await self._post(lane, lane, message)
        except _Stop as stop:
            if recipient.kind != "channel" and stop.result.outcome is Outcome.PERMANENT:
                self._forget(recipient)  # the person may have changed: look up afresh
            raise

    async def _post(
        self, lane: str, channel: str, message: dict[str, Any], thread_ts: str | None = None
    ) -> SendResult:
        """``chat.postMessage`` in ``lane``'s pacing slot: a new message, or a reply."""
        response = await self._call(
            lane,
            self._config.per_channel_interval,
            "chat.postMessage",
            lambda: self._web.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                **message,
            ),
        )
        posted, ts = response.get("channel"), response.get("ts")
        where = f" thread_ts={thread_ts}" if thread_ts else ""
        reply = f"chat.postMessage ok: channel={posted} ts={ts}{where}"
        sent_as = f"{posted}/{ts}" if posted and ts else ""
        in_reply_to = f"{posted}/{thread_ts}" if thread_ts and posted else ""
        return SendResult.delivered(reply, sent_as, in_reply_to)

    async def _follow(self, delivery: Delivery, lane: str, channel: str, ts: str) -> SendResult:
        """Update the conversation's first message to the latest state, then reply in
        its thread; a first message that is gone is replaced by a new post."""
        update = updated_root(delivery, self.buttons(delivery))
        try:
            await self._call(
                _method_key("chat.update"),
                0.0,
                "chat.update",
                lambda: self._web.chat_update(channel=channel, ts=ts, **update),
            )
        except _Gone as gone:
            result = await self._post(
                lane, channel, slack_message(delivery, self.buttons(delivery))
            )
            return replace(result, reply=f"chat.update: {gone}; posted anew: {result.reply}")
        return await self._post(lane, channel, thread_reply(delivery), thread_ts=ts)

    async def _conversation(self, recipient: _Recipient) -> str:
        if recipient.kind == "channel":
            return recipient.value
        user = recipient.value
        if recipient.kind == "email":
            user = await self._user_id(recipient.value)
        return await self._dm_channel(user)

    async def _user_id(self, email: str) -> str:
        return await self._cached_id(
            self._users,
            email.lower(),
            "users.lookupByEmail",
            lambda: self._web.users_lookupByEmail(email=email),
            "user",
        )

    async def _dm_channel(self, user_id: str) -> str:
        return await self._cached_id(
            self._dms,
            user_id,
            "conversations.open",
            lambda: self._web.conversations_open(users=user_id),
            "channel",
        )

    async def _cached_id(
        self,
        cache: TTLCache[str, str],
        key: str,
        method: str,
        call: Callable[[], Awaitable[AsyncSlackResponse]],
        field: str,
    ) -> str:
        """``answer[field]["id"]`` of ``method``, cached: a person is looked up once per TTL."""
        cached = cache.get(key)
        if cached is not None:
            return cached
        response = await self._call(_method_key(method), 0.0, method, call)
        found = response.get(field)
        found_id = found.get("id") if isinstance(found, dict) else None
        if not isinstance(found_id, str):
            raise _Stop(SendResult.transient(f"{method}: no {field} id in the answer"))
        cache[key] = found_id
        return found_id

    def _forget(self, recipient: _Recipient) -> None:
        user = self._users.get(recipient.value.lower()) if recipient.kind == "email" else None
        self._users.pop(recipient.value.lower(), None)
        self._dms.pop(user or recipient.value, None)

    async def _call(
        self,
        key: str,
        interval: float,
        method: str,
        call: Callable[[], Awaitable[AsyncSlackResponse]],
    ) -> AsyncSlackResponse:
        """One Web API call in ``key``'s pacing slot; a failure becomes a ``_Stop``."""
        try:
            return await self._pacer.run(key, interval, call)
        except Busy as busy:
            reply = f"{method}: next free slot for {key} in {busy.wait:.1f}s (Slack rate limit)"
            raise _Stop(SendResult.transient(reply, retry_after=busy.wait)) from None
        except SlackApiError as err:
            if method == "chat.update" and _slack_error(err) in MESSAGE_GONE:
                raise _Gone(_slack_error(err)) from None
            raise _Stop(self._api_error(method, key, err)) from None
        except Exception as err:  # a malformed answer must not crash the dispatcher either
            if not isinstance(err, aiohttp.ClientError | TimeoutError | OSError):
                log.exception("slack: unexpected failure in %s", method)
            reply = f"{method}: {describe_transport_error(err)}"
            raise _Stop(SendResult.transient(reply)) from None

    def _api_error(self, method: str, key: str, err: SlackApiError) -> SendResult:
        status = int(getattr(err.response, "status_code", 0) or 0)
        error = _slack_error(err)
        if status == 429:
            headers = getattr(err.response, "headers", None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After")) or 1.0
            self._pacer.block(key, retry_after)
            reply = f"{method}: HTTP 429 {error or 'ratelimited'}, Retry-After {retry_after:g}s"
            return SendResult.transient(reply, retry_after)
        if error in PERMANENT_ERRORS:
            return SendResult.permanent(f"{method}: {error}")
        reply = f"{method}: HTTP {status} {error or 'no error code'}"
        if 200 <= status < 300 or status == 0:
            return SendResult.transient(reply)  # an ok:false we do not know: see PERMANENT_ERRORS
        return http_status_result(status, reply)  # 5xx later; a 404 from a wrong base_url never

    async def update_message(self, channel: str, ts: str, message: dict[str, Any]) -> str:
        """``chat.update`` of a message the bot posted, to show what a click came to;
        "" when Slack took it, else what went wrong (in one line)."""
        self._session()
        call = lambda: self._web.chat_update(channel=channel, ts=ts, **message)  # noqa: E731
        try:
            await self._call(_method_key("chat.update"), 0.0, "chat.update", call)
        except _Gone as gone:
            return f"chat.update: {gone}"
        except _Stop as stop:
            return stop.result.reply
        return ""

    async def groups_of(self, user: str, groups: Collection[str]) -> tuple[str, ...]:
        """Which of the user groups ``groups`` (IDs, ``S...``) ``user`` is in, as
        ``slack-group:ID`` claims, by ``usergroups.users.list`` (cached like the
        other lookups). A group Slack cannot list counts as one the user is not
        in: a click is refused rather than allowed on a guess."""
        self._session()
        found = []
        for group in sorted(groups):
            try:
                members = await self._members(group)
            except _Stop as stop:
                log.warning("slack: cannot list user group %s: %s", group, stop.result.reply)
                continue
            if user in members:
                found.append(f"{GROUP_KIND}:{group}")
        return tuple(found)

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached is not None:
            return cached
        method = "usergroups.users.list"
        call = lambda: self._web.usergroups_users_list(usergroup=group)  # noqa: E731
        response = await self._call(_method_key(method), 0.0, method, call)
        users = response.get("users")
        members = (
            frozenset(u for u in users if isinstance(u, str))
            if isinstance(users, list)
            else frozenset()
        )
        self._groups[group] = members
        return members

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        """``views.open``: a modal for the person whose click gave ``trigger_id`` (valid
        for 3 seconds); "" when Slack took it, else what went wrong."""
        self._session()
        call = lambda: self._web.views_open(trigger_id=trigger_id, view=view)  # noqa: E731
        try:
            await self._call(_method_key("views.open"), 0.0, "views.open", call)
        except (_Stop, _Gone) as failed:
            return str(failed)
        return ""

    async def reply(self, channel: str, ts: str, text: str) -> str:
        """A reply in the thread of message ``ts``; "" when Slack took it."""
        self._session()
        try:
            await self._post(channel, channel, {"text": text}, thread_ts=ts)
        except _Stop as stop:
            return stop.result.reply
        return ""

    # -- incoming webhook -----------------------------------------------------

    async def _send_webhook(self, delivery: Delivery, message: dict[str, Any]) -> SendResult:
        key = "incoming-webhook"  # one webhook posts to one channel
        thread = delivery.thread
        earlier = follows_earlier(delivery)
        if earlier is not None:  # a webhook cannot edit: say what this one follows
            note = {"type": "context", "elements": [_mrkdwn(follow_up_note(earlier))]}
            message = {**message, "blocks": [note, *message["blocks"]][:MAX_BLOCKS]}
        log.debug("slack: webhook post for recipient %s", delivery.recipient)
        interval = self._config.per_channel_interval
        try:
            response = await self._pacer.run(key, interval, lambda: self._hook.send_dict(message))
        except Busy as busy:
            reply = f"incoming webhook: next free slot in {busy.wait:.1f}s (Slack rate limit)"
            return SendResult.transient(reply, retry_after=busy.wait)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return SendResult.transient(f"incoming webhook: {describe_transport_error(err)}")
        result = incoming_webhook_answer(
            response.status_code, response.body, response.headers.get("Retry-After")
        )
        if response.status_code == 429:
            self._pacer.block(key, result.retry_after or 1.0)
        if thread is not None and result.outcome is Outcome.DELIVERED:
            return replace(result, in_reply_to=thread.root_id)
        return result

    # -- lifecycle --------------------------------------------------------------

    async def check(self) -> str:
        """``auth.test`` with the bot token: who we are and in which workspace."""
        if self._token is None:
            return "slack: incoming webhook (cannot be checked without posting)"
        self._session()
        try:
            response = await self._web.auth_test()
        except SlackApiError as err:
            raise RuntimeError(f"slack: auth.test failed: {_slack_error(err)}") from err
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise RuntimeError(f"slack: auth.test failed: {describe_transport_error(err)}") from err
        return (
            f"slack: bot {response.get('user')} in team {response.get('team')} "
            f"({response.get('url')})"
        )

    async def close(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None


# --------------------------------------------------------------------------
# What the registry knows
# --------------------------------------------------------------------------


def _takes(kind: str, recipient: str, config: SlackConfig | None) -> str | None:
    # Every recipient of a Slack notification once Slack is configured (an
    # address is looked up as a user); otherwise email may still carry it.
    return recipient if kind == "slack" and config is not None and config.enabled else None


def _allow_forms(recipient: str) -> set[str]:
    # "#data-alerts" and "data-alerts" name the same channel, in a list or a recipient.
    bare = {form.removeprefix("#") for form in plain_allow_forms(recipient)}
    return bare | {f"#{form}" for form in bare}


def _build(config: SlackConfig, pacing: SharedPacing | None) -> SlackChannel:
    # The ledger spaces Slack sends across replicas, not just in this process.
    return SlackChannel(config, shared_pacing=pacing)


def _preview(delivery: Delivery) -> str:
    return json.dumps(slack_message(delivery), indent=2, ensure_ascii=False)


CHANNEL: ChannelSpec[SlackConfig] = ChannelSpec(
    name="slack",
    media=frozenset({"slack_text"}),
    section="slack",
    config=SlackConfig,
    build=_build,
    takes=_takes,
    preview=_preview,
    summary=lambda config: "bot token" if config.uses_bot_token else "webhook",
    usable=lambda config: config.enabled,
    kinds=frozenset({"slack"}),
    test_kind="slack",
    allow_forms=_allow_forms,
    digests=always,
    threads=True,
    answers=True,
)
