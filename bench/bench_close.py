"""Week close speed and size: a synthetic full week, closed, recomputed and verified.

    .venv/bin/python bench/bench_close.py [--url postgresql://...] [--cadence 60] [--ticks N]
                                          [--templates 60] [--no-recompute] [--mainnet]

Stores a week of the simulator's default scenario (3 markets, ~260 orders, all three methods;
``--mainnet``: the mainnet-scale scenario's markets the program pays, 30 slots a tick) at
the seed-drawn instants of 2026-W47 at ``--cadence`` seconds (10,080 ticks at 60 s, 60,480 at
10 s; ``--ticks`` fewer), with :func:`write_week`: ``--templates`` distinct simulated ticks are
written by ``write_tick``, then repeated in SQL for every other tick (simulating and writing
60,480 distinct ticks would take far longer than everything measured). Then times ``close-week``
from the stored accumulators (target < 5 s at 60 s), a ``--dry-run --method drift-mm-scoring``
recomputation from the order-level books (target < 60 s at 60 s), ``verify-week``, the report
(target < 30 s) and one maker's, ``export-week`` and ``verify-week --from`` the archive (target
< 60 s), and prints the week's size on disk. With fewer ticks than the week holds the close is
forced (coverage). Without ``--url`` an embedded PostgreSQL runs in a temporary directory
(deleted afterwards). A benchmark, not a test: figures depend on the machine and on what else
it runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from bench_store import drop_database, fresh_database
from psycopg import sql

from driftsnap import calendar, config, logs, protocol, sampling, weekreport
from driftsnap.flows import close as close_flow
from driftsnap.flows import export
from driftsnap.scoring import bookfile, methods, scorer
from driftsnap.simnet import model, scenarios, truth
from driftsnap.store import database, schema, snapshots, weeks
from driftsnap.store import fills as store_fills
from driftsnap.store.seeds import Seeds

WEEK = calendar.Week(2026, 47)
SEED = bytes(range(32))
METHODS = tuple(methods.PRESETS.values())
CLOSE_TARGET_S = 5.0
RECOMPUTE_TARGET_S = 60.0
REPORT_TARGET_S = 30.0  # issue 16, a mainnet-scale week
VERIFY_FROM_TARGET_S = 60.0  # issue 16, a mainnet-scale week's export
# Rows keyed by the tick's instant, besides the tick header itself.
TICK_TABLES = (
    schema.snapshots,
    schema.snapshot_methods,
    schema.brackets,
    schema.bracket_cells,
    schema.maker_scores,
)
# Each accumulator and the counters that grow by one template's worth per repetition.
ACCUMULATORS = {
    schema.week_ticks: ("ticks", "ok", "missed", "rejected"),
    schema.week_markets: ("ok", "rejected"),
    schema.week_methods: ("snapshots",),
    schema.week_makers: ("snapshots", "score_sum"),
}


def distinct_ticks(
    n: int, scenario: scenarios.Scenario = scenarios.DEFAULT, *, steps: int = 5
) -> list[list[snapshots.MarketSnapshot]]:
    """``n`` ticks of ``scenario`` ``steps`` slots apart, scored under every method; at mainnet
    scale only the markets the program pays in ``WEEK`` (what the daemon samples by default)."""
    sim = model.Simulator(scenario, seed=1)
    paid = {str(m) for m in config.load_program().paid_markets(WEEK)}
    out = []
    for _ in range(n):
        for _ in range(steps):
            sim.step()
        books = [bookfile.from_dict(b) for b in truth.books(sim, sim.slot)]
        if scenario is not scenarios.DEFAULT:
            books = [b for b in books if b.market in paid]
        out.append(
            [snapshots.MarketSnapshot(b, tuple(scorer.score(b, m) for m in METHODS)) for b in books]
        )
    return out


def everyone() -> config.Program:
    """The shipped program with every maker participating: the benchmark's makers are the
    simulator's, none of them registered (the shipped program pays registered makers only)."""
    return config.load_program().model_copy(update={"participants": "all"})


