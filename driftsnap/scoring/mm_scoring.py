"""Spec 2.2: a port of ``getLiquidityScoreForSnapshot`` in ``drift-labs/mm-scoring`` (HEAD 493c124).

The scorer is written against danfojs-node, locked at 1.1.2 by mm-scoring's ``yarn.lock`` (1.2.0
changes none of the code below). What danfo does for the operations it uses, read in
``javascriptdata/danfojs`` at tag ``v1.1.2``:

1. ``concat({dfList: [bids, asks], axis: 1})`` is positional. ``processColumn`` in
   ``src/danfojs-base/transformers/concat.ts`` takes each Series' ``.values``, ignores its index
   (reordered by ``sortValues``) and pads the shorter column with NaN to the longer's length. So
   bid level ``i`` pairs with ask level ``i`` by rank and the ``fillNa(0)`` makes a missing rank 0.
2. ``groupby(["priceRounded"]).agg({...: "sum"})`` keeps float keys as numbers.
   ``Groupby.group`` in ``src/danfojs-base/aggregators/groupby.ts`` keys an object by the joined
   string, but ``keyToValue`` keeps the original numbers and ``toDataFrame`` writes those back; no
   two distinct doubles print alike, so the groups are the distinct doubles. ``sortValues`` in
   ``src/danfojs-base/core/frame.ts`` sorts with ``utils.sortObj`` (``src/danfojs-base/shared/
   utils.ts``), which compares ``Number(a) - Number(b)``, so levels are ordered numerically.
   A "sum" adds the group's rows left to right.
3. ``Series.max()``/``min()`` in ``src/danfojs-base/core/series.ts`` drop NaN/null/undefined and
   start from ``values[0]``, so an empty column gives ``undefined`` and ``if (!bestBid)`` puts the
   oracle price in its place. The empty side's frame yields an empty Series, which the concat
   pads with NaN, then 0: every level's ``min(bs, as)`` is 0, so a one-sided book scores nothing.

All Series arithmetic (``_genericMathOp`` in ``src/danfojs-base/core/math.ops.ts``) is element-wise
JavaScript doubles, so float64 here gives the same numbers for the same operations in that order.

Where we knowingly differ, by at most a few ulps: the TS sums sizes (and, downstream, scores) left
to right in the order the chain listed the accounts; we sum sizes exactly as integers and each
maker's scores in a fixed order (by value), so a score does not depend on how a book's orders are
listed.
The TS also converts ``baseAssetAmount`` and ``baseAssetAmountFilled`` separately before
subtracting, and prices an oracle-offset order as ``oracle + offset`` in floats; we convert the
integer remainder and the integer price. Orders without a positive price and size are refused.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftsnap import protocol
from driftsnap.errors import ScoringError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import methods, result

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_INT64_MAX = int(np.iinfo(np.int64).max)
_LEVEL_NAMES = string.ascii_uppercase


@dataclass(frozen=True, slots=True)
class _Reference:
    """The TS's ``bestBid``/``bestAsk`` after the empty-side fallback and crossed clamp, in $."""

    best_bid: float
    best_ask: float

    @property
    def mark(self) -> float:
        return (self.best_bid + self.best_ask) / 2


@dataclass(frozen=True, slots=True)
class _Levels:
    """One side's distinct rounded prices by rank, each order's rank and each rank's exact total."""

    prices: FloatArray
    of_order: IndexArray
    totals: IntArray

    def padded(self, n: int) -> FloatArray:
        """Totals in base units as floats, padded with 0 to ``n`` ranks (danfo's concat, fillNa)."""
        out = np.zeros(n, dtype=np.float64)
        out[: len(self.totals)] = _to_number(self.totals, protocol.BASE_PRECISION)
        return out


