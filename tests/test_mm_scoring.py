"""The mm-scoring port (spec 2.2) against books scored by hand from ``src/liquidityScore.ts``.

Figures in the comments follow the TS step by step: best bid/ask (oracle fallback, crossed clamp),
``mark``, band edges ``best * (1 -/+ m)``, steps ``mark * m``, rounded prices, levels by rank,
``q = max over all levels of max((bs + as) / 2, 5000 / mark)``, level values
``min(bs, as) / q * 100 * multiplier`` and each order's pro-rata share of its level.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from driftsnap import protocol
from driftsnap.errors import ScoringError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import methods, mm_scoring

BID = book_mod.Side.BID
ASK = book_mod.Side.ASK


def _order(
    user: str,
    side: book_mod.Side,
    price_usd: str,
    size_base: str,
    *,
    authority: str | None = None,
    is_vamm: bool = False,
) -> book_mod.Order:
    return book_mod.Order(
        user=user,
        authority=authority if authority is not None else f"auth-{user}",
        side=side,
        price=int(Decimal(price_usd) * protocol.PRICE_PRECISION),
        size=int(Decimal(size_base) * protocol.BASE_PRECISION),
        order_id=1,
        is_vamm=is_vamm,
    )


def _book(orders: list[book_mod.Order], oracle_usd: str = "100") -> book_mod.Book:
    return book_mod.Book(
        market="SOL-PERP",
        market_index=0,
        slot=250_000_000,
        ts=1_700_000_000,
        oracle_price=int(Decimal(oracle_usd) * protocol.PRICE_PRECISION),
        orders=tuple(orders),
    )


def _base(units: int) -> int:
    return units * protocol.BASE_PRECISION


def _mm_method(**changes: str) -> methods.MmScoringMethod:
    """DRIFT_MM_SCORING's parameters under another name, with some fields changed."""
    base = methods.DRIFT_MM_SCORING
    return methods.MmScoringMethod.model_validate(
        {"name": "test", "mbps": base.mbps, "multipliers": base.multipliers, **changes}
    )


# Preset DRIFT_MM_SCORING: mbps 1, 5, 10, 20, 50, 100 bps; multipliers 4, 2, .75, .4, .3, .2.


def test_crossed_book_clamps_bid_above_oracle_to_best_ask() -> None:
    """A crossed book whose best bid is above the oracle takes best_bid = best_ask for the mark."""
    book = _book(
        [
            _order("alice", BID, "100.305", "20"),
            _order("bob", BID, "99.934", "30"),
            _order("carol", ASK, "100.000", "24"),
            _order("alice", ASK, "100.000", "8"),
            _order("dave", ASK, "100.237", "15"),
        ],
        oracle_usd="100",
    )
    # best bid 100.305 > best ask 100.000: crossed; 100.305 > oracle 100, so bestBid := 100.000.
    # mark = (100 + 100) / 2 = 100; steps 100 * m = .01, .05, .1, .2, .5, 1.
    # Bid edges 100 * (1 - m) = 99.99, 99.95, 99.9, 99.8, 99.5, 99:
    #   alice 100.305 >= 99.99 -> step .01 -> floor(10030.5) = 10030 -> 100.30
    #   bob    99.934 first >= 99.9 -> step .1 -> floor(999.34) = 999 -> 99.9
    # Ask edges 100 * (1 + m) = 100.01, 100.05, 100.1, 100.2, 100.5, 101:
    #   carol, alice 100.000 <= 100.01 -> step .01 -> ceil(10000) -> 100.00 (100/.01 is exact)
    #   dave 100.237 first <= 100.5 -> step .5 -> ceil(200.474) = 201 -> 100.5
    # Levels: A bid 100.30 (20) / ask 100.00 (24 + 8 = 32); B bid 99.9 (30) / ask 100.5 (15).
    # q = max((20+32)/2 = 26, (30+15)/2 = 22.5, 5000/100 = 50) = 50.
    # Values: A = 20/50*100*4 = 160; B = 15/50*100*2 = 60.
    # alice = 20/20*160 + 8/32*160 = 160 + 40 = 200; carol = 24/32*160 = 120; bob = dave = 60.
    # (Without the clamp, mark = 100.1525 and q = 5000/100.1525, so every score would differ.)
    got = mm_scoring.score(book, methods.DRIFT_MM_SCORING)

    assert got.scores == pytest.approx(
        {"alice": 200.0, "bob": 60.0, "carol": 120.0, "dave": 60.0}, rel=1e-12
    )
    assert (got.best_bid, got.best_ask) == (100_305_000, 100_000_000)
    a, b = got.brackets
    assert (a.name, a.weight, b.name, b.weight) == ("A", 4.0, "B", 2.0)
    assert (a.total_bid, a.total_ask, b.total_bid, b.total_ask) == (
        _base(20),
        _base(32),
        _base(30),
        _base(15),
    )
    assert a.maker_ask == {"alice": _base(8), "carol": _base(24)}
    assert b.maker_bid == {"bob": _base(30)}
    assert [a.q, a.value, b.q, b.value] == pytest.approx([50.0, 160.0, 50.0, 60.0], rel=1e-12)
    assert [a.bid_price, a.ask_price, b.bid_price, b.ask_price] == pytest.approx(
        [100.30, 100.00, 99.9, 100.5], rel=1e-12
    )


