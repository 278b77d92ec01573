"""Rule 6, warmth: meetings go on, but they have become one-sided or feel worse than before.

Reciprocity and the weight of a tie predict its decay (Raeder 2011: the domain notes treat
a tie where one side starts ≥ 80 % of contacts as less stable), and a meeting is not a
meeting: Fabriq asks for a per-tie "connection quality" because a text is not a dinner.
So this rule reads what the person noted after one-to-one meetings in person (group
meetups say little about one friendship) — who suggested it (``initiated_by``) and how it
felt (``quality``, 1-5) — against that tie's own history, never a fixed line:

* one-sided: the person suggested at least ``one_sided_share`` of the latest ``recent``
  meetings with a noted initiator, where before (at least ``min_data_points`` earlier
  notes) they suggested at most ``baseline_max_share`` of them, and that many would
  happen by chance under the earlier share with probability below ``alpha``. A friend
  the person has always been the one to call is their pattern, not a change;
* feeling worse: the mean rating of the latest ``recent`` rated meetings is at least
  ``quality_fall`` points under the earlier mean and ``quality_z`` standard errors
  (the earlier ratings' spread, never below ``min_quality_sd``).

Only notes from the last ``lookback_days`` are read. A tie that stops meeting is the
other tie rules' (they rank first); this one is for ties that carry on. Never a push:
it is a gentle question in the app, not a lock-screen verdict on a friendship.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

from service.rules.context import Context, Note, Tie
from service.rules.finding import Finding
from service.rules.rule import Rule, per_tie
from service.rules.spec import RuleSpec
from service.rules.wording import join

__all__ = ["RULE", "WarmthSpec", "binomial_tail", "evaluate"]


class WarmthSpec(RuleSpec, frozen=True):
    lookback_days: int
    recent: int
    one_sided_share: float
    baseline_max_share: float
    alpha: float
    quality_fall: float
    quality_z: float
    min_quality_sd: float


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def notes(ctx: Context, tie: Tie) -> tuple[Tie, tuple[Note, ...]] | None:
    """The tie and its notes from the lookback, or None when it has none to judge."""
    spec = ctx.catalog.spec_for(RULE)
    since = ctx.today - dt.timedelta(days=spec.lookback_days)
    kept = tuple(n for n in tie.notes if n.day >= since)
    return (tie, kept) if kept else None


def _one_sided(spec: WarmthSpec, noted: tuple[Note, ...]) -> dict[str, object] | None:
    said = [n.initiated_by == "me" for n in noted if n.initiated_by is not None]
    if len(said) < spec.recent + spec.min_data_points:
        return None
    recent, before = said[-spec.recent :], said[: -spec.recent]
    mine = sum(recent)
    share_before = sum(before) / len(before)
    if mine < spec.one_sided_share * spec.recent or share_before > spec.baseline_max_share:
        return None
    smoothed = (sum(before) + 1) / (len(before) + 2)  # one pseudo-note each way
    p = binomial_tail(mine, spec.recent, smoothed)
    if p >= spec.alpha:
        return None
    return {
        "recent_noted": spec.recent,
        "recent_suggested_by_you": mine,
        "earlier_noted": len(before),
        "earlier_share_suggested_by_you": round(share_before, 2),
        "p_value": round(p, 6),
    }


def _feeling_worse(spec: WarmthSpec, noted: tuple[Note, ...]) -> dict[str, object] | None:
    rated = [n.quality for n in noted if n.quality is not None]
    if len(rated) < spec.recent + spec.min_data_points:
        return None
    recent, before = rated[-spec.recent :], rated[: -spec.recent]
    mean_recent, mean_before = statistics.fmean(recent), statistics.fmean(before)
    spread = max(statistics.pstdev(before), spec.min_quality_sd)
    fall = mean_before - mean_recent
    if fall < spec.quality_fall or fall < spec.quality_z * spread / math.sqrt(len(recent)):
        return None
    return {
        "recent_rated": len(recent),
        "recent_mean_quality": round(mean_recent, 2),
        "earlier_rated": len(before),
        "earlier_mean_quality": round(mean_before, 2),
    }


def finding(ctx: Context, spec: WarmthSpec, judged: tuple[Tie, tuple[Note, ...]]) -> Finding | None:
    tie, noted = judged
    one_sided, worse = _one_sided(spec, noted), _feeling_worse(spec, noted)
    if one_sided is None and worse is None:
        return None
    name = tie.contact.name
    concerns = []
    if one_sided is not None:
        share = one_sided["earlier_share_suggested_by_you"]
        assert isinstance(share, float)
        concerns.append(
            spec.text["one_sided"].format(
                name=name, recent=spec.recent, share=f"{round(100 * share)} %"
            )
        )
    if worse is not None:
        score, baseline = worse["recent_mean_quality"], worse["earlier_mean_quality"]
        concerns.append(
            spec.text["feeling_worse"].format(
                name=name, recent=spec.recent, score=f"{score:.1f}", baseline=f"{baseline:.1f}"
            )
        )
    body = spec.text["body"].format(name=name, concerns=join(concerns))
    evidence = {"one_sided": one_sided, "feeling_worse": worse, "last_noted": str(noted[-1].day)}
    return RULE.finding(spec, tie=tie, body=body, evidence=evidence, data_points=len(noted))


evaluate = per_tie(notes, finding)


RULE = Rule(
    id="warmth",
    rank=40,
    spec=WarmthSpec,
    templates=frozenset({"title", "body", "one_sided", "feeling_worse"}),
    placeholders=frozenset({"name", "concerns", "recent", "share", "score", "baseline"}),
    evaluate=evaluate,
    met_resolves=False,
)
