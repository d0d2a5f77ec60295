"""What the week report reads besides the close: per-snapshot scores and cells, aggregated in SQL.

A week at a 60 s cadence holds ~10,000 snapshots per market and a score row per maker and method
in each; the report needs none of them one by one. Every query here groups by market, maker (or
bracket and side) and a time **bucket** of ``width_s`` seconds, ``floor((tick_at - week start) /
width_s)``, so the report reads thousands of rows whatever the cadence. With a bucket narrower than
the cadence each bucket holds at most one snapshot and the series are per snapshot.

The per-maker rows are the views ``tick_maker_scores`` and ``tick_maker_sides`` (migrations 0007
and 0008): the arrays each tick stores on its ``snapshot_methods`` rows, unnested, plus the rows
of ticks stored before in the old ``maker_scores`` and ``bracket_cells`` tables. Bracket cells are
stored by ticks written before 0008 only; :func:`cell_buckets` recomputes the others from the
stored books.

Makers are grouped by **authority**: under a method keyed by User account (``maker_key = user``)
a wallet's sub-accounts add up through ``user_accounts``, as the program pays wallets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.scoring import methods, scorer
from driftsnap.store import bookchain, books, schema
from driftsnap.store.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True, slots=True)
class Bucket:
    """The ok snapshots of one market scored under the method in one time bucket."""

    market: str
    bucket: int
    snapshots: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class AuthorityBucket:
    """One authority's summed snapshot scores (or per-snapshot shares) in one market and bucket."""

    market: str
    authority: str
    bucket: int
    value: float
    quoted: int  # snapshots of the bucket in which the authority had a score row


@dataclass(frozen=True, slots=True)
class CellBucket:
    """One authority's part of one bracket side, summed over a bucket's snapshots.

    ``score`` is ``side_factor * V * l / L`` summed: what the cells add to the maker's score.
    """

    market: str
    bucket: int
    position: int
    bracket: str
    side: int  # 0 bid, 1 ask
    size: int  # sum of l, BASE_PRECISION
    score: float


@dataclass(frozen=True, slots=True)
class TwoSided:
    """Snapshots of one market in which an authority had bracketed liquidity on both sides."""

    market: str
    authority: str
    snapshots: int


def method_id(conn: sa.Connection, params_hash: str) -> int | None:
    """The stored id of a method, None if no score under it was ever stored."""
    me = schema.methods
    found: int | None = conn.execute(
        sa.select(me.c.method_id).where(me.c.params_hash == params_hash)
    ).scalar_one_or_none()
    return found


def account_id(conn: sa.Connection, pubkey: str) -> int | None:
    """The stored id of an account, None if it was never stored."""
    a = schema.accounts
    found: int | None = conn.execute(
        sa.select(a.c.account_id).where(a.c.pubkey == pubkey)
    ).scalar_one_or_none()
    return found


def weeks_with_data(conn: sa.Connection) -> list[calendar.Week]:
    """Every week with stored ticks or a stored close, oldest first."""
    t, c = schema.week_ticks, schema.week_closes
    days = conn.execute(
        sa.union(sa.select(t.c.week_start), sa.select(c.c.week_start)).order_by("week_start")
    ).scalars()
    return [calendar.Week.containing(d) for d in days]


def _bucket(column: Any, week: calendar.Week, width_s: int) -> sa.ColumnElement[int]:
    epoch = sa.extract("epoch", column) - int(week.start.timestamp())
    return sa.cast(sa.func.floor(epoch / width_s), sa.Integer)


def _in_week(column: Any, week: calendar.Week) -> sa.ColumnElement[bool]:
    return sa.and_(column >= week.start, column < week.end)


def buckets(conn: sa.Connection, week: calendar.Week, method: int, *, width_s: int) -> list[Bucket]:
    """Per market and bucket, the ok snapshots scored under ``method``."""
    sm, k = schema.snapshot_methods, schema.markets
    bucket = _bucket(sm.c.tick_at, week, width_s).label("bucket")
    rows = conn.execute(
        sa.select(
            k.c.name, bucket, sa.func.count(), sa.func.min(sm.c.tick_at), sa.func.max(sm.c.tick_at)
        )
        .join(k, k.c.market_index == sm.c.market_index)
        .where(_in_week(sm.c.tick_at, week), sm.c.method_id == method)
        .group_by(k.c.name, bucket)
        .order_by(k.c.name, bucket)
    )
    return [Bucket(*r) for r in rows]


