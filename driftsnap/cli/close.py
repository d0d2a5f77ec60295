"""``close-week`` and ``verify-week``: a week's payouts, stored once, and their check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, config, parts
from driftsnap.cli import args, output
from driftsnap.errors import InputError
from driftsnap.flows import close
from driftsnap.scoring import methods, payouts
from driftsnap.store import makers

if TYPE_CHECKING:
    import argparse


def add(sub: Any) -> None:
    """Declare ``close-week`` and ``verify-week``."""
    p = args.command(
        sub,
        "close-week",
        summary="close a program week: payouts in micro-USDC, stored once, immutable, with digests",
        description=(
            "Compute a week's payouts with the scoring spec (score pools per market among the\n"
            "participants minus forfeits, the volume pool, largest remainder in micro-USDC) and\n"
            "store them in one transaction under an advisory lock, with the revealed sampling\n"
            "seed and a digest anyone holding the data can check (`driftsnap verify-week`).\n"
            "Default: the last completed week (Monday 00:00 UTC to Monday 00:00 UTC).\n\n"
            "Refuses a week that has not ended; and, unless --force --reason TEXT, a week with\n"
            "fill gaps, unfinalized or unattributed fills, snapshot coverage below\n"
            "--min-coverage in a paid market, or a sampling seed that cannot be revealed or\n"
            "does not match the tick times. A closed week is immutable: closing it again prints\n"
            "the stored result. Participants and forfeits: the program file's plus those\n"
            "recorded with `driftsnap makers` and `driftsnap forfeit`."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap close-week                               # the last completed week\n"
            "  driftsnap close-week --week 2026-W47 --out payouts/\n"
            "  driftsnap close-week --week 2026-W47 --dry-run --method drift-mm-scoring\n"
            "  driftsnap close-week --week 2026-W47 --force --reason 'RPC outage, approved'"
        ),
    )
    p.add_argument("--week", metavar=args.WEEK, help="ISO week (default: the last completed)")
    args.from_setting(
        p.add_argument(
            "--method",
            choices=sorted(methods.PRESETS),
            help="recompute under this method from the stored order-level books",
        ),
        "method",
        unset="the program's, from the stored week accumulators",
    )
    p.add_argument("--dry-run", action="store_true", help="compute and print; store nothing")
    p.add_argument("--force", action="store_true", help="close despite the refusals")
    p.add_argument("--reason", metavar="TEXT", help="why a forced close is right (stored)")
    args.from_setting(
        p.add_argument(
            "--min-coverage",
            type=args.share,
            metavar="SHARE",
            help="ok ticks needed per paid market, 0..1",
        ),
        "close_min_coverage",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="write DIR/payouts-<week>.csv and .json")
    args.add_format(p)
    p.set_defaults(handler=close_week)

    p = args.command(
        sub,
        "verify-week",
        summary="recompute a closed week from the stored books and fills and check every digest",
        description=(
            "Re-score every stored order-level book of a closed week under its method, recount\n"
            "the maker volume from the stored fills, recompute the Merkle root of the books,\n"
            "the fills digest and the result, and compare them with what the close stored.\n"
            "Exit 0 when everything matches, 1 with the first difference."
        ),
        epilog=(
            "examples:\n  driftsnap verify-week --week 2026-W47\n"
            "  driftsnap verify-week --from 2026-W47.zip   # an export-week archive, no database"
        ),
    )
    p.add_argument("--week", metavar=args.WEEK, help="the closed ISO week")
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        type=Path,
        help="verify an `export-week` archive instead, with no database",
    )
    p.add_argument(
        "--jobs",
        type=args.positive,
        metavar="N",
        help="with --from: processes scoring the archive's books (default: one per core, one"
        " for a week of fewer than 2,000 snapshots)",
    )
    args.add_format(p)
    p.set_defaults(handler=verify_week)


def close_week(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap close-week``."""
    program = config.load_program(settings.program_file)
    if ns.reason and not ns.force:
        raise InputError("--reason goes with --force (it is stored with a forced close)")
    makers.check_reason(ns.reason or "")
    with parts.open_store(settings, role="closer") as db:
        outcome = close.close_week(
            db.engine,
            program,
            now=args.utcnow(),
            seeds=parts.seed_files(settings),
            week=args.week(ns.week),
            method=ns.method,
            default_method=settings.method,
            dry_run=ns.dry_run,
            force=ns.force,
            reason=ns.reason or "",
            min_coverage=(
                settings.close_min_coverage if ns.min_coverage is None else ns.min_coverage
            ),
        )
    files = output.write_payout_files(outcome, ns.out) if ns.out is not None else []
    markets, rows = close.payout_table(outcome.result)
    if ns.format == "json":
        output.print_json(output.payout_json(outcome, markets, rows))
        return 0
    _print_close(outcome, markets, rows, dry_run=ns.dry_run)
    for path in files:
        print(f"wrote {path}")
    return 0


