"""Issue 16, piece 3: a closed week's archive verifies with no database; a tampered one fails."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftsnap import calendar
from driftsnap.errors import InputError
from driftsnap.flows import export
from driftsnap.flows.errors import NotClosedError
from driftsnap.store import books as store_books
from driftsnap.store import closes, weeks
from tests import books
from tests.test_cli_store import run
from tests.test_close import WEEK, build_week, close
from tests.test_close_cli import PAST, _env

if TYPE_CHECKING:
    from pathlib import Path

    import sqlalchemy as sa


def _rewrite(src: Path, dst: Path, name: str, table: pa.Table, *, manifest: bool) -> None:
    """Copy archive ``src`` to ``dst`` with part ``name`` replaced (and the manifest updated)."""
    out = io.BytesIO()
    pq.write_table(table, out)
    data = out.getvalue()
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts[name] = data
    if manifest:
        doc = json.loads(parts["manifest.json"])
        doc["parts"][name] = hashlib.sha256(data).hexdigest()
        parts["manifest.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in parts.items():
            z.writestr(n, d)


def test_an_export_verifies_without_the_database_and_tampering_is_named(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    built = build_week(pg_engine, tmp_path)
    with pytest.raises(NotClosedError):
        export.export_week(pg_engine, WEEK, tmp_path / "early.zip")
    done = close(pg_engine, built)
    archive = tmp_path / "w47.zip"
    export.export_week(pg_engine, WEEK, archive)
    pg_engine.dispose()

    with zipfile.ZipFile(archive) as z:
        orders = pq.read_table(io.BytesIO(z.read("orders.parquet")))
        fills = pq.read_table(io.BytesIO(z.read("fills.parquet")))
    sizes = orders.column("size").to_pylist()
    sizes[5] += 1
    resized = orders.set_column(orders.column_names.index("size"), "size", pa.array(sizes))
    # The last order moved to the front: each snapshot's orders read alone would look fine.
    moved = pa.concat_tables([orders.slice(len(orders) - 1), orders.slice(0, len(orders) - 1)])
    bad = tmp_path / "bad.zip"

    # One process, or the books split into runs scored by three (spawned) processes.
    for jobs in (1, 3):
        ok = export.verify_archive(archive, jobs=jobs)
        assert ok.ok, ok.difference
        assert ok.digest == done.close.digest
        assert ok.books == done.close.books

        _rewrite(archive, bad, "orders.parquet", resized, manifest=False)
        found = export.verify_archive(bad, jobs=jobs)
        assert not found.ok
        assert found.difference is not None
        assert found.difference.startswith("orders.parquet: sha256")

        _rewrite(archive, bad, "orders.parquet", resized, manifest=True)
        found = export.verify_archive(bad, jobs=jobs)
        assert found.difference is not None
        assert found.difference.startswith("books_root: stored"), found.difference

        _rewrite(archive, bad, "orders.parquet", moved, manifest=True)
        found = export.verify_archive(bad, jobs=jobs)
        assert found.difference == "orders.parquet: orders out of snapshot order"

        _rewrite(archive, bad, "fills.parquet", fills.slice(1), manifest=True)
        found = export.verify_archive(bad, jobs=jobs)
        assert found.difference is not None
        assert found.difference.startswith("fills: stored 12 != recomputed 11"), found.difference


def test_export_week_and_verify_week_from_on_the_command_line(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """export-week writes the archive; verify-week --from checks it with no database URL
    (exit 0, the stored digest), exits 1 on a tampered one and 2 on bad input."""
    build_week(pg_engine, tmp_path, week=PAST)
    env = _env(pg_url, tmp_path)
    assert run("close-week", "--week", str(PAST), env=env).returncode == 0
    archive = tmp_path / "past.zip"
    after = calendar.Week(PAST.year, PAST.number + 1)
    refused = run("prune", "--before", str(after), env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert "never exported" in refused.stderr
    made = run("export-week", "--week", str(PAST), "--out", str(archive), env=env)
    assert made.returncode == 0, made.stderr
    pruned = run("prune", "--before", str(after), env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert f"1 weeks before {after}: {PAST}" in pruned.stdout
    # No database at all: an unreachable URL and an empty data directory.
    nowhere = {"DRIFTSNAP_DATABASE_URL": "postgresql://x@127.0.0.1:1/none"}
    verified = run("verify-week", "--from", str(archive), "--jobs", "2", env=nowhere)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"week {PAST}: ok")
    with zipfile.ZipFile(archive) as z:
        fills = pq.read_table(io.BytesIO(z.read("fills.parquet")))
    bad = tmp_path / "bad.zip"
    _rewrite(archive, bad, "fills.parquet", fills.slice(1), manifest=False)
    tampered = run("verify-week", "--from", str(bad), env=nowhere)
    assert tampered.returncode == 1
    assert tampered.stdout.startswith(f"week {PAST}: MISMATCH — fills.parquet: sha256 ")
    both = run("verify-week", "--from", str(bad), "--week", str(PAST), env=nowhere)
    assert both.returncode == 2
    assert len(both.stderr.strip().splitlines()) == 1
    jobs = run("verify-week", "--week", str(PAST), "--jobs", "2", env=nowhere)
    assert jobs.returncode == 2
    assert "--jobs N is for --from FILE" in jobs.stderr


def test_prune_drops_only_closed_exported_weeks_and_the_archive_still_verifies(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """prune refuses a week not closed, then one not exported (dropping nothing); after the
    export it drops the week's per-tick partitions, keeps the close, and the archive verifies."""
    built = build_week(pg_engine, tmp_path)
    later = calendar.Week(WEEK.year, WEEK.number + 1)
    with pytest.raises(InputError, match="not closed"):
        export.prune(pg_engine, later)
    done = close(pg_engine, built)
    with pytest.raises(InputError, match="never exported"):
        export.prune(pg_engine, later)
    with pg_engine.connect() as conn:
        assert weeks.partitions(conn, "snapshots") == ["snapshots_2026w47"]
    archive = tmp_path / "w47.zip"
    export.export_week(pg_engine, WEEK, archive)
    assert export.prune(pg_engine, WEEK) == []  # nothing before the week itself
    assert export.prune(pg_engine, later) == [WEEK]
    with pg_engine.connect() as conn:
        for table in ("snapshots", "snapshot_methods", "brackets", "bracket_cells"):
            assert weeks.partitions(conn, table) == []
        assert weeks.partitions(conn, "week_makers") == ["week_makers_2026w47"]
        kept = closes.stored(conn, WEEK)
        assert kept is not None
        assert kept.digest == done.close.digest
    assert export.verify_archive(archive).ok
    assert export.prune(pg_engine, later) == []