def test_crossed_book_clamps_ask_when_bid_not_above_oracle() -> None:
    """A crossed book whose best bid is at or below the oracle takes best_ask = best_bid."""
    book = _book(
        [_order("pat", BID, "100.305", "20"), _order("rex", ASK, "100.000", "24")],
        oracle_usd="101",
    )
    # 100.305 > 100.000 crossed; 100.305 <= oracle 101, so bestAsk := 100.305; mark = 100.305.
    # One level per side (each side has one order). q = max((20+24)/2 = 22, 5000/100.305).
    # 5000/100.305 = 49.8479... > 22, so q = 5000/100.305.
    # Value A = 20/q*100*4 = 20*100.305/5000*400 = 160.488; each maker owns its side: 160.488.
    got = mm_scoring.score(book, methods.DRIFT_MM_SCORING)

    assert got.scores == pytest.approx({"pat": 160.488, "rex": 160.488}, rel=1e-12)


def test_empty_ask_side_takes_oracle_and_scores_nothing() -> None:
    """An empty side takes the oracle price for mark and grid, and every level is worth 0."""
    book = _book(
        [
            _order("erin", BID, "49.90", "40"),
            _order("frank", BID, "49.70", "60"),
            _order("gina", BID, "40.0002", "100"),
        ],
        oracle_usd="50",
    )
    # No asks: bestAsk := oracle 50. best bid 49.90 < 50, not crossed. mark = (49.9+50)/2 = 49.95.
    # Steps 49.95 * m = .004995, .024975, .04995, .0999, .24975, .4995; fallback .0005.
    # Bid edges 49.9 * (1 - m) = 49.89501, 49.87505, 49.8501, 49.8002, 49.6505, 49.401:
    #   erin  49.90 >= 49.89501 -> step .004995 -> floor(9989.99) = 9989 -> 49.895055
    #   frank 49.70 first >= 49.6505 -> step .24975 -> floor(198.999) = 198 -> 49.4505
    #   gina  40.0002 below every edge -> step .0005 -> floor(80000.4) = 80000 -> 40.0
    # Levels: A 49.895055 (40), B 49.4505 (60), C 40.0 (100); asks pad with 0.
    # q = max(40/2, 60/2, 100/2, 5000/49.95 = 100.1001...) = 5000/49.95.
    # Values: min(bs, 0) = 0 at every level, so every maker scores 0.
    got = mm_scoring.score(book, methods.DRIFT_MM_SCORING)

    assert got.scores == {"erin": 0.0, "frank": 0.0, "gina": 0.0}
    assert (got.best_bid, got.best_ask) == (49_900_000, None)
    assert [b.name for b in got.brackets] == ["A", "B", "C"]
    assert [b.bid_price for b in got.brackets] == pytest.approx(
        [49.895055, 49.4505, 40.0], rel=1e-12
    )
    assert [b.ask_price for b in got.brackets] == [None, None, None]
    assert [b.total_ask for b in got.brackets] == [0, 0, 0]
    assert [b.value for b in got.brackets] == [0.0, 0.0, 0.0]
    assert [b.q for b in got.brackets] == pytest.approx([100.1001001001001] * 3, rel=1e-12)
    assert got.brackets[2].maker_bid == {"gina": _base(100)}


