"""``books``: one snapshot from an RPC node, each market's book on disk (score-book format)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftsnap import config, parts
from driftsnap.chain import snapshot
from driftsnap.cli import args, output
from driftsnap.errors import InputError

if TYPE_CHECKING:
    import argparse


def add(sub: Any) -> None:
    """Declare ``books``."""
    p = args.command(
        sub,
        "books",
        summary=(
            "take one snapshot from an RPC node and write each market's book (score-book format)"
        ),
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
    )
    args.add_reader(p)
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write DIR/<market>.json (default: stdout)"
    )
    p.set_defaults(handler=books)


def books(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap books``."""
    program = config.load_program(settings.program_file)
    wanted = parts.markets_at(settings, program, args.utcnow())
    snap = asyncio.run(_take(settings, wanted))
    documents = snapshot.book_documents(snap)  # raises SnapshotRejectedError with the reason
    if ns.out is None:
        output.print_json(documents)
    else:
        out: Path = ns.out
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, doc in documents.items():
                (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise InputError(f"{out}: cannot write books ({exc.strerror})") from None
    orders = sum(len(b.orders) for b in snap.books.values())
    print(
        f"slot {snap.slot}: {len(documents)} book(s), {orders} eligible orders"
        + (f", written to {ns.out}" if ns.out is not None else ""),
        file=sys.stderr,
    )
    return 0


async def _take(settings: config.Settings, wanted: list[str | int]) -> snapshot.Snapshot:
    async with parts.rpc_client(settings) as client:
        return await snapshot.take(client, parts.snapshot_settings(settings), wanted)
