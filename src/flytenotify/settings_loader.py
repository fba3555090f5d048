"""Settings from a TOML file and the environment, every problem reported at once.

The file has the sections of :class:`~flytenotify.config.Settings` plus
``[server]`` (:class:`ServerConfig`). Every key can be overridden from the
environment as ``FLYTENOTIFY_<SECTION>__<KEY>`` (``FLYTENOTIFY_SMTP__PORT=2525``,
``FLYTENOTIFY_DATABASE__URL=/var/lib/flytenotify.db``,
``FLYTENOTIFY_WEBHOOKS__OPS__URL=https://...``). Lists and tables in the
environment are written as JSON; ``api_tokens`` also accepts a comma list.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flytenotify.channels import registry
from flytenotify.config import ActionGrant, FlyteAdminConfig, ServerConfig, Settings
from flytenotify.intake import registry as intakes
from flytenotify.intake.source import Source

ENV_PREFIX = "FLYTENOTIFY_"
DEFAULT_CONFIG = Path("flytenotify.toml")
# FLYTENOTIFY_CLIENT__URL / FLYTENOTIFY_CLIENT__TOKEN are read by the CLI's
# client commands (register, event), not by the service's settings.
CLIENT_SECTION = "client"


class ConfigError(Exception):
    """Configuration that cannot be used; ``problems`` lists every one as ``section.key: msg``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    server: ServerConfig
    source: Path | None  # the file read, if any


def load_settings(path: Path | None, env: Mapping[str, str]) -> Settings:
    """The engine's :class:`Settings` from ``path`` (optional) and ``env``."""
    return load_config(path, env).settings


def load_config(
    path: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> LoadedConfig:
    """Settings and server settings; raises :class:`ConfigError` with every problem.

    Precedence: ``overrides`` (command-line flags) over the environment over the file.
    """
    raw: dict[str, Any] = {}
    problems: list[str] = []
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError([f"{path}: not valid TOML: {error}"]) from None
    problems += _apply_env(raw, env)
    for section, values in (overrides or {}).items():
        target = raw.setdefault(section, {})
        if isinstance(target, dict):
            target.update({k: v for k, v in values.items() if v is not None})
    server_raw = raw.pop("server", {})
    settings: Settings | None = None
    server: ServerConfig | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        problems += _problems(error, "")
    try:
        server = ServerConfig.model_validate(server_raw)
    except ValidationError as error:
        problems += _problems(error, "server")
    if server is not None and server.api_tokens_file is not None:
        try:
            problems += server.file_token_problems()
        except OSError as error:
            problems.append(f"server.api_tokens_file: cannot read: {error.strerror}")
    if problems or settings is None or server is None:
        raise ConfigError(problems)
    return LoadedConfig(settings, server, path)


def default_config_path(explicit: Path | None) -> Path | None:
    """``explicit``, else ``./flytenotify.toml`` when it exists, else none."""
    if explicit is not None:
        return explicit
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, value in sorted(env.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if parts[0] == CLIENT_SECTION:
            continue  # the CLI's client options (FLYTENOTIFY_CLIENT__URL, __TOKEN)
        if len(parts) < 2 or not all(parts):
            problems.append(f"{name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
            continue
        target = raw
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{'.'.join(parts)}: cannot set from {name}")
                break
            target = child
        else:
            target[parts[-1]] = _env_value(parts[-1], value)
    return problems


def _env_value(key: str, value: str) -> Any:
    text = value.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    if key == "api_tokens":
        return [t.strip() for t in text.split(",") if t.strip()]
    return value


def _problems(error: ValidationError, prefix: str) -> list[str]:
    found = []
    for item in error.errors():
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        found.append(f"{path}: {message}" if path else message)
    return found


def summary(
    config: LoadedConfig, dev_inbox: bool | None = None, sources: Sequence[Source] | None = None
) -> dict[str, Any]:
    """What is configured, for people: never a secret.

    ``sources`` are the intake sources already built from ``config``, if they
    are (built here otherwise: their client libraries load only when configured).
    """
    settings, server = config.settings, config.server
    dev = server.dev_inbox if dev_inbox is None else dev_inbox
    if sources is None:
        sources = intakes.build_sources(settings)
    admin = settings.flyteadmin
    token_count = len(server.api_tokens) + (1 if server.api_tokens_file else 0)
    return {
        "source": str(config.source) if config.source else None,
        "database": shown_database(settings),
        "channels": channel_states(settings, dev),
        "intake": {source.name: source.describe() for source in sources},
        "flyteadmin": _describe_flyteadmin(admin) if admin is not None else None,
        "deadlines": sorted(settings.deadlines),
        "waiting": sorted(settings.waiting),
        "actions": [_describe_grant(grant) for grant in settings.actions.allow],
        "acknowledge_and_mute": settings.actions.acknowledge_and_mute,
        "server": {
            "listen": f"http://{server.host}:{server.port}",
            "auth": "bearer tokens" if token_count else "none",
            "max_body_bytes": server.max_body_bytes,
            "dev_inbox": dev,
            "workers": server.workers,
        },
    }


def shown_database(settings: Settings) -> str:
    """The database, for people: a file as configured, a server's URL without its password."""
    url = settings.database.url
    return url if settings.database.sqlite_path is not None else _redact_url(url)


def channel_states(settings: Settings, dev_inbox: bool) -> dict[str, str]:
    """Each channel's state for people: configured (and how), dev-inbox or not configured."""
    unset = "dev-inbox" if dev_inbox else "not configured"
    return {
        spec.name: f"configured ({spec.summary(config)})" if spec.is_configured(config) else unset
        for spec in registry.specs()
        for config in [settings.channel(spec.name)]
    }


def _describe_flyteadmin(admin: FlyteAdminConfig) -> str:
    transport = "plaintext" if admin.insecure else "TLS"
    if admin.client_id:
        auth = f"OAuth2 client credentials as {admin.client_id}"
    elif admin.token_file is not None:
        auth = f"token from {admin.token_file}"
    else:
        auth = "no authentication"
    return f"{admin.endpoint} ({transport}, {auth})"


def _describe_grant(grant: ActionGrant) -> str:
    """``[[actions.allow]]`` for people: who may do what, where."""
    scope = f"{grant.project or '*'}/{grant.domain or '*'}"
    return f"{', '.join(grant.actors)} may {', '.join(grant.actions)} in {scope}"


def _redact_url(url: str) -> str:
    # postgresql://user:password@host/db -> postgresql://user:***@host/db
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***{at}{host}"
