"""The dev inbox: deliveries of unconfigured channels, kept in the database.

With no SMTP server, Slack token or PagerDuty key configured, the service still
shows what it would have sent: each message lands here in the form its real
channel would send (the email's text, Slack's Block Kit message, PagerDuty's
Events API v2 body, the webhook's JSON, Teams' Adaptive Card message,
Mattermost's Markdown), viewable with ``flytenotify inbox``
and ``GET /api/v1/inbox``.
"""

from __future__ import annotations

import time

from flytenotify.channels import registry
from flytenotify.channels.base import ChannelDefaults, InboxWriter, SendResult
from flytenotify.domain import Delivery
from flytenotify.store.errors import StoreFull


class InboxChannel(ChannelDefaults):
    name = registry.INBOX

    def __init__(self, inbox: InboxWriter) -> None:
        self._inbox = inbox

    async def send(self, delivery: Delivery) -> SendResult:
        try:
            await self._inbox.add_to_inbox(delivery, registry.preview(delivery), time.time())
        except StoreFull as error:  # the ledger is the inbox: tried again like any outage
            return SendResult.transient(f"the dev inbox cannot be written: {error}")
        return SendResult.delivered("stored in the dev inbox")

    async def check(self) -> str:
        """Nothing to reach: the ledger is the inbox."""
        return "inbox: messages are kept in the ledger (flytenotify inbox, GET /api/v1/inbox)"

    async def close(self) -> None:
        return None