def score(book: book_mod.Book, method: methods.MmScoringMethod) -> result.SnapshotScore:
    """Score one book as mm-scoring does: ranked levels, one global ``q``, pro-rata in a level."""
    _check_method(method)
    cols = book.columns(method.maker_key, include_vamm=method.include_vamm)
    _check_orders(book, cols)
    if len(cols) == 0:
        return _result(book, method, cols, scores={}, brackets=())

    is_bid = cols.side == book_mod.Side.BID
    price = _to_number(cols.price, protocol.PRICE_PRECISION)
    ref = _reference(book, price, is_bid)
    rounded = _rounded_prices(method, ref, price, is_bid)
    bids = _levels(rounded[is_bid], cols.size[is_bid], descending=True)
    asks = _levels(rounded[~is_bid], cols.size[~is_bid], descending=False)

    # Level i pairs bid rank i with ask rank i, whatever their prices (danfo point 1).
    n_levels = max(len(bids.prices), len(asks.prices))
    bs = bids.padded(n_levels)
    as_ = asks.padded(n_levels)
    # One q for the whole book, over every level: HEAD dropped the first commit's top-six cut.
    min_q = float(method.min_notional_usd) / ref.mark
    q = float(np.max(np.maximum((bs + as_) / 2, min_q)))
    n_scored = min(n_levels, len(method.multipliers))
    multiplier = np.zeros(n_levels, dtype=np.float64)
    multiplier[:n_scored] = [float(w) for w in method.multipliers[:n_scored]]
    value = np.minimum(bs, as_) / q * 100 * multiplier

    # Each order's pro-rata share of its level, (size / side total) * value as the TS orders it.
    size = _to_number(cols.size, protocol.BASE_PRECISION)
    order_score = np.empty(len(cols), dtype=np.float64)
    order_score[is_bid] = size[is_bid] / bs[bids.of_order] * value[bids.of_order]
    order_score[~is_bid] = size[~is_bid] / as_[asks.of_order] * value[asks.of_order]

    level = np.empty(len(cols), dtype=np.intp)
    level[is_bid] = bids.of_order
    level[~is_bid] = asks.of_order
    per_maker = _maker_sizes(cols, level, n_scored)
    brackets = tuple(
        result.BracketLiquidity(
            name=_LEVEL_NAMES[i],
            weight=float(method.multipliers[i]),
            total_bid=int(bids.totals[i]) if i < len(bids.totals) else 0,
            total_ask=int(asks.totals[i]) if i < len(asks.totals) else 0,
            q=q,
            value=float(value[i]),
            maker_bid=_nonzero(per_maker[book_mod.Side.BID, i], cols.makers),
            maker_ask=_nonzero(per_maker[book_mod.Side.ASK, i], cols.makers),
            bid_price=float(bids.prices[i]) if i < len(bids.prices) else None,
            ask_price=float(asks.prices[i]) if i < len(asks.prices) else None,
        )
        for i in range(n_scored)
    )
    scores = _maker_sums(order_score, cols, method.side_factor)
    return _result(book, method, cols, scores=scores, brackets=brackets)


def _check_method(method: methods.MmScoringMethod) -> None:
    if len(method.multipliers) > len(_LEVEL_NAMES):
        raise ScoringError(
            f"method {method.name!r} has {len(method.multipliers)} multipliers; "
            f"levels are named A..Z, so at most {len(_LEVEL_NAMES)}"
        )
    if method.fallback_step_usd <= 0:
        raise ScoringError(f"method {method.name!r}: fallback_step_usd must be positive")


def _check_orders(book: book_mod.Book, cols: book_mod.BookColumns) -> None:
    if len(cols) == 0:
        return
    if int(cols.price.min()) <= 0 or int(cols.size.min()) <= 0:
        raise ScoringError(
            f"{book.market} slot {book.slot}: every eligible order needs a positive price and size"
        )
    # Level totals are exact int64 sums; refuse a book whose sizes could overflow them.
    if sum(cols.size.tolist()) > _INT64_MAX:
        raise ScoringError(f"{book.market} slot {book.slot}: order sizes overflow 64 bits")


def _reference(book: book_mod.Book, price: FloatArray, is_bid: BoolArray) -> _Reference:
    oracle = _scalar_to_number(book.oracle_price, protocol.PRICE_PRECISION)
    has_bid = bool(is_bid.any())
    has_ask = not bool(is_bid.all())
    # An empty side takes the oracle price (danfo's max() of nothing is undefined, point 3).
    if not (has_bid and has_ask) and oracle <= 0:
        raise ScoringError(
            f"{book.market} slot {book.slot}: a book side is empty and the oracle price "
            f"{book.oracle_price} cannot stand in for it"
        )
    best_bid = float(price[is_bid].max()) if has_bid else oracle
    best_ask = float(price[~is_bid].min()) if has_ask else oracle
    # Crossed: the bid gives way when it is above the oracle, else the ask does.
    if best_bid > best_ask:
        if best_bid > oracle:
            best_bid = best_ask
        else:
            best_ask = best_bid
    return _Reference(best_bid=best_bid, best_ask=best_ask)


