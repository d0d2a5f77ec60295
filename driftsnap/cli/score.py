"""``score-book``, ``methods`` and ``program``: scoring without a chain or a database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, config
from driftsnap.cli import args, output
from driftsnap.errors import InputError
from driftsnap.scoring import bookfile, methods, payouts, scorer

if TYPE_CHECKING:
    import argparse


def add(sub: Any) -> None:
    """Declare ``score-book``, ``methods`` and ``program``."""
    p = args.command(
        sub,
        "score-book",
        summary="score one book file and print each maker's score and bracketed liquidity",
        description=(
            "Score one book (JSON) under a scoring method and print each maker's score, its\n"
            "per-bracket liquidity (l, L, Q, V per bracket and side) and the params_hash.\n\n"
            "Book format (prices in 1e6, sizes in 1e9, all integers; at most 64 MiB):\n"
            '  {"market": "SOL-PERP", "market_index": 0, "slot": 123, "ts": 1700000000,\n'
            '   "oracle_price": 100000000,\n'
            '   "orders": [{"user": "<base58>", "authority": "<base58>", "side": "bid",\n'
            '               "price": 99990000, "size": 50000000000, "order_id": 7}]}'
        ),
        epilog=(
            "examples:\n"
            "  driftsnap score-book examples/sol-perp-worked-example.json\n"
            "  driftsnap score-book book.json --method drift-mm-scoring --format json\n"
            "  cat book.json | driftsnap score-book -"
        ),
    )
    p.add_argument("book", type=Path, metavar="BOOK.json", help="book file, or - for stdin")
    args.from_setting(
        p.add_argument("--method", choices=sorted(methods.PRESETS), help="scoring method"),
        "method",
        unset="the program's, drift-2023-08 in the shipped file",
    )
    args.add_format(p)
    p.set_defaults(handler=score_book)

    p = args.command(
        sub,
        "methods",
        summary="list the scoring methods and their params_hash, or print one's canonical JSON",
        description=(
            "Without NAME: every preset with its params_hash. With NAME: the preset's canonical\n"
            "JSON, whose sha256 is the params_hash stored with every score it produces."
        ),
    )
    p.add_argument("name", nargs="?", choices=sorted(methods.PRESETS), metavar="NAME")
    args.add_format(p)
    p.set_defaults(handler=list_methods)

    p = args.command(
        sub,
        "program",
        summary="validate the program parameters and show what is in force for a week",
        description=(
            "Load the shipped program file (and the --program override), validate it, and print\n"
            "the pools, pause and participants in force for a week (default: the current one)."
        ),
        epilog=(
            "examples:\n  driftsnap program --week 2023-W33\n  driftsnap --program my.toml program"
        ),
    )
    p.add_argument(
        "--week", metavar=args.WEEK, help="ISO week, e.g. 2026-W47 (default: the current one)"
    )
    args.add_format(p)
    p.set_defaults(handler=show_program)


def score_book(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap score-book``."""
    path: Path = ns.book
    cap = bookfile.MAX_BOOK_BYTES
    try:
        if str(path) == "-":
            raw = sys.stdin.buffer.read(cap + 1)
        else:
            with path.open("rb") as fh:
                raw = fh.read(cap + 1)  # never more than the cap, even of /dev/zero
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > cap:
        raise InputError(f"{path}: larger than {cap >> 20} MiB; not a book")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected a JSON book") from None
    book = bookfile.parse(text, source=str(path))
    method = methods.get(_method_name(ns, settings))
    result = scorer.score(book, method)
    if ns.format == "json":
        output.print_json(output.snapshot_json(result))
    else:
        output.print_snapshot(result)
    return 0


def _method_name(ns: argparse.Namespace, settings: config.Settings) -> str:
    if ns.method:
        return str(ns.method)
    if settings.method:
        return settings.method
    return config.load_program(settings.program_file).method


def list_methods(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap methods [NAME]``."""
    if ns.name:
        print(methods.get(ns.name).canonical_json())
        return 0
    rows = [
        {"name": m.name, "kind": m.kind, "maker_key": m.maker_key, "params_hash": m.params_hash}
        for m in methods.PRESETS.values()
    ]
    if ns.format == "json":
        output.print_json(rows)
    else:
        output.print_rows("Scoring methods", rows)
    return 0


def show_program(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap program [--week W]``."""
    program = config.load_program(settings.program_file)
    w = args.week(ns.week) or calendar.Week.containing(args.utcnow())
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
    if ns.format == "json":
        output.print_json(doc)
    else:
        output.print_mapping(f"Program {program.name} — week {w}", doc)
    return 0
