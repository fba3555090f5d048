"""Regenerate docs/digest-slack.png: a Slack digest as the dev inbox holds it.

    .venv/bin/python docs/digest_picture.py

37 executions of one launch plan fail before the dispatcher looks, so one
claim folds them into a digest; the dev inbox keeps the Block Kit message
Slack would get. It is drawn as the web console's Slack preview draws it and
photographed with Chromium headless.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import PLAN, event_json  # noqa: E402

from flytenotify import Slack  # noqa: E402
from flytenotify import WorkflowExecutionPhase as P  # noqa: E402
from flytenotify.app import Notifier  # noqa: E402
from flytenotify.config import DatabaseConfig, Settings, TemplateConfig  # noqa: E402
from flytenotify.web.console.slack_html import blocks  # noqa: E402

OUT = ROOT / "docs" / "digest-slack.png"
CHROMIUM = "/usr/bin/chromium"
ERRORS = [
    "FileNotFoundError: s3://lake/raw/2024-05-01/orders.parquet",
    "ConnectionError: warehouse.internal:5432 refused the connection",
    "ValueError: input file is empty",
]


async def digest_blocks(workdir: Path) -> dict[str, Any]:
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite:///{workdir / 'ledger.db'}"),
        templates=TemplateConfig(
            console_url="https://flyte.example.com/console",
            public_url="https://flytenotify.example.com",
        ),
    )
    async with Notifier(settings, dev_inbox=True) as notifier:
        await notifier.register_launch_plan(PLAN, [Slack([P.FAILED], ["#data-alerts"])])
        events = [
            event_json(f"nightly-{i:03d}", "FAILED", error=ERRORS[i % 3], launch_plan=PLAN)
            for i in range(37)
        ]
        await notifier.report_events(events)
        await notifier.run_until_idle()
        (message,) = await notifier.inbox()
    return dict(json.loads(message.body))


def page(message: dict[str, Any]) -> str:
    """The message as the web console's Slack preview draws it, with the console's CSS."""
    css = (ROOT / "src" / "flytenotify" / "console" / "static" / "console.css").read_text()
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>{css}
body {{ margin: 0; padding: 8px; background: #fff; width: 760px; }}</style></head><body>
<div class="slack-message"><div class="slack-avatar">fn</div><div class="slack-body">
<div class="slack-name">flytenotify <span class="slack-app">APP</span></div>
{blocks(message)}</div></div></body></html>"""


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        message = asyncio.run(digest_blocks(Path(workdir)))
        document = Path(workdir) / "digest.html"
        document.write_text(page(message), encoding="utf-8")
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={OUT}",
                "--window-size=760,830",
                document.as_uri(),
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
