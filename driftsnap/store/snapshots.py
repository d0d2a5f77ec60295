"""Writing one cadence tick, all or nothing, and reading its books and scores back.

:func:`write_tick` stores a tick's header, each market's book facts, order-level book and its
pubkey-keyed hash (whole, or a delta on the market's book before: :mod:`bookchain`), every
method's bracket totals and, for the methods given as ``detail``, on its ``snapshot_methods``
row the per-maker scores and the sides each maker quoted as arrays (migrations 0007 and 0008: one
row per market and method, not one per maker; the bracket cells are not stored, they are
recomputed from the book), all by COPY, and adds the scores to the week's accumulators, all in
the caller's transaction::

    with engine.begin() as conn:
        snapshots.write_tick(conn, tick, markets, methods=...)

The tick's scheduled instant is its natural key: writing a tick that is already stored changes
nothing and returns ``False``, so a daemon re-running a tick after a crash cannot double-count.
Missed and rejected ticks store the header (with its reason) and nothing else.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg

from driftsnap import calendar, logs
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import methods as methods_mod
from driftsnap.scoring import result, scorer, settlement
from driftsnap.store import bookchain, books, database, schema, weeks
from driftsnap.store.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence, Set
    from datetime import datetime, timedelta


log = logs.get(__name__)

TickStatus = Literal["ok", "missed", "rejected"]


@dataclass(frozen=True, slots=True)
class Tick:
    """One cadence tick's header. ``at`` is the scheduled sample instant (UTC): the natural key."""

    at: datetime
    interval: int
    status: TickStatus
    reason: str = ""
    taken_at: datetime | None = None
    gpa_slot: int | None = None
    market_slot: int | None = None
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """One market's book at a tick and its scores, one per method; or why it was rejected."""

    book: book_mod.Book
    scores: tuple[result.SnapshotScore, ...] = ()
    rejected: str = ""  # non-empty: the book was read but not trusted (stored without scores)


@dataclass(frozen=True, slots=True)
class _Method:
    id: int
    method: methods_mod.Method


def _validate(
    tick: Tick,
    markets: Sequence[MarketSnapshot],
    by_hash: Mapping[str, methods_mod.Method],
) -> None:
    if tick.at.tzinfo is None:
        raise StoreError("a tick's time must be timezone-aware (UTC)")
    if (tick.status == "ok") == bool(tick.reason):
        raise StoreError(f"tick {tick.at.isoformat()}: a reason is required iff it is not ok")
    if tick.status != "ok" and markets:
        raise StoreError(f"tick {tick.at.isoformat()} is {tick.status}: it stores no snapshots")
    seen: set[int] = set()
    for snap in markets:
        book = snap.book
        if book.market_index in seen:
            raise StoreError(f"tick {tick.at.isoformat()}: market {book.market} given twice")
        seen.add(book.market_index)
        if snap.rejected and snap.scores:
            raise StoreError(f"{book.market}: a rejected snapshot stores no scores")
        for score in snap.scores:
            if (score.market_index, score.slot) != (book.market_index, book.slot):
                raise StoreError(f"{book.market}: a score of another book was given with it")
            method = by_hash.get(score.params_hash)
            if method is None or method.name != score.method:
                raise StoreError(
                    f"{book.market}: no method given for {score.method} ({score.params_hash[:12]})"
                )


