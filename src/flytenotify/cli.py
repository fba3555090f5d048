"""The ``flytenotify`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flytenotify.app import Notifier
from flytenotify.config import Settings
from flytenotify.core.notification import declared_as
from flytenotify.domain import (
    RULE_PHASES,
    ActionKind,
    DeliveryStatus,
    ExecutionId,
    NamedKind,
    NamedRule,
)
from flytenotify.errors import Conflict, InputError, NotificationConfigError, UpstreamUnavailable
from flytenotify.intake.source import Source
from flytenotify.notification_files import load_notification_file
from flytenotify.settings_loader import (
    ConfigError,
    LoadedConfig,
    default_config_path,
    load_config,
    summary,
)
from flytenotify.store.base import DeliveryFilter

_T = TypeVar("_T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flytenotify")
def main() -> None:
    """flytenotify: workflow-execution notifications that arrive."""
    # Before grpc is imported (only commands import it): its C core prints a
    # failed TLS handshake straight to stderr at INFO, beside our own one-line
    # explanation; its errors still show.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check notification files (JSON or TOML) and report every problem.

    A file holds a list of notifications in their JSON form, or an object with
    a "notifications" list. Exits 1 if any file has a problem.
    """
    report: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for path in files:
        try:
            counts[str(path)] = len(load_notification_file(path))
            report[str(path)] = []
        except NotificationConfigError as error:
            report[str(path)] = [str(p) for p in error.problems]
    if as_json:
        click.echo(json.dumps({"files": report, "ok": not any(report.values())}, indent=2))
    else:
        for name, problems in report.items():
            if problems:
                for problem in problems:
                    click.echo(f"{name}: {problem}", err=True)
            else:
                click.echo(f"{name}: {counts[name]} notification(s), all valid")
    sys.exit(1 if any(report.values()) else 0)


# -- configuration and the service ------------------------------------------------

_CONFIG_HELP = "Configuration file (TOML). Default: ./flytenotify.toml if it exists."


def _load(
    config_file: Path | None, overrides: dict[str, dict[str, Any]] | None = None
) -> LoadedConfig:
    """Settings from the file and FLYTENOTIFY_* variables; exits 2 on a problem."""
    try:
        return load_config(default_config_path(config_file), os.environ, overrides)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"config: {problem}", err=True)
        sys.exit(2)


@main.command("check-config")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to every configured channel (SMTP login, Slack auth.test), the "
    "database and every [intake.*] broker.",
)
def check_config(file: Path, as_json: bool, connect: bool) -> None:
    """Check a configuration file (and FLYTENOTIFY_* variables); report every problem.

    Besides the file itself, recipients of the launch plans already registered
    in the configured database are checked against the channels configured
    (a PagerDuty recipient without a routing key, a Slack channel without a
    Slack token). Exits 1 if anything is wrong. Secrets are never printed.
    """
    from flytenotify.intake.registry import MissingExtra, build_sources

    try:
        loaded = load_config(file, os.environ)
        sources = build_sources(loaded.settings)  # a client library missing: exit 2 below
        found: list[str] = []
        problems = asyncio.run(_deeper_problems(loaded, connect, found, sources))
    except ConfigError as error:
        problems = error.problems
    except MissingExtra as error:  # not the file's mistake: the installation's
        click.echo(f"flytenotify check-config: {error}", err=True)
        sys.exit(2)
    if problems:
        if as_json:
            click.echo(json.dumps({"ok": False, "problems": problems}, indent=2))
        else:
            for problem in problems:
                click.echo(f"{file}: {problem}", err=True)
        sys.exit(1)
    info = summary(loaded, sources=sources)
    if as_json:
        click.echo(json.dumps({"ok": True, **info, "connected": found}, indent=2))
        return
    click.echo(f"{file}: valid")
    click.echo(f"  database: {info['database']}")
    for name, state in info["channels"].items():
        click.echo(f"  {name}: {state}")
    server = info["server"]
    click.echo(
        f"  server: {server['listen']} (auth: {server['auth']}; workers: {server['workers']})"
    )
    for name, described in info["intake"].items():
        click.echo(f"  intake {name}: {described}")
    if info["flyteadmin"] is not None:
        click.echo(f"  flyteadmin: {info['flyteadmin']}")
    for key in ("deadlines", "waiting"):
        if info[key]:
            click.echo(f"  {key}: {', '.join(info[key])}")
    for grant in info["actions"] or ["nobody may act on Flyte (no [[actions.allow]])"]:
        click.echo(f"  actions: {grant}")
    if info["acknowledge_and_mute"] == "allowed":
        click.echo("  acknowledge and mute: only the actors [[actions.allow]] names")
    else:
        click.echo("  acknowledge and mute: anyone who sees the message")
    for line in found:
        click.echo(f"  {line}")


async def _deeper_problems(
    loaded: LoadedConfig,
    connect: bool,
    found: list[str] | None = None,
    sources: Sequence[Source] = (),
) -> list[str]:
    """Problems only the database, the channels' servers, the intake ``sources``
    (brokers, Flyte 2's control plane) or FlyteAdmin can reveal.

    What each connection found (a broker's stream, FlyteAdmin reached, a token
    obtained) is appended to ``found``.
    """
    settings = loaded.settings
    problems: list[str] = []
    path = settings.database.sqlite_path
    if connect or (path is not None and path.exists()):
        try:
            async with Notifier(settings, dev_inbox=loaded.server.dev_inbox, channels={}) as n:
                problems += [str(p) for p in await n.routing_problems()]
        except Exception as error:  # unreachable, or a newer schema
            problems.append(f"database: {error}")
    if connect:
        reached, unreachable = await Notifier(settings, channels={}).check_channels()
        problems += unreachable
        if found is not None:
            found += reached
        problems += await _check_sources(sources, found if found is not None else [])
        if settings.flyteadmin is not None:
            problems += await _check_flyteadmin(settings, found if found is not None else [])
    return problems


async def _check_sources(sources: Sequence[Source], found: list[str]) -> list[str]:
    problems: list[str] = []
    for source in sources:
        try:
            found.append(f"intake {source.name}: {await asyncio.wait_for(source.check(), 30)}")
        except Exception as error:
            problems.append(
                f"intake {source.name}: cannot connect: {error or type(error).__name__}"
            )
    return problems


