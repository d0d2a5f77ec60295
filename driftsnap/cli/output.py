"""Presenting results: the JSON documents and CSV driftsnap prints, tables for people, and
the payout files of a close.

The JSON and CSV forms are the interface (stable keys, integers kept exact); the tables are for
reading and may change.

Text that came from outside (a maker's name, a reason, a book's market) never reaches a terminal
raw: every table cell and line printed here goes through :func:`safe`, which shows a control
character (ESC, BEL, CR, a bidi override, ...; :data:`config.CONTROL_CATEGORIES`) as its escape
``\x1b`` instead of sending it, and cells are rich ``Text``, so ``[bold]`` is shown, not parsed.
JSON needs nothing (``json.dumps`` escapes every control character). CSV stays faithful: it is
data for programs, the ``csv`` module quotes what needs quoting, and what the database holds is
already free of control characters (the commands refuse them on the way in).
"""

from __future__ import annotations

import csv
import json
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from driftsnap import config, protocol
from driftsnap.flows import close
from driftsnap.flows.errors import CloseError
from driftsnap.scoring import payouts

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from driftsnap.scoring import result

# Off a terminal rich would assume 80 columns and cut public keys; tables are wide by nature.
_console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def safe(value: object) -> str:
    """``str(value)`` with every control character shown as its escape (``\x1b``, ``\u202e``)."""
    text = str(value)
    if config.control_char(text) is None:
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in config.CONTROL_CATEGORIES
        else c
        for c in text
    )


def cell(value: object) -> Text:
    """A table cell of ``value``: :func:`safe` text, never parsed as rich markup."""
    return Text(safe(value))


def line(text: object = "", *, err: bool = False) -> None:
    """``text`` on stdout (or stderr) as one :func:`safe` line."""
    print(safe(text), file=sys.stderr if err else sys.stdout)


def print_json(doc: object) -> None:
    """``doc`` as indented JSON on stdout."""
    print(json.dumps(doc, indent=2))


def print_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """``rows`` as CSV on stdout, with a header of ``columns``."""
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def base_units(size: int) -> str:
    """A ``BASE_PRECISION`` size as exact decimal text in base units."""
    return f"{Decimal(size) / protocol.BASE_PRECISION:f}"


def price(value: int | None) -> str:
    """A ``PRICE_PRECISION`` price as exact decimal text; ``"-"`` for ``None``."""
    return "-" if value is None else f"{Decimal(value) / protocol.PRICE_PRECISION:f}"


def snapshot_json(s: result.SnapshotScore) -> dict[str, Any]:
    """The ``score-book --format json`` document."""
    doc: dict[str, Any] = {
        "method": s.method,
        "params_hash": s.params_hash,
        "market": s.market,
        "market_index": s.market_index,
        "slot": s.slot,
        "ts": s.ts,
        "oracle_price": s.oracle_price,
        "best_bid": s.best_bid,
        "best_ask": s.best_ask,
        "scores": dict(sorted(s.scores.items(), key=lambda kv: (-kv[1], kv[0]))),
        "brackets": [_bracket_json(b) for b in s.brackets],
    }
    if any(m != a for m, a in s.authority_of.items()):
        doc["authorities"] = dict(sorted(s.authority_of.items()))
    return doc


def _bracket_json(b: result.BracketLiquidity) -> dict[str, Any]:
    makers = sorted(set(b.maker_bid) | set(b.maker_ask))
    doc: dict[str, Any] = {
        "bracket": b.name,
        "weight": b.weight,
        "L": {"bid": b.total_bid, "ask": b.total_ask},
        "Q": b.q,
        "V": b.value,
        "l": {m: {"bid": b.maker_bid.get(m, 0), "ask": b.maker_ask.get(m, 0)} for m in makers},
    }
    if b.bid_price is not None or b.ask_price is not None:
        doc["price"] = {"bid": b.bid_price, "ask": b.ask_price}
    return doc


