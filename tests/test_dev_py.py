"""``dev.py`` installs what each task needs and no more, and reinstalls only when it must.

The real ``dev.py``, copied beside a toy project of the same shape (a console
script ``flytenotify``, a ``test`` extra), run as a user runs it: a real
virtualenv, real pip. The toy's ``flytenotify`` prints which of the extras'
packages its virtualenv can import.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 600.0  # a cold pip cache on a busy machine

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "toy"
version = "0"
dependencies = [{dependencies}]

[project.optional-dependencies]
test = ["pytest"]

[project.scripts]
flytenotify = "toy:main"

[tool.setuptools]
py-modules = ["toy"]
"""

TOY = """\
import importlib.util, json
def main():
    print(json.dumps([n for n in ("pytest", "six") if importlib.util.find_spec(n)]))
"""


def _dev(project: Path, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(project / "dev.py"), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.packaging
def test_run_installs_the_service_alone_and_test_adds_its_tools(tmp_path: Path) -> None:
    project = tmp_path / "checkout"
    project.mkdir()
    shutil.copy2(ROOT / "dev.py", project / "dev.py")
    (project / "pyproject.toml").write_text(PYPROJECT.format(dependencies=""))
    (project / "toy.py").write_text(TOY)

    first = _dev(project, "run")
    assert first[:2] == ["creating virtualenv in .venv", "installing flytenotify into .venv"]
    assert json.loads(first[-1]) == []  # no test tool to start the service

    assert _dev(project, "run") == ["[]"]  # installed: nothing done again

    tested = _dev(project, "test", "--version")
    assert tested[0] == "installing flytenotify with test into .venv"
    assert _dev(project, "test", "--version") == tested[1:]  # and not again
    assert _dev(project, "run") == ['["pytest"]']  # the service's task keeps them

    # A changed pyproject.toml: installed again, extras and all.
    (project / "pyproject.toml").write_text(PYPROJECT.format(dependencies='"six"'))
    changed = _dev(project, "run")
    assert changed == ["installing flytenotify with test into .venv", '["pytest", "six"]']