async def _check_flyteadmin(settings: Settings, found: list[str]) -> list[str]:
    from flytenotify.flyteadmin import FlyteAdmin

    assert settings.flyteadmin is not None
    admin = FlyteAdmin(settings.flyteadmin)
    try:
        found.append(f"flyteadmin: {await admin.check()}")
    except Exception as error:  # unreachable, refused, no token: all reported the same way
        return [f"flyteadmin: cannot use {admin.description}: {error}"]
    finally:
        await admin.close()
    return []


@main.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path), help=_CONFIG_HELP)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--db", help="Database: a SQLite file path or URL (default ./flytenotify.db).")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--role",
    type=click.Choice(["all", "api", "dispatcher"]),
    default="all",
    show_default=True,
    help="api: accept requests only; dispatcher: deliver only (serving just health and"
    " metrics); all: both. Scale each separately on PostgreSQL.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes for role all: this one (API and dispatch) and workers-1 more that"
    " dispatch ([server] workers; default: the machine's cores). 1: one process.",
)
# A dispatcher worker started by its parent's serve (flytenotify.workers): its number.
@click.option("--worker", type=click.IntRange(min=2), hidden=True)
def serve(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    db: str | None,
    log_format: Literal["text", "json"],
    role: Literal["all", "api", "dispatcher"],
    workers: int | None,
    worker: int | None,
) -> None:
    """Run the HTTP API and the dispatcher, on every core, until SIGTERM or Ctrl-C."""
    from flytenotify import service
    from flytenotify.intake.registry import MissingExtra, build
    from flytenotify.workers import WorkerLink

    link = WorkerLink(worker) if worker is not None else None
    if link is not None:
        link.die_with_parent()  # first: an orphan would keep leases and send beside the next
    server = {"host": host, "port": port, "workers": workers}
    loaded = _load(config_file, {"server": server, "database": {"url": db}})
    try:
        service.check_bind(loaded)
        # Before anything starts: a client library missing (the parent checked for a worker).
        intake = build(loaded.settings) if link is None else []
    except (service.UnsafeBind, MissingExtra) as error:
        click.echo(f"flytenotify serve: {error}", err=True)
        sys.exit(2)
    service.configure_logging(log_format, worker)
    try:
        service.run(service.serve(loaded, role, intake, log_format=log_format, link=link))
    except NotImplementedError as error:  # e.g. a database this version cannot open
        click.echo(f"flytenotify serve: {error}", err=True)
        sys.exit(2)
    except service.StartupFailed as error:  # a bad password, a newer schema: said once
        click.echo(f"flytenotify serve: {error}", err=True)
        sys.exit(1)


# -- the database, directly --------------------------------------------------------


def _db_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--db", help="Database (overrides the configuration).")(command)
    return click.option(
        "--config", "config_file", type=click.Path(path_type=Path), help=_CONFIG_HELP
    )(command)


async def _with_notifier(
    config_file: Path | None, db: str | None, work: Callable[[Notifier], Awaitable[_T]]
) -> _T:
    loaded = _load(config_file, {"database": {"url": db}})
    async with Notifier(loaded.settings, dev_inbox=loaded.server.dev_inbox) as notifier:
        return await work(notifier)


def _run(config_file: Path | None, db: str | None, work: Callable[[Notifier], Awaitable[_T]]) -> _T:
    try:
        return asyncio.run(_with_notifier(config_file, db, work))
    except NotImplementedError as error:  # e.g. a database this version cannot open
        click.echo(f"flytenotify: {error}", err=True)
        sys.exit(2)


@main.command()
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
def inbox(config_file: Path | None, db: str | None, as_json: bool, limit: int) -> None:
    """Messages delivered into the dev inbox (channels that are not configured), each
    as its channel would have sent it."""
    from flytenotify.web.schemas import InboxView

    # Newest first, as every list here: a big inbox shows what just arrived.
    messages = _run(config_file, db, lambda n: n.store.list_inbox_newest(None, limit))
    items = [InboxView.of(m).to_json() for m in messages]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("the inbox is empty")
        return
    console = Console(highlight=False)
    for item in items:
        heading = (
            f"#{item['id']} {item['channel']} to {item['recipient']}"
            f" (delivery {item['delivery_id']}, {item['received_at']})"
        )
        console.rule(style="dim")
        # soft_wrap: long lines are the terminal's to wrap, so that a body copies whole.
        console.print(Text(heading, style="bold"), soft_wrap=True)
        console.print(Text(f"Subject: {item['subject']}\n"), soft_wrap=True)
        console.print(Text(item["body"].rstrip("\n")), soft_wrap=True)
        console.print()


@main.group()
def deliveries() -> None:
    """Inspect and re-drive deliveries in the database."""


@deliveries.command("list")
@_db_options
@click.option("--status", type=click.Choice([s.value for s in DeliveryStatus]))
@click.option("--execution", help="project/domain/name")
@click.option("--message", help="a message id (digest:...): the deliveries it carried")
@click.option("--silence", type=click.IntRange(1), help="a silence's id: the deliveries it held")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries_list(
    config_file: Path | None,
    db: str | None,
    status: str | None,
    execution: str | None,
    message: str | None,
    silence: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """List deliveries, newest first (the latest --limit of them)."""
    from flytenotify.web.schemas import DeliveryView

    try:
        execution_id = ExecutionId.parse(execution) if execution else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--execution") from None
    query = DeliveryFilter(
        execution=execution_id,
        status=DeliveryStatus(status) if status else None,
        message=message or None,
        silence=silence,
        limit=limit,
        newest_first=True,  # a large ledger's latest, not its first hundred
    )
    found = _run(config_file, db, lambda n: n.deliveries(query))
    items = [DeliveryView.of(d).to_json() for d in found]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no deliveries")
        return
    rows = [
        [
            str(item["id"]),
            f"{item['execution']} {item['phase']}",
            item["channel"],
            item["recipient"],
            item["status"],
            str(item["attempts"]),
            _message_cell(item),
            item["last_reply"],
        ]
        for item in items
    ]
    columns = ["id", "execution", "channel", "recipient", "status", "tries", "message", "reply"]
    if all(row[6] in ("single", "-") for row in rows):  # no digest: the column says nothing
        columns.remove("message")
        rows = [row[:6] + row[7:] for row in rows]
    _print_table(Console(), columns, rows, whole={"id", "channel", "status", "tries"})


def _print_table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    whole: Collection[str] = (),
) -> None:
    """A table that fits the terminal, 80 columns too, and cuts nothing off: the
    ``whole`` columns (short values: an id, a status) are never wrapped or
    shortened, the others wrap onto more lines. Cells are text, never markup."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for index, name in enumerate(columns):
        if name in whole:
            widest = max([len(name), *(len(row[index]) for row in rows)])
            table.add_column(name, no_wrap=True, min_width=widest)
        else:
            table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def _message_cell(item: dict[str, Any]) -> str:
    """The message that carried a delivery: a digest's id and size, or "single"."""
    message = item["message_id"]
    if message is None:
        return "-"
    if message.startswith("digest:"):
        return f"{message} ({item['message_size']})"
    return "single"


