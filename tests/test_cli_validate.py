"""``flytenotify validate`` reads notification files and reports every problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flytenotify.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_works() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "validate" in result.stdout


def test_valid_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(
        json.dumps(
            {
                "notifications": [
                    {"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}},
                    {"phases": [8], "pagerDuty": {"recipientsEmail": ["svc@example.com"]}},
                ]
            }
        )
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 notification(s), all valid" in result.stdout


def test_every_problem_is_reported_with_its_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            [
                {"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}},
                {"phases": ["RUNNING"], "slack": {"recipients_email": ["#a"]}},
                {"phases": ["FAILED"], "email": {"recipients_email": "ops@example.com"}},
                {"phases": [], "pager_duty": {"recipients_email": ["svc"]}},
            ]
        )
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}: notifications[1].phases[0]: Invalid phase: 2. only terminal states are"
        " permitted for notifications",
        f"{path}: notifications[2].email.recipients_email: must be a list of recipients, got"
        " the bare string 'ops@example.com'; write ['ops@example.com']",
        f"{path}: notifications[3].phases: You must specify at least one phase for a notification.",
    ]


def test_toml_files_and_broken_files(tmp_path: Path) -> None:
    good = tmp_path / "n.toml"
    good.write_text(
        '[[notifications]]\nphases = ["SUCCEEDED"]\nslack = { recipients_email = ["#x"] }\n'
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = run_cli("validate", "--json", str(good), str(broken), str(tmp_path / "missing.json"))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["files"][str(good)] == []
    assert report["files"][str(broken)][0].startswith("not valid JSON")
    assert "cannot read" in report["files"][str(tmp_path / "missing.json")][0]
