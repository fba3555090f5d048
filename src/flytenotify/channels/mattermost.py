"""Mattermost channel: incoming webhooks, or REST API v4 posts with a bot token.

Recipients:

- ``mattermost:NAME``: the incoming webhook ``[mattermost.webhooks.NAME]`` when
  one is configured, else the channel NAME in the default team
  (``[mattermost] team``) through the REST API;
- ``mattermost:TEAM/CHANNEL``: that channel of that team, through the REST API.

The REST API needs ``url`` and ``bot_token`` (or ``bot_token_file``); a
channel's id is looked up once (``GET /api/v4/teams/name/{team}/channels/name/{channel}``)
and kept for ``lookup_cache_ttl`` seconds, then the message is posted with
``POST /api/v4/posts``. A webhook is ``POST``-ed ``{"text", "channel",
"username", "icon_url", "props"}`` and answers 200 ``ok``.

Mattermost's errors are JSON (``{"id", "message", "status_code", ...}``) and
land in the reply. 2xx is delivered; 429 (``Retry-After`` or
``X-Ratelimit-Reset`` honoured), 408 and 5xx are transient; 400, 401/403 (a
bad token, or a bot that is not in the channel), 404 (no such channel or
webhook) and 413 are permanent. A 429 from the REST API holds every API call
of this process (the limit is the token's), one from a webhook that webhook.

The message is Mattermost Markdown. Every value from the execution is
escaped, so ``**`` or ``[x](y)`` in an error is text, and an ``@`` is
followed by a zero-width joiner so that ``@channel`` or ``@all`` in an error
notifies nobody. Posts are kept under Mattermost's :data:`MAX_POST_CHARS`
by cutting the longest texts (in practice the error) first, visibly.
Webhook URLs are credentials: only their hosts are ever shown.

Conversations (REST API): the first message of an execution to a channel is
posted; each later one updates that post in place
(``PUT /api/v4/posts/{id}/patch``) to the latest state and replies in its
thread (a post with ``root_id``). A post that is gone (404) is replaced by a
new one, which the conversation follows from then on. An incoming webhook
cannot edit: a later message is a new post that says what it follows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from cachetools import TTLCache
from pydantic import Field, SecretStr, field_validator
from yarl import URL

from flytenotify.channels._chat import (
    SecretUrlTarget,
    escape_markdown,
    host_of,
    most_that_fit,
    scrub_url,
    shrink_to_fit,
    truncate,
)
from flytenotify.channels._http import (
    LOOKUPS_KEPT,
    TRANSPORT_ERRORS,
    USER_AGENT,
    decode_reply,
    describe_aiohttp_error,
    env_proxy,
    http_status_result,
    new_session,
    parse_retry_after,
)
from flytenotify.channels._pacing import Busy, Pacer
from flytenotify.channels.base import (
    ChannelDefaults,
    ChannelSpec,
    Outcome,
    SendResult,
    SharedPacing,
    Unreachable,
    always,
    digest_lines,
    error_label,
    follows_earlier,
)
from flytenotify.channels.slack import headline
from flytenotify.chat import Button, ChatAction, answer_lines, offered, sign_context
from flytenotify.domain import Delivery, Digest, Thread
from flytenotify.sections import Section, http_url, read_secret

__all__ = [
    "MAX_POST_CHARS",
    "MattermostChannel",
    "MattermostConfig",
    "MattermostWebhook",
    "defuse_mentions",
    "mattermost_text",
]


log = logging.getLogger(__name__)


class MattermostWebhook(SecretUrlTarget):
    """``[mattermost.webhooks.NAME]``: an incoming webhook, for recipients ``mattermost:NAME``."""

    channel: str | None = None  # post here instead of the webhook's own channel
    username: str | None = None
    icon_url: str | None = None


class MattermostConfig(Section):
    """``[mattermost]``: the REST API (url, bot token, default team) and incoming webhooks."""

    url: str | None = None  # the server, e.g. https://chat.example.com
    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    team: str | None = None  # the team of recipients mattermost:CHANNEL
    timeout: float = Field(default=10.0, gt=0)
    # Seconds between posts to one channel or webhook, kept across replicas.
    # Mattermost's own limit (when enabled) is per token: 10 a second by default.
    per_channel_interval: float = Field(default=0.1, ge=0)
    lookup_cache_ttl: float = Field(default=3600.0, ge=0)  # channel ids
    webhooks: dict[str, MattermostWebhook] = Field(default_factory=dict)

    # Keys the HMAC each message button carries (Mattermost signs nothing): with it
    # and [templates] public_url, REST API posts carry answer buttons whose clicks
    # come to /api/v1/chat/mattermost/actions.
    action_secret: SecretStr | None = None
    action_secret_file: Path | None = None
    action_ttl: float = Field(default=7 * 24 * 3600.0, gt=0)  # seconds a button answers

    _secret_pairs = (("bot_token", "bot_token_file"), ("action_secret", "action_secret_file"))

    def resolved_action_secret(self) -> str | None:
        return read_secret(self.action_secret, self.action_secret_file)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        return None if url is None else http_url(url).rstrip("/")

    @property
    def uses_api(self) -> bool:
        """Whether channels can be posted to through the REST API."""
        has_token = self.bot_token is not None or self.bot_token_file is not None
        return self.url is not None and has_token

    def resolved_bot_token(self) -> str | None:
        return read_secret(self.bot_token, self.bot_token_file)

    def address(self, name: str) -> str:
        """Where ``mattermost:NAME`` posts: a webhook's name, or ``team/channel``."""
        if "/" in name:
            team, _, channel = name.partition("/")
            if not team or not channel or "/" in channel:
                raise Unreachable(
                    f"expected mattermost:NAME or mattermost:TEAM/CHANNEL, got {name!r}"
                )
            self._need_api(f"channel {channel!r} of team {team!r}")
            return name
        if not name:
            raise Unreachable("mattermost: names no webhook or channel")
        if name in self.webhooks:
            return name
        self._need_api(f"no Mattermost webhook named {name!r} is configured, and channel {name!r}")
        if not self.team:
            raise Unreachable(
                f"no Mattermost webhook named {name!r} is configured, and no default team"
                f" ([mattermost] team) says whose channel it is: write mattermost:TEAM/{name}"
            )
        return f"{self.team}/{name}"

    def _need_api(self, what: str) -> None:
        if not self.uses_api:
            raise Unreachable(f"{what} needs the REST API: [mattermost] url and bot_token(_file)")


