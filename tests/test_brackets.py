"""Method drift-2023-08: the program's worked examples, band edges and the formula's corners."""

from __future__ import annotations

import pytest

from driftsnap.errors import ScoringError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import brackets, methods
from tests import books
from tests.books import PRICE, key, make, order, usd_size

M = methods.DRIFT_2023_08
BEST_BID = 99_990_000
BEST_ASK = 100_010_000
FIVE_K = usd_size(5000)  # $5000 at the $100 oracle = 50 base units


def _offset(best: int, bps: int, side: str) -> int:
    """A price exactly ``bps`` behind ``best`` (the test prices keep this an integer)."""
    delta, rest = divmod(best * bps, 10_000)
    assert rest == 0
    return best - delta if side == "bid" else best + delta


def _worked_book(*, with_maker_2: bool, with_maker_3: bool) -> list[book_mod.Order]:
    orders = [order("m1", "bid", BEST_BID, FIVE_K), order("m1", "ask", BEST_ASK, FIVE_K)]
    if with_maker_2:
        # Mid-band distances of brackets B..F, measured from each side's best.
        for bps in (3, 8, 15, 35, 75):
            orders.append(order("m2", "bid", BEST_BID - 9_999 * bps, FIVE_K))
            orders.append(order("m2", "ask", BEST_ASK + 10_001 * bps, FIVE_K))
    if with_maker_3:
        orders.append(order("m3", "bid", BEST_BID, FIVE_K))
    return orders


def test_worked_example_1_single_maker_at_the_top_scores_400() -> None:
    """Example 1: $5000 at the best bid and at the best ask alone scores exactly 400."""
    result = brackets.score(make(_worked_book(with_maker_2=False, with_maker_3=False)), M)
    assert result.scores == {key("m1"): 400.0}


def test_worked_example_2_second_maker_in_brackets_b_to_f_scores_365() -> None:
    """Example 2: $5000 per side in each of B-F scores (2+.75+.4+.3+.2)*100 = 365; m1 keeps 400."""
    result = brackets.score(make(_worked_book(with_maker_2=True, with_maker_3=False)), M)
    assert result.scores == {key("m1"): 400.0, key("m2"): 365.0}


def test_worked_example_3_extra_bid_in_a_halves_the_top_bracket() -> None:
    """Example 3: a third maker's $5000 bid in A makes Q(A)=10000/P, V(A)=200: 150, 50, 365."""
    result = brackets.score(make(_worked_book(with_maker_2=True, with_maker_3=True)), M)
    assert result.scores == {key("m1"): 150.0, key("m2"): 365.0, key("m3"): 50.0}
    a = result.brackets[0]
    assert (a.name, a.total_bid, a.total_ask) == ("A", 2 * FIVE_K, FIVE_K)
    assert a.q == 100.0
    assert a.value == 200.0


def test_worked_example_4_order_150_bps_behind_scores_nothing() -> None:
    """Example 4: an order 150 bps behind its side's best is in no bracket and scores 0."""
    far = order("far", "bid", BEST_BID - 9_999 * 150, FIVE_K)
    result = brackets.score(make([*_worked_book(with_maker_2=False, with_maker_3=False), far]), M)
    assert result.scores[key("far")] == 0.0
    assert result.scores[key("m1")] == 400.0
    assert all(key("far") not in b.maker_bid for b in result.brackets)


EDGES = [
    (1, "A", "B"),
    (5, "B", "C"),
    (10, "C", "D"),
    (20, "D", "E"),
    (50, "E", "F"),
    (100, "F", None),
]


@pytest.mark.parametrize(("bps", "inside", "beyond"), EDGES)
@pytest.mark.parametrize("side", ["bid", "ask"])
def test_band_edges_are_inclusive_and_one_tick_beyond_is_the_next_bracket(
    bps: int, inside: str, beyond: str | None, side: str
) -> None:
    """An order exactly k bps behind the best is in the bracket ending at k; one unit more isn't."""
    best = 100 * PRICE
    at_edge = _offset(best, bps, side)
    one_tick = at_edge - 1 if side == "bid" else at_edge + 1
    book = make(
        [
            order("top", side, best, FIVE_K),
            order("edge", side, at_edge, FIVE_K),
            order("beyond", side, one_tick, FIVE_K),
        ]
    )
    result = brackets.score(book, M)
    cells = {b.name: (b.maker_bid if side == "bid" else b.maker_ask) for b in result.brackets}
    holding = {name: set(c) for name, c in cells.items()}
    assert key("edge") in holding[inside]
    assert key("beyond") not in holding[inside]
    if beyond is None:
        assert all(key("beyond") not in h for h in holding.values())
    else:
        assert key("beyond") in holding[beyond]