@deliveries.command("show")
@click.argument("delivery_id", type=int)
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries_show(
    delivery_id: int, config_file: Path | None, db: str | None, as_json: bool
) -> None:
    """One delivery, its message and every attempt. Exits 1 if there is none."""
    from flytenotify.web.schemas import AttemptView, DeliveryDetail

    async def work(n: Notifier) -> tuple[dict[str, Any], str] | None:
        delivery = await n.delivery(delivery_id)
        if delivery is None:
            return None
        attempts = [AttemptView.of(a) for a in await n.attempts(delivery_id)]
        item = DeliveryDetail.of(delivery, attempts=attempts).to_json()
        # The notification as declared (an Email to webhook:ops); "channel" sends it.
        return item, f"#{delivery.notification_index} ({declared_as(delivery.kind)})"

    found = _run(config_file, db, work)
    if found is None:
        click.echo(f"no delivery {delivery_id}", err=True)
        sys.exit(1)
    item, notification = found
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    console = Console(highlight=False)
    fields = {
        **{key: str(item[key]) for key in ("id", "execution", "phase")},
        "notification": notification,
        **{key: str(item[key]) for key in ("channel", "recipient", "status")},
        "message": _message_cell(item),
        "subject": item["message"]["subject"],
    }
    for key, value in fields.items():
        console.print(Text.assemble((key, "bold"), ": ", value))
    rows = [
        [str(a["number"]), a["started_at"] or "", a["outcome"], a["reply"]]
        for a in item["attempts"]
    ]
    _print_table(console, ["#", "started", "outcome", "reply"], rows, whole={"#", "outcome"})


@deliveries.command("retry")
@click.argument("delivery_id", type=int)
@_db_options
def deliveries_retry(delivery_id: int, config_file: Path | None, db: str | None) -> None:
    """Send a dead (or silenced) delivery again (the running service picks it up).
    Exits 1 otherwise."""

    async def work(n: Notifier) -> str:
        delivery = await n.delivery(delivery_id)
        if delivery is None:
            return f"no delivery {delivery_id}"
        if await n.redrive(delivery_id) is None:
            return f"delivery {delivery_id} is {delivery.status.value}, not dead or silenced"
        return ""

    problem = _run(config_file, db, work)
    if problem:
        click.echo(problem, err=True)
        sys.exit(1)
    click.echo(f"delivery {delivery_id} is pending again")


@main.group()
def executions() -> None:
    """Inspect executions: where their notifications came from, and their events."""


@executions.command("show")
@click.argument("execution")
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def executions_show(
    execution: str, config_file: Path | None, db: str | None, as_json: bool
) -> None:
    """One execution (PROJECT/DOMAIN/NAME): its notifications and where they came from
    (registered, flyteadmin, none), FlyteAdmin's refusal if any, its events and
    deliveries. Exits 1 if there is none."""
    from flytenotify.web.schemas import (
        MAX_LIMIT,
        AcknowledgementView,
        ActionView,
        DeliveryView,
        EventView,
        ExecutionDetail,
    )

    try:
        execution_id = ExecutionId.parse(execution)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="EXECUTION") from None

    async def work(n: Notifier) -> dict[str, Any] | None:
        found = await n.execution(execution_id)
        if found is None:
            return None
        query = DeliveryFilter(execution=execution_id, limit=MAX_LIMIT)
        events = [EventView.of(found, e, outcome) for e, outcome in await n.events(execution_id)]
        deliveries = [DeliveryView.of(d) for d in await n.deliveries(query)]
        actions = [ActionView.of(a) for a in await n.action_history(execution_id)]
        acks = [AcknowledgementView.of(a) for a in await n.acknowledgements(execution_id)]
        return ExecutionDetail.of(
            found, events=events, deliveries=deliveries, actions=actions, acknowledgements=acks
        ).to_json()

    item = _run(config_file, db, work)
    if item is None:
        click.echo(f"no execution {execution_id}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    _print_execution(item)


def _print_execution(item: dict[str, Any]) -> None:
    console = Console(highlight=False)

    def entity(value: dict[str, str] | None) -> str:
        if value is None:
            return "-"
        return "/".join(value[k] for k in ("project", "domain", "name")) + f"@{value['version']}"

    def field(name: str, value: str) -> None:  # Text, not markup: "[flyteadmin]" is no style
        console.print(Text.assemble((name, "bold"), ": ", value))

    field("execution", "/".join(item["id"].values()))
    field("launch plan", entity(item["launch_plan"]))
    field("workflow", entity(item["workflow"]))
    field("notifications from", item["notifications_source"])
    if item["lookup_error"]:
        field("lookup error", item["lookup_error"])
    field("notifications", str(len(item["notifications"])))
    for notification in item["notifications"]:
        console.print(Text(f"  {json.dumps(notification)}"))
    rows = [[e["phase"], e["occurred_at"] or "", e["outcome"]] for e in item["events"]]
    _print_table(console, ["phase", "occurred", "outcome"], rows, whole={"phase", "outcome"})
    for event in item["events"]:
        if event["reason"]:
            field(f"nothing sent for {event['phase']}", event["reason"])
    if item["deliveries"]:
        rows = [
            [str(d["id"]), d["channel"], d["recipient"], d["status"], _message_cell(d)]
            for d in item["deliveries"]
        ]
        columns = ["id", "channel", "recipient", "status", "message"]
        _print_table(console, columns, rows, whole={"id", "status"})
    _print_actions(console, item["actions"])
    for ack in item.get("acknowledgements", []):
        where = f" on {ack['message']}" if ack["message"] else ""
        field("acknowledged", f"by {ack['actor']} at {ack['acknowledged_at']}{where}")


def _print_actions(console: Console, actions: list[dict[str, Any]]) -> None:
    if not actions:
        return
    rows = [
        [a["requested_at"], a["action"], a["target"] or "-", a["actor"], a["outcome"], a["summary"]]
        for a in actions
    ]
    columns = ["asked", "action", "gate", "actor", "outcome", "what came of it"]
    _print_table(console, columns, rows, whole={"action", "outcome"})


# -- talking to a service, or to the database -------------------------------------

_TERMINAL_AND_OTHER_PHASES = [
    "QUEUED",
    "RUNNING",
    "SUCCEEDING",
    "SUCCEEDED",
    "FAILING",
    "FAILED",
    "ABORTING",
    "ABORTED",
    "TIMED_OUT",
]


def _service_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--token",
        envvar="FLYTENOTIFY_CLIENT__TOKEN",
        help="Bearer token for --url (or FLYTENOTIFY_CLIENT__TOKEN).",
    )(command)
    return click.option(
        "--url",
        envvar="FLYTENOTIFY_CLIENT__URL",
        help="A running service (or FLYTENOTIFY_CLIENT__URL); without it the database is used.",
    )(command)