# Mattermost's post limit (runes, since 5.0; 4,000 on servers that never migrated).
MAX_POST_CHARS = 16_383
_REPLY_BODY_LIMIT = 300
_ZWJ = "\u200d"


# --------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------


# An "@" that can start a mention: not inside a word such as "daily_etl@v7".
_MENTION = re.compile(r"(?<![0-9A-Za-z])@")


def defuse_mentions(text: str) -> str:
    """``@channel``, ``@all``, ``@here`` and ``@someone`` shown, notifying nobody."""
    return _MENTION.sub("@" + _ZWJ, text)


def _plain(text: str) -> str:
    """A value from the execution as Mattermost Markdown that means nothing."""
    return defuse_mentions(escape_markdown(text))


def _code_block(text: str) -> str:
    # A fence longer than any run of backticks inside cannot be closed early.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{defuse_mentions(text)}\n{fence}"


def _console_link(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        return ""
    # ")" or a space would end the link's target early.
    return f"[View in Flyte console]({url.replace(' ', '%20').replace(')', '%29')})"


def _title(delivery: Delivery) -> str:
    emoji, _, rest = headline(delivery).partition(" ")  # ":x: Execution p/d/n failed"
    return f"#### {emoji} {_plain(rest)}"


def _facts(delivery: Delivery) -> str:
    variables = delivery.message.variables
    facts = [("Execution", str(delivery.execution_id))]
    facts.append(("Launch plan", variables.get("launch_plan") or "unknown"))
    if variables.get("workflow.name"):
        facts.append(("Workflow", variables["workflow"]))
    return "\n".join(f"**{label}:** {_plain(value)}" for label, value in facts)


def _error(variables: Mapping[str, str], keep: int) -> str:
    message = variables.get("error.message", "")
    if not message:
        return ""
    detail = error_label(variables)
    label = f"**Error** ({_plain(detail)})" if detail else "**Error**"
    return f"{label}\n{_code_block(truncate(message, keep))}"


def _ended(variables: Mapping[str, str]) -> str:
    parts = [
        f"{label} {_plain(variables[key])}"
        for key, label in (("occurred_at", "Ended"), ("duration", "ran for"))
        if variables.get(key)
    ]
    return " · ".join(parts)


def _compose(delivery: Delivery, keep: Sequence[int]) -> str:
    message = delivery.message
    variables = message.variables
    sections = [
        _title(delivery),
        _plain(truncate(message.text.strip(), keep[1])),
        _facts(delivery),
        _error(variables, keep[0]),
        _ended(variables),
        _console_link(variables.get("console_url", "")),
    ]
    return "\n\n".join(section for section in sections if section)


_DIGEST_ERROR = 200  # characters of each execution's error a digest shows


def _table_cell(text: str) -> str:
    return _plain(text).replace("|", "\\|").replace("\n", " ")


def digest_text(digest: Digest, shown: int) -> str:
    """A digest as a Markdown table of its first ``shown`` executions, and how many
    more there are and where to see them all."""
    emoji = headline(digest.deliveries[0]).partition(" ")[0]
    rows = ["| Execution | Phase | Error |", "| --- | --- | --- |"]
    for line in digest_lines(digest)[:shown]:
        name = _table_cell(line.execution)
        if line.console_url.startswith(("https://", "http://")):
            name = f"[{name}]({line.console_url.replace(' ', '%20').replace(')', '%29')})"
        error = _table_cell(truncate(line.error, _DIGEST_ERROR)) if line.error else ""
        rows.append(f"| {name} | {line.phase} | {error} |")
    rest = digest.count - shown
    where = digest.link or f"`{digest.list_command}`"
    more = f"…and {rest} more. " if rest else ""
    return "\n\n".join(
        [
            f"#### {emoji} {_plain(digest.title)}",
            "\n".join(rows),
            f"{more}All {digest.count}: {where}",
        ]
    )


def mattermost_text(delivery: Delivery, limit: int = MAX_POST_CHARS) -> str:
    """The post's Markdown for ``delivery``, at most ``limit`` characters: the longest
    texts (the error, and the message text quoting it) are cut just enough, visibly.
    A digest lists as many of its executions as fit and says how many more."""
    digest = delivery.digest
    if digest is not None:
        shown = most_that_fit(digest.count, lambda n: len(digest_text(digest, n)) <= limit)
        return digest_text(digest, shown)
    lengths = [
        len(delivery.message.variables.get("error.message", "")),
        len(delivery.message.text.strip()),
    ]
    return shrink_to_fit(
        lambda keep: _compose(delivery, keep), lengths, lambda text: len(text) <= limit
    )


def updated_text(delivery: Delivery) -> str:
    """What a conversation's first post becomes when ``delivery`` follows it: the
    execution's latest state; for a recovery, the first post as it was, marked
    recovered. A digest stays the digest, each execution in its latest state."""
    thread = delivery.thread
    answered = _answers_text(thread)
    if thread is not None and thread.digest is not None:
        first = replace(delivery, digest=thread.digest)
    elif thread is not None and thread.root is not None and delivery.is_recovery:
        first = thread.root
    else:
        return mattermost_text(delivery, MAX_POST_CHARS - len(answered)) + answered
    subject = _plain(delivery.message.subject)
    recovered = f"\n\n**Recovered:** {subject}" if delivery.is_recovery else ""
    room = MAX_POST_CHARS - len(answered) - len(recovered)
    return mattermost_text(first, room) + answered + recovered


# A Mattermost user name: what a click's answer mentions (web/chat.py reads it).
USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def _answers_text(thread: Thread | None) -> str:
    """Who acknowledged or answered the post, as the clicks' answers had written it
    ("Acknowledged by @ana at 02:14 UTC"): a rewritten post keeps saying it."""
    answers = thread.answers if thread is not None else ()
    lines = answer_lines(answers, "mattermost", _mention, _plain)
    return "".join(f"\n\n{line}" for line in lines)


def _mention(name: str) -> str:
    return f"@{name}" if USER_NAME.fullmatch(name) else _plain(name)


_REPLY_TEXT = 4000  # characters of the message's text a reply in a thread shows


def reply_text(delivery: Delivery) -> str:
    """The reply in a conversation's thread saying what happened: the title and text."""
    text = _plain(truncate(delivery.message.text.strip(), _REPLY_TEXT))
    return f"{_title(delivery)}\n\n{text}".strip()


def follow_up_note(execution: str) -> str:
    """For a post that cannot update the first one: which one it follows."""
    return f"_Follows the earlier message about {_plain(execution)}_"


# A post id: 26 lower-case letters and digits (a webhook's post has none we know).
_POST_ID = re.compile(r"[a-z0-9]{26}")

ACTIONS_PATH = "/api/v1/chat/mattermost/actions"
ACTION_PREFIX = "flytenotify"  # a button's id: this and its ChatAction (letters and digits)
MATTERMOST_KINDS = frozenset({"mattermost"})
_STYLES = {ChatAction.APPROVE: "good", ChatAction.REJECT: "danger"}


def _kept(actions: Any, gone: Collection[str]) -> list[Any]:
    """A post's buttons less those ``gone`` names."""
    found = actions if isinstance(actions, list) else []
    return [x for x in found if isinstance(x, dict) and x.get("id") not in gone]


def action_id(action: ChatAction) -> str:
    """A button's id as Mattermost wants it: letters and digits only."""
    return ACTION_PREFIX + re.sub(r"[^a-z0-9]", "", action.value)


@dataclass(frozen=True)
class _Answering:
    """What a post's buttons need: who may act, where clicks go, the HMAC key."""

    actions: Any  # ActionsConfig
    url: str
    secret: bytes
    ttl: float

    def attachments(self, buttons: Sequence[Button], now: float) -> list[dict[str, Any]]:
        if not buttons:
            return []
        expires = now + self.ttl
        actions = [
            {
                "id": action_id(b.action),
                "name": b.action.label,
                "type": "button",
                "style": _STYLES.get(b.action, "default"),
                "integration": {"url": self.url, "context": sign_context(b, self.secret, expires)},
            }
            for b in buttons
        ]
        return [{"actions": actions}]


def _props(delivery: Delivery) -> dict[str, str]:
    # Kept with the post: which delivery it was, to find duplicates after a crash.
    digest = delivery.digest
    return {"flytenotify_delivery": digest.id if digest else delivery.idempotency_key}


# --------------------------------------------------------------------------
# Mattermost's answers
# --------------------------------------------------------------------------


def _describe(status: int, reason: str, body: bytes, charset: str | None) -> str:
    """``404 store.sql_channel.get_by_name.missing.app_error: Unable to find ...``."""
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("message"):
        code = f" {error['id']}" if error.get("id") else ""
        return f"{status}{code}: {error['message']}"
    text = decode_reply(body, charset, _REPLY_BODY_LIMIT)
    return f"{status} {reason}".rstrip() + (f": {text}" if text else "")


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After``, else ``X-Ratelimit-Reset`` (seconds from now, or a Unix time)."""
    found = parse_retry_after(headers.get("Retry-After"))
    if found is not None:
        return found
    reset = parse_retry_after(headers.get("X-Ratelimit-Reset"))
    if reset is not None and reset > 1_000_000_000:  # a Unix time, not a delay
        return max(0.0, reset - now)
    return reset


class _Answer:
    """One HTTP answer, read whole."""

    def __init__(
        self, status: int, reason: str, headers: Mapping[str, str], body: bytes, charset: str | None
    ) -> None:
        self.status = status
        self.reply = _describe(status, reason, body, charset)
        self.retry_after = _retry_after(headers, time.time())
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Stop(Exception):
    """Ends a send early with its result (a failed look-up, a rate limit...)."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.reply)
        self.result = result


# --------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------


class _Webhook:
    def __init__(self, name: str, config: MattermostWebhook) -> None:
        self.url = config.resolved_url(f"mattermost.webhooks.{name}")
        self.parsed_url = URL(self.url)
        self.host = host_of(self.url)
        self.proxy = env_proxy(self.parsed_url)
        self.extra = {
            key: value
            for key, value in (
                ("channel", config.channel),
                ("username", config.username),
                ("icon_url", config.icon_url),
            )
            if value
        }
        # Paced by a digest: the URL itself must not reach the ledger's pacing table.
        self.lane = "mattermost-hook:" + hashlib.sha256(self.url.encode()).hexdigest()[:16]


API_LANE = "mattermost:api"  # every REST call: a 429 is the token's
_JSON = {"Content-Type": "application/json", "User-Agent": USER_AGENT}

_Call = Callable[[], Awaitable[_Answer]]


class MattermostChannel(ChannelDefaults):
    """Posts Markdown to Mattermost channels (REST API) and incoming webhooks."""

    name: str = "mattermost"

    def __init__(
        self, config: MattermostConfig, *, shared_pacing: SharedPacing | None = None
    ) -> None:
        self._config = config
        self._hooks = {name: _Webhook(name, hook) for name, hook in config.webhooks.items()}
        token = config.resolved_bot_token() if config.uses_api else None
        self._api = URL(f"{config.url}/api/v4/") if token and config.url else None
        self._proxy = env_proxy(self._api) if self._api is not None else None
        self._auth = {**_JSON, "Authorization": f"Bearer {token}"} if token else {}
        self._pacer = Pacer(max_wait=config.timeout, shared=shared_pacing)
        # "team/channel" -> channel id
        self._channels: TTLCache[str, str] = TTLCache(LOOKUPS_KEPT, config.lookup_cache_ttl)
        # Created on the first send: an aiohttp session belongs to the running loop.
        self._session: aiohttp.ClientSession | None = None
        self._answering: _Answering | None = None  # set by offer_answers

    def offer_answers(self, settings: Any) -> None:
        """REST API posts carry answer buttons from now on, when their clicks can come
        back (``[templates] public_url``) and be verified (``action_secret``)."""
        secret = self._config.resolved_action_secret()
        public = (settings.templates.public_url or "").strip().rstrip("/")
        if secret and public and self._api is not None:
            url = public + ACTIONS_PATH
            self._answering = _Answering(
                settings.actions, url, secret.encode(), self._config.action_ttl
            )
        elif secret:
            needs = "[templates] public_url" if self._api is not None else "url and bot_token"
            log.warning(
                "mattermost: action_secret is set, but without %s no post has buttons", needs
            )

    def buttons(self, delivery: Delivery) -> list[Button]:
        if self._answering is None:
            return []
        return offered(delivery, self._answering.actions, MATTERMOST_KINDS)

    def _post_props(self, delivery: Delivery) -> dict[str, Any]:
        """A first post's props: which delivery it was, and its buttons."""
        props: dict[str, Any] = dict(_props(delivery))
        if self._answering is not None:
            attachments = self._answering.attachments(self.buttons(delivery), time.time())
            if attachments:
                props["attachments"] = attachments
        return props

    async def answered_post(
        self, post_id: str, note: str, button: Button, settled: bool
    ) -> dict[str, Any] | None:
        """The post ``post_id`` as a click's answer updates it: the note added, and a
        settled answer's buttons taken off; None when the post cannot be read."""
        if self._api is None or not _POST_ID.fullmatch(post_id):
            return None
        try:
            answer = await self._api_call("GET", f"posts/{post_id}")
        except _Stop:
            return None
        post = answer.json() if answer.status == 200 else None
        if not isinstance(post, dict):
            return None
        props = post.get("props") if isinstance(post.get("props"), dict) else {}
        assert isinstance(props, dict)
        gone = {action_id(a) for a in button.action.family} if settled else set()
        given = props.get("attachments")
        attachments = [
            {**a, "actions": _kept(a.get("actions"), gone)}
            for a in (given if isinstance(given, list) else [])
            if isinstance(a, dict)
        ]
        message = f"{post.get('message', '')}\n\n{note}"
        return {
            "message": truncate(message, MAX_POST_CHARS),
            "props": {**props, "attachments": attachments},
        }

    def _http(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = new_session(self._config.timeout)
        return session

    async def send(self, delivery: Delivery) -> SendResult:
        try:
            if "/" in delivery.recipient:
                return await self._post_to_channel(delivery)
            return await self._post_to_webhook(delivery)
        except _Stop as stop:
            return stop.result

    # -- incoming webhooks ----------------------------------------------------------

    async def _post_to_webhook(self, delivery: Delivery) -> SendResult:
        hook = self._hooks.get(delivery.recipient)
        if hook is None:
            return SendResult.permanent(f"no Mattermost webhook named {delivery.recipient!r}")
        text = mattermost_text(delivery)
        thread = delivery.thread
        earlier = follows_earlier(delivery)
        if earlier is not None:  # a webhook cannot edit: say what this one follows
            note = follow_up_note(earlier)
            text = f"{note}\n\n{mattermost_text(delivery, MAX_POST_CHARS - len(note) - 2)}"
        payload = {"text": text, **hook.extra, "props": _props(delivery)}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        answer = await self._paced(
            hook.lane,
            self._config.per_channel_interval,
            lambda: self._request("POST", hook.parsed_url, hook.proxy, _JSON, body),
            hook.url,
            hook.host,
        )
        result = self._outcome(answer, hook.lane, f"webhook {delivery.recipient} ({hook.host})")
        if thread is not None and result.outcome is Outcome.DELIVERED:
            return replace(result, in_reply_to=thread.root_id)
        return result

    # -- REST API ------------------------------------------------------------------------

    async def _post_to_channel(self, delivery: Delivery) -> SendResult:
        if self._api is None:
            return SendResult.permanent(
                f"posting to {delivery.recipient} needs [mattermost] url and bot_token(_file)"
            )
        team, _, channel = delivery.recipient.partition("/")
        channel_id = await self._channel_id(team, channel)
        thread = delivery.thread
        if thread is not None and _POST_ID.fullmatch(thread.root_id):
            return await self._follow(delivery, channel_id, thread.root_id)
        return await self._create_post(
            delivery, channel_id, mattermost_text(delivery), props=self._post_props(delivery)
        )

    async def _create_post(
        self,
        delivery: Delivery,
        channel_id: str,
        message: str,
        root_id: str = "",
        props: dict[str, Any] | None = None,
    ) -> SendResult:
        """``POST /api/v4/posts``: a new post, or a reply in ``root_id``'s thread."""
        post = {"channel_id": channel_id, "message": message, "props": props or _props(delivery)}
        if root_id:
            post["root_id"] = root_id
        body = json.dumps(post, ensure_ascii=False).encode("utf-8")
        lane = f"mattermost:{delivery.recipient}"
        answer = await self._api_call("POST", "posts", body, lane=lane)
        result = self._outcome(answer, API_LANE, f"posts to {delivery.recipient}")
        if answer.status in (403, 404):  # the channel may have been replaced: look it up again
            self._channels.pop(delivery.recipient, None)
        if result.outcome is not Outcome.DELIVERED:
            return result
        found = answer.json()
        post_id = found.get("id") if isinstance(found, dict) else None
        where = f" (reply to {root_id})" if root_id else ""
        reply = f"{answer.status} post {post_id} in {delivery.recipient}{where}"
        return SendResult.delivered(reply, str(post_id or ""), root_id)

    async def _follow(self, delivery: Delivery, channel_id: str, root_id: str) -> SendResult:
        """Update the conversation's first post to the latest state, then reply in its
        thread; a first post that is gone (404) is replaced by a new one."""
        patched = {"message": updated_text(delivery), "props": self._post_props(delivery)}
        patch = json.dumps(patched, ensure_ascii=False)
        path = f"posts/{root_id}/patch"
        answer = await self._api_call("PUT", path, patch.encode("utf-8"))
        if answer.status == 404:
            result = await self._create_post(
                delivery, channel_id, mattermost_text(delivery), props=self._post_props(delivery)
            )
            return replace(
                result, reply=f"patch {root_id}: {answer.reply}; posted anew: {result.reply}"
            )
        updated = self._outcome(answer, API_LANE, f"patch of post {root_id}")
        if updated.outcome is not Outcome.DELIVERED:
            return updated
        return await self._create_post(delivery, channel_id, reply_text(delivery), root_id)

    async def _channel_id(self, team: str, channel: str) -> str:
        key = f"{team}/{channel}"
        cached = self._channels.get(key)
        if cached is not None:
            return cached
        path = f"teams/name/{quote(team, safe='')}/channels/name/{quote(channel, safe='')}"
        answer = await self._api_call("GET", path)
        if answer.status == 404:
            reply = f"no channel {channel!r} in team {team!r} ({answer.reply})"
            raise _Stop(SendResult.permanent(reply))
        result = self._outcome(answer, API_LANE, f"channel look-up {key}")
        if result.outcome is not Outcome.DELIVERED:
            raise _Stop(result)
        found = answer.json()
        channel_id = found.get("id") if isinstance(found, dict) else None
        if not isinstance(channel_id, str) or not channel_id:
            raise _Stop(SendResult.transient(f"channel look-up {key}: no id in the answer"))
        self._channels[key] = channel_id
        return channel_id

    async def _api_call(
        self, method: str, path: str, body: bytes | None = None, *, lane: str | None = None
    ) -> _Answer:
        """A REST call in the token's lane (a 429 holds every call) and, for a post,
        its channel's lane (spaced ``per_channel_interval``)."""
        api = self._api
        assert api is not None

        def call() -> Awaitable[_Answer]:
            return self._request(method, api.join(URL(path)), self._proxy, self._auth, body)

        if lane is None:
            return await self._paced(API_LANE, 0.0, call)
        interval = self._config.per_channel_interval
        return await self._paced(lane, interval, lambda: self._pacer.run(API_LANE, 0.0, call))

    # -- shared ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: URL,
        proxy: URL | None,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> _Answer:
        async with self._http().request(
            method, url, data=body, headers=headers, allow_redirects=False, proxy=proxy
        ) as response:
            answer = await response.read()
            return _Answer(
                response.status, response.reason or "", response.headers, answer, response.charset
            )

    async def _paced(
        self, lane: str, interval: float, call: _Call, secret_url: str = "", host: str = ""
    ) -> _Answer:
        """``call()`` in ``lane``'s turn; a wait too long or a transport error stops the send."""
        try:
            return await self._pacer.run(lane, interval, call)
        except Busy as busy:
            reply = f"next free slot in {busy.wait:.1f}s (Mattermost rate limit)"
            raise _Stop(SendResult.transient(reply, retry_after=busy.wait)) from None
        except TRANSPORT_ERRORS as err:
            reply = describe_aiohttp_error(err, self._config.timeout)
            if secret_url:
                reply = scrub_url(f"{host}: {reply}", secret_url)
            raise _Stop(SendResult.transient(reply)) from None

    def _outcome(self, answer: _Answer, lane: str, what: str) -> SendResult:
        if answer.status == 429:
            self._pacer.block(lane, answer.retry_after or 1.0)
        reply = f"{what}: {answer.reply}"
        if 300 <= answer.status < 400:
            return SendResult.permanent(f"{reply} (redirects are not followed)")
        return http_status_result(answer.status, reply, answer.retry_after)

    async def check(self) -> str:
        """``GET /api/v4/users/me`` with the bot token; webhooks are described by host."""
        parts: list[str] = []
        if self._api is not None:
            try:
                answer = await self._api_call("GET", "users/me")
            except _Stop as stop:
                raise RuntimeError(f"mattermost: users/me failed: {stop.result.reply}") from None
            me = answer.json()
            if answer.status != 200 or not isinstance(me, dict):
                raise RuntimeError(f"mattermost: users/me failed: {answer.reply}")
            team = f", default team {self._config.team}" if self._config.team else ""
            parts.append(f"bot {me.get('username')} at {host_of(str(self._api))}{team}")
        if self._hooks:
            hooks = ", ".join(
                f"{name} -> {hook.host}" for name, hook in sorted(self._hooks.items())
            )
            parts.append(f"webhooks {hooks} (cannot be checked without posting)")
        return "mattermost: " + "; ".join(parts)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


# --- what the registry knows ------------------------------------------------------

PREFIX = "mattermost:"


def _takes(kind: str, recipient: str, config: MattermostConfig | None) -> str | None:
    if not recipient.startswith(PREFIX):
        return None
    if config is None:
        raise Unreachable("Mattermost is not configured ([mattermost])")
    return config.address(recipient.removeprefix(PREFIX))


class _AllowNames(Collection[str]):
    """What an ``[allow] mattermost`` entry may name: a configured webhook, or
    ``team/channel`` once the REST API is configured (channels are not listed)."""

    def __init__(self, config: MattermostConfig) -> None:
        self._webhooks = {name.lower() for name in config.webhooks}
        self._channels = config.uses_api

    def __contains__(self, entry: object) -> bool:
        if not isinstance(entry, str):
            return False
        return entry.lower() in self._webhooks or (self._channels and "/" in entry)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._webhooks))

    def __len__(self) -> int:
        return len(self._webhooks)


def _build(config: MattermostConfig, pacing: SharedPacing | None) -> MattermostChannel:
    return MattermostChannel(config, shared_pacing=pacing)


def _summary(config: MattermostConfig) -> str:
    parts = []
    if config.uses_api:
        parts.append(f"bot token, default team {config.team}" if config.team else "bot token")
    if config.webhooks:
        parts.append("webhooks " + ", ".join(sorted(config.webhooks)))
    return "; ".join(parts)


CHANNEL: ChannelSpec[MattermostConfig] = ChannelSpec(
    name="mattermost",
    section="mattermost",
    config=MattermostConfig,
    build=_build,
    takes=_takes,
    preview=mattermost_text,
    summary=_summary,
    usable=lambda config: config.uses_api or bool(config.webhooks),
    prefix=PREFIX,
    route_order=10,
    allow_names=_AllowNames,
    digests=always,
    threads=True,
    answers=True,
)
