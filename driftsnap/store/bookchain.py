"""Book deltas in the database: which stored book a new one is written against, and reading
a book that is a delta back (format 2 of :mod:`driftsnap.store.books`, migration 0008).

The writer remembers, per database and market, the columns of the last book it wrote (this
process only: after a restart the first book of each market is stored whole). Before writing a
delta against it, it checks that the remembered row is in the database *as written by it*: the
row's ``xmin`` is the transaction that wrote it, so a tick whose transaction rolled back, or a
row another process wrote at the same instant, is never taken as a base. A base is in the same
week (a week's partition decodes on its own, so ``prune`` and ``export-week`` need no other) and
at most :data:`MAX_CHAIN` - 1 deltas deep: reading any one book reads at most that many rows.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from driftsnap.store import books, schema
from driftsnap.store.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from driftsnap import calendar

MAX_CHAIN: Final = 60  # a book whole, then at most 59 deltas on it


@dataclass(frozen=True, slots=True, eq=False)
class Base:
    """A book this process wrote: a candidate base for the market's next one."""

    tick_at: datetime
    xid: int  # the writing transaction (32-bit, as the row's xmin shows it)
    columns: books.Columns
    depth: int  # 0: stored whole; n: the n-th delta on a whole book


_written: weakref.WeakKeyDictionary[sa.Engine, dict[int, Base]] = weakref.WeakKeyDictionary()

_CHECK = """
SELECT (txid_current() % 4294967296)::bigint AS xid,
       array_agg(s.market_index) FILTER (WHERE s.market_index IS NOT NULL) AS markets
FROM (SELECT 1) AS one
LEFT JOIN snapshots AS s
    ON (s.tick_at, s.market_index, s.xmin::text::bigint)
        IN (SELECT * FROM unnest(CAST(:ats AS timestamptz[]), CAST(:markets AS smallint[]),
                                 CAST(:xids AS bigint[])))
    AND s.status = 'ok'
"""


def bases(
    conn: sa.Connection, week: calendar.Week, at: datetime, markets: Iterable[int]
) -> tuple[int, dict[int, Base]]:
    """The current transaction's id and, per market of ``markets``, the base its book at ``at``
    may be written against (none: store it whole)."""
    known, wanted = _written.get(conn.engine, {}), set(markets)
    by_market = {
        m: b
        for m, b in known.items()
        if m in wanted and week.start <= b.tick_at < at and b.depth + 1 < MAX_CHAIN
    }
    row = conn.execute(
        sa.text(_CHECK),
        {
            "ats": [b.tick_at for b in by_market.values()],
            "markets": list(by_market),
            "xids": [b.xid for b in by_market.values()],
        },
    ).one()
    found = set(row.markets or ())
    return int(row.xid), {m: b for m, b in by_market.items() if m in found}


def remember(conn: sa.Connection, market_index: int, base: Base) -> None:
    """Record the book just written for ``market_index`` (a base once its transaction commits)."""
    _written.setdefault(conn.engine, {})[market_index] = base


def forget(conn: sa.Connection) -> None:
    """Forget every book written through ``conn``'s engine (tests; a database restored)."""
    _written.pop(conn.engine, None)


# ---------------------------------------------------------------------------- reading back


class Reader:
    """Decodes stored books to columns, the ones of a week in order keeping each market's last
    (the base of the next delta), any other by reading its chain back to a whole book."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._last: dict[int, tuple[datetime, books.Columns]] = {}

    def columns(self, row: Any) -> books.Columns:
        """The columns of a ``snapshots`` row (``tick_at``, ``market_index``, ``orders``,
        ``book_format``, ``book_base``, ``book``)."""
        base = None
        if row.book_format == books.DELTA:
            last = self._last.get(row.market_index)
            if last is not None and last[0] == row.book_base:
                base = last[1]
            else:
                base = columns_at(self._conn, row.market_index, row.book_base)
        columns = books.stored_columns(row.book_format, bytes(row.book), row.orders, base)
        self._last[row.market_index] = (row.tick_at, columns)
        return columns


def columns_at(conn: sa.Connection, market_index: int, tick_at: datetime) -> books.Columns:
    """The columns of the ok book of ``market_index`` stored at ``tick_at``, its deltas applied
    (each base is earlier than its delta, a CHECK of the table: the chain ends)."""
    s = schema.snapshots
    chain = []
    at: datetime | None = tick_at
    while at is not None:
        row = conn.execute(
            sa.select(s.c.tick_at, s.c.orders, s.c.book_format, s.c.book_base, s.c.book).where(
                s.c.market_index == market_index, s.c.tick_at == at, s.c.status == "ok"
            )
        ).first()
        if row is None:
            raise StoreError(f"no stored book of market {market_index} at {at.isoformat()}")
        chain.append(row)
        at = row.book_base if row.book_format == books.DELTA else None
    columns: books.Columns | None = None
    for r in reversed(chain):
        columns = books.stored_columns(r.book_format, bytes(r.book), r.orders, columns)
    assert columns is not None
    return columns
