"""Integer micro-USDC allocation by largest remainder (spec section 5).

For a pool ``P`` (micro-USDC) and weights ``w_i``: ``amount_i = floor(P * w_i / sum(w))``, then the
micro-units left over go one each to the largest fractional remainders, ties broken by key
ascending (base58 text order). Weights are converted to ``Fraction`` exactly (a float is a dyadic
rational), so the result does not depend on float rounding: a paid pool sums to exactly ``P`` and
every amount is within one micro-USDC of ``P * share_i``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from driftsnap.errors import ScoringError

if TYPE_CHECKING:
    from collections.abc import Mapping

MICRO_USDC = 1_000_000

Weight = int | float | Fraction


def usdc(micro: int) -> str:
    """``1500000000`` micro-USDC → ``"1500.000000"`` (exact, never a float)."""
    return f"{Decimal(micro) / MICRO_USDC:.6f}"


def allocate(pool: int, weights: Mapping[str, Weight]) -> dict[str, int]:
    """Split ``pool`` micro-USDC over the positive weights; ``{}`` when there are none."""
    if pool < 0:
        raise ScoringError(f"pool must not be negative, got {pool}")
    exact: dict[str, Fraction] = {}
    for key, weight in weights.items():
        if isinstance(weight, float) and not math.isfinite(weight):
            raise ScoringError(f"weight of {key} is not finite: {weight}")
        if weight < 0:
            raise ScoringError(f"weight of {key} is negative: {weight}")
        if weight > 0:
            exact[key] = Fraction(weight)
    total = sum(exact.values(), Fraction(0))
    if not exact:
        return {}
    amounts: dict[str, int] = {}
    remainders: dict[str, Fraction] = {}
    for key, weight in exact.items():
        share = pool * weight / total
        amounts[key] = math.floor(share)
        remainders[key] = share - amounts[key]
    left = pool - sum(amounts.values())
    for key in sorted(remainders, key=lambda k: (-remainders[k], k))[:left]:
        amounts[key] += 1
    return amounts


def shares(weights: Mapping[str, Weight]) -> dict[str, Fraction]:
    """Exact shares of the positive weights (empty when none is positive)."""
    positive = {k: Fraction(w) for k, w in weights.items() if w > 0}
    total = sum(positive.values(), Fraction(0))
    return {k: w / total for k, w in positive.items()} if positive else {}
