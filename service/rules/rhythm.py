"""A tie's rhythm: how long its silences usually last, and when one is longer than chance.

Meetings days apart are one *episode* (a weekend visit, a burst of dinners): the silences
that matter are the gaps between episodes, not the one-day gaps inside a burst (Miritello
2013). Gaps are measured in effective days (days the person was away — a trip, weeks of not
logging — are taken out, see ``person.py``).

The model is a log-normal on episode gaps with a conjugate prior (so it says how unsure it
is): the location's prior is the person's own cadence for the tie when they set one
(``cadence_weight`` pseudo-gaps), the scale's prior is ``prior_log_sd`` with
``prior_weight`` pseudo-gaps. The predictive distribution of the next gap is a Student t in
log days with ``n - 1 + prior_weight`` degrees of freedom, never more than ``max_df``: with
few gaps the quantiles are wide (uncertainty grows with sparse history); with many, the
tie's own spread decides, but the tail stays heavy, because a holiday or a busy month is
part of every rhythm and a normal tail would call each of them an alarm. A
bursty or seasonal tie has a wide spread, so only a silence far beyond its usual breaks is
unusual. The latest ``hold_out`` gaps are left out of the fit when enough remain: the model
describes the tie as it was, so a fade in progress is judged against the old rhythm.
A gap longer than ``lapse_multiplier`` x the median was a lapse: a tie that came back
after one is fitted on what came after. Fewer than ``min_gaps`` gaps: the rhythm is
unknown and only an explicit cadence can speak for the tie.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Rhythm", "episodes", "fit", "t_quantile"]

_NORMAL = statistics.NormalDist()


def t_quantile(p: float, df: float) -> float:
    """The Student t quantile (Cornish-Fisher expansion; within 1 % for df >= 3, p <= 0.999)."""
    z = _NORMAL.inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def episodes(days: Sequence[dt.date], join_days: int) -> list[tuple[dt.date, dt.date]]:
    """(first, last) day of each run of meetings at most ``join_days`` apart."""
    out: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if out and (day - out[-1][1]).days <= join_days:
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


@dataclass(frozen=True, slots=True)
class Rhythm:
    """A fitted rhythm. ``known`` is False when there are too few gaps to say anything."""

    known: bool
    gaps: tuple[int, ...]  # effective episode gaps, oldest first
    reference: tuple[int, ...]  # the gaps the model was fitted on (the latest held out)
    median: float  # the usual gap in days (what the person is told)
    location: float  # posterior mean of log gap
    scale: float  # predictive scale of log gap
    df: float

    def quantile(self, p: float) -> float:
        """The gap (days) that the next silence exceeds with probability ``1 - p``."""
        return math.exp(self.location + t_quantile(p, self.df) * self.scale)


def fit(
    days: Sequence[dt.date],
    effective: Callable[[dt.date, dt.date], int],
    *,
    join_days: int,
    min_gaps: int,
    max_gaps: int,
    prior_log_sd: float,
    prior_weight: float,
    cadence: int | None,
    cadence_weight: float,
    max_df: float,
    hold_out: int = 0,
    lapse_multiplier: float = math.inf,
) -> Rhythm:
    """Fit the rhythm of one tie from its sorted meeting days."""
    runs = episodes(days, join_days)[-(max_gaps + 1) :]
    gaps = tuple(max(1, effective(a[1], b[0])) for a, b in itertools.pairwise(runs))
    if gaps:  # a tie that lapsed and came back starts a new rhythm after the lapse
        typical = statistics.median(gaps)
        lapses = [i for i, g in enumerate(gaps) if g > lapse_multiplier * typical]
        if lapses:
            gaps = gaps[lapses[-1] + 1 :]
    # The model describes the tie as it was: the latest gaps are held out when enough remain,
    # so a fade in progress does not teach the model that long gaps are normal.
    reference = gaps[:-hold_out] if hold_out and len(gaps) - hold_out >= min_gaps else gaps
    n = len(reference)
    logs = [math.log(g) for g in reference]
    if cadence is not None:
        logs_prior, k0 = math.log(cadence), cadence_weight
    else:
        logs_prior, k0 = (sum(logs) / n if n else 0.0), 0.0
    mean = (sum(logs) + k0 * logs_prior) / (n + k0) if n + k0 else 0.0
    ss = sum((x - mean) ** 2 for x in logs) + k0 * (logs_prior - mean) ** 2
    dof = max(1.0, n - 1 + prior_weight)
    var = (ss + prior_weight * prior_log_sd**2) / dof
    df = min(dof, max_df)  # heavy tails: rare long breaks are part of every rhythm
    scale = math.sqrt(var * (1 + 1 / max(1.0, n + k0)))
    median = float(statistics.median(reference)) if reference else float(cadence or 0)
    return Rhythm(n >= min_gaps, gaps, reference, median, mean, scale, df)
