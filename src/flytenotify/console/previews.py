"""The message as sent, for the console: the one place that asks for previews.

Every console page that shows a message goes through :func:`message_view`,
so there is one call to change when channels move behind a registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

from markupsafe import Markup

from flytenotify.channels import registry
from flytenotify.console import slack_html
from flytenotify.domain import Delivery

EMAIL = "email"
# The From address shown when no SMTP sender is configured (dev inbox).
PREVIEW_SENDER = "flytenotify@localhost"

Medium = Literal["email", "slack", "json", "text"]


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


def message_view(delivery: Delivery, sender: str | None = None) -> MessageView:
    """The message ``delivery`` is sent as, in the form its medium is best read in."""
    channel = registry.previewer(delivery)  # its own, or the one a dev-inbox delivery stands for
    raw = channel.preview(delivery)
    if channel.name == EMAIL:
        return _email_view(delivery, raw, sender or PREVIEW_SENDER)
    document = _json_document(raw)
    if document is None:
        return MessageView("text", raw)
    pretty = json.dumps(document, indent=2, ensure_ascii=False)
    if isinstance(document, dict) and "blocks" in document:
        return MessageView("slack", raw, slack=slack_html.blocks(document), json=pretty)
    return MessageView("json", raw, json=pretty)


def _email_view(delivery: Delivery, raw: str, sender: str) -> MessageView:
    from flytenotify.channels.email import build_message

    try:
        message = build_message(delivery, sender)
    except ValueError as error:  # a recipient the email channel refuses: show why
        return MessageView("text", raw, note=f"not sendable as email: {error}")
    headers = [(name, str(value)) for name, value in message.items()]
    return MessageView(
        "email",
        raw,
        email=EmailView(headers, _part(message, "plain"), _part(message, "html")),
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
