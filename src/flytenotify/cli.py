"""The ``flytenotify`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flytenotify.errors import NotificationConfigError
from flytenotify.notification_files import load_notification_file


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flytenotify")
def main() -> None:
    """flytenotify: workflow-execution notifications that arrive."""


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


if __name__ == "__main__":
    main()
