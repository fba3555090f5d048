"""A copy installed from the wheel (not editable, not src/) works.

The wheel is built from a clean copy of the project's sources and installed
into a fresh virtualenv without its dependencies; those come from the test
run's own environment through a path entry (no network beyond PyPI, which the
build backend may need). The installed ``flytenotify serve`` then runs from a
directory outside the repository and delivers one event to the dev inbox.
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import PLAN, event_json
from tests.test_serve import _free_port

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30.0
BUILD_TIMEOUT = 240.0  # a cold build backend download on a busy machine


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH, no FLYTENOTIFY_*: nothing may point back at src/."""
    kept = os.environ.items()
    return {k: v for k, v in kept if k != "PYTHONPATH" and not k.startswith("FLYTENOTIFY_")}


def _run(args: list[str | Path], cwd: Path, timeout: float = WAIT) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding flytenotify from its wheel, and the run's dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # what git tracks that the build reads; no build junk in ROOT
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "-w", wheels, source], work, BUILD_TIMEOUT)
    (wheel,) = wheels.glob("flytenotify-*.whl")

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    python = _bin(venv, "python")
    # pip --python: the console script gets the new venv's interpreter, not ours.
    _run([*pip, "--python", python, "install", "--no-deps", wheel], work)
    # The dependencies: the test run's site-packages as a plain path entry,
    # after the venv's own. Only the path: its .pth files (the editable
    # install's pointer to src/) are not processed.
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = _run([python, "-c", where], work)
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib.strip(), "zz_test_run_dependencies.pth").write_text("\n".join(deps) + "\n")
    return venv


def test_the_wheel_ships_its_sql_and_is_imported_from_the_install(
    installed: Path, tmp_path: Path
) -> None:
    code = (
        "import flytenotify, flytenotify.store.migrations as m;"
        " from flytenotify.store.queries import queries_for;"
        " print(flytenotify.__file__); print(sorted(m.MIGRATIONS));"
        " print(queries_for('sqlite')['lease_ids'].split()[0]);"
        " print(queries_for('postgresql')['insert_deliveries'].split()[0])"
    )
    output = _run([_bin(installed, "python"), "-c", code], tmp_path).splitlines()
    where, versions, sqlite_claim, postgres_intake = output
    assert Path(where).is_relative_to(installed), where
    assert not Path(where).is_relative_to(ROOT / "src"), where
    assert versions.startswith("[1, 2, 3"), versions
    assert (sqlite_claim, postgres_intake) == ("UPDATE", "INSERT")  # common.sql, dialect files


def test_the_installed_service_delivers_an_event_to_the_inbox(
    installed: Path, tmp_path: Path
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(_bin(installed, "flytenotify")), "serve", "--port", str(port), "--db", "x.db"],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + WAIT
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the installed service never became ready"
                time.sleep(0.1)
            plan = {
                "version": PLAN.version,
                "notifications": [{"phases": ["FAILED"], "email": {"recipientsEmail": ["a@x.io"]}}],
            }
            assert client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan).is_success
            event = event_json("wheel-1", "FAILED", launch_plan=PLAN)
            assert client.post("/api/v1/events", json=event).status_code == 202
            while not client.get("/api/v1/inbox").json()["items"]:
                assert time.monotonic() < deadline + WAIT, "nothing reached the inbox"
                time.sleep(0.1)
            (item,) = client.get("/api/v1/inbox").json()["items"]
            assert item["recipient"] == "a@x.io"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT)
    assert process.returncode == 0, output


def _import_without(
    installed: Path, tmp_path: Path, module: str, *left_out: str
) -> subprocess.CompletedProcess[str]:
    """Import ``module`` from a copy of the installed package without the files ``left_out``."""
    broken = tmp_path / "broken"
    code = "import flytenotify, pathlib; print(pathlib.Path(flytenotify.__file__).parent)"
    package = Path(_run([_bin(installed, "python"), "-c", code], tmp_path).strip())
    shutil.copytree(package, broken / "flytenotify", ignore=shutil.ignore_patterns(*left_out))
    return subprocess.run(
        [str(_bin(installed, "python")), "-c", f"import {module}"],
        cwd=tmp_path,
        env={**_clean_env(), "PYTHONPATH": str(broken)},
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def test_without_its_migrations_the_package_says_so(installed: Path, tmp_path: Path) -> None:
    """A build that leaves the SQL out fails on import with a message, not max() of nothing."""
    result = _import_without(installed, tmp_path, "flytenotify.store.migrations", "*.sql")
    assert result.returncode != 0
    assert "no schema migrations (*.sql) found" in result.stderr, result.stderr
    assert "installed without its package data" in result.stderr, result.stderr


def test_without_its_queries_the_store_says_so(installed: Path, tmp_path: Path) -> None:
    result = _import_without(
        installed, tmp_path, "flytenotify.store.sqlite", "common.sql", "sqlite.sql"
    )
    assert result.returncode != 0
    assert "no common.sql found" in result.stderr, result.stderr
    assert "installed without its package data" in result.stderr, result.stderr
