"""A closed week as a self-contained archive, and its verification with no database at all.

:func:`export_week` writes one zip file (parts stored uncompressed: Parquet compresses itself):

``manifest.json``   format, week, and the sha256 of every other part
``close.json``      the ``week_closes`` row, its payout rows and the week's seed commitment
``snapshots.parquet``  one row per ok snapshot: tick, market, slot, ts, oracle price, orders
``orders.parquet``  every order of those books, in book order: its snapshot's row number, user
                    and authority public keys, flags (bit 0 ask, bit 1 vAMM), price, size, id
``fills.parquet``   the week's fills, the fields its volume and fills digest depend on
``ticks.parquet``   the week's tick headers (coverage), for the record

:func:`verify_archive` checks the manifest, rebuilds the books, re-scores them under the close's
method, recomputes the Merkle root (pubkey-keyed leaves), the fills digest, the result and the
close digest, and returns the first difference (the same checks as ``verify-week``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import zipfile
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects.postgresql import insert as pg_insert

from driftsnap import calendar
from driftsnap.errors import InputError
from driftsnap.flows import close as close_flow
from driftsnap.flows.errors import NotClosedError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import digest, methods
from driftsnap.store import books, closes, database, schema, weeks

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FORMAT = 1
_PARTS = ("close.json", "snapshots.parquet", "orders.parquet", "fills.parquet", "ticks.parquet")


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _close_doc(done: closes.Close, rows: list[closes.PayoutRow], committed: str | None) -> bytes:
    head = {k: v for k, v in dataclasses.asdict(done).items() if k != "closed_at"}
    head["week_start"] = done.week_start.isoformat()
    head["overridden"] = list(done.overridden)
    payouts = [{**dataclasses.asdict(r), "weight": str(r.weight)} for r in rows]
    doc = {"close": head, "payouts": payouts, "seed_sha256": committed}
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def export_week(engine: sa.Engine, week: calendar.Week, out: Path) -> dict[str, str]:
    """Write ``week``'s archive to ``out``; returns the manifest's part hashes."""
    with database.connect(engine) as conn:
        done = closes.stored(conn, week)
        if done is None:
            raise NotClosedError(f"week {week} is not closed: only a closed week is exported")
        record = weeks.record(conn, week)
        parts = {
            "close.json": _close_doc(
                done,
                closes.payout_rows(conn, week),
                None if record is None else record.seed_sha256,
            )
        }
        snaps: dict[str, list[Any]] = {
            k: [] for k in ("tick_at", "market_index", "market", "slot", "ts", "oracle_price")
        }
        orders: dict[str, list[Any]] = {
            k: [] for k in ("snapshot", "user", "authority", "flags", "price", "size", "order_id")
        }
        for i, b in enumerate(closes.week_books(conn, week, done.books_hash)):
            snaps["tick_at"].append(b.tick_at)
            for key in ("market_index", "market", "slot", "ts", "oracle_price"):
                snaps[key].append(getattr(b.book, key))
            for o in b.book.orders:
                orders["snapshot"].append(i)
                orders["user"].append(o.user)
                orders["authority"].append(o.authority)
                orders["flags"].append(
                    (books.ASK if o.side is book_mod.Side.ASK else 0)
                    | (books.VAMM if o.is_vamm else 0)
                )
                orders["price"].append(o.price)
                orders["size"].append(o.size)
                orders["order_id"].append(o.order_id)
        parts["snapshots.parquet"] = _parquet(pa.table(snaps))
        parts["orders.parquet"] = _parquet(
            pa.table(
                {
                    "snapshot": pa.array(orders["snapshot"], pa.int32()),
                    "user": pa.array(orders["user"], pa.string()).dictionary_encode(),
                    "authority": pa.array(orders["authority"], pa.string()).dictionary_encode(),
                    "flags": pa.array(orders["flags"], pa.uint8()),
                    "price": pa.array(orders["price"], pa.int64()),
                    "size": pa.array(orders["size"], pa.int64()),
                    "order_id": pa.array(orders["order_id"], pa.int64()),
                }
            )
        )
        fills = closes.fill_facts(conn, week)
        parts["fills.parquet"] = _parquet(
            pa.Table.from_pylist(
                [dataclasses.asdict(f) for f in fills],
                schema=pa.schema(
                    [(f.name, _FILL_TYPES[f.name]) for f in dataclasses.fields(digest.FillFact)]
                ),
            )
        )
        t = schema.ticks
        ticks = conn.execute(
            sa.select(t.c.tick_at, t.c.interval_index, t.c.status, t.c.reason)
            .where(t.c.tick_at >= week.start, t.c.tick_at < week.end)
            .order_by(t.c.tick_at)
        ).all()
        parts["ticks.parquet"] = _parquet(
            pa.table({k: [getattr(r, k) for r in ticks] for k in _TICK_KEYS})
        )
    hashes = {n: hashlib.sha256(parts[n]).hexdigest() for n in _PARTS}
    manifest = {"format": FORMAT, "week": str(week), "parts": hashes}
    text = json.dumps(manifest, sort_keys=True, indent=1)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("manifest.json", text)
        for name in _PARTS:
            z.writestr(name, parts[name])
    with database.begin(engine) as conn:
        e = schema.week_exports
        conn.execute(
            pg_insert(e)
            .values(
                week_start=week.monday,
                manifest_sha256=hashlib.sha256(text.encode()).hexdigest(),
                path=str(out),
            )
            .on_conflict_do_nothing()
        )
    return hashes


# ---------------------------------------------------------------------------- pruning

_WEEK_SUFFIX = re.compile(r"_(\d{4})w(\d{2})$")


def prune(engine: sa.Engine, before: calendar.Week) -> list[calendar.Week]:
    """Drop the per-tick partitions (books, per-method facts, brackets, the old per-maker rows)
    of every week before ``before``; the tick headers, accumulators, results, digests and
    payouts stay. All or nothing: refused if any of those weeks is not closed and exported.
    Returns the weeks pruned. Needs the schema's owner (only it can drop a partition)."""
    per_tick = sorted(t for t, column in schema.PARTITIONED.items() if column == "tick_at")
    with database.begin(engine) as conn:
        found: dict[calendar.Week, list[str]] = {}
        for table in per_tick:
            for name in weeks.partitions(conn, table):
                m = _WEEK_SUFFIX.search(name)
                if m is None:
                    continue
                w = calendar.Week(int(m.group(1)), int(m.group(2)))
                if w.monday < before.monday:
                    found.setdefault(w, []).append(name)
        c, e = schema.week_closes, schema.week_exports
        closed = set(conn.execute(sa.select(c.c.week_start)).scalars())
        exported = set(conn.execute(sa.select(e.c.week_start)).scalars())
        for w in sorted(found, key=lambda w: w.monday):
            if w.monday not in closed:
                raise InputError(f"week {w} is not closed: close and export it before pruning")
            if w.monday not in exported:
                raise InputError(
                    f"week {w} was never exported: run `driftsnap export-week --week {w}` first"
                )
        with database.driver(conn).cursor() as cur:
            for w in sorted(found, key=lambda w: w.monday):
                for name in found[w]:
                    target = sql.Identifier(schema.PARTITION_SCHEMA, name)
                    cur.execute(sql.SQL("DROP TABLE {}").format(target))
    return sorted(found, key=lambda w: w.monday)


