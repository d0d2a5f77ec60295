"""Largest-remainder payouts in integer micro-USDC (spec section 5)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from driftsnap.errors import ScoringError
from driftsnap.scoring import payouts

POOL = 500_000_000  # 500 USDC


def test_three_equal_weights_split_the_odd_unit_by_key() -> None:
    """100 micro-USDC over three equal weights: 34/33/33, the extra unit to the smallest key."""
    amounts = payouts.allocate(100, {"b": 1, "a": 1, "c": 1})
    assert amounts == {"a": 34, "b": 33, "c": 33}


def test_largest_remainder_wins_the_leftover_units() -> None:
    """Leftover units go to the largest fractional remainders, not to the largest weights."""
    # 10 units over weights 3/5/12: exact 1.5/2.5/6.0 -> floors 1/2/6, 1 left; the remainders
    # tie at 0.5 for a and b, so the key order decides: a.
    assert payouts.allocate(10, {"a": 3, "b": 5, "c": 12}) == {"a": 2, "b": 2, "c": 6}
    # 10 units over 1/1/8 (1, 1, 8 exactly): nothing left over, nothing moves.
    assert payouts.allocate(10, {"a": 1, "b": 1, "c": 8}) == {"a": 1, "b": 1, "c": 8}
    # 8 units over 1/2/4: 8/7, 16/7, 32/7
    # 32/7 -> floors 1/2/4 (7), remainders 1/7, 2/7, 4/7: the unit goes to c.
    assert payouts.allocate(8, {"a": 1, "b": 2, "c": 4}) == {"a": 1, "b": 2, "c": 5}


def test_float_weights_are_taken_exactly() -> None:
    """Scores are floats; 0.1 + 0.2 style rounding never leaks into the allocation."""
    amounts = payouts.allocate(POOL, {"x": 0.1, "y": 0.2, "z": 0.3})
    assert sum(amounts.values()) == POOL
    for k, w in {"x": 0.1, "y": 0.2, "z": 0.3}.items():
        exact = POOL * Fraction(w) / (Fraction(0.1) + Fraction(0.2) + Fraction(0.3))
        assert abs(amounts[k] - exact) < 1


def test_zero_weights_get_nothing_and_no_positive_weight_allocates_nothing() -> None:
    """Zero-weight makers are left out; a pool with no positive weight is unallocated ({})."""
    assert payouts.allocate(POOL, {"a": 0, "b": 3}) == {"b": POOL}
    assert payouts.allocate(POOL, {"a": 0.0}) == {}
    assert payouts.allocate(POOL, {}) == {}


@pytest.mark.parametrize(
    ("pool", "weights", "message"),
    [
        (-1, {"a": 1}, "pool must not be negative"),
        (POOL, {"a": -1.0}, "weight of a is negative"),
        (POOL, {"a": float("nan")}, "weight of a is not finite"),
        (POOL, {"a": float("inf")}, "weight of a is not finite"),
    ],
)
def test_invalid_pools_and_weights_are_refused(
    pool: int, weights: dict[str, float], message: str
) -> None:
    """Negative pools, negative or non-finite weights raise a ScoringError naming the problem."""
    with pytest.raises(ScoringError, match=message):
        payouts.allocate(pool, weights)


def test_shares_are_exact_fractions_summing_to_one() -> None:
    """shares() returns exact fractions of the positive weights that sum to exactly 1."""
    shares = payouts.shares({"a": 1, "b": 2, "c": 0})
    assert shares == {"a": Fraction(1, 3), "b": Fraction(2, 3)}
