"""What the week report reads besides the close: per-snapshot scores and cells, aggregated in SQL.

A week at a 60 s cadence holds ~10,000 snapshots per market and a score row per maker and method
in each; the report needs none of them one by one. Every query here groups by market, maker (or
bracket and side) and a time **bucket** of ``width_s`` seconds, ``floor((tick_at - week start) /
width_s)``, so the report reads thousands of rows whatever the cadence. With a bucket narrower than
the cadence each bucket holds at most one snapshot and the series are per snapshot.

The per-maker rows are the views ``tick_maker_scores`` and ``tick_bracket_cells`` (migration
0007): the arrays each tick stores on its ``snapshot_methods`` rows, unnested, plus the rows of
ticks stored before in the old ``maker_scores`` and ``bracket_cells`` tables.

Makers are grouped by **authority**: under a method keyed by User account (``maker_key = user``)
a wallet's sub-accounts add up through ``user_accounts``, as the program pays wallets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.store import schema

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
    scores = (
        sa.select(ms.c.tick_at, ms.c.market_index, who.label("authority_id"), value.label("value"))
        .select_from(source)
        .where(_in_week(ms.c.tick_at, week), ms.c.method_id == method)
        .subquery()
    )
    query = sa.select(
        k.c.name,
        a.c.pubkey,
        (bucket := _bucket(scores.c.tick_at, week, width_s).label("bucket")),
        sa.func.sum(scores.c.value),
        sa.func.count(sa.distinct(scores.c.tick_at)),
    ).select_from(
        scores.join(k, k.c.market_index == scores.c.market_index).join(
            a, a.c.account_id == scores.c.authority_id
        )
    )
    if authority is not None:
        query = query.where(scores.c.authority_id == authority)
    rows = conn.execute(query.group_by(k.c.name, a.c.pubkey, bucket).order_by(k.c.name, bucket))
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
    level's value and the maker's pro-rata part of it)."""
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
        .order_by(k.c.name, bucket, br.c.bracket, bc.c.side)
    )
    return [CellBucket(m, b, p, n, s, int(size), float(v)) for m, b, p, n, s, size, v in rows]


def two_sided(
    conn: sa.Connection, week: calendar.Week, method: int, *, by_user: bool
) -> list[TwoSided]:
    """Per market and authority, the snapshots in which it had bracketed liquidity (a non-zero
    ``l`` cell) on the bid and on the ask side."""
    bc, k, a = schema.tick_bracket_cells, schema.markets, schema.accounts
    source, who = _with_authority(bc, by_user=by_user)
    both = (
        sa.select(bc.c.tick_at, bc.c.market_index, who.label("authority_id"))
        .select_from(source)
        .where(_in_week(bc.c.tick_at, week), bc.c.method_id == method)
        .group_by(bc.c.tick_at, bc.c.market_index, who)
        .having(sa.and_(sa.func.bool_or(bc.c.side == 0), sa.func.bool_or(bc.c.side == 1)))
        .subquery()
    )
    rows = conn.execute(
        sa.select(k.c.name, a.c.pubkey, sa.func.count())
        .select_from(
            both.join(k, k.c.market_index == both.c.market_index).join(
                a, a.c.account_id == both.c.authority_id
            )
        )
        .group_by(k.c.name, a.c.pubkey)
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
