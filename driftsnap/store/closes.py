"""The week close in SQL: its stored result and payout rows, and the inputs it reads.

The close runs in one transaction under :func:`driftsnap.store.locks.lock_close` (a
transaction-level advisory lock), so two closes of any week run one after the other and the
second finds the first's row::

    with database.begin(engine) as conn:
        locks.lock_close(conn)
        if (done := closes.stored(conn, week)) is None:
            ...compute...
            closes.write(conn, new_close, payout_rows)

A closed week is immutable: the triggers of ``0003_close.sql`` refuse any change to its
``week_closes`` and ``week_close_payouts`` rows and to its inputs (snapshots, tick headers, the
seed record, fills); this module only ever inserts them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftsnap.scoring import digest
from driftsnap.store import bookchain, books, schema
from driftsnap.store.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from datetime import date
    from decimal import Decimal

    from driftsnap import calendar
    from driftsnap.scoring import book as book_mod


# ---------------------------------------------------------------------------- the result

_CANONICAL = books.CANONICAL_HASH  # (a field of Close below is named books)


@dataclass(frozen=True, slots=True)
class Close:
    """One closed week as stored (or as a dry run would store it)."""

    week_start: date
    method: str
    params_hash: str
    program_digest: str
    forced: bool
    force_reason: str
    overridden: tuple[str, ...]
    seed_sha256: str | None
    seed: str | None  # hex
    books: int
    books_root: str
    fills: int
    fills_digest: str
    result_json: str
    result_sha256: str
    digest: str
    closed_at: datetime | None = None
    books_hash: int = _CANONICAL  # what the leaves hash (books.BYTES_HASH: closed before 0007)


@dataclass(frozen=True, slots=True)
class PayoutRow:
    """One payout row of a closed week: a maker's weight and reward in one pool."""

    pool: str
    maker: str
    authority: str
    weight: Decimal
    participant: bool
    reward_micro_usdc: int


def stored(conn: sa.Connection, week: calendar.Week) -> Close | None:
    """The stored close of ``week``, if it is closed."""
    t = schema.week_closes
    row = conn.execute(sa.select(t).where(t.c.week_start == week.monday)).first()
    if row is None:
        return None
    return Close(
        week_start=row.week_start,
        method=row.method,
        params_hash=row.params_hash,
        program_digest=row.program_digest,
        forced=row.forced,
        force_reason=row.force_reason,
        overridden=tuple(x for x in row.overridden.split("\n") if x),
        seed_sha256=row.seed_sha256,
        seed=row.seed,
        books=row.books,
        books_root=row.books_root,
        fills=row.fills,
        fills_digest=row.fills_digest,
        result_json=row.result_json,
        result_sha256=row.result_sha256,
        digest=row.digest,
        closed_at=row.closed_at,
        books_hash=row.books_hash,
    )


def write(conn: sa.Connection, close: Close, rows: Sequence[PayoutRow]) -> None:
    """Store a close in the caller's transaction: the payout rows first, then the close row,
    after which the triggers refuse any change to either."""
    if rows:
        conn.execute(
            sa.insert(schema.week_close_payouts),
            [
                {
                    "week_start": close.week_start,
                    "pool": r.pool,
                    "maker": r.maker,
                    "authority": r.authority,
                    "weight": r.weight,
                    "participant": r.participant,
                    "reward_micro_usdc": r.reward_micro_usdc,
                }
                for r in rows
            ],
        )
    conn.execute(
        sa.insert(schema.week_closes).values(
            week_start=close.week_start,
            method=close.method,
            params_hash=close.params_hash,
            program_digest=close.program_digest,
            forced=close.forced,
            force_reason=close.force_reason,
            overridden="\n".join(close.overridden),
            seed_sha256=close.seed_sha256,
            seed=close.seed,
            books=close.books,
            books_root=close.books_root,
            fills=close.fills,
            fills_digest=close.fills_digest,
            result_json=close.result_json,
            result_sha256=close.result_sha256,
            digest=close.digest,
            books_hash=close.books_hash,
        )
    )