_TICK_KEYS = ("tick_at", "interval_index", "status", "reason")
_FILL_TYPES = {
    "market_type": pa.string(),
    "market_index": pa.int16(),
    "fill_record_id": pa.int64(),
    "signature": pa.string(),
    "slot": pa.int64(),
    "block_time": pa.int64(),
    "maker": pa.string(),
    "maker_authority": pa.string(),
    "taker": pa.string(),
    "taker_authority": pa.string(),
    "quote_filled": pa.int64(),
}


# ---------------------------------------------------------------------------- verifying


def _read(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            parts = {n: z.read(n) for n in _PARTS}
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"{path}: not a driftsnap week archive ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: archive format {manifest.get('format')!r}, not {FORMAT}")
    for name in _PARTS:
        found, listed = hashlib.sha256(parts[name]).hexdigest(), manifest["parts"].get(name)
        if found != listed:
            raise _Differs(f"{name}: sha256 {found} != manifest {listed}")
    parts["manifest.json"] = json.dumps(manifest).encode()
    return parts


class _Differs(Exception):  # noqa: N818  (not an error: a finding)
    """The archive differs from itself: the first difference, as verify reports it."""


def _books(parts: dict[str, bytes]) -> Iterator[closes.StoredBook]:
    snaps = pq.read_table(io.BytesIO(parts["snapshots.parquet"])).to_pydict()
    orders = pq.read_table(io.BytesIO(parts["orders.parquet"]))
    cols = {n: orders.column(n).to_pylist() for n in orders.column_names}
    start = 0
    n = len(cols["snapshot"])
    for i, at in enumerate(snaps["tick_at"]):
        end = start
        while end < n and cols["snapshot"][end] == i:
            end += 1
        book = book_mod.Book(
            market=snaps["market"][i],
            market_index=snaps["market_index"][i],
            slot=snaps["slot"][i],
            ts=snaps["ts"][i],
            oracle_price=snaps["oracle_price"][i],
            orders=tuple(
                book_mod.Order(
                    user=cols["user"][j],
                    authority=cols["authority"][j],
                    side=book_mod.Side.ASK if cols["flags"][j] & books.ASK else book_mod.Side.BID,
                    price=cols["price"][j],
                    size=cols["size"][j],
                    order_id=cols["order_id"][j],
                    is_vamm=bool(cols["flags"][j] & books.VAMM),
                )
                for j in range(start, end)
            ),
        )
        start = end
        leaf = digest.BookLeaf(
            at.astimezone(UTC).isoformat(),
            book.market_index,
            book.slot,
            book.ts,
            book.oracle_price,
            len(book.orders),
            books.canonical_sha256(book),
        )
        yield closes.StoredBook(at, book, leaf)
    if start != n:
        raise _Differs(f"orders.parquet: {n - start} orders of no snapshot")


