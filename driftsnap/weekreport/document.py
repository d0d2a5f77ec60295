"""The report's figures as one JSON document (``report.json``), which the page and charts render.

Every money figure, weight and share comes from the close's result (the stored ``week_closes``
row, or a dry run's for a provisional report): payouts by
:func:`driftsnap.flows.close.payout_table`, shares as the exact ``weight / sum of the
participants' weights`` of spec 3-4 (the close stores weights and rewards, not shares), rounded
once to a float. What the close does not hold (the time
series, two-sided uptime, coverage, self-matches) is read from the week's stored snapshots and
fills, which the database keeps immutable once the week is closed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, logs
from driftsnap.flows import close
from driftsnap.scoring import methods, payouts, settlement
from driftsnap.store import closes, makers, queries, series
from driftsnap.store import fills as store_fills
from driftsnap.weekreport.errors import MakerNotFoundError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from datetime import datetime

    import sqlalchemy as sa

log = logs.get(__name__)

FORMAT = 1
BUCKET_S = 1_800  # one chart point per half hour at most: 336 per week, ~30 snapshots at 60 s
SIDES = ("bid", "ask")
UPTIME_METHOD = methods.UPTIME_METHOD
UPTIME_DEFINITION = (
    "two-sided uptime: the share of the market's ok snapshots in which the maker had bracketed "
    "liquidity on both the bid and the ask side under {method}, i.e. at least one order on each "
    "side {where}"
)
_WITHIN_BRACKETS = (
    "within {edge} bps of that side's best order (the brackets of spec 2.1 are measured from the "
    "best order of the side, not from the oracle: the stored cells hold nothing finer)"
)
_WITHIN_LEVELS = "in one of the method's ranked price levels (spec 2.2)"


@dataclass
class _Context:
    conn: sa.Connection
    outcome: close.Outcome
    method: methods.Method
    method_id: int | None
    names: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def week(self) -> calendar.Week:
        return self.outcome.week

    @property
    def by_user(self) -> bool:
        return self.method.maker_key == "user"


def build(
    conn: sa.Connection, outcome: close.Outcome, *, maker: str | None, top: int
) -> dict[str, Any]:
    """The report document of ``outcome``'s week (``maker``: with that authority's section)."""
    started = time.perf_counter()
    c = outcome.close
    ctx = _Context(
        conn=conn,
        outcome=outcome,
        method=methods.get(c.method),
        method_id=series.method_id(conn, c.params_hash),
        names={p.authority: p.name for p in makers.participants(conn) if p.name},
    )
    result = outcome.result
    uptime = _uptime(ctx)
    matches = _self_matches(ctx)
    coverage = queries.week_coverage(conn, outcome.week)
    skipped = _not_sampled(result, {x.market for x in coverage})
    pools = [
        _pool(ctx, p, uptime)
        for p in result["pools"]
        if p["market"] != settlement.VOLUME and p["market"] not in skipped
    ]
    volume = next(p for p in result["pools"] if p["market"] == settlement.VOLUME)
    markets, rows = close.payout_table(result)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "week": str(outcome.week),
        "week_start": outcome.week.start.isoformat(),
        "week_end": outcome.week.end.isoformat(),
        "provisional": not _closed(outcome),
        "refusals": list(outcome.refusals),
        "method": c.method,
        "params_hash": c.params_hash,
        "paused": result["paused"],
        "pause_reason": result["pause_reason"],
        "terms": {
            "score_pools_micro_usdc": result["terms"]["score_pools"],
            "volume_pool_micro_usdc": result["terms"]["volume_pool"],
            "registered": result["terms"]["registered"],
            "forfeited": result["terms"]["forfeited"],
        },
        "close": _close(ctx),
        "unallocated_micro_usdc": result["unallocated"],
        "payouts": [
            {
                "authority": r["authority"],
                "name": ctx.names.get(r["authority"], ""),
                "score_micro_usdc": {m: r[m] for m in markets},
                "volume_micro_usdc": r["volume"],
                "total_micro_usdc": r["total"],
            }
            for r in rows
        ],
        "pools": pools,
        "volume": _volume(ctx, volume),
        "coverage": [
            {
                "market": x.market,
                "ticks": x.ticks,
                "ok": x.ok,
                "rejected": x.rejected,
                "missed": x.missed,
                "coverage": x.coverage,
            }
            for x in coverage
        ],
        "not_sampled": skipped,
        "uptime": uptime,
        "self_matches": matches,
        "share_series": _share_series(ctx, pools, top=top),
        "maker": None if maker is None else _maker(ctx, maker, uptime, matches),
        "charts": [],
        "notes": ctx.notes,
    }
    log.info(
        "report_read",
        week=str(outcome.week),
        maker=maker,
        ms=_ms(started),
        markets=len(pools),
        paid=len(rows),
    )
    return doc


def _not_sampled(result: Mapping[str, Any], covered: Collection[str]) -> list[str]:
    """The markets of the close's result that nothing sampled because the program gives them no
    score pool (SUI-PERP and ARB-PERP at 0 in the shipped file): no snapshot, no maker, and no
    tick of the week included them (``covered``: the weekly_coverage markets). The daemon samples
    the paid markets unless told otherwise, so these are neither missed nor worth a score table.
    """
    pools = result["terms"]["score_pools"]
    return sorted(
        p["market"]
        for p in result["pools"]
        if p["market"] != settlement.VOLUME
        and not pools.get(p["market"], 0)
        and not p["snapshots"]
        and not p["makers"]
        and p["market"] not in covered
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _closed(outcome: close.Outcome) -> bool:
    """Stored by this run or before it; a dry run of a week not closed is neither."""
    return outcome.stored or outcome.already


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _close(ctx: _Context) -> dict[str, Any]:
    c = ctx.outcome.close
    stored_fills = series.fill_count(ctx.conn, ctx.week)
    if stored_fills != c.fills:
        # A late transaction may still land in a closed week (the ingest must not stall on it);
        # the close and this report's volume figures stand, verify-week names the difference.
        ctx.notes.append(
            f"{stored_fills} fills of {ctx.week} are stored now, {c.fills} when the close was "
            f"computed: volume figures are the close's (run `driftsnap verify-week`)"
        )
    return {
        "digest": c.digest,
        "result_sha256": c.result_sha256,
        "params_hash": c.params_hash,
        "seed": c.seed,
        "seed_sha256": c.seed_sha256,
        "books_root": c.books_root,
        "books": c.books,
        "fills_digest": c.fills_digest,
        "fills": c.fills,
        "program_digest": c.program_digest,
        "forced": c.forced,
        "force_reason": c.force_reason,
        "overridden": list(c.overridden),
        "closed_at": _iso(c.closed_at),
        "source": ctx.outcome.source,
    }


def _shares(makers: Iterable[Mapping[str, Any]]) -> dict[str, Fraction]:
    """Exact shares of a pool's participants (the close's weights, spec 3 and 4)."""
    return payouts.shares({m["maker"]: m["weight"] for m in makers if m["participant"]})


def _pool(ctx: _Context, pool: Mapping[str, Any], uptime: Mapping[str, Any]) -> dict[str, Any]:
    shares = _shares(pool["makers"])
    up = uptime["markets"].get(pool["market"], {}).get("makers", {})
    return {
        "pool": pool["market"],
        "pool_micro_usdc": pool["pool"],
        "paid_micro_usdc": pool["paid"],
        "unallocated_micro_usdc": pool["unallocated"],
        "snapshots": pool["snapshots"],
        "makers": [
            {
                "maker": m["maker"],
                "authority": m["authority"],
                "name": ctx.names.get(m["authority"], ""),
                "weight": m["weight"],
                "participant": m["participant"],
                "share": float(shares.get(m["maker"], 0)),
                "reward_micro_usdc": m["reward"],
                "uptime": up.get(m["authority"], {}).get("uptime", 0.0),
            }
            for m in pool["makers"]
        ],
    }


def _volume(ctx: _Context, pool: Mapping[str, Any]) -> dict[str, Any]:
    shares = _shares(pool["makers"])
    return {
        "pool_micro_usdc": pool["pool"],
        "paid_micro_usdc": pool["paid"],
        "unallocated_micro_usdc": pool["unallocated"],
        "makers": [
            {
                "authority": m["authority"],
                "name": ctx.names.get(m["authority"], ""),
                "volume_micro_usdc": m["weight"],
                "participant": m["participant"],
                "share": float(shares.get(m["maker"], 0)),
                "reward_micro_usdc": m["reward"],
            }
            for m in pool["makers"]
        ],
    }


def _uptime(ctx: _Context) -> dict[str, Any]:
    """Two-sided uptime per market and authority from the stored bracket cells."""
    method: methods.Method = UPTIME_METHOD
    mid = series.method_id(ctx.conn, method.params_hash)
    if mid is None or not series.scored_snapshots(ctx.conn, ctx.week, mid):
        # Not sampled under the bps brackets (DRIFTSNAP_METHODS): the close's own cells.
        method, mid = ctx.method, ctx.method_id
    ok = closes.ok_snapshots(ctx.conn, ctx.week)
    found = (
        []
        if mid is None
        else series.two_sided(ctx.conn, ctx.week, mid, by_user=method.maker_key == "user")
    )
    markets: dict[str, Any] = {m: {"snapshots": n, "makers": {}} for m, n in sorted(ok.items())}
    for row in found:
        entry = markets.setdefault(row.market, {"snapshots": ok.get(row.market, 0), "makers": {}})
        n = entry["snapshots"]
        entry["makers"][row.authority] = {
            "two_sided": row.snapshots,
            "uptime": row.snapshots / n if n else 0.0,
        }
    where = (
        _WITHIN_BRACKETS.format(edge=method.edges_bps[-1])
        if isinstance(method, methods.BracketMethod)
        else _WITHIN_LEVELS
    )
    return {
        "method": method.name,
        "params_hash": method.params_hash,
        "definition": UPTIME_DEFINITION.format(method=method.name, where=where),
        "markets": markets,
    }


def _self_matches(ctx: _Context) -> list[dict[str, Any]]:
    names = series.market_names(ctx.conn)
    return [
        {
            "signature": m.signature,
            "market_type": m.market_type,
            "market_index": m.market_index,
            "market": names.get(m.market_index) if m.market_type == "perp" else None,
            "fill_record_id": m.fill_record_id,
            "slot": m.slot,
            "block_time": _iso(m.block_time),
            "authority": m.authority,
            "maker": m.maker,
            "taker": m.taker,
            "quote_micro_usdc": m.quote_filled,
        }
        for m in store_fills.self_matches(ctx.conn, ctx.week)
    ]


def _hour(bucket: int) -> float:
    return bucket * BUCKET_S / 3600


def _share_series(ctx: _Context, pools: Sequence[Mapping[str, Any]], *, top: int) -> dict[str, Any]:
    """Per market, each top participant's cumulative share of the participants' score at the
    end of every bucket with snapshots; the others summed. The last point is the close's share
    up to float rounding (the close sums exactly)."""
    out: dict[str, Any] = {"bucket_s": BUCKET_S, "top": top, "markets": []}
    if ctx.method_id is None:
        ctx.notes.append(
            f"no per-snapshot scores under {ctx.method.name} are stored for {ctx.week} "
            "(the daemon did not score with it): the share charts are left out"
        )
        return out
    snapshots = series.buckets(ctx.conn, ctx.week, ctx.method_id, width_s=BUCKET_S)
    rows = series.authority_buckets(
        ctx.conn,
        ctx.week,
        ctx.method_id,
        width_s=BUCKET_S,
        by_user=ctx.by_user,
        normalized=ctx.method.aggregation == "normalized",
    )
    for pool in pools:
        market = pool["pool"]
        weights: dict[str, float] = {}
        for m in pool["makers"]:
            if m["participant"]:
                weights[m["authority"]] = weights.get(m["authority"], 0.0) + float(m["weight"])
        ranked = sorted(weights, key=lambda a: (-weights[a], a))
        shown = ranked if len(ranked) <= top + 1 else ranked[:top]
        bucket_ids = sorted({b.bucket for b in snapshots if b.market == market})
        if not bucket_ids or not weights:
            continue
        added: dict[tuple[str, int], float] = {}
        for r in rows:
            if r.market == market and r.authority in weights:
                added[(r.authority, r.bucket)] = r.value
        running = dict.fromkeys(ranked, 0.0)
        lines: dict[str | None, list[float | None]] = {a: [] for a in shown}
        if len(shown) < len(ranked):
            lines[None] = []
        for b in bucket_ids:
            for a in ranked:
                running[a] += added.get((a, b), 0.0)
            total = sum(running.values())
            for a in shown:
                lines[a].append(running[a] / total if total > 0 else None)
            if None in lines:
                rest = sum(running[a] for a in ranked[len(shown) :])
                lines[None].append(rest / total if total > 0 else None)
        out["markets"].append(
            {
                "market": market,
                "hours": [_hour(b + 1) for b in bucket_ids],
                "participants": len(ranked),
                "series": [
                    {
                        "authority": a,
                        "label": "others" if a is None else _label(a, ctx.names),
                        "share": values,
                    }
                    for a, values in lines.items()
                ],
            }
        )
    return out


def _label(authority: str, names: Mapping[str, str]) -> str:
    short = authority if len(authority) <= 12 else f"{authority[:4]}…{authority[-4:]}"
    name = names.get(authority, "")
    return f"{short} {name[:24]}".strip()


def _maker(
    ctx: _Context,
    authority: str,
    uptime: Mapping[str, Any],
    matches: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    result = ctx.outcome.result
    if not any(m["authority"] == authority for p in result["pools"] for m in p["makers"]):
        raise MakerNotFoundError(
            f"maker {authority} has no orders and no maker volume in week {ctx.week} (its "
            f"makers are in the report without --maker, or `driftsnap scores --week {ctx.week}`)"
        )
    account = series.account_id(ctx.conn, authority)
    by_market = _maker_series(ctx, account)
    markets = []
    for pool in result["pools"]:
        market = pool["market"]
        mine = [m for m in pool["makers"] if m["authority"] == authority]
        points = by_market.get(market, [])
        if market == settlement.VOLUME or (not mine and not any(p["quoted"] for p in points)):
            continue
        shares = _shares(pool["makers"])
        totals: dict[str, dict[str, float]] = {}
        for point in points:
            for cell in point["brackets"]:
                side = totals.setdefault(cell["bracket"], dict.fromkeys(SIDES, 0.0))
                side[cell["side"]] += cell["score"]
        ranked = _authority_rank(pool["makers"])
        up = uptime["markets"].get(market, {}).get("makers", {}).get(authority, {})
        markets.append(
            {
                "market": market,
                "makers": [m["maker"] for m in mine],
                "weight": sum(m["weight"] for m in mine),
                "share": float(
                    sum((shares.get(m["maker"], Fraction(0)) for m in mine), Fraction())
                ),
                "reward_micro_usdc": sum(m["reward"] for m in mine),
                "participant": any(m["participant"] for m in mine),
                "rank": ranked.index(authority) + 1 if authority in ranked else None,
                "of": len(ranked),
                "snapshots": sum(p["snapshots"] for p in points),
                "quoted_snapshots": sum(p["quoted"] for p in points),
                "two_sided": up.get("two_sided", 0),
                "uptime": up.get("uptime", 0.0),
                "score_total": sum(p["score"] for p in points),
                "brackets_total": totals,
                "series": points,
            }
        )
    volume = next(
        (
            m
            for p in result["pools"]
            if p["market"] == settlement.VOLUME
            for m in p["makers"]
            if m["authority"] == authority
        ),
        None,
    )
    volume_shares = _shares(
        next(p for p in result["pools"] if p["market"] == settlement.VOLUME)["makers"]
    )
    return {
        "authority": authority,
        "name": ctx.names.get(authority, ""),
        "forfeited": authority in result["terms"]["forfeited"],
        "total_micro_usdc": result["payouts"].get(authority, 0),
        "markets": markets,
        "volume": (
            None
            if volume is None
            else {
                "volume_micro_usdc": volume["weight"],
                "participant": volume["participant"],
                "share": float(volume_shares.get(volume["maker"], 0)),
                "reward_micro_usdc": volume["reward"],
            }
        ),
        "self_matches": sum(1 for m in matches if m["authority"] == authority),
    }


def _authority_rank(makers: Iterable[Mapping[str, Any]]) -> list[str]:
    weights: dict[str, float] = {}
    for m in makers:
        weights[m["authority"]] = weights.get(m["authority"], 0.0) + float(m["weight"])
    return sorted(weights, key=lambda a: (-weights[a], a))


def _maker_series(ctx: _Context, account: int | None) -> dict[str, list[dict[str, Any]]]:
    """Per market, one point per bucket with snapshots: the maker's summed stored scores and
    the part of each bracket side in them."""
    if ctx.method_id is None or account is None:
        return {}
    conn, week, mid = ctx.conn, ctx.week, ctx.method_id
    scores = {
        (r.market, r.bucket): r
        for r in series.authority_buckets(
            conn, week, mid, width_s=BUCKET_S, by_user=ctx.by_user, authority=account
        )
    }
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for c in series.cell_buckets(
        conn,
        week,
        mid,
        width_s=BUCKET_S,
        by_user=ctx.by_user,
        authority=account,
        side_factor=ctx.method.side_factor,
    ):
        cells.setdefault((c.market, c.bucket), []).append(
            {"bracket": c.bracket, "side": SIDES[c.side], "size": c.size, "score": c.score}
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for b in series.buckets(conn, week, mid, width_s=BUCKET_S):
        row = scores.get((b.market, b.bucket))
        out.setdefault(b.market, []).append(
            {
                "bucket": b.bucket,
                "hour": _hour(b.bucket),
                "first_tick": _iso(b.first),
                "last_tick": _iso(b.last),
                "snapshots": b.snapshots,
                "quoted": 0 if row is None else row.quoted,
                "score": 0.0 if row is None else row.value,
                "brackets": cells.get((b.market, b.bucket), []),
            }
        )
    return out
