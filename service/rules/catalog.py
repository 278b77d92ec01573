"""The rules catalog: thresholds and wording, loaded from ``schemas/rules.toml``.

Rules are data: the rule functions hold only arithmetic, and every number they compare
against and every sentence they write comes from here, so calibrating a threshold or
rewording an insight is a one-line change to the TOML file. Each rule's table is decoded
into the spec type its own module declares (``registry.rules()``), checked once at load, and
its templates checked against the placeholders the rule fills — so a typo fails at
start-up rather than in the middle of a sweep.
"""

from __future__ import annotations

import functools
import importlib.resources
import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import msgspec
from msgspec import Struct

from service.rules.registry import rules
from service.rules.rule import Rule
from service.rules.spec import PersonSpec, RuleSpec

__all__ = ["Catalog", "PersonSpec", "RuleSpec", "default_catalog", "load_catalog"]

S = TypeVar("S", bound=RuleSpec)
_KINDS = {"in_person", "video", "call", "voice", "text", "social", "letter", "other"}


class _Head(Struct, frozen=True, forbid_unknown_fields=True):
    """The catalog's own settings; every other table belongs to a rule."""

    version: int
    reraise_after_days: int
    kind_nouns: dict[str, tuple[str, str]]
    person: PersonSpec


@dataclass(frozen=True, slots=True)
class Catalog:
    """The whole catalog: shared settings and one spec per rule, keyed by rule id."""

    version: int
    reraise_after_days: int
    kind_nouns: Mapping[str, tuple[str, str]]
    person: PersonSpec
    specs: Mapping[str, RuleSpec]

    def spec(self, rule_id: str) -> RuleSpec:
        """The spec of one rule by id (KeyError for an unknown id)."""
        return self.specs[rule_id]

    def spec_for(self, rule: Rule[S]) -> S:
        """The spec of ``rule``, typed as the rule declares it."""
        spec = self.specs[rule.id]
        assert isinstance(spec, rule.spec)
        return spec

    def kind_noun(self, kind: str, *, many: bool) -> str:
        one, plural = self.kind_nouns.get(kind, self.kind_nouns["other"])
        return plural if many else one


def _check_text(rule: Rule[Any], spec: RuleSpec) -> None:
    missing = rule.required_text(spec) - set(spec.text)
    if missing:
        raise ValueError(f"{rule.id}.text lacks {sorted(missing)}")
    for key, template in spec.text.items():
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        extra = names - rule.placeholders
        if extra:
            raise ValueError(f"{rule.id}.text.{key} uses unknown {sorted(extra)}")


def load_catalog(data: bytes | str) -> Catalog:
    """Decode and validate a catalog from TOML text (tests use this to vary thresholds)."""
    try:
        raw: dict[str, Any] = msgspec.toml.decode(data, type=dict[str, Any])
        tables = {rule.id: raw.pop(rule.id, None) for rule in rules()}
        head = msgspec.convert(raw, type=_Head)
        specs: dict[str, RuleSpec] = {}
        for rule in rules():
            if tables[rule.id] is None:
                raise ValueError(f"rules catalog: no [{rule.id}] table")
            specs[rule.id] = msgspec.convert(tables[rule.id], type=rule.spec)
    except msgspec.ValidationError as exc:
        raise ValueError(f"rules catalog: {exc}") from None
    if _KINDS - set(head.kind_nouns):
        raise ValueError(f"kind_nouns lacks {sorted(_KINDS - set(head.kind_nouns))}")
    for rule in rules():
        specs[rule.id].check(rule.id)
        _check_text(rule, specs[rule.id])
    return Catalog(
        head.version,
        head.reraise_after_days,
        MappingProxyType(dict(head.kind_nouns)),
        head.person,
        MappingProxyType(specs),
    )


@functools.cache
def default_catalog() -> Catalog:
    """The shipped catalog, ``schemas/rules.toml``, read once per process."""
    return load_catalog(importlib.resources.files("schemas").joinpath("rules.toml").read_bytes())
