"""The users' views and the query functions behind ``driftsnap scores`` (store.queries)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.scoring import payouts
from driftsnap.store import queries, schema, snapshots, weeks
from tests import pg

WEEK = calendar.Week.containing(pg.MONDAY)
POOLS = {"SOL-PERP": 500_000_000, "BTC-PERP": 500_000_000, "ETH-PERP": 250_000_000}


def fill_week(engine: sa.Engine, ticks: int = 3) -> None:
    with engine.begin() as conn:
        weeks.set_pools(conn, WEEK, POOLS)
        for i, books_ in enumerate(pg.simulated_books(ticks)):
            snapshots.write_tick(
                conn, pg.ok_tick(pg.MONDAY + timedelta(minutes=i), i), pg.scored(books_),
                methods=pg.METHODS,
            )  # fmt: skip
        snapshots.write_tick(
            conn,
            snapshots.Tick(
                at=pg.MONDAY + timedelta(minutes=ticks), interval=ticks, status="missed",
                reason="rpc timed out",
            ),
        )  # fmt: skip


def test_view_shares_sum_to_one_per_market_and_method(pg_engine: sa.Engine) -> None:
    """In weekly_scores each market's shares sum to 1 and rewards to at most its pool."""
    fill_week(pg_engine)
    v = schema.weekly_scores
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.select(v).where(v.c.week == str(WEEK))).all()
    shares: dict[tuple[str, str], list[float]] = defaultdict(list)
    rewards: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        shares[(r.market, r.method)].append(r.share)
        rewards[(r.market, r.method)].append(float(r.projected_reward_usdc))
    assert {m for m, _ in shares} == set(POOLS)
    assert len(shares) == len(POOLS) * len(pg.METHODS)
    for key, values in shares.items():
        assert math.isclose(sum(values), 1.0, rel_tol=1e-12), key
        pool = POOLS[key[0]] / 1e6
        assert pool - len(values) * 1e-6 <= sum(rewards[key]) <= pool, key


def test_week_scores_match_the_view_and_pay_the_pools_exactly(pg_engine: sa.Engine) -> None:
    """week_scores() returns the view's numbers; its rewards are the spec's exact payouts."""
    fill_week(pg_engine)
    with pg_engine.connect() as conn:
        result = queries.week_scores(conn, WEEK, pools=POOLS, method="drift-2023-08")
        view = {
            (r.market, r.maker): r
            for r in conn.execute(
                sa.select(schema.weekly_scores).where(
                    schema.weekly_scores.c.week_start == WEEK.monday,
                    schema.weekly_scores.c.method == "drift-2023-08",
                )
            )
        }
    assert len(result) == len(view) > 0
    by_market: dict[str, list[queries.MakerScore]] = defaultdict(list)
    for row in result:
        mirror = view[(row.market, row.maker)]
        assert (row.score, row.share, row.snapshots) == (mirror.score, mirror.share, 3)
        assert row.projected_reward_micro_usdc is not None
        assert abs(row.projected_reward_micro_usdc - mirror.projected_reward_usdc * 10**6) <= 1
        by_market[row.market].append(row)
    for market, rows in by_market.items():
        assert sum(r.projected_reward_micro_usdc or 0 for r in rows) == POOLS[market]
        expected = payouts.allocate(POOLS[market], {r.maker: r.score for r in rows})
        assert {r.maker: r.projected_reward_micro_usdc for r in rows if r.score > 0} == expected
        assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    with pg_engine.connect() as conn:
        only_sol = queries.week_scores(conn, WEEK, market="SOL-PERP")
    assert {r.market for r in only_sol} == {"SOL-PERP"}
    assert all(r.projected_reward_micro_usdc is None for r in only_sol)


def test_week_coverage_counts_ok_rejected_and_missed(pg_engine: sa.Engine) -> None:
    """Coverage per market: ok + rejected + missed = ticks, whole-tick misses count everywhere;
    listed are the markets a tick read and the paid ones, not a 0-pool market nothing read."""
    fill_week(pg_engine, ticks=2)
    first, *rest = pg.scored(pg.simulated_books(3)[2])
    with pg_engine.begin() as conn:
        snapshots.write_tick(
            conn,
            pg.ok_tick(pg.MONDAY + timedelta(hours=1), 60),
            [snapshots.MarketSnapshot(first.book, rejected="crossed book"), *rest],
            methods=pg.METHODS,
        )
        # SUI-PERP has no pool and no tick read it: not sampled by configuration, not missed.
        # ARB-PERP is paid but never read: every tick missed. ETH-PERP has no pool but was read.
        pools = {**POOLS, "ETH-PERP": 0, "SUI-PERP": 0, "ARB-PERP": 100_000_000}
        weeks.set_pools(conn, WEEK, pools)
    with pg_engine.connect() as conn:
        coverage = {c.market: c for c in queries.week_coverage(conn, WEEK)}
    assert set(coverage) == {"SOL-PERP", "BTC-PERP", "ETH-PERP", "ARB-PERP"}
    for c in coverage.values():
        assert c.ticks == 4
        assert c.ok + c.rejected + c.missed == c.ticks
    assert (coverage[first.book.market].ok, coverage[first.book.market].rejected) == (2, 1)
    assert coverage[first.book.market].missed == 1
    assert (coverage["ARB-PERP"].ok, coverage["ARB-PERP"].missed) == (0, 4)
    other = rest[0].book.market
    assert (coverage[other].ok, coverage[other].rejected, coverage[other].missed) == (3, 0, 1)
    assert coverage[other].coverage == 0.75


def test_live_views_show_the_current_week(pg_engine: sa.Engine) -> None:
    """live_scores and live_coverage show a tick taken now and agree with the query functions."""
    with pg_engine.begin() as conn:
        # The same transaction's now() dates the tick and the views: no race at a week boundary.
        now: datetime = conn.execute(sa.select(sa.func.now())).scalar_one()
        current = calendar.Week.containing(now)
        assert queries.current_week(conn) == current
        snapshots.write_tick(
            conn, pg.ok_tick(now.astimezone(UTC)), pg.scored(pg.simulated_books(1)[0]),
            methods=pg.METHODS,
        )  # fmt: skip
        live = conn.execute(sa.select(schema.live_scores)).all()
        assert {r.week for r in live} == {str(current)}
        assert len(live) == len(queries.live_scores(conn)) > 0
        coverage = conn.execute(sa.select(schema.live_coverage)).all()
        assert {(r.market, r.ok, r.ticks) for r in coverage} == {
            (c.market, c.ok, c.ticks) for c in queries.live_coverage(conn)
        }
        assert {r.ok for r in coverage} == {1}
        # A past week's data is not live.
        snapshots.write_tick(
            conn, pg.ok_tick(now - timedelta(days=7)), pg.scored(pg.simulated_books(2)[1]),
            methods=pg.METHODS,
        )  # fmt: skip
        assert len(conn.execute(sa.select(schema.live_scores)).all()) == len(live)
