"""The program week: ISO weeks, exact aggregation, participants, forfeits, pauses, payouts."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftsnap import calendar
from driftsnap.errors import InputError, ScoringError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import brackets, methods, result, settlement
from tests.books import key, make, order, usd_size

M = methods.DRIFT_2023_08
W = calendar.Week.parse("2026-W47")
FIVE_K = usd_size(5000)


def test_week_runs_monday_to_monday_utc() -> None:
    """2026-W47 starts Monday 16 Nov 2026 00:00 UTC and ends (exclusive) on Monday 23 Nov."""
    assert W.start == datetime(2026, 11, 16, tzinfo=UTC)
    assert W.end == datetime(2026, 11, 23, tzinfo=UTC)
    assert str(W) == "2026-W47"


def test_week_containing_uses_utc_and_iso_year_boundaries() -> None:
    """Sunday 23:59 UTC belongs to the week, Monday 00:00 to the next; ISO years roll correctly."""
    assert calendar.Week.containing(datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC)) == W
    assert calendar.Week.containing(datetime(2026, 11, 23, tzinfo=UTC)) == W.next()
    assert calendar.Week.containing(datetime(2027, 1, 1, tzinfo=UTC)) == calendar.Week(2026, 53)
    assert calendar.Week(2026, 53).next() == calendar.Week(2027, 1)
    assert calendar.Week.last_completed(datetime(2026, 11, 21, 14, 0, tzinfo=UTC)) == W.previous()


@pytest.mark.parametrize("text", ["2026-47", "2026-W5", "W47", "2025-W53", ""])
def test_bad_week_names_are_refused(text: str) -> None:
    """Malformed names and weeks that do not exist (2025 has 52) raise a clear InputError."""
    with pytest.raises(InputError):
        calendar.Week.parse(text)


def test_exact_sum_is_independent_of_order_and_grouping() -> None:
    """ExactSum returns the correctly rounded sum whatever the order or split of the values."""
    rng = random.Random(5)
    values = [rng.uniform(0, 765) * 10 ** rng.randint(-8, 3) for _ in range(2_000)]
    forward = settlement.ExactSum(values).value
    shuffled = values[:]
    rng.shuffle(shuffled)
    left, right = settlement.ExactSum(shuffled[:777]), settlement.ExactSum(shuffled[777:])
    left.merge(right)
    assert forward == settlement.ExactSum(shuffled).value == left.value
    assert forward == float(sum(Fraction(v) for v in values))


def _score(orders: list[book_mod.Order]) -> result.SnapshotScore:
    return brackets.score(make(orders), M)


TOP = [order("m1", "bid", 99_990_000, FIVE_K), order("m1", "ask", 100_010_000, FIVE_K)]
SHARED = [*TOP, order("m2", "bid", 99_990_000, FIVE_K), order("m2", "ask", 100_010_000, FIVE_K)]


def test_sum_aggregation_adds_snapshot_scores_per_market() -> None:
    """MMScore is the sum of a maker's snapshot scores; the count of snapshots is kept."""
    acc = settlement.WeekAccumulator("sum")
    acc.add(_score(TOP))  # m1 400
    acc.add(_score(SHARED))  # m1 200, m2 200
    assert acc.totals("SOL-PERP") == {key("m1"): 600.0, key("m2"): 200.0}
    assert acc.markets["SOL-PERP"].snapshots == 2


def test_normalized_aggregation_adds_per_snapshot_shares() -> None:
    """Aggregation 'normalized' adds each snapshot's share of all makers' scores instead."""
    acc = settlement.WeekAccumulator("normalized")
    acc.add(_score(TOP))
    acc.add(_score(SHARED))
    assert acc.totals("SOL-PERP") == {key("m1"): 1.5, key("m2"): 0.5}


def test_snapshots_of_two_parameter_sets_cannot_be_mixed() -> None:
    """A week's totals carry one params_hash; adding a snapshot of another method is refused."""
    acc = settlement.WeekAccumulator()
    acc.add(_score(TOP))
    other = M.model_copy(update={"name": "other", "side_combination": "sum"})
    with pytest.raises(ScoringError, match="two parameter sets"):
        acc.add(brackets.score(make(TOP), other))


