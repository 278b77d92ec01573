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
    "PersonSpec",
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


class PersonSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """The person-level view every tie rule consults first (``person.py``)."""

    lookback_days: int
    away_factor: float
    min_away_days: int
    max_away_discount_days: int
    group_share: float
    group_meets_without: int


class OverdueSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    join_days: int
    min_gaps: int
    max_gaps: int
    lookback_days: int
    prior_log_sd: float
    prior_weight: float
    cadence_weight: float
    max_df: float
    hold_out: int
    tail: tuple[float, ...]
    longest_margin: float
    min_multiplier: float
    holiday_days: int
    dormant_multiplier: float
    circle_cadence_days: dict[str, int]

    def check(self, name: str) -> None:
        super().check(name)
        if len(self.tail) != len(self.levels) - 1:
            raise ValueError(f"{name}: one tail probability per level but the last")
        if list(self.tail) != sorted(self.tail) or not all(0.5 < p < 1 for p in self.tail):
            raise ValueError(f"{name}.tail must be ascending probabilities in (0.5, 1)")
        if self.min_gaps < 1 or self.max_gaps < self.min_gaps:
            raise ValueError(f"{name}: need 1 <= min_gaps <= max_gaps")
        missing = {"inner", "close", "social", "wider"} - set(self.circle_cadence_days)
        if missing:
            raise ValueError(f"{name}.circle_cadence_days lacks {sorted(missing)}")
        if min(self.circle_cadence_days.values()) < 1:
            raise ValueError(f"{name}.circle_cadence_days must be at least 1 day")


class RateDropSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    stretch_gaps: int
    stretch_ratio: float
    min_baseline_meetings: int
    window_days: int
    baseline_days: int
    alpha: float
    max_ratio: float
    quiet_multiplier: float


class DroughtSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    circles: tuple[str, ...]
    max_usual_gap_days: int
    remote_share: float


class NarrowingSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    window_days: int
    baseline_months: int
    drop: float
    z: float
    min_lost: int
    min_baseline_average: float
    max_away_days: int


class SelfReportSpec(RuleSpec, frozen=True, forbid_unknown_fields=True):
    ucla3_lonely_at: int
    lsns6_at_risk_below: int
    who5_low_below: int
    max_age_days: int
    recent_days: int
    baseline_from_days: int
    baseline_to_days: int
    min_baseline_answers: int
    ucla3_rise: int
    lsns6_fall: int
    who5_fall: int


# The placeholders each template may use: a template naming anything else is a typo.
_PLACEHOLDERS: dict[str, set[str]] = {
    "overdue": {
        "name", "usual", "gap", "last_met", "since", "cadence", "circle", "kind", "count",
        "kinds",
    },
    "rate_drop": {"name", "expected", "window", "recent", "usual", "gap", "last_met", "gaps"},
    "drought": {"name", "count", "kinds", "usual", "gap", "last_met"},
    "narrowing": {"recent", "window", "baseline"},
    "self_report": {"concerns", "score", "baseline"},
}  # fmt: skip


# The templates each rule formats (overdue also needs one title per level).
_REQUIRED_TEXT: dict[str, set[str]] = {
    "overdue": {"body_rhythm", "body_cadence", "since_one", "since_many"},
    "rate_drop": {"title", "body", "body_stretch"},
    "drought": {"title", "body"},
    "narrowing": {"title", "body"},
    "self_report": {
        "title", "body", "ucla3", "lsns6", "who5", "ucla3_change", "lsns6_change", "who5_change",
    },
}  # fmt: skip
_KINDS = {"in_person", "video", "call", "voice", "text", "social", "letter", "other"}


class Catalog(Struct, frozen=True, forbid_unknown_fields=True):
    """The whole catalog; one attribute per rule, named by the rule id."""

    version: int
    reraise_after_days: int
    kind_nouns: dict[str, tuple[str, str]]
    person: PersonSpec
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
