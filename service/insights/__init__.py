"""Insights: run the pure rules (``service/rules/``) over a person's history and write what
they find as server-written synced records, plus the nudge requests they warrant."""