def _with_authority(
    table: sa.TableClause, *, by_user: bool
) -> tuple[sa.FromClause, sa.ColumnElement[int]]:
    """``table`` joined to what gives its ``maker_id``'s authority, and that authority's id
    (the maker itself unless makers are User accounts)."""
    if not by_user:
        return table, table.c.maker_id
    ua = schema.user_accounts
    joined = table.outerjoin(ua, ua.c.user_id == table.c.maker_id)
    return joined, sa.func.coalesce(ua.c.authority_id, table.c.maker_id)


def authority_buckets(
    conn: sa.Connection,
    week: calendar.Week,
    method: int,
    *,
    width_s: int,
    by_user: bool,
    normalized: bool = False,
    authority: int | None = None,
) -> list[AuthorityBucket]:
    """Per market, authority and bucket, the sum of the stored snapshot scores.

    ``normalized``: each score divided by its snapshot's total over all makers first (the
    ``normalized`` aggregation). ``authority``: only that authority's rows (not with
    ``normalized``, whose totals need every maker).
    """
    if normalized and authority is not None:
        raise ValueError("normalized shares need every maker's row")
    ms, k, a = schema.tick_maker_scores, schema.markets, schema.accounts
    value: sa.ColumnElement[float] = ms.c.score
    if normalized:
        total = sa.func.sum(ms.c.score).over(partition_by=(ms.c.tick_at, ms.c.market_index))
        value = sa.func.coalesce(ms.c.score / sa.func.nullif(total, 0), 0.0)
    source, who = _with_authority(ms, by_user=by_user)
    selected = (
        sa.select(ms.c.tick_at, ms.c.market_index, who.label("authority_id"), value.label("value"))
        .select_from(source)
        .where(_in_week(ms.c.tick_at, week), ms.c.method_id == method)
    )
    if authority is not None:
        selected = selected.where(who == authority)
    scores = selected.subquery()
    # Grouped on ids, named after: tens of millions of rows a mainnet-scale week. A maker has
    # one score a snapshot, so under maker_key = authority the snapshots are a plain count.
    bucket = _bucket(scores.c.tick_at, week, width_s).label("bucket")
    quoted = sa.func.count(sa.distinct(scores.c.tick_at)) if by_user else sa.func.count()
    grouped = (
        sa.select(
            scores.c.market_index,
            scores.c.authority_id,
            bucket,
            sa.func.sum(scores.c.value).label("value"),
            quoted.label("quoted"),
        )
        .group_by(scores.c.market_index, scores.c.authority_id, bucket)
        .subquery()
    )
    rows = conn.execute(
        sa.select(k.c.name, a.c.pubkey, grouped.c.bucket, grouped.c.value, grouped.c.quoted)
        .select_from(
            grouped.join(k, k.c.market_index == grouped.c.market_index).join(
                a, a.c.account_id == grouped.c.authority_id
            )
        )
        .order_by(k.c.name, grouped.c.bucket)
    )
    return [AuthorityBucket(m, who, b, float(v), int(n)) for m, who, b, v, n in rows]


