"""Fills in Postgres: idempotent writes with their watermark, integrity reports, week volume.

:func:`write_batch` stores a batch of fills, the truncated, rejected and unread transactions
among them and the watermark that covers them, all in the caller's transaction: either the fills
and the watermark are both committed or neither is, so a crash between two batches re-reads at
most one batch, and the re-read inserts nothing twice (``ON CONFLICT DO NOTHING`` on
``(market_type, market_index, fill_record_id)``, the program's own counter)::

    with engine.begin() as conn:
        fills.write_batch(conn, rows, watermark=fills.Watermark(...), truncated=...)

A fill whose id is stored as a **different** record (another signature or event index, or other
facts) is not dropped: it goes to ``fill_conflicts`` whole, and the id is flagged until an
operator closes the week with ``--force --reason``. The same record re-read is no conflict.
Transactions whose logs contradict their message are kept in ``fill_rejected``, those the node
would not serve readably in ``fill_unread`` (retrying, then unreadable), and the markets'
``next_fill_record_id`` as sampled by the daemon in ``fill_counters``.

The readers answer ``driftsnap fills check`` (:func:`check`: ``fill_record_id`` gaps per market
and week, against the PerpMarket's ``next_fill_record_id`` at the tail, and against the sampled
counters for a market with no fill stored in the week; :func:`conflicts`, :func:`unread_of_week`,
:func:`rejected`), ``driftsnap fills self-matches`` (:func:`self_matches`) and the week close
(:func:`week_volume`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from driftsnap import calendar, logs
from driftsnap.scoring import fill
from driftsnap.store import database, schema

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import date

    import psycopg

log = logs.get(__name__)

Commitment = fill.Commitment
MarketKey = tuple[str, int]  # (market_type, market_index)


@dataclass(frozen=True, slots=True)
class Watermark:
    """Where an ingest pass stands: ``signature`` (at ``slot``) and everything older is stored."""

    program: str
    commitment: Commitment
    signature: str
    slot: int
    through_slot: int | None = None  # every signature up to this slot is processed
    through_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Truncated:
    """A transaction whose logs the node cut: ``fills_parsed`` fills were read before the cut."""

    signature: str
    slot: int
    block_time: int
    fills_parsed: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A transaction whose logs contradict its message: none of its ``fills_claimed`` is kept."""

    signature: str
    slot: int
    block_time: int
    reason: str
    fills_claimed: int


@dataclass(frozen=True, slots=True)
class Unread:
    """A transaction the node would not serve readably (``kind`` ``error`` or ``cut``).

    While ``unreadable`` is false the watermark waits before it and it is asked again at
    ``next_attempt_at``; once true its attempts are spent, the ingest has moved past it and it
    is asked again only now and then, until it reads.
    """

    signature: str
    slot: int
    block_time: int | None
    kind: str
    reason: str
    attempts: int
    unreadable: bool
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Conflict:
    """A second, different record for a stored fill's id: ``other`` is the one not stored."""

    market_type: str
    market_index: int
    fill_record_id: int
    stored_signature: str
    stored_event_index: int
    other: fill.Fill


@dataclass(frozen=True, slots=True)
class Written:
    """What :func:`write_batch` stored: fills new to the store, and conflicts new to it."""

    inserted: int
    conflicts: tuple[tuple[str, int, int], ...]  # (market_type, market_index, fill_record_id)


# ---------------------------------------------------------------------------- writing


def watermark(conn: sa.Connection, program: str, commitment: Commitment) -> Watermark | None:
    """The stored watermark of ``program`` at ``commitment``, if any."""
    t = schema.fill_watermarks
    row = conn.execute(
        sa.select(t).where(t.c.program == program, t.c.commitment == commitment)
    ).first()
    if row is None:
        return None
    return Watermark(
        program=row.program,
        commitment=row.commitment,
        signature=row.signature,
        slot=row.slot,
        through_slot=row.through_slot,
        through_time=row.through_time,
    )


def set_watermark(conn: sa.Connection, mark: Watermark) -> None:
    """Store ``mark`` (in the caller's transaction, with what it covers)."""
    t = schema.fill_watermarks
    values = {
        "signature": mark.signature,
        "slot": mark.slot,
        "through_slot": mark.through_slot,
        "through_time": mark.through_time,
        "updated_at": sa.func.now(),
    }
    conn.execute(
        pg.insert(t)
        .values(program=mark.program, commitment=mark.commitment, **values)
        .on_conflict_do_update(index_elements=[t.c.program, t.c.commitment], set_=values)
    )


def write(
    conn: sa.Connection,
    rows: Sequence[fill.Fill],
    *,
    watermark: Watermark | None,
    truncated: Sequence[Truncated] = (),
) -> int:
    """Store ``rows`` and ``truncated`` and move the watermark, in the caller's transaction.

    Returns the number of fills that were new (see :func:`write_batch`).
    """
    return write_batch(conn, rows, watermark=watermark, truncated=truncated).inserted


