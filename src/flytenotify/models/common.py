"""Notification models, wire-identical to ``flytekit.models.common``.

Each model wraps one ``flyteidl.admin`` message. ``to_flyte_idl()`` returns the
real protobuf message, so serialized bytes are exactly flytekit's. Unlike
flytekit, recipients are checked when a model is built (the product document
calls them "a required non-empty list"), the optional ``template`` field
survives a round trip, and every model has a JSON form: the protobuf canonical
JSON mapping of ``flyteidl.admin.Notification``.
"""

from __future__ import annotations

import abc
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from flyteidl.admin import common_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from flytenotify.errors import NotificationConfigError, Problem
from flytenotify.models.core.execution import (
    TERMINAL_PHASES,
    WorkflowExecutionPhase,
    phase_from_name,
)

_T = TypeVar("_T", bound="Notification")


class FlyteIdlEntity(abc.ABC):
    """Base of every model: identity and text forms derive from the protobuf."""

    @abc.abstractmethod
    def to_flyte_idl(self) -> Any:
        """The ``flyteidl`` protobuf message this model stands for."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlyteIdlEntity) and other.to_flyte_idl() == self.to_flyte_idl()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.to_flyte_idl().SerializeToString(deterministic=True))

    def __repr__(self) -> str:
        """The protobuf text format of the message, as flytekit's ``repr()``."""
        return str(self.to_flyte_idl())

    def __str__(self) -> str:
        return self.short_string()

    def short_string(self) -> str:
        """``Flyte Serialized object (Email):`` and the protobuf fields, as flytekit prints them."""
        fields = _yaml_like(self.to_flyte_idl(), indent=2).rstrip(os.linesep)
        return f"Flyte Serialized object ({type(self).__name__}):" + os.linesep + fields

    def verbose_string(self) -> str:
        """The same as :meth:`short_string` (kept for callers of earlier flytekit versions)."""
        return self.short_string()

    def serialize_to_string(self) -> bytes:
        return bytes(self.to_flyte_idl().SerializeToString())

    @property
    def is_empty(self) -> bool:
        return len(self.to_flyte_idl().SerializeToString()) == 0


def _yaml_like(message: Any, indent: int) -> str:
    """flytekit's text form of a protobuf message, one line per set field.

    Fields come in field-number order (``ListFields``). A sub-message is a
    ``name:`` line followed by its own fields two columns further in, and is
    left out when none of its fields is set. Anything else (a scalar, or a
    repeated field shown as a Python list) is ``name: text`` where the text is
    ``textwrap.shorten(str(value).strip(), width=80)``: whitespace runs become
    one space and a longer text is cut at a word boundary and ends in
    ``[...]``; a field whose text ends up empty is left out.
    """
    if not hasattr(message, "ListFields"):
        return str(message)
    lines: list[str] = []
    for descriptor, value in message.ListFields():
        if hasattr(value, "ListFields"):
            if value.ListFields():
                lines.append(" " * indent + descriptor.name + ":" + os.linesep)
                lines.append(_yaml_like(value, indent + 2))
            continue
        text = textwrap.shorten(str(value).strip(), width=80)
        if text:
            lines.append(" " * indent + descriptor.name + ": " + text + os.linesep)
    return "".join(lines)


# --------------------------------------------------------------------------
# Shape checks shared by the models and the user-facing classes
# --------------------------------------------------------------------------


def check_recipients(recipients: object, field: str = "recipients_email") -> list[str]:
    """Return ``recipients`` as a list, or raise naming the field and the value.

    flytekit accepts a bare string and splits it into characters, and accepts an
    empty list; the product document says recipients are a required non-empty
    list, so both are refused here.
    """
    if isinstance(recipients, str):
        raise NotificationConfigError(
            Problem(
                field,
                f"must be a list of recipients, got the bare string {recipients!r}; "
                f"write [{recipients!r}]",
            )
        )
    if not isinstance(recipients, Sequence):
        raise NotificationConfigError(
            Problem(field, f"must be a non-empty list of strings, got {recipients!r}")
        )
    if len(recipients) == 0:
        raise NotificationConfigError(
            Problem(field, "must not be empty: name at least one recipient")
        )
    problems = [
        Problem(f"{field}[{i}]", f"must be a non-empty string, got {value!r}")
        for i, value in enumerate(recipients)
        if not isinstance(value, str) or not value.strip()
    ]
    if problems:
        raise NotificationConfigError(problems)
    return list(recipients)


def check_phase_shape(phases: object, field: str = "phases") -> list[int]:
    """Return ``phases`` as a list of ints, or raise naming the bad value.

    Only the shape is checked here; which phases are allowed is the business of
    :class:`flytenotify.core.notification.Notification`.
    """
    if isinstance(phases, (str, bytes, int)) or not isinstance(phases, Sequence):
        raise NotificationConfigError(
            Problem(field, f"must be a list of WorkflowExecutionPhase values, got {phases!r}")
        )
    problems = [
        Problem(
            f"{field}[{i}]",
            f"must be a WorkflowExecutionPhase value (an int), got {value!r}",
        )
        for i, value in enumerate(phases)
        if not isinstance(value, int) or isinstance(value, bool)
    ]
    if problems:
        raise NotificationConfigError(problems)
    return [int(p) for p in phases]