def cell_buckets(
    conn: sa.Connection,
    week: calendar.Week,
    method: int,
    *,
    width_s: int,
    by_user: bool,
    authority: int,
    side_factor: float,
) -> list[CellBucket]:
    """One authority's bracketed liquidity per market, bucket, bracket and side, with what it
    adds to the score: ``side_factor * V(x) * l(m,x,s) / L(x,s)`` (spec 2.1; for mm-scoring the
    level's value and the maker's pro-rata part of it).

    Ticks stored before migration 0008 stored their cells (summed here in SQL); a tick since
    stores none, and its cells are recomputed from its book (:func:`_derived_cells`)."""
    bc, br, k, ua = schema.tick_bracket_cells, schema.brackets, schema.markets, schema.user_accounts
    total = sa.case((bc.c.side == 0, br.c.total_bid), else_=br.c.total_ask)
    part = side_factor * br.c.value * sa.cast(bc.c.size, schema.DOUBLE) / sa.func.nullif(total, 0)
    bucket = _bucket(bc.c.tick_at, week, width_s).label("bucket")
    mine: sa.ColumnElement[bool] = (
        bc.c.maker_id.in_(sa.select(ua.c.user_id).where(ua.c.authority_id == authority))
        if by_user
        else bc.c.maker_id == authority
    )
    rows = conn.execute(
        sa.select(
            k.c.name,
            bucket,
            br.c.bracket,
            br.c.name,
            bc.c.side,
            sa.func.sum(bc.c.size),
            sa.func.coalesce(sa.func.sum(part), 0.0),
        )
        .select_from(
            bc.join(
                br,
                sa.and_(
                    br.c.tick_at == bc.c.tick_at,
                    br.c.market_index == bc.c.market_index,
                    br.c.method_id == bc.c.method_id,
                    br.c.bracket == bc.c.bracket,
                ),
            ).join(k, k.c.market_index == bc.c.market_index)
        )
        .where(_in_week(bc.c.tick_at, week), bc.c.method_id == method, mine)
        .group_by(k.c.name, bucket, br.c.bracket, br.c.name, bc.c.side)
    )
    sums: dict[tuple[str, int, int, str, int], list[Any]] = {
        (m, b, p, n, side): [int(size), float(v)] for m, b, p, n, side, size, v in rows
    }
    for key, (size, value) in _derived_cells(
        conn, week, method, width_s=width_s, by_user=by_user, authority=authority,
        side_factor=side_factor,
    ).items():  # fmt: skip
        acc = sums.setdefault(key, [0, 0.0])
        acc[0] += size
        acc[1] += value
    return [
        CellBucket(m, b, p, n, side, size, value)
        for (m, b, p, n, side), (size, value) in sorted(
            sums.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4])
        )
    ]


