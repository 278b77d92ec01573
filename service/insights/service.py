"""Evaluate people's rules and write their insights as synced, server-written records.

For each person: read their history, run the pure rules (``service/rules``), reconcile
with the insights already stored, and — only if something changed — take the space lock
and write the insights with new sequence numbers (so every device pulls them), together
with a nudge request for each insight that warrants one, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import asyncpg
import msgspec

from service.infra.outages import is_outage
from service.jobs import Kind
from service.rules import (
    Catalog,
    Create,
    History,
    PersonSettings,
    Plan,
    StoredInsight,
    Update,
    default_catalog,
    evaluate,
    reconcile,
)
from service.store import insights as store
from service.store import jobs as job_store
from service.store import sync as sync_store
from service.sync.service import Publish
from sync.hlc import Clock
from sync.merge import apply

__all__ = ["EvaluationResult", "InsightEvaluator"]

log = logging.getLogger("kith.insights")
_decode = msgspec.json.decode


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    people: int
    changed_people: int
    created: int
    updated: int
    resolved: int
    nudges: int
    #: People whose evaluation raised, with the exception (the others were still written).
    failed: tuple[tuple[str, Exception], ...] = ()


@dataclass(eq=False)
class InsightEvaluator:
    """``announce``/``publish``: before and after the COMMIT that writes insights (see
    ``service.sync.realtime``: the announcement keeps no-change pulls exact)."""

    pool: asyncpg.Pool[Any]
    clock: Clock
    _: KW_ONLY
    catalog: Catalog = field(default_factory=default_catalog)
    publish: Publish | None = None
    announce: Publish | None = None

    def plan(self, raw: store.RawHistory, now: dt.datetime) -> Plan:
        """The pure part: what should change for one person."""
        history = History.from_json(raw.contacts, raw.interactions, raw.reflections)
        settings = PersonSettings.from_fields(_decode(raw.settings) if raw.settings else None)
        findings = evaluate(history, now, settings, catalog=self.catalog)
        stored = [
            s
            for s in (StoredInsight.from_fields(i, _decode(t)) for i, t in raw.insights.items())
            if s is not None
        ]
        return reconcile(stored, findings, history, now, catalog=self.catalog)

    async def evaluate_spaces(self, space_ids: Sequence[str], now: dt.datetime) -> EvaluationResult:
        """Evaluate each person and write what changed, one transaction per person.

        One person's failure (a stored value no rule anticipated) is caught, logged by type
        and returned in ``failed``: everyone else in the chunk is still evaluated."""
        raws = await store.load_histories(self.pool, space_ids)
        totals = [0, 0, 0, 0, 0]
        failed: list[tuple[str, Exception]] = []
        for space_id in space_ids:
            try:
                plan = self.plan(raws[space_id], now)
                nudges = 0 if plan.empty else await self._write(space_id, plan)
            except Exception as exc:
                if is_outage(exc):
                    raise  # the database is unreachable: nobody else can be written either
                log.warning("evaluating a person failed (%s)", type(exc).__name__)
                failed.append((space_id, exc))
                continue
            if plan.empty:
                continue
            totals = [
                a + b
                for a, b in zip(
                    totals,
                    [1, len(plan.create), len(plan.update), len(plan.resolve), nudges],
                    strict=True,
                )
            ]
        changed, created, updated, resolved, nudged = totals
        return EvaluationResult(
            len(space_ids), changed, created, updated, resolved, nudged, tuple(failed)
        )

    async def _write(self, space_id: str, plan: Plan) -> int:
        changes: dict[str, dict[str, Any]] = {}
        for c in plan.create:
            changes[c.insight_id] = c.fields
        for u in plan.update:
            changes[u.insight_id] = u.fields
        for r in plan.resolve:
            changes[r.insight_id] = r.fields
        items: list[Create | Update] = [*plan.create, *plan.update]
        flagged = [item for item in items if item.nudge]
        nudges = [
            store.NudgeRequest(
                f"{item.insight_id}.{item.finding.level}",
                item.insight_id,
                item.finding.contact_id,
                item.finding.rule,
                item.finding.level,
                item.finding.title,
                item.finding.body,
            )
            for item in flagged
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            position = await sync_store.lock_space(conn, space_id)
            current = await sync_store.load_records(conn, space_id, "insights", changes)
            seq = position.seq
            writes = []
            for insight_id, fields in changes.items():
                before = current.get(insight_id)
                if before is not None and before.deleted:
                    continue
                state = apply(before, fields, self.clock.now()).state
                if state == before:
                    continue
                seq += 1
                writes.append(sync_store.RecordWrite(insight_id, state, seq))
            if writes:
                await sync_store.write_records(conn, space_id, "insights", writes)
                await sync_store.advance_seq(conn, space_id, seq)
            await store.insert_nudge_requests(conn, space_id, nudges)
            if nudges:  # the push worker decides when (and whether) they go out
                await job_store.enqueue_or_advance(
                    conn, Kind.NUDGE_PLAN, space_id=space_id, dedupe_key=space_id
                )
            if writes and self.announce is not None:
                await self.announce(space_id, seq)
        if writes and self.publish is not None:
            await self.publish(space_id, seq)
        return len(nudges)
