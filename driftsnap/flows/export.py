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

import concurrent.futures
import dataclasses
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import re
import zipfile
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects.postgresql import insert as pg_insert

from driftsnap import calendar
from driftsnap.errors import InputError
from driftsnap.flows import close as close_flow
from driftsnap.flows.errors import NotClosedError
from driftsnap.scoring import digest, methods, settlement
from driftsnap.store import books, closes, database, schema, weeks

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    import numpy.typing as npt

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
        chunks: list[books.Columns] = []
        pubkeys: Mapping[int, str] = {}
        for b in closes.week_books(conn, week, done.books_hash):
            snaps["tick_at"].append(b.tick_at)
            for key in ("market_index", "market", "slot", "ts", "oracle_price"):
                snaps[key].append(getattr(b.book, key))
            if b.columns is None or b.pubkeys is None:
                raise TypeError("week_books read a book without its columns")
            chunks.append(b.columns)
            pubkeys = b.pubkeys  # one mapping, growing as books are read: names every id
        parts["snapshots.parquet"] = _parquet(pa.table(snaps))
        parts["orders.parquet"] = _parquet(_orders_table(chunks, pubkeys))
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


def _orders_table(chunks: list[books.Columns], pubkeys: Mapping[int, str]) -> pa.Table:
    """Every order of the week's books (``chunks``: their stored columns, in order), with its
    snapshot's row number; accounts as public keys, dictionary-encoded in order of first
    appearance (as ``dictionary_encode`` of the keys would give them)."""
    snapshot = np.repeat(np.arange(len(chunks), dtype=np.int32), [len(c[0]) for c in chunks])
    joined = [
        np.concatenate([c[k] for c in chunks]) if chunks else np.empty(0, dtype=np.int64)
        for k in range(6)
    ]

    def keys(ids: npt.NDArray[Any]) -> pa.DictionaryArray:
        unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        by_first = np.argsort(first, kind="stable")
        rank = np.empty(len(unique), dtype=np.int32)
        rank[by_first] = np.arange(len(unique), dtype=np.int32)
        names = pa.array([pubkeys[int(i)] for i in unique[by_first].tolist()], pa.string())
        return pa.DictionaryArray.from_arrays(pa.array(rank[inverse.reshape(-1)]), names)

    return pa.table(
        {
            "snapshot": pa.array(snapshot, pa.int32()),
            "user": keys(joined[0]),
            "authority": keys(joined[1]),
            "flags": pa.array(joined[2].astype(np.uint8), pa.uint8()),
            "price": pa.array(joined[3].astype(np.int64), pa.int64()),
            "size": pa.array(joined[4].astype(np.int64), pa.int64()),
            "order_id": pa.array(joined[5].astype(np.int64), pa.int64()),
        }
    )


def _dictionary(orders: pa.Table, name: str) -> tuple[npt.NDArray[np.int32], dict[int, str]]:
    """A key column of orders.parquet as codes and the keys they stand for."""
    column = orders.column(name).combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    if column.null_count:
        raise _Differs(f"orders.parquet: a {name} is missing")
    codes = column.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, dict(enumerate(column.dictionary.to_pylist()))


def _order_bounds(parts: dict[str, bytes]) -> npt.NDArray[np.int64]:
    """Where each snapshot's orders start in orders.parquet (and, last, where they end); read
    from the snapshot column alone, which must be in order and name only stored snapshots."""
    snapshots = pq.read_metadata(io.BytesIO(parts["snapshots.parquet"])).num_rows
    column = pq.read_table(io.BytesIO(parts["orders.parquet"]), columns=["snapshot"]).column(0)
    if column.null_count:
        raise _Differs("orders.parquet: a snapshot is missing")
    snapshot = column.to_numpy().astype(np.int64)
    n = len(snapshot)
    if n and (np.any(np.diff(snapshot) < 0) or snapshot[0] < 0):
        raise _Differs("orders.parquet: orders out of snapshot order")
    bounds = np.searchsorted(snapshot, np.arange(snapshots + 1), side="left")
    if int(bounds[-1]) != n:
        raise _Differs(f"orders.parquet: {n - int(bounds[-1])} orders of no snapshot")
    return bounds.astype(np.int64)


