"""Microsoft Teams channel: an Adaptive Card posted to a configured webhook URL.

Recipients ``teams:NAME`` name a ``[teams.NAME]`` webhook, whatever the
notification kind (as ``webhook:NAME`` does). Both kinds of Teams webhook URL
take the same body, a message with one Adaptive Card (version 1.4) attached:

- a Workflows webhook (Power Automate's "When a Teams webhook request is
  received" trigger), which answers 202 when it accepted the request;
- a retired Office 365 connector (``https://*.webhook.office.com/webhookb2/...``),
  which answers 200 with the body ``1``. A connector also answers 200 when
  Teams refused the message, with the failure as text ("Webhook message
  delivery failed with error: Microsoft Teams endpoint returned HTTP error
  429 ..."): such an answer is not a delivery. The status it names decides:
  429 and 5xx are transient, anything else permanent.

Otherwise 2xx is delivered, 408/429/5xx are transient (``Retry-After``
honoured), other 4xx (400 bad card, 404 no such webhook, 413 too large) are
permanent with Teams' answer in the reply. Redirects are not followed.

A webhook cannot edit a card it posted: a later message of a conversation
(the same execution, or its recovery) is a new card that says which
execution's earlier message it follows. Nor can its card call back: with
``[actions] link_secret`` and ``[templates] public_url`` the answers a chat
message offers (Acknowledge, Mute...) are ``Action.OpenUrl`` links to the
console's confirmation page, signed for ``teams:NAME`` (``chat.LinkSigner``).

The URL is the credential: only its host is ever logged or shown. Teams
accepts messages up to about 28 KB and throttles a webhook sending more than
4 requests a second, so every message is kept under :data:`MAX_PAYLOAD_BYTES`
(the longest texts, in practice the error, are cut first, visibly) and sends
to one webhook are spaced ``per_webhook_interval`` apart across every replica.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from pydantic import Field
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
    TRANSPORT_ERRORS,
    USER_AGENT,
    answer_result,
    decode_reply,
    describe_aiohttp_error,
    env_proxy,
    new_session,
    parse_retry_after,
    status_reply,
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
    digest_lines,
    error_label,
    follows_earlier,
    named_target,
)
from flytenotify.chat import LinkSigner
from flytenotify.domain import Delivery, DeliveryReason, Digest, phase_name
from flytenotify.models.core.execution import WorkflowExecutionPhase

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "TeamsChannel",
    "TeamsTarget",
    "adaptive_card",
    "teams_message",
    "throttled",
    "webhook_answer",
]


class TeamsTarget(SecretUrlTarget):
    """``[teams.NAME]``: a Teams webhook (Workflows or connector), for recipients ``teams:NAME``."""

    timeout: float = Field(default=10.0, gt=0)
    # Teams throttles a webhook above 4 requests a second (and 60 in 30 s):
    # two a second keeps under both, whatever the number of replicas.
    per_webhook_interval: float = Field(default=0.5, ge=0)


# Teams refuses messages over 28 KB; the margin covers how it counts (KB of 1,000 or 1,024).
MAX_PAYLOAD_BYTES = 27_000
CARD_VERSION = "1.4"
_REPLY_BODY_LIMIT = 300

_COLOURS: dict[int, str] = {
    WorkflowExecutionPhase.SUCCEEDED: "good",
    WorkflowExecutionPhase.FAILED: "attention",
    WorkflowExecutionPhase.TIMED_OUT: "attention",
    WorkflowExecutionPhase.ABORTED: "warning",
}


# --------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------


def _paragraphs(text: str) -> str:
    # Card Markdown needs a blank line for a line break.
    return "\n\n".join(line for line in escape_markdown(text).splitlines() if line.strip())


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _facts(delivery: Delivery) -> dict[str, Any]:
    eid = delivery.execution_id
    variables = delivery.message.variables
    facts = [
        ("Project", eid.project),
        ("Domain", eid.domain),
        ("Execution", eid.name),
        ("Launch plan", variables.get("launch_plan") or str(delivery.launch_plan or "unknown")),
    ]
    if variables.get("workflow.name"):
        facts.append(("Workflow", variables["workflow"]))
    return {
        "type": "FactSet",
        "facts": [{"title": title, "value": escape_markdown(value)} for title, value in facts],
    }


def _error(variables: Mapping[str, str], keep: int) -> list[dict[str, Any]]:
    message = variables.get("error.message", "")
    if not message:
        return []
    detail = error_label(variables)
    label = f"Error ({escape_markdown(detail)})" if detail else "Error"
    return [
        _text(label, weight="Bolder", color="attention", spacing="Medium"),
        _text(_paragraphs(truncate(message, keep)), fontType="Monospace"),
    ]


def _ended(variables: Mapping[str, str]) -> list[dict[str, Any]]:
    parts = [
        f"{label} {escape_markdown(variables[key])}"
        for key, label in (("occurred_at", "Ended"), ("duration", "ran for"))
        if variables.get(key)
    ]
    return [_text(" · ".join(parts), isSubtle=True, size="Small")] if parts else []


def _console_action(url: str) -> list[dict[str, Any]]:
    if not url.startswith(("https://", "http://")):
        return []
    return [{"type": "Action.OpenUrl", "title": "View in Flyte console", "url": url}]


def adaptive_card(
    delivery: Delivery,
    error_keep: int | None = None,
    text_keep: int | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The Adaptive Card for ``delivery``; the error and the message cut to the lengths
    given; ``links``: the signed answer links, ``(label, URL)``, as buttons."""
    message = delivery.message
    variables = message.variables
    phase = variables.get("phase_text") or phase_name(delivery.phase)
    title = escape_markdown(
        f"Execution {delivery.execution_id} {phase}"
        if delivery.reason is DeliveryReason.PHASE
        else message.subject  # a deadline's alert or follow-up says what happened itself
    )
    body: list[dict[str, Any]] = [
        _text(title, weight="Bolder", size="Large", color=_COLOURS.get(delivery.phase, "default"))
    ]
    earlier = follows_earlier(delivery)
    if earlier is not None:  # a webhook cannot edit its card: say which one this follows
        note = f"Follows the earlier message about {escape_markdown(earlier)}"
        body.insert(0, _text(note, isSubtle=True, size="Small"))
    if message.text.strip():
        keep = len(message.text) if text_keep is None else text_keep
        body.append(_text(_paragraphs(truncate(message.text, keep))))
    body.append(_facts(delivery))
    error_length = len(variables.get("error.message", ""))
    body += _error(variables, error_length if error_keep is None else error_keep)
    body += _ended(variables)
    answers = [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in links]
    return _card(body, answers + _console_action(variables.get("console_url", "")))


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
        "actions": actions,
    }


