"""Which flytenotify modules import which, and where an import runs back up.

    python3 bench/import_graph.py            # every module's imports, then the findings
    python3 bench/import_graph.py --summary  # the findings only

Read from the source (nothing is imported): every ``import`` of a flytenotify
module, marked ``[typing]`` when it sits under ``if TYPE_CHECKING:`` and
``[lazy]`` when it sits inside a function. Both still count: a type-only
import is a dependency mypy follows, and a lazy one a dependency that merely
waits. Importing ``a.b.c`` also runs the package ``a.b``'s ``__init__``, so
those edges count towards cycles too (listed only in a cycle, as ``[package]``);
the top package's ``__init__`` is the public facade every import runs first,
and is not counted so.

Findings:

- cycles: groups of modules that reach one another (strongly connected
  components of the graph), first at import time (every import but the lazy
  ones: what can fail with a partly initialised module, or keep mypy's view
  of the modules circular), then through lazy imports too (a design that
  merely defers the cycle);
- upward imports: a module of a lower layer (``intake``, ``channels``,
  ``store``, ``engine``) importing one of the layers built on it (``app``,
  ``service``, ``api``, ``metrics``, the CLI and the HTTP layer).

Exits 1 when there is an import-time cycle or an upward import, so it can
guard a refactor.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "flytenotify"

# Layers below the service: they must not know what is built on them.
LOWER = ("intake", "channels", "store", "engine")
# What is built on them.
UPPER = ("app", "service", "api", "metrics", "cli", "console", "web", "views", "openapi")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "" (at import time), "typing" (under TYPE_CHECKING), "lazy" (in a function)
    line: int


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement in ``tree`` and how it is reached."""

    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for inner in child.body:
                    yield from walk(ast.Module(body=[inner], type_ignores=[]), "typing")
                for inner in child.orelse:
                    yield from walk(ast.Module(body=[inner], type_ignores=[]), kind)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, kind or "lazy")
            else:
                yield from walk(child, kind)

    yield from walk(tree, "")


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` is, or the nearest package holding it; None outside the package."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def edges(known: dict[str, Path]) -> list[Edge]:
    found: list[Edge] = []
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, kind in _imports(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from a import b" imports the module a.b when there is one, else a.
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                if not name.startswith(PACKAGE):
                    continue
                target = _resolve(name, known)
                if target is not None and target != module:
                    found.append(Edge(module, target, kind, node.lineno))
    return found


def package_edges(found: list[Edge]) -> list[Edge]:
    """Importing a.b.c runs the package a.b's ``__init__`` first (the top package's aside)."""
    implied = []
    for edge in found:
        parts = edge.target.split(".")
        for i in range(2, len(parts)):
            package = ".".join(parts[:i])
            if package != edge.source and not edge.source.startswith(f"{package}."):
                implied.append(Edge(edge.source, package, "package", edge.line))
    return implied


def cycles(known: dict[str, Path], found: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {module: set() for module in known}
    for edge in found:
        graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(found: list[Edge]) -> list[Edge]:
    return [e for e in found if _layer(e.source) in LOWER and _layer(e.target) in UPPER]


def _short(module: str) -> str:
    return module.removeprefix(f"{PACKAGE}.")


def _label(edge: Edge) -> str:
    return f"{_short(edge.target)}{f' [{edge.kind}]' if edge.kind else ''}"


def _print_cycles(title: str, loops: list[list[str]], found: list[Edge]) -> None:
    print(f"{title}: {len(loops)}")
    for loop in loops:
        members = set(loop)
        inside = sorted(
            {f"{_short(e.source)} -> {_label(e)}" for e in found if {e.source, e.target} <= members}
        )
        print(f"  {', '.join(map(_short, loop))}")
        for line in inside:
            print(f"    {line}")


def report(known: dict[str, Path], found: list[Edge], summary: bool) -> int:
    if not summary:
        for module in known:
            targets = sorted({_label(e) for e in found if e.source == module})
            if targets:
                print(f"{_short(module)} -> {', '.join(targets)}")
        print()
    every = found + package_edges(found)
    eager = [e for e in every if e.kind != "lazy"]
    loops = cycles(known, eager)
    _print_cycles("cycles at import time", loops, eager)
    _print_cycles("cycles through lazy imports too", cycles(known, every), every)
    up = upward(found)
    print(f"upward imports ({'/'.join(LOWER)} -> {'/'.join(UPPER)}): {len(up)}")
    for edge in sorted(up, key=lambda e: (e.source, e.target)):
        print(f"  {_short(edge.source)}:{edge.line} -> {_label(edge)}")
    return 1 if loops or up else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", action="store_true", help="print the findings only")
    parser.add_argument("--root", type=Path, default=ROOT, help="the directory holding the package")
    args = parser.parse_args()
    known = modules(args.root)
    return report(known, edges(known), args.summary)


if __name__ == "__main__":
    sys.exit(main())
