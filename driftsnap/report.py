"""Presenting results: the JSON documents driftsnap prints and their tables for people.

The JSON forms are the interface (stable keys, integers kept exact); the tables are for reading
and may change.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from driftsnap import protocol

if TYPE_CHECKING:
    from driftsnap.scoring import result

# Off a terminal rich would assume 80 columns and cut public keys; tables are wide by nature.
_console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def utcnow() -> datetime:
    return datetime.now(UTC)


def base_units(size: int) -> str:
    return f"{Decimal(size) / protocol.BASE_PRECISION:f}"


def price(value: int | None) -> str:
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
        f"[bold]{s.market}[/] (index {s.market_index})  slot {s.slot}  ts {s.ts}  "
        f"oracle {price(s.oracle_price)}  best bid {price(s.best_bid)}  "
        f"best ask {price(s.best_ask)}"
    )
    _console.print(f"method {s.method}  params_hash {s.params_hash}")

    scores = Table(title="Scores", title_justify="left")
    scores.add_column("maker", no_wrap=True)
    scores.add_column("score", justify="right")
    for maker, value in sorted(s.scores.items(), key=lambda kv: (-kv[1], kv[0])):
        scores.add_row(maker, f"{value:.6f}")
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
                maker,
                b.name,
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
    table = Table(title=title, title_justify="left")
    for key in rows[0] if rows else ():
        table.add_column(key)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    _console.print(table)


def print_mapping(title: str, doc: Mapping[str, Any]) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in doc.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) or "-"
        else:
            text = str(value)
        table.add_row(key, text)
    _console.print(table)