def write_tick(
    conn: sa.Connection,
    tick: Tick,
    markets: Sequence[MarketSnapshot] = (),
    *,
    methods: Sequence[methods_mod.Method] = (),
    detail: Collection[str] | None = None,
) -> bool:
    """Store one tick in the caller's transaction; ``False`` if it was already stored.

    ``methods`` are the parameter sets of the scores given (their canonical JSON is stored once).
    ``detail``: the params hashes of the methods whose per-maker scores and bracket cells are
    stored (``None``: every method's); the others store their totals, brackets and week
    accumulators, and :func:`read_scores` recomputes their detail from the stored book.
    """
    started = time.perf_counter()
    by_hash = {m.params_hash: m for m in methods}
    _validate(tick, markets, by_hash)
    detailed = set(by_hash) if detail is None else set(detail)
    try:
        rows = _write(conn, tick, markets, by_hash, detailed)
    except (psycopg.Error, sa_exc.DBAPIError) as exc:
        # The caller's transaction is now failed and will roll back: nothing of the tick stays.
        reason = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        raise StoreError(f"writing tick {tick.at.isoformat()} failed: {reason}") from exc
    if rows is None:
        log.info("tick_already_stored", tick_at=tick.at.isoformat())
        return False
    log.debug(
        "tick_stored",
        tick_at=tick.at.isoformat(),
        status=tick.status,
        markets=len(markets),
        rows=rows,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return True


def _write(
    conn: sa.Connection,
    tick: Tick,
    markets: Sequence[MarketSnapshot],
    by_hash: Mapping[str, methods_mod.Method],
    detailed: Set[str],
) -> int | None:
    """Rows written for the tick, or ``None`` if it was already stored."""
    week = calendar.Week.containing(tick.at)
    weeks.ensure_partitions(conn, week)
    ok_books = [s.book for s in markets if not s.rejected]
    inserted = conn.execute(
        pg.insert(schema.ticks)
        .values(
            tick_at=tick.at,
            interval_index=tick.interval,
            status=tick.status,
            reason=tick.reason,
            taken_at=tick.taken_at,
            gpa_slot=tick.gpa_slot,
            market_slot=tick.market_slot,
            markets=len(ok_books),
            orders=sum(b.order_count for b in ok_books),
            makers=len(set().union(*(b.authorities() for b in ok_books))),
            duration_ms=tick.duration_ms,
        )
        .on_conflict_do_nothing(index_elements=[schema.ticks.c.tick_at])
        .returning(schema.ticks.c.tick_at)
    ).first()
    if inserted is None:
        return None
    with database.driver(conn).cursor() as cur:
        cur.execute(
            _WEEK_TICKS,
            {
                "week": week.monday,
                "ok": int(tick.status == "ok"),
                "missed": int(tick.status == "missed"),
                "rejected": int(tick.status == "rejected"),
            },
        )
        if not markets:
            return 0
        return _write_markets(
            conn, cur, tick=tick, week=week, markets=markets, by_hash=by_hash, detailed=detailed
        )


def _write_markets(
    conn: sa.Connection,
    cur: psycopg.Cursor[Any],
    *,
    tick: Tick,
    week: calendar.Week,
    markets: Sequence[MarketSnapshot],
    by_hash: Mapping[str, methods_mod.Method],
    detailed: Set[str],
) -> int:
    _ensure_markets(conn, [s.book for s in markets])
    method_ids = _method_ids(conn, by_hash.values())
    ok = [s for s in markets if not s.rejected]
    named = [books.accounts_of(s.book) for s in ok]
    ids, new = _account_ids(cur, {k for keys, _ in named for k in keys})
    if new:
        # A User account's authority is recorded in the tick that first sees the account.
        users = {(ids[u], ids[a]) for _, pairs in named for u, a in pairs if u in new}
        cur.execute(
            _USER_ACCOUNTS, {"users": [u for u, _ in users], "auths": [a for _, a in users]}
        )
    at = tick.at
    pubkeys = {v: k for k, v in ids.items()}
    xid, bases = bookchain.bases(conn, week, at, [s.book.market_index for s in ok])
    stored: dict[int, tuple[int, bytes, str, datetime | None]] = {}
    for s in ok:
        index = s.book.market_index
        base = bases.get(index)
        enc = books.encode_with_hash(s.book, ids, pubkeys, None if base is None else base.columns)
        on = base if base is not None and enc.format == books.DELTA else None
        stored[index] = (enc.format, enc.data, enc.sha256, None if on is None else on.tick_at)
        depth = 0 if on is None else on.depth + 1
        bookchain.remember(conn, index, bookchain.Base(at, xid, enc.columns, depth))
    rows = _copy(
        cur,
        schema.snapshots,
        week,
        (
            (
                at,
                s.book.market_index,
                "rejected" if s.rejected else "ok",
                s.rejected,
                s.book.slot,
                s.book.ts,
                s.book.oracle_price,
                s.book.order_count,
                *stored.get(s.book.market_index, (None, None, None, None)),
            )
            for s in markets
        ),
    )
    scored = [(s.book, score, method_ids[score.params_hash]) for s in ok for score in s.scores]
    rows += _copy(
        cur,
        schema.snapshot_methods,
        week,
        (
            (at, b.market_index, m.id, sc.best_bid, sc.best_ask, len(sc.scores),
             *(_detail(sc, ids) if sc.params_hash in detailed else _NO_DETAIL))
            for b, sc, m in scored
        ),
    )  # fmt: skip
    rows += _copy(
        cur,
        schema.brackets,
        week,
        (
            (at, b.market_index, m.id, i, x.name, x.weight, x.total_bid, x.total_ask, x.q,
             x.value, x.bid_price, x.ask_price)
            for b, sc, m in scored
            for i, x in enumerate(sc.brackets)
        ),
    )  # fmt: skip
    return rows + _write_makers(cur, tick=tick, week=week, markets=markets, scored=scored, ids=ids)


_NO_DETAIL = (None, None, None, None, None, None)
BID_SIDE, ASK_SIDE = 1, 2  # the bits of score_sides


def _detail(
    score: result.SnapshotScore, ids: Mapping[str, int]
) -> tuple[list[int], list[float], None, None, None, list[int]]:
    """A score's per-maker detail as its ``snapshot_methods`` row stores it (0008): the makers
    and their scores in the scorer's order, and per maker the sides it had bracketed liquidity
    on; no cell arrays (the cells are recomputed from the book: :func:`read_scores`)."""
    sides = dict.fromkeys(score.scores, 0)
    for x in score.brackets:
        for bit, cells in ((BID_SIDE, x.maker_bid), (ASK_SIDE, x.maker_ask)):
            for maker, size in cells.items():
                if size:
                    if maker not in sides:
                        raise IntegrityError(f"{score.market}: a maker with cells has no score")
                    sides[maker] |= bit
    makers = [ids[m] for m in score.scores]
    return makers, list(score.scores.values()), None, None, None, list(sides.values())


_COPY_TYPES: dict[type[sa.types.TypeEngine[Any]], str] = {
    sa.SmallInteger: "int2",
    sa.Integer: "int4",
    sa.BigInteger: "int8",
    sa.Text: "text",
    sa.Double: "float8",
    sa.LargeBinary: "bytea",
    sa.DateTime: "timestamptz",  # every DateTime of the schema is timezone-aware
}


def _copy_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.ARRAY):
        return _COPY_TYPES[type(column.type.item_type)] + "[]"
    return _COPY_TYPES[type(column.type)]