def _wrap(card: dict[str, Any]) -> dict[str, Any]:
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
    return {"type": "message", "attachments": [attachment]}


def as_workflows_message(body: str) -> str:
    """A body written for Teams by users' code, as a Workflows webhook takes it.

    Workflows take only a message with an Adaptive Card attachment. The flyte
    SDK's ``Teams(title=..., message=...)`` writes ``{"title", "text"}`` (the
    retired connectors' shape) and ``Teams(card=...)`` the bare card: both are
    wrapped, the first as a card of its title and text. Anything else is the
    user's own message and goes as written.
    """
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict):
        return body
    if document.get("type") == "AdaptiveCard":
        return json.dumps(_wrap(document))
    if (
        document
        and set(document) <= {"title", "text"}
        and all(isinstance(value, str) for value in document.values())
    ):
        blocks = [_text(document.get("title", ""), weight="Bolder", size="Large")]
        # Card text needs a blank line for a line break; the user's Markdown stays theirs.
        lines = [line for line in document.get("text", "").splitlines() if line.strip()]
        if lines:
            blocks.append(_text("\n\n".join(lines)))
        return json.dumps(_wrap(_card(blocks, [])))
    return body


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_DIGEST_ERROR = 200  # characters of each execution's error a digest card shows


def _digest_line(line: DigestLine) -> dict[str, Any]:
    name = escape_markdown(line.execution)
    if line.console_url.startswith(("https://", "http://")):
        name = f"[{name}]({line.console_url})"
    error = escape_markdown(truncate(line.error, _DIGEST_ERROR)) if line.error else ""
    return _text(f"**{name}**" + (f" · {error}" if error else ""), spacing="Small")


