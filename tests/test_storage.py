"""Issue 16, piece 1: a tick stores its per-maker detail as arrays, not as rows per maker."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from driftsnap import calendar, protocol
from driftsnap.store import schema, series, snapshots
from tests import pg


def _write(engine: sa.Engine, ticks: int) -> list[tuple[datetime, list[snapshots.MarketSnapshot]]]:
    out: list[tuple[datetime, list[snapshots.MarketSnapshot]]] = []
    for i, books_ in enumerate(pg.simulated_books(ticks)):
        at = pg.MONDAY + timedelta(minutes=i)
        markets = pg.scored(books_)
        with engine.begin() as conn:
            assert snapshots.write_tick(conn, pg.ok_tick(at, i), markets, methods=pg.METHODS)
        out.append((at, markets))
    return out


def test_a_tick_writes_no_per_maker_rows_and_psql_sees_its_detail(pg_engine: sa.Engine) -> None:
    """No bracket_cells or maker_scores rows; tick_scores and tick_cells give every maker's score
    and non-zero cell of one tick, with its notional at the oracle price."""
    written = _write(pg_engine, 2)
    with pg_engine.connect() as conn:
        for table in (schema.bracket_cells, schema.maker_scores):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
        for at, markets in written:
            for snap in markets:
                for score in snap.scores:
                    where = {"at": at, "m": snap.book.market, "h": score.params_hash}
                    scores: dict[str, float] = dict(
                        conn.execute(
                            sa.text(
                                "SELECT maker, score FROM tick_scores WHERE tick_at = :at"
                                " AND market = :m AND params_hash = :h"
                            ),
                            where,
                        ).all()
                    )
                    assert scores == score.scores
                    cells = {
                        (b, side, maker): (size, notional)
                        for b, side, maker, size, notional in conn.execute(
                            sa.text(
                                "SELECT bracket, side, maker, size, notional FROM tick_cells"
                                " WHERE tick_at = :at AND market = :m AND params_hash = :h"
                            ),
                            where,
                        )
                    }
                    expected = {
                        (i, side, maker): (
                            size,
                            size * snap.book.oracle_price // protocol.BASE_PRECISION,
                        )
                        for i, x in enumerate(score.brackets)
                        for side, c in (("bid", x.maker_bid), ("ask", x.maker_ask))
                        for maker, size in c.items()
                        if size
                    }
                    assert cells == expected
                    assert cells


_TO_LEGACY = """
INSERT INTO maker_scores (tick_at, market_index, method_id, maker_id, score)
SELECT s.tick_at, s.market_index, s.method_id, u.m, u.v
FROM snapshot_methods AS s, unnest(s.score_makers, s.scores) AS u (m, v);
INSERT INTO bracket_cells
    (tick_at, market_index, method_id, bracket, side, maker_id, size, notional)
SELECT s.tick_at, s.market_index, s.method_id, u.k / 2, mod(u.k, 2), u.m, u.z, 0
FROM snapshot_methods AS s, unnest(s.cell_keys, s.cell_makers, s.cell_sizes) AS u (k, m, z);
UPDATE snapshot_methods SET score_makers = NULL, scores = NULL, cell_keys = NULL,
    cell_makers = NULL, cell_sizes = NULL;
"""


def test_ticks_stored_in_the_old_rows_read_the_same(pg_engine: sa.Engine) -> None:
    """A tick written before 0007 (rows in maker_scores and bracket_cells, no arrays) reads back
    the same scores and report series as one written now."""
    written = _write(pg_engine, 2)
    week = calendar.Week.containing(pg.MONDAY)
    method = pg.METHODS[0]

    def read() -> tuple[object, ...]:
        with pg_engine.connect() as conn:
            mid = series.method_id(conn, method.params_hash)
            assert mid is not None
            stored = [
                snapshots.read_scores(conn, at, s.book.market, method.params_hash)
                for at, markets in written
                for s in markets
            ]
            buckets = series.authority_buckets(conn, week, mid, width_s=60, by_user=False)
            both = series.two_sided(conn, week, mid, by_user=False)
        return stored, sorted(buckets, key=repr), both

    now = read()
    assert now[0] == [
        next(sc for sc in s.scores if sc.params_hash == method.params_hash)
        for _, markets in written
        for s in markets
    ]
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(_TO_LEGACY)
        assert conn.exec_driver_sql("SELECT count(*) FROM maker_scores").scalar_one() > 0
    assert read() == now