def _terms(
    *,
    participants: settlement.Participants | None = None,
    paused: bool = False,
    pause_reason: str = "",
) -> settlement.WeekTerms:
    return settlement.WeekTerms(
        week=W,
        score_pools={"SOL-PERP": 500_000_000, "BTC-PERP": 500_000_000, "SUI-PERP": 0},
        volume_pool=1_500_000_000,
        participants=participants or settlement.Participants(),
        paused=paused,
        pause_reason=pause_reason,
    )


def _settle(
    terms: settlement.WeekTerms, acc: settlement.WeekAccumulator, volume: dict[str, int]
) -> settlement.WeekResult:
    return settlement.settle(terms, acc, volume, method=M.name, params_hash=M.params_hash)


def test_settle_pays_each_pool_exactly_and_reports_unallocated_pools() -> None:
    """SOL pays 500 USDC by score share, BTC (no snapshot) stays unallocated, volume by volume."""
    acc = settlement.WeekAccumulator()
    acc.add(_score(TOP))
    acc.add(_score(SHARED))
    res = _settle(_terms(), acc, {key("m1"): 3_000_000, key("m2"): 1_000_000})
    pools = {p.market: p for p in res.pools}
    sol = pools["SOL-PERP"]
    assert {m.maker: m.reward for m in sol.makers} == {
        key("m1"): 375_000_000,
        key("m2"): 125_000_000,
    }
    assert sol.paid == 500_000_000
    assert pools["BTC-PERP"].unallocated == 500_000_000
    assert pools[settlement.VOLUME].paid == 1_500_000_000
    assert res.payouts() == {
        key("m1"): 375_000_000 + 1_125_000_000,
        key("m2"): 125_000_000 + 375_000_000,
    }
    assert res.unallocated == 500_000_000


def test_non_participants_count_in_the_book_but_share_nothing() -> None:
    """A registered set excludes others from the shares; their liquidity still shaped the scores."""
    acc = settlement.WeekAccumulator()
    acc.add(_score(SHARED))  # m1 200, m2 200: m2's liquidity halves m1's score
    terms = _terms(participants=settlement.Participants(registered=frozenset({key("m1")})))
    res = _settle(terms, acc, {key("m1"): 5, key("m2"): 5})
    sol = next(p for p in res.pools if p.market == "SOL-PERP")
    by_maker = {m.maker: m for m in sol.makers}
    assert by_maker[key("m1")].weight == 200.0
    assert by_maker[key("m1")].share == 1
    assert by_maker[key("m1")].reward == 500_000_000
    assert by_maker[key("m2")].participant is False
    assert by_maker[key("m2")].reward == 0
    assert res.payouts() == {key("m1"): 2_000_000_000}


def test_forfeited_makers_lose_score_and_volume_rewards() -> None:
    """A maker forfeited for the week gets nothing; the others split the whole pools."""
    acc = settlement.WeekAccumulator()
    acc.add(_score(SHARED))
    terms = _terms(participants=settlement.Participants(forfeited=frozenset({key("m2")})))
    res = _settle(terms, acc, {key("m1"): 1, key("m2"): 99})
    assert res.payouts() == {key("m1"): 2_000_000_000}


def test_paused_week_pays_nothing_and_says_so() -> None:
    """A paused week reports every pool at 0 and carries the pause reason."""
    acc = settlement.WeekAccumulator()
    acc.add(_score(TOP))
    res = _settle(_terms(paused=True, pause_reason="holiday"), acc, {key("m1"): 1})
    assert res.paused
    assert res.pause_reason == "holiday"
    assert res.payouts() == {}
    assert all(p.pool == 0 for p in res.pools)