def _books(
    parts: dict[str, bytes], start: int = 0, stop: int | None = None
) -> Iterator[closes.StoredBook]:
    """The stored books of snapshots ``start`` to ``stop`` (default: the last), in order; the
    orders of a range are read alone (Parquet row groups skipped on their statistics). The
    whole file's snapshot order is :func:`_order_bounds`'s to check: a range is read by value."""
    snaps = pq.read_table(io.BytesIO(parts["snapshots.parquet"])).to_pydict()
    stop = len(snaps["tick_at"]) if stop is None else stop
    orders = pq.read_table(
        io.BytesIO(parts["orders.parquet"]),
        read_dictionary=["user", "authority"],
        filters=[("snapshot", ">=", start), ("snapshot", "<", stop)]
        if (start, stop) != (0, len(snaps["tick_at"]))
        else None,
    )
    # Users and authorities as codes into one table of keys, one code per key (the canonical
    # hash, like the database's account ids, needs one id per public key), numbered in the
    # keys' order, so a book's accounts are in name order by id (books.book_of sorts nothing).
    columns_keys = [_dictionary(orders, name) for name in ("user", "authority")]
    ordered = sorted({k for _, keys in columns_keys for k in keys.values()})
    names = {k: i for i, k in enumerate(ordered)}
    codes = []
    for column, keys in columns_keys:
        to_id = np.array([names[k] for k in keys.values()], dtype=np.int32)
        codes.append(to_id[column] if len(column) else column)
    user, authority = codes
    pubkeys = dict(enumerate(ordered))
    numeric = {}
    for name, dtype in (("snapshot", np.int64), ("flags", np.uint8), ("price", np.int64),
                        ("size", np.int64), ("order_id", np.int64)):  # fmt: skip
        column = orders.column(name)
        if column.null_count:
            raise _Differs(f"orders.parquet: a {name} is missing")
        numeric[name] = column.to_numpy().astype(dtype)
    snapshot = numeric["snapshot"]
    n = len(snapshot)
    if n and (np.any(np.diff(snapshot) < 0) or snapshot[0] < start):
        raise _Differs("orders.parquet: orders out of snapshot order")
    bounds = np.searchsorted(snapshot, np.arange(start, stop + 1), side="left")
    for i in range(start, stop):
        at = snaps["tick_at"][i]
        rows = slice(int(bounds[i - start]), int(bounds[i - start + 1]))
        columns: books.Columns = (
            user[rows], authority[rows], numeric["flags"][rows], numeric["price"][rows],
            numeric["size"][rows], numeric["order_id"][rows],
        )  # fmt: skip
        book = books.book_of(
            columns,
            pubkeys,
            market=snaps["market"][i],
            market_index=snaps["market_index"][i],
            slot=snaps["slot"][i],
            ts=snaps["ts"][i],
            oracle_price=snaps["oracle_price"][i],
        )
        leaf = digest.BookLeaf(
            at.astimezone(UTC).isoformat(),
            book.market_index,
            book.slot,
            book.ts,
            book.oracle_price,
            rows.stop - rows.start,
            books.canonical_sha256_of(columns, pubkeys),
        )
        yield closes.StoredBook(at, book, leaf)
    if int(bounds[-1]) != n:
        raise _Differs(f"orders.parquet: {n - int(bounds[-1])} orders of no snapshot")


_ARCHIVE: dict[str, bytes] = {}  # a worker process's copy of the archive's checked parts


def _load(path: Path) -> None:
    """A worker's start: read the archive once (and check it against its manifest again)."""
    _ARCHIVE.update(_read(path))


def _scored_run(method: str, start: int, stop: int) -> _Run:
    """Snapshots ``start`` to ``stop`` of the worker's archive scored under ``method``."""
    return _score_run(_ARCHIVE, methods.get(method), start, stop)


_Run = tuple[settlement.WeekAccumulator, list[digest.BookLeaf]]


def _score_run(parts: dict[str, bytes], method: methods.Method, start: int, stop: int) -> _Run:
    inputs = close_flow.scored_inputs(_books(parts, start, stop), [], method, "archive")
    return inputs.scores, inputs.leaves


def _scored(
    path: Path,
    parts: dict[str, bytes],
    fills: list[digest.FillFact],
    method: methods.Method,
    jobs: int,
) -> close_flow.Inputs:
    """The archive's books scored under ``method`` in runs of :data:`_RUN` snapshots (a run's
    orders are read alone: a mainnet-scale week's 68 million never are at once), by ``jobs``
    processes; the runs' week totals are exact sums, so merged they are the totals one pass
    over every book gives, bit for bit."""
    bounds = _order_bounds(parts)
    snapshots = len(bounds) - 1
    edges = [*range(0, snapshots, _RUN), snapshots] if snapshots else [0, 0]
    runs = list(itertools.pairwise(edges))
    if jobs > 1 and len(runs) < jobs:  # asked for more processes than runs: shorter runs
        step = -(-snapshots // jobs)
        runs = list(itertools.pairwise([*range(0, snapshots, step), snapshots]))
    jobs = max(1, min(jobs, len(runs)))
    if jobs == 1:
        scored = (_score_run(parts, method, a, b) for a, b in runs)
        return close_flow.merged_inputs(scored, fills, "archive")
    spawn = multiprocessing.get_context("spawn")  # not fork: pyarrow holds threads
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=spawn, initializer=_load, initargs=(path,)
    ) as pool:
        results = pool.map(_scored_run, [method.name] * len(runs), *zip(*runs, strict=True))
        return close_flow.merged_inputs(results, fills, "archive")


# Snapshots scored at a time: ~2 million orders at mainnet scale (a third of a day).
_RUN = 1_000


# By default, fewer snapshots than this a process are scored in this one (starting a process
# and reading the archive again costs about a second; a mainnet-scale week has 30,240).
_MIN_SNAPSHOTS_A_JOB = 1_000


def default_jobs(path: Path) -> int:
    """The processes ``verify-week --from`` uses by default for the archive at ``path``: one
    per core it may run on, and one only for a small week."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with zipfile.ZipFile(path) as z, z.open("snapshots.parquet") as f:
        snapshots = int(pq.read_metadata(f).num_rows)
    return max(1, min(cores or 1, snapshots // _MIN_SNAPSHOTS_A_JOB))


def verify_archive(path: Path, *, jobs: int | None = None) -> close_flow.Verification:
    """Recompute the closed week archived in ``path`` and compare every digest (no database);
    the books are scored by ``jobs`` processes (default :func:`default_jobs`; at most one a
    snapshot)."""
    try:
        with zipfile.ZipFile(path) as z:
            week = calendar.Week.parse(json.loads(z.read("manifest.json"))["week"])
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a driftsnap week archive ({exc})") from None
    try:
        return _verify(path, week, jobs)
    except _Differs as exc:
        return close_flow.Verification(week, "", str(exc), 0, 0)


def _verify(path: Path, week: calendar.Week, jobs: int | None) -> close_flow.Verification:
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
    inputs = _scored(path, parts, fills, method, default_jobs(path) if jobs is None else jobs)
    return close_flow.compare(week, done, inputs, rows, committed=doc["seed_sha256"])
