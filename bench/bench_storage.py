"""Disk per ok tick, by table: the layout before migration 0008 and today's, side by side.

    .venv/bin/python bench/bench_storage.py [--url postgresql://...] [--ticks 12] [--quick]
                                            [--before COMMIT]

Simulates ``--ticks`` + 1 consecutive ticks per case (the default scenario; mainnet scale, the
program's markets and all 28, at a 60 s and a 10 s cadence: 30 and 5 simulator slots a tick, as
``simnet --slot-ms 2000`` runs them) and writes them with ``snapshots.write_tick`` into a fresh
database per case and layout, one untimed first tick creating the accounts and partitions. It
prints the growth of ``pg_total_relation_size`` per table (partitions, indexes and TOAST) per
tick, mean and median, and the median write time.

*Before* is the code of :data:`BEFORE` (whole books, every method's per-maker scores and cells;
``--before`` another commit, e.g. :data:`ORIGINAL`), taken from this repository's history with
``git archive`` and run in its own process on the same ticks; *after* is this tree with the
daemon's defaults (book deltas, the per-maker detail of the program's method, cells derived).
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench_store

from driftsnap import calendar, config, logs
from driftsnap.simnet import scenarios
from driftsnap.store import database, snapshots

if TYPE_CHECKING:
    import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "94b4cdc83adb9d4e8cf05fd4f699812a8548c5e3"  # the last commit before migration 0008
ORIGINAL = "dccf42ed41d4e3b79f5e91bff503bb6e4d60481f"  # ... before 0007 (rows per maker and cell)
TARGETS_MIB = {"all": 1.0, "program": 0.2}  # at 60 s, issue 16
_PARTITION = re.compile(r"_\d{4}w\d{2}$")


@dataclass
class Figures:
    """One case under one layout: bytes per tick by table (each tick), write seconds."""

    ticks: list[dict[str, int]] = field(default_factory=list)
    write_s: list[float] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        tables = {t for tick in self.ticks for t in tick}
        return {t: statistics.fmean(tick.get(t, 0) for tick in self.ticks) for t in tables}

    def total_mean(self) -> float:
        return sum(self.mean().values())

    def total_median(self) -> float:
        return statistics.median(sum(tick.values()) for tick in self.ticks)

    def as_json(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "write_s": self.write_s}


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
    admin: sa.URL,
    name: str,
    all_ticks: list[list[snapshots.MarketSnapshot]],
    cadence_s: int,
    **write: Any,
) -> Figures:
    """Write ``all_ticks`` into a fresh database ``name``: growth by table per tick after the
    first, and the write times; ``write`` goes to :func:`snapshots.write_tick`."""
    engine = bench_store.fresh_database(admin, name)
    at = bench_store.MONDAY
    out = Figures()
    try:
        for i, markets in enumerate(all_ticks):
            tick = bench_store.tick(at + timedelta(seconds=i * cadence_s), i)
            with engine.connect() as conn:
                before = by_table(conn)
            t0 = time.perf_counter()
            with engine.begin() as conn:
                snapshots.write_tick(conn, tick, markets, methods=bench_store.METHODS, **write)
            spent = time.perf_counter() - t0
            if i:
                with engine.connect() as conn:
                    after = by_table(conn)
                out.ticks.append(
                    {t: after[t] - before.get(t, 0) for t in after if after[t] - before.get(t, 0)}
                )
                out.write_s.append(spent)
    finally:
        engine.dispose()
        bench_store.drop_database(admin, name)
    return out


# Run with the tree of BEFORE first on sys.path: this module's measure() on that code.
_BEFORE_SCRIPT = """
import importlib.util, json, pickle, sys
sys.path.insert(0, "bench")
from driftsnap import logs
from driftsnap.store import database
spec = importlib.util.spec_from_file_location("bench_storage_now", sys.argv[3])
now = importlib.util.module_from_spec(spec)
sys.modules["bench_storage_now"] = now
spec.loader.exec_module(now)
logs.configure("warning")
admin = database.parse(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    cases = pickle.load(f)
out = {
    label: now.measure(admin, "driftsnap_bench_storage_before", ticks, cadence_s).as_json()
    for label, ticks, cadence_s in cases
}
print(json.dumps(out))
"""


def before_tree(tmp: Path, commit: str = BEFORE) -> Path | None:
    """The package, bench and migrations of ``commit``, or ``None`` without that history."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    known = subprocess.run(  # noqa: S603 (git, fixed arguments)
        [git, "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if known.returncode:
        return None
    archive = tmp / "before.tar"
    subprocess.run(  # noqa: S603 (git, fixed arguments)
        [git, "-C", str(ROOT), "archive", "-o", str(archive), commit,
         "driftsnap", "bench", "migrations"],
        check=True,
    )  # fmt: skip
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "before", filter="data")
    return tmp / "before"


def measure_before(
    admin: sa.URL,
    cases: list[tuple[str, list[list[snapshots.MarketSnapshot]], int]],
    tmp: Path,
    commit: str = BEFORE,
) -> dict[str, Figures] | None:
    """Every case written by the code of ``commit``, in its own process (same ticks)."""
    tree = before_tree(tmp, commit)
    if tree is None:
        return None
    ticks_file = tmp / "ticks.pickle"
    with ticks_file.open("wb") as f:
        pickle.dump(cases, f)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(  # noqa: S603 (this interpreter, this module's script)
        [sys.executable, "-c", _BEFORE_SCRIPT, admin.render_as_string(hide_password=False),
         str(ticks_file), __file__],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"the code of {commit[:10]} failed:\n{done.stderr[-3000:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return {label: Figures(v["ticks"], v["write_s"]) for label, v in doc.items()}


@dataclass(frozen=True)
class Case:
    label: str
    key: str  # for bench/run.py: default | program | all
    cadence_s: int
    ticks: list[list[snapshots.MarketSnapshot]]


def cases(ticks: int, *, quick: bool) -> list[Case]:
    """The simulated ticks of every case (``quick``: the default scenario only)."""
    program = config.load_program()
    pools = {str(m) for m in program.paid_markets(calendar.Week.containing(bench_store.MONDAY))}
    out = [Case("default scenario, 3 markets, 60 s", "default", 60,
                bench_store.simulated_ticks(scenarios.DEFAULT, ticks + 1))]  # fmt: skip
    if quick:
        return out
    for cadence_s, steps in ((60, 30), (10, 5)):
        mainnet = bench_store.simulated_ticks(scenarios.MAINNET_SCALE, ticks + 1, steps=steps)
        paid = [[s for s in t if s.book.market in pools] for t in mainnet]
        out.append(Case(f"mainnet, the program's {len(paid[0])} markets, {cadence_s} s", "program",
                        cadence_s, paid))  # fmt: skip
        out.append(Case(f"mainnet, all {len(mainnet[0])} markets, {cadence_s} s", "all",
                        cadence_s, mainnet))  # fmt: skip
    return out


def run(
    admin: sa.URL, ticks: int, tmp: Path, *, quick: bool = False, before: str = BEFORE
) -> list[tuple[Case, Figures | None, Figures]]:
    """Every case, before (the code of commit ``before``) and after."""
    program = config.load_program()
    detail = frozenset(m.params_hash for m in config.Settings().detail_presets(program.method))
    all_cases = cases(ticks, quick=quick)
    was = measure_before(admin, [(c.label, c.ticks, c.cadence_s) for c in all_cases], tmp, before)
    return [
        (
            c,
            None if was is None else was[c.label],
            measure(admin, "driftsnap_bench_storage", c.ticks, c.cadence_s, detail=detail),
        )
        for c in all_cases
    ]


def report(case: Case, before: Figures | None, after: Figures) -> None:
    """Print one case: totals and the tables that grew, largest first, before and after."""
    mib = 2**20

    def head(f: Figures) -> str:
        write = statistics.median(f.write_s) * 1000
        return (
            f"{f.total_mean() / mib:.3f} MiB a tick (median {f.total_median() / mib:.3f}),"
            f" write {write:.0f} ms"
        )

    print(f"{case.label}:")
    print(f"    before: {head(before)}" if before else "    before: (no git history)")
    print(f"    after:  {head(after)}")
    b, a = ({} if before is None else before.mean()), after.mean()
    for table in sorted(b.keys() | a.keys(), key=lambda t: -max(b.get(t, 0), a.get(t, 0))):
        if max(b.get(table, 0), a.get(table, 0)) >= mib / 1000:
            print(
                f"        {table:<20} {b.get(table, 0) / mib:8.3f} → {a.get(table, 0) / mib:8.3f}"
            )


def main() -> None:
    """Run every case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a superuser URL; default: a temporary embedded server")
    parser.add_argument("--ticks", type=int, default=12, help="ticks measured per case")
    parser.add_argument("--quick", action="store_true", help="the default scenario only")
    parser.add_argument(
        "--before",
        default=BEFORE,
        metavar="COMMIT",
        help=f"the code to compare with (default {BEFORE[:10]}, before migration 0008; "
        f"{ORIGINAL[:10]}: before 0007, one row per maker and cell)",
    )
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
            figures = run(admin, args.ticks, Path(tmp), quick=args.quick, before=args.before)
            for case, before, after in figures:
                report(case, before, after)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