def _fail(error: str, problems: list[str], as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": error, "problems": problems}, indent=2))
    else:
        click.echo(f"flytenotify: {error}", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
    sys.exit(1)


def _client_call(url: str, token: str | None, call: Callable[[Any], _T], as_json: bool) -> _T:
    from flytenotify.client import Client, ClientError

    try:
        with Client(url, token=token) as client:
            return call(client)
    except ClientError as error:
        problems = [f"{p.get('field', '')}: {p.get('message', '')}" for p in error.problems]
        _fail(str(error.error) if error.status else str(error), problems, as_json)


def _direct_call(
    config_file: Path | None,
    db: str | None,
    work: Callable[[Notifier], Awaitable[_T]],
    as_json: bool,
    mistake: str = "invalid request",
) -> _T:
    """``work`` on the database; a mistake in the request exits 1 saying ``mistake``
    and naming each problem."""
    from flytenotify.errors import InputError

    try:
        return _run(config_file, db, work)
    except (InputError, NotificationConfigError) as error:
        _fail(mistake, [str(p) for p in error.problems], as_json)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--project", required=True)
@click.option("--domain", required=True)
@click.option("--name", required=True, help="The launch plan's name.")
@click.option("--version", "version", required=True, help="The launch plan version.")
@_service_options
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def register(
    file: Path,
    project: str,
    domain: str,
    name: str,
    version: str,
    url: str | None,
    token: str | None,
    config_file: Path | None,
    db: str | None,
    as_json: bool,
) -> None:
    """Register a launch plan version's notifications from FILE (JSON or TOML).

    FILE is what `flytenotify validate` checks. With --url the running service
    is called; otherwise the configured database is written directly.
    """
    from flytenotify.domain import EntityId
    from flytenotify.engine.resolve import routing_problems

    try:
        notifications = load_notification_file(file)
    except NotificationConfigError as error:
        _fail(f"{file} is not valid", [str(p) for p in error.problems], as_json)
    if url:
        answer = _client_call(
            url,
            token,
            lambda c: c.register_launch_plan(project, domain, name, version, notifications),
            as_json,
        )
    else:

        async def work(n: Notifier) -> dict[str, Any]:
            plan = await n.register_launch_plan(
                EntityId(project, domain, name, version), notifications
            )
            # As the API answers: stored, and what no channel can reach said now.
            problems = routing_problems(plan.notifications, n.settings, n.dev_inbox)
            return {
                "id": {"project": project, "domain": domain, "name": name, "version": version},
                "notifications": [x.to_dict() for x in plan.notifications],
                "warnings": [{"field": p.field, "message": p.message} for p in problems],
            }

        answer = _direct_call(config_file, db, work, as_json)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    count = _count(len(answer["notifications"]), "notification", "notifications")
    click.echo(f"registered {project}/{domain}/{name}@{version}: {count}")
    for warning in answer.get("warnings", []):
        click.echo(f"  warning: {warning['field']}: {warning['message']}", err=True)


@main.command()
@click.option("--project", required=True)
@click.option("--domain", required=True)
@click.option("--name", required=True, help="The execution's name.")
@click.option(
    "--phase", required=True, type=click.Choice(_TERMINAL_AND_OTHER_PHASES, case_sensitive=False)
)
@click.option("--error", "error", help="The error message (for FAILED, TIMED_OUT...).")
@click.option("--error-code", help="The error code (default: Error).")
@click.option("--launch-plan", help="project/domain/name[@version], for an unknown execution.")
@_service_options
@_db_options
@click.option(
    "--deliver",
    is_flag=True,
    help="Without --url: also send what it enqueues now, in this process.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def event(
    project: str,
    domain: str,
    name: str,
    phase: str,
    error: str | None,
    error_code: str | None,
    launch_plan: str | None,
    url: str | None,
    token: str | None,
    config_file: Path | None,
    db: str | None,
    deliver: bool,
    as_json: bool,
) -> None:
    """Report one execution event (what Flyte would send). Exits 1 if it is refused."""
    from flytenotify.client import make_event

    try:
        body = make_event(
            project,
            domain,
            name,
            phase.upper(),
            error=error,
            error_code=error_code,
            launch_plan=launch_plan,
        )
    except ValueError as problem:
        raise click.BadParameter(str(problem), param_hint="--launch-plan") from None
    if url:
        answer = _client_call(url, token, lambda c: c.send_event(body), as_json)
    else:

        async def work(n: Notifier) -> dict[str, Any]:
            result = await n.report_event(body)
            if deliver and result.delivery_ids:
                await n.run_until_idle(max_wait=60)
            answer: dict[str, Any] = {"outcome": result.outcome.value}
            if result.delivery_ids:
                answer["delivery_ids"] = list(result.delivery_ids)
            return answer

        answer = _direct_call(config_file, db, work, as_json)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    ids = answer.get("delivery_ids") or []
    detail = f" {_count(len(ids), 'delivery', 'deliveries')}: {', '.join(map(str, ids))}"
    click.echo(
        f"{project}/{domain}/{name} {phase.upper()}: {answer['outcome']}{detail if ids else ''}"
    )


@main.command("act")
@click.argument("action", type=click.Choice([a.value for a in ActionKind]))
@click.argument("execution")
@click.option(
    "--signal-id",
    default="",
    help="The gate (approve, reject, signal): a Flyte 1 signal id, a Flyte 2 condition.",
)
@click.option(
    "--value",
    help="What signal sends, as JSON: true, 3, 2.5, '\"text\"'; what is not JSON is text.",
)
@_service_options
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def act(
    action: str,
    execution: str,
    signal_id: str,
    value: str | None,
    url: str | None,
    token: str | None,
    config_file: Path | None,
    db: str | None,
    as_json: bool,
) -> None:
    """Act on EXECUTION (PROJECT/DOMAIN/NAME) in Flyte: approve, reject or signal a gate,
    relaunch, recover or abort it, as [actions] allows (with --url: the token's identity;
    without: the local user, cli:NAME). Exits 1 if it is refused or fails."""
    from flytenotify.actions import cli_actor
    from flytenotify.web.schemas import ActionView

    try:
        execution_id = ExecutionId.parse(execution)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="EXECUTION") from None
    given = _json_or_text(value)
    if url:
        p, d, n = execution_id.project, execution_id.domain, execution_id.name
        answer = _client_call(
            url, token, lambda c: c.act(p, d, n, action, signal_id=signal_id, value=given), as_json
        )
    else:

        async def work(notifier: Notifier) -> dict[str, Any]:
            done = await notifier.act(
                execution_id, action, cli_actor(), signal_id=signal_id, value=given
            )
            return ActionView.of(done.record).to_json()

        answer = _acting(config_file, db, work, as_json)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"{execution_id} {action}: {answer['outcome']}: {answer['summary']}")