def test_membership_is_exact_where_float_distance_rounds_across_the_edge() -> None:
    """Membership is decided in integers even where the edge is not a whole micro-dollar."""
    best = 3 * PRICE + 7  # 3.000007: 1 bp of it is 300.0007 micro-units, not an integer
    just_beyond = best - 301  # exact distance 301/3000007*10000 = 1.0033 bps > 1
    just_inside = best - 300  # 0.99999 bps <= 1
    result = brackets.score(
        make(
            [
                order("top", "bid", best, 10**12),
                order("in", "bid", just_inside, 10**12),
                order("out", "bid", just_beyond, 10**12),
            ],
            oracle_price=3 * PRICE,
        ),
        M,
    )
    a, b = result.brackets[0], result.brackets[1]
    assert key("in") in a.maker_bid
    assert key("out") in b.maker_bid


def test_one_sided_book_scores_zero_without_dividing_by_zero() -> None:
    """A bracket with liquidity on one side only has V = 0; an empty side's terms are 0, not NaN."""
    result = brackets.score(make([order("bids-only", "bid", BEST_BID, FIVE_K)]), M)
    assert result.scores == {key("bids-only"): 0.0}
    assert result.best_ask is None
    assert [b.value for b in result.brackets] == [0.0] * 6


def test_empty_book_has_no_makers_and_no_best_prices() -> None:
    """An empty book yields no scores and reports both best prices as absent."""
    result = brackets.score(make([]), M)
    assert result.scores == {}
    assert (result.best_bid, result.best_ask) == (None, None)


def test_q_has_a_floor_of_5000_dollars_at_the_oracle_price() -> None:
    """Below $5000 per side the floor sets Q: $2500 each side at the top scores 200, not 400."""
    half = usd_size(2500)
    result = brackets.score(
        make([order("small", "bid", BEST_BID, half), order("small", "ask", BEST_ASK, half)]), M
    )
    assert result.brackets[0].q == 50.0
    assert result.scores[key("small")] == 200.0


def test_adding_size_on_the_deeper_side_can_lower_a_makers_own_score() -> None:
    """More size on the already-deeper side grows Q and lowers V: the maker drops 400 -> 133.3."""
    before = brackets.score(make(_worked_book(with_maker_2=False, with_maker_3=False)), M)
    more = order("m1", "bid", BEST_BID, 2 * FIVE_K)
    after = brackets.score(make([*_worked_book(with_maker_2=False, with_maker_3=False), more]), M)
    assert before.scores[key("m1")] == 400.0
    assert after.scores[key("m1")] == pytest.approx(400.0 / 3, rel=1e-15)


def test_sum_side_combination_doubles_every_score() -> None:
    """side_combination='sum' (Drift's code, no 1/2) doubles scores and so changes no share."""
    summed = M.model_copy(update={"side_combination": "sum", "name": "drift-2023-08-sum"})
    book = make(_worked_book(with_maker_2=True, with_maker_3=True))
    mean, total = brackets.score(book, M), brackets.score(book, summed)
    assert {m: 2 * s for m, s in mean.scores.items()} == total.scores
    assert mean.params_hash != total.params_hash


def test_maker_key_user_scores_sub_accounts_separately() -> None:
    """With maker_key=user two sub-accounts of one wallet are two makers of one authority."""
    per_user = M.model_copy(update={"maker_key": "user", "name": "per-user"})
    book = make(
        [
            order("desk", "bid", BEST_BID, FIVE_K, user="desk/0"),
            order("desk", "ask", BEST_ASK, FIVE_K, user="desk/1"),
        ]
    )
    by_user = brackets.score(book, per_user)
    by_authority = brackets.score(book, M)
    assert by_user.scores == {key("desk/0"): 200.0, key("desk/1"): 200.0}
    assert by_user.authority_of == {key("desk/0"): key("desk"), key("desk/1"): key("desk")}
    assert by_authority.scores == {key("desk"): 400.0}


def test_prices_beyond_int64_products_stay_exact() -> None:
    """Prices so large that 10000*price overflows int64 are still bracketed exactly."""
    best = 2**60
    result = brackets.score(
        make(
            [
                order("top", "bid", best, 10**9),
                order("edge", "bid", best - best // 10_000, 10**9),
                order("beyond", "bid", best - best // 10_000 - 1, 10**9),
            ],
            oracle_price=best,
        ),
        M,
    )
    assert key("edge") in result.brackets[0].maker_bid
    assert key("beyond") in result.brackets[1].maker_bid


def test_nonpositive_oracle_price_is_refused() -> None:
    """A book without a positive oracle price cannot be scored (the $5000 floor needs it)."""
    with pytest.raises(ScoringError, match="oracle price must be positive"):
        brackets.score(books.make([], oracle_price=0), M)