def test_the_archive_holds_the_stored_orders_and_reads_back_the_same_books(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """orders.parquet, written from the stored columns, holds every order of every stored book
    as the database gives it; read back it gives the same books and leaves, a key that is both
    a user and an authority included."""
    built = build_week(pg_engine, tmp_path)
    close(pg_engine, built)
    archive = tmp_path / "w47.zip"
    export.export_week(pg_engine, WEEK, archive)
    with pg_engine.connect() as conn:
        stored = list(closes.week_books(conn, WEEK))
    with zipfile.ZipFile(archive) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    orders = pq.read_table(io.BytesIO(parts["orders.parquet"])).to_pylist()
    expected = [
        {"snapshot": i, "user": o.user, "authority": o.authority, "flags": int(o.side),
         "price": o.price, "size": o.size, "order_id": o.order_id}
        for i, s in enumerate(stored) for o in s.book.orders
    ]  # fmt: skip
    assert orders == expected
    again = list(export._books(parts))
    assert [(b.book, b.leaf) for b in again] == [(s.book, s.leaf) for s in stored]

    one = books.make([books.order("m", "bid", 99 * books.PRICE, books.BASE, user="m")])
    assert one.orders[0].user == one.orders[0].authority
    columns = store_books.columns_of(one, {one.orders[0].user: 7})
    table = export._orders_table([columns], {7: one.orders[0].user})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    snaps = pa.table(
        {"tick_at": [stored[0].tick_at], "market_index": [0], "market": ["SOL-PERP"],
         "slot": [one.slot], "ts": [one.ts], "oracle_price": [one.oracle_price]}
    )  # fmt: skip
    snap_buffer = io.BytesIO()
    pq.write_table(snaps, snap_buffer)
    (read,) = export._books(
        {"orders.parquet": buffer.getvalue(), "snapshots.parquet": snap_buffer.getvalue()}
    )
    assert read.book == one
    assert read.leaf.book_sha256 == store_books.canonical_sha256(one)
