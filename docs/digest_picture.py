"""Regenerate docs/digest-slack.png: a Slack digest as the dev inbox holds it.

    .venv/bin/python docs/digest_picture.py

37 executions of one launch plan fail before the dispatcher looks, so one
claim folds them into a digest; the dev inbox keeps the Block Kit message
Slack would get. It is drawn as HTML (header, sections, context: the blocks a
digest uses, mrkdwn's *bold*, `code` and <url|links>) and photographed with
Chromium headless.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flytenotify import Slack  # noqa: E402
from flytenotify import WorkflowExecutionPhase as P  # noqa: E402
from flytenotify.app import Notifier  # noqa: E402
from flytenotify.config import DatabaseConfig, Settings, TemplateConfig  # noqa: E402
from tests.helpers import PLAN, event_json  # noqa: E402

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


def mrkdwn(text: str) -> str:
    out = html.escape(html.unescape(text), quote=False)
    out = re.sub(r"&lt;(https?://[^|&]+)\|([^&]+)&gt;", r'<a href="\1">\2</a>', out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", out)
    return out.replace("\n", "<br>")


def page(message: dict[str, Any]) -> str:
    parts = []
    for block in message["blocks"]:
        if block["type"] == "header":
            parts.append(f"<h1>{html.escape(block['text']['text'])}</h1>")
        elif block["type"] == "section":
            parts.append(f"<p>{mrkdwn(block['text']['text'])}</p>")
        elif block["type"] == "context":
            parts.append(f"<p class=ctx>{mrkdwn(block['elements'][0]['text'])}</p>")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ font: 15px/1.45 -apple-system, "Segoe UI", Lato, sans-serif; margin: 0;
       background: #fff; color: #1d1c1d; width: 760px; }}
.msg {{ display: flex; padding: 16px 20px; }}
.avatar {{ width: 36px; height: 36px; border-radius: 6px; background: #4a154b;
          color: #fff; font-weight: bold; text-align: center; line-height: 36px;
          margin-right: 10px; flex: none; }}
.who {{ font-weight: 900; }} .who span {{ font-weight: normal; color: #616061; font-size: 12px; }}
h1 {{ font-size: 18px; margin: 4px 0 8px; }}
p {{ margin: 0 0 8px; }} p.ctx {{ color: #616061; font-size: 13px; }}
a {{ color: #1264a3; text-decoration: none; }}
code {{ font: 12px Menlo, monospace; color: #e01e5a; background: #f6f6f6;
        border: 1px solid #ddd; border-radius: 3px; padding: 0 2px; }}
</style></head><body><div class=msg><div class=avatar>fn</div><div>
<div class=who>flytenotify <span>APP 03:12</span></div>
{"".join(parts)}</div></div></body></html>"""


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
                "--window-size=760,1400",
                document.as_uri(),
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