def print_snapshot(s: result.SnapshotScore) -> None:
    """Tables of ``score-book``: the header facts, scores, then bracketed liquidity."""
    _console.print(
        f"[bold]{escape(safe(s.market))}[/] (index {s.market_index})  slot {s.slot}  ts {s.ts}  "
        f"oracle {price(s.oracle_price)}  best bid {price(s.best_bid)}  "
        f"best ask {price(s.best_ask)}"
    )
    _console.print(f"method {s.method}  params_hash {s.params_hash}")

    scores = Table(title="Scores", title_justify="left")
    scores.add_column("maker", no_wrap=True)
    scores.add_column("score", justify="right")
    for maker, value in sorted(s.scores.items(), key=lambda kv: (-kv[1], kv[0])):
        scores.add_row(cell(maker), f"{value:.6f}")
    _console.print(scores)

    cells = Table(
        title="Bracketed liquidity (sizes in base units; Q in base units)", title_justify="left"
    )
    for name in ("maker", "bracket", "w", "l bid", "L bid", "l ask", "L ask", "Q", "V"):
        cells.add_column(
            name, justify="left" if name in ("maker", "bracket") else "right", no_wrap=True
        )
    for b in s.brackets:
        for maker in sorted(set(b.maker_bid) | set(b.maker_ask)):
            cells.add_row(
                cell(maker),
                cell(b.name),
                f"{b.weight:g}",
                base_units(b.maker_bid.get(maker, 0)),
                base_units(b.total_bid),
                base_units(b.maker_ask.get(maker, 0)),
                base_units(b.total_ask),
                f"{b.q:.6f}",
                f"{b.value:.6f}",
            )
    _console.print(cells)


def print_rows(title: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """A titled table, one row per mapping, the first row's keys as columns."""
    table = Table(title=cell(title), title_justify="left")
    for key in rows[0] if rows else ():
        table.add_column(cell(key))
    for row in rows:
        table.add_row(*(cell(v) for v in row.values()))
    _console.print(table)


def print_mapping(title: str, doc: Mapping[str, Any]) -> None:
    """A titled two-column table of ``doc``'s keys and values."""
    table = Table(title=cell(title), title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in doc.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) or "-"
        else:
            text = str(value)
        table.add_row(cell(key), cell(text))
    _console.print(table)


def verification_json(v: close.Verification, *, source: str) -> dict[str, Any]:
    """The ``verify-week --format json`` document; ``source``: "database" or "archive".
    ``digest`` is the stored one (``None`` when an archive fails before it is read)."""
    return {
        "week": str(v.week),
        "ok": v.ok,
        "digest": v.digest or None,
        "difference": v.difference,
        "books": v.books,
        "fills": v.fills,
        "source": source,
    }


# ---------------------------------------------------------------------------- payout files


def write_payout_files(outcome: close.Outcome, directory: Path) -> list[Path]:
    """``payouts-<week>.csv`` and ``payouts-<week>.json`` in ``directory``; their paths."""
    markets, rows = close.payout_table(outcome.result)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        csv_path = directory / f"payouts-{outcome.week}.csv"
        with csv_path.open("w", newline="") as fh:
            columns = (
                ["authority"]
                + [f"score_{m}_usdc" for m in markets]
                + ["volume_usdc", "total_usdc", "total_micro_usdc"]
            )
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            for r in rows:
                writer.writerow(
                    [
                        r["authority"],
                        *(payouts.usdc(r[m]) for m in markets),
                        payouts.usdc(r["volume"]),
                        payouts.usdc(r["total"]),
                        r["total"],
                    ]
                )
        json_path = directory / f"payouts-{outcome.week}.json"
        json_path.write_text(json.dumps(payout_json(outcome, markets, rows), indent=2) + "\n")
    except OSError as exc:
        raise CloseError(f"{directory}: cannot write the payout files ({exc.strerror})") from None
    return [csv_path, json_path]


def payout_json(
    outcome: close.Outcome, markets: list[str], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``close-week --format json`` document and ``payouts-<week>.json``."""
    c = outcome.close
    return {
        "week": str(outcome.week),
        "method": c.method,
        "params_hash": c.params_hash,
        "paused": outcome.result["paused"],
        "pause_reason": outcome.result["pause_reason"],
        "forced": c.forced,
        "force_reason": c.force_reason,
        "digest": c.digest,
        "result_sha256": c.result_sha256,
        "books_root": c.books_root,
        "books": c.books,
        "fills_digest": c.fills_digest,
        "fills": c.fills,
        "seed": c.seed,
        "seed_sha256": c.seed_sha256,
        "program_digest": c.program_digest,
        "unallocated_micro_usdc": outcome.result["unallocated"],
        "unallocated_usdc": payouts.usdc(outcome.result["unallocated"]),
        "pools": [
            {
                "pool": p["market"],
                "pool_micro_usdc": p["pool"],
                "paid_micro_usdc": p["paid"],
                "unallocated_micro_usdc": p["unallocated"],
                "snapshots": p["snapshots"],
            }
            for p in outcome.result["pools"]
        ],
        "payouts": [
            {
                "authority": r["authority"],
                "score_micro_usdc": {m: r[m] for m in markets},
                "score_usdc": {m: payouts.usdc(r[m]) for m in markets},
                "volume_micro_usdc": r["volume"],
                "volume_usdc": payouts.usdc(r["volume"]),
                "total_micro_usdc": r["total"],
                "total_usdc": payouts.usdc(r["total"]),
            }
            for r in rows
        ],
    }