def test_eight_levels_q_over_all_levels_and_levels_past_six_score_zero() -> None:
    """q is the max over every level (not the top six), and levels past the sixth are worth 0."""
    bid_prices = ["99.993", "99.985", "99.975", "99.915", "99.85", "99.65", "99.25", "98.12345"]
    ask_prices = ["100.007", "100.015", "100.025", "100.085", "100.15", "100.35", "100.75"]
    ask_prices.append("101.87655")
    # Sizes: every level bid 10 / ask 20, except the eighth: 500 / 500.
    orders = [
        _order(f"b{i}", BID, p, "500" if i == 7 else "10") for i, p in enumerate(bid_prices)
    ] + [_order(f"a{i}", ASK, p, "500" if i == 7 else "20") for i, p in enumerate(ask_prices)]
    # best bid 99.993, best ask 100.007; mark = 100.0 (exact); steps .01 .05 .1 .2 .5 1.
    # Bid edges 99.993*(1-m) = 99.983, 99.943, 99.893, 99.793, 99.493, 98.993 (rounded here):
    #   b0 99.993 step .01 -> floor(9999.3) -> 99.99     b1 99.985 step .01 -> 9998 -> 99.98
    #   b2 99.975 step .05 -> floor(1999.5) -> 99.95     b3 99.915 step .1 -> 999 -> 99.9
    #   b4 99.85  step .2  -> floor(499.25) -> 99.8      b5 99.65 step .5 -> 199 -> 99.5
    #   b6 99.25  step 1   -> floor(99.25)  -> 99        b7 98.12345 fallback .0005 -> 98.123
    # Ask edges 100.007*(1+m) = 100.017, 100.057, 100.107, 100.207, 100.507, 101.017:
    #   a0 100.007 step .01 -> ceil(10000.7) -> 100.01   a1 100.015 step .01 -> 10002 -> 100.02
    #   a2 100.025 step .05 -> ceil(2000.5) -> 100.05    a3 100.085 step .1 -> 1001 -> 100.1
    #   a4 100.15  step .2  -> ceil(500.75) -> 100.2     a5 100.35 step .5 -> 201 -> 100.5
    #   a6 100.75  step 1   -> ceil(100.75) -> 101       a7 101.87655 fallback -> 101.877
    # Eight levels per side, paired by rank. (bs+as)/2 = 15 for levels 1-7, 500 for level 8.
    # q = max(15, 500, 5000/100 = 50) = 500 (the first commit's top-six cut would give 50).
    # Values i < 6: 10/500*100*w = 2w = 8, 4, 1.5, .8, .6, .4; levels 7 and 8 have weight 0.
    # Each order is alone on its side of its level: b_i = a_i = 2 * w_i.
    got = mm_scoring.score(_book(orders), methods.DRIFT_MM_SCORING)

    expected = dict.fromkeys([f"{s}{i}" for s in "ab" for i in range(8)], 0.0)
    for i, v in enumerate([8.0, 4.0, 1.5, 0.8, 0.6, 0.4]):
        expected[f"a{i}"] = expected[f"b{i}"] = v
    assert got.scores == pytest.approx(expected, rel=1e-12)
    assert got.scores["b6"] == got.scores["a7"] == 0.0
    assert [b.name for b in got.brackets] == ["A", "B", "C", "D", "E", "F"]
    assert [b.q for b in got.brackets] == pytest.approx([500.0] * 6, rel=1e-12)
    assert [b.bid_price for b in got.brackets] == pytest.approx(
        [99.99, 99.98, 99.95, 99.9, 99.8, 99.5], rel=1e-12
    )
    assert [b.ask_price for b in got.brackets] == pytest.approx(
        [100.01, 100.02, 100.05, 100.1, 100.2, 100.5], rel=1e-12
    )