def digest_card(digest: Digest, shown: int) -> dict[str, Any]:
    """An Adaptive Card naming the first ``shown`` executions of ``digest``, and how
    many more there are and where to see them all."""
    lines = digest_lines(digest)
    colour = _COLOURS.get(digest.deliveries[0].phase, "default")
    body = [_text(escape_markdown(digest.title), weight="Bolder", size="Large", color=colour)]
    body += [_digest_line(line) for line in lines[:shown]]
    rest = len(lines) - shown
    where = digest.link or digest.list_command
    more = f"…and {rest} more. " if rest else ""
    body.append(_text(escape_markdown(f"{more}All {digest.count}: {where}"), isSubtle=True))
    actions = []
    if digest.link.startswith(("https://", "http://")):
        actions = [{"type": "Action.OpenUrl", "title": "All executions", "url": digest.link}]
    return _card(body, actions)


def teams_message(
    delivery: Delivery,
    limit: int = MAX_PAYLOAD_BYTES,
    links: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The request body for ``delivery``, at most ``limit`` bytes of JSON: the longest
    texts (the error, and the message text quoting it) are cut just enough, visibly.
    A digest lists as many of its executions as fit and says how many more.
    ``links``: the card's signed answer links (none on a digest)."""
    digest = delivery.digest
    if digest is not None:
        shown = most_that_fit(
            digest.count, lambda n: len(_encode(_wrap(digest_card(digest, n)))) <= limit
        )
        return _wrap(digest_card(digest, shown))

    def build(keep: Sequence[int]) -> dict[str, Any]:
        return _wrap(adaptive_card(delivery, keep[0], keep[1], links))

    lengths = [len(delivery.message.variables.get("error.message", "")), len(delivery.message.text)]
    return shrink_to_fit(build, lengths, lambda payload: len(_encode(payload)) <= limit)


# --------------------------------------------------------------------------
# Teams' answers
# --------------------------------------------------------------------------

# How a connector reports, inside a 200, the status Teams gave it.
_BURIED_STATUS = re.compile(r"HTTP error (\d{3})")
_FAILURE_WORDS = re.compile(r"(?i)\b(error|failed|failure)\b")


def _named_status(text: str) -> int | None:
    named = _BURIED_STATUS.search(text)
    return int(named.group(1)) if named is not None else None


def _buried_failure(text: str, legacy: bool, reply: str) -> SendResult | None:
    """A 2xx that is no delivery: a connector's answer other than a count, or any error text."""
    if legacy and text.strip().isdigit():
        return None  # the number of messages posted, "1"
    if not legacy and not _FAILURE_WORDS.search(text):
        return None
    status = _named_status(text)
    if status is not None and (status in (408, 429) or status >= 500):
        return SendResult.transient(reply)
    if legacy and not text.strip():
        reply += " (a connector answers 1 when Teams took the message)"
    return SendResult.permanent(reply)


def webhook_answer(
    status: int, reason: str, text: str, retry_after: float | None, legacy: bool
) -> SendResult:
    """What a Teams webhook's answer means (``legacy``: a connector's, see above)."""
    reply = status_reply(status, reason, text)
    if 200 <= status < 300:
        return _buried_failure(text, legacy, reply) or SendResult.delivered(reply)
    return answer_result(status, reply, retry_after)


def throttled(status: int, text: str) -> bool:
    """Whether Teams asked us to slow down: a 429, or a connector's 200 naming one."""
    return status == 429 or (200 <= status < 300 and _named_status(text) == 429)


def is_connector_url(url: str) -> bool:
    """An Office 365 connector's URL (``.../webhookb2/...``), not a Workflows one."""
    parsed = URL(url)
    return "/webhookb2/" in parsed.path or parsed.host == "outlook.office.com"


# --------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------


class _Webhook:
    """One configured webhook, prepared once."""

    def __init__(self, name: str, config: TeamsTarget) -> None:
        self.url = config.resolved_url(f"teams.{name}")
        self.parsed_url = URL(self.url)
        self.host = host_of(self.url)
        self.proxy = env_proxy(self.parsed_url)
        self.legacy = is_connector_url(self.url)
        self.timeout = config.timeout
        self.client_timeout = aiohttp.ClientTimeout(total=config.timeout)
        self.interval = config.per_webhook_interval
        # Paced by a digest: the URL itself must not reach the ledger's pacing table.
        self.lane = "teams:" + hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def kind(self) -> str:
        return "connector" if self.legacy else "Workflows"


_HEADERS = {"Content-Type": "application/json", "User-Agent": USER_AGENT}


class TeamsChannel(ChannelDefaults):
    """Posts Adaptive Cards to the configured Teams webhooks over one keep-alive session."""

    name: str = "teams"

    def __init__(
        self, targets: Mapping[str, TeamsTarget], *, shared_pacing: SharedPacing | None = None
    ) -> None:
        self._hooks = {name: _Webhook(name, target) for name, target in targets.items()}
        max_wait = max((hook.timeout for hook in self._hooks.values()), default=10.0)
        self._pacer = Pacer(max_wait=max_wait, shared=shared_pacing)
        # Created on the first send: an aiohttp session belongs to the running loop.
        self._session: aiohttp.ClientSession | None = None
        self._links: LinkSigner | None = None  # set by offer_answers

    def offer_answers(self, settings: Any) -> None:
        """Cards carry signed answer links from now on (a webhook's card cannot call
        back: its buttons open the console's confirmation page), when ``[actions]
        link_secret`` and ``[templates] public_url`` say how."""
        self._links = LinkSigner.of(settings, "teams")

    def links(self, delivery: Delivery) -> list[tuple[str, str]]:
        """The signed ``(label, URL)`` answers the card for ``delivery`` carries."""
        if self._links is None or delivery.digest is not None:
            return []
        return self._links.links(delivery, "teams")

    def _http(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = new_session()
        return session

    async def send(self, delivery: Delivery) -> SendResult:
        hook = self._hooks.get(delivery.recipient)
        if hook is None:
            return SendResult.permanent(f"no Teams webhook named {delivery.recipient!r}")
        body = _encode(teams_message(delivery, links=self.links(delivery)))
        try:
            status, reason, headers, text = await self._pacer.run(
                hook.lane, hook.interval, lambda: self._post(hook, body)
            )
        except Busy as busy:
            reply = f"{hook.host}: next free slot in {busy.wait:.1f}s (Teams rate limit)"
            return SendResult.transient(reply, retry_after=busy.wait)
        except TRANSPORT_ERRORS as err:
            reply = describe_aiohttp_error(err, hook.timeout)
            return SendResult.transient(scrub_url(f"{hook.host}: {reply}", hook.url))
        retry_after = parse_retry_after(headers.get("Retry-After"))
        result = webhook_answer(status, reason, scrub_url(text, hook.url), retry_after, hook.legacy)
        if throttled(status, text):
            self._pacer.block(hook.lane, retry_after or 1.0)
        thread = delivery.thread
        if thread is not None and result.outcome is Outcome.DELIVERED:
            return replace(result, in_reply_to=thread.root_id)
        return result

    async def _post(self, hook: _Webhook, body: bytes) -> tuple[int, str, Mapping[str, str], str]:
        # Redirects would carry the card somewhere nobody configured.
        async with self._http().post(
            hook.parsed_url,
            data=body,
            headers=_HEADERS,
            timeout=hook.client_timeout,
            allow_redirects=False,
            proxy=hook.proxy,
        ) as response:
            answer = await response.read()
            text = decode_reply(answer, response.charset, _REPLY_BODY_LIMIT)
            return response.status, response.reason or "", response.headers, text

    async def check(self) -> str:
        """What is configured: names and hosts (a webhook cannot be called without posting)."""
        described = ", ".join(
            f"{name} -> {hook.host} ({hook.kind})" for name, hook in sorted(self._hooks.items())
        )
        return f"teams: {described or 'no webhooks configured'}"

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


# --- what the registry knows ------------------------------------------------------

PREFIX = "teams:"


def _build(targets: dict[str, TeamsTarget], pacing: SharedPacing | None) -> TeamsChannel:
    return TeamsChannel(targets, shared_pacing=pacing)


def _preview(delivery: Delivery) -> str:
    return json.dumps(teams_message(delivery), indent=2, ensure_ascii=False)


CHANNEL: ChannelSpec[dict[str, TeamsTarget]] = ChannelSpec(
    name="teams",
    section="teams",
    config=dict[str, TeamsTarget],
    build=_build,
    takes=named_target(PREFIX, "Teams webhook"),
    preview=_preview,
    summary=lambda targets: ", ".join(sorted(targets)),
    prefix=PREFIX,
    route_order=10,
    allow_names=lambda targets: targets,
    digests=always,
    threads=True,
    answers=True,
)
