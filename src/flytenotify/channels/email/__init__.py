"""The email channel: one MIME message per delivery, sent over pooled SMTP.

Three parts, each readable on its own:

* :mod:`.mime`, **the message**: a delivery as the bytes that go on the wire
  (headers, encoded words, bodies, the boundary, a digest's text and HTML),
  the same bytes whenever it is built again.
* :mod:`.pool`, **the connections**: SMTP sessions kept open, each lent to
  one transaction at a time, reset after a refusal, dropped when idle or broken.
* :mod:`.channel`, **the channel**: ``[smtp]`` (:class:`SmtpConfig`),
  :class:`EmailChannel` and what each server reply means (delivered,
  transient, permanent), and the registry's :data:`CHANNEL`.

Everything other modules use is importable from here, as the registry
imports every channel's ``CHANNEL``.
"""

from __future__ import annotations

from flytenotify.channels.email.channel import (
    CHANNEL,
    EmailChannel,
    EmailCheckError,
    SmtpConfig,
    describe,
)
from flytenotify.channels.email.mime import (
    address_problem,
    build_message,
    digest_html,
    digest_text,
    encode_message,
    envelope_recipients,
    message_id,
    parse_address,
    single_line,
)
from flytenotify.channels.email.pool import IDLE_TIMEOUT

__all__ = [
    "CHANNEL",
    "IDLE_TIMEOUT",
    "EmailChannel",
    "EmailCheckError",
    "SmtpConfig",
    "address_problem",
    "build_message",
    "describe",
    "digest_html",
    "digest_text",
    "encode_message",
    "envelope_recipients",
    "message_id",
    "parse_address",
    "single_line",
]
