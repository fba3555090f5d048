"""``check-config --connect`` explains a TLS/plaintext mismatch with FlyteAdmin in one line.

Both ways round, against the loopback gRPC FlyteAdmin (tests/servers/flyteadmin.py):
a TLS client at a plaintext port (the README once said ``flyteadmin:81`` without
``insecure = true``), and a plaintext client at a TLS port. The CLI runs in a
process of its own, so that what gRPC's C core would print to stderr is seen too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.flyteadmin import FlyteAdminServer

ROOT = Path(__file__).resolve().parents[1]


def _check_config(tmp_path: Path, section: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "flytenotify.toml"
    config.write_text(f"[flyteadmin]\n{section}timeout = 5.0\n")
    return subprocess.run(
        [sys.executable, "-m", "flytenotify.cli", "check-config", str(config), "--connect"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("server_tls", "client", "transport", "advice"),
    [
        (
            False,
            "",
            "TLS, system trust",
            "answers in plaintext, not TLS: set insecure = true in [flyteadmin] (as for"
            " flyte-core's flyteadmin:81 or flyte-binary's :8089 inside the cluster)",
        ),
        (
            True,
            "insecure = true\n",
            "plaintext",
            "speaks TLS, not plaintext: set insecure = false in [flyteadmin]"
            " (and ca_cert_file if its certificate is from a private CA)",
        ),
    ],
    ids=["tls-client-plaintext-server", "plaintext-client-tls-server"],
)
def test_a_tls_plaintext_mismatch_is_one_line_saying_what_to_set(
    tmp_path: Path, server_tls: bool, client: str, transport: str, advice: str
) -> None:
    with FlyteAdminServer(tls=server_tls) as admin:
        result = _check_config(tmp_path, f'endpoint = "{admin.endpoint}"\n{client}')
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        f"{tmp_path / 'flytenotify.toml'}: flyteadmin: cannot use {admin.endpoint}"
        f" ({transport}, no credentials): {admin.endpoint} {advice}\n"
    )


def test_a_matching_transport_still_reaches_flyteadmin(tmp_path: Path) -> None:
    with FlyteAdminServer(tls=False) as admin:
        result = _check_config(tmp_path, f'endpoint = "{admin.endpoint}"\ninsecure = true\n')
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"flyteadmin: FlyteAdmin at {admin.endpoint} (plaintext" in result.stdout
    assert "GetExecution answers" in result.stdout


def test_a_server_that_is_not_there_is_not_called_a_mismatch(tmp_path: Path) -> None:
    with FlyteAdminServer(tls=False) as admin:
        endpoint = admin.endpoint
    result = _check_config(tmp_path, f'endpoint = "{endpoint}"\n')
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr
    assert "plaintext, not TLS" not in result.stderr