def _json_or_text(value: str | None) -> bool | int | float | str | None:
    """``--value`` as JSON when it is a JSON scalar (``3``, ``true``, ``"3"``), else text."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, bool | int | float | str) else value


def _acting(
    config_file: Path | None,
    db: str | None,
    work: Callable[[Notifier], Awaitable[_T]],
    as_json: bool,
) -> _T:
    """``work`` on the database; a refusal or a failure of Flyte exits 1 saying why."""
    from flytenotify.errors import UpstreamRefused, UpstreamUnavailable

    try:
        return _direct_call(config_file, db, work, as_json, mistake="refused")
    except (UpstreamRefused, UpstreamUnavailable) as error:
        _fail(f"Flyte: {error}", [], as_json)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


@main.command("send-test")
@click.argument("channel")
@click.argument("recipient")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help=_CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def send_test(channel: str, recipient: str, config_file: Path | None, as_json: bool) -> None:
    """Send one real test message through a configured CHANNEL to RECIPIENT.

    CHANNEL is one of the channels check-config lists (email, slack,
    pagerduty, webhook, teams, mattermost).

    Prints exactly what the provider answered. Exits 0 if it was delivered,
    1 if the provider refused it or could not be reached, 2 if CHANNEL is not
    configured. For a webhook, RECIPIENT is the target's name.
    """
    loaded = _load(config_file)
    notifier = Notifier(loaded.settings, channels={})
    try:
        result = asyncio.run(notifier.send_test(channel, recipient))
    except InputError as error:
        click.echo(f"flytenotify send-test: {error.problems[0].message}", err=True)
        sys.exit(2)
    outcome, reply = result.outcome.value, result.reply
    if as_json:
        click.echo(
            json.dumps(
                {"channel": channel, "recipient": recipient, "outcome": outcome, "reply": reply},
                indent=2,
            )
        )
    else:
        click.echo(f"{outcome}: {reply}")
    sys.exit(0 if outcome == "delivered" else 1)


# -- the schema --------------------------------------------------------------------


@main.group("flyte2")
def flyte2_group() -> None:
    """Flyte 2: what NamedRule and NamedDelivery names in users' code mean.

    Entries here are kept in the database (the running service reads them at
    once); those in the configuration file's [flyte2.rules.NAME] and
    [flyte2.deliveries.NAME] are listed too, and changed only there.
    """


def _named_group(kind: NamedKind, noun: str) -> click.Group:
    """The list/show/set/delete commands of named rules or named deliveries."""
    sdk_name = "NamedRule" if kind is NamedKind.RULE else "NamedDelivery"
    group = click.Group(
        "rules" if kind is NamedKind.RULE else "deliveries",
        help=f"{noun.capitalize()}s: what flyte.notify.{sdk_name}(...) means.",
    )
    scope = [
        click.Option(["--project"], default="", help="Its project (default: every project)."),
        click.Option(["--domain"], default="", help="Its domain (default: every domain)."),
    ]
    database = [
        click.Option(["--db"], help="Database (overrides the configuration)."),
        click.Option(
            ["--config", "config_file"], type=click.Path(path_type=Path), help=_CONFIG_HELP
        ),
    ]
    as_json = click.Option(["--json", "as_json"], is_flag=True, help="Print JSON.")

    def list_entries(config_file: Path | None, db: str | None, as_json: bool) -> None:
        from flytenotify.web.schemas import NamedRuleView

        entries = _run(config_file, db, lambda n: n.named_rules(kind))
        items = [NamedRuleView.of(entry).to_json() for entry in entries]
        if as_json:
            click.echo(json.dumps(items, indent=2))
            return
        if not items:
            click.echo(f"no {noun}s")
            return
        table = Table("name", "scope", "phases", "recipients", "source")
        for item in items:
            table.add_row(
                item["name"],
                f"{item['project'] or '*'}/{item['domain'] or '*'}",
                ", ".join(item["phases"]) or "(the user's)",
                ", ".join(item["recipients"]),
                item["source"],
            )
        Console().print(table)

    def show(
        name: str,
        project: str,
        domain: str,
        config_file: Path | None,
        db: str | None,
        as_json: bool,
    ) -> None:
        from flytenotify.web.schemas import NamedRuleView

        entries = _run(config_file, db, lambda n: n.named_rules(kind))
        found = [e for e in entries if (e.name, e.project, e.domain) == (name, project, domain)]
        if not found:
            click.echo(f"no {noun} {name!r} for {project or '*'}/{domain or '*'}", err=True)
            sys.exit(1)
        shown = NamedRuleView.of(found[0]).to_json()
        click.echo(json.dumps(shown, indent=2 if as_json else None))

    def set_entry(
        name: str,
        recipient: tuple[str, ...],
        project: str,
        domain: str,
        config_file: Path | None,
        db: str | None,
        as_json: bool,
        phase: tuple[str, ...] = (),  # a named delivery has none: the user's rule says when
    ) -> None:
        from flytenotify.web.schemas import NamedRuleView

        phases = frozenset(RULE_PHASES[p.upper()] for p in phase)
        entry = NamedRule(kind, name, recipient, phases, project, domain)
        stored, problems = _direct_call(config_file, db, lambda n: n.put_named_rule(entry), as_json)
        answer = NamedRuleView.of(stored).to_json()
        answer["warnings"] = [str(p) for p in problems]
        if as_json:
            click.echo(json.dumps(answer, indent=2))
            return
        click.echo(f"{noun} {name} for {project or '*'}/{domain or '*'} stored")
        for problem in problems:
            click.echo(f"  warning: {problem}", err=True)

    def delete(
        name: str, project: str, domain: str, config_file: Path | None, db: str | None
    ) -> None:
        if not _run(config_file, db, lambda n: n.delete_named_rule(kind, name, project, domain)):
            click.echo(
                f"no {noun} {name!r} for {project or '*'}/{domain or '*'} in the database", err=True
            )
            sys.exit(1)
        click.echo(f"{noun} {name} for {project or '*'}/{domain or '*'} deleted")

    name_argument = click.Argument(["name"])
    recipients = click.Option(
        ["--recipient"], multiple=True, required=True, help="A recipient (repeat for more)."
    )
    phases = click.Option(
        ["--phase"],
        multiple=True,
        required=True,
        type=click.Choice(list(RULE_PHASES), case_sensitive=False),
        help="A phase (repeat for more).",
    )
    set_params = [name_argument, recipients, *([phases] if kind is NamedKind.RULE else []), *scope]
    group.add_command(
        click.Command(
            "list", callback=list_entries, params=[*database, as_json], help=f"Every {noun}."
        )
    )
    group.add_command(
        click.Command(
            "show",
            callback=show,
            params=[name_argument, *scope, *database, as_json],
            help=f"One {noun}, of one scope.",
        )
    )
    group.add_command(
        click.Command(
            "set",
            callback=set_entry,
            params=[*set_params, *database, as_json],
            help=f"Create or replace a {noun} (warns of recipients no channel reaches).",
        )
    )
    group.add_command(
        click.Command(
            "delete",
            callback=delete,
            params=[name_argument, *scope, *database],
            help=f"Delete a {noun} kept in the database.",
        )
    )
    return group


flyte2_group.add_command(_named_group(NamedKind.RULE, "named rule"))
flyte2_group.add_command(_named_group(NamedKind.DELIVERY, "named delivery"))


# -- silences -----------------------------------------------------------------------


@main.group("silences")
def silences_group() -> None:
    """Silences: "quiet, I'm on it". What one matches while it is in effect is
    recorded as silenced instead of sent; ending it early may release that.

    Kept in the database: the running service applies a silence added here at
    once (every replica of a PostgreSQL deployment too).
    """


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time with its time zone (2025-03-29T22:00:00+01:00, ...Z)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Seconds, or 8h, 90m, 1h30m, 2d."""
    from flytenotify.engine.silences import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@silences_group.command("list")
