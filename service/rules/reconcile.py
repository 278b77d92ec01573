"""Turn fresh findings into changes to the person's stored insights, without spam.

``reconcile`` compares what the rules found now with the insights already stored and
says which to create, which to update and which to resolve:

* one open insight per (rule, contact): a finding with an open (or seen) insight updates
  it — only when its level, text or evidence changed, so an unchanged insight costs no
  sync traffic; a higher level is an escalation and reopens a ``seen`` insight;
* an open insight is resolved when the person met the contact in person since it was
  raised (``met_in_person``), or when its finding no longer holds (``no_longer_applies``:
  contact snoozed or archived, rule switched off, scores improved);
* an insight the person dismissed or acted on keeps its status, and a still-true finding
  is not raised again until it escalates, they meet in person, or ``reraise_after_days``
  pass;
* new insights get an id derived from (rule, contact, now), so a retried job writes the
  same row instead of a duplicate;
* **one push per tie while nothing changes**: a new insight about a contact who already
  had one (any rule, any status, resolved ones included) raised within
  ``reraise_after_days``, with no meeting in person since, is shown without a push unless
  it says things got worse (a level past any that rule raised about them lately). The
  same silence read by another rule (calls stop, and "meet in person?" becomes "time to
  see them?") or read again a few days shorter (a day met nobody becomes an away day) is
  not news to the person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.rules.catalog import Catalog, default_catalog
from service.rules.finding import DedupeKey, Finding
from service.rules.history import History
from service.rules.registry import rule_ids, rules

__all__ = ["Create", "Plan", "Resolve", "StoredInsight", "Update", "insight_id", "reconcile"]

ACTIVE = frozenset({"open", "seen"})
CLOSED_BY_PERSON = frozenset({"dismissed", "acted"})


@dataclass(frozen=True, slots=True)
class StoredInsight:
    """An insight row as stored (the server's fields plus the client-written status)."""

    id: str
    rule: str
    contact_id: str | None
    level: str
    status: str
    raised_at: dt.datetime
    title: str = ""
    body: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.rule, self.contact_id)

    @classmethod
    def from_fields(cls, record_id: str, fields: Mapping[str, Any]) -> StoredInsight | None:
        """From a live insights row's fields; None if it is not a rules-engine insight."""
        rule, raised = fields.get("rule"), fields.get("raised_at")
        contact = fields.get("contact_id")
        if not isinstance(rule, str) or not isinstance(raised, str):
            return None
        try:
            raised_at = dt.datetime.fromisoformat(raised)
        except ValueError:
            return None
        if raised_at.tzinfo is None:
            return None
        evidence = fields.get("evidence")
        return cls(
            id=record_id,
            rule=rule,
            contact_id=contact if isinstance(contact, str) else None,
            level=str(fields.get("level", "")),
            status=str(fields.get("status", "open")),
            raised_at=raised_at,
            title=str(fields.get("title", "")),
            body=str(fields.get("body", "")),
            evidence=evidence if isinstance(evidence, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class Create:
    insight_id: str
    finding: Finding
    fields: dict[str, Any]  # the full insights row to insert
    nudge: bool  # write a nudge request in the same transaction


@dataclass(frozen=True, slots=True)
class Update:
    insight_id: str
    finding: Finding
    fields: dict[str, Any]  # only the fields that changed
    escalated: bool
    nudge: bool  # escalated to a level that warrants a nudge


@dataclass(frozen=True, slots=True)
class Resolve:
    insight_id: str
    reason: str  # "met_in_person" | "no_longer_applies" | "duplicate"
    fields: dict[str, Any] = field(default_factory=lambda: {"status": "resolved"})


@dataclass(frozen=True, slots=True)
class Plan:
    create: tuple[Create, ...] = ()
    update: tuple[Update, ...] = ()
    resolve: tuple[Resolve, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.resolve)


def insight_id(key: DedupeKey, raised_at: dt.datetime) -> str:
    """A stable id for the insight raised for ``key`` at ``raised_at`` (fits RecordId)."""
    stamp = raised_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    digest = hashlib.sha256(f"{key[0]}|{key[1] or ''}|{stamp}".encode()).hexdigest()
    return "ins_" + digest[:28]


def _last_meetings(history: History, now: dt.datetime) -> dict[str, dt.datetime]:
    last: dict[str, dt.datetime] = {}
    for interaction in history.interactions:  # event order: later overwrites earlier
        if interaction.occurred_at > now:
            break
        if interaction.in_person:
            for cid in interaction.contact_ids:
                last[cid] = interaction.occurred_at
    return last


def _changes(row: StoredInsight, finding: Finding) -> dict[str, Any]:
    wanted = finding.insight_fields(raised_at=row.raised_at)
    current: dict[str, Any] = {"level": row.level, "title": row.title, "body": row.body}
    current["evidence"] = dict(row.evidence)
    return {k: wanted[k] for k in ("level", "title", "body", "evidence") if wanted[k] != current[k]}


def _told_lately(
    insights: Iterable[StoredInsight], met: Mapping[str, dt.datetime], since: dt.datetime
) -> dict[str, list[StoredInsight]]:
    """Contact -> this engine's insights about them raised after ``since`` (any status) with
    no meeting in person since: what the person has already been told about that silence."""
    out: dict[str, list[StoredInsight]] = {}
    for row in insights:
        cid = row.contact_id
        if cid is None or row.rule not in rule_ids() or row.raised_at <= since:
            continue
        if met.get(cid, row.raised_at) <= row.raised_at:
            out.setdefault(cid, []).append(row)
    return out


def _news(finding: Finding, told: Mapping[str, list[StoredInsight]], catalog: Catalog) -> bool:
    """Whether a new insight is news (it pushes), or a silence the person knows, read again."""
    earlier = told.get(finding.contact_id or "", [])
    spec = catalog.spec(finding.rule)
    before = max((spec.severity(r.level) for r in earlier if r.rule == finding.rule), default=0)
    return not earlier or spec.severity(finding.level) > before


def reconcile(
    insights: Iterable[StoredInsight],
    findings: Sequence[Finding],
    history: History,
    now: dt.datetime,
    catalog: Catalog | None = None,
) -> Plan:
    """What to write so the stored insights reflect ``findings`` (from ``evaluate``).

    ``insights``: the person's live insight rows whatever their status (resolved ones are
    read only to decide whether a new insight pushes; ones of rules this engine does not
    own are ignored). The plan is deterministic: ordered by (rule, contact id).
    """
    catalog = catalog or default_catalog()
    insights = tuple(insights)  # read twice
    met = _last_meetings(history, now)
    reraise = dt.timedelta(days=catalog.reraise_after_days)

    met_resolves = {rule.id for rule in rules() if rule.met_resolves}

    def met_since(row: StoredInsight) -> bool:
        if row.contact_id is None or row.rule not in met_resolves:
            return False
        return met.get(row.contact_id, row.raised_at) > row.raised_at

    by_key: dict[DedupeKey, list[StoredInsight]] = {}
    for row in insights:
        if row.status != "resolved" and row.rule in rule_ids():  # others own their insights
            by_key.setdefault(row.dedupe_key, []).append(row)
    told = _told_lately(insights, met, now - reraise)

    found = {f.dedupe_key: f for f in findings}
    create: list[Create] = []
    update: list[Update] = []
    resolve: list[Resolve] = []
    for key in sorted(by_key.keys() | found.keys(), key=lambda k: (k[0], k[1] or "")):
        rows = sorted(by_key.get(key, []), key=lambda r: (r.raised_at, r.id))
        finding = found.get(key)
        active = [r for r in rows if r.status in ACTIVE]
        if active:
            keep = active[-1]
            resolve.extend(Resolve(r.id, "duplicate") for r in active[:-1])
            if met_since(keep):
                resolve.append(Resolve(keep.id, "met_in_person"))
            elif finding is None:
                resolve.append(Resolve(keep.id, "no_longer_applies"))
            else:
                spec = catalog.spec(finding.rule)
                escalated = spec.severity(finding.level) > spec.severity(keep.level)
                changes = _changes(keep, finding)
                if escalated and keep.status != "open":
                    changes["status"] = "open"
                if changes:
                    update.append(
                        Update(keep.id, finding, changes, escalated, escalated and finding.nudge)
                    )
            continue
        if finding is None:
            continue
        closed = [r for r in rows if r.status in CLOSED_BY_PERSON]
        if closed:
            last = closed[-1]
            spec = catalog.spec(finding.rule)
            escalated = spec.severity(finding.level) > spec.severity(last.level)
            if not escalated and not met_since(last) and now - last.raised_at < reraise:
                continue
        fields = finding.insight_fields(raised_at=now)
        create.append(
            Create(
                insight_id(key, now),
                finding,
                fields,
                finding.nudge and _news(finding, told, catalog),
            )
        )
    return Plan(tuple(create), tuple(update), tuple(resolve))
