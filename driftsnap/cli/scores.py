"""``scores``: a week's scores, shares and projected rewards from the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftsnap import config, parts
from driftsnap.cli import args, output
from driftsnap.errors import InputError
from driftsnap.flows import close
from driftsnap.scoring import methods, payouts
from driftsnap.store import database, queries, series

if TYPE_CHECKING:
    import argparse

COLUMNS = (
    "week",
    "market",
    "method",
    "maker",
    "authority",
    "participant",
    "snapshots",
    "quoted_snapshots",
    "score",
    "share",
    "pool_usdc",
    "projected_reward_usdc",
    "last_slot",
    "params_hash",
)
# What the table shows of them.
SHOWN = (
    "market",
    "method",
    "maker",
    "participant",
    "snapshots",
    "score",
    "share",
    "projected_reward_usdc",
)


def add(sub: Any) -> None:
    """Declare ``scores``."""
    p = args.command(
        sub,
        "scores",
        summary="print a week's scores, shares and projected rewards from the database",
        description=(
            "Each maker's score sum, snapshots counted, share of the market and projected\n"
            "reward (largest remainder over the pool in force) for a week, default the current\n"
            "one. The same numbers as the live_scores / weekly_scores views."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap scores\n"
            "  driftsnap scores --week 2026-W47 --market SOL-PERP --format csv"
        ),
    )
    p.add_argument("--week", metavar=args.WEEK, help="ISO week (default: the current one)")
    p.add_argument("--market", metavar="NAME", help="only this market, e.g. SOL-PERP")
    p.add_argument(
        "--method", choices=sorted(methods.PRESETS), help="only this method (default: all)"
    )
    args.add_format(p, ("table", "json", "csv"))
    p.set_defaults(handler=scores)


def _usdc(micro: int | None) -> str | None:
    return None if micro is None else payouts.usdc(micro)


def scores(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap scores``."""
    program = config.load_program(settings.program_file)
    asked = args.week(ns.week)  # a bad --week is refused before the database is started
    with parts.open_store(settings) as db, database.connect(db.engine) as conn:
        w = asked or queries.current_week(conn)
        known = sorted(series.market_names(conn).values())
        if ns.market is not None and known and ns.market not in known:
            # A typo is not "no scores stored": say which markets there are.
            raise InputError(f"--market {ns.market!r}: no such market (stored: {', '.join(known)})")
        # The close's participants (the program file's and the database's), so the rewards
        # shown are what close-week pays.
        rows = queries.week_scores(
            conn,
            w,
            pools=program.score_pools(w),
            participants=close.terms(conn, program, w).participants,
            market=ns.market,
            method=ns.method,
        )
    records = [
        {
            "week": r.week,
            "market": r.market,
            "method": r.method,
            "maker": r.maker,
            "authority": r.authority,
            "participant": r.participant,
            "snapshots": r.snapshots,
            "quoted_snapshots": r.quoted_snapshots,
            "score": r.score,
            "share": r.share,
            "pool_usdc": _usdc(r.pool_micro_usdc),
            "projected_reward_usdc": _usdc(r.projected_reward_micro_usdc),
            "last_slot": r.last_slot,
            "params_hash": r.params_hash,
        }
        for r in rows
    ]
    if ns.format == "json":
        output.print_json({"week": str(w), "scores": records})
    elif ns.format == "csv":
        output.print_csv(records, COLUMNS)
    elif not records:
        print(f"no scores stored for week {w}")
    else:
        table = [
            {k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in rec.items() if k in SHOWN}
            for rec in records
        ]
        output.print_rows(f"Scores, week {w}", table)
    return 0