@_db_options
@click.option("--active", is_flag=True, help="Only those in effect now.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def silences_list(
    config_file: Path | None, db: str | None, active: bool, limit: int, as_json: bool
) -> None:
    """Silences, newest first: what each matches, when, its state now, who and why."""
    from flytenotify.engine.silences import describe
    from flytenotify.web.schemas import silence_view

    async def work(n: Notifier) -> list[tuple[dict[str, Any], str]]:
        found, _ = await n.silences(True if active else None, None, limit)
        now = n.now()
        return [(silence_view(s, now).to_json(), describe(s)) for s in found]

    listed = _run(config_file, db, work)
    if as_json:
        click.echo(json.dumps([item for item, _ in listed], indent=2))
        return
    if not listed:
        click.echo("no silences in effect" if active else "no silences")
        return
    rows = [
        [
            str(item["id"]),
            item["state"],
            matched,
            _silence_when(item),
            item["author"],
            item["comment"],
        ]
        for item, matched in listed
    ]
    columns = ["id", "state", "matches", "when", "author", "comment"]
    _print_table(Console(), columns, rows, whole={"id", "state"})


def _silence_when(item: dict[str, Any]) -> str:
    start, end = item["starts_at"], item["ends_at"]
    span = f"{start} to {end}" if end else f"from {start}"
    if item["ended_at"]:
        span += f", ended {item['ended_at']} by {item['ended_by']}"
    return span