def _check_template(template: object, field: str = "template") -> str | None:
    if template is None or isinstance(template, str):
        return template or None
    raise NotificationConfigError(Problem(field, f"must be a string, got {template!r}"))


# --------------------------------------------------------------------------
# Channel models
# --------------------------------------------------------------------------


class _ChannelNotification(FlyteIdlEntity):
    """Recipients plus an optional body template; one subclass per channel."""

    _pb_class: ClassVar[Any]

    def __init__(self, recipients_email: list[str], template: str | None = None) -> None:
        self._recipients_email = check_recipients(recipients_email)
        self._template = _check_template(template)

    @property
    def recipients_email(self) -> list[str]:
        return self._recipients_email

    @property
    def template(self) -> str | None:
        """The body template FlyteAdmin ignores and flytenotify renders."""
        return self._template

    def to_flyte_idl(self) -> Any:
        return self._pb_class(recipients_email=self._recipients_email, template=self._template)

    @classmethod
    def from_flyte_idl(cls, pb2_object: Any) -> Any:
        return cls(list(pb2_object.recipients_email), template=pb2_object.template or None)


class EmailNotification(_ChannelNotification):
    _pb_class = common_pb2.EmailNotification


class SlackNotification(_ChannelNotification):
    _pb_class = common_pb2.SlackNotification


class PagerDutyNotification(_ChannelNotification):
    _pb_class = common_pb2.PagerDutyNotification


# The protobuf oneof field of each channel, in declaration order.
CHANNEL_MODELS: dict[str, type[_ChannelNotification]] = {
    "email": EmailNotification,
    "pager_duty": PagerDutyNotification,
    "slack": SlackNotification,
}


# --------------------------------------------------------------------------
# The notification model
# --------------------------------------------------------------------------


class Notification(FlyteIdlEntity):
    """Phases plus one channel (``email``, ``pager_duty`` or ``slack``)."""

    def __init__(
        self,
        phases: list[int],
        email: EmailNotification | None = None,
        pager_duty: PagerDutyNotification | None = None,
        slack: SlackNotification | None = None,
    ) -> None:
        self._phases = check_phase_shape(phases)
        channels = {"email": email, "pager_duty": pager_duty, "slack": slack}
        given = [name for name, value in channels.items() if value is not None]
        if len(given) > 1:
            # The protobuf keeps these in a oneof: all but one would be dropped
            # silently on the wire.
            raise NotificationConfigError(
                Problem(
                    given[1],
                    f"a notification has exactly one channel, got {', '.join(given)}",
                )
            )
        for name, value in channels.items():
            if value is not None and not isinstance(value, CHANNEL_MODELS[name]):
                raise NotificationConfigError(
                    Problem(name, f"must be a {CHANNEL_MODELS[name].__name__}, got {value!r}")
                )
        self._email = email
        self._pager_duty = pager_duty
        self._slack = slack

    @property
    def phases(self) -> list[int]:
        return self._phases

    @property
    def email(self) -> EmailNotification | None:
        return self._email

    @property
    def pager_duty(self) -> PagerDutyNotification | None:
        return self._pager_duty

    @property
    def slack(self) -> SlackNotification | None:
        return self._slack

    @property
    def channel(self) -> str | None:
        """Which oneof field is set: ``"email"``, ``"pager_duty"``, ``"slack"`` or None."""
        for name in CHANNEL_MODELS:
            if getattr(self, name) is not None:
                return name
        return None

    @property
    def channel_settings(self) -> _ChannelNotification | None:
        """The set channel's recipients and template, whichever channel it is."""
        name = self.channel
        return getattr(self, name) if name else None

    def to_flyte_idl(self) -> Any:
        return common_pb2.Notification(
            phases=self._phases,
            email=self._email.to_flyte_idl() if self._email else None,
            pager_duty=self._pager_duty.to_flyte_idl() if self._pager_duty else None,
            slack=self._slack.to_flyte_idl() if self._slack else None,
        )

    @classmethod
    def from_flyte_idl(cls: type[_T], pb2_object: Any) -> _T:
        """Rebuild from a ``flyteidl.admin.Notification`` message."""
        if not isinstance(pb2_object, Message) or (
            pb2_object.DESCRIPTOR.full_name != common_pb2.Notification.DESCRIPTOR.full_name
        ):
            raise NotificationConfigError(
                Problem("", f"expected a flyteidl.admin.Notification message, got {pb2_object!r}")
            )
        message: Any = pb2_object
        channel = message.WhichOneof("type")
        kwargs: dict[str, Any] = {}
        if channel:
            try:
                kwargs[channel] = CHANNEL_MODELS[channel].from_flyte_idl(getattr(message, channel))
            except NotificationConfigError as error:
                raise error.prefixed(channel) from None
        return cls._from_parts(list(message.phases), kwargs)

    @classmethod
    def _from_parts(cls: type[_T], phases: list[int], channel: dict[str, Any]) -> _T:
        """Build an instance from phases and ``{oneof name: channel model}``.

        Subclasses with a different constructor (``Email`` and friends)
        override this; ``from_flyte_idl`` and ``from_dict`` both go through it.
        """
        return cls(phases, **channel)

    # -- JSON form ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The protobuf canonical JSON mapping: ``{"phases": ["FAILED"], "email": {...}}``."""
        result: dict[str, Any] = json_format.MessageToDict(self.to_flyte_idl())
        return result

    @classmethod
    def from_dict(cls: type[_T], data: object) -> _T:
        """Parse the JSON form; either field spelling, phases by name or number.

        Every problem found is reported at once in a
        :class:`~flytenotify.errors.NotificationConfigError`.
        """
        phases, channel = parse_notification_dict(data)
        return cls._from_parts(phases, channel)


