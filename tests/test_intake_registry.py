"""One place is enough: an intake added only through the registry is everywhere.

The "spool" intake (tests/spool_intake.py) is declared the way every intake
module declares itself and registered; nothing else in flytenotify is told
about it. The tests then find it in configuration (the file and the
environment, its problems named by key), ``check-config``, start-up, ``/readyz``
and ``/metrics``, and see the events it reads reach the ledger.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.intake import egress, registry
from flytenotify.intake.source import IntakeSpec, SourceState, run_broker
from flytenotify.metrics import Metrics
from flytenotify.settings_loader import ConfigError, load_config
from flytenotify.web.api import create_app
from tests import flyteadmin_egress
from tests.helpers import register_plan_and_run, write_config
from tests.spool_intake import INTAKE, SpoolConfig, register, spool, unregister
from tests.test_serve import start_serve, stop

WAIT = 30.0  # seconds: the bound on every wait below


@pytest.fixture(autouse=True)
def spool_intake() -> Iterator[None]:
    register()
    yield
    unregister()


def _config(tmp_path: Path, directory: Path, extra: str = "") -> Path:
    return write_config(tmp_path, f'[intake.spool]\ndirectory = "{directory}"\n{extra}')


def _failed(name: str) -> bytes:
    """FlyteAdmin's cloud event (protobuf format) for execution ``name`` failing."""
    event = flyteadmin_egress.workflow_event(name, "FAILED", error="boom")
    return flyteadmin_egress.v1_workflow(event).protobuf()


def test_its_section_is_configuration_like_any_other(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path)
    loaded = load_config(config, {"FLYTENOTIFY_INTAKE__SPOOL__BATCH_SIZE": "5"})
    assert loaded.settings.intake_section("spool") == SpoolConfig(directory=tmp_path, batch_size=5)
    assert load_config(None, {}).settings.intake_section("spool") is None

    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", '[intake.spool]\nbatch_size = 0\ncolour = "red"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad, {})
    assert sorted(caught.value.problems) == [
        "intake.spool.batch_size: Input should be greater than or equal to 1",
        "intake.spool.colour: unknown key",
        "intake.spool.directory: Field required",
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(config, {"FLYTENOTIFY_INTAKE__SPOOL__POLL": "soon"})
    assert caught.value.problems == [
        "intake.spool.poll: Input should be a valid number, unable to parse string as a number"
    ]

    unregister()  # what made [intake.spool] known was the registry, nothing else
    with pytest.raises(ConfigError) as caught:
        load_config(config, {})
    assert caught.value.problems == ["intake.spool: unknown key"]


def test_a_name_or_a_section_is_registered_once() -> None:
    with pytest.raises(ValueError, match="an intake named 'spool' already exists"):
        registry.register(INTAKE)
    taken: IntakeSpec[SpoolConfig, object] = IntakeSpec(
        name="spool2", section="intake.nats", config=SpoolConfig, build=list, run=run_broker
    )
    with pytest.raises(ValueError, match=r"\[intake.nats\] is already an intake's"):
        registry.register(taken)


def test_check_config_describes_and_reaches_it(tmp_path: Path) -> None:
    spooled = tmp_path / "spool"
    spooled.mkdir()
    spool(spooled, "one", _failed("run-1"))
    spool(spooled, "two", _failed("run-2"))
    runner = CliRunner()
    result = runner.invoke(main, ["check-config", str(_config(tmp_path, spooled)), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["intake"] == {"spool": f"spool {spooled}, 10 files a batch"}

    result = runner.invoke(
        main, ["check-config", str(_config(tmp_path, spooled)), "--connect", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert (
        f"intake spool: spool {spooled}: 2 message(s) waiting"
        in json.loads(result.output)["connected"]
    )

    gone = tmp_path / "gone"
    result = runner.invoke(main, ["check-config", str(_config(tmp_path, gone)), "--connect"])
    assert result.exit_code == 1
    assert f"intake spool: cannot connect: no spool directory {gone}" in result.output


async def test_readyz_says_why_it_is_not_ready(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    settings = load_config(_config(tmp_path, gone), {}).settings
    ((built),) = registry.build(settings)
    assert (built.spec, built.source.name) == (INTAKE, "spool")
    async with Notifier(settings) as notifier:
        stop = asyncio.Event()
        task = asyncio.create_task(built.run(egress.feed(notifier, Metrics()), stop))
        try:
            deadline = time.monotonic() + WAIT
            while built.source.status.state is not SourceState.RECONNECTING:
                assert time.monotonic() < deadline, "the source never failed"
                await asyncio.sleep(0.02)
            transport = httpx.ASGITransport(app=create_app(notifier, sources=[built.source]))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                ready = await client.get("/readyz")
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)
    assert ready.status_code == 503
    spooled = ready.json()["intake"]["spool"]
    assert spooled["state"] == "reconnecting"
    assert spooled["last_error"] == f"no spool directory {gone}"
    assert built.source.status.state is SourceState.STOPPED


async def test_serve_starts_it_and_records_what_it_reads(tmp_path: Path) -> None:
    spooled = tmp_path / "spool"
    spooled.mkdir()
    config = _config(tmp_path, spooled)
    launcher = [sys.executable, "-m", "tests.spool_intake"]
    process, base = await asyncio.to_thread(
        start_serve, tmp_path, "--config", str(config), launcher=launcher
    )
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            await register_plan_and_run(client)
            file = spool(spooled, "run-1", _failed("run-1"))
            deadline = time.monotonic() + WAIT
            while len((await client.get("/api/v1/inbox")).json()["items"]) < 2:
                assert time.monotonic() < deadline, "nothing reached the dev inbox"
                await asyncio.sleep(0.05)
            ready = (await client.get("/readyz")).json()
            metrics = (await client.get("/metrics")).text
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=WAIT)
    finally:
        stop(process)
    assert process.returncode == 0, output
    assert not file.exists()  # acknowledged: recorded in the ledger first
    assert ready["intake"]["spool"]["state"] == "connected", output
    assert ready["intake"]["spool"]["backlog"] == 0
    assert 'flytenotify_intake_up{source="spool"} 1.0' in metrics
    assert 'flytenotify_intake_messages_total{outcome="recorded",source="spool"} 1.0' in metrics
    assert f"intake spool: spool {spooled}, 10 files a batch" in output