def write_batch(
    conn: sa.Connection,
    rows: Sequence[fill.Fill],
    *,
    watermark: Watermark | None,
    truncated: Sequence[Truncated] = (),
    rejected: Sequence[Rejected] = (),
    unread: Sequence[Unread] = (),
    read: Sequence[str] = (),
) -> Written:
    """One batch of the ingest, in the caller's transaction: its fills, the transactions it
    found truncated, rejected or unread, the formerly unread ones that now ``read``, and the
    watermark that covers them.

    A fill whose id is stored already is left as it is; if it is a different record (another
    signature or event index, or other facts) it is kept in ``fill_conflicts``, whole.
    """
    written = Written(0, ())
    if rows:
        with database.driver(conn).cursor() as cur:
            written = _write_fills(cur, rows)
    if truncated:
        t = schema.fill_truncated
        conn.execute(
            pg.insert(t).on_conflict_do_nothing(index_elements=[t.c.signature]),
            [
                {
                    "signature": x.signature,
                    "slot": x.slot,
                    "block_time": _time(x.block_time),
                    "fills_parsed": x.fills_parsed,
                }
                for x in truncated
            ],
        )
    if rejected:
        r = schema.fill_rejected
        conn.execute(
            pg.insert(r).on_conflict_do_nothing(index_elements=[r.c.signature]),
            [
                {
                    "signature": x.signature,
                    "slot": x.slot,
                    "block_time": _time(x.block_time),
                    "reason": x.reason,
                    "fills_claimed": x.fills_claimed,
                }
                for x in rejected
            ],
        )
    if unread:
        u = schema.fill_unread
        insert = pg.insert(u)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[u.c.signature],
                set_={
                    "kind": insert.excluded.kind,
                    "reason": insert.excluded.reason,
                    "attempts": insert.excluded.attempts,
                    "unreadable": insert.excluded.unreadable,
                    "next_attempt_at": insert.excluded.next_attempt_at,
                    "block_time": sa.func.coalesce(insert.excluded.block_time, u.c.block_time),
                },
            ),
            [
                {
                    "signature": x.signature,
                    "slot": x.slot,
                    "block_time": None if x.block_time is None else _time(x.block_time),
                    "kind": x.kind,
                    "reason": x.reason,
                    "attempts": x.attempts,
                    "unreadable": x.unreadable,
                    "next_attempt_at": x.next_attempt_at,
                }
                for x in unread
            ],
        )
    if read:
        u = schema.fill_unread
        conn.execute(sa.delete(u).where(u.c.signature.in_(sorted(set(read)))))
    if watermark is not None:
        set_watermark(conn, watermark)
    return written


def unread(conn: sa.Connection, signatures: Iterable[str]) -> dict[str, Unread]:
    """The unread records of those of ``signatures`` that have one."""
    keys = sorted(set(signatures))
    if not keys:
        return {}
    u = schema.fill_unread
    rows = conn.execute(sa.select(u).where(u.c.signature.in_(keys)))
    return {r.signature: _unread(r) for r in rows}


def due_unreadable(conn: sa.Connection, now: datetime, limit: int) -> list[Unread]:
    """Up to ``limit`` unreadable transactions due to be asked again at ``now``, oldest first."""
    u = schema.fill_unread
    rows = conn.execute(
        sa.select(u)
        .where(u.c.unreadable, u.c.next_attempt_at <= now)
        .order_by(u.c.next_attempt_at, u.c.slot)
        .limit(limit)
    )
    return [_unread(r) for r in rows]


def _unread(r: sa.Row[Any]) -> Unread:
    return Unread(
        signature=r.signature,
        slot=r.slot,
        block_time=None if r.block_time is None else int(r.block_time.timestamp()),
        kind=r.kind,
        reason=r.reason,
        attempts=r.attempts,
        unreadable=r.unreadable,
        next_attempt_at=r.next_attempt_at,
    )


def _time(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=UTC)


# Session-private scratch for one batch, dropped with the transaction.
_BATCH = """
CREATE TEMPORARY TABLE IF NOT EXISTS fill_batch (
    market_type text, market_index smallint, fill_record_id bigint, signature text,
    event_index smallint, slot bigint, block_time timestamptz, maker text, maker_authority text,
    taker text, taker_authority text, base_filled bigint, quote_filled bigint, maker_fee bigint,
    action_explanation text, commitment text
) ON COMMIT DROP
"""

# Insert only the keys not yet stored (see snapshots._NEW_ACCOUNTS: no identity values burnt).
_NEW_ACCOUNTS = """
INSERT INTO accounts (pubkey)
SELECT DISTINCT k FROM (
    SELECT maker FROM fill_batch UNION ALL SELECT maker_authority FROM fill_batch
    UNION ALL SELECT taker FROM fill_batch UNION ALL SELECT taker_authority FROM fill_batch
) AS u (k)
WHERE k IS NOT NULL AND NOT EXISTS (SELECT 1 FROM accounts AS a WHERE a.pubkey = u.k)
ON CONFLICT (pubkey) DO NOTHING
"""

# A User account's authority never changes: the first pair seen is the pair.
_USER_ACCOUNTS = """
INSERT INTO user_accounts (user_id, authority_id)
SELECT DISTINCT ON (u.account_id) u.account_id, au.account_id
FROM (
    SELECT maker, maker_authority FROM fill_batch
    UNION SELECT taker, taker_authority FROM fill_batch
) AS p (usr, auth)
JOIN accounts AS u ON u.pubkey = p.usr
JOIN accounts AS au ON au.pubkey = p.auth
WHERE NOT EXISTS (SELECT 1 FROM user_accounts AS x WHERE x.user_id = u.account_id)
ON CONFLICT (user_id) DO NOTHING
"""