def _copy(
    cur: psycopg.Cursor[Any],
    table: sa.Table,
    week: calendar.Week,
    rows: Iterable[Sequence[object]],
) -> int:
    """COPY ``rows`` (values of all of ``table``'s columns, in order) into ``week``'s partition.

    Straight into the partition: routing each row through the parent costs a fifth of the time.
    A row of another week is refused by the partition's bound, so nothing can land astray.
    """
    columns = [c.name for c in table.columns]
    target = sql.Identifier(schema.PARTITION_SCHEMA, weeks.partition_name(table.name, week))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with cur.copy(statement) as copy:
        # Binary COPY needs each column's exact type; the declared schema has them.
        copy.set_types([_copy_type(c) for c in table.columns])
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _write_makers(
    cur: psycopg.Cursor[Any],
    *,
    tick: Tick,
    week: calendar.Week,
    markets: Sequence[MarketSnapshot],
    scored: Sequence[tuple[book_mod.Book, result.SnapshotScore, _Method]],
    ids: Mapping[str, int],
) -> int:
    """The per-maker scores and every weekly accumulator; returns the score rows written."""
    cur.execute(
        _WEEK_MARKETS,
        {
            "week": week.monday,
            "markets": [s.book.market_index for s in markets],
            "ok": [int(not s.rejected) for s in markets],
            "slots": [s.book.slot for s in markets],
        },
    )
    if not scored:
        return 0
    cur.execute(
        _WEEK_METHODS,
        {
            "week": week.monday,
            "markets": [b.market_index for b, _, _ in scored],
            "methods": [m.id for _, _, m in scored],
            "slots": [b.slot for b, _, _ in scored],
        },
    )
    rows: list[tuple[int, int, int, float, Decimal, int]] = []
    for b, score, m in scored:
        # What a snapshot adds to the week is the score itself under 'sum' (the default); under
        # 'normalized' the scoring module computes the maker's share. Decimal(float) is exact.
        if m.method.aggregation == "sum":
            added = score.scores
        else:
            one = settlement.WeekAccumulator(m.method.aggregation)
            one.add(score)
            added = one.totals(score.market)
        rows.extend(
            (b.market_index, m.id, ids[maker], value, Decimal(added[maker]), b.slot)
            for maker, value in score.scores.items()
        )
    # Tens of thousands of rows at mainnet scale: one COPY into a scratch table feeds both the
    # snapshot scores and the accumulator upsert (binding them as arrays costs more than both).
    cur.execute(_TICK_MAKERS)
    with cur.copy("COPY tick_makers FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int2", "int2", "int4", "float8", "numeric", "int8"])
        for row in rows:
            copy.write_row(row)
    accumulators = sql.Identifier(
        schema.PARTITION_SCHEMA, weeks.partition_name(schema.week_makers.name, week)
    )
    cur.execute(sql.SQL(_WEEK_MAKERS_ADD).format(accumulators), {"week": week.monday})
    cur.execute(_WEEK_MAKERS_NEW, {"week": week.monday})
    cur.execute("TRUNCATE tick_makers")
    return len(rows)


