"""Writing ticks to a real PostgreSQL and reading them back (driftsnap.store.snapshots)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.scoring import methods, scorer, settlement
from driftsnap.store import schema, snapshots, weeks
from driftsnap.store.errors import IntegrityError, StoreError
from tests import books, pg

if TYPE_CHECKING:
    from datetime import datetime

TICK_TABLES = (
    "ticks",
    "snapshots",
    "snapshot_methods",
    "brackets",
    "tick_bracket_cells",
    "tick_maker_scores",
    "week_ticks",
    "week_markets",
    "week_methods",
    "week_makers",
)


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one()
            for t in TICK_TABLES
        }


def write(engine: sa.Engine, at: datetime, markets: list[snapshots.MarketSnapshot]) -> bool:
    with engine.begin() as conn:
        return snapshots.write_tick(conn, pg.ok_tick(at), markets, methods=pg.METHODS)


def test_book_and_scores_round_trip(pg_engine: sa.Engine) -> None:
    """A stored book reads back equal; its stored scores equal the written ones and a re-score."""
    ticks = pg.simulated_books(2)
    written = [pg.scored(b) for b in ticks]
    times = [pg.MONDAY + timedelta(hours=1, minutes=i) for i in range(len(ticks))]
    for at, markets in zip(times, written, strict=True):
        assert write(pg_engine, at, markets)
    with pg_engine.connect() as conn:
        for at, markets in zip(times, written, strict=True):
            for snap in markets:
                restored = snapshots.read_book(conn, at, snap.book.market)
                assert restored == snap.book
                for method, score in zip(pg.METHODS, snap.scores, strict=True):
                    stored = snapshots.read_scores(conn, at, snap.book.market, method.params_hash)
                    assert stored == score
                    assert scorer.score(restored, method) == stored


def test_week_accumulators_equal_in_memory_week(pg_engine: sa.Engine) -> None:
    """The stored week totals equal WeekAccumulator's exact sums bit for bit, per method."""
    ticks = pg.simulated_books(4)
    accumulators = {m.params_hash: settlement.WeekAccumulator(m.aggregation) for m in pg.METHODS}
    for i, books_ in enumerate(ticks):
        markets = pg.scored(books_)
        assert write(pg_engine, pg.MONDAY + timedelta(minutes=i), markets)
        for snap in markets:
            for score in snap.scores:
                accumulators[score.params_hash].add(score)
    week = calendar.Week.containing(pg.MONDAY)
    with pg_engine.connect() as conn:
        for params_hash, acc in accumulators.items():
            stored = snapshots.week_totals(conn, week, params_hash)
            assert stored == {m: acc.totals(m) for m in acc.markets}
        snapshots_per_method = conn.execute(
            sa.select(schema.week_methods.c.snapshots).distinct()
        ).scalars()
        assert list(snapshots_per_method) == [len(ticks)]


