"""flytenotify: flytekit-compatible workflow notifications, delivered for real.

The configuration API is a drop-in for flytekit's::

    from flytenotify import Email, WorkflowExecutionPhase

    Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["ops@example.com"])

What users import is exported here, as httpx does: the notification classes,
the in-process engine (``Notifier``, ``SyncNotifier``) and its ``Settings``,
the HTTP client (``Client``, ``AsyncClient``), the identifiers, silences
(``Silence``, ``Recurrence``: what ``Notifier.create_silence`` takes), and the
flyteidl helpers. Every other module is internal: its names may change between versions.
"""

from typing import TYPE_CHECKING, Any

from flytenotify.core.notification import Email, Notification, PagerDuty, Slack
from flytenotify.domain import EntityId, ExecutionId, Recurrence, Silence
from flytenotify.errors import InputError, NotificationConfigError, Problem
from flytenotify.models.core.execution import WorkflowExecutionPhase
from flytenotify.wire import (
    execution_overrides,
    launch_plan_notifications,
    with_execution_overrides,
    with_launch_plan_notifications,
)

if TYPE_CHECKING:
    from flytenotify.app import Notifier, SyncNotifier
    from flytenotify.client import AsyncClient, Client, ClientError
    from flytenotify.config import Settings, SmtpConfig

# Imported on first use: the HTTP client (and httpx with it) is never needed by
# the service itself, and the engine and its configuration pull in every
# channel's libraries, which a script declaring notifications does not need.
_LAZY = {
    "AsyncClient": "flytenotify.client",
    "Client": "flytenotify.client",
    "ClientError": "flytenotify.client",
    "Notifier": "flytenotify.app",
    "SyncNotifier": "flytenotify.app",
    "Settings": "flytenotify.config",
    "SmtpConfig": "flytenotify.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flytenotify' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Email",
    "EntityId",
    "ExecutionId",
    "InputError",
    "Notification",
    "NotificationConfigError",
    "Notifier",
    "PagerDuty",
    "Problem",
    "Recurrence",
    "Settings",
    "Silence",
    "Slack",
    "SmtpConfig",
    "SyncNotifier",
    "WorkflowExecutionPhase",
    "execution_overrides",
    "launch_plan_notifications",
    "with_execution_overrides",
    "with_launch_plan_notifications",
]
