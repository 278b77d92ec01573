"""The layering in docs/architecture.md, checked against the imports, so it cannot rot.

Every module of ``service/`` belongs to one part (a folder, or one of the few modules at the
top); a part may import only the parts the table below allows, and the parts' imports form
no cycle. Lazy imports inside functions count too: they are arrows all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: part -> the parts it may import. ``sync-lib`` is the pure ``sync/`` package and
#: ``schemas`` the wire types; both import nothing of ``service``.
#: What every part above the floor may lean on.
_FLOOR = {"config", "errors", "jobs", "infra", "store", "schemas", "sync-lib"}
#: The features, each with one home (``service/<feature>/``) and the same name in every layer.
_FEATURES = {"accounts", "sync", "insights", "nudges", "care", "push", "lifecycle"}

ALLOWED: dict[str, set[str]] = {
    # the top: what starts processes and wires them
    "cli": {"app", "worker", "wiring", "rules"} | _FEATURES | _FLOOR,
    "app": {"http", "wiring"} | _FEATURES | _FLOOR,
    "worker": {"wiring"} | _FEATURES | _FLOOR,
    "http": _FEATURES | _FLOOR,
    "wiring": _FEATURES | _FLOOR,
    # the features, in the order they may lean on each other
    "lifecycle": {"accounts", "sync", "care", "push"} | _FLOOR,
    "care": {"sync", "nudges", "push"} | _FLOOR,
    "nudges": {"push"} | _FLOOR,
    "insights": {"sync", "rules"} | _FLOOR,
    "sync": {"accounts", "rules"} | _FLOOR,
    "accounts": _FLOOR - {"jobs"},
    "push": _FLOOR - {"sync-lib"},
    "rules": set(),  # pure: no I/O, no framework
    # the floor
    "infra": {"config", "errors", "store", "schemas"},
    "store": {"errors", "schemas", "sync-lib"},
    "config": {"schemas"},
    "errors": {"schemas"},
    "jobs": set(),
    "schemas": set(),
    "sync-lib": set(),
}

TOP_MODULES = {"app", "cli", "config", "errors", "jobs", "wiring"}


def part_of(module: str) -> str | None:
    """The part a dotted module name belongs to (None: outside Kith)."""
    head, _, rest = module.partition(".")
    if head == "schemas":
        return "schemas"
    if head == "sync":
        return "sync-lib"
    if head != "service" or not rest:
        return None
    first = rest.split(".")[0]
    return first if first in ALLOWED else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module this file imports, lazily or not (``from a import b`` counts ``a.b``
    when ``a.b`` is a module, and ``a`` otherwise)."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*candidate.split("."))
                ).is_dir()
                found.add(candidate if is_module else base)
    return found


def kith_files() -> list[Path]:
    """Every source file of Kith but ``service/__init__.py`` (the package's face)."""
    return sorted(
        p
        for folder in ("service", "schemas", "sync")
        for p in (ROOT / folder).rglob("*.py")
        if p != ROOT / "service" / "__init__.py"
    )


def arrows() -> dict[tuple[str, str], list[str]]:
    """(from part, to part) -> the files whose imports draw that arrow."""
    drawn: dict[tuple[str, str], list[str]] = {}
    for path in kith_files():
        source = part_of(module_name(path))
        assert source is not None, f"{path} belongs to no part: add it to ALLOWED"
        for target in filter(None, map(part_of, imports_of(path))):
            if target != source:
                drawn.setdefault((source, target), []).append(str(path.relative_to(ROOT)))
    return drawn


def test_every_folder_of_service_is_a_part() -> None:
    folders = {p.name for p in (ROOT / "service").iterdir() if p.is_dir() and p.name[0] != "_"}
    modules = {p.stem for p in (ROOT / "service").glob("*.py")} - {"__init__"}
    assert folders - {"__pycache__"} <= ALLOWED.keys()
    assert modules == TOP_MODULES, "a module loose at the top of service/ needs a home"


@pytest.mark.parametrize("arrow", sorted(arrows().items()), ids=lambda a: f"{a[0][0]}->{a[0][1]}")
def test_each_import_runs_along_an_allowed_arrow(
    arrow: tuple[tuple[str, str], list[str]],
) -> None:
    (source, target), files = arrow
    assert target in ALLOWED[source], f"{source} may not import {target}: {files}"


def test_the_parts_import_each_other_in_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in arrows():
        graph.setdefault(source, set()).add(target)
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert seen.get(nxt) != 1, "cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in seen:
                visit(nxt, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


def test_the_allowed_table_itself_has_no_cycle() -> None:
    """Not only today's imports: what the table permits could never form a loop either."""
    order: list[str] = []
    remaining = {part: set(targets) for part, targets in ALLOWED.items()}
    while remaining:
        ready = sorted(p for p, targets in remaining.items() if not targets - set(order))
        assert ready, f"the table allows a cycle among {sorted(remaining)}"
        order.extend(ready)
        for part in ready:
            del remaining[part]
