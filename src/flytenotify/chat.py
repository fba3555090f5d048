"""Answering from chat: the buttons on Slack and Mattermost messages, and what a click does.

A failure-type message (FAILED, TIMED_OUT, ABORTED, a deadline's alert) offers
**Acknowledge** ("I'm on it": recorded once per execution and person, and the
execution's deadlines alert no more), **Mute launch plan 1 h / 4 h** (a
silence of that project, domain and launch plan, made as the API makes one)
and, where ``[[actions.allow]]`` lets a chat user do them in its scope,
**Relaunch** and **Recover**. A message about a boolean gate waiting for a
person offers **Approve** and **Reject** where they are allowed. Gate
answers, relaunches and recoveries go through
:meth:`flytenotify.app.Notifier.act`, once, audited and allowed as every
other action is.

What each button does travels in the button itself (:class:`Button`, a small
JSON object): Slack signs the whole callback with the app's signing secret
(``channels/slack_interactions``), and a Mattermost button carries an HMAC of
it with an expiry (:func:`sign_context`), since Mattermost signs nothing. Its
shape is still checked (:meth:`Button.from_json`), naming the field that is
wrong. Emails to one person and Teams cards, which cannot call back, carry the
same answers as signed links to the console's confirmation page
(:class:`LinkSigner`).

What a click does is ``web/answers.py``'s; ``web/chat.py`` takes the
platforms' callbacks.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from flytenotify.domain import (
    PAUSED,
    ActionKind,
    Answer,
    Delivery,
    DeliveryReason,
    ExecutionId,
)
from flytenotify.errors import (
    Forbidden,
    InputError,
    Problem,
)
from flytenotify.intake.limits import identifier_problems
from flytenotify.models.core.execution import WorkflowExecutionPhase as P


class ActionOffers(Protocol):
    """Who may do what (``[actions]``, :class:`flytenotify.config.ActionsConfig`)."""

    def offers(self, action: ActionKind, execution: ExecutionId, kinds: Collection[str]) -> bool:
        """Whether some identity of ``kinds`` may do ``action`` on ``execution``."""
        ...

    def offers_answers(self, execution: ExecutionId, kinds: Collection[str]) -> bool:
        """Whether some identity of ``kinds`` may acknowledge ``execution`` and mute it."""
        ...


__all__ = [
    "ACT_PATH",
    "Button",
    "ChatAction",
    "LinkSigner",
    "SignedLink",
    "answer_lines",
    "answer_note",
    "clock",
    "offered",
    "sign_context",
    "sign_link",
    "verify_context",
    "verify_link",
]

log = logging.getLogger(__name__)

FAILURES = frozenset({P.FAILED, P.TIMED_OUT, P.ABORTED})


class ChatAction(enum.StrEnum):
    """What a button asks."""

    ACKNOWLEDGE = "ack"
    MUTE_1H = "mute_1h"
    MUTE_4H = "mute_4h"
    APPROVE = "approve"
    REJECT = "reject"
    RELAUNCH = "relaunch"
    RECOVER = "recover"
    ANSWER = "answer"  # a typed gate: the value is asked for in a form (a Slack modal)

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def flyte(self) -> ActionKind | None:
        """The action on Flyte it asks for, if it asks Flyte anything."""
        return _FLYTE.get(self)

    @property
    def mutes_for(self) -> timedelta | None:
        return _MUTES.get(self)

    @property
    def family(self) -> frozenset[ChatAction]:
        """The buttons a settled answer to this one takes off the message."""
        for family in _FAMILIES:
            if self in family:
                return family
        return frozenset({self})


_LABELS = {
    ChatAction.ACKNOWLEDGE: "Acknowledge",
    ChatAction.MUTE_1H: "Mute launch plan 1 h",
    ChatAction.MUTE_4H: "Mute 4 h",
    ChatAction.APPROVE: "Approve",
    ChatAction.REJECT: "Reject",
    ChatAction.RELAUNCH: "Relaunch",
    ChatAction.RECOVER: "Recover",
    ChatAction.ANSWER: "Answer…",
}
_FLYTE = {
    ChatAction.APPROVE: ActionKind.APPROVE,
    ChatAction.REJECT: ActionKind.REJECT,
    ChatAction.RELAUNCH: ActionKind.RELAUNCH,
    ChatAction.RECOVER: ActionKind.RECOVER,
    ChatAction.ANSWER: ActionKind.SIGNAL,
}
_MUTES = {ChatAction.MUTE_1H: timedelta(hours=1), ChatAction.MUTE_4H: timedelta(hours=4)}
_FAMILIES = (
    frozenset({ChatAction.APPROVE, ChatAction.REJECT}),
    frozenset({ChatAction.MUTE_1H, ChatAction.MUTE_4H}),
)


@dataclass(frozen=True)
class Button:
    """What one button asks: the action, the execution, the gate (approve and reject)
    and the launch plan (what a mute silences)."""

    action: ChatAction
    execution_id: ExecutionId
    signal_id: str = ""
    launch_plan: str = ""

    def to_json(self) -> dict[str, str]:
        eid = self.execution_id
        found = {
            "action": self.action.value,
            "project": eid.project,
            "domain": eid.domain,
            "name": eid.name,
            "signal_id": self.signal_id,
            "launch_plan": self.launch_plan,
        }
        return {key: value for key, value in found.items() if value}

    def encode(self) -> str:
        return orjson.dumps(self.to_json()).decode()

    @classmethod
    def from_json(cls, data: object, field: str) -> Button:
        """The button ``data`` describes, or :class:`InputError` naming ``field.KEY``."""
        if not isinstance(data, dict):
            raise InputError(Problem(field, "must be an object describing the button"))
        problems: list[Problem] = []
        action = str(data.get("action"))
        if action not in set(ChatAction):
            names = ", ".join(a.value for a in ChatAction)
            problems.append(Problem(f"{field}.action", f"must be one of {names}, got {action!r}"))
        for key in ("project", "domain", "name"):
            problems += identifier_problems(data.get(key), f"{field}.{key}", key)
        for key, part in (("signal_id", "name"), ("launch_plan", "name")):
            problems += identifier_problems(data.get(key, ""), f"{field}.{key}", part, False)
        unknown = set(data) - {"action", "project", "domain", "name", "signal_id", "launch_plan"}
        problems += [Problem(f"{field}.{key}", "is not a field of a button") for key in unknown]
        if not problems:
            chosen = ChatAction(action)
            if chosen.flyte is not None and chosen.flyte.answers_gate and not data.get("signal_id"):
                problems.append(Problem(f"{field}.signal_id", f"{chosen.value} names the gate"))
            if chosen.mutes_for is not None and not data.get("launch_plan"):
                problems.append(Problem(f"{field}.launch_plan", "a mute names the launch plan"))
        if problems:
            raise InputError(problems)
        return cls(
            ChatAction(action),
            ExecutionId(data["project"], data["domain"], data["name"]),
            signal_id=data.get("signal_id", ""),
            launch_plan=data.get("launch_plan", ""),
        )

    @classmethod
    def decode(cls, text: object, field: str) -> Button:
        if not isinstance(text, str):
            raise InputError(Problem(field, "must be a string holding the button's JSON"))
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise InputError(Problem(field, "is not the JSON of a button")) from None
        return cls.from_json(data, field)


# -- which buttons a message offers ---------------------------------------------------------


TYPED = frozenset({"int", "float", "str"})  # what a gate's value can be asked for as text


def offered(
    delivery: Delivery, actions: ActionOffers, kinds: Collection[str], *, forms: bool = False
) -> list[Button]:
    """The buttons a message about ``delivery`` carries on a platform whose users are
    identities of ``kinds`` (``slack``, ``mattermost``, ``email``, ``teams``); ``forms``: the
    platform can ask for a typed gate's value (Slack's modals)."""
    if delivery.digest is not None:
        return []  # a digest speaks of many executions: each has its own message
    eid = delivery.execution_id
    variables = delivery.message.variables
    if delivery.phase == PAUSED and delivery.reason is DeliveryReason.PHASE:
        gate = variables.get("action", "")
        expects = variables.get("expects")
        if gate and forms and expects in TYPED:
            wanted: tuple[ChatAction, ...] = (ChatAction.ANSWER,)
        elif gate and expects == "bool":
            wanted = (ChatAction.APPROVE, ChatAction.REJECT)
        else:
            return []  # a gate of another type is answered in the console
        asking = [Button(a, eid, signal_id=gate) for a in wanted if _may(actions, a, eid, kinds)]
        return _unanswered(asking, delivery)
    failed = delivery.reason is DeliveryReason.DEADLINE or (
        delivery.reason is DeliveryReason.PHASE and delivery.phase in FAILURES
    )
    if not failed:
        return []
    buttons = []
    if actions.offers_answers(eid, kinds):
        buttons.append(Button(ChatAction.ACKNOWLEDGE, eid))
        plan = launch_plan_of(delivery)
        mutes = (ChatAction.MUTE_1H, ChatAction.MUTE_4H) if plan else ()
        buttons += [Button(m, eid, launch_plan=plan) for m in mutes]
    if delivery.reason is DeliveryReason.PHASE:
        again = (ChatAction.RELAUNCH, ChatAction.RECOVER)
        buttons += [Button(a, eid) for a in again if _may(actions, a, eid, kinds)]
    return _unanswered(buttons, delivery)


def _unanswered(buttons: list[Button], delivery: Delivery) -> list[Button]:
    """``buttons`` less those a person already answered from an earlier message about
    the execution: a message rewritten after an acknowledgement asks for none again."""
    answers = delivery.thread.answers if delivery.thread is not None else ()
    return [b for b in buttons if not any(_answers(a, b) for a in answers)]


def _answers(answer: Answer, button: Button) -> bool:
    asks = button.action.flyte
    if asks is None:  # Acknowledge answers Acknowledge; a mute is asked for afresh
        return button.action is ChatAction.ACKNOWLEDGE and answer.action is None
    if answer.action is None:
        return False
    if asks.answers_gate:
        return answer.action.answers_gate and answer.target == button.signal_id
    return answer.action is asks


def clock(moment: datetime | None) -> str:
    """``02:14 UTC`` (with the date when it is not today), as an answer's note says when."""
    if moment is None:
        return "until ended"
    moment = moment.astimezone(UTC)
    if moment.date() == datetime.now(UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def answer_note(answer: Answer) -> str:
    """``Acknowledged by {who} at 02:14 UTC``, what a message says of ``answer``:
    ``{who}`` stands for the person, as the platform mentions them."""
    note = f"{answer.done} by {{who}} at {clock(answer.at)}"
    return f"{note}: {answer.result}" if answer.result else note


def answer_lines(
    answers: Sequence[Answer],
    platform: str,
    mention: Callable[[str], str],
    escape: Callable[[str], str],
) -> list[str]:
    """Each answer as a line of a message on ``platform`` (``slack``, ``mattermost``):
    a person of the platform as ``mention`` names them (``slack:U1`` -> ``<@U1>``),
    anyone else by their identity; the rest escaped for the platform's markup."""
    lines = []
    for answer in answers:
        kind, _, name = answer.actor.partition(":")
        who = mention(name) if kind == platform and name else escape(answer.actor)
        lines.append(escape(answer_note(answer)).replace("{who}", who, 1))
    return lines


def launch_plan_of(delivery: Delivery) -> str:
    """The name of the launch plan (a Flyte 2 run's task) a mute would silence."""
    if delivery.launch_plan is not None:
        return delivery.launch_plan.name
    return delivery.message.variables.get("launch_plan.name", "")


def _may(
    actions: ActionOffers, action: ChatAction, eid: ExecutionId, kinds: Collection[str]
) -> bool:
    kind = action.flyte
    return kind is not None and actions.offers(kind, eid, kinds)


# -- Mattermost: buttons carry their own proof -----------------------------------------------

_CONTEXT_FIELDS = ("button", "expires", "mac")


def sign_context(button: Button, secret: bytes, expires: float) -> dict[str, Any]:
    """A Mattermost button's ``integration.context``: what it asks, until when, and an
    HMAC-SHA256 over both keyed by ``[mattermost] action_secret``."""
    data = button.to_json()
    return {"button": data, "expires": int(expires), "mac": _mac(data, int(expires), secret)}


def verify_context(context: object, secret: bytes, now: float) -> Button:
    """The button a Mattermost callback's ``context`` carries, if its HMAC holds and it
    has not expired. Raises :class:`Forbidden` (forged, expired) or :class:`InputError`
    (a malformed context), naming the field."""
    if not isinstance(context, dict):
        raise InputError(Problem("context", "must be an object"))
    missing = [name for name in _CONTEXT_FIELDS if name not in context]
    if missing:
        raise InputError([Problem(f"context.{name}", "is required") for name in missing])
    data, expires, mac = (context[name] for name in _CONTEXT_FIELDS)
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise InputError(Problem("context.expires", "must be an integer (Unix seconds)"))
    if not isinstance(mac, str) or not isinstance(data, dict):
        raise Forbidden(Problem("context.mac", "does not match the button: forged or altered"))
    if not hmac.compare_digest(mac.encode(), _mac(data, expires, secret).encode()):
        raise Forbidden(Problem("context.mac", "does not match the button: forged or altered"))
    if expires <= now:
        raise Forbidden(Problem("context.expires", "the button has expired"))
    return Button.from_json(data, "context.button")


def _mac(data: dict[str, Any], expires: int, secret: bytes) -> str:
    signed = orjson.dumps({"button": data, "expires": expires}, option=orjson.OPT_SORT_KEYS)
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


# -- email and Teams: signed links to the console ---------------------------------------------

ACT_PATH = "/ui/act"  # the console page a signed link opens (web/console)
# Who a signed link acts as: ``email:<address>``, the one person the email went to;
# ``teams:<name>``, whoever reads the channel of the ``[teams.NAME]`` webhook.
LINK_KINDS = ("email", "teams")


@dataclass(frozen=True)
class SignedLink:
    """What a signed link carries: the button, for whom (an email address, a Teams
    webhook's name: ``via`` says which), its nonce (a link is used once) and until
    when it works."""

    button: Button
    recipient: str
    nonce: str
    expires: int
    via: str = "email"

    @property
    def actor(self) -> str:
        """The identity it acts as: ``email:a@example.com``, ``teams:oncall``."""
        return f"{self.via}:{self.recipient}"

    @property
    def signer(self) -> str:
        """Who it speaks for, as a page names them: the address the email went to,
        or ``teams:oncall`` (a webhook's name alone would not say it is one)."""
        return self.actor if self.via == "teams" else self.recipient

    @property
    def platform(self) -> str:
        """Where it was followed from, as an answer says it ("muted from Teams")."""
        return "Teams" if self.via == "teams" else self.via


def sign_link(link: SignedLink, secret: bytes) -> str:
    """The link's token: its JSON and an HMAC-SHA256 of it, both base64url."""
    data: dict[str, Any] = {
        "button": link.button.to_json(),
        "to": link.recipient,
        "nonce": link.nonce,
        "expires": link.expires,
    }
    if link.via != "email":  # an email's token reads as it did before Teams had links
        data["via"] = link.via
    body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def verify_link(token: object, secret: bytes, now: float) -> SignedLink:
    """The link ``token`` stands for, if its HMAC holds and it has not expired.
    Raises :class:`Forbidden` (forged, altered, expired) or :class:`InputError`
    (not a token at all), naming ``token``."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
        raise InputError(Problem("token", "is not a flytenotify link token"))
    body_text, mac_text = token.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        raise InputError(Problem("token", "is not a flytenotify link token")) from None
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise Forbidden(Problem("token", "does not match its signature: forged or altered"))
    data = orjson.loads(body)
    expires = data.get("expires")
    if not isinstance(expires, int) or expires <= now:
        raise Forbidden(Problem("token", "the link has expired"))
    via = data.get("via", "email")
    if via not in LINK_KINDS:
        raise InputError(Problem("token.via", f"must be one of {', '.join(LINK_KINDS)}"))
    button = Button.from_json(data.get("button"), "token.button")
    return SignedLink(button, str(data.get("to", "")), str(data.get("nonce", "")), expires, via)


@dataclass(frozen=True)
class LinkSigner:
    """What a channel needs to put signed answer links in its messages: who may act
    (``[actions]``), the console's confirmation page, the key and how long a link works."""

    actions: ActionOffers
    page: str  # the public URL of ACT_PATH
    secret: bytes
    ttl: float

    @classmethod
    def of(cls, settings: Any, channel: str) -> LinkSigner | None:
        """The signer ``[actions] link_secret`` and ``[templates] public_url`` make;
        None (said once, when the secret is set) without both."""
        secret = settings.actions.resolved_link_secret()
        public = (settings.templates.public_url or "").strip().rstrip("/")
        if secret and public:
            page = f"{public}{ACT_PATH}"
            return cls(settings.actions, page, secret.encode(), settings.actions.link_ttl)
        if secret:
            log.warning(
                "%s: [actions] link_secret is set, but without [templates] public_url"
                " no message carries links",
                channel,
            )
        return None

    def links(self, delivery: Delivery, via: str) -> list[tuple[str, str]]:
        """``(label, URL)`` of the signed links a message about ``delivery`` carries: the
        buttons a chat message would, for ``via:<delivery.recipient>``. The same
        delivery gives the same links (nonce and expiry come from it), so a message
        sent again carries the same."""
        expires = int(delivery.created_at.timestamp() + self.ttl)
        links = []
        for button in offered(delivery, self.actions, {via}):
            seed = f"{delivery.idempotency_key}/{button.action.value}".encode()
            nonce = hashlib.sha256(seed).hexdigest()[:32]
            link = SignedLink(button, delivery.recipient, nonce, expires, via)
            links.append((button.action.label, f"{self.page}?token={sign_link(link, self.secret)}"))
        return links


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
