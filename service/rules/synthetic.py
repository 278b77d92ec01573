"""A synthetic population: people with contacts, interactions and reflections, from a seed.

Realistic enough to exercise every rule and to benchmark the sweep: each person has
about 30 contacts across Dunbar's circles and two years of interactions (about 200 per
person by default). Each tie has its own rhythm — regular, bursty (meetings clustered in
short episodes with long silences between), or fading (it stops, slows down, or moves
to calls and messages only) — and some interactions include several contacts. A few
contacts are archived or snoozed, some have a chosen cadence, and some reflections carry
questionnaire answers.

Records come out exactly as the sync store keeps them — ``{record id: fields}`` with
JSON values — so ``kith seed`` can write them and ``History.from_fields`` can read them.
Everything is drawn from ``random.Random(f"{seed}:{index}")``: person ``index`` is the
same whatever else is generated, so seeding can run in parallel chunks.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.rules.history import History, PersonSettings

__all__ = ["SyntheticPerson", "generate_person", "generate_population"]

Fields = dict[str, Any]

_TIME_ZONES = (
    "Europe/Lisbon", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
    "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "UTC",
)  # fmt: skip
_NAMES = (
    "Ana", "Ben", "Chloé", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena",
    "Marco", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vera", "Wen",
    "Xavi", "Yara", "Zoe", "Aiko", "Bruno", "Carmen", "Dara", "Emeka", "Freya",
)  # fmt: skip
_CADENCES = (7, 14, 30, 60, 90, 180, 365)
_RELATIONSHIPS = ("family", "partner", "friend", "colleague", "neighbour", "community", "other")
_REMOTE = (("call", 35), ("text", 35), ("video", 15), ("social", 7), ("voice", 5), ("other", 2))
# Circle: (share of contacts, mean days between logged interactions (low, high)).
_CIRCLES = {
    "inner": (0.10, (18.0, 42.0)),
    "close": (0.23, (55.0, 125.0)),
    "social": (0.34, (140.0, 330.0)),
    "wider": (0.33, (360.0, 840.0)),
}


@dataclass(frozen=True, slots=True)
class SyntheticPerson:
    index: int
    settings: Fields
    contacts: dict[str, Fields]
    interactions: dict[str, Fields]
    reflections: dict[str, Fields]

    def history(self) -> History:
        return History.from_fields(self.contacts, self.interactions, self.reflections)

    def person_settings(self) -> PersonSettings:
        return PersonSettings.from_fields(self.settings)


def _circles(n: int) -> list[str]:
    out: list[str] = []
    for circle, (share, _) in _CIRCLES.items():
        out += [circle] * max(1, round(share * n))
    while len(out) < n:
        out.append("wider")
    return sorted(out[:n], key=lambda c: list(_CIRCLES).index(c))


def _times(rng: random.Random, mean_gap: float, span: float) -> list[float]:
    """Event times in days from the start of the window, with one of three rhythms."""
    style = rng.choices(("regular", "bursty", "fading"), weights=(60, 25, 15))[0]
    times: list[float] = []
    t = rng.uniform(0, mean_gap)
    fade_at = span - rng.uniform(60, 300) if style == "fading" else math.inf
    fade_factor = rng.choice((math.inf, 3.0)) if style == "fading" else 1.0
    while t < span:
        if t >= fade_at:
            if fade_factor == math.inf:
                break
            gap_scale = fade_factor
        else:
            gap_scale = 1.0
        if style == "bursty":
            size = rng.randint(2, 4)
            for _ in range(size):
                times.append(t)
                t += rng.uniform(0.5, 3.0)
            t += rng.gammavariate(2.0, mean_gap * size / 2.0)
        else:
            times.append(t)
            t += rng.gammavariate(4.0, mean_gap * gap_scale / 4.0)
    return [x for x in times if x < span]


def generate_person(
    seed: int,
    index: int,
    now: dt.datetime,
    *,
    contacts: int = 30,
    days: int = 730,
    intensity: float = 1.0,
) -> SyntheticPerson:
    """One person's records ending at ``now``; ``intensity`` scales how much they log."""
    rng = random.Random(f"{seed}:{index}")  # noqa: S311 -- reproducible fake data, not secrets
    zone_name = rng.choice(_TIME_ZONES)
    zone = zoneinfo.ZoneInfo(zone_name)
    start = now.astimezone(zone).date() - dt.timedelta(days=days)
    activity = intensity * rng.lognormvariate(0.0, 0.35)

    def stamp(t: float) -> str:
        day = start + dt.timedelta(days=int(t))
        local = dt.datetime.combine(day, dt.time(rng.randint(8, 21), rng.randrange(0, 60, 5)))
        return local.replace(tzinfo=zone).isoformat(timespec="seconds")

    contact_rows: dict[str, Fields] = {}
    events: list[tuple[float, str, str]] = []  # (time, contact id, kind)
    for j, circle in enumerate(_circles(contacts)):
        cid = f"c{index:07d}-{j:03d}"
        low, high = _CIRCLES[circle][1]
        mean_gap = rng.uniform(low, high) / activity
        in_person_share = rng.uniform(0.35, 0.8)
        # A chosen cadence, when there is one, is close to how often they really meet.
        wish = mean_gap / in_person_share * rng.uniform(1.0, 1.5)
        cadence = min(_CADENCES, key=lambda c: abs(c - wish)) if rng.random() < 0.2 else None
        roll = rng.random()
        contact_rows[cid] = {
            "display_name": f"{_NAMES[j % len(_NAMES)]} {chr(65 + j // len(_NAMES))}.",
            "relationship": rng.choice(_RELATIONSHIPS),
            "circle": circle,
            "cadence_days": cadence,
            "preferred_kind": None,
            "notes": "",
            "birthday": None,
            "snoozed_until": (
                (now.date() + dt.timedelta(days=rng.randint(1, 30))).isoformat()
                if 0.03 <= roll < 0.06
                else None
            ),
            "archived": roll < 0.03,
            "tags": [],
        }
        moves_remote_at = days - rng.uniform(60, 200) if rng.random() < 0.05 else math.inf
        for t in _times(rng, mean_gap, days):
            remote = t >= moves_remote_at or rng.random() > in_person_share
            kind = rng.choices(*zip(*_REMOTE, strict=True))[0] if remote else "in_person"
            events.append((t, cid, kind))
    ids = list(contact_rows)
    interactions: dict[str, Fields] = {}
    for n, (t, cid, kind) in enumerate(sorted(events)):
        group = [cid]
        if kind == "in_person" and rng.random() < 0.1:
            group.append(rng.choice(ids))
        interactions[f"i{index:07d}-{n:05d}"] = {
            "contact_ids": list(dict.fromkeys(group)),
            "kind": kind,
            "occurred_at": stamp(t),
            "duration_min": rng.choice((None, 15, 30, 60, 120)),
            "initiated_by": rng.choice((None, "me", "them", "mutual")),
            "quality": rng.choice((None, 3, 4, 5)),
            "felt_closer": None,
            "note": "",
        }
    reflections: dict[str, Fields] = {}
    for n in range(rng.randint(0, 12)):
        asks = rng.random() < 0.3
        reflections[f"r{index:07d}-{n:04d}"] = {
            "occurred_at": stamp(rng.uniform(0, days)),
            "mood": rng.randint(1, 5),
            "body": "",
            "gratitude": "",
            "interaction_id": None,
            "ucla3": [rng.randint(1, 3) for _ in range(3)] if asks else None,
            "lsns6": [rng.randint(0, 5) for _ in range(6)] if asks else None,
            "who5": [rng.randint(0, 5) for _ in range(5)] if asks else None,
        }
    settings = {"time_zone": zone_name, "nudges_enabled": True, "max_nudges_per_week": 3}
    return SyntheticPerson(index, settings, contact_rows, interactions, reflections)


def generate_population(
    seed: int, people: int, now: dt.datetime, *, start: int = 0, **options: Any
) -> Iterator[SyntheticPerson]:
    """People ``start`` .. ``start + people - 1``; chunks compose into the same population."""
    for index in range(start, start + people):
        yield generate_person(seed, index, now, **options)