def _two_level_book() -> book_mod.Book:
    return _book(
        [
            _order("x", BID, "99.993", "50"),
            _order("y", BID, "99.66", "50"),
            _order("z", ASK, "100.007", "50"),
            _order("w", ASK, "100.34", "50"),
        ]
    )


def test_first_commit_preset_scores_two_level_book() -> None:
    """DRIFT_MM_SCORING: Aug-2023 bands and weights 4, 2 on a two-level book."""
    # mark = (99.993 + 100.007)/2 = 100; steps .01 .05 .1 .2 .5 1.
    # x 99.993 step .01 -> 99.99; y 99.66 first >= 99.493 (50 bps) -> step .5 -> 199.32 -> 99.5.
    # z 100.007 step .01 -> 100.01; w 100.34 first <= 100.507 (50 bps) -> .5 -> 200.68 -> 100.5.
    # q = max(50, 50, 5000/100 = 50) = 50; A = 50/50*100*4 = 400, B = 50/50*100*2 = 200.
    got = mm_scoring.score(_two_level_book(), methods.DRIFT_MM_SCORING)

    assert got.scores == pytest.approx({"w": 200.0, "x": 400.0, "y": 200.0, "z": 400.0}, rel=1e-12)
    assert [got.brackets[1].bid_price, got.brackets[1].ask_price] == pytest.approx(
        [99.5, 100.5], rel=1e-12
    )


def test_head_preset_scores_same_book_differently() -> None:
    """DRIFT_POINTS_2024_01: HEAD's bands (2.5-40 bps) and weights 8, 4 change grid and scores."""
    # mbps .00025 .0005 .001 .002 .003 .004 -> steps .025 .05 .1 .2 .3 .4 at mark 100.
    # x 99.993 >= 99.993*(1-.00025) -> .025 -> floor(3999.72) -> 99.975.
    # y 99.66: edges 99.968 99.943 99.893 99.793 99.693 99.593 -> first at 40 bps -> step .4
    #   -> floor(249.15) = 249 -> 99.6.
    # z 100.007 -> .025 -> ceil(4000.28) -> 100.025.
    # w 100.34 first <= 100.407 (40 bps) -> step .4 -> ceil(250.85) = 251 -> 100.4.
    # q = 50; A = 50/50*100*8 = 800, B = 50/50*100*4 = 400.
    got = mm_scoring.score(_two_level_book(), methods.DRIFT_POINTS_2024_01)

    assert got.scores == pytest.approx({"w": 400.0, "x": 800.0, "y": 400.0, "z": 800.0}, rel=1e-12)
    assert [got.brackets[1].bid_price, got.brackets[1].ask_price] == pytest.approx(
        [99.6, 100.4], rel=1e-12
    )
    assert got.params_hash != methods.DRIFT_MM_SCORING.params_hash


def _one_authority_book() -> book_mod.Book:
    return _book(
        [
            _order("u1", BID, "99.993", "50", authority="wallet"),
            _order("u2", ASK, "100.007", "50", authority="wallet"),
        ]
    )


def test_makers_are_keyed_by_user_account() -> None:
    """Two User accounts of one authority score separately under maker_key = user."""
    # mark 100, q = max(50, 5000/100) = 50; level A = 50/50*100*4 = 400.
    # u1 owns the bid side of A, u2 the ask side: 400 each.
    got = mm_scoring.score(_one_authority_book(), methods.DRIFT_MM_SCORING)

    assert got.scores == pytest.approx({"u1": 400.0, "u2": 400.0}, rel=1e-12)
    assert got.authority_of == {"u1": "wallet", "u2": "wallet"}


def test_maker_key_authority_adds_sub_accounts() -> None:
    """Under maker_key = authority the two User accounts add up to one maker."""
    got = mm_scoring.score(_one_authority_book(), _mm_method(maker_key="authority"))

    assert got.scores == pytest.approx({"wallet": 800.0}, rel=1e-12)


def test_side_combination_mean_halves_scores() -> None:
    """side_combination = mean multiplies each maker's sum over both sides by 1/2."""
    got = mm_scoring.score(_one_authority_book(), _mm_method(side_combination="mean"))

    assert got.scores == pytest.approx({"u1": 200.0, "u2": 200.0}, rel=1e-12)