def verify_archive(path: Path) -> close_flow.Verification:
    """Recompute the closed week archived in ``path`` and compare every digest (no database)."""
    try:
        with zipfile.ZipFile(path) as z:
            week = calendar.Week.parse(json.loads(z.read("manifest.json"))["week"])
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a driftsnap week archive ({exc})") from None
    try:
        return _verify(path, week)
    except _Differs as exc:
        return close_flow.Verification(week, "", str(exc), 0, 0)


def _verify(path: Path, week: calendar.Week) -> close_flow.Verification:
    parts = _read(path)
    doc = json.loads(parts["close.json"])
    head = doc["close"]
    done = closes.Close(
        **{
            **head,
            "week_start": week.monday,
            "overridden": tuple(head["overridden"]),
        }
    )
    if done.books_hash != books.CANONICAL_HASH:
        raise InputError(f"{path}: a week closed before migration 0007 cannot be verified away")
    rows = [closes.PayoutRow(**{**r, "weight": Decimal(r["weight"])}) for r in doc["payouts"]]
    fills = [
        digest.FillFact(**r) for r in pq.read_table(io.BytesIO(parts["fills.parquet"])).to_pylist()
    ]
    method = methods.get(done.method)
    inputs = close_flow.scored_inputs(_books(parts), fills, method, "archive")
    return close_flow.compare(week, done, inputs, rows, committed=doc["seed_sha256"])