_WEEK_TICKS = """
INSERT INTO week_ticks (week_start, ticks, ok, missed, rejected)
VALUES (%(week)s, 1, %(ok)s, %(missed)s, %(rejected)s)
ON CONFLICT (week_start) DO UPDATE SET
    ticks = week_ticks.ticks + 1,
    ok = week_ticks.ok + EXCLUDED.ok,
    missed = week_ticks.missed + EXCLUDED.missed,
    rejected = week_ticks.rejected + EXCLUDED.rejected
"""

_WEEK_MARKETS = """
INSERT INTO week_markets (week_start, market_index, ok, rejected, last_slot)
SELECT %(week)s, m, o, 1 - o, s
FROM unnest(%(markets)s::smallint[], %(ok)s::integer[], %(slots)s::bigint[]) AS u (m, o, s)
ON CONFLICT (week_start, market_index) DO UPDATE SET
    ok = week_markets.ok + EXCLUDED.ok,
    rejected = week_markets.rejected + EXCLUDED.rejected,
    last_slot = EXCLUDED.last_slot
"""

_WEEK_METHODS = """
INSERT INTO week_methods (week_start, market_index, method_id, snapshots, last_slot)
SELECT %(week)s, m, me, 1, s
FROM unnest(%(markets)s::smallint[], %(methods)s::smallint[], %(slots)s::bigint[])
    AS u (m, me, s)
ON CONFLICT (week_start, market_index, method_id) DO UPDATE SET
    snapshots = week_methods.snapshots + 1,
    last_slot = EXCLUDED.last_slot
"""

