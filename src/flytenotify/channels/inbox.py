"""The dev inbox: deliveries of unconfigured channels, kept in the database.

With no SMTP server, Slack token or PagerDuty key configured, the service still
shows what it would have sent: rendered messages land here, viewable with
``flytenotify inbox`` and ``GET /api/v1/inbox``.
"""

from __future__ import annotations

import time

from flytenotify.channels.base import SendResult
from flytenotify.domain import Delivery
from flytenotify.store.base import Store


class InboxChannel:
    name = "inbox"

    def __init__(self, store: Store) -> None:
        self._store = store

    async def send(self, delivery: Delivery) -> SendResult:
        body = delivery.message.slack_text if delivery.kind == "slack" else delivery.message.text
        await self._store.add_to_inbox(delivery, body, time.time())
        return SendResult.delivered("stored in the dev inbox")

    async def close(self) -> None:
        return None
