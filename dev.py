#!/usr/bin/env python3
"""Set up a private virtualenv and run the project's everyday tasks.

    python3 dev.py run      # set up, then start flytenotify on its embedded defaults
    python3 dev.py test     # set up, then run the whole test suite
    python3 dev.py lint     # ruff and mypy (strict)
    python3 dev.py bench    # the benchmarks under bench/

Only the Python standard library is used here, so this works on a machine that
has nothing but Python 3.11+ and git. Everything else is installed into .venv.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".flytenotify-installed"


def setup() -> None:
    """Create .venv and install the project with its test extras, if needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may run under an older python3)
        sys.exit(f"flytenotify needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating virtualenv in .venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("installing flytenotify and its dependencies into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def run(args: list[str]) -> int:
    # Replace this process, so that Ctrl-C and SIGTERM reach the service itself.
    program = str(BIN / "flytenotify")
    os.execv(program, [program, *(args or ["serve"])])
    return 1  # not reached


def test(args: list[str]) -> int:
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT)


def lint(_: list[str]) -> int:
    steps = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy")],
    ]
    failed = 0
    for step in steps:
        print(
            "$",
            " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)),
            flush=True,
        )
        failed |= subprocess.call(step, cwd=ROOT)
    return failed


def bench(args: list[str]) -> int:
    # The plotting library is only needed here, so the test setup stays lean.
    python = str(BIN / "python")
    if subprocess.call([python, "-c", "import matplotlib"], stderr=subprocess.DEVNULL) != 0:
        pip = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install"]
        subprocess.run([*pip, "-e", f"{ROOT}[test,bench]"], check=True)
    return subprocess.call([python, str(ROOT / "bench" / "run.py"), *args], cwd=ROOT)


TASKS = {"run": run, "test": test, "lint": lint, "bench": bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    setup()
    return TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
