"""flytenotify: flytekit-compatible workflow notifications, delivered for real.

The configuration API is a drop-in for flytekit's::

    from flytenotify import Email, WorkflowExecutionPhase

    Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["ops@example.com"])
"""

from flytenotify.client import AsyncClient, Client, ClientError
from flytenotify.core.notification import Email, Notification, PagerDuty, Slack
from flytenotify.errors import NotificationConfigError, Problem
from flytenotify.models.core.execution import WorkflowExecutionPhase

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
