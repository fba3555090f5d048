"""One place is enough: a channel added only through the registry is everywhere.

The "pigeon" channel below is declared the way every channel module declares
itself (a configuration section, a builder, a routing rule, a preview, a
summary) and registered; nothing else in flytenotify is told about it. The
tests then find it in configuration, routing, delivery, the dev inbox,
``check-config``, ``send-test``, ``/readyz`` and the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import Field

from flytenotify import Email, WorkflowExecutionPhase
from flytenotify.app import Notifier
from flytenotify.channels import registry
from flytenotify.channels.base import (
    ChannelDefaults,
    ChannelSpec,
    SendResult,
    SharedPacing,
    named_target,
)
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, Settings
from flytenotify.domain import Delivery
from flytenotify.engine.resolve import Route, RoutingError, route
from flytenotify.sections import Section
from flytenotify.settings_loader import ConfigError, load_config
from flytenotify.web.api import create_app, document
from tests.helpers import PLAN, event_json

# What the pigeon channel was asked to carry, by loft: (loft, delivery).
FLOWN: list[tuple[str, Delivery]] = []


class Loft(Section):
    """[pigeons.NAME]: a loft the pigeons fly to."""

    address: str
    birds: int = Field(default=1, ge=1)


class PigeonChannel(ChannelDefaults):
    name = "pigeon"

    def __init__(self, lofts: dict[str, Loft]) -> None:
        self._lofts = lofts

    async def send(self, delivery: Delivery) -> SendResult:
        loft = self._lofts[delivery.recipient]
        FLOWN.append((loft.address, delivery))
        return SendResult.delivered(f"landed at {loft.address}")

    async def check(self) -> str:
        return f"pigeon: {len(self._lofts)} loft(s) answer"

    async def close(self) -> None:
        return None


def _build(lofts: dict[str, Loft], _pacing: SharedPacing | None) -> PigeonChannel:
    return PigeonChannel(lofts)


def _preview(delivery: Delivery) -> str:
    return json.dumps({"note": delivery.message.subject, "loft": delivery.recipient})


PIGEON: ChannelSpec[dict[str, Loft]] = ChannelSpec(
    name="pigeon",
    section="pigeons",
    config=dict[str, Loft],
    build=_build,
    takes=named_target("pigeon:", "loft"),
    preview=_preview,
    summary=lambda lofts: f"{len(lofts)} loft(s)",
    prefix="pigeon:",
    test_kind="email",
    route_order=10,
    allow_names=lambda lofts: lofts,
)


@pytest.fixture(autouse=True)
def pigeon() -> Iterator[None]:
    registry.register(PIGEON)
    FLOWN.clear()
    yield
    registry.unregister(PIGEON.name)


def _config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        f'[database]\nurl = "{tmp_path / "ledger.db"}"\n'
        '[pigeons.roof]\naddress = "the roof"\nbirds = 3\n' + extra
    )
    return path


def test_its_section_is_configuration_like_any_other(tmp_path: Path) -> None:
    loaded = load_config(_config_file(tmp_path), {"FLYTENOTIFY_PIGEONS__ROOF__BIRDS": "5"})
    assert loaded.settings.channel("pigeon") == {"roof": Loft(address="the roof", birds=5)}
    assert loaded.settings.configured("pigeon")

    with pytest.raises(ConfigError) as caught:
        load_config(
            _config_file(tmp_path, '[pigeons.yard]\naddress = "x"\nbirds = 0\nwings = 2\n'), {}
        )
    assert sorted(caught.value.problems) == [
        "pigeons.yard.birds: Input should be greater than or equal to 1",
        "pigeons.yard.wings: unknown key",
    ]


def test_allow_lists_know_it(tmp_path: Path) -> None:
    loaded = load_config(_config_file(tmp_path, '[allow]\npigeon = ["roof"]\n'), {})
    assert loaded.settings.allow.entries("pigeon") == ["roof"]
    with pytest.raises(ConfigError) as caught:
        load_config(_config_file(tmp_path, '[allow]\npigeon = ["cellar"]\n'), {})
    assert caught.value.problems == ["allow.pigeon: 'cellar' is not configured in [pigeons]"]


def test_routing_offers_it_its_recipients() -> None:
    settings = Settings(pigeons={"roof": Loft(address="the roof")})
    assert route("email", "pigeon:roof", settings) == Route("pigeon", "roof")
    assert route("slack", "pigeon:roof", settings) == Route("pigeon", "roof")
    # The dev inbox stands in for pigeons only where there are none.
    assert route("email", "pigeon:cellar", Settings(), dev_inbox=True) == Route(
        "inbox", "pigeon:cellar"
    )
    with pytest.raises(RoutingError, match="no loft named 'cellar' is configured"):
        route("email", "pigeon:cellar", settings, dev_inbox=True)


async def _deliver(settings: Settings, dev_inbox: bool) -> Notifier:
    notifier = Notifier(settings, dev_inbox=dev_inbox)
    await notifier.start()
    await notifier.register_launch_plan(
        PLAN, [Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["pigeon:roof"])]
    )
    await notifier.report_event(event_json("run-1", "FAILED", error="boom", launch_plan=PLAN))
    await notifier.run_until_idle()
    return notifier


async def test_the_dispatcher_delivers_through_it(tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseConfig(url=str(tmp_path / "ledger.db")),
        pigeons={"roof": Loft(address="the roof")},
    )
    notifier = await _deliver(settings, dev_inbox=False)
    try:
        ((loft, delivery),) = FLOWN
        assert loft == "the roof"
        assert delivery.execution_id.name == "run-1"
        (stored,) = await notifier.deliveries()
        assert (stored.channel, stored.status.value) == ("pigeon", "delivered")
        assert stored.last_reply == "landed at the roof"
    finally:
        await notifier.close()


async def test_the_dev_inbox_shows_its_form(tmp_path: Path) -> None:
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "ledger.db")))
    notifier = await _deliver(settings, dev_inbox=True)
    try:
        assert FLOWN == []
        (message,) = await notifier.inbox()
        assert message.recipient == "pigeon:roof"
        assert json.loads(message.body) == {"note": message.subject, "loft": "pigeon:roof"}
        assert message.subject == "Flyte execution proj/prod/run-1 failed"
    finally:
        await notifier.close()


def test_check_config_lists_and_reaches_it(tmp_path: Path) -> None:
    config = _config_file(tmp_path)
    result = CliRunner().invoke(main, ["check-config", str(config), "--connect", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["channels"]["pigeon"] == "configured (1 loft(s))"
    assert "pigeon: 1 loft(s) answer" in answer["connected"]


def test_send_test_reaches_it(tmp_path: Path) -> None:
    config = _config_file(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["send-test", "pigeon", "roof", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "delivered: landed at the roof"
    ((loft, delivery),) = FLOWN
    assert (loft, delivery.message.subject) == ("the roof", "flytenotify test message")

    unknown = runner.invoke(main, ["send-test", "pigeon", "cellar", "--config", str(config)])
    assert unknown.exit_code == 2
    assert "no loft named 'cellar' is configured" in unknown.output


async def test_readyz_and_the_openapi_document_name_it(tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseConfig(url=str(tmp_path / "ledger.db")),
        pigeons={"roof": Loft(address="the roof")},
    )
    async with Notifier(settings) as notifier:
        transport = httpx.ASGITransport(app=create_app(notifier))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ready = (await client.get("/readyz")).json()
            served = (await client.get("/openapi.json")).json()
    assert ready["channels"]["pigeon"] == "configured"
    assert ready["channels"]["email"] == "unconfigured"
    readyz: dict[str, Any] = served["paths"]["/readyz"]["get"]["responses"]["200"]
    reference = readyz["content"]["application/json"]["schema"]["$ref"]
    schema = served["components"]["schemas"][reference.rsplit("/", 1)[1]]
    channels = schema["properties"]["channels"]
    assert "pigeon" in channels["required"]
    assert served == document()