_CHANNEL_KEYS = {
    "email": "email",
    "slack": "slack",
    "pager_duty": "pager_duty",
    "pagerDuty": "pager_duty",
}
_RECIPIENT_KEYS = ("recipients_email", "recipientsEmail")


def parse_notification_dict(data: object) -> tuple[list[int], dict[str, Any]]:
    """Split a JSON notification into phases and ``{oneof name: channel model}``."""
    if not isinstance(data, Mapping):
        raise NotificationConfigError(
            Problem("", f"a notification must be a JSON object, got {data!r}")
        )
    problems: list[Problem] = []
    unknown = [k for k in data if k != "phases" and k not in _CHANNEL_KEYS]
    problems.extend(
        Problem(str(k), "unknown field; expected phases and one of email, slack, pager_duty")
        for k in unknown
    )
    phases = _collect(problems, lambda: _parse_phases(data.get("phases")))
    channels = [k for k in data if k in _CHANNEL_KEYS]
    channel: dict[str, Any] = {}
    if not channels:
        problems.append(Problem("", "a notification needs one channel: email, slack or pager_duty"))
    elif len(channels) > 1:
        problems.append(
            Problem(
                channels[1], f"a notification has exactly one channel, got {', '.join(channels)}"
            )
        )
    else:
        key = channels[0]
        name = _CHANNEL_KEYS[key]
        model = _collect(problems, lambda: _parse_channel(CHANNEL_MODELS[name], data[key]), key)
        if model is not None:
            channel[name] = model
    if problems:
        raise NotificationConfigError(problems)
    assert phases is not None  # no problems means phases parsed
    return phases, channel


def _collect(problems: list[Problem], parse: Any, prefix: str = "") -> Any:
    try:
        return parse()
    except NotificationConfigError as error:
        problems.extend(error.prefixed(prefix).problems)
        return None


def _parse_phases(raw: object) -> list[int]:
    if raw is None:
        raise NotificationConfigError(Problem("phases", "is required: list the terminal phases"))
    if isinstance(raw, (str, int)) or not isinstance(raw, Sequence):
        raise NotificationConfigError(
            Problem("phases", f"must be a list of phase names or numbers, got {raw!r}")
        )
    phases: list[int] = []
    problems: list[Problem] = []
    for i, value in enumerate(raw):
        if isinstance(value, str):
            number = phase_from_name(value)
            if number is None:
                problems.append(
                    Problem(
                        f"phases[{i}]", f"unknown phase {value!r}; use one of {_TERMINAL_NAMES}"
                    )
                )
                continue
            phases.append(number)
        elif isinstance(value, int) and not isinstance(value, bool):
            phases.append(value)
        else:
            problems.append(
                Problem(f"phases[{i}]", f"must be a phase name or number, got {value!r}")
            )
    if problems:
        raise NotificationConfigError(problems)
    return phases


_TERMINAL_NAMES = ", ".join(
    WorkflowExecutionPhase.enum_to_string(p) for p in sorted(TERMINAL_PHASES)
)


def _parse_channel(model: type[_ChannelNotification], raw: object) -> _ChannelNotification:
    if not isinstance(raw, Mapping):
        raise NotificationConfigError(
            Problem("", f"must be an object with recipients_email, got {raw!r}")
        )
    problems = [
        Problem(str(k), "unknown field; expected recipients_email and template")
        for k in raw
        if k not in (*_RECIPIENT_KEYS, "template")
    ]
    present = [k for k in _RECIPIENT_KEYS if k in raw]
    if not present:
        problems.append(Problem("recipients_email", "is required: name at least one recipient"))
        raise NotificationConfigError(problems)
    built = _collect(problems, lambda: model(raw[present[0]], template=raw.get("template")))
    if problems:
        raise NotificationConfigError(problems)
    result: _ChannelNotification = built
    return result
