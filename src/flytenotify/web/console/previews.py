"""The message as sent, for the console: the one place that asks for previews.

Every console page that shows a message goes through :func:`sent_message`
and :func:`message_view`, so there is one call to change when channels move
behind a registry.

A message is built again from what the ledger holds, never made up at view
time: the rows it carried (a digest's are those whose ``message_id`` names
it), the start of the attempt that sent it (an email's ``Date``), and its
idempotency key (the Message-ID and the MIME boundary). So the page shows
the bytes the provider was given, however often it is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Any, Literal

from markupsafe import Markup

from flytenotify.app import Notifier
from flytenotify.channels import registry
from flytenotify.domain import Attempt, Delivery, Digest
from flytenotify.engine.dispatch import digest_list_url, message_of, with_list_link
from flytenotify.store.base import DeliveryFilter
from flytenotify.web.console import slack_html

EMAIL = "email"
# The From address shown when no SMTP sender is configured (dev inbox).
PREVIEW_SENDER = "flytenotify@localhost"
DIGEST_PREFIX = "digest:"
# An operator's re-drive is written as an attempt, but nothing was sent then.
REDRIVE = "redrive"

Medium = Literal["email", "slack", "json", "text"]


@dataclass(frozen=True)
class Sent:
    """The message that carried a delivery, rebuilt from the ledger.

    ``message`` is what its channel was handed: the delivery itself, or the
    first of a digest's rows with ``digest`` set. ``sent_at`` is the start of
    the last attempt to send it (Unix seconds), None before the first.
    ``note`` says what could not be rebuilt as it was.
    """

    message: Delivery
    sent_at: float | None
    note: str = ""

    @property
    def digest(self) -> Digest | None:
        return self.message.digest

    @property
    def subject(self) -> str:
        digest = self.message.digest
        return digest.title if digest is not None else self.message.message.subject


async def sent_message(
    notifier: Notifier, delivery: Delivery, attempts: Sequence[Attempt] | None = None
) -> Sent:
    """The message ``delivery`` was last sent in (or will be, before its first attempt).

    ``attempts`` are the delivery's, when the caller has read them already.
    """
    if attempts is None:
        attempts = await notifier.attempts(delivery.id)
    sends = [a for a in attempts if a.outcome != REDRIVE]
    sent_at = sends[-1].started_at.timestamp() if sends else None
    if not delivery.message_id.startswith(DIGEST_PREFIX):
        return Sent(delivery, sent_at)
    carried = delivery.message_size
    # One more than it carried: a row too many would say the ledger changed.
    query = DeliveryFilter(message=delivery.message_id, limit=carried + 1)
    rows = tuple(sorted(await notifier.deliveries(query), key=lambda d: d.id))
    rebuilt = message_of(rows) if rows else delivery
    note = ""
    if rebuilt.digest is None or rebuilt.digest.id != delivery.message_id:
        # Rows sent again since (a re-driven dead letter) now name their new
        # message: those still recorded in it are shown under its own id.
        rows = rows or (delivery,)
        rebuilt = replace(rows[0], digest=Digest(delivery.message_id, rows))
        note = (
            f"This digest carried {carried} executions; {len(rows)} of them are still"
            " recorded as sent in it (the others were sent again since): only those"
            " are shown."
        )
    return Sent(with_list_link(rebuilt, digest_list_url(notifier.settings)), sent_at, note)


@dataclass(frozen=True)
class EmailView:
    headers: list[tuple[str, str]]
    text: str
    html: str


@dataclass(frozen=True)
class MessageView:
    """What a delivery's channel sends, ready for a template.

    ``raw`` is the channel's own preview; ``email`` the MIME message's headers
    and parts; ``slack`` the Block Kit drawn as HTML; ``json`` an indented
    document (webhook body, PagerDuty event, Slack payload).
    """

    medium: Medium
    raw: str
    email: EmailView | None = None
    slack: Markup | None = None
    json: str | None = None
    note: str = ""


def message_view(sent: Sent, sender: str | None = None, stored: str | None = None) -> MessageView:
    """The message ``sent`` is, in the form its medium is best read in.

    ``stored`` is the body the dev inbox kept, shown as it is instead of built again.
    """
    message = sent.message
    channel = registry.previewer(message)  # its own, or the one a dev-inbox delivery stands for
    raw = registry.preview(message) if stored is None else stored
    if channel.name == EMAIL:
        return _email_view(sent, raw, sender or PREVIEW_SENDER)
    document = _json_document(raw)
    if document is None:
        return MessageView("text", raw, note=sent.note)
    pretty = json.dumps(document, indent=2, ensure_ascii=False)
    if isinstance(document, dict) and "blocks" in document:
        blocks = slack_html.blocks(document)
        return MessageView("slack", raw, slack=blocks, json=pretty, note=sent.note)
    return MessageView("json", raw, json=pretty, note=sent.note)


def _email_view(sent: Sent, raw: str, sender: str) -> MessageView:
    from flytenotify.channels.email import build_message

    try:
        # Not sent yet: built with any time, and its Date left out below.
        message = build_message(sent.message, sender, sent.sent_at or 0.0)
    except ValueError as error:  # a recipient the email channel refuses: show why
        return MessageView("text", raw, note=f"not sendable as email: {error}")
    headers = [
        (name, str(value))
        for name, value in message.items()
        if sent.sent_at is not None or name != "Date"
    ]
    notes = [sent.note] if sent.note else []
    if sent.sent_at is None:
        notes.append("Not sent yet: its Date header will be the time it is sent.")
    return MessageView(
        "email",
        raw,
        email=EmailView(headers, _part(message, "plain"), _part(message, "html")),
        note=" ".join(notes),
    )


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    return str(part.get_content())


def _json_document(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
