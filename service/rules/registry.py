"""Every rule the engine knows: each module of this package that declares ``RULE``.

Found on first use, not listed by hand, so adding a rule is its module, its TOML table and
its test (docs/architecture.md). Found lazily because the catalog and the engine, which
read the rules, are themselves modules of this package.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from service.rules.rule import Rule

__all__ = ["rule_ids", "rules"]


@functools.cache
def rules() -> tuple[Rule[Any], ...]:
    """Every rule, in ascending ``rank`` (the order findings are reported in)."""
    package = importlib.import_module(__package__ or "service.rules")
    found: list[Rule[Any]] = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            continue
        declared = getattr(importlib.import_module(f"{package.__name__}.{info.name}"), "RULE", None)
        if isinstance(declared, Rule):
            found.append(declared)
    ranks = [r.rank for r in found]
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"rules share a rank: {sorted((r.rank, r.id) for r in found)}")
    return tuple(sorted(found, key=lambda r: r.rank))


def rule_ids() -> tuple[str, ...]:
    """Every rule's id, in rank order."""
    return tuple(rule.id for rule in rules())
