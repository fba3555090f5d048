"""The README's Python examples run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
# Blocks fenced as ```python run as they stand; ```py blocks need a server
# (SMTP, or the service) and are run below against real ones on free ports.
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_the_product_document_examples() -> None:
    joined = "\n".join(BLOCKS)
    for needle in ('recipients_email=["team-leads@example.com"]', '"#data-alerts"', "TIMED_OUT"):
        assert needle in joined


@pytest.mark.parametrize("code", BLOCKS, ids=lambda c: c.strip().splitlines()[-1][:40])
def test_readme_block_runs(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_readme_python_entry_point_sends_real_email(tmp_path: Path) -> None:
    """The README's script, run against a real SMTP server on a free port."""
    from tests.servers.smtp import SmtpServer

    (script,) = re.findall(r"```py\n(.*?)```", README, flags=re.DOTALL)
    with SmtpServer() as server:
        code = script.replace("port=2525", f"port={server.port}")
        code = code.replace(
            "Settings(smtp=", f"Settings(database={{'url': {str(tmp_path / 'r.db')!r}}}, smtp="
        )
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
        received = sorted(m.recipient for m in server.messages)
    assert received == ["data-team@example.com", "dev-ops@example.com"]


def test_readme_configuration_reference_names_every_key_and_only_real_keys() -> None:
    import tomllib
    from typing import Any, get_args, get_origin

    from pydantic import BaseModel

    from flytenotify.channels import registry
    from flytenotify.config import ServerConfig, Settings
    from flytenotify.intake import registry as intakes

    (block,) = re.findall(r"## Configuration\n.*?```toml\n(.*?)```", README, flags=re.DOTALL)
    documented = tomllib.loads(block)
    sections: dict[str, type[BaseModel]] = {"server": ServerConfig}
    for name, field in Settings.model_fields.items():
        model = next(
            (
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if model is not None and name != "allow":
            sections[name] = model
    # [deadlines.NAME] tables, one example each, like the channels' named targets.
    named_targets = {
        name
        for name, field in Settings.model_fields.items()
        if get_origin(field.annotation) is dict
    }
    for spec in registry.specs():
        if get_origin(spec.config) is dict:  # [section.NAME] tables: one example each
            named_targets.add(spec.section)
            sections[spec.section] = get_args(spec.config)[1]
        else:
            sections[spec.section] = spec.config
    # Each intake's section, at its dotted path ([intake.nats]); the tables holding
    # such sections hold nothing else.
    holders: dict[str, set[str]] = {}
    for intake in intakes.specs():
        sections[intake.section] = intake.config
        holder, dot, key = intake.section.rpartition(".")
        if dot:
            holders.setdefault(holder, set()).add(key)

    def at(path: str) -> Any:
        found = documented
        for part in path.split("."):
            found = found[part]
        return found

    assert set(documented) == {*(name.partition(".")[0] for name in sections), "allow"}
    for holder, keys in holders.items():
        assert set(at(holder)) == keys, f"[{holder}] in the README holds more than intakes"
    # Every channel has an allow-list (its own name, or the key that restricts
    # it), and the README shows each.
    allow_keys = {spec.allow_key or spec.name for spec in registry.specs()}
    assert set(documented["allow"]) == allow_keys
    for name, model in sections.items():
        keys = at(name)
        if name in named_targets:
            (keys,) = keys.values()
        assert set(keys) == set(model.model_fields), (
            f"[{name}] in the README differs from {model.__name__}"
        )


def test_readme_client_example_runs_against_a_live_service(tmp_path: Path) -> None:
    """The README's client example, against the real service on a free port."""
    import httpx

    from tests.live_server import LiveServer

    (script,) = re.findall(r"```py client\n(.*?)```", README, flags=re.DOTALL)
    with LiveServer(tmp_path / "client.db") as server:
        code = script.replace("http://127.0.0.1:8080", server.url)
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
        deadline = time.monotonic() + 10
        while not (items := httpx.get(f"{server.url}/api/v1/inbox").json()["items"]):
            assert time.monotonic() < deadline, "the FAILED notification never arrived"
            time.sleep(0.05)
    assert [(m["kind"], m["recipient"]) for m in items] == [("email", "ops@example.com")]
    assert "input file is empty" in items[0]["body"]


def test_readme_tour_names_the_interpreter_that_has_flytenotify() -> None:
    """A new user's python3 has no flytenotify: dev.py installed it into .venv."""
    before = README[: README.index("```py tour")].rstrip()
    assert "`.venv/bin/python`" in before[before.rindex("\n\n") :]  # the paragraph above


def test_readme_tour_registration_from_python_runs(tmp_path: Path) -> None:
    import httpx

    from tests.live_server import LiveServer

    (script,) = re.findall(r"```py tour\n(.*?)```", README, flags=re.DOTALL)
    with LiveServer(tmp_path / "tour.db") as server:
        exec(compile(script.replace("http://127.0.0.1:8080", server.url), "README.md", "exec"), {})
        plan = httpx.get(f"{server.url}/api/v1/launch-plans/flytesnacks/development/nightly_etl")
    assert [sorted(n) for n in plan.json()["notifications"]] == [
        ["email", "phases"],
        ["phases", "slack"],
        ["pagerDuty", "phases"],
    ]