def _print_close(
    outcome: close.Outcome, markets: list[str], rows: list[dict[str, Any]], *, dry_run: bool
) -> None:
    c = outcome.close
    if dry_run:
        state = "dry run, nothing stored"
    elif outcome.already and c.closed_at is not None:
        state = f"already closed at {c.closed_at:%Y-%m-%d %H:%M} UTC, stored result"
    else:
        state = "closed"
    print(f"week {outcome.week}: {state} — method {c.method}, {c.books} books, {c.fills} fills")
    for line in outcome.refusals:
        print(f"would be refused: {line}")
    if c.forced:
        print(f"forced: {c.force_reason}")
        for line in c.overridden:
            print(f"  overridden: {line}")
    if outcome.result["paused"]:
        print(f"paused: the program pays nothing this week ({outcome.result['pause_reason']})")
    if rows:
        table = [
            {
                "authority": r["authority"],
                **{m: payouts.usdc(r[m]) for m in markets},
                "volume": payouts.usdc(r["volume"]),
                "total": payouts.usdc(r["total"]),
            }
            for r in rows
        ]
        output.print_rows(f"Payouts, week {outcome.week} (USDC)", table)
    for p in outcome.result["pools"]:
        if p["pool"] or p["unallocated"]:
            print(
                f"pool {p['market']}: {payouts.usdc(p['pool'])} USDC,"
                f" paid {payouts.usdc(p['paid'])}, unallocated {payouts.usdc(p['unallocated'])}"
            )
    print(f"unallocated  {payouts.usdc(outcome.result['unallocated'])} USDC")
    print(f"digest       {c.digest}")
    print(f"result       sha256 {c.result_sha256}")
    print(f"params_hash  {c.params_hash}")
    print(f"seed         {c.seed or '(none)'}")
    print(f"books_root   {c.books_root} ({c.books} books)")
    print(f"fills_digest {c.fills_digest} ({c.fills} fills)")


def verify_week(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap verify-week``: 0 if every digest matches, 1 with the first difference."""
    if (ns.week is None) == (ns.from_file is None):
        raise InputError("verify-week needs exactly one of --week W and --from FILE")
    if ns.jobs is not None and ns.from_file is None:
        raise InputError("verify-week: --jobs N is for --from FILE (an archive)")
    if ns.from_file is not None:
        from driftsnap.flows import export  # noqa: PLC0415  (pyarrow: only for archives)

        result = export.verify_archive(ns.from_file, jobs=ns.jobs)
        w = result.week
    else:
        w = calendar.Week.parse(ns.week)
        with parts.open_store(settings) as db:
            result = close.verify_week(db.engine, w)
    if ns.format == "json":
        output.print_json(
            output.verification_json(
                result, source="database" if ns.from_file is None else "archive"
            )
        )
        return 0 if result.ok else 1
    if result.ok:
        print(
            f"week {w}: ok — {result.books} books and {result.fills} fills recomputed, "
            f"every digest matches ({result.digest})"
        )
        return 0
    print(f"week {w}: MISMATCH — {result.difference}")
    return 1
