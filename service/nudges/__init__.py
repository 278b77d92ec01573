"""Nudges: the budget (how many, when), which request goes out and its words, and the jobs
that plan and send them through the push providers."""
