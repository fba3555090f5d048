"""The alert-storm benchmark: 500 failures of one launch plan in ~5 s, to one Slack channel.

flytenotify (in process, SQLite, the loopback Slack server with Slack's real
1 message/s pacing) with grouping off and on (its defaults: by launch plan and
phase, a 10 s window, 100 executions per digest), and Prometheus Alertmanager
(one group for the storm, ``group_interval`` 10 s) with ``group_wait`` 0 s and
30 s, posting to a webhook sink. For each: the messages sent, the time from
the first event until every execution had been named in a message, and the
p50 / p99 from an execution's event to the first message that named it.

Grouping off cannot finish within the benchmark's time: 500 messages paced at
one a second take over eight minutes. It is stopped after ``OFF_LIMIT``
seconds; the messages still to come are projected at the rate measured, and
the row says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import target_alertmanager as am
from pydantic import SecretStr
from tests.helpers import PLAN, event_json
from tests.servers.http_sink import HttpSink
from tests.servers.slack_api import DEFAULT_TOKEN, SlackApiServer

from flytenotify import Slack
from flytenotify import WorkflowExecutionPhase as P
from flytenotify.app import Notifier
from flytenotify.config import DatabaseConfig, GroupingConfig, Settings, SlackConfig

HEADING = "## Alert storms"
STORM = 500
SECONDS = 5.0  # the storm's events arrive over this long
BATCH = 10  # events per report (a broker hands them over in small batches)
OFF_LIMIT = 75.0  # seconds grouping off is watched before its remainder is projected
DONE_LIMIT = 60.0  # seconds any other run may take to name every execution
NAME = re.compile(r"storm-\d{4}")


def names() -> list[str]:
    return [f"storm-{i:04d}" for i in range(STORM)]


async def post_storm(report: Callable[[list[str]], Any]) -> dict[str, float]:
    """Report the storm in batches over SECONDS; when each execution's event went in."""
    sent: dict[str, float] = {}
    all_names = names()
    batches = [all_names[i : i + BATCH] for i in range(0, STORM, BATCH)]
    start = time.monotonic()
    for number, batch in enumerate(batches):
        at = time.monotonic()
        await report(batch)
        sent.update(dict.fromkeys(batch, at))
        next_at = start + (number + 1) * SECONDS / len(batches)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def _row(
    label: str,
    sent: dict[str, float],
    messages: Sequence[tuple[float, set[str]]],
    projected_interval: float | None = None,
) -> dict[str, Any]:
    """The figures of one run from what was sent when and which message named what when."""
    first_named: dict[str, float] = {}
    for at, named in sorted(messages, key=lambda m: m[0]):
        for name in named:
            first_named.setdefault(name, at)
    count = len(messages)
    missing = [name for name in sent if name not in first_named]
    projected = bool(missing) and projected_interval is not None
    if projected:
        # One execution per message at the measured rate, after the last one seen.
        last = max(at for at, _ in messages)
        for step, name in enumerate(sorted(missing), start=1):
            first_named[name] = last + step * projected_interval
        count += len(missing)
    latencies = sorted(first_named[name] - sent[name] for name in sent if name in first_named)
    start = min(sent.values())
    return {
        "label": label,
        "messages": count,
        "named": len(first_named),
        "all_named_s": (max(first_named.values()) - start) if len(first_named) == STORM else None,
        "first_message_s": min(first_named.values()) - start if first_named else None,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "projected": projected,
        "ok": len(first_named) == STORM,
    }


async def until(condition: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds * 10)):  # bounded: tenths of a second
        if condition():
            return
        await asyncio.sleep(0.1)


async def flytenotify_storm(grouping: bool) -> dict[str, Any]:
    label = f"flytenotify, grouping {'on' if grouping else 'off'}"
    with tempfile.TemporaryDirectory() as workdir:
        async with SlackApiServer() as slack:
            settings = Settings(
                database=DatabaseConfig(url=f"sqlite:///{Path(workdir) / 'ledger.db'}"),
                slack=SlackConfig(bot_token=SecretStr(DEFAULT_TOKEN), base_url=slack.base_url),
                grouping=GroupingConfig() if grouping else GroupingConfig(by=[]),
            )

            def named() -> list[tuple[float, set[str]]]:
                return [
                    (post.at, set(NAME.findall(json.dumps(post.body["blocks"]))))
                    for post in slack.posts()
                ]

            async with Notifier(settings) as notifier:
                await notifier.register_launch_plan(PLAN, [Slack([P.FAILED], ["#alerts"])])
                notifier.start_dispatching()

                async def report(batch: list[str]) -> None:
                    await notifier.report_events(
                        [
                            event_json(n, "FAILED", error="disk full", launch_plan=PLAN)
                            for n in batch
                        ]
                    )

                sent = await post_storm(report)
                limit = DONE_LIMIT if grouping else OFF_LIMIT
                await until(lambda: sum(len(n) for _, n in named()) >= STORM, limit)
                await notifier.stop_dispatching()
            messages = named()
    interval = None
    if not grouping and len(messages) > 1:
        times = sorted(at for at, _ in messages)
        interval = (times[-1] - times[0]) / (len(times) - 1)
    return _row(label, sent, messages, interval)


