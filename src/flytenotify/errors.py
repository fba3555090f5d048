"""Errors that user-facing entry points raise.

Configuration mistakes are ``AssertionError`` subclasses on purpose: flytekit
raises the builtin ``AssertionError`` for a bad phase, so code written against
flytekit that catches ``AssertionError`` keeps working with our stricter checks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class NotificationConfigError(AssertionError):
    """A notification definition that cannot be accepted.

    ``problems`` lists every problem found, each naming the field (for example
    ``notifications[1].email.recipients_email``) and showing the bad value.
    """

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems: list[Problem] = (
            [problems] if isinstance(problems, Problem) else list(problems)
        )
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def field(self) -> str:
        """The field of the first problem (most errors have exactly one)."""
        return self.problems[0].field

    def prefixed(self, prefix: str) -> NotificationConfigError:
        """The same problems, with ``prefix`` put in front of every field path."""
        return NotificationConfigError(
            [Problem(_join(prefix, p.field), p.message) for p in self.problems]
        )


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


class InputError(ValueError):
    """Malformed input to an entry point (an event, an execution, a request).

    Like :class:`NotificationConfigError` it carries every problem found, each
    naming its field; the HTTP API turns it into a 400 with those problems.
    """

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems: list[Problem] = (
            [problems] if isinstance(problems, Problem) else list(problems)
        )
        super().__init__("; ".join(str(p) for p in self.problems))


class UnknownReference(InputError):
    """Input naming something that does not exist (a launch plan never registered).

    The HTTP API answers 404, as FlyteAdmin does for the same mistake.
    """


class Conflict(InputError):
    """Input that contradicts what exists and cannot be changed this way (an entry the
    configuration file defines, changed over the API). The HTTP API answers 409."""


class UpstreamUnavailable(RuntimeError):
    """A service an event depends on (FlyteAdmin) cannot answer now; nothing was recorded.

    The event is not lost: a broker intake leaves the message unacknowledged so
    it comes back, and the HTTP API answers 503 with ``Retry-After``.
    """

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(InputError):
    """A request its caller may not make (an action the ``[actions]`` policy does not
    grant them). The HTTP API answers 403."""


class UpstreamRefused(RuntimeError):
    """Flyte's final answer to something asked of it: its status code and what it said.

    Asking again will not change it; the HTTP API answers 502 with the message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