_FILLS = """
INSERT INTO fills (
    market_type, market_index, fill_record_id, signature, event_index, slot, block_time,
    maker_id, maker_authority_id, taker_id, taker_authority_id, base_filled, quote_filled,
    maker_fee, action_explanation, commitment
)
SELECT
    b.market_type, b.market_index, b.fill_record_id, b.signature, b.event_index, b.slot,
    b.block_time, m.account_id, ma.account_id, t.account_id, ta.account_id, b.base_filled,
    b.quote_filled, b.maker_fee, b.action_explanation, b.commitment
FROM fill_batch AS b
LEFT JOIN accounts AS m ON m.pubkey = b.maker
LEFT JOIN accounts AS ma ON ma.pubkey = b.maker_authority
LEFT JOIN accounts AS t ON t.pubkey = b.taker
LEFT JOIN accounts AS ta ON ta.pubkey = b.taker_authority
ON CONFLICT (market_type, market_index, fill_record_id) DO NOTHING
"""

# Every batch record whose id is stored as another record: another signature or event index, or
# the same ones with other facts (authorities and commitment are the store's, not the record's).
# A re-read of the stored record is equal in all of them and is not a conflict.
_CONFLICTS = """
INSERT INTO fill_conflicts (
    market_type, market_index, fill_record_id, signature, event_index, slot, block_time, maker,
    maker_authority, taker, taker_authority, base_filled, quote_filled, maker_fee,
    action_explanation, commitment
)
SELECT
    b.market_type, b.market_index, b.fill_record_id, b.signature, b.event_index, b.slot,
    b.block_time, b.maker, b.maker_authority, b.taker, b.taker_authority, b.base_filled,
    b.quote_filled, b.maker_fee, b.action_explanation, b.commitment
FROM fill_batch AS b
JOIN fills AS f ON f.market_type = b.market_type AND f.market_index = b.market_index
    AND f.fill_record_id = b.fill_record_id
LEFT JOIN accounts AS m ON m.account_id = f.maker_id
LEFT JOIN accounts AS t ON t.account_id = f.taker_id
WHERE (f.signature, f.event_index, f.slot, f.block_time, m.pubkey, t.pubkey, f.base_filled,
       f.quote_filled, f.maker_fee, f.action_explanation)
    IS DISTINCT FROM
      (b.signature, b.event_index, b.slot, b.block_time, b.maker, b.taker, b.base_filled,
       b.quote_filled, b.maker_fee, b.action_explanation)
ON CONFLICT DO NOTHING
RETURNING market_type, market_index, fill_record_id
"""


def _write_fills(cur: psycopg.Cursor[Any], rows: Sequence[fill.Fill]) -> Written:
    cur.execute(_BATCH)
    with cur.copy("COPY fill_batch FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(
            ["text", "int2", "int8", "text", "int2", "int8", "timestamptz", "text", "text",
             "text", "text", "int8", "int8", "int8", "text", "text"]
        )  # fmt: skip
        for f in rows:
            copy.write_row(
                (f.market_type, f.market_index, f.fill_record_id, f.signature, f.event_index,
                 f.slot, _time(f.block_time), f.maker, f.maker_authority, f.taker,
                 f.taker_authority, f.base_filled, f.quote_filled, f.maker_fee,
                 f.action_explanation, f.commitment)
            )  # fmt: skip
    cur.execute(_NEW_ACCOUNTS)
    cur.execute(_USER_ACCOUNTS)
    cur.execute(_FILLS)
    inserted = cur.rowcount
    cur.execute(_CONFLICTS)
    conflicts = tuple(sorted({(str(a), int(b), int(c)) for a, b, c in cur.fetchall()}))
    cur.execute("TRUNCATE fill_batch")
    return Written(inserted, conflicts)


def authorities(conn: sa.Connection, user_accounts: Iterable[str]) -> dict[str, str]:
    """The authorities the store knows for ``user_accounts`` (from fills and snapshots)."""
    keys = sorted(set(user_accounts))
    if not keys:
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT u.pubkey, au.pubkey FROM accounts AS u"
            " JOIN user_accounts AS ua ON ua.user_id = u.account_id"
            " JOIN accounts AS au ON au.account_id = ua.authority_id"
            " WHERE u.pubkey = ANY(CAST(:keys AS text[]))"
        ),
        {"keys": keys},
    )
    return {str(u): str(a) for u, a in rows}


def set_volume_pool(conn: sa.Connection, week: calendar.Week, pool_micro_usdc: int) -> None:
    """Record ``week``'s Volume Reward pool (micro-USDC), which ``live_volume`` projects with."""
    t = schema.volume_pools
    conn.execute(
        pg.insert(t)
        .values(week_start=week.monday, pool_micro_usdc=pool_micro_usdc)
        .on_conflict_do_update(
            index_elements=[t.c.week_start], set_={"pool_micro_usdc": pool_micro_usdc}
        )
    )


# ---------------------------------------------------------------------------- finality


def mark_finalized(conn: sa.Connection, signatures: Sequence[str]) -> int:
    """Mark the fills of ``signatures`` as seen at ``finalized``; returns the fills changed."""
    if not signatures:
        return 0
    t = schema.fills
    result = conn.execute(
        sa.update(t)
        .where(t.c.signature.in_(list(signatures)), t.c.commitment == "confirmed")
        .values(commitment="finalized")
    )
    return result.rowcount