# Session-private scratch for one tick's per-maker rows; dropped with the transaction.
_TICK_MAKERS = """
CREATE TEMPORARY TABLE IF NOT EXISTS tick_makers (
    market_index smallint, method_id smallint, maker_id integer,
    score double precision, added numeric, last_slot bigint
) ON COMMIT DROP
"""

# The accumulators of makers already seen this week are updated in place (one hash join, straight
# into the week's partition, each row a HOT update on its own page), then the makers new this
# week are inserted. One INSERT ... ON CONFLICT DO UPDATE of every row did the same in 1.6x the
# time (bench/bench_store.py): it probes the index once per row and takes the conflict path for
# nearly all. The second statement keeps DO UPDATE, so a row another writer inserted meanwhile
# is added to, never lost or an error (and one writer holds the database lock in any case).
_WEEK_MAKERS_ADD = """
UPDATE {} AS w SET
    snapshots = w.snapshots + 1,
    score_sum = w.score_sum + t.added,
    last_slot = t.last_slot
FROM tick_makers AS t
WHERE w.week_start = %(week)s
    AND w.market_index = t.market_index
    AND w.method_id = t.method_id
    AND w.maker_id = t.maker_id
"""

_WEEK_MAKERS_NEW = """
INSERT INTO week_makers
    (week_start, market_index, method_id, maker_id, snapshots, score_sum, last_slot)
SELECT %(week)s, t.market_index, t.method_id, t.maker_id, 1, t.added, t.last_slot
FROM tick_makers AS t
WHERE NOT EXISTS (
    SELECT 1 FROM week_makers AS w
    WHERE w.week_start = %(week)s
        AND w.market_index = t.market_index
        AND w.method_id = t.method_id
        AND w.maker_id = t.maker_id
)
ON CONFLICT (week_start, market_index, method_id, maker_id) DO UPDATE SET
    snapshots = week_makers.snapshots + 1,
    score_sum = week_makers.score_sum + EXCLUDED.score_sum,
    last_slot = EXCLUDED.last_slot
"""

# Insert only the keys not yet stored: ON CONFLICT DO NOTHING alone would draw an identity value
# for every key of every tick and run the int4 sequence dry within months at mainnet scale.
_NEW_ACCOUNTS = """
INSERT INTO accounts (pubkey)
SELECT k FROM unnest(%(keys)s::text[]) AS u (k)
WHERE NOT EXISTS (SELECT 1 FROM accounts AS a WHERE a.pubkey = u.k)
ON CONFLICT (pubkey) DO NOTHING
"""

_ACCOUNT_IDS = """
SELECT a.pubkey, a.account_id FROM unnest(%(keys)s::text[]) AS u (k)
JOIN accounts AS a ON a.pubkey = u.k
"""

_USER_ACCOUNTS = """
INSERT INTO user_accounts (user_id, authority_id)
SELECT u, a FROM unnest(%(users)s::integer[], %(auths)s::integer[]) AS x (u, a)
WHERE NOT EXISTS (SELECT 1 FROM user_accounts AS ua WHERE ua.user_id = x.u)
ON CONFLICT (user_id) DO NOTHING
"""


def _account_ids(cur: psycopg.Cursor[Any], keys: set[str]) -> tuple[dict[str, int], set[str]]:
    """Ids of ``keys``, creating the missing ones; and the keys that were new."""
    cur.execute(_ACCOUNT_IDS, {"keys": sorted(keys)})
    ids: dict[str, int] = dict(cur.fetchall())
    missing = sorted(keys - ids.keys())
    if missing:
        cur.execute(_NEW_ACCOUNTS, {"keys": missing})
        cur.execute(_ACCOUNT_IDS, {"keys": missing})
        ids.update(cur.fetchall())
    return ids, set(missing)


