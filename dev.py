#!/usr/bin/env python3
"""Set up a private virtualenv and run the project's everyday tasks.

    python3 dev.py run      # set up, then start flytenotify on its embedded defaults
    python3 dev.py test     # set up, then run the whole test suite
    python3 dev.py lint     # ruff and mypy (strict)
    python3 dev.py bench    # the benchmarks under bench/

Each installs what it needs and no more: run the service alone; test, lint
and bench add their tools (pyproject.toml's extras) the first time they run.

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
# First line: the pyproject.toml it was installed from; then one extra per line.
STAMP = VENV / ".flytenotify-installed"

# The project's extras (pyproject.toml) each task needs beyond the service itself:
# starting the service installs no test or lint tool.
EXTRAS = {"run": (), "test": ("test",), "lint": ("lint",), "bench": ("test", "bench")}


def setup(extras: tuple[str, ...] = ()) -> None:
    """Create .venv and install the project with ``extras``, unless it already is."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may run under an older python3)
        sys.exit(f"flytenotify needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating virtualenv in .venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamped, installed = read_stamp()
    if stamped == wanted and installed.issuperset(extras):
        return
    # Extras installed before are installed again: a changed pyproject.toml
    # must leave them current too, not only what this task needs.
    every = sorted(installed.union(extras))
    with_extras = f" with {', '.join(every)}" if every else ""
    print(f"installing flytenotify{with_extras} into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    target = f"{ROOT}[{','.join(every)}]" if every else str(ROOT)
    subprocess.run([*pip, "install", "-e", target], check=True)
    STAMP.write_text("\n".join([wanted, *every]) + "\n")


def read_stamp() -> tuple[str, set[str]]:
    """The pyproject.toml digest and the extras of the last install (nothing: none yet)."""
    if not STAMP.exists():
        return "", set()
    text = STAMP.read_text()
    digest, *extras = text.split() or [""]
    if not text.endswith("\n"):  # written before tasks chose their extras: all of [test]
        extras = ["test"]
    return digest, set(extras)


def run(args: list[str]) -> int:
    # Replace this process, so that Ctrl-C and SIGTERM reach the service itself.
    program = str(BIN / "flytenotify")
    os.execv(program, [program, *(args or ["serve"])])
    return 1  # not reached


def test(args: list[str]) -> int:
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *workers(args), *args], cwd=ROOT)


def workers(args: list[str]) -> list[str]:
    """pytest-xdist's options unless ``args`` choose (``-n 0``: one process).

    The suite waits on real servers far more than it computes, so twice as many
    workers as cores; at most six, so that PostgreSQL's 100 connections suffice.
    """
    if any(arg.startswith(("-n", "--numprocesses", "--dist")) for arg in args):
        return []
    count = min(6, 2 * (os.cpu_count() or 1))
    return ["-n", str(count), "--dist", "loadgroup"]


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
    return subprocess.call([str(BIN / "python"), str(ROOT / "bench" / "run.py"), *args], cwd=ROOT)


TASKS = {"run": run, "test": test, "lint": lint, "bench": bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    setup(EXTRAS[sys.argv[1]])
    return TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