@silences_group.command("show")
@click.argument("silence_id", type=click.IntRange(1))
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def silences_show(silence_id: int, config_file: Path | None, db: str | None, as_json: bool) -> None:
    """One silence and the deliveries it held (the latest 100). Exits 1 if there is none."""
    from flytenotify.engine.silences import describe
    from flytenotify.web.schemas import DeliveryView, silence_view

    async def work(n: Notifier) -> tuple[dict[str, Any], str, list[dict[str, Any]]] | None:
        silence = await n.silence(silence_id)
        if silence is None:
            return None
        query = DeliveryFilter(silence=silence_id, newest_first=True)
        held = [DeliveryView.of(d).to_json() for d in await n.deliveries(query)]
        return silence_view(silence, n.now()).to_json(), describe(silence), held

    found = _run(config_file, db, work)
    if found is None:
        click.echo(f"no silence {silence_id}", err=True)
        sys.exit(1)
    item, matched, held = found
    if as_json:
        click.echo(json.dumps({**item, "deliveries": held}, indent=2))
        return
    console = Console(highlight=False)
    fields = {
        "id": str(item["id"]),
        "state": item["state"],
        "matches": matched,
        "when": _silence_when(item),
        "author": item["author"],
        "comment": item["comment"],
    }
    if item["next_start"]:
        fields["next start"] = item["next_start"]
    for key, value in fields.items():
        console.print(Text.assemble((key, "bold"), ": ", value))
    rows = [
        [str(d["id"]), f"{d['execution']} {d['phase']}", d["channel"], d["recipient"], d["status"]]
        for d in held
    ]
    columns = ["id", "execution", "channel", "recipient", "status"]
    _print_table(console, columns, rows, whole={"id", "status"})


@silences_group.command("add")
@click.option("--project", help="Only this project's executions.")
@click.option("--domain", help="Only this domain's.")
@click.option("--launch-plan", help="Only this launch plan's (its name; a Flyte 2 run's task).")
@click.option("--trigger", help="Only the runs this Flyte 2 trigger started.")
@click.option(
    "--phase",
    multiple=True,
    type=click.Choice(list(RULE_PHASES), case_sensitive=False),
    help="Only this phase (repeat for more).",
)
@click.option("--recipient", help="Only this recipient, or a domain of addresses.")
@click.option("--all", "match_all", is_flag=True, help="Every delivery (no matcher at all).")
@click.option("--starts-at", callback=_time, help="ISO 8601 with a time zone (default: now).")
@click.option("--ends-at", callback=_time, help="ISO 8601 with a time zone.")
@click.option("--for", "lasting", callback=_duration, help="Ends this long after it starts: 2h.")
@click.option("--cron", help="Recurring: a window opens whenever this fires ('0 22 * * *').")
@click.option("--duration", callback=_duration, help="Recurring: how long each window lasts: 8h.")
@click.option("--timezone", default="UTC", show_default=True, help="Recurring: its time zone.")
@click.option("--comment", required=True, help="Why: shown to everyone who looks.")
@click.option("--author", required=True, help="Who: a name or an address.")
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def silences_add(
    project: str | None,
    domain: str | None,
    launch_plan: str | None,
    trigger: str | None,
    phase: tuple[str, ...],
    recipient: str | None,
    match_all: bool,
    starts_at: datetime | None,
    ends_at: datetime | None,
    lasting: int | None,
    cron: str | None,
    duration: int | None,
    timezone: str,
    comment: str,
    author: str,
    config_file: Path | None,
    db: str | None,
    as_json: bool,
) -> None:
    """Add a silence: one-off (--ends-at or --for) or recurring (--cron and --duration,
    in --timezone). One in effect now also holds the waiting deliveries it matches."""
    from flytenotify.domain import Recurrence, Silence
    from flytenotify.web.schemas import silence_view

    if ends_at is not None and lasting is not None:
        raise click.UsageError("give --ends-at or --for, not both")
    if (cron is None) != (duration is None):
        raise click.UsageError("a recurring silence needs both --cron and --duration")

    async def work(n: Notifier) -> tuple[dict[str, Any], int]:
        start = starts_at or n.now()
        end = start + timedelta(seconds=lasting) if lasting is not None else ends_at
        silence = Silence(
            project=project,
            domain=domain,
            launch_plan=launch_plan,
            trigger=trigger,
            phases=frozenset(RULE_PHASES[p.upper()] for p in phase),
            recipient=recipient,
            all=match_all,
            starts_at=start,
            ends_at=end,
            recurring=Recurrence(cron, duration, timezone)
            if cron is not None and duration is not None
            else None,
            comment=comment,
            author=author,
        )
        stored, held = await n.create_silence(silence)
        return silence_view(stored, n.now(), held=held).to_json(), held

    item, held = _direct_call(config_file, db, work, as_json)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    click.echo(f"silence {item['id']} added ({item['state']})")
    if held:
        click.echo(f"  it holds {_count(held, 'waiting delivery', 'waiting deliveries')} now")


@silences_group.command("end")
@click.argument("silence_id", type=click.IntRange(1))
@click.option("--author", required=True, help="Who ends it.")
@click.option("--release", is_flag=True, help="Send what it held, now.")
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def silences_end(
    silence_id: int,
    author: str,
    release: bool,
    config_file: Path | None,
    db: str | None,
    as_json: bool,
) -> None:
    """End a silence now. What it held stays silenced unless --release is given
    (then it is sent at once by the running service). Exits 1 for no such silence,
    or one ended already."""
    from flytenotify.web.schemas import silence_view

    async def work(n: Notifier) -> tuple[dict[str, Any], int]:
        ended, released = await n.end_silence(silence_id, author, release)
        return silence_view(ended, n.now(), released=released).to_json(), released

    # No such silence, or one ended already: exit 1 naming the id.
    item, released = _direct_call(config_file, db, work, as_json)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    click.echo(f"silence {silence_id} ended")
    if release:
        click.echo(f"  {_count(released, 'delivery', 'deliveries')} it held released")


# -- deadlines ---------------------------------------------------------------------


@main.group("deadlines")
def deadlines_group() -> None:
    """Deadlines: runs that hang, run late or never start.

    Deadlines set here are kept in the database (a running service reads them
    within seconds); those in the configuration file's [deadlines.NAME] are
    listed too, and changed only there.
    """


