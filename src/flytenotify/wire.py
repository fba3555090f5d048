"""Read and write notifications where flyteidl keeps them.

A launch plan carries its notifications in
``LaunchPlanSpec.entity_metadata.notifications``; an execution may override
them with ``ExecutionSpec.notifications`` (a ``NotificationList``) or switch
them off with ``ExecutionSpec.disable_all`` (the two share a oneof).

Every helper accepts our objects, raw ``flyteidl.admin.Notification``
messages, and anything else with a ``to_flyte_idl()`` method (the real
flytekit's objects). Writers return a modified copy and never touch their input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flyteidl.admin import common_pb2, execution_pb2, launch_plan_pb2
from google.protobuf.message import Message

from flytenotify.core.notification import Notification
from flytenotify.errors import NotificationConfigError, Problem


class HasFlyteIdl(Protocol):
    def to_flyte_idl(self) -> Any: ...


NotificationLike = Notification | HasFlyteIdl | Message


def to_idl(notification: NotificationLike, field: str = "notification") -> Any:
    """The ``flyteidl.admin.Notification`` message for any notification-like value."""
    message = notification
    if not isinstance(message, Message) and hasattr(message, "to_flyte_idl"):
        message = message.to_flyte_idl()
    if not isinstance(message, Message) or (
        message.DESCRIPTOR.full_name != common_pb2.Notification.DESCRIPTOR.full_name
    ):
        raise NotificationConfigError(
            Problem(field, f"expected a notification, got {notification!r}")
        )
    return message


def to_notification(notification: NotificationLike, field: str = "notification") -> Notification:
    """Our validated user-facing object (``Email``, ``Slack`` or ``PagerDuty``)."""
    if isinstance(notification, Notification):
        return notification
    try:
        result: Notification = Notification.from_flyte_idl(to_idl(notification, field))
    except NotificationConfigError as error:
        raise error.prefixed(field) from None
    return result


def to_notifications(
    notifications: Iterable[NotificationLike], field: str = "notifications"
) -> list[Notification]:
    """Validate every item; all problems are reported together."""
    results: list[Notification] = []
    problems: list[Problem] = []
    for i, item in enumerate(notifications):
        try:
            results.append(to_notification(item, f"{field}[{i}]"))
        except NotificationConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise NotificationConfigError(problems)
    return results


# -- launch plans ------------------------------------------------------------


def _launch_plan_spec(launch_plan: Any) -> Any:
    if isinstance(launch_plan, launch_plan_pb2.LaunchPlan):
        return launch_plan.spec
    if isinstance(launch_plan, launch_plan_pb2.LaunchPlanSpec):
        return launch_plan
    raise NotificationConfigError(
        Problem(
            "launch_plan",
            f"expected a flyteidl LaunchPlan or LaunchPlanSpec, got {type(launch_plan).__name__}",
        )
    )


def launch_plan_notifications(launch_plan: Any) -> list[Notification]:
    """The notifications of a ``LaunchPlan`` or ``LaunchPlanSpec`` message."""
    spec = _launch_plan_spec(launch_plan)
    return to_notifications(
        spec.entity_metadata.notifications, field="spec.entity_metadata.notifications"
    )


def with_launch_plan_notifications(
    launch_plan: Any, notifications: Iterable[NotificationLike]
) -> Any:
    """A copy of the ``LaunchPlan``/``LaunchPlanSpec`` with its notifications replaced."""
    messages = [to_idl(n, f"notifications[{i}]") for i, n in enumerate(notifications)]
    copy = type(launch_plan)()
    copy.CopyFrom(launch_plan)
    spec = _launch_plan_spec(copy)
    del spec.entity_metadata.notifications[:]
    spec.entity_metadata.notifications.extend(messages)
    return copy


# -- executions --------------------------------------------------------------


@dataclass(frozen=True)
class NotificationOverrides:
    """What an execution says about notifications.

    ``notifications`` non-empty replaces the launch plan's; ``disable_all``
    switches them off; neither leaves the launch plan's in force.
    """

    notifications: tuple[Notification, ...] = ()
    disable_all: bool = False


def execution_overrides(spec: Any) -> NotificationOverrides:
    """The notification overrides of a flyteidl ``ExecutionSpec``."""
    if not isinstance(spec, execution_pb2.ExecutionSpec):
        raise NotificationConfigError(
            Problem("spec", f"expected a flyteidl ExecutionSpec, got {type(spec).__name__}")
        )
    which = spec.WhichOneof("notification_overrides")
    if which == "disable_all":
        return NotificationOverrides(disable_all=spec.disable_all)
    if which == "notifications":
        found = to_notifications(spec.notifications.notifications, "notifications.notifications")
        return NotificationOverrides(notifications=tuple(found))
    return NotificationOverrides()


def with_execution_overrides(
    spec: Any,
    notifications: Iterable[NotificationLike] | None = None,
    disable_all: bool = False,
) -> Any:
    """A copy of ``spec`` with its notification override set (or cleared)."""
    if not isinstance(spec, execution_pb2.ExecutionSpec):
        raise NotificationConfigError(
            Problem("spec", f"expected a flyteidl ExecutionSpec, got {type(spec).__name__}")
        )
    messages = [to_idl(n, f"notifications[{i}]") for i, n in enumerate(notifications or ())]
    if messages and disable_all:
        raise NotificationConfigError(
            Problem("disable_all", "cannot be combined with a notifications override")
        )
    copy = execution_pb2.ExecutionSpec()
    copy.CopyFrom(spec)
    copy.ClearField("notification_overrides")
    if disable_all:
        copy.disable_all = True
    elif messages:
        copy.notifications.CopyFrom(execution_pb2.NotificationList(notifications=messages))
    return copy
