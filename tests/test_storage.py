"""Issue 16, piece 1: a tick stores its per-maker detail as arrays, not as rows per maker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.store import schema, series, snapshots
from driftsnap.store.errors import IntegrityError
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
    """No bracket_cells or maker_scores rows and no cell arrays; tick_scores gives every maker's
    score of one tick and tick_maker_sides the sides it quoted in its brackets; the cells are
    recomputed from the stored book (read_scores), equal to what the tick scored."""
    written = _write(pg_engine, 2)
    with pg_engine.connect() as conn:
        for table in (schema.bracket_cells, schema.maker_scores):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
        stored_cells = "SELECT count(*) FROM snapshot_methods WHERE cell_keys IS NOT NULL"
        assert conn.exec_driver_sql(stored_cells).scalar_one() == 0
        two_sided = 0
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
                    sides = {
                        maker: (bid, ask)
                        for maker, bid, ask in conn.execute(
                            sa.text(
                                "SELECT a.pubkey, t.bid, t.ask FROM tick_maker_sides AS t"
                                " JOIN accounts AS a ON a.account_id = t.maker_id"
                                " JOIN markets AS k USING (market_index)"
                                " JOIN methods AS me USING (method_id)"
                                " WHERE t.tick_at = :at AND k.name = :m AND me.params_hash = :h"
                            ),
                            where,
                        )
                    }
                    expected = {
                        maker: (
                            any(x.maker_bid.get(maker) for x in score.brackets),
                            any(x.maker_ask.get(maker) for x in score.brackets),
                        )
                        for maker in score.scores
                    }
                    assert sides == expected
                    two_sided += sum(bid and ask for bid, ask in sides.values())
                    again = snapshots.read_scores(conn, at, snap.book.market, score.params_hash)
                    assert again == score
        assert two_sided


_TO_LEGACY = """
INSERT INTO maker_scores (tick_at, market_index, method_id, maker_id, score)
SELECT s.tick_at, s.market_index, s.method_id, u.m, u.v
FROM snapshot_methods AS s, unnest(s.score_makers, s.scores) AS u (m, v);
UPDATE snapshot_methods SET score_makers = NULL, scores = NULL, score_sides = NULL;
"""

_LEGACY_CELL = """
INSERT INTO bracket_cells
    (tick_at, market_index, method_id, bracket, side, maker_id, size, notional)
SELECT :at, :market, method_id, :bracket, :side, account_id, :size, 0
FROM methods, accounts WHERE params_hash = :h AND pubkey = :maker
"""


def _to_legacy(
    conn: sa.Connection, written: list[tuple[datetime, list[snapshots.MarketSnapshot]]]
) -> None:
    """Store the ticks' detail as a tick before 0007 held it: rows in maker_scores and (the
    cells, which no tick stores since 0008) bracket_cells."""
    conn.exec_driver_sql(_TO_LEGACY)
    for at, markets in written:
        for snap in markets:
            for score in snap.scores:
                for i, x in enumerate(score.brackets):
                    for side, cells in ((0, x.maker_bid), (1, x.maker_ask)):
                        for maker, size in cells.items():
                            if size:
                                row = {"at": at, "market": snap.book.market_index}
                                row |= {"bracket": i, "side": side, "size": size}
                                row |= {"h": score.params_hash, "maker": maker}
                                conn.execute(sa.text(_LEGACY_CELL), row)


def test_ticks_stored_in_the_old_rows_read_the_same(pg_engine: sa.Engine) -> None:
    """A tick written before 0007 (rows in maker_scores and bracket_cells, no arrays) reads back
    the same scores and report series as one written now."""
    written = _write(pg_engine, 2)
    week = calendar.Week.containing(pg.MONDAY)
    method = pg.METHODS[0]

    def read() -> tuple[list[Any], list[Any], list[Any], list[list[series.CellBucket]]]:
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
            drill = [
                series.cell_buckets(
                    conn, week, mid, width_s=60, by_user=False, authority=who, side_factor=0.5
                )
                for who in authorities
            ]
        return stored, sorted(buckets, key=repr), both, drill

    with pg_engine.connect() as conn:
        authorities = [
            conn.execute(
                sa.text("SELECT account_id FROM accounts WHERE pubkey = :k"), {"k": k}
            ).scalar_one()
            for k in sorted({m for s in written[0][1] for m in s.scores[0].scores})[:3]
        ]

    now = read()
    assert now[0] == [
        next(sc for sc in s.scores if sc.params_hash == method.params_hash)
        for _, markets in written
        for s in markets
    ]
    assert all(now[3]), "every authority picked has cells"
    with pg_engine.begin() as conn:
        _to_legacy(conn, written)
        assert conn.exec_driver_sql("SELECT count(*) FROM maker_scores").scalar_one() > 0
        assert conn.exec_driver_sql("SELECT count(*) FROM bracket_cells").scalar_one() > 0
    assert read() == now


def test_a_method_without_stored_detail_is_rescored_from_its_book(pg_engine: sa.Engine) -> None:
    """With ``detail`` naming one method, only its makers reach tick_scores; the others' per-maker
    scores and cells read back (read_scores) recomputed from the stored book, equal to what the
    tick scored; a stored total that the book does not give is refused."""
    kept, *others = pg.METHODS
    books_ = pg.simulated_books(1)[0]
    markets = pg.scored(books_)
    with pg_engine.begin() as conn:
        assert snapshots.write_tick(
            conn, pg.ok_tick(pg.MONDAY, 0), markets, methods=pg.METHODS, detail={kept.params_hash}
        )
    with pg_engine.connect() as conn:
        hashes = set(
            conn.execute(sa.text("SELECT DISTINCT params_hash FROM tick_scores")).scalars()
        )
        assert hashes == {kept.params_hash}
        for snap in markets:
            for score in snap.scores:
                again = snapshots.read_scores(conn, pg.MONDAY, snap.book.market, score.params_hash)
                assert again == score
    assert others
    snap = next(s for s in markets if s.book.orders)
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE brackets SET total_bid = total_bid + 1 WHERE bracket = 0 AND method_id ="
                " (SELECT method_id FROM methods WHERE params_hash = :h)"
            ),
            {"h": others[0].params_hash},
        )
    with pg_engine.connect() as conn, pytest.raises(IntegrityError, match="re-scoring"):
        snapshots.read_scores(conn, pg.MONDAY, snap.book.market, others[0].params_hash)
