"""Shared test configuration."""

from __future__ import annotations

from hypothesis import settings

# Scoring is fast but CI machines are shared: no per-example deadline, a fixed example budget.
settings.register_profile("driftsnap", deadline=None, max_examples=150, print_blob=True)
settings.load_profile("driftsnap")
