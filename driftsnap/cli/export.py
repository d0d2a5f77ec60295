"""``export-week``: a closed week as one archive anyone can verify; ``prune``: drop old weeks'
per-tick data once they are closed and exported."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, config, parts
from driftsnap.cli import args

if TYPE_CHECKING:
    import argparse


def add(sub: Any) -> None:
    """Declare ``export-week``."""
    p = args.command(
        sub,
        "export-week",
        summary="write a closed week's books, fills, ticks and close to one archive file",
        description=(
            "A zip of Parquet parts (books at order level, fills, tick headers) and the close\n"
            "(result, digests, payouts, seed), with a manifest of every part's sha256.\n"
            "`driftsnap verify-week --from FILE` recomputes it on any machine, no database."
        ),
        epilog="examples:\n  driftsnap export-week --week 2026-W47 --out 2026-W47.zip",
    )
    p.add_argument("--week", metavar=args.WEEK, required=True, help="the closed ISO week")
    p.add_argument("--out", metavar="FILE", type=Path, required=True, help="the archive to write")
    p.set_defaults(handler=export_week)

    p = args.command(
        sub,
        "prune",
        summary="drop the per-tick data of closed, exported weeks before a week",
        description=(
            "Drops the week partitions of the order-level books, per-method facts, brackets and\n"
            "per-maker detail of every week before --before. Tick headers, accumulators,\n"
            "results, digests and payouts stay; `verify-week --from` the export still checks\n"
            "the week. Refused, dropping nothing, if any such week is not closed and exported.\n"
            "Runs as the schema's owner (DRIFTSNAP_DATABASE_URL)."
        ),
        epilog="examples:\n  driftsnap prune --before 2026-W40",
    )
    p.add_argument("--before", metavar=args.WEEK, required=True, help="keep this week and later")
    p.set_defaults(handler=prune)


def export_week(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap export-week``: 0 once the archive is written."""
    from driftsnap.flows import export  # noqa: PLC0415  (pyarrow: only for archives)

    w = calendar.Week.parse(ns.week)
    with parts.open_store(settings, role="closer") as db:
        hashes = export.export_week(db.engine, w, ns.out)
    print(f"week {w}: exported to {ns.out} ({len(hashes)} parts, manifest sha256 of each)")
    return 0


def prune(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap prune``: 0 once the partitions are dropped (2 if a week is not exported)."""
    from driftsnap.flows import export  # noqa: PLC0415  (pyarrow: only for archives)

    before = calendar.Week.parse(ns.before)
    with parts.open_store(settings, role="owner") as db:
        pruned = export.prune(db.engine, before)
    shown = ", ".join(str(w) for w in pruned) or "none"
    print(f"pruned the per-tick data of {len(pruned)} weeks before {before}: {shown}")
    return 0
