"""One entry point: score a book under any method."""

from __future__ import annotations

from driftsnap.scoring import book as book_mod
from driftsnap.scoring import brackets, methods, mm_scoring, result


def score(
    book: book_mod.Book, method: methods.Method, *, detail: bool = True
) -> result.SnapshotScore:
    """Per-maker order scores of ``book`` under ``method`` (spec section 2); without
    ``detail``, a bracket method's result leaves out its per-bracket liquidity (``brackets``
    is empty), which only reports read."""
    if isinstance(method, methods.BracketMethod):
        return brackets.score(book, method, detail=detail)
    return mm_scoring.score(book, method)
