"""The contract between the code that queues background work and the worker that runs it.

Every kind of job is declared once, here (:class:`Kind`); producers queue a kind in the same
transaction as the change that calls for it (``service/store/jobs.py`` holds the SQL), and
each feature's ``jobs.py`` handles its kinds. A handler tells the runner how it ended by
returning (done) or raising :class:`Retry` (try again later) or :class:`Permanent` (never
succeeds: dead-letter it, with the reason in ``kith report``). See decision 0005.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Handler", "Job", "Kind", "Permanent", "Retry", "backoff_s"]


class Kind(StrEnum):
    """Every job kind, with the module that handles it."""

    #: A person's rules after a push, debounced (``service/insights/jobs.py``).
    EVALUATE = "evaluate"
    #: Up to 250 people whose local morning has come (``service/insights/jobs.py``).
    EVALUATE_BATCH = "evaluate_batch"
    #: Every ten minutes: queue the people whose morning has come (``service/insights/jobs.py``).
    SWEEP = "sweep"
    #: Daily: purge tombstones and expired history (``service/sync/maintenance.py``).
    MAINTENANCE = "maintenance"
    #: A person's pending nudge requests against their budget (``service/nudges/jobs.py``).
    NUDGE_PLAN = "nudge_plan"
    #: One nudge to one device (``service/nudges/jobs.py``).
    PUSH_SEND = "push_send"
    #: A check-in was pushed or a day began: summaries and the day's schedule
    #: (``service/care/escalation.py``).
    CARE_CHECK_IN = "care_check_in"
    #: The next moment of a person's check-in day (``service/care/escalation.py``).
    CHECKIN_TICK = "checkin_tick"
    #: One caregiver alert or check-in reminder to one device (``service/care/jobs.py``).
    CARE_PUSH = "care_push"
    #: Everything of a person who deleted their account, in re-runnable steps
    #: (``service/lifecycle/erasure.py``).
    ACCOUNT_ERASE = "account_erase"
    #: The next rung of an unanswered "need help" (``service/care/ladder.py``, decision 0018).
    HELP_LADDER = "help_ladder"
    #: An alert was acknowledged, resolved or went unanswered: the person's ``alerts``
    #: records and the caregivers' summaries are written again (``service/care/alerts.py``).
    CARE_ALERTS_SYNC = "care_alerts_sync"


class Retry(Exception):
    """Try again after ``after_s`` seconds (counts as an attempt)."""

    def __init__(self, reason: str, *, after_s: float) -> None:
        super().__init__(reason)
        self.after_s = after_s


class Permanent(Exception):
    """This job can never succeed (e.g. a payload the provider rejects): dead-letter it."""


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job as its handler sees it."""

    id: int
    kind: str
    space_id: str | None
    payload: dict[str, Any]
    attempt: int


Handler = Callable[[Job], Awaitable[None]]


def backoff_s(attempt: int, base: float, cap: float, rnd: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(attempt-1))]."""
    return rnd.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))
