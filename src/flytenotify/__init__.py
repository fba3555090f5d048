"""flytenotify: flytekit-compatible workflow notifications, delivered for real.

The configuration API is a drop-in for flytekit's::

    from flytenotify import Email, WorkflowExecutionPhase

    Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["ops@example.com"])
"""

from typing import TYPE_CHECKING, Any

from flytenotify.core.notification import Email, Notification, PagerDuty, Slack
from flytenotify.errors import NotificationConfigError, Problem
from flytenotify.models.core.execution import WorkflowExecutionPhase

if TYPE_CHECKING:
    from flytenotify.client import AsyncClient, Client, ClientError

# The HTTP client (and httpx with it) is imported on first use: the service
# itself never needs it, and it would cost every `serve` process its memory.
_CLIENT_NAMES = frozenset({"AsyncClient", "Client", "ClientError"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from flytenotify import client

        return getattr(client, name)
    raise AttributeError(f"module 'flytenotify' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Email",
    "Notification",
    "NotificationConfigError",
    "PagerDuty",
    "Problem",
    "Slack",
    "WorkflowExecutionPhase",
]