def _ensure_markets(conn: sa.Connection, books_: Sequence[book_mod.Book]) -> None:
    """Record new markets; a market index already stored under another name is an error."""
    table = schema.markets
    given = {b.market_index: b.market for b in books_}
    rows = conn.execute(
        sa.select(table.c.market_index, table.c.name).where(
            table.c.market_index.in_(given) | table.c.name.in_(given.values())
        )
    )
    stored: dict[int, str] = dict(rows.all())
    for index, name in given.items():
        clash = stored.get(index, name) != name or any(
            n == name and i != index for i, n in stored.items()
        )
        if clash:
            raise IntegrityError(
                f"market {name} (index {index}) contradicts the stored markets "
                f"{sorted(stored.items())}"
            )
    new = [{"market_index": i, "name": n} for i, n in given.items() if i not in stored]
    if new:
        conn.execute(
            pg.insert(table).on_conflict_do_nothing(index_elements=[table.c.market_index]),
            new,
        )


def _method_ids(conn: sa.Connection, methods: Iterable[methods_mod.Method]) -> dict[str, _Method]:
    table = schema.methods
    given = {m.params_hash: m for m in methods}
    if not given:
        return {}
    missing = set(given) - set(
        conn.execute(sa.select(table.c.params_hash).where(table.c.params_hash.in_(given))).scalars()
    )
    if missing:
        conn.execute(
            pg.insert(table).on_conflict_do_nothing(index_elements=[table.c.params_hash]),
            [
                {
                    "params_hash": h,
                    "name": given[h].name,
                    "canonical_json": given[h].canonical_json(),
                }
                for h in sorted(missing)
            ],
        )
    rows = conn.execute(
        sa.select(table.c.params_hash, table.c.method_id).where(table.c.params_hash.in_(given))
    )
    return {h: _Method(i, given[h]) for h, i in rows}


# ---------------------------------------------------------------------------- reading back


def _pubkeys(conn: sa.Connection, ids: Iterable[int]) -> dict[int, str]:
    table = schema.accounts
    rows = conn.execute(
        sa.select(table.c.account_id, table.c.pubkey).where(table.c.account_id.in_(list(ids)))
    )
    return dict(rows.all())


def _snapshot(conn: sa.Connection, tick_at: datetime, market: str) -> sa.Row[Any]:
    s, k = schema.snapshots, schema.markets
    row = conn.execute(
        sa.select(s, k.c.name)
        .join(k, k.c.market_index == s.c.market_index)
        .where(s.c.tick_at == tick_at, k.c.name == market)
    ).first()
    if row is None:
        raise StoreError(f"no snapshot of {market} at {tick_at.isoformat()}")
    if row.status != "ok":
        raise StoreError(f"the snapshot of {market} at {tick_at.isoformat()} was {row.status}")
    return row


def read_book(conn: sa.Connection, tick_at: datetime, market: str) -> book_mod.Book:
    """The order-level book of ``market`` stored at tick ``tick_at``, exactly as written."""
    row = _snapshot(conn, tick_at, market)
    columns = bookchain.Reader(conn).columns(row)
    return books.book_of(
        columns,
        _pubkeys(conn, books.ids_in(columns)),
        market=row.name,
        market_index=row.market_index,
        slot=row.slot,
        ts=row.ts,
        oracle_price=row.oracle_price,
    )


