"""A broker section whose client library is not installed (a plain ``pip install
flytenotify``, without the extra) is a clear one-line error and exit 2, not a traceback.

The CLI runs in a child process in which those libraries cannot be imported, as
on a machine where they were never installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_server import free_port

# Top-level names whose import fails "No module named ...", as without the package.
UNINSTALL = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == gone or name.startswith(gone + ".") for gone in GONE):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from flytenotify.cli import main
main()
"""

SECTIONS = {
    "gcp": (
        '[intake.gcp]\nproject_id = "p"\nsubscription = "s"\n',
        ["google.api_core", "google.cloud", "google.pubsub_v1"],
        "'google.api_core'",
    ),
    "aws": (
        '[intake.aws]\nqueue_url = "http://127.0.0.1:9/q"\nregion = "us-east-1"\n',
        ["aiobotocore", "botocore"],
        "'aiobotocore'",
    ),
}


def _run(tmp_path: Path, section: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    body, gone, _ = SECTIONS[section]
    config = tmp_path / "flytenotify.toml"
    config.write_text(f'[database]\nurl = "{tmp_path / "l.db"}"\n{body}')
    code = f"GONE = {gone!r}\n{UNINSTALL}"
    args = [a.replace("CONFIG", str(config)) for a in command]
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("section", sorted(SECTIONS))
@pytest.mark.parametrize(
    "command",
    [["check-config", "CONFIG"], ["serve", "--config", "CONFIG", "--port", "PORT"]],
    ids=["check-config", "serve"],
)
def test_a_missing_broker_library_names_the_extra_to_install(
    tmp_path: Path, section: str, command: list[str]
) -> None:
    command = [a.replace("PORT", str(free_port())) for a in command]
    result = _run(tmp_path, section, command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr == (
        f"flytenotify {command[0]}: [intake.{section}] needs {SECTIONS[section][2]}, which is"
        f" not installed: install flytenotify[{section}]"
        f" (pip install 'flytenotify[{section}]')\n"
    )
