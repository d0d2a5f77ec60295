"""``report``: a week's close as an HTML page with PNG charts, and its JSON twin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, config, parts, weekreport
from driftsnap.cli import args

if TYPE_CHECKING:
    import argparse


def add(sub: Any) -> None:
    """Declare ``report``."""
    p = args.command(
        sub,
        "report",
        summary="write a week's HTML report with PNG charts and report.json (payouts, shares, ...)",
        description=(
            "Write DIR/index.html (one page, charts as PNG files next to it), DIR/report.json\n"
            "(every figure the page shows) and the charts: per market the makers' cumulative\n"
            "score share over the week (the top N and the others), two-sided uptime per maker,\n"
            "coverage (ticks ok / missed / rejected), the volume table, self-matches and the\n"
            "digests (result, params_hash, seed, books Merkle root, fills). With --maker, that\n"
            "maker's summary and its score per snapshot stacked by bracket and side.\n\n"
            "The numbers are the stored close's: a week must be closed first (close-week).\n"
            "A week not yet closed is refused, pointing at `close-week --dry-run`; with\n"
            "--provisional it is reported from a dry run of the close instead, and the page and\n"
            "report.json say PROVISIONAL (only for a week that has ended)."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap report --week 2026-W47 --out report/\n"
            "  driftsnap report --week 2026-W47 --maker 7xKX...AsU --out report-acme/\n"
            "  driftsnap report --week 2026-W47 --provisional --out draft/   # not closed yet"
        ),
    )
    p.add_argument("--week", metavar=args.WEEK, required=True, help="ISO week, e.g. 2026-W47")
    p.add_argument("--out", type=Path, metavar="DIR", required=True, help="directory to write")
    p.add_argument("--maker", metavar="AUTHORITY", help="add this maker's page (wallet, base58)")
    p.add_argument(
        "--provisional",
        action="store_true",
        help="report a week that is not closed from a dry run of the close, marked provisional",
    )
    p.add_argument(
        "--top",
        type=args.positive,
        default=weekreport.DEFAULT_TOP,
        metavar="N",
        help="makers drawn one by one in the charts, the rest as others",
    )
    p.set_defaults(handler=report)


def report(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap report``."""
    w = calendar.Week.parse(ns.week)
    who = args.authority(ns.maker) if ns.maker is not None else None
    out = weekreport.prepare(ns.out)  # before any work: an unwritable --out fails at once
    program = config.load_program(settings.program_file) if ns.provisional else None
    with parts.open_store(settings) as db:
        outcome = weekreport.outcome(
            db.engine,
            w,
            now=args.utcnow(),
            provisional=ns.provisional,
            program=program,
            seeds=parts.seed_files(settings),
            default_method=settings.method,
        )
        doc = weekreport.write(db.engine, outcome, out, maker=who, top=ns.top)
    state = "PROVISIONAL (not closed)" if doc["provisional"] else "closed"
    print(f"week {w}: {state}, digest {doc['close']['digest']}")
    print(f"wrote {out / 'index.html'}, {out / 'report.json'} and {len(doc['charts'])} charts")
    return 0
