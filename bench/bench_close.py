"""Week close speed: close a default-scenario week at 60 s cadence, recompute it, verify it.

    .venv/bin/python bench/bench_close.py [--url postgresql://...] [--ticks 10080] [--distinct 60]

Writes ``--ticks`` ticks of the simulator's default scenario (3 markets, ~260 orders, all three
methods) at the seed-drawn instants of 2026-W47 at 60 s cadence, cycling ``--distinct``
simulated books (simulating 10,080 distinct ticks would take longer than everything measured),
then times: ``close-week`` from the stored accumulators (target < 5 s), a ``--dry-run
--method drift-mm-scoring`` recomputation from the order-level books (target < 60 s) and
``verify-week``. With fewer ticks than the week's 10,080 the close is forced (coverage).
Without ``--url`` an embedded PostgreSQL runs in a temporary directory (deleted afterwards).
A benchmark, not a test: figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from driftsnap import closing, config, daemon, logs, sampling
from driftsnap.chain import accounts
from driftsnap.scoring import bookfile, methods, scorer
from driftsnap.scoring import week as week_mod
from driftsnap.simnet import model, scenarios, truth
from driftsnap.store import database, migrations, snapshots, weeks
from driftsnap.store import fills as store_fills

WEEK = week_mod.Week(2026, 47)
CADENCE = timedelta(seconds=60)
SEED = bytes(range(32))
METHODS = tuple(methods.PRESETS.values())
CLOSE_TARGET_S = 5.0
RECOMPUTE_TARGET_S = 60.0


def distinct_ticks(n: int) -> list[list[snapshots.MarketSnapshot]]:
    sim = model.Simulator(scenarios.DEFAULT, seed=1)
    out = []
    for _ in range(n):
        for _ in range(5):
            sim.step()
        books = [bookfile.from_dict(b) for b in truth.books(sim, sim.slot)]
        out.append(
            [snapshots.MarketSnapshot(b, tuple(scorer.score(b, m) for m in METHODS)) for b in books]
        )
    return out


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


def write_week(engine: sa.Engine, seeds: Path, ticks: int, distinct: int) -> None:
    commitment = sampling.commitment(SEED)
    seeds.mkdir(parents=True, exist_ok=True)
    daemon.seed_path(seeds, WEEK, commitment).write_text(SEED.hex() + "\n")
    schedule = sampling.Schedule(WEEK, CADENCE, SEED)
    books = distinct_ticks(distinct)
    started = time.perf_counter()
    with engine.begin() as conn:
        weeks.commit_seed(conn, WEEK, cadence=CADENCE, seed_sha256=commitment)
    for i in range(ticks):
        at = schedule.sample_at(i)
        tick = snapshots.Tick(at=at, interval=i, status="ok", taken_at=at, duration_ms=0)
        with engine.begin() as conn:
            snapshots.write_tick(conn, tick, books[i % distinct], methods=METHODS)
    with engine.begin() as conn:
        # No fills in this bench: the week's (empty) fills are final once the pass is past it.
        mark = store_fills.Watermark(accounts.DRIFT_PROGRAM_ID, "finalized", "-", 0, 0, WEEK.end)
        store_fills.record_finality(conn, WEEK, finalized_through=mark)
    print(f"wrote {ticks:,} ticks in {time.perf_counter() - started:.1f} s")


def bench(admin: sa.URL, tmp: Path, ticks: int, distinct: int) -> None:
    engine = fresh_database(admin, "driftsnap_bench_close")
    seeds = tmp / "seeds"
    write_week(engine, seeds, ticks, distinct)
    program = config.load_program()
    now = WEEK.end + timedelta(minutes=30)
    forced = ticks < timedelta(days=7) // CADENCE
    common = {"now": now, "seeds_dir": seeds, "week": WEEK}
    reason = "benchmark: a partial week" if forced else ""
    t0 = time.perf_counter()
    recomputed = closing.close_week(
        engine, program, dry_run=True, method="drift-mm-scoring", force=forced, reason=reason,
        **common,  # type: ignore[arg-type]
    )  # fmt: skip
    t1 = time.perf_counter()
    closed = closing.close_week(engine, program, force=forced, reason=reason, **common)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    report = closing.verify_week(engine, WEEK)
    t3 = time.perf_counter()
    books = closed.close.books
    print(
        f"close-week ({closed.source}, {books:,} books): {t2 - t1:.2f} s"
        f" (target < {CLOSE_TARGET_S:.0f} s) digest {closed.close.digest[:16]}"
    )
    print(
        f"recompute under {recomputed.close.method} ({recomputed.source}): {t1 - t0:.2f} s"
        f" (target < {RECOMPUTE_TARGET_S:.0f} s)"
    )
    print(f"verify-week: {t3 - t2:.2f} s, {'ok' if report.ok else report.difference}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a superuser URL; default: a temporary embedded server")
    parser.add_argument("--ticks", type=int, default=10_080, help="ticks to write (<= 10080)")
    parser.add_argument("--distinct", type=int, default=60, help="distinct simulated ticks")
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp:
        server = None
        if args.url:
            admin = database.parse(args.url)
        else:
            server = database.start_embedded(Path(tmp) / "pg")
            admin = server.url.set(database="postgres")
        try:
            bench(admin, Path(tmp), min(args.ticks, 10_080), args.distinct)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
