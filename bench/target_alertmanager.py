"""Prometheus Alertmanager under test: the same workload, one alert per execution.

Clustering is off (``--cluster.listen-address=``), ``group_by: ['...']`` with a
unique label per alert makes every alert its own group and so one
notification, and ``group_wait: 0s`` sends it at once.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from procstat import free_port, stop_process, wait_until_answering

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def find_binary() -> str | None:
    return next((p for name in BINARY_NAMES if (p := shutil.which(name))), None)


def ensure_installed() -> tuple[str | None, str]:
    """The binary, installing the Debian package if missing; else None and why."""
    found = find_binary()
    if found:
        return found, "already installed"
    if shutil.which("apt-get") is None:
        return None, "apt-get is not available; install prometheus-alertmanager by hand"
    for step in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "prometheus-alertmanager"],
    ):
        done = subprocess.run(step, capture_output=True, timeout=600, check=False)
        if done.returncode != 0:
            return None, f"{' '.join(step)} failed: {done.stderr.decode()[-300:]}"
    found = find_binary()
    return found, "installed with apt-get" if found else "installed, but the binary is not on PATH"


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, timeout=30, check=False)
    return (done.stdout or done.stderr).decode().splitlines()[0].strip()


def config_yaml(receiver: str, smtp_port: int, http_port: int) -> str:
    if receiver == "email":
        target = f"""
    email_configs:
      - to: ops@example.com
        from: alertmanager@bench.example.com
        smarthost: 127.0.0.1:{smtp_port}
        require_tls: false
        send_resolved: false"""
    else:
        target = f"""
    webhook_configs:
      - url: http://127.0.0.1:{http_port}/am
        send_resolved: false"""
    return f"""
route:
  receiver: sink
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: sink{target}
"""


def alert(n: int) -> dict[str, Any]:
    """The alert for execution run-<n>; its unique label makes it its own group."""
    return {
        "labels": {
            "alertname": "FlyteExecutionFailed",
            "execution": f"run-{n}",
            "project": "bench",
            "domain": "development",
        },
        "annotations": {"summary": f"Flyte execution bench/development/run-{n} failed"},
        "startsAt": datetime.now(UTC).isoformat(),
    }


@dataclass
class Alertmanager:
    process: subprocess.Popen[bytes]
    base_url: str

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def run(binary: str, workdir: Path, config: str) -> Iterator[Alertmanager]:
    """Start Alertmanager with explicit flags in ``workdir``; SIGTERM it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(config, encoding="utf-8")
    port = free_port()
    command = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: clustering off
        "--log.level=warn",
    ]
    with open(workdir / "alertmanager.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=workdir)
    manager = Alertmanager(process, f"http://127.0.0.1:{port}")
    try:
        wait_until_answering(manager.process, f"{manager.base_url}/-/ready", "alertmanager")
        yield manager
    finally:
        stop_process(process)