def oldest_confirmed_slot(conn: sa.Connection) -> int | None:
    """The slot of the oldest fill not yet seen at ``finalized``."""
    t = schema.fills
    value = conn.execute(
        sa.select(sa.func.min(t.c.slot)).where(t.c.commitment == "confirmed")
    ).scalar_one_or_none()
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class WeekFinality:
    """Whether every fill of a week has been seen again at ``finalized``.

    ``unconfirmed`` fills are older than what the finalized pass has covered but were never
    listed by it: their transactions did not make it into the finalized chain (a dropped fork).
    """

    week: str
    finalized: bool
    covered: bool  # the finalized pass has reached past the week's end
    fills: int
    unconfirmed: int
    unconfirmed_signatures: tuple[str, ...]


def record_finality(
    conn: sa.Connection, week: calendar.Week, *, finalized_through: Watermark | None
) -> WeekFinality:
    """Decide and store (in ``fill_weeks``) whether ``week``'s fills are all finalized."""
    t = schema.fills
    in_week = sa.and_(t.c.block_time >= week.start, t.c.block_time < week.end)
    total = conn.execute(sa.select(sa.func.count()).where(in_week)).scalar_one()
    covered = (
        finalized_through is not None
        and finalized_through.through_time is not None
        and finalized_through.through_time >= week.end
    )
    through_slot = finalized_through.through_slot if finalized_through is not None else None
    unconfirmed: list[str] = []
    if through_slot is not None:
        unconfirmed = list(
            conn.execute(
                sa.select(t.c.signature)
                .distinct()
                .where(in_week, t.c.commitment == "confirmed", t.c.slot <= through_slot)
                .order_by(t.c.signature)
            ).scalars()
        )
    pending = conn.execute(
        sa.select(sa.func.count()).where(in_week, t.c.commitment == "confirmed")
    ).scalar_one()
    finalized = covered and pending == 0
    w = schema.fill_weeks
    values = {"finalized": finalized, "fills": total, "unconfirmed": pending}
    conn.execute(
        pg.insert(w)
        .values(week_start=week.monday, **values)
        .on_conflict_do_update(
            index_elements=[w.c.week_start], set_={**values, "checked_at": sa.func.now()}
        )
    )
    return WeekFinality(
        week=str(week),
        finalized=finalized,
        covered=covered,
        fills=total,
        unconfirmed=len(unconfirmed),
        unconfirmed_signatures=tuple(unconfirmed),
    )


def finalized(conn: sa.Connection, week: calendar.Week) -> bool:
    """Whether ``week`` was recorded as finalized by the last finality check."""
    w = schema.fill_weeks
    value = conn.execute(
        sa.select(w.c.finalized).where(w.c.week_start == week.monday)
    ).scalar_one_or_none()
    return bool(value)


# ---------------------------------------------------------------------------- integrity


@dataclass(frozen=True, slots=True)
class Gap:
    """Fill record ids ``first..last`` (inclusive) of one market that are not stored."""

    first: int
    last: int

    @property
    def count(self) -> int:
        """The number of ids missing."""
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class MarketCheck:
    """``fill_record_id`` contiguity of one market in one week.

    A gap between the week's fills and the neighbouring stored fill (before or after) belongs to
    the week too. ``tail_checked``: the market's on-chain counter was compared with the newest
    stored id (possible only once ingest has passed the slot the counter was read at).
    """

    week: str
    market_type: str
    market_index: int
    market: str | None
    fills: int
    first_id: int
    last_id: int
    gaps: tuple[Gap, ...]
    tail_checked: bool

    @property
    def missing(self) -> int:
        """The number of fill record ids missing over all gaps."""
        return sum(g.count for g in self.gaps)

    @property
    def ok(self) -> bool:
        """Whether no id is missing."""
        return not self.gaps


_WEEK_MARKETS = """
SELECT f.market_type, f.market_index, k.name, count(*) AS fills,
       min(f.fill_record_id) AS first_id, max(f.fill_record_id) AS last_id
FROM fills AS f
LEFT JOIN markets AS k ON f.market_type = 'perp' AND k.market_index = f.market_index
WHERE f.block_time >= :start AND f.block_time < :end
GROUP BY f.market_type, f.market_index, k.name
ORDER BY f.market_type, f.market_index
"""

# Holes among the week's ids, and towards the stored neighbours just outside the week: the
# missing fills lie between two stored ones in time, so a hole across a week boundary may hold
# fills of either week and is reported in both.
_HOLES = """
WITH span AS (
    SELECT
        coalesce((SELECT max(fill_record_id) FROM fills
                  WHERE market_type = :mt AND market_index = :mi AND fill_record_id < :first),
                 :first) AS lo,
        coalesce((SELECT min(fill_record_id) FROM fills
                  WHERE market_type = :mt AND market_index = :mi AND fill_record_id > :last),
                 :last) AS hi
), ids AS (
    SELECT f.fill_record_id AS id,
           lag(f.fill_record_id) OVER (ORDER BY f.fill_record_id) AS prev
    FROM fills AS f, span
    WHERE f.market_type = :mt AND f.market_index = :mi
        AND f.fill_record_id BETWEEN span.lo AND span.hi
)
SELECT prev + 1 AS first, id - 1 AS last FROM ids WHERE id > prev + 1 ORDER BY prev
"""