def test_vamm_orders_are_dropped_unless_included() -> None:
    """vAMM liquidity is ignored by default and joins the levels when include_vamm is set."""
    orders = [
        _order("m", BID, "99.993", "50"),
        _order("m", ASK, "100.007", "50"),
        _order("vamm", ASK, "100.004", "50", is_vamm=True),
    ]
    # Without the vAMM: as test_makers_are_keyed_by_user_account, m = 400 + 400 = 800.
    # With it: best ask 100.004, mark = 99.9985, step .00999985 for both asks:
    #   vamm 100.004 -> ceil(10000.55) = 10001; m 100.007 -> ceil(10000.85) = 10001: one level.
    # q = max((50+100)/2 = 75, 5000/99.9985 = 50.0008) = 75; A = 50/75*100*4 = 800/3.
    # m = 800/3 (bid) + 50/100*800/3 (ask) = 400; vamm = 400/3.
    excluded = mm_scoring.score(_book(orders), methods.DRIFT_MM_SCORING)
    included = mm_scoring.score(_book(orders), _mm_method(include_vamm="true"))

    assert excluded.scores == pytest.approx({"m": 800.0}, rel=1e-12)
    assert excluded.best_ask == 100_007_000
    assert included.scores == pytest.approx({"m": 400.0, "vamm": 400.0 / 3}, rel=1e-12)
    assert included.best_ask == 100_004_000


def test_scores_do_not_depend_on_order_listing() -> None:
    """Shuffling a book's orders gives exactly the same scores and levels."""
    rng = random.Random(20240126)
    users = [rng.randrange(40) for _ in range(600)]
    orders = [
        book_mod.Order(
            user=f"u{u}",
            authority=f"a{u % 10}",
            side=book_mod.Side(rng.randrange(2)),
            price=rng.randrange(98_000_000, 102_000_000),
            size=rng.randrange(1, 10**12),
            order_id=i,
        )
        for i, u in enumerate(users)
    ]
    book = _book(orders)
    shuffled = list(orders)
    rng.shuffle(shuffled)

    for method in (methods.DRIFT_MM_SCORING, methods.DRIFT_POINTS_2024_01):
        first = mm_scoring.score(book, method)
        assert first.total > 0
        assert mm_scoring.score(_book(shuffled), method) == first


def test_every_maker_is_listed_even_with_no_score() -> None:
    """A maker whose only level has no opposite side still appears, with 0.0."""
    book = _book(
        [
            _order("m", BID, "99.993", "50"),
            _order("m", ASK, "100.007", "50"),
            _order("far", BID, "95", "5"),
        ]
    )
    # Bid levels 99.99 (m) and 95.0 (far); one ask level, so level B's min(5, 0) = 0.
    got = mm_scoring.score(book, methods.DRIFT_MM_SCORING)

    assert got.scores["far"] == 0.0
    assert set(got.scores) == {"m", "far"}
    assert got.brackets[1].maker_bid == {"far": _base(5)}
    assert got.brackets[1].maker_ask == {}
    assert got.brackets[1].ask_price is None


def test_empty_book_scores_nothing() -> None:
    """An empty book yields no scores, no levels and no best prices."""
    got = mm_scoring.score(_book([]), methods.DRIFT_MM_SCORING)

    assert got.scores == {}
    assert got.brackets == ()
    assert (got.best_bid, got.best_ask) == (None, None)
    assert got.method == "drift-mm-scoring"


def test_non_positive_size_is_refused() -> None:
    """An order with no remaining size cannot be scored and raises ScoringError."""
    book = _book([_order("m", BID, "99.993", "0"), _order("m", ASK, "100.007", "1")])

    with pytest.raises(ScoringError, match="positive price and size"):
        mm_scoring.score(book, methods.DRIFT_MM_SCORING)


def test_empty_side_without_oracle_is_refused() -> None:
    """A one-sided book with a zero oracle price has no mark and raises ScoringError."""
    book = _book([_order("m", BID, "99.993", "1")], oracle_usd="0")

    with pytest.raises(ScoringError, match="oracle price"):
        mm_scoring.score(book, methods.DRIFT_MM_SCORING)
