"""Notifications in files: a JSON list, or an object with a ``notifications`` key.

Used by ``flytenotify validate`` and later by ``register``; reports every
problem in the file at once rather than stopping at the first.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from flytenotify.core.notification import Notification
from flytenotify.errors import NotificationConfigError, Problem


def parse_notifications(data: object, field: str = "notifications") -> list[Notification]:
    """Parse a list of notifications in their JSON form, reporting all problems."""
    if not isinstance(data, list):
        raise NotificationConfigError(
            Problem(field, f"must be a list of notifications, got {type(data).__name__}")
        )
    found: list[Notification] = []
    problems: list[Problem] = []
    for i, item in enumerate(data):
        try:
            found.append(Notification.from_dict(item))
        except NotificationConfigError as error:
            problems.extend(error.prefixed(f"{field}[{i}]").problems)
    if problems:
        raise NotificationConfigError(problems)
    return found


def load_notification_file(path: Path) -> list[Notification]:
    """Read ``path`` (JSON, or TOML when it ends in ``.toml``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise NotificationConfigError(
            Problem("", f"cannot read {path}: {error.strerror}")
        ) from None
    data: Any
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise NotificationConfigError(Problem("", f"not valid {_kind(path)}: {error}")) from None
    if isinstance(data, dict):
        if "notifications" not in data:
            raise NotificationConfigError(
                Problem("notifications", "is required: the file holds no notifications list")
            )
        return parse_notifications(data["notifications"])
    return parse_notifications(data)


def _kind(path: Path) -> str:
    return "TOML" if path.suffix == ".toml" else "JSON"