def check(
    conn: sa.Connection,
    week: calendar.Week,
    *,
    next_ids: Mapping[int, int] | None = None,
    next_ids_slot: int | None = None,
    program: str,
) -> list[MarketCheck]:
    """Gaps in ``fill_record_id`` per market in ``week``.

    ``next_ids`` are the perp markets' on-chain ``next_fill_record_id`` read at ``next_ids_slot``:
    when the confirmed ingest has processed every signature up to that slot, ids from the newest
    stored one up to the counter must all be stored, and any that are not is a gap at the tail.
    """
    mark = watermark(conn, program, "confirmed")
    tail_ok = (
        next_ids is not None
        and next_ids_slot is not None
        and mark is not None
        and mark.through_slot is not None
        and mark.through_slot >= next_ids_slot
    )
    out: list[MarketCheck] = []
    rows = conn.execute(sa.text(_WEEK_MARKETS), {"start": week.start, "end": week.end}).all()
    for r in rows:
        holes = [
            Gap(int(a), int(b))
            for a, b in conn.execute(
                sa.text(_HOLES),
                {"mt": r.market_type, "mi": r.market_index, "first": r.first_id, "last": r.last_id},
            )
        ]
        tail_checked = False
        if tail_ok and next_ids is not None and r.market_type == "perp":
            counter = next_ids.get(r.market_index)
            newest = conn.execute(
                sa.select(sa.func.max(schema.fills.c.fill_record_id)).where(
                    schema.fills.c.market_type == "perp",
                    schema.fills.c.market_index == r.market_index,
                )
            ).scalar_one()
            if counter is not None:
                tail_checked = True
                # Only the market's newest fills can be missing at the tail; a later week's
                # check sees them if they are not the week's.
                if newest == r.last_id and counter - 1 > newest:
                    holes.append(Gap(newest + 1, counter - 1))
        out.append(
            MarketCheck(
                week=str(week),
                market_type=r.market_type,
                market_index=r.market_index,
                market=r.name,
                fills=r.fills,
                first_id=r.first_id,
                last_id=r.last_id,
                gaps=tuple(holes),
                tail_checked=tail_checked,
            )
        )
    out += _counter_gaps(
        conn,
        week,
        skip={c.market_index for c in out if c.market_type == "perp"},
        live=next_ids,
        live_ok=tail_ok or (mark is None and next_ids is not None),
        covered_slot=None if mark is None else (mark.through_slot or mark.slot),
    )
    return out


def weeks_with_fills(conn: sa.Connection) -> list[calendar.Week]:
    """Every ISO week that has stored fills, oldest first."""
    days: list[date] = list(
        conn.execute(
            sa.text(
                "SELECT DISTINCT date_trunc('week', block_time AT TIME ZONE 'UTC')::date AS d"
                " FROM fills ORDER BY d"
            )
        ).scalars()
    )
    return [calendar.Week.containing(d) for d in days]


def market_indexes(conn: sa.Connection, market_type: str = "perp") -> list[int]:
    """Indexes of the markets of ``market_type`` that have stored fills."""
    t = schema.fills
    return list(
        conn.execute(
            sa.select(t.c.market_index)
            .distinct()
            .where(t.c.market_type == market_type)
            .order_by(t.c.market_index)
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class SelfMatch:
    """A fill whose maker and taker share an authority: excluded from volume (spec 4)."""

    signature: str
    market_type: str
    market_index: int
    fill_record_id: int
    slot: int
    block_time: datetime
    authority: str
    maker: str
    taker: str
    quote_filled: int


def self_matches(conn: sa.Connection, week: calendar.Week) -> list[SelfMatch]:
    """The self-matched fills of ``week``, oldest first."""
    rows = conn.execute(
        sa.text(
            "SELECT f.signature, f.market_type, f.market_index, f.fill_record_id, f.slot,"
            " f.block_time, au.pubkey AS authority, m.pubkey AS maker, t.pubkey AS taker,"
            " f.quote_filled"
            " FROM fills AS f"
            " JOIN accounts AS au ON au.account_id = f.maker_authority_id"
            " JOIN accounts AS m ON m.account_id = f.maker_id"
            " JOIN accounts AS t ON t.account_id = f.taker_id"
            " WHERE f.maker_authority_id = f.taker_authority_id"
            " AND f.block_time >= :start AND f.block_time < :end"
            " ORDER BY f.slot, f.signature, f.event_index"
        ),
        {"start": week.start, "end": week.end},
    )
    return [SelfMatch(*r) for r in rows]


def week_volume(conn: sa.Connection, week: calendar.Week) -> dict[str, int]:
    """Maker volume (QUOTE_PRECISION) per authority in ``week``, all markets, self-matches out.

    Fills whose maker authority is unknown cannot be attributed and are left out (see
    :func:`unattributed`).
    """
    rows = conn.execute(
        sa.text(
            "SELECT a.pubkey, sum(f.quote_filled) FROM fills AS f"
            " JOIN accounts AS a ON a.account_id = f.maker_authority_id"
            " WHERE f.block_time >= :start AND f.block_time < :end"
            " AND f.maker_authority_id IS DISTINCT FROM f.taker_authority_id"
            " GROUP BY a.pubkey"
        ),
        {"start": week.start, "end": week.end},
    )
    return {a: int(v) for a, v in rows}


def unattributed(conn: sa.Connection, week: calendar.Week) -> int:
    """Fills of ``week`` with a maker whose authority is unknown (its User account was closed)."""
    t = schema.fills
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                t.c.block_time >= week.start,
                t.c.block_time < week.end,
                t.c.maker_id.is_not(None),
                t.c.maker_authority_id.is_(None),
            )
        ).scalar_one()
    )