def test_week_accumulators_count_each_makers_snapshots_and_last_slot(
    pg_engine: sa.Engine,
) -> None:
    """Per maker, the week's accumulator counts the snapshots it quoted in and keeps the slot of
    the last one, also for a maker that is absent from a tick and one that is new mid-week."""
    ticks = [list(b) for b in pg.simulated_books(4)]
    first = ticks[0][0]
    absent = first.orders[0].authority  # quotes in ticks 0, 2 and 3 only
    ticks[1][0] = dataclasses.replace(
        ticks[1][0], orders=tuple(o for o in ticks[1][0].orders if o.authority != absent)
    )
    late = ticks[3][1].orders[0].authority  # quotes in market 1 from tick 3 only
    for i in range(3):
        ticks[i][1] = dataclasses.replace(
            ticks[i][1], orders=tuple(o for o in ticks[i][1].orders if o.authority != late)
        )
    expected: dict[tuple[str, str, str], tuple[int, int]] = {}
    for i, books_ in enumerate(ticks):
        markets = pg.scored(tuple(books_))
        assert write(pg_engine, pg.MONDAY + timedelta(minutes=i), markets)
        for snap in markets:
            for score in snap.scores:
                for maker in score.scores:
                    key = (snap.book.market, score.params_hash, maker)
                    seen, _ = expected.get(key, (0, 0))
                    expected[key] = (seen + 1, snap.book.slot)
    w, a, k, me = schema.week_makers, schema.accounts, schema.markets, schema.methods
    with pg_engine.connect() as conn:
        stored = {
            (r.name, r.params_hash, r.pubkey): (r.snapshots, r.last_slot)
            for r in conn.execute(
                sa.select(k.c.name, me.c.params_hash, a.c.pubkey, w.c.snapshots, w.c.last_slot)
                .join(a, a.c.account_id == w.c.maker_id)
                .join(k, k.c.market_index == w.c.market_index)
                .join(me, me.c.method_id == w.c.method_id)
            )
        }
    assert stored == expected
    counts_of = {n for n, _ in expected.values()}
    assert {3, 4} <= counts_of  # the absent maker's 3 beside the others' 4
    assert any(key[0] == ticks[3][1].market and n == 1 for key, (n, _) in expected.items())


def test_writing_a_tick_twice_is_harmless(pg_engine: sa.Engine) -> None:
    """A second write of a stored tick returns False and changes no row or accumulator."""
    markets = pg.scored(pg.simulated_books(1)[0])
    at = pg.MONDAY + timedelta(minutes=3)
    assert write(pg_engine, at, markets)
    before = counts(pg_engine)
    with pg_engine.connect() as conn:
        sums = conn.execute(sa.select(schema.week_makers).order_by("maker_id", "method_id")).all()
    assert not write(pg_engine, at, markets)
    assert counts(pg_engine) == before
    with pg_engine.connect() as conn:
        again = conn.execute(sa.select(schema.week_makers).order_by("maker_id", "method_id")).all()
    assert again == sums


def test_failure_in_the_last_write_leaves_nothing(pg_engine: sa.Engine) -> None:
    """A database error after all the COPYs (in the accumulator upsert) rolls the tick back."""
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER fail BEFORE INSERT ON week_makers FOR EACH ROW EXECUTE FUNCTION fail()"
        )
    markets = pg.scored(pg.simulated_books(1)[0])
    with pytest.raises(StoreError, match="injected failure"):
        write(pg_engine, pg.MONDAY, markets)
    assert set(counts(pg_engine).values()) == {0}
    with pg_engine.connect() as conn:
        assert weeks.partitions(conn, "bracket_cells") == []


def test_failure_after_the_write_in_the_callers_transaction_leaves_nothing(
    pg_engine: sa.Engine,
) -> None:
    """An exception raised by the caller after write_tick, inside its transaction, keeps nothing."""
    markets = pg.scored(pg.simulated_books(1)[0])

    def write_then_crash() -> None:
        with pg_engine.begin() as conn:
            snapshots.write_tick(conn, pg.ok_tick(pg.MONDAY), markets, methods=pg.METHODS)
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        write_then_crash()
    assert set(counts(pg_engine).values()) == {0}


@pytest.mark.parametrize("status", ["missed", "rejected"])
def test_missed_and_rejected_ticks_store_only_their_header(
    pg_engine: sa.Engine, status: snapshots.TickStatus
) -> None:
    """A missed or rejected tick stores its header and reason, counts in the week, and no scores."""
    tick = snapshots.Tick(at=pg.MONDAY, interval=0, status=status, reason="rpc timed out")
    with pg_engine.begin() as conn:
        assert snapshots.write_tick(conn, tick)
    assert counts(pg_engine) == dict.fromkeys(TICK_TABLES, 0) | {"ticks": 1, "week_ticks": 1}
    with pg_engine.connect() as conn:
        row = conn.execute(sa.select(schema.ticks)).one()
        assert (row.status, row.reason, row.markets, row.orders) == (status, "rpc timed out", 0, 0)
        week_row = conn.execute(sa.select(schema.week_ticks)).one()
        assert (week_row.ticks, week_row.ok, getattr(week_row, status)) == (1, 0, 1)


