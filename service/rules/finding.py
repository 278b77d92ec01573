"""What a rule reports: one finding per (rule, contact), ready to become an insight row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DedupeKey", "Finding"]

#: One open insight per (rule, contact); contact is None for person-level rules.
DedupeKey = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's conclusion about one person (or one of their ties) at one moment.

    ``title`` and ``body`` are the plain-language text the phone shows; ``evidence`` holds
    the same numbers for machines (JSON values only); ``data_points`` is how many
    observations the rule used, never fewer than the catalog declares for it.
    """

    rule: str
    contact_id: str | None
    level: str
    title: str
    body: str
    evidence: Mapping[str, Any]
    nudge: bool
    data_points: int

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.rule, self.contact_id)

    def insight_fields(self, *, raised_at: dt.datetime, status: str = "open") -> dict[str, Any]:
        """The synced ``insights`` row fields (JSON values) for this finding."""
        return {
            "rule": self.rule,
            "contact_id": self.contact_id,
            "level": self.level,
            "title": self.title,
            "body": self.body,
            "evidence": dict(self.evidence),
            "status": status,
            "raised_at": raised_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        }