def read_scores(
    conn: sa.Connection, tick_at: datetime, market: str, params_hash: str
) -> result.SnapshotScore:
    """The stored :class:`SnapshotScore` of ``market`` at ``tick_at`` under one method."""
    snap = _snapshot(conn, tick_at, market)
    me, sm = schema.methods, schema.snapshot_methods
    head = conn.execute(
        sa.select(
            me.c.method_id,
            me.c.name,
            me.c.canonical_json,
            me.c.params_hash,
            sm.c.best_bid,
            sm.c.best_ask,
            sm.c.makers,
            sm.c.scores.is_(None).label("no_arrays"),
            sm.c.score_sides.is_not(None).label("cells_derived"),
        )
        .join(sm, sm.c.method_id == me.c.method_id)
        .where(
            me.c.params_hash == params_hash,
            sm.c.tick_at == tick_at,
            sm.c.market_index == snap.market_index,
        )
    ).first()
    if head is None:
        raise StoreError(f"no scores of {market} at {tick_at.isoformat()} for {params_hash[:12]}")
    key = (tick_at, snap.market_index, head.method_id)

    def where(table: sa.TableClause) -> sa.ColumnElement[bool]:
        return sa.and_(
            table.c.tick_at == key[0], table.c.market_index == key[1], table.c.method_id == key[2]
        )

    # The views cover both layouts: the arrays of snapshot_methods (0007) and the older rows.
    ms, bc, br = schema.tick_maker_scores, schema.tick_bracket_cells, schema.brackets
    score_rows = conn.execute(sa.select(ms.c.maker_id, ms.c.score).where(where(ms))).all()
    cell_rows = conn.execute(
        sa.select(bc.c.bracket, bc.c.side, bc.c.maker_id, bc.c.size).where(where(bc))
    ).all()
    bracket_rows = conn.execute(sa.select(br).where(where(br)).order_by(br.c.bracket)).all()
    pubkeys = _pubkeys(conn, {r.maker_id for r in score_rows} | {r.maker_id for r in cell_rows})
    if head.cells_derived or (head.no_arrays and not score_rows and head.makers):
        # Cells are not stored since 0008, nor any detail of a method outside write_tick's
        # ``detail``: recomputed from the book, and checked against what the tick stored.
        stored = {pubkeys[r.maker_id]: r.score for r in score_rows} if head.cells_derived else None
        return _rescored(conn, snap, head, bracket_rows, stored)
    cells: dict[tuple[int, int], dict[str, int]] = {}
    for r in cell_rows:
        cells.setdefault((r.bracket, r.side), {})[pubkeys[r.maker_id]] = r.size
    scores = {pubkeys[r.maker_id]: r.score for r in score_rows}
    if json.loads(head.canonical_json)["maker_key"] == "authority":
        authority_of = {m: m for m in scores}
    else:
        authority_of = _authorities(conn, [r.maker_id for r in score_rows], pubkeys)
    return result.SnapshotScore(
        method=head.name,
        params_hash=params_hash,
        market=snap.name,
        market_index=snap.market_index,
        slot=snap.slot,
        ts=snap.ts,
        oracle_price=snap.oracle_price,
        best_bid=head.best_bid,
        best_ask=head.best_ask,
        scores=scores,
        brackets=tuple(
            result.BracketLiquidity(
                name=r.name,
                weight=r.weight,
                total_bid=r.total_bid,
                total_ask=r.total_ask,
                q=r.q,
                value=r.value,
                maker_bid=cells.get((r.bracket, 0), {}),
                maker_ask=cells.get((r.bracket, 1), {}),
                bid_price=r.bid_price,
                ask_price=r.ask_price,
            )
            for r in bracket_rows
        ),
        authority_of=authority_of,
    )


def _rescored(
    conn: sa.Connection,
    snap: sa.Row[Any],
    head: sa.Row[Any],
    bracket_rows: Sequence[sa.Row[Any]],
    scores: Mapping[str, float] | None,
) -> result.SnapshotScore:
    """The detail of a tick stored without it, recomputed from the stored book, after checking
    that the recomputation gives the totals, brackets and (``scores``) per-maker scores that
    were stored with the tick."""
    tick_at = snap.tick_at
    method = methods_mod.get(head.name)
    if method.params_hash != head.params_hash:
        raise StoreError(
            f"the scores of {snap.name} at {tick_at.isoformat()} under "
            f"{head.params_hash[:12]} were stored without their detail, by parameters this "
            "driftsnap does not have"
        )
    score = scorer.score(read_book(conn, tick_at, snap.name), method)
    stored = [
        (r.name, r.weight, r.total_bid, r.total_ask, r.q, r.value, r.bid_price, r.ask_price)
        for r in bracket_rows
    ]
    again = [
        (x.name, x.weight, x.total_bid, x.total_ask, x.q, x.value, x.bid_price, x.ask_price)
        for x in score.brackets
    ]
    if (score.best_bid, score.best_ask, len(score.scores), again) != (
        head.best_bid,
        head.best_ask,
        head.makers,
        stored,
    ) or (scores is not None and scores != score.scores):
        raise IntegrityError(
            f"{snap.name} at {tick_at.isoformat()}: re-scoring the stored book under "
            f"{head.name} does not give the totals stored with it"
        )
    return score


