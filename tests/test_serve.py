"""``flytenotify serve`` as a real process: HTTP in, dev inbox out, clean SIGTERM."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import event_json

WAIT = 30.0  # seconds: the bound on every wait below (generous: a busy machine starts slowly)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYTENOTIFY_")}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / "src"), str(root), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def start_serve(
    tmp_path: Path, *args: str, launcher: list[str] | None = None, within: float = WAIT
) -> tuple[subprocess.Popen[str], str]:
    """``flytenotify serve`` on a free port over ``tmp_path/x.db``, once it answers.

    ``launcher`` is what runs the CLI (``python -m flytenotify.cli`` unless given).
    """
    port = _free_port()
    launcher = launcher or [sys.executable, "-m", "flytenotify.cli"]
    process = subprocess.Popen(
        [*launcher, "serve", "--port", str(port), "--db", str(tmp_path / "x.db"), *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + within
    while True:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[0])
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the server did not come up")
        time.sleep(0.05)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=WAIT)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, base = start_serve(tmp_path)
    try:
        yield process, base
    finally:
        stop(process)


def test_serve_delivers_into_the_inbox_and_stops_cleanly(
    server: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, base = server
    with httpx.Client(base_url=base, timeout=5) as client:
        plan = {
            "version": "v1",
            "notifications": [
                {"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@example.com"]}},
                {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#alerts"]}},
            ],
        }
        assert client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan).status_code == 200
        execution = {
            "id": {"project": "proj", "domain": "prod", "name": "run-1"},
            "launch_plan": {"project": "proj", "domain": "prod", "name": "nightly"},
        }
        assert client.post("/api/v1/executions", json=execution).status_code == 201
        event = client.post("/api/v1/events", json=event_json("run-1", "FAILED", error="boom"))
        assert event.status_code == 202, event.text
        deadline = time.monotonic() + WAIT
        while True:
            items = client.get("/api/v1/inbox").json()["items"]
            if len(items) == 2:
                break
            assert time.monotonic() < deadline, items
            time.sleep(0.05)
        assert sorted(m["recipient"] for m in items) == ["#alerts", "ops@example.com"]

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=WAIT)
    assert process.returncode == 0, output
    assert "dev-inbox" in output
    assert f"listening on {base}" in output
    with sqlite3.connect(tmp_path / "x.db") as db:
        leased = db.execute("SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL")
        assert leased.fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 2


def test_requests_are_parsed_by_httptools(server: tuple[subprocess.Popen[str], str]) -> None:
    """uvicorn picks httptools' C parser when it is installed, h11 (pure Python) when
    not: one event per request costs a tenth less CPU with it."""
    process, base = server
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    maps = Path(f"/proc/{process.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this platform to see which libraries serve loaded")
    assert "httptools/parser/parser" in maps.read_text(encoding="utf-8")


def test_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flytenotify.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(_free_port()),
            "--db",
            str(tmp_path / "x.db"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert "tokens" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_database_commands(tmp_path: Path) -> None:
    import asyncio
    import json

    from click.testing import CliRunner

    from flytenotify import Email
    from flytenotify import WorkflowExecutionPhase as P
    from flytenotify.app import Notifier
    from flytenotify.cli import main
    from flytenotify.config import DatabaseConfig, Settings
    from tests.helpers import PLAN, execution

    db = str(tmp_path / "cli.db")

    async def populate() -> None:
        settings = Settings(database=DatabaseConfig(url=db))
        async with Notifier(settings, dev_inbox=True) as n:
            await n.register_launch_plan(PLAN, [Email([P.FAILED], ["ops@example.com"])])
            await n.create_execution(execution("c1"), PLAN)
            await n.report_event(event_json("c1", "FAILED"))
            await n.run_until_idle()

    asyncio.run(populate())
    runner = CliRunner()
    env = {"FLYTENOTIFY_DATABASE__URL": db}
    inbox = runner.invoke(main, ["inbox", "--json"], env=env)
    assert inbox.exit_code == 0, inbox.output
    assert [m["recipient"] for m in json.loads(inbox.output)] == ["ops@example.com"]
    assert "ops@example.com" in runner.invoke(main, ["inbox", "--db", db]).output

    listed = runner.invoke(
        main, ["deliveries", "list", "--db", db, "--execution", "proj/prod/c1", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    assert item["status"] == "delivered"
    table = runner.invoke(
        main, ["deliveries", "list", "--db", db, "--status", "delivered"], env={"COLUMNS": "200"}
    )
    assert "ops@example.com" in table.output

    shown = runner.invoke(main, ["deliveries", "show", str(item["id"]), "--db", db, "--json"])
    assert json.loads(shown.output)["attempts"][0]["outcome"] == "delivered"
    assert runner.invoke(main, ["deliveries", "show", str(item["id"]), "--db", db]).exit_code == 0
    assert runner.invoke(main, ["deliveries", "show", "999", "--db", db]).exit_code == 1
    retry = runner.invoke(main, ["deliveries", "retry", str(item["id"]), "--db", db])
    assert retry.exit_code == 1
    assert "not dead" in retry.output
    bad = runner.invoke(main, ["deliveries", "list", "--db", db, "--execution", "nope"])
    assert bad.exit_code == 2
    config_error = runner.invoke(main, ["inbox"], env={"FLYTENOTIFY_SMTP__PORT": "x"})
    assert config_error.exit_code == 2
    assert "smtp.port" in config_error.output


def test_json_logs_and_metrics_of_the_real_service(tmp_path: Path) -> None:
    import json

    process, base = start_serve(tmp_path, "--log-format", "json")
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            event = event_json("j1", "FAILED")
            plan = {"project": "proj", "domain": "prod", "name": "nightly", "version": "v1"}
            notifications = [{"phases": ["FAILED"], "email": {"recipientsEmail": ["a@b.io"]}}]
            client.put(
                "/api/v1/launch-plans/proj/prod/nightly",
                json={"version": "v1", "notifications": notifications},
            )
            event["launch_plan"] = plan
            assert client.post("/api/v1/events", json=event).status_code == 202
            deadline = time.monotonic() + WAIT
            sample = 'flytenotify_delivery_attempts_total{channel="inbox",outcome="delivered"} 1.0'
            while sample not in (text := client.get("/metrics").text):
                assert time.monotonic() < deadline, text
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    finally:
        stop(process)
    assert process.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    messages = [entry["message"] for entry in lines]
    assert f"listening on {base} (no authentication)" in messages
    assert any(m.startswith("database: ") for m in messages)
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert "stopped" in messages


def test_api_and_dispatcher_roles_split_the_work(tmp_path: Path) -> None:
    api, api_url = start_serve(tmp_path, "--role", "api")
    try:
        plan = {
            "version": "v1",
            "notifications": [
                {"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@example.com"]}}
            ],
        }
        lp = {"project": "proj", "domain": "prod", "name": "nightly"}
        httpx.put(f"{api_url}/api/v1/launch-plans/proj/prod/nightly", json=plan).raise_for_status()
        answer = httpx.post(
            f"{api_url}/api/v1/events", json=event_json("r1", "FAILED") | {"launch_plan": lp}
        )
        assert answer.status_code == 202
        time.sleep(0.5)
        (pending,) = httpx.get(f"{api_url}/api/v1/deliveries").json()["items"]
        assert pending["status"] == "pending"  # the api role never dispatches

        dispatcher, dispatcher_url = start_serve(tmp_path, "--role", "dispatcher")
        try:
            assert httpx.get(f"{dispatcher_url}/api/v1/deliveries").status_code == 404
            assert httpx.get(f"{dispatcher_url}/metrics").status_code == 200
            deadline = time.monotonic() + WAIT
            while not httpx.get(f"{api_url}/api/v1/inbox").json()["items"]:
                assert time.monotonic() < deadline, "the dispatcher role delivered nothing"
                time.sleep(0.1)
            dispatcher.send_signal(signal.SIGTERM)
            assert dispatcher.wait(timeout=WAIT) == 0
        finally:
            stop(dispatcher)
    finally:
        stop(api)


def test_the_readme_first_command_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """``python3 dev.py run`` (with a free port and a scratch database)."""
    dev = str(Path(__file__).resolve().parents[1] / "dev.py")
    # The first run may install into .venv, hence the longer wait.
    process, base = start_serve(tmp_path, launcher=[sys.executable, dev, "run"], within=60)
    try:
        states = httpx.get(f"{base}/readyz").json()["channels"]
        # Every channel but the webhooks of users' code, which need no section
        # (and with no [allow] inline_webhook_urls send nothing).
        assert states.pop("inline_webhook") == "configured"
        assert set(states.values()) == {"dev-inbox"}
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
        assert process.returncode == 0, output
        assert "dev-inbox mode" in output
    finally:
        stop(process)


def test_the_open_file_limit_is_raised_to_fit_the_sends_in_flight(tmp_path: Path) -> None:
    # Started with a soft limit of 256 open files (the hard one 8,192): every
    # send in flight holds a socket, and the default budget is 2,048 of them.
    launcher = ["prlimit", "--nofile=256:8192", sys.executable, "-m", "flytenotify.cli"]
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    process, _base = start_serve(tmp_path, launcher=launcher)
    try:
        limits = Path(f"/proc/{process.pid}/limits").read_text(encoding="ascii")
    finally:
        stop(process)
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    assert line.split()[3:5] == [str(2048 + 1024), "8192"]


def test_the_service_does_not_import_what_it_may_never_use() -> None:
    """httpx (for flytenotify.Client) would cost every serve process ~3 MiB for
    nothing, nh3 (the HTML sanitiser) 1.5 MiB where no template holds HTML."""
    code = (
        "import sys, flytenotify.cli, flytenotify.service, flytenotify.web.api\n"
        "assert 'httpx' not in sys.modules, 'httpx imported by the service'\n"
        "assert 'nh3' not in sys.modules, 'nh3 imported by the service'\n"
        "from flytenotify.engine.sanitize import sanitize_html\n"
        "assert sanitize_html('<b onclick=x>hi</b>') == '<b>hi</b>' and 'nh3' in sys.modules\n"
        "from flytenotify import Client\n"
        "assert Client.__module__ == 'flytenotify.client' and 'httpx' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_console_is_loaded_by_its_first_page_not_at_start_up(tmp_path: Path) -> None:
    """jinja2 and the console's pages cost a process about 2 MiB: only a process
    whose console is opened pays."""
    code = f"""
