"""Every kind of intake source flytenotify knows, in one place.

As :mod:`flytenotify.channels.registry` does for channels, everything that
lists intake (configuration, start-up, ``/readyz``, ``/metrics``,
``check-config --connect``, the configuration summary) loops over this
registry. Adding a transport means writing its module, a module declaring its
:class:`~flytenotify.intake.source.IntakeSpec` as ``INTAKE`` (the same one
when it imports no heavy or optional client library), and naming that module
in ``_BUILT_IN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from flytenotify.intake.source import Feed, IntakeSpec, Source

# Modules declaring an INTAKE, in the order their sources are listed to people.
_BUILT_IN = ("flyte2_spec", "nats_spec", "gcp_spec", "aws_spec")

_specs: dict[str, IntakeSpec[Any, Any]] = {}


def register(spec: IntakeSpec[Any, Any]) -> IntakeSpec[Any, Any]:
    """Add ``spec``; its name and configuration section must be new."""
    if spec.name in _specs:
        raise ValueError(f"an intake named {spec.name!r} already exists")
    if any(known.section == spec.section for known in _specs.values()):
        raise ValueError(f"configuration section [{spec.section}] is already an intake's")
    _specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove an intake (tests that register their own use this to clean up)."""
    _specs.pop(name, None)


def specs() -> list[IntakeSpec[Any, Any]]:
    """Every intake, in the order their sources are listed to people."""
    return list(_specs.values())


def get(name: str) -> IntakeSpec[Any, Any] | None:
    return _specs.get(name)


class MissingExtra(Exception):
    """An intake section whose client library is not installed."""

    def __init__(self, spec: IntakeSpec[Any, Any], error: ModuleNotFoundError) -> None:
        super().__init__(
            f"[{spec.section}] needs {error.name or 'a module'!r}, which is not installed:"
            f" install flytenotify[{spec.extra}] (pip install 'flytenotify[{spec.extra}]')"
        )
        self.section = spec.section


class Sections(Protocol):
    """Where each intake's section is read (:class:`~flytenotify.config.Settings`)."""

    def intake_section(self, name: str) -> Any: ...


@dataclass(frozen=True)
class Built:
    """One source, built from its section, and the intake that says how it runs."""

    spec: IntakeSpec[Any, Any]
    source: Source

    async def run(self, feed: Feed, stop: asyncio.Event) -> None:
        await self.spec.run(self.source, feed, stop)


def build(settings: Sections) -> list[Built]:
    """The sources of every configured intake, each with its intake.

    A client library is imported only when its section is configured; raises
    :class:`MissingExtra` when it is an optional one that is not installed.
    """
    built: list[Built] = []
    for spec in _specs.values():
        config = settings.intake_section(spec.name)
        if config is None:
            continue
        with _client_library(spec):
            sources = spec.build(config)
        built += [Built(spec, source) for source in sources]
    return built


def build_sources(settings: Sections) -> list[Source]:
    """The sources of every configured intake (to describe or check them)."""
    return [each.source for each in build(settings)]


@contextlib.contextmanager
def _client_library(spec: IntakeSpec[Any, Any]) -> Iterator[None]:
    try:
        yield
    except ModuleNotFoundError as error:
        if spec.extra is None or (error.name or "").partition(".")[0] == "flytenotify":
            raise  # a required library or our own module missing: a broken install
        raise MissingExtra(spec, error) from None


def _load_built_in() -> None:
    for module in _BUILT_IN:
        register(importlib.import_module(f"flytenotify.intake.{module}").INTAKE)


_load_built_in()
