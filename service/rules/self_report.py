"""Rule 5, self-report: the person's own latest questionnaire answers suggest support.

Reads the most recent complete answer of each validated instrument within
``max_age_days``: UCLA-3 loneliness (sum 3-9, >= 6 commonly read as lonely), LSNS-6
social network (sum 0-30, < 12 at risk of isolation, Lubben 2006) and WHO-5 well-being
(raw 0-25, < 13 poor well-being). Any one over its line raises one gentle insight that
names the scores and says plainly that Kith is not professional help. Never a push
(see the catalog): such words do not belong on a lock screen.
"""

from __future__ import annotations

import datetime as dt

from service.rules.context import Context
from service.rules.finding import Finding
from service.rules.history import Reflection
from service.rules.wording import join

__all__ = ["RULE_ID", "evaluate"]

RULE_ID = "self_report"
INSTRUMENTS = ("ucla3", "lsns6", "who5")


def _latest(reflections: tuple[Reflection, ...], name: str) -> Reflection | None:
    for reflection in reversed(reflections):  # event order: the last answer is the latest
        if getattr(reflection, name) is not None:
            return reflection
    return None


def evaluate(ctx: Context) -> list[Finding]:
    spec = ctx.catalog.self_report
    oldest = ctx.now - dt.timedelta(days=spec.max_age_days)
    recent = tuple(r for r in ctx.reflections if r.occurred_at >= oldest)
    evidence: dict[str, object] = {}
    concerns: list[str] = []
    for name in INSTRUMENTS:
        reflection = _latest(recent, name)
        if reflection is None:
            continue
        score = sum(getattr(reflection, name))
        flagged = {
            "ucla3": score >= spec.ucla3_lonely_at,
            "lsns6": score < spec.lsns6_at_risk_below,
            "who5": score < spec.who5_low_below,
        }[name]
        evidence[name] = {
            "score": score,
            "flagged": flagged,
            "answered_at": reflection.occurred_at.isoformat(timespec="seconds"),
            "reflection_id": reflection.id,
        }
        if flagged:
            concerns.append(spec.text[name].format(score=score))
    answered = len(evidence)
    if answered < spec.min_data_points or not concerns:
        return []
    evidence["thresholds"] = {
        "ucla3_lonely_at": spec.ucla3_lonely_at,
        "lsns6_at_risk_below": spec.lsns6_at_risk_below,
        "who5_low_below": spec.who5_low_below,
    }
    level = spec.levels[0]
    return [
        Finding(
            rule=RULE_ID,
            contact_id=None,
            level=level,
            title=spec.text["title"],
            body=spec.text["body"].format(concerns=join(concerns)),
            evidence=evidence,
            nudge=spec.nudges(level),
            data_points=answered,
        )
    ]