def _authorities(
    conn: sa.Connection, user_ids: list[int], pubkeys: Mapping[int, str]
) -> dict[str, str]:
    ua = schema.user_accounts
    rows = conn.execute(
        sa.select(ua.c.user_id, ua.c.authority_id).where(ua.c.user_id.in_(user_ids))
    ).all()
    auth_keys = _pubkeys(conn, {a for _, a in rows})
    return {pubkeys[u]: auth_keys[a] for u, a in rows}


def week_totals(
    conn: sa.Connection, week: calendar.Week, params_hash: str
) -> dict[str, dict[str, float]]:
    """Per market, each maker's accumulated week total (correctly rounded, as ExactSum gives it)."""
    wm, k, me, a = schema.week_makers, schema.markets, schema.methods, schema.accounts
    rows = conn.execute(
        sa.select(k.c.name, a.c.pubkey, wm.c.score_sum)
        .join(k, k.c.market_index == wm.c.market_index)
        .join(me, me.c.method_id == wm.c.method_id)
        .join(a, a.c.account_id == wm.c.maker_id)
        .where(wm.c.week_start == week.monday, me.c.params_hash == params_hash)
    )
    out: dict[str, dict[str, float]] = {}
    for market, maker, total in rows:
        # float(Decimal) rounds the exact sum correctly, as math.fsum does in memory.
        out.setdefault(market, {})[maker] = float(total)
    return out


# ---------------------------------------------------------------------------- the tick headers


def interval_taken(
    conn: sa.Connection, week: calendar.Week, interval: int, cadence: timedelta
) -> bool:
    """Whether interval ``interval`` of ``week`` already has a tick (e.g. one of `run --once`)."""
    start = week.start + interval * cadence
    t = schema.ticks
    found = conn.execute(
        sa.select(t.c.tick_at).where(t.c.tick_at >= start, t.c.tick_at < start + cadence).limit(1)
    ).first()
    return found is not None


def last_interval(conn: sa.Connection, week: calendar.Week) -> int | None:
    """The interval of the latest tick stored in ``week``, if any."""
    t = schema.ticks
    last: int | None = conn.execute(
        sa.select(t.c.interval_index)
        .where(t.c.tick_at >= week.start, t.c.tick_at < week.end)
        .order_by(t.c.tick_at.desc())
        .limit(1)
    ).scalar()
    return last


def sampled_before(conn: sa.Connection, week: calendar.Week) -> bool:
    """Whether any tick before ``week`` is stored (so ``week`` is not the database's first)."""
    t = schema.ticks
    found = conn.execute(sa.select(t.c.tick_at).where(t.c.tick_at < week.start).limit(1))
    return found.first() is not None


def last_ok(conn: sa.Connection) -> tuple[float, float | None]:
    """(the server's time, when the latest ok tick was written), in unix seconds: readiness."""
    t = schema.ticks
    written = (
        sa.select(sa.extract("epoch", t.c.written_at).cast(sa.Float))
        .where(t.c.status == "ok")
        .order_by(t.c.tick_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    now, at = conn.execute(
        sa.select(sa.extract("epoch", sa.func.now()).cast(sa.Float), written)
    ).one()
    return float(now), None if at is None else float(at)
