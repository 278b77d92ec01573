"""Build one person's synthetic timeline in a few readable lines, as sync would store it."""

from __future__ import annotations

import datetime as dt
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from service.rules import Catalog, Finding, History, PersonSettings, evaluate

__all__ = ["NOW", "TODAY", "ZONE", "Timeline", "ana_stops", "default_catalog_text"]

ZONE = ZoneInfo("Europe/Lisbon")
#: A Monday, 09:00 in Lisbon: the daily sweep's local morning.
NOW = dt.datetime(2025, 6, 2, 9, 0, tzinfo=ZONE)
TODAY = NOW.date()


class Timeline:
    """Contacts and interactions placed by "days ago" (local noon unless told otherwise)."""

    def __init__(self, today: dt.date = TODAY, zone: ZoneInfo = ZONE) -> None:
        self.today = today
        self.zone = zone
        self.contacts: dict[str, dict[str, Any]] = {}
        self.interactions: dict[str, dict[str, Any]] = {}
        self.reflections: dict[str, dict[str, Any]] = {}
        self.settings_fields: dict[str, Any] = {"time_zone": zone.key}

    def at(self, days_ago: int, hour: int = 12) -> str:
        day = self.today - dt.timedelta(days=days_ago)
        return dt.datetime.combine(day, dt.time(hour), tzinfo=self.zone).isoformat()

    def contact(self, name: str, circle: str = "close", **fields: Any) -> str:
        cid = f"contact-{name.lower()}"
        self.contacts[cid] = {"display_name": name, "circle": circle, "archived": False} | fields
        return cid

    def log(
        self, contacts: str | list[str], days_ago: int, kind: str = "in_person", **kw: Any
    ) -> None:
        ids = [contacts] if isinstance(contacts, str) else contacts
        key = f"ix-{len(self.interactions):06d}"
        self.interactions[key] = {
            "contact_ids": ids,
            "kind": kind,
            "occurred_at": self.at(days_ago, kw.pop("hour", 12)),
        } | kw

    def every(self, cid: str, step: int, first: int, last: int, kind: str = "in_person") -> None:
        """One interaction every ``step`` days from ``first`` days ago down to ``last``."""
        for days_ago in range(first, last - 1, -step):
            self.log(cid, days_ago, kind)

    def reflect(self, days_ago: int, **answers: list[int]) -> None:
        key = f"rf-{len(self.reflections):06d}"
        self.reflections[key] = {"occurred_at": self.at(days_ago, 8)} | answers

    def history(self) -> History:
        return History.from_fields(self.contacts, self.interactions, self.reflections)

    def settings(self) -> PersonSettings:
        return PersonSettings.from_fields(self.settings_fields)

    def evaluate(self, now: dt.datetime = NOW, catalog: Catalog | None = None) -> list[Finding]:
        return evaluate(self.history(), now, self.settings(), catalog)


def ana_stops() -> Timeline:
    """Ana came round every 9 days for over a year; 50 days ago it stopped, then two calls."""
    life = Timeline()
    ana = life.contact("Ana", circle="inner")
    life.every(ana, 9, first=400, last=50)
    for days_ago in (30, 12):
        life.log(ana, days_ago, "call")
    return life


def default_catalog_text() -> str:
    return files("schemas").joinpath("rules.toml").read_text()
