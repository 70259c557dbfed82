"""Abuse guard: per-user send limits and duplicate suppression, in Redis."""
