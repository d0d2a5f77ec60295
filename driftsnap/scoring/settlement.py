"""A program week's settlement: aggregation, participants, forfeits, shares and payouts (spec 3-5).

A week (:class:`driftsnap.calendar.Week`) runs Monday 00:00 UTC to the next Monday. Per market,
``MMScore(m) = sum of m's snapshot scores`` (aggregation ``sum``) or the sum of m's per-snapshot
shares of all makers' scores (``normalized``).

Sums use :class:`ExactSum`, which keeps a float sum as exact non-overlapping partials (Shewchuk's
algorithm, the one behind ``math.fsum``) and rounds once at the end. A week total is therefore the
correctly rounded exact sum of its snapshot scores, the same whatever the order of the snapshots
or how the week was split and merged: a recomputation gives the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from driftsnap.errors import ScoringError
from driftsnap.scoring import payouts, result

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from driftsnap.calendar import Week


class ExactSum:
    """An exactly accumulated float sum: add, merge, and read it correctly rounded.

    Every finite float is an integer multiple of 2**-1074, so the sum is kept as that integer
    (Python's ints are exact at any size) and read as the correctly rounded quotient: the same
    value as ``math.fsum`` of every value added, in any order or split, a few times faster to
    add than Shewchuk's partials. A sum of only negative zeros reads -0.0, as fsum gives it.
    """

    __slots__ = ("_negative_zero", "_units")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._units = 0  # the sum, in units of 2**-1074
        self._negative_zero: bool | None = None  # None: nothing added; True: only -0.0 so far
        for v in values:
            self.add(v)

    def add(self, x: float) -> None:
        """Add ``x`` exactly; :class:`ScoringError` if it is not finite."""
        if not math.isfinite(x):
            raise ScoringError(f"cannot sum a non-finite score: {x}")
        numerator, denominator = x.as_integer_ratio()  # the denominator is a power of two
        self._units += numerator << (_UNIT_BITS + 1 - denominator.bit_length())
        if self._negative_zero is not False:
            self._negative_zero = x == 0 and math.copysign(1.0, x) < 0

    def merge(self, other: ExactSum) -> None:
        """Add ``other``'s sum exactly."""
        self._units += other._units
        if other._negative_zero is not None and self._negative_zero is not False:
            self._negative_zero = other._negative_zero

    @property
    def value(self) -> float:
        """The sum, correctly rounded."""
        if not self._units:
            return -0.0 if self._negative_zero else 0.0
        return self._units / _UNIT  # int / int: correctly rounded


_UNIT_BITS = 1074
_UNIT = 1 << _UNIT_BITS


def _add_each(totals: dict[str, ExactSum], values: Mapping[str, float]) -> None:
    """``totals[k].add(v)`` for each ``k, v`` of ``values`` (a new sum for a new key), inlined:
    a mainnet-scale week adds ~30 million scores, and the calls were half the time."""
    shift = _UNIT_BITS + 1
    for key, x in values.items():
        kept = totals.get(key)
        if kept is None:
            kept = totals[key] = ExactSum()
        if x:
            if x - x != 0.0:  # nan for an infinity or a nan
                raise ScoringError(f"cannot sum a non-finite score: {x}")
            numerator, denominator = x.as_integer_ratio()
            kept._units += numerator << (shift - denominator.bit_length())
            kept._negative_zero = False
        elif kept._negative_zero is not False:
            kept._negative_zero = math.copysign(1.0, x) < 0


Aggregation = Literal["sum", "normalized"]


@dataclass
class MarketAccumulator:
    """Running week totals of one market."""

    market: str
    snapshots: int = 0
    totals: dict[str, ExactSum] = field(default_factory=dict)
    authority_of: dict[str, str] = field(default_factory=dict)


class WeekAccumulator:
    """Adds snapshot scores into per-market, per-maker week totals under one aggregation."""

    def __init__(self, aggregation: Aggregation = "sum") -> None:
        self.aggregation: Aggregation = aggregation
        self.markets: dict[str, MarketAccumulator] = {}
        self._params_hash: str | None = None

    def add(self, snapshot: result.SnapshotScore) -> None:
        """Add a snapshot's scores (its shares, if ``normalized``) to its market's totals.

        A snapshot of another parameter set is a :class:`ScoringError`.
        """
        if self._params_hash is None:
            self._params_hash = snapshot.params_hash
        elif snapshot.params_hash != self._params_hash:
            raise ScoringError(
                f"cannot aggregate snapshots of two parameter sets "
                f"({self._params_hash[:12]} and {snapshot.params_hash[:12]})"
            )
        acc = self.markets.setdefault(snapshot.market, MarketAccumulator(snapshot.market))
        acc.snapshots += 1
        acc.authority_of.update(snapshot.authority_of)
        if self.aggregation == "sum":
            contributions = snapshot.scores
        else:
            total = math.fsum(snapshot.scores.values())
            contributions = {
                m: (s / total if total > 0 else 0.0) for m, s in snapshot.scores.items()
            }
        _add_each(acc.totals, contributions)

    def merge(self, other: WeekAccumulator) -> None:
        """Add ``other``'s totals (same aggregation and parameter set) into these."""
        if other.aggregation != self.aggregation:
            raise ScoringError("cannot merge week totals of two aggregations")
        if self._params_hash is None:
            self._params_hash = other._params_hash
        elif other._params_hash not in (None, self._params_hash):
            raise ScoringError("cannot merge week totals of two parameter sets")
        for name, theirs in other.markets.items():
            mine = self.markets.setdefault(name, MarketAccumulator(name))
            mine.snapshots += theirs.snapshots
            mine.authority_of.update(theirs.authority_of)
            for maker, total in theirs.totals.items():
                mine.totals.setdefault(maker, ExactSum()).merge(total)

    def totals(self, market: str) -> dict[str, float]:
        """The week total of each maker of ``market`` (empty if it has no snapshot)."""
        acc = self.markets.get(market)
        return {m: s.value for m, s in acc.totals.items()} if acc else {}


@dataclass(frozen=True, slots=True)
class Participants:
    """Who shares the week's rewards: everyone (``registered is None``) or a registered set,
    minus forfeited authorities. Non-participants' liquidity still counts in ``L`` and ``Q``."""

    registered: frozenset[str] | None = None
    forfeited: frozenset[str] = frozenset()

    def includes(self, authority: str) -> bool:
        """Whether ``authority`` shares the rewards: registered (or everyone is), not forfeited."""
        if authority in self.forfeited:
            return False
        return self.registered is None or authority in self.registered


@dataclass(frozen=True, slots=True)
class WeekTerms:
    """What the program says about one week: pools in micro-USDC, pause, participants."""

    week: Week
    score_pools: Mapping[str, int]
    volume_pool: int
    participants: Participants
    paused: bool = False
    pause_reason: str = ""


@dataclass(frozen=True, slots=True)
class MakerResult:
    """One maker in a pool: its weight, whether it participates, its share and its reward."""

    maker: str
    authority: str
    weight: float | int
    participant: bool
    share: Fraction
    reward: int


@dataclass(frozen=True, slots=True)
class PoolResult:
    """One paid pool: a market's score pool, or the volume pool (``market`` = ``"*volume"``)."""

    market: str
    pool: int
    snapshots: int
    makers: tuple[MakerResult, ...]

    @property
    def paid(self) -> int:
        """Micro-USDC paid out of the pool."""
        return sum(m.reward for m in self.makers)

    @property
    def unallocated(self) -> int:
        """Micro-USDC of the pool left unpaid."""
        return self.pool - self.paid


VOLUME = "*volume"


@dataclass(frozen=True, slots=True)
class WeekResult:
    """A settled week under one method: each pool's makers, shares and rewards."""

    week: Week
    method: str
    params_hash: str
    paused: bool
    pause_reason: str
    pools: tuple[PoolResult, ...]

    def payouts(self) -> dict[str, int]:
        """Micro-USDC per authority: score rewards over markets plus the volume reward."""
        out: dict[str, int] = {}
        for pool in self.pools:
            for m in pool.makers:
                if m.reward:
                    out[m.authority] = out.get(m.authority, 0) + m.reward
        return dict(sorted(out.items()))

    @property
    def unallocated(self) -> int:
        """Micro-USDC left unpaid over all pools."""
        return sum(p.unallocated for p in self.pools)


def _pool_result(
    *,
    market: str,
    pool: int,
    snapshots: int,
    weights: Mapping[str, float | int],
    authority_of: Mapping[str, str],
    participants: Participants,
) -> PoolResult:
    eligible = {m: w for m, w in weights.items() if participants.includes(authority_of[m])}
    amounts = payouts.allocate(pool, eligible)
    shares = payouts.shares(eligible)
    makers = tuple(
        MakerResult(
            maker=m,
            authority=authority_of[m],
            weight=weights[m],
            participant=m in eligible,
            share=shares.get(m, Fraction(0)),
            reward=amounts.get(m, 0),
        )
        for m in sorted(weights, key=lambda k: (-Fraction(weights[k]), k))
    )
    return PoolResult(market=market, pool=pool, snapshots=snapshots, makers=makers)


def settle(
    terms: WeekTerms,
    scores: WeekAccumulator,
    maker_volume: Mapping[str, int],
    *,
    method: str,
    params_hash: str,
) -> WeekResult:
    """Shares and payouts of a week from its score totals and per-authority maker volume.

    A paused week pays nothing: every pool is reported with pool 0. Markets with scores but no
    pool (e.g. SUI-PERP from 14 Aug 2023) are reported with pool 0; a pool with no scoring
    participant stays unallocated.
    """
    paid = not terms.paused
    markets = sorted(set(terms.score_pools) | set(scores.markets))
    pools: list[PoolResult] = []
    for market in markets:
        acc = scores.markets.get(market, MarketAccumulator(market))
        pool = terms.score_pools.get(market, 0) if paid else 0
        pools.append(
            _pool_result(
                market=market,
                pool=pool,
                snapshots=acc.snapshots,
                weights=scores.totals(market),
                authority_of=acc.authority_of,
                participants=terms.participants,
            )
        )
    volume = dict(maker_volume)
    pools.append(
        _pool_result(
            market=VOLUME,
            pool=terms.volume_pool if paid else 0,
            snapshots=0,
            weights=volume,
            authority_of={a: a for a in volume},
            participants=terms.participants,
        )
    )
    return WeekResult(
        week=terms.week,
        method=method,
        params_hash=params_hash,
        paused=terms.paused,
        pause_reason=terms.pause_reason,
        pools=tuple(pools),
    )