def test_a_tick_that_is_not_ok_refuses_snapshots_and_needs_a_reason(pg_engine: sa.Engine) -> None:
    """A missed tick with books, or one without a reason, is refused before anything is written."""
    markets = pg.scored(pg.simulated_books(1)[0])
    with pg_engine.begin() as conn:
        with pytest.raises(StoreError, match="stores no snapshots"):
            snapshots.write_tick(
                conn,
                snapshots.Tick(at=pg.MONDAY, interval=0, status="missed", reason="x"),
                markets,
                methods=pg.METHODS,
            )
        with pytest.raises(StoreError, match="reason is required"):
            snapshots.write_tick(conn, snapshots.Tick(at=pg.MONDAY, interval=0, status="missed"))
    assert set(counts(pg_engine).values()) == {0}


def test_a_rejected_market_keeps_its_facts_but_no_book_or_scores(pg_engine: sa.Engine) -> None:
    """A market rejected within an ok tick stores its slot and reason, and counts as rejected."""
    first, *rest = pg.scored(pg.simulated_books(1)[0])
    rejected = snapshots.MarketSnapshot(first.book, rejected="oracle is 40 slots stale")
    assert write(pg_engine, pg.MONDAY, [rejected, *rest])
    with pg_engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.snapshots).where(
                schema.snapshots.c.market_index == first.book.market_index
            )
        ).one()
        assert (row.status, row.reason, row.slot, row.book) == (
            "rejected",
            "oracle is 40 slots stale",
            first.book.slot,
            None,
        )
        scored_markets = conn.execute(
            sa.select(schema.tick_maker_scores.c.market_index).distinct()
        ).scalars()
        assert set(scored_markets) == {s.book.market_index for s in rest}
        with pytest.raises(StoreError, match="rejected"):
            snapshots.read_book(conn, pg.MONDAY, first.book.market)
        market_row = conn.execute(
            sa.select(schema.week_markets).where(
                schema.week_markets.c.market_index == first.book.market_index
            )
        ).one()
        assert (market_row.ok, market_row.rejected) == (0, 1)


def test_accumulators_of_two_weeks_land_in_two_partitions(pg_engine: sa.Engine) -> None:
    """Ticks on both sides of Monday 00:00 UTC fill each week's own partition of every table."""
    books_ = pg.simulated_books(2)
    sunday_night = pg.MONDAY + timedelta(days=7) - timedelta(microseconds=1)
    next_monday = pg.MONDAY + timedelta(days=7)
    assert write(pg_engine, sunday_night, pg.scored(books_[0]))
    assert write(pg_engine, next_monday, pg.scored(books_[1]))
    with pg_engine.connect() as conn:
        for table in schema.PARTITIONED:
            assert weeks.partitions(conn, table) == [f"{table}_2026w47", f"{table}_2026w48"]
        per_partition: dict[str, int] = dict(
            conn.exec_driver_sql(
                "SELECT tableoid::regclass::text, count(*) FROM week_makers GROUP BY 1"
            ).all()
        )
        assert set(per_partition) == {
            "driftsnap_partitions.week_makers_2026w47",
            "driftsnap_partitions.week_makers_2026w48",
        }
        assert all(n > 0 for n in per_partition.values())
        detail: dict[str, int] = dict(
            conn.exec_driver_sql(
                "SELECT tableoid::regclass::text, count(*) FROM snapshot_methods"
                " WHERE score_sides IS NOT NULL GROUP BY 1"
            ).all()
        )
        assert len(detail) == 2


