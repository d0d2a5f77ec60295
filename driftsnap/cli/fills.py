"""``fills check`` and ``fills self-matches``: what is stored of the maker fills."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, parts, protocol
from driftsnap.cli import args, output
from driftsnap.flows import fills
from driftsnap.scoring import payouts
from driftsnap.store import database
from driftsnap.store import fills as stored

if TYPE_CHECKING:
    import argparse

    import sqlalchemy as sa

    from driftsnap import config

SELF_MATCH_COLUMNS = (
    "signature",
    "market",
    "fill_record_id",
    "slot",
    "block_time",
    "authority",
    "maker",
    "taker",
    "quote_usdc",
)


def add(sub: Any) -> None:
    """Declare ``fills`` (``check``, ``self-matches``)."""
    p = args.command(
        sub,
        "fills",
        summary="maker fills: gaps in fill record ids, self-matches",
        description=(
            "The Volume Reward is split by maker volume from the chain's fill records, which the\n"
            "daemon ingests exactly once. These commands check what is stored."
        ),
    )
    actions = p.add_subparsers(dest="fills_command", metavar="ACTION", required=True)
    q = args.command(
        actions,
        "check",
        summary="report gaps in each market's fill record ids per week (exit 1 if any)",
        description=(
            "fill_record_id is contiguous per market: a missing id is a fill not ingested.\n"
            "With an RPC URL the markets' next_fill_record_id is read from the chain too, so\n"
            "fills missing at the newest end are found. A week with gaps cannot be closed\n"
            "without --force and a reason."
        ),
        epilog=(
            "examples:\n  driftsnap fills check --week 2026-W47\n"
            "  driftsnap fills check --rpc-url $RPC"
        ),
    )
    q.add_argument("--week", metavar=args.WEEK, help="one ISO week (default: every week stored)")
    q.add_argument("--rpc-url", metavar="URL", help="also compare with the chain's counters")
    args.add_format(q)
    q.set_defaults(handler=check)
    q = args.command(
        actions,
        "self-matches",
        summary=(
            "list a week's self-matched fills (maker and taker share a wallet), with signatures"
        ),
        description="Fills whose maker and taker have one authority: excluded from volume.",
        epilog="examples:\n  driftsnap fills self-matches --week 2026-W47 --format csv",
    )
    q.add_argument("--week", metavar=args.WEEK, required=True, help="ISO week, e.g. 2026-W47")
    args.add_format(q, ("table", "json", "csv"))
    q.set_defaults(handler=self_matches)


def check(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap fills check``: exit 1 when a fill record is missing."""
    w = args.week(ns.week)
    with parts.open_store(settings) as db:
        if settings.rpc_url is not None:  # the chain's counters also find fills missing at the end
            checks = asyncio.run(_check_with_chain(settings, db.engine, w))
        else:
            with database.connect(db.engine) as conn:
                weeks = [w] if w is not None else stored.weeks_with_fills(conn)
                checks = [
                    c
                    for x in weeks
                    for c in stored.check(conn, x, program=protocol.DRIFT_PROGRAM_ID)
                ]
    rows = [
        {
            "week": c.week,
            "market": c.market or f"{c.market_type}-{c.market_index}",
            "fills": c.fills,
            "first_id": c.first_id,
            "last_id": c.last_id,
            "missing": c.missing,
            "gaps": [[g.first, g.last] for g in c.gaps],
            "tail_checked": c.tail_checked,
        }
        for c in checks
    ]
    if ns.format == "json":
        output.print_json(rows)
    elif rows:
        gaps = [", ".join(f"{g.first}..{g.last}" for g in c.gaps) or "-" for c in checks]
        output.print_rows(
            "Fill record ids per market and week",
            [{**r, "gaps": text} for r, text in zip(rows, gaps, strict=True)],
        )
    else:
        print("no fills stored" + (f" for week {w}" if w else ""))
    missing = sum(c.missing for c in checks)
    if missing:
        print(
            f"{missing} fill record(s) missing: that week cannot close without --force",
            file=sys.stderr,
        )
    return 1 if missing else 0


async def _check_with_chain(
    settings: config.Settings, engine: sa.Engine, w: calendar.Week | None
) -> list[stored.MarketCheck]:
    async with parts.rpc_client(settings) as client:
        return await fills.check(client, engine, w)


def self_matches(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap fills self-matches --week W``."""
    w = calendar.Week.parse(ns.week)
    with parts.open_store(settings) as db, database.connect(db.engine) as conn:
        matches = stored.self_matches(conn, w)
    rows = [
        {
            "signature": m.signature,
            "market": f"{m.market_type}-{m.market_index}",
            "fill_record_id": m.fill_record_id,
            "slot": m.slot,
            "block_time": m.block_time.isoformat(),
            "authority": m.authority,
            "maker": m.maker,
            "taker": m.taker,
            "quote_usdc": payouts.usdc(m.quote_filled),
        }
        for m in matches
    ]
    if ns.format == "json":
        output.print_json({"week": str(w), "self_matches": rows})
    elif ns.format == "csv":
        output.print_csv(rows, SELF_MATCH_COLUMNS)
    elif rows:
        output.print_rows(f"Self-matches, week {w} (excluded from volume)", rows)
    else:
        print(f"no self-matches in week {w}")
    return 0
