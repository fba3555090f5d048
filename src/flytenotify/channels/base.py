"""The one small protocol every channel implements.

Like Alertmanager's ``Notifier``, a channel answers a single question per
delivery: did the provider accept it, and if not, is it worth trying again?
The channel alone knows its provider's error codes, so the "is this retryable"
answer lives here and not in the dispatcher.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flytenotify.domain import Delivery


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"  # the provider accepted it
    TRANSIENT = "transient"  # try again later (4xx SMTP, 429, 5xx, timeouts, refused)
    PERMANENT = "permanent"  # never going to work (5xx SMTP, channel_not_found, 400)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    reply: str  # the provider's answer, kept in the audit trail
    retry_after: float | None = None  # seconds the provider asked us to wait

    @classmethod
    def delivered(cls, reply: str) -> SendResult:
        return cls(Outcome.DELIVERED, reply)

    @classmethod
    def transient(cls, reply: str, retry_after: float | None = None) -> SendResult:
        return cls(Outcome.TRANSIENT, reply, retry_after)

    @classmethod
    def permanent(cls, reply: str) -> SendResult:
        return cls(Outcome.PERMANENT, reply)


@runtime_checkable
class Channel(Protocol):
    """Sends deliveries of one transport (``email``, ``slack``, ...)."""

    name: str

    async def send(self, delivery: Delivery) -> SendResult:
        """Try once. Never raises for a provider fault: returns the outcome."""
        ...

    async def close(self) -> None:
        """Release connections; called once when the dispatcher stops."""
        ...


class SharedPacing(Protocol):
    """Send slots per destination, shared by every replica (the ledger provides them).

    A channel that paces a provider (Slack's ~1 message per second per channel)
    reserves each send's slot here too, so several replicas together keep the
    provider's rate rather than each keeping it on its own.
    """

    async def reserve_slot(self, key: str, interval: float) -> float:
        """Seconds to wait until this send's slot starts."""
        ...

    async def block_slots(self, key: str, seconds: float) -> None:
        """No slot of ``key`` starts within ``seconds``."""
        ...