def truncated(conn: sa.Connection, week: calendar.Week) -> list[Truncated]:
    """The truncated-log transactions recorded in ``week``."""
    t = schema.fill_truncated
    rows = conn.execute(
        sa.select(t.c.signature, t.c.slot, t.c.block_time, t.c.fills_parsed)
        .where(t.c.block_time >= week.start, t.c.block_time < week.end)
        .order_by(t.c.slot, t.c.signature)
    )
    return [Truncated(s, slot, int(bt.timestamp()), n) for s, slot, bt, n in rows]


_CONFLICTS_OF_WEEK = """
SELECT c.market_type, c.market_index, c.fill_record_id, f.signature AS stored_signature,
       f.event_index AS stored_event_index, c.signature, c.event_index, c.slot,
       extract(epoch FROM c.block_time)::bigint AS block_time, c.maker, c.maker_authority,
       c.taker, c.taker_authority, c.base_filled, c.quote_filled, c.maker_fee,
       c.action_explanation, c.commitment
FROM fill_conflicts AS c
JOIN fills AS f ON f.market_type = c.market_type AND f.market_index = c.market_index
    AND f.fill_record_id = c.fill_record_id
WHERE (c.block_time >= :start AND c.block_time < :end)
    OR (f.block_time >= :start AND f.block_time < :end)
ORDER BY c.market_type, c.market_index, c.fill_record_id, c.signature, c.event_index
"""


def conflicts(conn: sa.Connection, week: calendar.Week) -> list[Conflict]:
    """The conflicting records of ``week`` (either record in it), by market and id."""
    rows = conn.execute(sa.text(_CONFLICTS_OF_WEEK), {"start": week.start, "end": week.end})
    return [
        Conflict(
            market_type=r.market_type,
            market_index=r.market_index,
            fill_record_id=r.fill_record_id,
            stored_signature=r.stored_signature,
            stored_event_index=r.stored_event_index,
            other=fill.Fill(
                market_type=r.market_type,
                market_index=r.market_index,
                fill_record_id=r.fill_record_id,
                signature=r.signature,
                event_index=r.event_index,
                slot=r.slot,
                block_time=int(r.block_time),
                maker=r.maker,
                maker_authority=r.maker_authority,
                taker=r.taker,
                taker_authority=r.taker_authority,
                base_filled=r.base_filled,
                quote_filled=r.quote_filled,
                maker_fee=r.maker_fee,
                action_explanation=r.action_explanation,
                commitment=r.commitment,
            ),
        )
        for r in rows
    ]


def rejected(conn: sa.Connection, week: calendar.Week) -> list[Rejected]:
    """The transactions of ``week`` whose fills were rejected (forged logs)."""
    t = schema.fill_rejected
    rows = conn.execute(
        sa.select(t.c.signature, t.c.slot, t.c.block_time, t.c.reason, t.c.fills_claimed)
        .where(t.c.block_time >= week.start, t.c.block_time < week.end)
        .order_by(t.c.slot, t.c.signature)
    )
    return [Rejected(s, slot, int(bt.timestamp()), why, n) for s, slot, bt, why, n in rows]


def unread_of_week(conn: sa.Connection, week: calendar.Week) -> list[Unread]:
    """The transactions of ``week`` not read (yet), and those of unknown time (every week's)."""
    t = schema.fill_unread
    rows = conn.execute(
        sa.select(t)
        .where(
            sa.or_(
                t.c.block_time.is_(None),
                sa.and_(t.c.block_time >= week.start, t.c.block_time < week.end),
            )
        )
        .order_by(t.c.slot, t.c.signature)
    )
    return [_unread(r) for r in rows]


# ---------------------------------------------------------------------------- chain counters


def write_counters(
    conn: sa.Connection, slot: int, block_time: int, counters: Mapping[int, int]
) -> None:
    """Store the perp markets' ``next_fill_record_id`` as read at ``slot`` (idempotent)."""
    if not counters:
        return
    t = schema.fill_counters
    conn.execute(
        pg.insert(t).on_conflict_do_nothing(
            index_elements=[t.c.market_type, t.c.market_index, t.c.slot]
        ),
        [
            {
                "market_type": "perp",
                "market_index": index,
                "slot": slot,
                "block_time": _time(block_time),
                "next_fill_record_id": value,
            }
            for index, value in sorted(counters.items())
        ],
    )