import asyncio, sys, httpx
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, Settings
from flytenotify.web.api import create_app

async def main():
    settings = Settings(database=DatabaseConfig(url="sqlite:///{tmp_path / "ledger.db"}"))
    async with Notifier(settings, dev_inbox=True) as notifier:
        app = create_app(notifier)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert "jinja2" not in sys.modules, "the console was loaded at start-up"
            page = await client.get("/ui/deliveries")
            assert page.status_code == 200 and "<h1>Deliveries</h1>" in page.text, page.text
            assert "jinja2" in sys.modules

asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _malloc_arenas(limited: bool) -> int:
    """How many arenas glibc's malloc has after a second thread allocated (malloc_info)."""
    code = f"""
import ctypes, threading
from flytenotify.service import one_malloc_arena
if {limited}:
    one_malloc_arena()
kept = []
thread = threading.Thread(target=lambda: kept.extend(bytearray(4096) for _ in range(64)))
thread.start(); thread.join()
libc = ctypes.CDLL(None)
libc.open_memstream.restype = ctypes.c_void_p
buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(buffer.value.decode().count("<heap nr="))
"""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    return int(found.stdout)


def test_every_thread_allocates_from_one_malloc_arena() -> None:
    """glibc gives each thread an arena of its own; serve keeps one (3 MiB less per process)."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc arenas are glibc's: this C library has none to limit")
    assert _malloc_arenas(limited=False) == 2  # the main thread's and the second thread's
    assert _malloc_arenas(limited=True) == 1
