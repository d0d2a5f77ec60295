"""One entry point: score a book under any method."""

from __future__ import annotations

from driftsnap.scoring import book as book_mod
from driftsnap.scoring import brackets, methods, mm_scoring, result


def score(book: book_mod.Book, method: methods.Method) -> result.SnapshotScore:
    """Per-maker order scores of ``book`` under ``method`` (spec section 2)."""
    if isinstance(method, methods.BracketMethod):
        return brackets.score(book, method)
    return mm_scoring.score(book, method)
