"""A labelled evaluation of the rules engine: seeded timelines with ground truth, and a scorer.

``timelines`` draws people whose every tie has a known class (a stable weekly friend, a
holiday-only cousin, a friendship that fades) and, for real declines, the day the decline
began. ``scoring`` runs the engine over each person as the worker does — every day at 09:00
in their own time zone, reconciled against the insights it already raised — and counts
what a person would have seen: how many raised insights were about a real decline, which
declines were caught and how fast, and how many false alarms a year a healthy life gets.

The generator is deliberately noisy (missed weeks, holidays, bursts, travel, weeks without
logging) so that normal rhythms are not trivially separable from fades. It lives beside the
engine (not in ``tests/``) because both the test suite and ``bench/rules_eval.py`` run it.
"""

from service.rules.evaluation.scoring import Report, run_population, score_person
from service.rules.evaluation.timelines import LabelledPerson, TieTruth, generate

__all__ = ["LabelledPerson", "Report", "TieTruth", "generate", "run_population", "score_person"]