def _alertmanager_config(sink_url: str, group_wait: int) -> str:
    return f"""
route:
  receiver: sink
  group_by: ['alertname']
  group_wait: {group_wait}s
  group_interval: 10s
  repeat_interval: 24h
receivers:
  - name: sink
    webhook_configs:
      - url: {sink_url}
        send_resolved: false
        max_alerts: 0
"""


def _alert(name: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": "FlyteExecutionFailed",
            "execution": name,
            "launch_plan": "nightly",
        },
        "annotations": {"summary": f"Flyte execution {name} failed"},
    }


async def alertmanager_storm(binary: str, group_wait: int) -> dict[str, Any]:
    label = f"Alertmanager, group_wait {group_wait} s"
    with tempfile.TemporaryDirectory() as workdir:
        async with HttpSink() as sink, httpx.AsyncClient(timeout=10) as client:
            config = _alertmanager_config(sink.url("/am"), group_wait)
            with am.run(binary, Path(workdir), config) as manager:

                async def report(batch: list[str]) -> None:
                    answer = await client.post(
                        f"{manager.base_url}/api/v2/alerts", json=[_alert(n) for n in batch]
                    )
                    answer.raise_for_status()

                def named() -> list[tuple[float, set[str]]]:
                    return [
                        (r.at, {a["labels"]["execution"] for a in r.json()["alerts"]})
                        for r in sink.requests
                    ]

                sent = await post_storm(report)
                await until(
                    lambda: len(set().union(*(n for _, n in named()))) >= STORM,
                    DONE_LIMIT + group_wait,
                )
                messages = named()
    return _row(label, sent, messages)


def run() -> dict[str, Any]:
    """Every storm run, one after another; Alertmanager's rows only where it is installed."""
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    clock = time.monotonic()
    binary, note = am.ensure_installed()

    async def all_runs() -> list[dict[str, Any]]:
        rows = [await flytenotify_storm(grouping=False), await flytenotify_storm(grouping=True)]
        if binary is not None:
            for group_wait in (0, 30):
                rows.append(await alertmanager_storm(binary, group_wait))
        return rows

    rows = asyncio.run(all_runs())
    return {
        "started": started,
        "wall_seconds": time.monotonic() - clock,
        "alertmanager": am.version(binary) if binary else note,
        "rows": rows,
    }


def _seconds(value: float | None, projected: bool = False) -> str:
    if value is None:
        return "-"
    return f"~{value:,.0f} (projected)" if projected else f"{value:,.1f}"


def table(storm: dict[str, Any]) -> list[str]:
    lines = [
        "| run | messages | first message (s) | every execution named (s) "
        "| p50 / p99 event → naming message (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in storm["rows"]:
        projected = row["projected"]
        latency = f"{_seconds(row['p50_s'], projected)} / {_seconds(row['p99_s'], projected)}"
        lines.append(
            f"| {row['label']} | {row['messages']:,}{' (projected)' if projected else ''} "
            f"| {_seconds(row['first_message_s'])} | {_seconds(row['all_named_s'], projected)} "
            f"| {latency} |"
        )
    return lines


def section(storm: dict[str, Any] | None) -> list[str]:
    if not storm:
        return [HEADING, "", "Not run this time."]
    return [
        HEADING,
        "",
        f"{STORM} FAILED events of one launch plan arrive over {SECONDS:g} s ({BATCH} per "
        "report) for one Slack channel. flytenotify runs in process on SQLite and posts to the "
        "loopback Slack server with Slack's real pacing (1 message/s per channel); grouping on "
        "is the default `[grouping]` (by launch plan and phase, 10 s window, 100 executions "
        "per digest). Alertmanager groups the storm by `alertname` with `group_interval` 10 s "
        "and posts to a webhook sink (it does not pace). *Every execution named* is the time "
        "from the first event until the last execution first appeared in a message; p50 / p99 "
        "is from each execution's event to the first message naming it. Grouping off is "
        f"stopped after {OFF_LIMIT:g} s and the rest projected at the rate it sent (one "
        "message a second).",
        "",
        f"Run {storm['started']}, {storm['wall_seconds'] / 60:.1f} minutes. Alertmanager: "
        f"{storm['alertmanager']}.",
        "",
        *table(storm),
    ]