def _rounded_prices(
    method: methods.MmScoringMethod, ref: _Reference, price: FloatArray, is_bid: BoolArray
) -> FloatArray:
    """``roundThreshold``: bids floored, asks ceiled onto the grid of their band around best."""
    mbps = np.array([float(m) for m in method.mbps], dtype=np.float64)
    fallback = float(method.fallback_step_usd)
    bid_x = price[is_bid]
    ask_x = price[~is_bid]
    # Same operations as the TS, so the band edges are the same doubles: best * (1 -/+ m).
    bid_step = _steps(bid_x[:, None] >= ref.best_bid * (1 - mbps), ref.mark, mbps, fallback)
    ask_step = _steps(ask_x[:, None] <= ref.best_ask * (1 + mbps), ref.mark, mbps, fallback)
    rounded = np.empty(len(price), dtype=np.float64)
    rounded[is_bid] = np.floor(bid_x / bid_step) * bid_step
    rounded[~is_bid] = np.ceil(ask_x / ask_step) * ask_step
    return rounded


def _steps(within: BoolArray, mark: float, mbps: FloatArray, fallback: float) -> FloatArray:
    """Grid step per order: ``mark * mbps[i]`` for the first band ``i`` it is in, else fallback."""
    first = np.argmax(within, axis=1)
    return np.where(within.any(axis=1), mark * mbps[first], fallback)


def _levels(rounded: FloatArray, sizes: IntArray, *, descending: bool) -> _Levels:
    # Distinct doubles are distinct danfo groups (point 2); np.unique sorts them ascending.
    prices, inverse = np.unique(rounded, return_inverse=True)
    of_order = inverse.astype(np.intp)
    if descending:
        prices = prices[::-1]
        of_order = len(prices) - 1 - of_order
    totals = np.zeros(len(prices), dtype=np.int64)
    np.add.at(totals, of_order, sizes)
    return _Levels(prices=prices, of_order=of_order, totals=totals)


def _to_number(values: IntArray, precision: int) -> FloatArray:
    """Drift SDK ``convertToNumber``: quotient + remainder / precision (for values >= 0)."""
    quotient, remainder = np.divmod(values, precision)
    return quotient.astype(np.float64) + remainder.astype(np.float64) / precision


def _scalar_to_number(value: int, precision: int) -> float:
    # bn.js div truncates toward zero and mod keeps the dividend's sign, unlike Python's floor.
    quotient = abs(value) // precision * (1 if value >= 0 else -1)
    return float(quotient) + (value - quotient * precision) / precision


def _maker_sums(
    order_score: FloatArray, cols: book_mod.BookColumns, side_factor: float
) -> dict[str, float]:
    """Each maker's order scores summed in a fixed order: by maker, then by value.

    Sorting by value first makes the sum independent of how the book's orders are listed, and
    bit-for-bit the same for the same orders; with non-negative terms it is within a few ulps
    of the exactly rounded ``math.fsum`` (``tests/test_columnar.py`` holds it to 1e-12).
    """
    if len(order_score) == 0:
        return {}
    by = np.lexsort((order_score, cols.maker))
    maker = cols.maker[by]
    starts = np.flatnonzero(np.r_[True, maker[1:] != maker[:-1]])
    sums = np.add.reduceat(order_score[by], starts) * side_factor
    return dict(zip(cols.makers, sums.tolist(), strict=True))


def _maker_sizes(cols: book_mod.BookColumns, level: IndexArray, n_scored: int) -> IntArray:
    """Exact per-maker size at each scored level, indexed ``[side, level, maker]``."""
    cells = np.zeros((2, n_scored, len(cols.makers)), dtype=np.int64)
    scored = level < n_scored
    np.add.at(cells, (cols.side[scored], level[scored], cols.maker[scored]), cols.size[scored])
    return cells


def _nonzero(row: IntArray, makers: tuple[str, ...]) -> dict[str, int]:
    at = np.flatnonzero(row)
    return dict(zip([makers[j] for j in at.tolist()], row[at].tolist(), strict=True))


def _result(
    book: book_mod.Book,
    method: methods.MmScoringMethod,
    cols: book_mod.BookColumns,
    *,
    scores: dict[str, float],
    brackets: tuple[result.BracketLiquidity, ...],
) -> result.SnapshotScore:
    # Best prices are those of the orders the method scored (vAMM excluded unless included).
    is_bid = cols.side == book_mod.Side.BID
    return result.SnapshotScore(
        method=method.name,
        params_hash=method.params_hash,
        market=book.market,
        market_index=book.market_index,
        slot=book.slot,
        ts=book.ts,
        oracle_price=book.oracle_price,
        best_bid=int(cols.price[is_bid].max()) if is_bid.any() else None,
        best_ask=int(cols.price[~is_bid].min()) if not is_bid.all() else None,
        scores=scores,
        brackets=brackets,
        authority_of=dict(cols.authority_of),
    )
