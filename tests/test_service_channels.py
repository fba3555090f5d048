"""The service configured from a TOML file delivers over real channels.

A real SMTP server and the loopback Slack and PagerDuty APIs are named in a
flytenotify.toml; events sent over HTTP arrive at each of them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from flytenotify.settings_loader import load_config
from tests.helpers import event_json
from tests.live_server import LiveServer
from tests.servers.pagerduty_api import PagerDutyApiServer
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer
from tests.servers.smtp import SmtpServer

ROUTING_KEY = "k" * 32


async def test_toml_configured_channels_deliver(tmp_path: Path) -> None:
    async with SlackApiServer() as slack, PagerDutyApiServer() as pagerduty:
        with SmtpServer() as smtp:
            config = tmp_path / "flytenotify.toml"
            config.write_text(
                f'[database]\nurl = "{tmp_path / "ledger.db"}"\n'
                f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsender = "flyte@example.com"\n'
                f'[slack]\nbot_token = "{DEFAULT_TOKEN}"\nbase_url = "{slack.base_url}"\n'
                f'[pagerduty]\nevents_url = "{pagerduty.events_url}"\n'
                f'[pagerduty.routing_keys]\ndata-oncall = "{ROUTING_KEY}"\n'
            )
            loaded = load_config(config, {})
            with LiveServer(tmp_path / "unused.db", settings=loaded.settings) as server:
                async with httpx.AsyncClient(base_url=server.url) as client:
                    plan = {
                        "version": "v1",
                        "notifications": [
                            {"phases": ["FAILED"], "email": {"recipientsEmail": ["ops@x.io"]}},
                            {"phases": ["FAILED"], "slack": {"recipientsEmail": ["#alerts"]}},
                            {
                                "phases": ["FAILED"],
                                "pagerDuty": {"recipientsEmail": ["data-oncall"]},
                            },
                        ],
                    }
                    answer = await client.put("/api/v1/launch-plans/proj/prod/nightly", json=plan)
                    assert answer.json()["warnings"] == []
                    lp = {"project": "proj", "domain": "prod", "name": "nightly"}
                    event = event_json("run-1", "FAILED", error="boom") | {"launch_plan": lp}
                    assert (await client.post("/api/v1/events", json=event)).status_code == 202
                    deadline = time.monotonic() + 10
                    while not (smtp.messages and slack.posts() and pagerduty.accepted):
                        assert time.monotonic() < deadline, "not every channel delivered"
                        await asyncio.sleep(0.05)
                    listed = (await client.get("/api/v1/deliveries")).json()["items"]
    assert sorted(d["channel"] for d in listed) == ["email", "pagerduty", "slack"]
    assert smtp.messages[0].recipient == "ops@x.io"
    assert slack.posts()[0].body["channel"] == "#alerts"
    assert pagerduty.accepted[0]["routing_key"] == ROUTING_KEY