def detail_hashes() -> frozenset[str]:
    """The methods whose per-maker detail the daemon stores by default."""
    program = config.load_program()
    return frozenset(m.params_hash for m in config.Settings().detail_presets(program.method))


def _repeat(
    table: sa.Table, target: sql.Composable, replaced: dict[str, sql.Composable]
) -> sql.Composed:
    """INSERT into ``target`` a copy of each template row of ``table`` (``t``) for every tick
    mapped to it in ``tick_map`` (``m``), with the columns in ``replaced`` computed as given."""
    columns = [c.name for c in table.columns]
    values = [
        replaced[c] if c in replaced else sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns
    ]
    return sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM {} AS t JOIN tick_map AS m ON m.template_at = t.tick_at"
    ).format(
        target,
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(values),
        target,
    )


@dataclass(frozen=True, slots=True)
class WeekWrite:
    ticks: int
    templates: int
    rows: int  # rows of the per-tick tables, headers included
    seconds: float


def write_week(
    engine: sa.Engine,
    seeds: Path,
    *,
    cadence: timedelta,
    ticks: int,
    templates: list[list[snapshots.MarketSnapshot]],
) -> WeekWrite:
    """Store ``ticks`` ok ticks of ``WEEK`` at ``cadence``, as the daemon would have.

    The week's seed is committed (and kept in ``seeds`` for the close to reveal), the first
    ``len(templates)`` ticks are written by ``write_tick`` at their scheduled instants, and every
    later tick ``i`` repeats template ``i % len(templates)`` in SQL: its header, book, per-method
    facts, brackets, cells and maker scores with only the instant (and interval) changed. Each
    template then recurs the same number of times, so the week's accumulators are exactly the
    templates' multiplied by that number, which is how they are set.
    """
    k = len(templates)
    if ticks % k:
        raise SystemExit(f"{ticks} ticks do not repeat {k} templates a whole number of times")
    commitment = sampling.commitment(SEED)
    seeds.mkdir(parents=True, exist_ok=True)
    Seeds(seeds).path(WEEK, commitment).write_text(SEED.hex() + "\n")
    schedule = sampling.Schedule(WEEK, cadence, SEED)
    instants = [schedule.sample_at(i) for i in range(ticks)]
    started = time.perf_counter()
    with engine.begin() as conn:
        weeks.commit_seed(conn, WEEK, cadence=cadence, seed_sha256=commitment)
    for i, markets in enumerate(templates):
        tick = snapshots.Tick(
            at=instants[i], interval=i, status="ok", taken_at=instants[i], duration_ms=0
        )
        with engine.begin() as conn:
            snapshots.write_tick(conn, tick, markets, methods=METHODS, detail=detail_hashes())
    with engine.begin() as conn, database.driver(conn).cursor() as cur:
        # A throw-away copy of the week: its durability buys nothing.
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(
            "CREATE TEMPORARY TABLE tick_map (tick_at timestamptz PRIMARY KEY,"
            " interval_index integer, template_at timestamptz, cycle integer) ON COMMIT DROP"
        )
        with cur.copy("COPY tick_map FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["timestamptz", "int4", "timestamptz", "int4"])
            for i in range(k, ticks):
                copy.write_row((instants[i], i, instants[i % k], i // k))
        cur.execute(
            "CREATE TEMPORARY TABLE instants (interval_index integer PRIMARY KEY,"
            " at timestamptz UNIQUE) ON COMMIT DROP"
        )
        with cur.copy("COPY instants FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "timestamptz"])
            for i, instant in enumerate(instants):
                copy.write_row((i, instant))
        cur.execute("ANALYZE tick_map")
        cur.execute("ANALYZE instants")
        at: dict[str, sql.Composable] = {"tick_at": sql.SQL("m.tick_at")}
        # A book stored as a delta names its base: the copy's base is the same template's copy
        # in the copy's own cycle (templates are consecutive ticks, so bases stay in a cycle).
        rebased = sql.SQL(
            "(SELECT b.at FROM instants AS b WHERE b.interval_index = m.cycle * {} +"
            " (SELECT a.interval_index FROM instants AS a WHERE a.at = t.book_base))"
        ).format(sql.Literal(k))
        cur.execute(
            _repeat(
                schema.ticks,
                sql.Identifier(schema.ticks.name),
                {
                    **at,
                    "interval_index": sql.SQL("m.interval_index"),
                    "taken_at": sql.SQL("m.tick_at"),
                },
            )
        )
        for table in TICK_TABLES:
            partition = weeks.partition_name(table.name, WEEK)
            replaced = {**at, "book_base": rebased} if table is schema.snapshots else at
            cur.execute(
                _repeat(table, sql.Identifier(schema.PARTITION_SCHEMA, partition), replaced)
            )
        times = sql.Literal(ticks // k)
        for table, counters in ACCUMULATORS.items():
            cur.execute(
                sql.SQL("UPDATE {} SET {}").format(
                    sql.Identifier(table.name),
                    sql.SQL(", ").join(
                        sql.SQL("{} = {} * {}").format(sql.Identifier(c), sql.Identifier(c), times)
                        for c in counters
                    ),
                )
            )
        # No fills in this week: they are final once the ingest pass is past its end.
        mark = store_fills.Watermark(protocol.DRIFT_PROGRAM_ID, "finalized", "-", 0, 0, WEEK.end)
        store_fills.record_finality(conn, WEEK, finalized_through=mark)
    seconds = time.perf_counter() - started
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # As autovacuum would have left the week by its end.
        conn.exec_driver_sql("VACUUM ANALYZE")
        rows = sum(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (schema.ticks, *TICK_TABLES)
        )
    return WeekWrite(ticks, k, rows, seconds)


def week_bytes(conn: sa.Connection) -> int:
    """Bytes on disk (tables, indexes, TOAST) of the week: its partitions and the tick headers."""
    names = [
        f"{schema.PARTITION_SCHEMA}.{weeks.partition_name(t, WEEK)}" for t in schema.PARTITIONED
    ]
    return int(
        conn.execute(
            sa.text(
                "SELECT sum(pg_total_relation_size(to_regclass(n)))"
                " FROM unnest(CAST(:names AS text[])) AS n"
            ),
            {"names": [*names, schema.ticks.name]},
        ).scalar_one()
    )


@dataclass(frozen=True, slots=True)
class CloseFigures:
    seconds: float
    source: str
    books: int
    digest: str
    disk_bytes: int


def close(engine: sa.Engine, seeds: Path, *, ticks: int, cadence: timedelta) -> CloseFigures:
    """``close-week`` of ``WEEK`` as the CLI runs it (forced when the week is partial)."""
    forced = ticks < timedelta(days=7) // cadence
    started = time.perf_counter()
    closed = close_flow.close_week(
        engine,
        everyone(),
        now=WEEK.end + timedelta(minutes=30),
        seeds=Seeds(seeds),
        week=WEEK,
        force=forced,
        reason="benchmark: a partial week" if forced else "",
    )
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        size = week_bytes(conn)
    return CloseFigures(seconds, closed.source, closed.close.books, closed.close.digest, size)


def after_close(engine: sa.Engine, tmp: Path) -> None:
    """Time what follows a close: the report (and one maker's drill-down), export-week and
    verify-week --from the archive."""
    outcome = weekreport.outcome(engine, WEEK, now=WEEK.end + timedelta(hours=1))
    started = time.perf_counter()
    doc = weekreport.write(engine, outcome, tmp / "report")
    print(f"report: {time.perf_counter() - started:.2f} s (target < {REPORT_TARGET_S:.0f} s)")
    top = max(doc["payouts"], key=lambda r: r["total_micro_usdc"], default=None)
    if top is not None:
        started = time.perf_counter()
        weekreport.write(engine, outcome, tmp / "report-maker", maker=top["authority"])
        print(f"report --maker (one maker's drill-down): {time.perf_counter() - started:.2f} s")
    archive = tmp / "week.zip"
    started = time.perf_counter()
    export.export_week(engine, WEEK, archive)
    print(
        f"export-week: {time.perf_counter() - started:.2f} s,"
        f" {archive.stat().st_size / 2**20:,.0f} MiB archive"
    )
    started = time.perf_counter()
    verified = export.verify_archive(archive)
    print(
        f"verify-week --from: {time.perf_counter() - started:.2f} s"
        f" (target < {VERIFY_FROM_TARGET_S:.0f} s), {'ok' if verified.ok else verified.difference}"
    )


def bench(
    admin: sa.URL,
    tmp: Path,
    *,
    cadence: timedelta,
    ticks: int,
    templates: int,
    recompute: bool,
    mainnet: bool = False,
) -> None:
    name = "driftsnap_bench_close"
    engine = fresh_database(admin, name)
    try:
        seeds = tmp / "seeds"
        distinct = (
            distinct_ticks(templates, scenarios.MAINNET_SCALE, steps=30)
            if mainnet
            else distinct_ticks(templates)
        )
        orders = sum(len(s.book.orders) for s in distinct[0])
        print(f"{templates} distinct ticks of {len(distinct[0])} markets, {orders:,} orders each")
        written = write_week(engine, seeds, cadence=cadence, ticks=ticks, templates=distinct)
        print(
            f"wrote {written.ticks:,} ticks ({written.rows:,} rows, {written.templates} distinct)"
            f" in {written.seconds:.1f} s"
        )
        if recompute:
            forced = ticks < timedelta(days=7) // cadence
            started = time.perf_counter()
            again = close_flow.close_week(
                engine, everyone(), now=WEEK.end + timedelta(minutes=30),
                seeds=Seeds(seeds), week=WEEK, dry_run=True, method="drift-mm-scoring",
                force=forced, reason="benchmark: a partial week" if forced else "",
            )  # fmt: skip
            print(
                f"recompute under {again.close.method} ({again.source}):"
                f" {time.perf_counter() - started:.2f} s (target < {RECOMPUTE_TARGET_S:.0f} s)"
            )
        figures = close(engine, seeds, ticks=ticks, cadence=cadence)
        print(
            f"close-week ({figures.source}, {figures.books:,} books): {figures.seconds:.2f} s"
            f" (target < {CLOSE_TARGET_S:.0f} s at 60 s) digest {figures.digest[:16]}"
        )
        print(f"the week on disk: {figures.disk_bytes / 2**20:,.0f} MiB")
        started = time.perf_counter()
        report = close_flow.verify_week(engine, WEEK)
        print(
            f"verify-week: {time.perf_counter() - started:.2f} s,"
            f" {'ok' if report.ok else report.difference}"
        )
        after_close(engine, tmp)
    finally:
        engine.dispose()
        drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a superuser URL; default: a temporary embedded server")
    parser.add_argument("--cadence", type=int, default=60, help="seconds between ticks")
    parser.add_argument("--ticks", type=int, help="ticks to write (default: the whole week)")
    parser.add_argument("--templates", type=int, default=60, help="distinct simulated ticks")
    parser.add_argument("--no-recompute", action="store_true", help="skip the recomputation")
    parser.add_argument(
        "--mainnet", action="store_true", help="mainnet-scale books of the program's markets"
    )
    args = parser.parse_args()
    logs.configure("warning")
    cadence = timedelta(seconds=args.cadence)
    whole = timedelta(days=7) // cadence
    with tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp:
        server = None
        if args.url:
            admin = database.parse(args.url)
        else:
            server = database.start_embedded(Path(tmp) / "pg")
            admin = server.url.set(database="postgres")
        try:
            bench(
                admin, Path(tmp), cadence=cadence, ticks=min(args.ticks or whole, whole),
                templates=args.templates, recompute=not args.no_recompute, mainnet=args.mainnet,
            )  # fmt: skip
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
