"""Security hardening: strong API tokens, authentication before routing, and
webhook credentials that could never be sent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from flytenotify.app import Notifier
from flytenotify.cli import main
from flytenotify.config import DatabaseConfig, ServerConfig, Settings, WebhookTarget
from flytenotify.settings_loader import ConfigError, load_config
from flytenotify.web.api import create_app
from tests.test_serve import _env as serve_env

STRONG = "k" * 32

# -- API tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("weak", ["", " ", "x", "k" * 31, "k" * 16 + " " + "k" * 16])
def test_weak_inline_tokens_are_refused(weak: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"FLYTENOTIFY_SERVER__API_TOKENS": f'["{weak}"]'})
    (problem,) = caught.value.problems
    assert problem.startswith("server.api_tokens: ")
    assert "token 1 " in problem
    assert "secrets.token_urlsafe(32)" in problem
    if len(weak.strip()) > 1:
        assert weak not in problem.replace("token_urlsafe", "")  # a token is never echoed


def test_a_32_character_token_is_accepted() -> None:
    loaded = load_config(None, {"FLYTENOTIFY_SERVER__API_TOKENS": STRONG})
    assert loaded.server.tokens() == [STRONG]


def test_weak_tokens_in_the_file_are_refused_by_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# deploy tokens\n{STRONG}\n\nshort-one\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"FLYTENOTIFY_SERVER__API_TOKENS_FILE": str(tokens)})
    (problem,) = caught.value.problems
    assert problem.startswith("server.api_tokens_file: line 4: the token is 9 characters long")
    assert "short-one" not in problem


def test_check_config_refuses_a_short_token_even_for_loopback(tmp_path: Path) -> None:
    path = tmp_path / "flytenotify.toml"
    path.write_text('[server]\nhost = "127.0.0.1"\napi_tokens = ["x"]\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", str(path)], env={})
    assert result.exit_code == 1
    assert "server.api_tokens" in result.output
    assert f"at least {len(STRONG)} are required" in result.output


@pytest.mark.parametrize("tokens", ['[""]', '[" "]', '["x"]'])
def test_serve_on_a_public_address_refuses_weak_tokens(tmp_path: Path, tokens: str) -> None:
    env = {**serve_env(), "FLYTENOTIFY_SERVER__API_TOKENS": tokens}
    command = ["serve", "--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "x.db")]
    result = subprocess.run(
        [sys.executable, "-m", "flytenotify.cli", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "server.api_tokens" in result.stderr
    assert not (tmp_path / "x.db").exists()


# -- authentication before routing ---------------------------------------------------


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database=DatabaseConfig(url=str(tmp_path / "api.db")))
    async with Notifier(settings, dev_inbox=True) as notifier:
        app = create_app(notifier, ServerConfig(api_tokens=[SecretStr(STRONG)]))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_anonymous_callers_cannot_tell_which_routes_exist(
    guarded: httpx.AsyncClient,
) -> None:
    probes = [
        ("GET", "/api/v1/no-such-route"),
        ("GET", "/api/v2/deliveries"),
        ("DELETE", "/api/v1/deliveries"),  # a route that exists, with a wrong method
        ("POST", "/metrics"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]
    for method, path in probes:
        response = await guarded.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["problems"][0]["field"] == "Authorization"
    assert (await guarded.get("/healthz")).status_code == 200
    assert (await guarded.get("/readyz")).status_code == 200


async def test_a_token_holder_still_sees_404_and_405(guarded: httpx.AsyncClient) -> None:
    auth = {"authorization": f"Bearer {STRONG}"}
    assert (await guarded.get("/api/v1/no-such-route", headers=auth)).status_code == 404
    assert (await guarded.delete("/api/v1/deliveries", headers=auth)).status_code == 405
    assert (await guarded.get("/metrics", headers=auth)).status_code == 200
    wrong = {"authorization": f"Bearer {STRONG}x"}
    assert (await guarded.get("/api/v1/deliveries", headers=wrong)).status_code == 401


# -- webhook credentials -------------------------------------------------------------


def test_userinfo_with_an_authorization_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flytenotify.toml"
    path.write_text(
        "[webhooks.ops]\n"
        'url = "https://bot:hunter2@hooks.example.com/ops"\n'
        'headers = { Authorization = "Bearer abc" }\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["check-config", str(path)], env={})
    assert result.exit_code == 1
    assert "webhooks.ops.headers: " in result.output
    assert "user:password@ in url" in result.output
    with pytest.raises(ConfigError, match=r"webhooks\.ops\.headers"):
        load_config(path, {})


def test_userinfo_or_a_header_alone_is_accepted() -> None:
    WebhookTarget(url="https://bot:hunter2@hooks.example.com/ops")
    WebhookTarget(url="https://hooks.example.com/ops", headers={"authorization": "Bearer abc"})
