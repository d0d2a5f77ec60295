"""Books stored as deltas on the book before (migration 0008) read back exactly, and a delta is
only ever written against a base that is in the database as it was written."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from driftsnap import calendar
from driftsnap.store import bookchain, books, closes, snapshots
from tests import books as tb
from tests import pg

if TYPE_CHECKING:
    import sqlalchemy as sa

    from driftsnap.scoring import book as book_mod


def _book(tick: int) -> book_mod.Book:
    """A book of 40 resting orders of which one is replaced each tick."""
    orders = [
        tb.order(f"m{i % 4}", "bid" if i % 2 else "ask", (80 + i) * tb.PRICE, tb.BASE, order_id=i)
        for i in range(tick, tick + 40)
    ]
    return tb.make(orders)


def _formats(engine: sa.Engine) -> list[tuple[int, object]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT book_format, book_base FROM snapshots ORDER BY tick_at"
        ).all()
    return [(int(f), b) for f, b in rows]


def _write(engine: sa.Engine, tick: int, minute: int | None = None) -> None:
    """Write ``_book(tick)`` at minute ``minute`` (default ``tick``) of the week."""
    at = pg.MONDAY + timedelta(minutes=tick if minute is None else minute)
    with engine.begin() as conn:
        assert snapshots.write_tick(
            conn, pg.ok_tick(at, tick), pg.scored((_book(tick),)), methods=pg.METHODS
        )


def test_consecutive_books_are_deltas_that_read_back_exactly(pg_engine: sa.Engine) -> None:
    """The first book is whole, the next ones deltas on the one before; read_book (one at a time)
    and week_books (the week in order) restore each, with its canonical hash."""
    for tick in range(5):
        _write(pg_engine, tick)
    formats = _formats(pg_engine)
    assert [f for f, _ in formats] == [books.FORMAT] + [books.DELTA] * 4
    assert [b for _, b in formats[1:]] == [pg.MONDAY + timedelta(minutes=t) for t in range(4)]
    week = calendar.Week.containing(pg.MONDAY)
    with pg_engine.connect() as conn:
        for tick in range(5):
            at = pg.MONDAY + timedelta(minutes=tick)
            assert snapshots.read_book(conn, at, "SOL-PERP") == _book(tick)
        stored = list(closes.week_books(conn, week))
        sizes = conn.exec_driver_sql("SELECT length(book) FROM snapshots ORDER BY tick_at")
        whole, *deltas = sizes.scalars()
    assert [s.book for s in stored] == [_book(t) for t in range(5)]
    assert [s.leaf.book_sha256 for s in stored] == [
        books.canonical_sha256(_book(t)) for t in range(5)
    ]
    assert max(deltas) * 2 < whole


def test_a_rolled_back_tick_is_never_a_base(pg_engine: sa.Engine) -> None:
    """A tick whose transaction rolled back left its book in the writer's memory, not in the
    database: the next book is stored whole, and reads back."""
    _write(pg_engine, 0)
    at = pg.MONDAY + timedelta(minutes=1)
    with pg_engine.connect() as conn:
        failed = conn.begin()
        assert snapshots.write_tick(
            conn, pg.ok_tick(at, 1), pg.scored((_book(1),)), methods=pg.METHODS
        )
        failed.rollback()
    _write(pg_engine, 2)
    assert [f for f, _ in _formats(pg_engine)] == [books.FORMAT, books.FORMAT]
    with pg_engine.connect() as conn:
        assert snapshots.read_book(conn, pg.MONDAY + timedelta(minutes=2), "SOL-PERP") == _book(2)


def test_a_chain_is_bounded_and_a_week_starts_whole(pg_engine: sa.Engine) -> None:
    """After MAX_CHAIN - 1 deltas a book is stored whole again, and the first book of a week is
    whole whatever came before (a week's partition decodes on its own)."""
    for tick in range(bookchain.MAX_CHAIN + 2):
        _write(pg_engine, tick)
    formats = [f for f, _ in _formats(pg_engine)]
    assert formats[0] == formats[bookchain.MAX_CHAIN] == books.FORMAT
    assert set(formats[1 : bookchain.MAX_CHAIN]) == {books.DELTA}
    assert formats[bookchain.MAX_CHAIN + 1 :] == [books.DELTA]
    sunday = 7 * 24 * 60 - 1
    _write(pg_engine, bookchain.MAX_CHAIN + 2, sunday)
    _write(pg_engine, bookchain.MAX_CHAIN + 3, sunday + 1)
    assert [f for f, _ in _formats(pg_engine)[-2:]] == [books.DELTA, books.FORMAT]
    with pg_engine.connect() as conn:
        at = pg.MONDAY + timedelta(minutes=bookchain.MAX_CHAIN - 1)
        assert snapshots.read_book(conn, at, "SOL-PERP") == _book(bookchain.MAX_CHAIN - 1)


def test_a_restarted_writer_starts_whole(pg_engine: sa.Engine) -> None:
    """A new process remembers no book: its first one is stored whole (here: forgotten)."""
    _write(pg_engine, 0)
    _write(pg_engine, 1)
    with pg_engine.connect() as conn:
        bookchain.forget(conn)
    _write(pg_engine, 2)
    assert [f for f, _ in _formats(pg_engine)] == [books.FORMAT, books.DELTA, books.FORMAT]