def known_perp_markets(conn: sa.Connection) -> list[int]:
    """Every perp market index the store knows: sampled, with fills, or with a counter."""
    return list(
        conn.execute(
            sa.text(
                "SELECT market_index FROM markets"
                " UNION SELECT market_index FROM fills WHERE market_type = 'perp'"
                " UNION SELECT market_index FROM fill_counters WHERE market_type = 'perp'"
                " ORDER BY 1"
            )
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class _Counter:
    slot: int
    value: int


def _counter(
    conn: sa.Connection, index: int, where: sa.ColumnElement[bool], *, newest: bool
) -> _Counter | None:
    t = schema.fill_counters
    order = [t.c.block_time.desc(), t.c.slot.desc()] if newest else [t.c.block_time, t.c.slot]
    row = conn.execute(
        sa.select(t.c.slot, t.c.next_fill_record_id)
        .where(t.c.market_type == "perp", t.c.market_index == index, where)
        .order_by(*order)
        .limit(1)
    ).first()
    return None if row is None else _Counter(int(row[0]), int(row[1]))


def _stored_id(
    conn: sa.Connection, index: int, where: sa.ColumnElement[bool], *, newest: bool
) -> int | None:
    t = schema.fills
    fn = sa.func.max if newest else sa.func.min
    value = conn.execute(
        sa.select(fn(t.c.fill_record_id)).where(
            t.c.market_type == "perp", t.c.market_index == index, where
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


def _counter_gaps(
    conn: sa.Connection,
    week: calendar.Week,
    *,
    skip: set[int],
    live: Mapping[int, int] | None,
    live_ok: bool,
    covered_slot: int | None,
) -> list[MarketCheck]:
    """Perp markets with no fill stored in ``week`` whose counter moved in it: a gap each.

    The counter before the week is the newest sample at or before its start (else the first
    sample inside it); after, the first sample at or after its end, else the chain's counter
    read now (``live``, when ``live_ok``), else the newest sample inside it. Only what the
    confirmed ingest has covered (``covered_slot``; ``None``: nothing ingested yet, so nothing
    can have been stored) counts. Ids stored just outside the week narrow the range; what is
    left is missing (ids between the sample and the week's start may be the week before's, as
    a hole across a boundary is reported in both weeks).
    """
    names: dict[int, str] = {
        int(i): str(n) for i, n in conn.execute(sa.text("SELECT market_index, name FROM markets"))
    }
    indexes = set(
        conn.execute(
            sa.text("SELECT DISTINCT market_index FROM fill_counters WHERE market_type = 'perp'")
        ).scalars()
    )
    if live is not None and live_ok:
        indexes |= set(live)
    c = schema.fill_counters.c
    f = schema.fills.c
    inside = sa.and_(c.block_time > week.start, c.block_time < week.end)
    out: list[MarketCheck] = []
    for index in sorted(indexes - skip):
        low = _counter(conn, index, c.block_time <= week.start, newest=True) or _counter(
            conn, index, inside, newest=False
        )
        high = _counter(conn, index, c.block_time >= week.end, newest=False)
        from_live = False
        if high is None and live is not None and live_ok and index in live:
            high, from_live = _Counter(covered_slot or 0, live[index]), True
        if high is None:
            high = _counter(conn, index, inside, newest=True)
        if low is None or high is None or high.value <= low.value:
            continue
        if covered_slot is not None and high.slot > covered_slot and not from_live:
            continue  # the ingest has not reached the later read yet
        before = _stored_id(conn, index, f.block_time < week.start, newest=True)
        after = _stored_id(conn, index, f.block_time >= week.end, newest=False)
        first = max(low.value, -1 if before is None else before + 1)
        last = min(high.value - 1, high.value if after is None else after - 1)
        if first > last:
            continue
        out.append(
            MarketCheck(
                week=str(week),
                market_type="perp",
                market_index=index,
                market=names.get(index),
                fills=0,
                first_id=first,
                last_id=last,
                gaps=(Gap(first, last),),
                tail_checked=from_live,
            )
        )
    return out


def weeks_to_check(conn: sa.Connection) -> list[calendar.Week]:
    """Every ISO week with stored fills, chain counters, or transactions not read, oldest first."""
    days: list[date] = list(
        conn.execute(
            sa.text(
                "SELECT DISTINCT date_trunc('week', t AT TIME ZONE 'UTC')::date AS d FROM ("
                " SELECT block_time FROM fills UNION ALL SELECT block_time FROM fill_counters"
                " UNION ALL SELECT block_time FROM fill_unread WHERE block_time IS NOT NULL"
                " UNION ALL SELECT block_time FROM fill_rejected"
                " UNION ALL SELECT block_time FROM fill_conflicts"
                ") AS u (t) ORDER BY d"
            )
        ).scalars()
    )
    return [calendar.Week.containing(d) for d in days]


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """One row of the ``weekly_volume`` view."""

    week: str
    authority: str
    participant: bool  # shares the Volume Reward (0009: the program's and the database's)
    market_type: str
    market_index: int
    market: str | None
    fills: int
    volume_quote: int
    share: float  # of the week's participants' volume; 0 for a non-participant
    pool_micro_usdc: int | None
    projected_reward_micro_usdc: int | None


def volume_rows(conn: sa.Connection, week: calendar.Week) -> list[VolumeRow]:
    """The ``weekly_volume`` view of ``week``, largest volume first."""
    v = schema.weekly_volume
    rows = conn.execute(
        sa.select(v)
        .where(v.c.week_start == week.monday)
        .order_by(v.c.volume_quote.desc(), v.c.authority, v.c.market_type, v.c.market_index)
    )
    return [
        VolumeRow(
            week=r.week,
            authority=r.authority,
            participant=r.participant,
            market_type=r.market_type,
            market_index=r.market_index,
            market=r.market,
            fills=r.fills,
            volume_quote=r.volume_quote,
            share=r.share,
            pool_micro_usdc=None if r.pool_usdc is None else int(r.pool_usdc * 1_000_000),
            projected_reward_micro_usdc=(
                None
                if r.projected_reward_usdc is None
                else int(r.projected_reward_usdc * 1_000_000)
            ),
        )
        for r in rows
    ]


# ---------------------------------------------------------------------------- cross-check

THIRTY_DAYS_S = 30 * 86_400


@dataclass(frozen=True, slots=True)
class VolumeSample:
    """One authority's ``UserStats.maker_volume30d`` as read at a slot."""

    authority: str
    maker_volume_30d: int
    last_ts: int


def write_volume_samples(
    conn: sa.Connection, slot: int, block_time: int, samples: Sequence[VolumeSample]
) -> None:
    """Store the samples read at ``slot`` (idempotent: a slot's sample of an authority is kept)."""
    if not samples:
        return
    keys = sorted({s.authority for s in samples})
    conn.execute(
        sa.text(
            "INSERT INTO accounts (pubkey) SELECT k FROM unnest(CAST(:keys AS text[])) AS u (k)"
            " WHERE NOT EXISTS (SELECT 1 FROM accounts AS a WHERE a.pubkey = u.k)"
            " ON CONFLICT (pubkey) DO NOTHING"
        ),
        {"keys": keys},
    )
    ids = dict(
        conn.execute(
            sa.select(schema.accounts.c.pubkey, schema.accounts.c.account_id).where(
                schema.accounts.c.pubkey.in_(keys)
            )
        ).all()
    )
    t = schema.maker_volume_samples
    conn.execute(
        pg.insert(t).on_conflict_do_nothing(index_elements=[t.c.authority_id, t.c.slot]),
        [
            {
                "authority_id": ids[s.authority],
                "slot": slot,
                "block_time": _time(block_time),
                "maker_volume_30d": s.maker_volume_30d,
                "last_maker_volume_30d_ts": s.last_ts,
            }
            for s in samples
        ],
    )


@dataclass(frozen=True, slots=True)
class VolumeCrossCheck:
    """The program's maker volume change against the ingested fills, for one authority.

    ``chain_delta`` is the change of ``maker_volume30d`` between the samples; the program decays
    it linearly over 30 days at every update, so the ingested volume (self-matches included:
    the program counts them) is expected to exceed it by about ``decay_estimate``.
    """

    authority: str
    from_slot: int
    to_slot: int
    chain_delta: int
    ingested: int
    decay_estimate: int

    @property
    def difference(self) -> int:
        """What the chain moved beyond (or short of) the ingested volume less the decay."""
        return self.chain_delta - (self.ingested - self.decay_estimate)

    def large(self, *, relative: float, absolute: int) -> bool:
        """Whether the difference is beyond ``relative`` of the volume plus ``absolute``."""
        scale = max(abs(self.chain_delta), self.ingested)
        return abs(self.difference) > relative * scale + absolute


_CROSS_CHECK = """
SELECT a.pubkey, s1.maker_volume_30d AS v1, s2.maker_volume_30d AS v2,
       s2.last_maker_volume_30d_ts - s1.last_maker_volume_30d_ts AS dt,
       coalesce((SELECT sum(f.quote_filled) FROM fills AS f
                 WHERE f.maker_authority_id = s1.authority_id
                   AND f.slot > :from_slot AND f.slot <= :to_slot), 0) AS ingested
FROM maker_volume_samples AS s1
JOIN maker_volume_samples AS s2 ON s2.authority_id = s1.authority_id AND s2.slot = :to_slot
JOIN accounts AS a ON a.account_id = s1.authority_id
WHERE s1.slot = :from_slot
ORDER BY a.pubkey
"""


def cross_check(conn: sa.Connection, from_slot: int, to_slot: int) -> list[VolumeCrossCheck]:
    """Per authority sampled at both slots: the program's maker volume change vs the fills."""
    rows = conn.execute(sa.text(_CROSS_CHECK), {"from_slot": from_slot, "to_slot": to_slot})
    return [
        VolumeCrossCheck(
            authority=r.pubkey,
            from_slot=from_slot,
            to_slot=to_slot,
            chain_delta=int(r.v2) - int(r.v1),
            ingested=int(r.ingested),
            # The program decays the sum only when it adds to it, by the time since its last
            # addition: the sum held at the first sample loses dt/30d of itself, dt between the
            # two last-update times (none when there was no update). What is added in between
            # decays too, a second-order amount left to the tolerance.
            decay_estimate=int(r.v1) * min(max(int(r.dt), 0), THIRTY_DAYS_S) // THIRTY_DAYS_S,
        )
        for r in rows
    ]


def sample_slots(conn: sa.Connection) -> list[int]:
    """The slots at which maker volumes were sampled, oldest first."""
    t = schema.maker_volume_samples
    return list(conn.execute(sa.select(t.c.slot).distinct().order_by(t.c.slot)).scalars())


def maker_authorities(conn: sa.Connection) -> list[str]:
    """Every authority that made a stored fill."""
    return list(
        conn.execute(
            sa.text(
                "SELECT DISTINCT a.pubkey FROM fills AS f"
                " JOIN accounts AS a ON a.account_id = f.maker_authority_id ORDER BY 1"
            )
        ).scalars()
    )
