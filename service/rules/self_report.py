"""Rule 5, self-report: the person's own questionnaire answers suggest support.

Reads the validated instruments: UCLA-3 loneliness (sum 3-9, >= 6 commonly read as
lonely), LSNS-6 social network (sum 0-30, < 12 at risk of isolation, Lubben 2006) and WHO-5
well-being (raw 0-25, < 13 poor well-being). Two readings, each against noise:

* absolute: the mean of the answers given within ``recent_days`` of the latest one (the
  latest within ``max_age_days``) is over the instrument's line — one bad fortnight among
  good ones is not enough when the person answered twice;
* relative: the same recent mean against the person's own baseline, the median of their
  answers ``baseline_from_days`` to ``baseline_to_days`` ago (at least
  ``min_baseline_answers``): a WHO-5 fall of ``who5_fall`` raw points (22 -> 14 stays above
  the line but is a large fall for that person), a UCLA-3 rise of ``ucla3_rise``, an
  LSNS-6 fall of ``lsns6_fall``.

Any concern raises one gentle insight that names the scores and says plainly that Kith is
not professional help. Never a push (see the catalog).
"""

from __future__ import annotations

import datetime as dt
import statistics

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.history import Reflection
from service.rules.rule import Rule
from service.rules.spec import RuleSpec
from service.rules.wording import join

__all__ = ["RULE", "SelfReportSpec", "evaluate"]

#: The instruments read, each with its line and its change in the spec.
INSTRUMENTS = ("ucla3", "lsns6", "who5")


class SelfReportSpec(RuleSpec, frozen=True):
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


def _score(r: Reflection, name: str) -> int | None:
    answers: tuple[int, ...] | None = getattr(r, name)
    return None if answers is None else sum(answers)


def _concern(spec: SelfReportSpec, name: str, recent: float, baseline: float | None) -> str | None:
    """'absolute', 'change' or None for one instrument's recent mean and baseline."""
    worse_than_line = {
        "ucla3": recent >= spec.ucla3_lonely_at,
        "lsns6": recent < spec.lsns6_at_risk_below,
        "who5": recent < spec.who5_low_below,
    }[name]
    if worse_than_line:
        return "absolute"
    if baseline is None:
        return None
    changed = {
        "ucla3": recent - baseline >= spec.ucla3_rise,
        "lsns6": baseline - recent >= spec.lsns6_fall,
        "who5": baseline - recent >= spec.who5_fall,
    }[name]
    return "change" if changed else None


def evaluate(ctx: Context, spec: SelfReportSpec) -> list[Finding]:
    evidence: dict[str, object] = {}
    concerns: list[str] = []
    for name in INSTRUMENTS:
        answered = [
            (r.occurred_at, s, r) for r in ctx.reflections if (s := _score(r, name)) is not None
        ]
        if not answered or ctx.now - answered[-1][0] > dt.timedelta(days=spec.max_age_days):
            continue
        latest_at = answered[-1][0]
        recent = [
            s for at, s, _ in answered if latest_at - at <= dt.timedelta(days=spec.recent_days)
        ][-2:]
        mean = sum(recent) / len(recent)
        lo = ctx.now - dt.timedelta(days=spec.baseline_to_days)
        hi = ctx.now - dt.timedelta(days=spec.baseline_from_days)
        past = [s for at, s, _ in answered if lo <= at < hi]
        baseline = statistics.median(past) if len(past) >= spec.min_baseline_answers else None
        kind = _concern(spec, name, mean, baseline)
        score = round(mean)
        evidence[name] = {
            "score": score,
            "recent_answers": recent,
            "baseline": baseline,
            "baseline_answers": len(past),
            "flagged": kind,
            "answered_at": latest_at.isoformat(timespec="seconds"),
            "reflection_id": answered[-1][2].id,
        }
        if kind == "absolute":
            concerns.append(spec.text[name].format(score=score))
        elif kind == "change":
            shown = round(baseline) if baseline is not None else score
            concerns.append(spec.text[f"{name}_change"].format(score=score, baseline=shown))
    answered_count = len(evidence)
    if answered_count < spec.min_data_points or not concerns:
        return []
    evidence["thresholds"] = {
        "ucla3_lonely_at": spec.ucla3_lonely_at,
        "lsns6_at_risk_below": spec.lsns6_at_risk_below,
        "who5_low_below": spec.who5_low_below,
        "ucla3_rise": spec.ucla3_rise,
        "lsns6_fall": spec.lsns6_fall,
        "who5_fall": spec.who5_fall,
    }
    return [
        RULE.finding(
            spec,
            tie=None,
            body=spec.text["body"].format(concerns=join(concerns)),
            evidence=evidence,
            data_points=answered_count,
        )
    ]


RULE = Rule(
    id="self_report",
    rank=60,
    spec=SelfReportSpec,
    templates=frozenset(
        {"title", "body", "ucla3", "lsns6", "who5", "ucla3_change", "lsns6_change", "who5_change"}
    ),
    placeholders=frozenset({"concerns", "score", "baseline"}),
    evaluate=evaluate,
)
