"""Properties of the scoring rules that must hold for every book and every week (hypothesis)."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from hypothesis import given
from hypothesis import strategies as st

from driftsnap import protocol
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import brackets, methods, payouts, settlement
from tests.books import PRICE, key, make, order

if TYPE_CHECKING:
    import random

M = methods.DRIFT_2023_08
ORACLE = 100 * PRICE
FLOOR = 50 * protocol.BASE_PRECISION  # $5000 at $100
MAKERS = [f"maker-{i}" for i in range(6)]


@st.composite
def orders(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 10**13, min_count: int = 0
) -> list[book_mod.Order]:
    """Up to 40 orders of up to 6 makers within 150 bps of $100 on both sides."""
    n = draw(st.integers(min_value=min_count, max_value=40))
    out = []
    for i in range(n):
        side = draw(st.sampled_from(["bid", "ask"]))
        distance = draw(st.integers(min_value=0, max_value=1_500_000))  # micro-$ from $100
        price = ORACLE - distance if side == "bid" else ORACLE + distance
        size = draw(st.integers(min_value=min_size, max_value=max_size))
        maker = draw(st.sampled_from(MAKERS))
        out.append(order(maker, side, price, size, order_id=i))
    return out


@given(orders(), st.randoms(use_true_random=False))
def test_scores_do_not_depend_on_the_order_of_the_input(
    book_orders: list[book_mod.Order], rng: random.Random
) -> None:
    """Shuffling a book's orders leaves every score bit-for-bit unchanged."""
    shuffled = book_orders[:]
    rng.shuffle(shuffled)
    assert brackets.score(make(book_orders), M).scores == brackets.score(make(shuffled), M).scores


@given(orders(min_size=2, min_count=1), st.data())
def test_splitting_an_order_in_two_at_the_same_price_changes_nothing(
    book_orders: list[book_mod.Order], data: st.DataObject
) -> None:
    """An order split into two orders of the same maker, side and price scores identically."""
    i = data.draw(st.integers(min_value=0, max_value=len(book_orders) - 1))
    o = book_orders[i]
    part = data.draw(st.integers(min_value=1, max_value=o.size - 1))
    halves = [
        book_mod.Order(o.user, o.authority, o.side, o.price, part, o.order_id),
        book_mod.Order(o.user, o.authority, o.side, o.price, o.size - part, o.order_id + 1000),
    ]
    split = [*book_orders[:i], *halves, *book_orders[i + 1 :]]
    assert brackets.score(make(book_orders), M).scores == brackets.score(make(split), M).scores


@given(orders(min_size=FLOOR + 1), st.integers(min_value=2, max_value=1000))
def test_scaling_every_size_leaves_scores_unchanged_above_the_floor(
    book_orders: list[book_mod.Order], k: int
) -> None:
    """With every non-empty bracket above the $5000 floor, scaling sizes by k changes no score."""
    scaled = [
        book_mod.Order(o.user, o.authority, o.side, o.price, o.size * k, o.order_id)
        for o in book_orders
    ]
    before = brackets.score(make(book_orders), M)
    after = brackets.score(make(scaled), M)
    assert before.scores.keys() == after.scores.keys()
    for maker, value in before.scores.items():
        assert abs(after.scores[maker] - value) <= 1e-9 * max(1.0, value)


@given(orders(max_size=10**12))
def test_no_maker_scores_more_than_100_times_the_sum_of_weights(
    book_orders: list[book_mod.Order],
) -> None:
    """A maker's score never exceeds 100 * sum(w) = 765, and is never negative."""
    for value in brackets.score(make(book_orders), M).scores.values():
        assert 0.0 <= value <= 765.0


@given(st.lists(orders(max_size=10**12), min_size=1, max_size=12), st.integers(0, 12))
def test_splitting_a_week_into_two_halves_gives_the_same_totals(
    snapshots: list[list[book_mod.Order]], cut: int
) -> None:
    """Aggregating two halves of a week and merging equals aggregating it whole, bit for bit."""
    scored = [brackets.score(make(s), M) for s in snapshots]
    for aggregation in ("sum", "normalized"):
        whole, first, second = (settlement.WeekAccumulator(aggregation) for _ in range(3))
        for s in scored:
            whole.add(s)
        for s in scored[:cut]:
            first.add(s)
        for s in scored[cut:]:
            second.add(s)
        first.merge(second)
        assert first.totals("SOL-PERP") == whole.totals("SOL-PERP")
        assert first.markets["SOL-PERP"].snapshots == len(snapshots)


weights = st.dictionaries(
    st.sampled_from([key(m) for m in MAKERS]),
    st.one_of(
        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
        st.integers(min_value=0, max_value=10**15),
    ),
)


@given(weights, st.integers(min_value=0, max_value=10**13), st.sets(st.sampled_from(MAKERS)))
def test_shares_sum_to_one_and_payouts_to_the_pool_over_participants(
    w: dict[str, float | int], pool: int, registered: set[str]
) -> None:
    """Over participants, shares sum to exactly 1 and payouts to exactly the pool, each within 1."""
    participants = settlement.Participants(registered=frozenset(key(m) for m in registered))
    eligible = {m: v for m, v in w.items() if participants.includes(m)}
    amounts = payouts.allocate(pool, eligible)
    shares = payouts.shares(eligible)
    if any(v > 0 for v in eligible.values()):
        assert sum(shares.values()) == 1
        assert sum(amounts.values()) == pool
        for m, amount in amounts.items():
            assert abs(amount - pool * shares[m]) < 1
    else:
        assert amounts == {}
        assert shares == {}
    assert set(amounts) <= {key(m) for m in registered}
    assert all(isinstance(a, int) and a >= 0 for a in amounts.values())
    assert all(isinstance(s, Fraction) for s in shares.values())
