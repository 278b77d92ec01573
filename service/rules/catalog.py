"""The rules catalog: thresholds and wording, loaded from ``schemas/rules.toml``.

Rules are data: the rule functions hold only arithmetic, and every number they compare
against and every sentence they write comes from here, so calibrating a threshold or
rewording an insight is a one-line change to the TOML file. The file is decoded into
typed, frozen Structs and checked once at load, so a typo fails at start-up rather than
in the middle of a sweep.
"""

from __future__ import annotations

import functools
import importlib.resources
import string

import msgspec
from msgspec import Struct

__all__ = [
    "RULE_IDS",
    "Catalog",
    "DroughtSpec",
    "NarrowingSpec",
    "OverdueSpec",
    "RateDropSpec",
    "RuleSpec",
    "SelfReportSpec",
    "default_catalog",
    "load_catalog",
]

#: Every rule the engine knows, in the order findings are reported.
RULE_IDS = ("overdue", "rate_drop", "drought", "narrowing", "self_report")


class RuleSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """What every rule declares: its minimum data, its levels, its nudges and its words."""

    min_data_points: int
    levels: tuple[str, ...]
    nudge_levels: tuple[str, ...]
    text: dict[str, str]

    def severity(self, level: str) -> int:
        """Position of ``level`` among this rule's levels (-1 if unknown)."""
        return self.levels.index(level) if level in self.levels else -1

    def nudges(self, level: str) -> bool:
        return level in self.nudge_levels

    def check(self, name: str) -> None:
        if self.min_data_points < 1:
            raise ValueError(f"{name}.min_data_points must be at least 1")
        if not self.levels:
            raise ValueError(f"{name}.levels must not be empty")
        unknown = set(self.nudge_levels) - set(self.levels)
        if unknown:
            raise ValueError(f"{name}.nudge_levels names unknown levels {sorted(unknown)}")


class OverdueSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    min_intervals: int
    max_intervals: int
    multipliers: tuple[float, ...]
    burst_quantile: float
    circle_cadence_days: dict[str, int]

    def check(self, name: str) -> None:
        super().check(name)
        if len(self.multipliers) != len(self.levels):
            raise ValueError(f"{name}: one multiplier per level")
        if list(self.multipliers) != sorted(self.multipliers) or self.multipliers[0] <= 0:
            raise ValueError(f"{name}.multipliers must be positive and ascending")
        if self.min_intervals < 1 or self.max_intervals < self.min_intervals:
            raise ValueError(f"{name}: need 1 <= min_intervals <= max_intervals")
        if not 0 <= self.burst_quantile <= 1:
            raise ValueError(f"{name}.burst_quantile must lie in [0, 1]")
        missing = {"inner", "close", "social", "wider"} - set(self.circle_cadence_days)
        if missing:
            raise ValueError(f"{name}.circle_cadence_days lacks {sorted(missing)}")
        if min(self.circle_cadence_days.values()) < 1:
            raise ValueError(f"{name}.circle_cadence_days must be at least 1 day")


class RateDropSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    window_days: int
    baseline_days: int
    alpha: float
    quiet_days: int


class DroughtSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    window_days: int
    circles: tuple[str, ...]


class NarrowingSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    window_days: int
    baseline_months: int
    drop: float
    min_baseline_average: float


class SelfReportSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    ucla3_lonely_at: int
    lsns6_at_risk_below: int
    who5_low_below: int
    max_age_days: int


# The placeholders each template may use: a template naming anything else is a typo.
_PLACEHOLDERS: dict[str, set[str]] = {
    "overdue": {
        "name", "usual", "gap_days", "since", "longest_days", "cadence", "circle", "kind",
        "count", "kinds",
    },
    "rate_drop": {"name", "expected", "window_days", "recent"},
    "drought": {"name", "count", "window_days", "kinds", "met", "last_met"},
    "narrowing": {"recent", "window_days", "baseline"},
    "self_report": {"concerns", "score"},
}  # fmt: skip


# The templates each rule formats (overdue also needs one title per level).
_REQUIRED_TEXT: dict[str, set[str]] = {
    "overdue": {
        "body_rhythm", "body_rhythm_bursty", "body_cadence", "body_circle", "since_one",
        "since_many",
    },
    "rate_drop": {"title", "body"},
    "drought": {"title", "body", "met_before", "met_never"},
    "narrowing": {"title", "body"},
    "self_report": {"title", "body", "ucla3", "lsns6", "who5"},
}  # fmt: skip
_KINDS = {"in_person", "video", "call", "voice", "text", "social", "letter", "other"}


class Catalog(Struct, frozen=True, forbid_unknown_fields=True):
    """The whole catalog; one attribute per rule, named by the rule id."""

    version: int
    reraise_after_days: int
    kind_nouns: dict[str, tuple[str, str]]
    overdue: OverdueSpec
    rate_drop: RateDropSpec
    drought: DroughtSpec
    narrowing: NarrowingSpec
    self_report: SelfReportSpec

    def __post_init__(self) -> None:
        if _KINDS - set(self.kind_nouns):
            raise ValueError(f"kind_nouns lacks {sorted(_KINDS - set(self.kind_nouns))}")
        for rule_id in RULE_IDS:
            spec = self.spec(rule_id)
            spec.check(rule_id)
            required = set(_REQUIRED_TEXT[rule_id])
            if rule_id == "overdue":
                required |= {f"title_{level}" for level in spec.levels}
            if required - set(spec.text):
                raise ValueError(f"{rule_id}.text lacks {sorted(required - set(spec.text))}")
            for key, template in spec.text.items():
                names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
                extra = names - _PLACEHOLDERS[rule_id]
                if extra:
                    raise ValueError(f"{rule_id}.text.{key} uses unknown {sorted(extra)}")

    def spec(self, rule_id: str) -> RuleSpec:
        """The spec of one rule by id (KeyError for an unknown id)."""
        if rule_id not in RULE_IDS:
            raise KeyError(rule_id)
        spec: RuleSpec = getattr(self, rule_id)
        return spec

    def kind_noun(self, kind: str, *, many: bool) -> str:
        one, plural = self.kind_nouns.get(kind, self.kind_nouns["other"])
        return plural if many else one


def load_catalog(data: bytes | str) -> Catalog:
    """Decode and validate a catalog from TOML text (tests use this to vary thresholds)."""
    try:
        return msgspec.toml.decode(data, type=Catalog)
    except msgspec.ValidationError as exc:
        raise ValueError(f"rules catalog: {exc}") from None


@functools.cache
def default_catalog() -> Catalog:
    """The shipped catalog, ``schemas/rules.toml``, read once per process."""
    return load_catalog(importlib.resources.files("schemas").joinpath("rules.toml").read_bytes())