def payout_rows(conn: sa.Connection, week: calendar.Week) -> list[PayoutRow]:
    """The stored payout rows of a closed week, by pool then maker."""
    t = schema.week_close_payouts
    rows = conn.execute(
        sa.select(
            t.c.pool, t.c.maker, t.c.authority, t.c.weight, t.c.participant, t.c.reward_micro_usdc
        )
        .where(t.c.week_start == week.monday)
        .order_by(t.c.pool, t.c.maker)
    )
    return [PayoutRow(*r) for r in rows]


def closed_weeks(conn: sa.Connection, weeks: Iterable[calendar.Week]) -> set[calendar.Week]:
    """Which of ``weeks`` are closed."""
    wanted = {w.monday: w for w in weeks}
    if not wanted:
        return set()
    t = schema.week_closes
    found = conn.execute(sa.select(t.c.week_start).where(t.c.week_start.in_(list(wanted))))
    return {wanted[d] for d in found.scalars()}


# ---------------------------------------------------------------------------- the inputs


def book_leaves(conn: sa.Connection, week: calendar.Week) -> list[digest.BookLeaf]:
    """The Merkle leaves of ``week``'s ok snapshots, in (tick time, market index) order, with
    the pubkey-keyed hash stored with each snapshot (computed from the book for a snapshot
    written before migration 0007, which has none)."""
    s = schema.snapshots
    rows = conn.execute(
        sa.select(
            s.c.tick_at, s.c.market_index, s.c.slot, s.c.ts, s.c.oracle_price, s.c.orders,
            s.c.book_sha256,
        )
        .where(s.c.tick_at >= week.start, s.c.tick_at < week.end, s.c.status == "ok")
        .order_by(s.c.tick_at, s.c.market_index)
    ).all()  # fmt: skip
    if any(r.book_sha256 is None for r in rows):
        return [b.leaf for b in week_books(conn, week)]
    return [
        digest.BookLeaf(_iso(at), index, slot, ts, oracle, orders, sha)
        for at, index, slot, ts, oracle, orders, sha in rows
    ]


@dataclass(frozen=True, slots=True)
class StoredBook:
    """One ok snapshot of the week, decoded, with the leaf computed from the bytes read."""

    tick_at: datetime
    book: book_mod.Book
    leaf: digest.BookLeaf
    # Its columns (accounts as ids) and the ids' public keys: what an export writes, read once.
    columns: books.Columns | None = field(default=None, compare=False, repr=False)
    pubkeys: Mapping[int, str] | None = field(default=None, compare=False, repr=False)


def week_books(
    conn: sa.Connection, week: calendar.Week, books_hash: int = books.CANONICAL_HASH
) -> Iterator[StoredBook]:
    """Every ok snapshot of ``week`` decoded, in (tick time, market index) order.

    The leaf's book hash is taken here, in Python, over the book read back: an independent
    recomputation of the hash stored with it. ``books_hash``: the canonical, pubkey-keyed hash
    (:data:`books.CANONICAL_HASH`), or the sha256 of the stored bytes (a close made before
    migration 0007).
    """
    s, k = schema.snapshots, schema.markets
    rows = conn.execute(
        sa.select(
            s.c.tick_at,
            s.c.market_index,
            k.c.name,
            s.c.slot,
            s.c.ts,
            s.c.oracle_price,
            s.c.orders,
            s.c.book_format,
            s.c.book_base,
            s.c.book,
        )
        .join(k, k.c.market_index == s.c.market_index)
        .where(s.c.tick_at >= week.start, s.c.tick_at < week.end, s.c.status == "ok")
        .order_by(s.c.tick_at, s.c.market_index)
    )
    pubkeys: dict[int, str] = {}
    reader = bookchain.Reader(conn)
    for r in rows:
        if books_hash != books.CANONICAL_HASH and r.book_format != books.FORMAT:
            raise StoreError(f"a close of stored bytes met a book of format {r.book_format}")
        columns = reader.columns(r)
        missing = books.ids_in(columns) - pubkeys.keys()
        if missing:
            a = schema.accounts
            pubkeys.update(
                conn.execute(
                    sa.select(a.c.account_id, a.c.pubkey).where(a.c.account_id.in_(missing))
                ).all()
            )
        book = books.book_of(
            columns,
            pubkeys,
            market=r.name,
            market_index=r.market_index,
            slot=r.slot,
            ts=r.ts,
            oracle_price=r.oracle_price,
        )
        leaf = digest.BookLeaf(
            _iso(r.tick_at),
            r.market_index,
            r.slot,
            r.ts,
            r.oracle_price,
            r.orders,
            (
                books.canonical_sha256_of(columns, pubkeys)
                if books_hash == books.CANONICAL_HASH
                else hashlib.sha256(bytes(r.book)).hexdigest()
            ),
        )
        yield StoredBook(r.tick_at, book, leaf, columns, pubkeys)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