def _derived_cells(
    conn: sa.Connection,
    week: calendar.Week,
    method: int,
    *,
    width_s: int,
    by_user: bool,
    authority: int,
    side_factor: float,
) -> dict[tuple[str, int, int, str, int], tuple[int, float]]:
    """:func:`cell_buckets` of the ticks stored without cells (migration 0008), recomputed:
    each ok book of the week in which the authority has a score is read (in order, so deltas
    apply to the book before) and scored again, and the tick's stored totals must agree."""
    sm, s, k, me, ua, a = (
        schema.snapshot_methods, schema.snapshots, schema.markets, schema.methods,
        schema.user_accounts, schema.accounts,
    )  # fmt: skip
    mine = [authority]
    if by_user:
        mine += conn.execute(
            sa.select(ua.c.user_id).where(ua.c.authority_id == authority)
        ).scalars()
    head = conn.execute(
        sa.select(me.c.name, me.c.params_hash).where(me.c.method_id == method)
    ).first()
    if head is None:
        return {}
    preset = methods.PRESETS.get(head.name)
    quoted = (
        sa.select(sm.c.tick_at, sm.c.market_index, sm.c.best_bid, sm.c.best_ask, sm.c.makers)
        .where(
            _in_week(sm.c.tick_at, week),
            sm.c.method_id == method,
            sm.c.score_sides.is_not(None),
            sm.c.score_makers.op("&&")(sa.cast(mine, sa.ARRAY(sa.Integer))),
        )
        .subquery()
    )
    rows = conn.execute(
        sa.select(
            s.c.tick_at, s.c.market_index, s.c.slot, s.c.ts, s.c.oracle_price, s.c.orders,
            s.c.book_format, s.c.book_base, s.c.book, k.c.name,
            quoted.c.best_bid, quoted.c.best_ask, quoted.c.makers,
        )
        .select_from(
            s.join(k, k.c.market_index == s.c.market_index).outerjoin(
                quoted,
                sa.and_(
                    quoted.c.tick_at == s.c.tick_at, quoted.c.market_index == s.c.market_index
                ),
            )
        )
        .where(
            _in_week(s.c.tick_at, week),
            s.c.status == "ok",
            s.c.market_index.in_(sa.select(quoted.c.market_index).distinct()),
        )
        .order_by(s.c.market_index, s.c.tick_at)
    ).all()  # fmt: skip
    if not rows:
        return {}
    if preset is None or preset.params_hash != head.params_hash:
        raise StoreError(f"cells of {head.name} ({head.params_hash[:12]}): unknown parameters")
    keys = set(conn.execute(sa.select(a.c.pubkey).where(a.c.account_id.in_(mine))).scalars())
    reader = bookchain.Reader(conn)
    pubkeys: dict[int, str] = {}
    out: dict[tuple[str, int, int, str, int], tuple[int, float]] = {}
    start = int(week.start.timestamp())
    for r in rows:
        columns = reader.columns(r)  # every ok book in order: the next one may be a delta on it
        if r.makers is None:
            continue
        missing = books.ids_in(columns) - pubkeys.keys()
        if missing:
            pubkeys.update(
                conn.execute(
                    sa.select(a.c.account_id, a.c.pubkey).where(a.c.account_id.in_(missing))
                ).all()
            )
        book = books.book_of(
            columns, pubkeys, market=r.name, market_index=r.market_index, slot=r.slot, ts=r.ts,
            oracle_price=r.oracle_price,
        )  # fmt: skip
        score = scorer.score(book, preset)
        if (score.best_bid, score.best_ask, len(score.scores)) != (
            r.best_bid,
            r.best_ask,
            r.makers,
        ):
            raise IntegrityError(
                f"{r.name} at {r.tick_at.isoformat()}: re-scoring the stored book under "
                f"{head.name} does not give the totals stored with it"
            )
        bucket = int((r.tick_at.timestamp() - start) // width_s)
        for i, x in enumerate(score.brackets):
            for side, cells, total in (
                (0, x.maker_bid, x.total_bid),
                (1, x.maker_ask, x.total_ask),
            ):
                size = sum(v for m, v in cells.items() if m in keys)
                if not size:
                    continue
                part = side_factor * x.value * float(size) / total if total else 0.0
                key = (r.name, bucket, i, x.name, side)
                have = out.get(key, (0, 0.0))
                out[key] = (have[0] + size, have[1] + part)
    return out


def two_sided(
    conn: sa.Connection, week: calendar.Week, method: int, *, by_user: bool
) -> list[TwoSided]:
    """Per market and authority, the snapshots in which it had bracketed liquidity (a non-zero
    ``l`` cell) on the bid and on the ask side (tick_maker_sides: the sides each tick stored,
    or its stored cells)."""
    sd, k, a = schema.tick_maker_sides, schema.markets, schema.accounts
    source, who = _with_authority(sd, by_user=by_user)
    in_week = sa.and_(_in_week(sd.c.tick_at, week), sd.c.method_id == method)
    if by_user:
        # An authority is two-sided in a snapshot when its User accounts together are.
        both = (
            sa.select(sd.c.tick_at, sd.c.market_index, who.label("authority_id"))
            .select_from(source)
            .where(in_week)
            .group_by(sd.c.tick_at, sd.c.market_index, who)
            .having(sa.and_(sa.func.bool_or(sd.c.bid), sa.func.bool_or(sd.c.ask)))
            .subquery()
        )
        counted = (
            sa.select(both.c.market_index, both.c.authority_id, sa.func.count().label("n"))
            .group_by(both.c.market_index, both.c.authority_id)
            .subquery()
        )
    else:
        # One row a snapshot per maker, the maker its own authority: a filtered count.
        counted = (
            sa.select(sd.c.market_index, who.label("authority_id"), sa.func.count().label("n"))
            .select_from(source)
            .where(in_week, sd.c.bid, sd.c.ask)
            .group_by(sd.c.market_index, who)
            .subquery()
        )
    rows = conn.execute(
        sa.select(k.c.name, a.c.pubkey, counted.c.n)
        .select_from(
            counted.join(k, k.c.market_index == counted.c.market_index).join(
                a, a.c.account_id == counted.c.authority_id
            )
        )
        .order_by(k.c.name, a.c.pubkey)
    )
    return [TwoSided(m, who_, int(n)) for m, who_, n in rows]


def scored_snapshots(conn: sa.Connection, week: calendar.Week, method: int) -> dict[str, int]:
    """Per market, the week's snapshots scored under ``method`` (its accumulator row)."""
    wm, k = schema.week_methods, schema.markets
    rows = conn.execute(
        sa.select(k.c.name, wm.c.snapshots)
        .join(k, k.c.market_index == wm.c.market_index)
        .where(wm.c.week_start == week.monday, wm.c.method_id == method)
    )
    return {m: int(n) for m, n in rows}


def market_names(conn: sa.Connection) -> dict[int, str]:
    """Perp market names by index."""
    k = schema.markets
    return dict(conn.execute(sa.select(k.c.market_index, k.c.name)).all())


def fill_count(conn: sa.Connection, week: calendar.Week) -> int:
    """Every stored fill of ``week`` (what a close counts: self-matches and unattributed too)."""
    f = schema.fills
    return int(
        conn.execute(sa.select(sa.func.count()).where(_in_week(f.c.block_time, week))).scalar_one()
    )