def test_a_market_index_cannot_change_its_name(pg_engine: sa.Engine) -> None:
    """Storing market index 0 under a second name is an IntegrityError, and nothing is written."""
    sol = books.make([books.order("m1", "bid", 99 * books.PRICE, books.BASE)])
    renamed = books.make([books.order("m1", "bid", 99 * books.PRICE, books.BASE)], market="SOL2")
    assert write(pg_engine, pg.MONDAY, pg.scored((sol,)))
    before = counts(pg_engine)
    with pytest.raises(IntegrityError, match="SOL2"):
        write(pg_engine, pg.MONDAY + timedelta(minutes=1), pg.scored((renamed,)))
    assert counts(pg_engine) == before


def test_account_ids_are_not_drawn_for_known_keys(pg_engine: sa.Engine) -> None:
    """Re-seeing the same makers every tick does not consume identity values (no int4 run-out)."""
    ticks = pg.simulated_books(3)
    for i, books_ in enumerate(ticks):
        assert write(pg_engine, pg.MONDAY + timedelta(minutes=i), pg.scored(books_))
    keys = {k for b in ticks for book in b for o in book.orders for k in (o.user, o.authority)}
    with pg_engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(schema.accounts.c.account_id))).scalar_one()
    assert top == len(keys)


def test_week_seed_is_committed_then_revealed(pg_engine: sa.Engine) -> None:
    """A week's seed hash is stored at start; only the matching seed is accepted at reveal."""
    week = calendar.Week(2026, 47)
    seed = b"s" * 32
    commitment = hashlib.sha256(seed).hexdigest()
    with pg_engine.begin() as conn:
        weeks.commit_seed(conn, week, cadence=timedelta(minutes=1), seed_sha256=commitment)
        weeks.commit_seed(conn, week, cadence=timedelta(minutes=1), seed_sha256=commitment)
        with pytest.raises(IntegrityError, match="already committed"):
            weeks.commit_seed(conn, week, cadence=timedelta(minutes=1), seed_sha256="0" * 64)
        with pytest.raises(IntegrityError, match="does not match"):
            weeks.reveal_seed(conn, week, b"x" * 32)
        weeks.reveal_seed(conn, week, seed)
        record = weeks.record(conn, week)
        assert record is not None
        assert (record.seed, record.seed_sha256, record.cadence) == (
            seed,
            commitment,
            timedelta(minutes=1),
        )
        assert weeks.partitions(conn, "maker_scores") == ["maker_scores_2026w47"]


def test_normalized_aggregation_accumulates_per_snapshot_shares(pg_engine: sa.Engine) -> None:
    """Under aggregation 'normalized' the week adds each snapshot's shares, as WeekAccumulator."""
    method = methods.DRIFT_2023_08.model_copy(
        update={"name": "drift-2023-08-normalized", "aggregation": "normalized"}
    )
    assert method.params_hash != methods.DRIFT_2023_08.params_hash
    acc = settlement.WeekAccumulator("normalized")
    for i, books_ in enumerate(pg.simulated_books(3)):
        markets = [snapshots.MarketSnapshot(b, (scorer.score(b, method),)) for b in books_]
        with pg_engine.begin() as conn:
            snapshots.write_tick(
                conn, pg.ok_tick(pg.MONDAY + timedelta(minutes=i)), markets, methods=[method]
            )
        for snap in markets:
            acc.add(snap.scores[0])
    with pg_engine.connect() as conn:
        stored = snapshots.week_totals(
            conn, calendar.Week.containing(pg.MONDAY), method.params_hash
        )
    assert stored == {m: acc.totals(m) for m in acc.markets}
    assert all(math.isclose(sum(t.values()), 3.0) for t in stored.values())


def test_scores_of_a_method_not_given_are_refused(pg_engine: sa.Engine) -> None:
    """Every score must come with its method (its canonical JSON is stored once, by hash)."""
    markets = pg.scored(pg.simulated_books(1)[0])
    with pg_engine.begin() as conn, pytest.raises(StoreError, match="no method given"):
        snapshots.write_tick(conn, pg.ok_tick(pg.MONDAY), markets, methods=pg.METHODS[:1])
    assert set(counts(pg_engine).values()) == {0}
