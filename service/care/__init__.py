"""Caregiver sharing: consented summaries, check-in escalation, the web page."""
