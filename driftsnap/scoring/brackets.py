"""Method family ``brackets`` (spec 2.1, preset ``drift-2023-08``).

Each order falls in the first bracket whose edge ``k`` (bps) satisfies

    10000 * |price - best_side| * den(k) <= num(k) * best_side        (k = num/den, exact)

so band edges are decided in integer arithmetic, never in floats. Sizes are summed as integers
(``l`` per maker, bracket and side; ``L`` per bracket and side); floats appear only in the score
formula itself::

    Q(x)     = max(L(x,bid), L(x,ask), min_notional / P)            (base units)
    V(x)     = 100 * w(x) * min(L(x,bid), L(x,ask)) / Q(x)
    score(m) = side_factor * sum_x V(x) * (l(m,x,bid)/L(x,bid) + l(m,x,ask)/L(x,ask))

with a term whose ``L`` is 0 counted as 0, and ``side_factor`` = 1/2 for ``side_combination =
"mean"`` (the program's worked examples) or 1 for ``"sum"`` (Drift's code).
"""

from __future__ import annotations

import string
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from driftsnap import protocol
from driftsnap.errors import ScoringError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import methods, result

_INT64_SAFE = 2**62


def score(
    book: book_mod.Book, method: methods.BracketMethod, *, detail: bool = True
) -> result.SnapshotScore:
    """Score every maker of ``book`` under a bracket method; without ``detail`` the result's
    ``brackets`` is empty (the scores are the same: a week's recomputation needs only them)."""
    if book.oracle_price <= 0:
        raise ScoringError(f"{book.market}: oracle price must be positive, got {book.oracle_price}")
    cols = book.columns(method.maker_key, include_vamm=method.include_vamm)
    n_brackets = len(method.edges_bps)
    is_bid = cols.side == book_mod.Side.BID
    best_bid = int(cols.price[is_bid].max()) if is_bid.any() else None
    best_ask = int(cols.price[~is_bid].min()) if (~is_bid).any() else None

    bracket = _bracket_of(cols, is_bid, best_bid, best_ask, method)
    liquidity = _sum_sizes(cols, bracket, n_brackets)  # (makers, brackets + 1, 2); last = none
    maker_l = liquidity[:, :n_brackets, :]
    total_l = maker_l.sum(axis=0)  # (brackets, 2)

    floor = float(Fraction(method.min_notional_usd) * protocol.PRICE_PRECISION / book.oracle_price)
    total_units = total_l.astype(np.float64) / protocol.BASE_PRECISION
    q = np.maximum(total_units.max(axis=1), floor)
    weights_100 = np.array([float(w * 100) for w in method.weights], dtype=np.float64)
    value = weights_100 * total_units.min(axis=1) / q  # (brackets,)

    totals_f = total_l.astype(np.float64)
    share = np.divide(
        maker_l.astype(np.float64),
        totals_f,
        out=np.zeros(maker_l.shape, dtype=np.float64),
        where=totals_f > 0,
    )
    per_maker = method.side_factor * (share.sum(axis=2) * value).sum(axis=1)

    return result.SnapshotScore(
        method=method.name,
        params_hash=method.params_hash,
        market=book.market,
        market_index=book.market_index,
        slot=book.slot,
        ts=book.ts,
        oracle_price=book.oracle_price,
        best_bid=best_bid,
        best_ask=best_ask,
        scores=dict(zip(cols.makers, per_maker.tolist(), strict=True)),
        brackets=()
        if not detail
        else tuple(
            result.BracketLiquidity(
                name=bracket_name(x),
                weight=float(method.weights[x]),
                total_bid=int(total_l[x, 0]),
                total_ask=int(total_l[x, 1]),
                q=float(q[x]),
                value=float(value[x]),
                maker_bid=_nonzero(cols.makers, maker_l[:, x, 0]),
                maker_ask=_nonzero(cols.makers, maker_l[:, x, 1]),
            )
            for x in range(n_brackets)
        ),
        authority_of=dict(cols.authority_of),
    )


def bracket_name(index: int) -> str:
    """``A``, ``B``, ... as in the program's table."""
    return string.ascii_uppercase[index]


def _bracket_of(
    cols: book_mod.BookColumns,
    is_bid: npt.NDArray[np.bool_],
    best_bid: int | None,
    best_ask: int | None,
    method: methods.BracketMethod,
) -> npt.NDArray[np.intp]:
    """Index of each order's bracket; ``len(edges)`` for an order in no bracket."""
    n_brackets = len(method.edges_bps)
    edges = [Fraction(e) for e in method.edges_bps]
    max_price = int(cols.price.max()) if len(cols) else 0
    max_den = max(e.denominator for e in edges)
    max_num = max(e.numerator for e in edges)
    # int64 is exact while both sides of the comparison stay below 2**62; beyond that (absurd
    # prices) fall back to Python integers so membership is still exact.
    exact_int64 = max_price * 10_000 * max_den < _INT64_SAFE and max_price * max_num < _INT64_SAFE
    dtype: type = np.int64 if exact_int64 else object
    best: npt.NDArray[Any] = np.where(is_bid, best_bid or 0, best_ask or 0).astype(dtype)
    distance = np.abs(cols.price.astype(dtype) - best) * 10_000
    bracket = np.full(len(cols), n_brackets, dtype=np.intp)
    # Walk edges from the widest in, so each order ends in the narrowest bracket containing it.
    for x in reversed(range(n_brackets)):
        inside = distance * edges[x].denominator <= best * edges[x].numerator
        bracket[inside.astype(bool)] = x
    return bracket


def _sum_sizes(
    cols: book_mod.BookColumns, bracket: npt.NDArray[np.intp], n_brackets: int
) -> npt.NDArray[np.int64]:
    """Exact integer size sums per maker, bracket (plus a 'none' bucket) and side."""
    shape = (len(cols.makers), n_brackets + 1, 2)
    if len(cols) and int(cols.size.max()) * len(cols) >= _INT64_SAFE:
        raise ScoringError("order sizes too large to sum exactly in 64 bits")
    out = np.zeros(shape, dtype=np.int64)
    np.add.at(out, (cols.maker, bracket, cols.side.astype(np.intp)), cols.size)
    return out


def _nonzero(makers: tuple[str, ...], column: npt.NDArray[np.int64]) -> dict[str, int]:
    at = np.flatnonzero(column)
    return dict(zip([makers[i] for i in at.tolist()], column[at].tolist(), strict=True))
