"""The ledger's SQL, every statement named once and loaded by name.

``common.sql`` holds the statements SQLite and PostgreSQL run alike;
``sqlite.sql`` and ``postgresql.sql`` hold only what really differs between
them: row locks (``FOR UPDATE SKIP LOCKED``), arrays (``unnest``), the
database clock, index hints. A name is defined in one file only, so a reader
never wonders which of two spellings runs.

Each statement starts at a ``-- name: NAME`` line; the comment lines right
after it say what it does. ``common.sql`` writes its parameters ``?``, and
the loader numbers them ``$1``, ``$2``... for PostgreSQL; the dialect files
use their own style. ``{{name}}`` includes another named statement (a common
table expression several share, or ``postgresql.sql``'s ``{{now}}``, the
database clock) or a column type the migrations spell per dialect
(``{{timestamp}}``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

from flytenotify.store.migrations import DIALECTS, Dialect, render

_MAX_DEPTH = 4  # how deep one statement's inclusions may nest
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# A "?" outside string literals and comments: a parameter.
_MARK = re.compile(r"'(?:[^']|'')*'|--[^\n]*|\?")


@dataclass(frozen=True)
class Queries:
    """One dialect's statements by name."""

    dialect: Dialect
    statements: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        try:
            return self.statements[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} for {self.dialect}") from None

    def mark(self, number: int) -> str:
        """How the ``number``-th parameter (from 1) is written in this dialect."""
        return "?" if self.dialect == "sqlite" else f"${number}"


def parse(text: str, source: str) -> dict[str, str]:
    """The statements of one file by name, without their comment lines or final ``;``."""
    parts = _HEADER.split(text)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in statements:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        statements[name] = "\n".join(lines).strip().rstrip(";").strip()
    return statements


def number_marks(statement: str) -> str:
    """``?`` parameters numbered ``$1``, ``$2``... in order, as PostgreSQL writes them."""
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group() != "?":
            return match.group()  # a string literal or a comment: left as it is
        count += 1
        return f"${count}"

    return _MARK.sub(number, statement)


def _read(name: str) -> str:
    entry = files(__name__).joinpath(name)
    if not entry.is_file():
        # What a build that leaves out package data produces: say so plainly.
        raise ImportError(
            f"no {name} found in {files(__name__)}: this flytenotify was installed without"
            " its package data; reinstall it from a wheel or sdist built from the project"
            " (pyproject.toml ships store/queries/*.sql)"
        )
    return entry.read_text(encoding="utf-8")


@functools.cache
def queries_for(dialect: Dialect) -> Queries:
    """Every statement ``dialect`` runs, loaded once per process."""
    return load(_read("common.sql"), _read(f"{dialect}.sql"), dialect)


def load(common_text: str, dialect_text: str, dialect: Dialect) -> Queries:
    """The statements of ``common.sql`` and a dialect's file, ready to run."""
    common = parse(common_text, "common.sql")
    own = parse(dialect_text, f"{dialect}.sql")
    both = sorted(common.keys() & own.keys())
    if both:
        raise ValueError(f"{dialect}.sql redefines common queries: {', '.join(both)}")
    if dialect == "postgresql":
        common = {name: number_marks(sql) for name, sql in common.items()}
    return Queries(dialect, _include({**common, **own}, dialect))


def _include(raw: dict[str, str], dialect: Dialect) -> dict[str, str]:
    """Every ``{{name}}`` replaced by that statement (itself expanded) or column type."""
    spellings = {**DIALECTS[dialect], **raw}
    expanded: dict[str, str] = {}
    for name, sql in raw.items():
        for _ in range(_MAX_DEPTH):
            if "{{" not in sql:
                break
            sql = render(sql, dialect, spellings)
        else:
            raise ValueError(f"query {name!r} includes itself or nests too deep")
        expanded[name] = sql
    return expanded
