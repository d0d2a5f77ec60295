"""Disk per ok tick, by table: the default scenario and mainnet scale (the program's markets, all).

    .venv/bin/python bench/bench_storage.py [--url postgresql://...] [--ticks 6]

Writes ``--ticks`` consecutive simulated ticks (after one untimed first tick that creates the
accounts and partitions) with :func:`snapshots.write_tick` into a fresh database per case and
prints the growth of ``pg_total_relation_size`` per table (its partitions, indexes and TOAST
summed), per tick, and the write time. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import bench_store

from driftsnap import calendar, config, logs
from driftsnap.simnet import scenarios
from driftsnap.store import database, snapshots

if TYPE_CHECKING:
    import sqlalchemy as sa

_PARTITION = re.compile(r"_\d{4}w\d{2}$")


def by_table(conn: sa.Connection) -> dict[str, int]:
    """Bytes per table of driftsnap's schemas, a partitioned table's partitions added to it."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname IN ('public', 'driftsnap_partitions') AND c.relkind = 'r'"
    ).all()
    out: dict[str, int] = {}
    for name, size in rows:
        key = _PARTITION.sub("", name)
        out[key] = out.get(key, 0) + int(size)
    return out


def measure(
    admin: sa.URL, name: str, all_ticks: list[list[snapshots.MarketSnapshot]], cadence_s: int
) -> tuple[dict[str, float], float]:
    """Bytes per tick by table, and the median write time per tick (s)."""
    engine = bench_store.fresh_database(admin, name)
    at = bench_store.MONDAY
    with engine.begin() as conn:
        snapshots.write_tick(
            conn, bench_store.tick(at, 0), all_ticks[0], methods=bench_store.METHODS
        )
    with engine.connect() as conn:
        before = by_table(conn)
    times = []
    for i, markets in enumerate(all_ticks[1:], start=1):
        t0 = time.perf_counter()
        with engine.begin() as conn:
            snapshots.write_tick(
                conn,
                bench_store.tick(at + timedelta(seconds=i * cadence_s), i),
                markets,
                methods=bench_store.METHODS,
            )
        times.append(time.perf_counter() - t0)
    with engine.connect() as conn:
        after = by_table(conn)
    engine.dispose()
    bench_store.drop_database(admin, name)
    n = len(all_ticks) - 1
    growth = {t: (after.get(t, 0) - before.get(t, 0)) / n for t in after}
    return growth, statistics.median(times)


def report(label: str, growth: dict[str, float], write_s: float) -> None:
    """Print one case: total and the tables that grew, largest first."""
    total = sum(growth.values())
    print(f"{label}: {total / 2**20:.3f} MiB per ok tick, write median {write_s * 1000:.0f} ms")
    for table, size in sorted(growth.items(), key=lambda kv: -kv[1]):
        if size:
            print(f"    {table:<20} {size / 2**20:8.3f} MiB")


def main() -> None:
    """Run every case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a superuser URL; default: a temporary embedded server")
    parser.add_argument("--ticks", type=int, default=6, help="ticks measured per case")
    args = parser.parse_args()
    logs.configure("warning")
    program = config.load_program()
    pools = {str(m) for m in program.paid_markets(calendar.Week.containing(bench_store.MONDAY))}
    default = bench_store.simulated_ticks(scenarios.DEFAULT, args.ticks + 1)
    mainnet = bench_store.simulated_ticks(scenarios.MAINNET_SCALE, args.ticks + 1, steps=1)
    programs = [[s for s in t if s.book.market in pools] for t in mainnet]
    cases = [
        ("default scenario (3 markets)", default),
        (f"mainnet scale, the program's {len(programs[0])} markets", programs),
        (f"mainnet scale, all {len(mainnet[0])} markets", mainnet),
    ]
    with tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp:
        server = None
        if args.url:
            admin = database.parse(args.url)
        else:
            server = database.start_embedded(Path(tmp))
            admin = server.url.set(database="postgres")
        try:
            for label, ticks in cases:
                growth, write_s = measure(admin, "driftsnap_bench_storage", ticks, 60)
                report(label, growth, write_s)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
