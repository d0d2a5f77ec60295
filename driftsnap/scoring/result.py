"""What scoring one book yields, whatever the method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True, slots=True)
class BracketLiquidity:
    """One bracket (or, for mm-scoring, one ranked level) of one snapshot.

    Sizes are exact integer sums in ``BASE_PRECISION``; ``q`` is in base units (float) and
    ``value`` is the bracket's ``V``. ``maker_bid``/``maker_ask`` hold only non-zero ``l`` cells.
    For mm-scoring, ``bid_price``/``ask_price`` are the level's rounded prices in dollars.
    """

    name: str
    weight: float
    total_bid: int
    total_ask: int
    q: float
    value: float
    maker_bid: Mapping[str, int]
    maker_ask: Mapping[str, int]
    bid_price: float | None = None
    ask_price: float | None = None


@dataclass(frozen=True, slots=True)
class SnapshotScore:
    """Per-maker order scores of one book under one method.

    ``scores`` has an entry for every maker with an order in the book (zero when none of its
    orders falls in a bracket), keyed per the method's ``maker_key``; ``authority_of`` maps each
    such maker to its authority (the identity itself when ``maker_key`` is ``authority``).
    ``brackets`` is empty when the book was scored without detail (``scorer.score(...,
    detail=False)``, as a week's recomputation does).
    """

    method: str
    params_hash: str
    market: str
    market_index: int
    slot: int
    ts: int
    oracle_price: int
    best_bid: int | None
    best_ask: int | None
    scores: Mapping[str, float]
    brackets: tuple[BracketLiquidity, ...]
    authority_of: Mapping[str, str]

    @property
    def total(self) -> float:
        """The sum of every maker's score."""
        return sum(self.scores.values())
