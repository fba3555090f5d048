"""Notifications as users declare them, a drop-in for ``flytekit.core.notification``.

``Email``, ``Slack`` and ``PagerDuty`` each take terminal ``phases`` and a
non-empty list of ``recipients_email``, and serialize to exactly the bytes
flytekit produces. Mistakes raise ``AssertionError`` (flytekit's own messages
for phases, clearer ones naming the field for what flytekit forgot to check).

    >>> from flytenotify.core.notification import Email
    >>> from flytenotify.models.core.execution import WorkflowExecutionPhase
    >>> Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["ops@example.com"]).phases
    [6]
"""

from __future__ import annotations

from typing import Any, ClassVar

from flytenotify.errors import NotificationConfigError, Problem
from flytenotify.models import common as _common_model
from flytenotify.models.core.execution import TERMINAL_PHASES


class Notification(_common_model.Notification):
    """A notification for terminal phases only, with exactly one channel."""

    VALID_PHASES: ClassVar[set[int]] = set(TERMINAL_PHASES)

    def __init__(
        self,
        phases: list[int],
        email: _common_model.EmailNotification | None = None,
        pager_duty: _common_model.PagerDutyNotification | None = None,
        slack: _common_model.SlackNotification | None = None,
    ) -> None:
        self._validate_phases(phases)
        super().__init__(phases, email=email, pager_duty=pager_duty, slack=slack)
        if self.channel is None:
            raise NotificationConfigError(
                Problem("", "a notification needs one channel: email, slack or pager_duty")
            )

    def _validate_phases(self, phases: object) -> None:
        # flytekit's checks and messages, in flytekit's order (empty first, then
        # the first bad phase wins), with a shape check before them so that a
        # bare int or a string gets a clear message instead of a TypeError.
        if not isinstance(phases, (list, tuple)):
            _common_model.check_phase_shape(phases)  # raises unless a sequence
        sequence = list(phases)  # type: ignore[call-overload]
        if len(sequence) == 0:
            raise _FlytekitError(
                "You must specify at least one phase for a notification.", "phases"
            )
        for i, phase in enumerate(sequence):
            if not isinstance(phase, int) or isinstance(phase, bool):
                _common_model.check_phase_shape(sequence)  # raises, naming the value
            if phase not in self.VALID_PHASES:
                raise _FlytekitError(
                    f"Invalid phase: {phase}. only terminal states are permitted for notifications",
                    f"phases[{i}]",
                )

    @classmethod
    def _from_parts(cls, phases: list[int], channel: dict[str, Any]) -> Any:
        # ``Notification.from_flyte_idl``/``from_dict`` on this base class give
        # back the specific user-facing class for the channel.
        if cls is Notification and len(channel) == 1:
            ((name, settings),) = channel.items()
            return _CLASS_FOR_CHANNEL[name]._build(phases, settings)
        return cls(phases, **channel)


class _FlytekitError(NotificationConfigError):
    """flytekit's exact message (tests compare it), carrying the field for our callers."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(Problem(field, message))
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class _SingleChannel(Notification):
    """Shared body of ``Email``, ``Slack`` and ``PagerDuty``."""

    _channel: ClassVar[str]

    def __init__(
        self, phases: list[int], recipients_email: list[str], template: str | None = None
    ) -> None:
        model = _common_model.CHANNEL_MODELS[self._channel]
        try:
            settings = model(recipients_email, template=template)
        except NotificationConfigError as error:
            # Checks on phases come first, as in flytekit.
            self._validate_phases(phases)
            raise error
        channel: dict[str, Any] = {self._channel: settings}
        super().__init__(phases, **channel)

    @property
    def recipients_email(self) -> list[str]:
        settings = self.channel_settings
        assert settings is not None
        return settings.recipients_email

    @property
    def template(self) -> str | None:
        settings = self.channel_settings
        assert settings is not None
        return settings.template

    @classmethod
    def _build(cls, phases: list[int], settings: Any) -> Any:
        return cls(phases, settings.recipients_email, template=settings.template)

    @classmethod
    def _from_parts(cls, phases: list[int], channel: dict[str, Any]) -> Any:
        settings = channel.get(cls._channel)
        if settings is None or len(channel) != 1:
            found = ", ".join(channel) or "no channel"
            raise NotificationConfigError(
                Problem(
                    cls._channel,
                    f"{cls.__name__} expects a {cls._channel} notification, got {found}",
                )
            )
        return cls._build(phases, settings)


class Email(_SingleChannel):
    """Email the recipients when the execution reaches one of ``phases``."""

    _channel = "email"


class Slack(_SingleChannel):
    """Post to Slack: ``#channel``, a channel ID, or a person's email address."""

    _channel = "slack"


class PagerDuty(_SingleChannel):
    """Trigger (or resolve) a PagerDuty incident for the recipients' services."""

    _channel = "pager_duty"


_CLASS_FOR_CHANNEL: dict[str, type[_SingleChannel]] = {
    "email": Email,
    "slack": Slack,
    "pager_duty": PagerDuty,
}


def declared_as(kind: str) -> str:
    """The class a notification of ``kind`` is declared with (``pager_duty``: ``PagerDuty``).

    A delivery's ``kind`` is flyteidl's field name; people know the class.
    """
    declared = _CLASS_FOR_CHANNEL.get(kind)
    return declared.__name__ if declared is not None else kind
