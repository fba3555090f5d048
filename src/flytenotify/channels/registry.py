"""Every channel flytenotify knows, in one place.

Like Alertmanager's receiver configuration, everything that lists channels
(configuration, routing, the dev inbox, start-up summary, ``check-config``,
``send-test``, the HTTP API and its OpenAPI document) loops over this
registry. Adding a channel means writing one module that ends with a
:class:`~flytenotify.channels.base.ChannelSpec` and naming it in ``_BUILT_IN``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from flytenotify.channels.base import ChannelSpec
from flytenotify.domain import Delivery

# Not channels of their own: the dev inbox and the ledger's marker for a
# recipient no channel can reach.
INBOX, UNROUTABLE = "inbox", "unroutable"
RESERVED = frozenset({INBOX, UNROUTABLE})
# C0 and C1 controls (CR, LF, TAB, NUL...): in no channel's addresses.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Modules declaring a CHANNEL, in the order they are listed to people.
_BUILT_IN = ("email", "slack", "pagerduty", "webhook", "teams", "mattermost", "inline_webhook")

_specs: dict[str, ChannelSpec[Any]] = {}


def register(spec: ChannelSpec[Any]) -> ChannelSpec[Any]:
    """Add ``spec``; its name and configuration section must be new."""
    if spec.name in RESERVED or spec.name in _specs:
        raise ValueError(f"a channel named {spec.name!r} already exists")
    if any(known.section == spec.section for known in _specs.values()):
        raise ValueError(f"configuration section [{spec.section}] is already a channel's")
    _specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a channel (tests that register their own use this to clean up)."""
    _specs.pop(name, None)


def specs() -> list[ChannelSpec[Any]]:
    """Every channel, in the order they are listed to people."""
    return list(_specs.values())


def names() -> list[str]:
    return list(_specs)


def get(name: str) -> ChannelSpec[Any] | None:
    return _specs.get(name)


def routing_order() -> list[ChannelSpec[Any]]:
    """Channels in the order a recipient is offered to them."""
    return sorted(_specs.values(), key=lambda spec: spec.route_order)


def malformed(recipient: str) -> str | None:
    """Why ``recipient`` can be no channel's address, or None.

    No channel's address holds a control character. A recipient in a channel's
    prefixed form (``webhook:NAME``) is that channel's to judge when it is
    routed; any other is asked of each channel's ``malformed`` rule.
    """
    control = _CONTROL.search(recipient)
    if control is not None:
        return f"it has the control character {control.group()!r} at position {control.start()}"
    if any(spec.prefix is not None and recipient.startswith(spec.prefix) for spec in specs()):
        return None
    for spec in _specs.values():
        problem = spec.malformed(recipient) if spec.malformed is not None else None
        if problem is not None:
            return problem
    return None


# Prefixes that name a configured target whatever the notification kind.
_TARGET_PREFIXES = ("webhook:", "teams:", "mattermost:")
_PAGERDUTY = "pagerduty:"


def recipient_kind(recipient: str) -> tuple[str, str]:
    """The notification kind a named recipient is, and the recipient as that kind names it.

    Where no notification says the kind (Flyte 2's named rules, deadlines),
    the recipient's syntax does: ``#data-alerts`` is Slack's,
    ``pagerduty:data-oncall`` PagerDuty's ``data-oncall`` routing key, an
    address email's; ``webhook:ops`` and the other targets' prefixes are taken
    by their channel whatever the kind.
    """
    if recipient.startswith(_PAGERDUTY):
        return "pager_duty", recipient.removeprefix(_PAGERDUTY)
    if recipient.startswith(_TARGET_PREFIXES) or "@" in recipient.lstrip("@"):
        return "email", recipient
    return "slack", recipient


def previewer(delivery: Delivery) -> ChannelSpec[Any]:
    """The channel whose form ``delivery`` takes: its own, or for the dev inbox the
    channel that alone shows its message, else the one it stands in for
    (see :func:`standing_in_for`)."""
    own = _specs.get(delivery.channel)
    if own is not None:
        return own
    for spec in routing_order():
        if spec.shows is not None and spec.shows(delivery):
            return spec
    return standing_in_for(delivery.kind, delivery.recipient)


def standing_in_for(kind: str, recipient: str) -> ChannelSpec[Any]:
    """The channel a dev inbox message stands in for: by the recipient's prefix, then
    by the notification's kind (``pager_duty`` is the ``pagerduty`` channel's)."""
    for spec in routing_order():
        if spec.prefix is not None and recipient.startswith(spec.prefix):
            return spec
    for spec in routing_order():
        if kind in spec.kinds:
            return spec
    return _specs["email"]


def preview(delivery: Delivery) -> str:
    """What the channel sends (or would send) for ``delivery``.

    A digest for a channel with no digest form of its own is shown as each
    delivery's own form, one after another.
    """
    spec = previewer(delivery)
    if delivery.digest is None or spec.digests is not None:
        return spec.preview(delivery)
    return "\n\n".join(spec.preview(member) for member in delivery.digest.deliveries)


def _load_built_in() -> None:
    for module in _BUILT_IN:
        register(importlib.import_module(f"flytenotify.channels.{module}").CHANNEL)


_load_built_in()
