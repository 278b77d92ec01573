"""The rules engine: pure functions that notice fading ties and explain why.

A database layer feeds it one person's rows as plain ``fields`` dicts and writes back
what it says::

    history = History.from_fields(contacts, interactions, reflections)
    settings = PersonSettings.from_fields(settings_fields)
    findings = evaluate(history, now, settings)
    plan = reconcile(stored_insights, findings, history, now)  # create / update / resolve

Thresholds and wording live in the catalog (``schemas/rules.toml``); each rule is one
module owning its id, spec, templates contract and ``evaluate`` (``registry.py`` finds
them). Nothing here does I/O or reads a clock, so every rule is tested with synthetic
timelines and Hypothesis, and ``evaluation/`` scores the whole engine on labelled people
(``make eval``, decision 0010).
"""

from service.rules.catalog import Catalog, default_catalog, load_catalog
from service.rules.engine import evaluate
from service.rules.finding import DedupeKey, Finding
from service.rules.history import Contact, History, Interaction, PersonSettings, Reflection
from service.rules.reconcile import (
    Create,
    Plan,
    Resolve,
    StoredInsight,
    Update,
    insight_id,
    reconcile,
)
from service.rules.registry import rule_ids

__all__ = [
    "Catalog",
    "Contact",
    "Create",
    "DedupeKey",
    "Finding",
    "History",
    "Interaction",
    "PersonSettings",
    "Plan",
    "Reflection",
    "Resolve",
    "StoredInsight",
    "Update",
    "default_catalog",
    "evaluate",
    "insight_id",
    "load_catalog",
    "reconcile",
    "rule_ids",
]
