"""What users ask the store: the scores and coverage of a week, as frozen dataclasses.

These read the ``weekly_scores`` and ``weekly_coverage`` views (the same SQL a ``psql`` user
queries), so ``driftsnap scores`` and the views agree on everything but the reward: here the
caller passes the pools (micro-USDC per market, from the program file) and the projected reward
is the largest-remainder payout of spec section 5 among the week's participants, exactly what
the week close pays; the views use ``floor(pool * share)`` from the ``program_pools`` table,
which is within one micro-USDC of it. Who participates is the view's ``participant`` column (the
program the daemon runs, migration 0009), unless the caller passes the participants it computed
(``driftsnap scores`` passes the close's, from its own program file and the database).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.scoring import payouts
from driftsnap.store import schema

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import date

    from driftsnap.scoring import settlement


@dataclass(frozen=True, slots=True)
class MakerScore:
    """One maker's week so far in one market under one method."""

    week: str
    market: str
    method: str
    params_hash: str
    maker: str
    authority: str
    snapshots: int  # the market's successful snapshots scored this week
    quoted_snapshots: int  # those in which this maker had an order
    score: float  # MMScore: the correctly rounded exact sum of the snapshot scores
    participant: bool  # shares the week's rewards (spec 3: registered or everyone, not forfeited)
    share: float  # of the participants' scores in the market; 0 for a non-participant
    pool_micro_usdc: int | None
    projected_reward_micro_usdc: int | None
    last_slot: int


@dataclass(frozen=True, slots=True)
class Coverage:
    """Ticks of one week for one market: ok + rejected + missed = ticks."""

    week: str
    market: str
    ticks: int
    ok: int
    rejected: int
    missed: int
    last_slot: int | None

    @property
    def coverage(self) -> float:
        """The share of the ticks that were ok (0.0 without ticks)."""
        return self.ok / self.ticks if self.ticks else 0.0


def current_week(conn: sa.Connection) -> calendar.Week:
    """The ISO week (UTC) the database server's clock is in, as the ``live_*`` views see it."""
    now: date = conn.execute(
        sa.select(sa.cast(sa.func.timezone("UTC", sa.func.now()), sa.Date))
    ).scalar_one()
    return calendar.Week.containing(now)


def week_scores(
    conn: sa.Connection,
    week: calendar.Week,
    *,
    pools: Mapping[str, int] | None = None,
    participants: settlement.Participants | None = None,
    market: str | None = None,
    method: str | None = None,
) -> list[MakerScore]:
    """Every maker's score, share and projected reward for ``week``, best first per market;
    shares and rewards among ``participants`` if given, else the view's ``participant`` makers."""
    v = schema.weekly_scores
    query = sa.select(
        v.c.week,
        v.c.market,
        v.c.method,
        v.c.params_hash,
        v.c.maker,
        v.c.authority,
        v.c.participant,
        v.c.snapshots,
        v.c.quoted_snapshots,
        v.c.score,
        v.c.share,
        v.c.last_slot,
    ).where(v.c.week_start == week.monday)
    if market is not None:
        query = query.where(v.c.market == market)
    if method is not None:
        query = query.where(v.c.method == method)
    rows = conn.execute(query.order_by(v.c.market, v.c.method, v.c.score.desc(), v.c.maker)).all()
    taking_part = {
        (r.market, r.method, r.maker): (
            bool(r.participant) if participants is None else participants.includes(r.authority)
        )
        for r in rows
    }
    weights: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if taking_part[(r.market, r.method, r.maker)]:
            weights.setdefault((r.market, r.method), {})[r.maker] = r.score
    shares = {key: payouts.shares(w) for key, w in weights.items()}
    rewards: dict[tuple[str, str], dict[str, int]] = {}
    if pools is not None:
        rewards = {key: payouts.allocate(pools.get(key[0], 0), w) for key, w in weights.items()}
    return [
        MakerScore(
            week=r.week,
            market=r.market,
            method=r.method,
            params_hash=r.params_hash,
            maker=r.maker,
            authority=r.authority,
            snapshots=r.snapshots,
            quoted_snapshots=r.quoted_snapshots,
            score=r.score,
            participant=taking_part[(r.market, r.method, r.maker)],
            share=(
                r.share
                if participants is None
                else float(shares.get((r.market, r.method), {}).get(r.maker, 0))
            ),
            pool_micro_usdc=None if pools is None else pools.get(r.market, 0),
            projected_reward_micro_usdc=(
                None if pools is None else rewards.get((r.market, r.method), {}).get(r.maker, 0)
            ),
            last_slot=r.last_slot,
        )
        for r in rows
    ]


def live_scores(
    conn: sa.Connection,
    *,
    pools: Mapping[str, int] | None = None,
    participants: settlement.Participants | None = None,
    market: str | None = None,
    method: str | None = None,
) -> list[MakerScore]:
    """:func:`week_scores` of the current week (the ``live_scores`` view)."""
    return week_scores(
        conn,
        current_week(conn),
        pools=pools,
        participants=participants,
        market=market,
        method=method,
    )


def week_coverage(conn: sa.Connection, week: calendar.Week) -> list[Coverage]:
    """Ticks ok, rejected and missed per market in ``week``: every market a tick of the week
    included and every market with a score pool that week (a market the program gives no pool
    and no tick read is not sampled by configuration, so not missed: migration 0010)."""
    v = schema.weekly_coverage
    rows = conn.execute(
        sa.select(v.c.week, v.c.market, v.c.ticks, v.c.ok, v.c.rejected, v.c.missed, v.c.last_slot)
        .where(v.c.week_start == week.monday)
        .order_by(v.c.market)
    )
    return [Coverage(*r) for r in rows]


def live_coverage(conn: sa.Connection) -> list[Coverage]:
    """:func:`week_coverage` of the current week (the ``live_coverage`` view)."""
    return week_coverage(conn, current_week(conn))