def _deadline_scope(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--domain", required=True, help="Its domain.")(command)
    return click.option("--project", required=True, help="Its project.")(command)


@deadlines_group.command("list")
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deadlines_list(config_file: Path | None, db: str | None, as_json: bool) -> None:
    """Every deadline."""
    from flytenotify.web.schemas import DeadlineView

    items = [DeadlineView.of(d).to_json() for d in _run(config_file, db, _all_deadlines)]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no deadlines")
        return
    table = Table("name", "scope", "selects", "rules", "recipients", "source")
    for item in items:
        table.add_row(
            item["name"],
            f"{item['project']}/{item['domain']}",
            _selects(item),
            ", ".join(_rules(item)),
            ", ".join(item["recipients"]),
            item["source"],
        )
    Console().print(table)


async def _all_deadlines(notifier: Notifier) -> list[Any]:
    return notifier.deadlines()


def _selects(item: dict[str, Any]) -> str:
    for key in ("launch_plan", "task", "trigger"):
        if item[key]:
            return f"{key.replace('_', ' ')} {item[key]}"
    return "every execution"


def _rules(item: dict[str, Any]) -> list[str]:
    rules = [f"{key} {item[key]}" for key in ("max_queued", "max_running") if item[key]]
    if item["start_within"]:
        schedule = item["schedule"] or "the launch plan's schedule"
        rules.append(f"start_within {item['start_within']} of {schedule}")
    slower = item["slower_than"]
    if slower:
        rules.append(
            f"slower_than p{slower['percentile']:g} of {slower['of_last']}"
            f" (from {slower['min_runs']} runs)"
        )
    return rules


@deadlines_group.command("show")
@click.argument("name")
@_deadline_scope
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deadlines_show(
    name: str, project: str, domain: str, config_file: Path | None, db: str | None, as_json: bool
) -> None:
    """One deadline, and the alerts it sent (newest first)."""
    from flytenotify.domain import DeadlineId
    from flytenotify.web.schemas import DeadlineAlertView, DeadlineView

    ident = DeadlineId(project, domain, name)

    async def work(n: Notifier) -> tuple[Any, list[Any]] | None:
        found = n.deadline(ident)
        return None if found is None else (found, await n.deadline_alerts(ident, limit=20))

    found = _run(config_file, db, work)
    if found is None:
        click.echo(f"no deadline {ident}", err=True)
        sys.exit(1)
    shown = DeadlineView.of(found[0]).to_json()
    shown["alerts"] = [DeadlineAlertView.of(alert).to_json() for alert in found[1]]
    click.echo(json.dumps(shown, indent=2 if as_json else None))


@deadlines_group.command("set")
@click.argument("name")
@_deadline_scope
@click.option("--launch-plan", help="Select the executions of this Flyte 1 launch plan.")
@click.option("--task", help="Select the Flyte 2 runs of this task.")
@click.option("--trigger", help="Select the Flyte 2 runs this trigger started.")
@click.option("--max-queued", help="How long a run may queue (90s, 10m, 2h, 1d, 1h30m).")
@click.option("--max-running", help="How long a run may run.")
@click.option("--schedule", help="A cron expression in UTC (default: the launch plan's own).")
@click.option("--start-within", help="How soon after each fire time a run must start.")
@click.option("--percentile", type=float, help="slower_than: this percentile of past runs...")
@click.option("--of-last", type=int, help="...of the last N successful runs (default 20)...")
@click.option("--min-runs", type=int, help="...once this many are known (default 5).")
@click.option(
    "--recipient", "recipients", multiple=True, required=True, help="A recipient (repeat)."
)
@click.option("--resolve/--no-resolve", default=True, help="Follow up when an alerted run ends.")
@_db_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deadlines_set(
    name: str,
    project: str,
    domain: str,
    config_file: Path | None,
    db: str | None,
    as_json: bool,
    **given: Any,
) -> None:
    """Create or replace a deadline (warns of recipients no channel reaches)."""
    from flytenotify.domain import DeadlineId
    from flytenotify.web.schemas import DeadlineBody, DeadlineView, parse

    body = {key: value for key, value in given.items() if value not in (None, ())}
    slower = {key: body.pop(key) for key in ("percentile", "of_last", "min_runs") if key in body}
    if slower:
        body["slower_than"] = slower
    body["recipients"] = list(given["recipients"])
    ident = DeadlineId(project, domain, name)
    try:
        spec = parse(DeadlineBody, body)
    except InputError as error:
        _fail("invalid deadline", [_option_problem(p) for p in error.problems], as_json)

    async def work(n: Notifier) -> tuple[Any, list[Any]]:
        return await n.put_deadline(spec.deadline(ident))

    try:
        stored, problems = _run(config_file, db, work)
    except Conflict as error:  # the configuration file's: changed there
        _fail("conflict", [str(p) for p in error.problems], as_json)
    except InputError as error:
        _fail("invalid deadline", [_option_problem(p) for p in error.problems], as_json)
    except UpstreamUnavailable as error:
        _fail(str(error), [], as_json)
    answer = DeadlineView.of(stored).to_json()
    answer["warnings"] = [str(p) for p in problems]
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"deadline {ident} stored")
    for problem in problems:
        click.echo(f"  warning: {problem}", err=True)


def _option_problem(problem: Any) -> str:
    """A problem as the option that fixes it names it (``--max-queued``), with its field."""
    field = str(problem.field)
    option = field.removeprefix("slower_than.").split("[", 1)[0].replace("_", "-")
    option = "recipient" if option == "recipients" else option
    return f"--{option} ({field}): {problem.message}"


@deadlines_group.command("delete")
@click.argument("name")
@_deadline_scope
@_db_options
def deadlines_delete(
    name: str, project: str, domain: str, config_file: Path | None, db: str | None
) -> None:
    """Delete a deadline kept in the database (and its timers)."""
    from flytenotify.domain import DeadlineId

    ident = DeadlineId(project, domain, name)
    if not _run(config_file, db, lambda n: n.delete_deadline(ident)):
        click.echo(f"no deadline {ident} in the database", err=True)
        sys.exit(1)
    click.echo(f"deadline {ident} deleted")


@main.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
@_db_options
def db_upgrade(config_file: Path | None, db: str | None) -> None:
    """Apply pending schema migrations (safe while replicas run, and from several at once)."""
    from flytenotify.store import upgrade

    loaded = _load(config_file, {"database": {"url": db}})
    try:
        version = asyncio.run(upgrade(loaded.settings.database.url))
    except RuntimeError as error:  # a schema newer than this flytenotify knows
        click.echo(f"flytenotify: {error}", err=True)
        sys.exit(2)
    click.echo(f"schema version {version}")


if __name__ == "__main__":
    main()
