"""The dev inbox: deliveries of unconfigured channels, kept in the database.

With no SMTP server, Slack token or PagerDuty key configured, the service still
shows what it would have sent: each message lands here in the form its real
channel would send (the email's text, Slack's Block Kit message, PagerDuty's
Events API v2 body, the webhook's JSON), viewable with ``flytenotify inbox``
and ``GET /api/v1/inbox``.
"""

from __future__ import annotations

import json
import time

from flytenotify.channels.base import SendResult
from flytenotify.domain import Delivery
from flytenotify.engine.resolve import WEBHOOK_PREFIX
from flytenotify.store.base import Store


def preview(delivery: Delivery) -> str:
    """What the real channel would send for ``delivery``."""
    # Imported here: the Slack SDK is heavy, and the CLI need not load it.
    if delivery.recipient.startswith(WEBHOOK_PREFIX):
        from flytenotify.channels.webhook import webhook_payload

        return _json(webhook_payload(delivery))
    if delivery.kind == "slack":
        from flytenotify.channels.slack import slack_message

        return _json(slack_message(delivery))
    if delivery.kind == "pager_duty":
        from flytenotify.channels.pagerduty import pagerduty_event
        from flytenotify.config import PagerDutyConfig

        return _json(pagerduty_event(delivery, "<routing key>", PagerDutyConfig()))
    return delivery.message.text


def _json(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


class InboxChannel:
    name = "inbox"

    def __init__(self, store: Store) -> None:
        self._store = store

    async def send(self, delivery: Delivery) -> SendResult:
        await self._store.add_to_inbox(delivery, preview(delivery), time.time())
        return SendResult.delivered("stored in the dev inbox")

    async def close(self) -> None:
        return None
