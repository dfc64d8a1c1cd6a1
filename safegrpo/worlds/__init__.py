"""Synthetic worlds the tiny demos train in (built locally, no downloads)."""