_FILL_FACTS = """
SELECT f.market_type, f.market_index, f.fill_record_id, f.signature, f.slot,
       extract(epoch FROM f.block_time)::bigint, m.pubkey, ma.pubkey, t.pubkey, ta.pubkey,
       f.quote_filled
FROM fills AS f
LEFT JOIN accounts AS m ON m.account_id = f.maker_id
LEFT JOIN accounts AS ma ON ma.account_id = f.maker_authority_id
LEFT JOIN accounts AS t ON t.account_id = f.taker_id
LEFT JOIN accounts AS ta ON ta.account_id = f.taker_authority_id
WHERE f.block_time >= :start AND f.block_time < :end
ORDER BY f.market_type, f.market_index, f.fill_record_id
"""


def fill_facts(conn: sa.Connection, week: calendar.Week) -> list[digest.FillFact]:
    """Every stored fill of ``week`` (self-matches and unattributed ones included)."""
    rows = conn.execute(sa.text(_FILL_FACTS), {"start": week.start, "end": week.end})
    return [digest.FillFact(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class MarketTotals:
    """A market's stored week accumulators under one method."""

    market: str
    snapshots: int  # snapshots scored under the method
    ok: int  # ok snapshots of the market (all methods)
    totals: dict[str, float]
    authority_of: dict[str, str]


_TOTALS = """
SELECT k.name, wm.snapshots, coalesce(mk.ok, 0)
FROM week_methods AS wm
JOIN methods AS me USING (method_id)
JOIN markets AS k USING (market_index)
LEFT JOIN week_markets AS mk USING (week_start, market_index)
WHERE wm.week_start = :week AND me.params_hash = :hash
"""

_MAKERS = """
SELECT k.name, a.pubkey, coalesce(au.pubkey, a.pubkey), w.score_sum
FROM week_makers AS w
JOIN methods AS me USING (method_id)
JOIN markets AS k USING (market_index)
JOIN accounts AS a ON a.account_id = w.maker_id
LEFT JOIN user_accounts AS ua ON ua.user_id = w.maker_id
LEFT JOIN accounts AS au ON au.account_id = ua.authority_id
WHERE w.week_start = :week AND me.params_hash = :hash
"""


def week_totals(
    conn: sa.Connection, week: calendar.Week, params_hash: str, *, maker_key: str
) -> dict[str, MarketTotals]:
    """Per market, the stored week totals of one method, with each maker's authority."""
    args = {"week": week.monday, "hash": params_hash}
    out = {
        name: MarketTotals(name, n, ok, {}, {})
        for name, n, ok in conn.execute(sa.text(_TOTALS), args)
    }
    for market, maker, authority, total in conn.execute(sa.text(_MAKERS), args):
        acc = out[market]
        # float(Decimal) rounds the exact sum correctly, as ExactSum does in memory.
        acc.totals[maker] = float(total)
        acc.authority_of[maker] = maker if maker_key == "authority" else authority
    return out


def ok_snapshots(conn: sa.Connection, week: calendar.Week) -> dict[str, int]:
    """Ok snapshots per market in ``week``."""
    mk, k = schema.week_markets, schema.markets
    rows = conn.execute(
        sa.select(k.c.name, mk.c.ok)
        .join(k, k.c.market_index == mk.c.market_index)
        .where(mk.c.week_start == week.monday)
    )
    return dict(rows.all())


def tick_times(conn: sa.Connection, week: calendar.Week) -> dict[int, datetime]:
    """When each sampled tick of ``week`` was taken, by interval (missed ticks have none)."""
    t = schema.ticks
    rows = conn.execute(
        sa.select(t.c.interval_index, t.c.taken_at).where(
            t.c.tick_at >= week.start, t.c.tick_at < week.end, t.c.taken_at.is_not(None)
        )
    )
    return dict(rows.all())
