"""Rule 1, overdue: the silence since the last meeting in person, against the tie's rhythm.

``assess`` judges one tie the way the other tie rules also read it:

1. the person first: days they were away from everyone are taken out of the silence, a
   snooze ended since the last meeting restarts it, and a tie met at a group meetup that
   itself stopped is judged by its meetings outside the group (``context.py``,
   ``person.py``);
2. the tie's rhythm (``rhythm.py``): episode gaps, a log-normal with a prior that widens
   with sparse history, the person's chosen cadence as the location's prior;
3. the slipping line: the predictive ``tail[0]`` quantile of the next gap, never below the
   longest gap the tie recovered from (x ``longest_margin``), ``min_multiplier`` x the usual
   gap plus ``holiday_days`` (everyone takes a few weeks off now and then, whatever the
   tie's pace), or the
   circle's cadence; at risk past the ``tail[1]`` quantile; dormant past
   ``dormant_multiplier`` x the usual gap (Navarro 2017: ties silent for more than 8x their
   usual gap mostly lapse).

An unknown rhythm (too few gaps) is said out loud by staying silent — unless the person
chose a cadence for the tie: then that cadence stands in for the usual gap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from service.rules.context import Context, Tie
from service.rules.finding import Finding
from service.rules.rhythm import Rhythm, fit
from service.rules.rule import Rule, per_tie
from service.rules.spec import RuleSpec
from service.rules.wording import count_word, duration, every, kinds_phrase, long_date

__all__ = ["RULE", "Assessment", "OverdueSpec", "assess", "evaluate", "evidence"]


class OverdueSpec(RuleSpec, frozen=True):
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


@dataclass(frozen=True, slots=True)
class Assessment:
    """One tie's silence against its rhythm (shared by overdue, drought and rate drop)."""

    tie: Tie
    rhythm: Rhythm
    basis: str  # "rhythm" | "cadence"
    usual: float  # the usual gap in days, as the person is told
    gap: int  # days since the last meeting (what the person sees)
    silence: int  # effective days: away days and a snooze taken out
    thresholds: tuple[float, ...]  # slipping, at risk, dormant (effective days)
    last_met: dt.date
    days: tuple[dt.date, ...]  # the meeting days judged (outside a group that stopped)

    @property
    def level_index(self) -> int:
        return sum(self.silence > t for t in self.thresholds) - 1

    def words(self) -> dict[str, str]:
        """What every tie insight says: whom, their usual rhythm, the gap, the last meeting."""
        return {
            "name": self.tie.contact.name,
            "usual": every(self.usual),
            "gap": duration(self.gap),
            "last_met": long_date(self.last_met),
        }


def assess(ctx: Context, tie: Tie) -> Assessment | None:
    """The tie's silence against its rhythm, or None when the tie cannot be judged today."""
    key = f"assess:{tie.contact.id}"
    if key not in ctx.memo:
        ctx.memo[key] = _assess(ctx, tie)
    found = ctx.memo[key]
    return found if isinstance(found, Assessment) else None


def _assess(ctx: Context, tie: Tie) -> Assessment | None:
    spec = ctx.catalog.spec_for(RULE)
    if not tie.meetings:
        return None
    since = ctx.today - dt.timedelta(days=spec.lookback_days)
    days = [d for d in tie.meetings if d >= since]
    if ctx.group_stopped(tie):  # the group's silence is not theirs: their own meetings only
        grouped = set(tie.group_days)
        days = [d for d in days if d not in grouped]
    cadence = tie.contact.cadence_days
    rhythm = fit(
        days,
        ctx.person.effective,
        join_days=spec.join_days,
        min_gaps=spec.min_gaps,
        max_gaps=spec.max_gaps,
        prior_log_sd=spec.prior_log_sd,
        prior_weight=spec.prior_weight,
        cadence=cadence,
        cadence_weight=spec.cadence_weight,
        max_df=spec.max_df,
        hold_out=spec.hold_out,
        lapse_multiplier=spec.dormant_multiplier,
    )
    last = tie.meetings[-1]
    silence = ctx.person.effective(ctx.start_of_silence(tie), ctx.today)
    floor = float(spec.circle_cadence_days[tie.contact.circle])
    if rhythm.known:
        longest = max(rhythm.reference)
        slipping = max(
            rhythm.quantile(spec.tail[0]),
            longest * spec.longest_margin,
            spec.min_multiplier * rhythm.median + spec.holiday_days,
            floor,
        )
        basis, usual = "rhythm", rhythm.median
    elif cadence is not None:
        slipping = max(spec.min_multiplier * cadence + spec.holiday_days, floor)
        basis, usual = "cadence", float(cadence)
    else:
        return None
    at_risk = max(rhythm.quantile(spec.tail[1]) if rhythm.known else 0.0, 1.5 * slipping)
    dormant = max(spec.dormant_multiplier * usual, 2 * slipping)
    return Assessment(
        tie, rhythm, basis, usual, (ctx.today - last).days, silence,
        (slipping, at_risk, dormant), last, tuple(days),
    )  # fmt: skip


def since_phrase(ctx: Context, tie: Tie) -> tuple[str, int]:
    """' (since then, four calls)': the remote contact since the last meeting, if any."""
    spec = ctx.catalog.spec_for(RULE)
    touches = tie.remote_since_last_meeting()
    if not touches:
        return "", 0
    if len(touches) == 1:
        kind = ctx.catalog.kind_noun(touches[0].kind, many=False)
        return spec.text["since_one"].format(kind=kind), 1
    kinds = kinds_phrase(ctx.catalog, (t.kind for t in touches))
    return spec.text["since_many"].format(count=count_word(len(touches)), kinds=kinds), len(touches)


def evidence(a: Assessment) -> dict[str, object]:
    """The numbers behind a tie finding, for machines and for the curious."""
    return {
        "basis": a.basis,
        "gap_days": a.gap,
        "silence_days": a.silence,
        "away_days_discounted": a.gap - a.silence,
        "last_in_person": a.last_met.isoformat(),
        "in_person_days": len(a.tie.meetings),
        "usual_gap_days": round(a.usual, 1),
        "episode_gaps": len(a.rhythm.gaps),
        "longest_gap_days": max(a.rhythm.gaps, default=0),
        "thresholds_days": [round(t, 1) for t in a.thresholds],
    }


def finding(ctx: Context, spec: OverdueSpec, a: Assessment) -> Finding | None:
    level_index = a.level_index
    if level_index < 0 or len(a.tie.meetings) < spec.min_data_points:
        return None
    since, remote_count = since_phrase(ctx, a.tie)
    template = spec.text["body_rhythm" if a.basis == "rhythm" else "body_cadence"]
    return RULE.finding(
        spec,
        tie=a.tie,
        level=spec.levels[level_index],
        body=template.format(since=since, cadence=every(a.usual), **a.words()),
        evidence=evidence(a) | {"remote_since_last_meeting": remote_count},
        data_points=len(a.tie.meetings),
    )


evaluate = per_tie(assess, finding)


RULE = Rule(
    id="overdue",
    rank=20,
    spec=OverdueSpec,
    templates=frozenset({"body_rhythm", "body_cadence", "since_one", "since_many"}),
    placeholders=frozenset(
        {"name", "usual", "gap", "last_met", "since", "cadence", "kind", "count", "kinds"}
    ),
    evaluate=evaluate,
    level_titles=True,
)