def test_market_with_a_zero_pool_is_reported_but_pays_nothing() -> None:
    """SUI-PERP at pool 0 (from 14 Aug 2023) keeps its scores in the report and pays 0."""
    acc = settlement.WeekAccumulator()
    acc.add(brackets.score(make(TOP, market="SUI-PERP"), M))
    res = _settle(_terms(), acc, {})
    sui = next(p for p in res.pools if p.market == "SUI-PERP")
    assert sui.pool == 0
    assert sui.paid == 0
    assert sui.makers[0].weight == 400.0


def test_payouts_of_user_keyed_makers_add_up_per_authority() -> None:
    """With maker_key=user, sub-accounts score separately and their rewards add up per wallet."""
    per_user = M.model_copy(update={"maker_key": "user", "name": "per-user"})
    book = make(
        [
            order("desk", "bid", 99_990_000, FIVE_K, user="desk/0"),
            order("desk", "ask", 100_010_000, FIVE_K, user="desk/1"),
            order("solo", "bid", 99_990_000, FIVE_K),
            order("solo", "ask", 100_010_000, FIVE_K),
        ]
    )
    acc = settlement.WeekAccumulator()
    acc.add(brackets.score(book, per_user))
    res = settlement.settle(
        _terms(), acc, {}, method=per_user.name, params_hash=per_user.params_hash
    )
    sol = next(p for p in res.pools if p.market == "SOL-PERP")
    assert {m.maker for m in sol.makers} == {key("desk/0"), key("desk/1"), key("solo/0")}
    assert res.payouts() == {key("desk"): 250_000_000, key("solo"): 250_000_000}


@given(st.lists(st.floats(min_value=-1e300, max_value=1e300), max_size=60))
def test_exact_sum_is_fsum_of_every_value(values: list[float]) -> None:
    """Any finite floats (signed zeros, subnormals, up to 1e300 either way): the value math.fsum
    gives, added in one go or in two halves merged. (Near the largest float fsum refuses some
    sums that round to it; a score never comes near.)"""
    expected = _fsum(values)
    assert repr(settlement.ExactSum(values).value) == repr(expected)
    half = len(values) // 2
    left, right = settlement.ExactSum(values[:half]), settlement.ExactSum(values[half:])
    left.merge(right)
    assert repr(left.value) == repr(expected)


def _snapshot(scores: dict[str, float]) -> result.SnapshotScore:
    """A snapshot score of SOL-PERP with ``scores`` (as a method's scorer would hand it over)."""
    method = methods.DRIFT_2023_08
    return result.SnapshotScore(
        method=method.name, params_hash=method.params_hash, market="SOL-PERP", market_index=0,
        slot=1, ts=1, oracle_price=1, best_bid=None, best_ask=None, scores=scores, brackets=(),
        authority_of={m: m for m in scores},
    )  # fmt: skip


_SCORE = st.floats(min_value=-1e300, max_value=1e300)


@given(st.lists(st.dictionaries(st.sampled_from("abcd"), _SCORE, max_size=4), max_size=30))
def test_week_totals_are_fsum_of_each_makers_scores(snapshots: list[dict[str, float]]) -> None:
    """The accumulator's own summing loop gives, per maker, what math.fsum of its snapshot
    scores gives (signed zeros and subnormals included), and lists every maker it was given."""
    acc = settlement.WeekAccumulator()
    for scores in snapshots:
        acc.add(_snapshot(scores))
    makers = {m for scores in snapshots for m in scores}
    got = acc.totals("SOL-PERP")
    assert set(got) == makers
    for m in makers:
        assert repr(got[m]) == repr(_fsum([s[m] for s in snapshots if m in s]))


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_week_totals_refuse_a_non_finite_score(bad: float) -> None:
    acc = settlement.WeekAccumulator()
    acc.add(_snapshot({"a": 1.0}))
    with pytest.raises(ScoringError, match="non-finite"):
        acc.add(_snapshot({"a": bad}))


def _fsum(values: list[float]) -> float:
    """math.fsum as Python 3.12 gives it: a sum of only negative zeros is -0.0 (3.11 gives
    0.0; ExactSum, whose sums are in stored digests, keeps the sign)."""
    if values and all(v == 0 and math.copysign(1.0, v) < 0 for v in values):
        return -0.0
    return math.fsum(values)
