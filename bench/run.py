"""Every benchmark figure of issue 9 in one run, as one table with ratios and targets.

    .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--json FILE] [--url URL]

Sections (``--only`` takes any of them, repeated or comma-separated; default all):

``pipeline``  the simnet's ``mainnet-scale`` getProgramAccounts response (the same bytes for both)
              through driftsnap (bytes → books → scores) and through driftpy (``UserMap.sync``'s
              decoding, ``get_DLOB``, ``get_l3`` per market, then the same scoring), each side in
              a fresh process: median CPU seconds, their ratio, each process's
              peak resident memory (target < 500 MB for driftsnap's), and a check that both
              give the same books and scores (target >= 25x, issue 17).
``floor``     the same driftsnap pipeline against only parsing the JSON and base64-decoding every
              account (targets, issue 17: within 2x for
              all three methods, 1.5x for books + the program's method).
``write``     one mainnet-scale tick's rows written by ``write_tick`` (COPY) and by plain
              ``executemany`` INSERTs, rows/s (target >= 100k rows/s).
``close``     ``close-week`` of a synthetic full week at 60 s and at 10 s cadence (targets < 5 s
              and < 30 s) and the week's size on disk (target < 1 GiB at 60 s).
``scale``     the driftsnap pipeline at 1k, 5k, 10k and 20k User accounts: time per 1k users
              against a straight line from the smallest size (target: within 25 %).
``tick``      a whole daemon tick (read + score + write, the program's method, its 3 markets) in
              the daemon's own process against ``driftsnap simnet --scenario mainnet-scale`` in
              another: median CPU seconds (target, issue 17: ≤ 0.35 s, so that a 1 s cadence
              fits on one core; bench/bench_tick.py).
``storage``   disk per ok tick by table at mainnet scale, the program's markets and all 28, at 60 s
              and 10 s cadence: the layout before migration 0008 (its code, from git history)
              and today's, side by side on the same ticks (targets at 60 s, issue 16: ≤ 1 MiB
              for all markets, ≤ 0.2 MiB for the program's; bench/bench_storage.py).

``--quick`` is a smoke run: the smallest sizes (1,000 users, a 48th of a week) and few repeats;
its figures are not the ones to quote. The database sections use ``--url`` (a superuser URL; also
``DRIFTSNAP_BENCH_DATABASE_URL``) or an embedded PostgreSQL in a temporary directory, and create
and drop their own databases. A target missed is reported as FAIL and the exit status stays 0;
books or scores that differ between driftsnap and driftpy exit 1, since the comparison is then
not a like-for-like one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import gc
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import bench_close
import bench_decode
import bench_storage
import bench_store
import bench_tick
import sqlalchemy as sa

from driftsnap import logs
from driftsnap.simnet import scenarios
from driftsnap.store import database, snapshots

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

SECTIONS: Final = ("pipeline", "floor", "write", "close", "scale", "tick", "storage")
ROOT: Final = Path(__file__).resolve().parent.parent
URL_ENV: Final = "DRIFTSNAP_BENCH_DATABASE_URL"

PIPELINE_RATIO_TARGET = 25.0  # issue 17 (issue 9: 10x)
FLOOR_RATIO_TARGET = 2.0  # issue 17, all three methods (issue 9: 5x)
ONE_METHOD_FLOOR_TARGET = 1.5  # issue 17: books + the program's method
MEMORY_TARGET_MB = 500.0
ROWS_TARGET = 100_000
CLOSE_TARGETS_S: Final = {60: 5.0, 10: 30.0}
WEEK_DISK_TARGET = 1 << 30  # at 60 s cadence
SCALE_TOLERANCE = 1.25


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and repeats of one run."""

    users: int | None  # the pipeline's scenario: mainnet-scale itself (None) or scaled to this
    repeat: int  # timed runs of driftsnap's side (after one warm-up run)
    driftpy_repeat: int  # timed runs of driftpy's side (after one warm-up run)
    write_ticks: int  # timed ticks per side
    week_share: int  # 1: the whole week; n: the first 1/n of it
    templates: int  # distinct simulated ticks repeated through the week
    scale: tuple[int, ...]  # User accounts of the scale curve
    storage_ticks: int  # ticks measured per storage case
    tick_scenario: str  # the simulator's scenario of the whole-tick section
    ticks: int  # its counted ticks (after a warm-up)

    def scenario(self) -> scenarios.Scenario:
        base = scenarios.MAINNET_SCALE
        return base if self.users is None else bench_decode.scaled(base, self.users)


FULL = Plan(None, 7, 3, 5, 1, 60, (1_000, 5_000, 10_000, 20_000), 12, "mainnet-scale", 10)
QUICK = Plan(1_000, 3, 1, 2, 48, 6, (250, 500, 1_000, 2_000), 2, "default", 3)


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of the table; ``ok`` is None for a figure without a target."""

    key: str
    what: str
    ours: str
    theirs: str
    ratio: str
    target: str
    ok: bool | None
    values: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def result(self) -> str:
        return "—" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclasses.dataclass
class Report:
    rows: list[Row] = dataclasses.field(default_factory=list)
    details: list[str] = dataclasses.field(default_factory=list)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    disagreement: list[str] = dataclasses.field(default_factory=list)


def progress(message: str) -> None:
    """What is running now, on stderr: the report itself goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


# ---------------------------------------------------------------- machine facts


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    done = subprocess.run(  # noqa: S603 -- a fixed git command, no shell, no outside input
        [git, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def machine(admin: sa.URL | None, source: str) -> dict[str, str]:
    """CPU, cores, RAM, load, Python, PostgreSQL, versions, date and commit."""
    cpu = platform.processor() or platform.machine()
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    postgres = "not used"
    if admin is not None:
        engine = sa.create_engine(admin)
        with engine.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        engine.dispose()
        postgres = f"{version} ({source})"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    commit = _git("rev-parse", "--short", "HEAD")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": memory,
        "load": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "postgresql": postgres,
        "driftpy": _version("driftpy"),
        "numpy": _version("numpy"),
    }


def _command() -> str:
    """This run's command line as typed (the interpreter relative to here when inside)."""
    python = os.path.relpath(sys.executable)
    return shlex.join([sys.executable if python.startswith("..") else python, *sys.argv])


def _version(package: str) -> str:
    return importlib.metadata.version(package)


# ---------------------------------------------------------------- worker processes


def _rss_mb() -> float:
    """This process's resident set now (Linux), in MB."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    return float("nan")


def _max_rss_mb() -> float:
    """This process's peak resident set, in MB.

    ``VmHWM`` where there is one (Linux): ``ru_maxrss`` survives ``execve``, so a worker forked
    from this (large) parent would report at least the parent's resident set at the fork.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], list[float], Any]:
    """CPU and wall seconds of ``repeat`` calls after one untimed warm-up, and the last result."""
    last = fn()
    cpu, wall = [], []
    for _ in range(repeat):
        gc.collect()  # the previous run's garbage is not this run's cost
        c0, w0 = time.process_time(), time.perf_counter()
        last = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall, last


def worker(side: str, folder: Path, repeat: int, output: Path) -> None:
    """One side of the pipeline comparison in this (fresh) process; figures to ``output``."""
    response = bench_decode.Response.from_meta(
        (folder / "response.json").read_bytes(), json.loads((folder / "meta.json").read_text())
    )
    figures: dict[str, Any] = {}
    if side == "driftsnap":
        figures["rss_before_mb"] = _rss_mb()
        cpu, wall, outcome = _timed(lambda: bench_decode.driftsnap_pipeline(response), repeat)
        floor_cpu, floor_wall, _ = _timed(lambda: bench_decode.floor(response.body), repeat)
        one = bench_decode.METHODS[:1]
        one_cpu, _, _ = _timed(lambda: bench_decode.driftsnap_pipeline(response, one), repeat)
        figures |= {"floor_cpu": floor_cpu, "floor_wall": floor_wall, "one_method_cpu": one_cpu}
    else:
        cpu, wall, outcome = asyncio.run(_driftpy_runs(response, repeat, figures))
    figures |= {
        "cpu": cpu,
        "wall": wall,
        "stages": outcome.stages,
        "max_rss_mb": _max_rss_mb(),
        "orders": sum(len(b.orders) for b in outcome.books.values()),
        "fingerprint": bench_decode.fingerprint(outcome),
    }
    output.write_text(json.dumps(figures))


async def _driftpy_runs(
    response: bench_decode.Response, repeat: int, figures: dict[str, Any]
) -> tuple[list[float], list[float], bench_decode.Outcome]:
    """driftpy's side: one warm-up run, then ``repeat`` timed ones, in one event loop."""
    client, connection = bench_decode.offline_drift_client()
    figures["rss_before_mb"] = _rss_mb()
    try:
        last = await bench_decode.driftpy_pipeline(client, response)
        cpu, wall = [], []
        for _ in range(repeat):
            gc.collect()  # the DLOB's linked nodes are cycles: free them outside the timing
            c0, w0 = time.process_time(), time.perf_counter()
            last = await bench_decode.driftpy_pipeline(client, response)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        return cpu, wall, last
    finally:
        await connection.close()


def _spawn(side: str, folder: Path, repeat: int) -> dict[str, Any]:
    output = folder / f"{side}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", side,
        "--input", str(folder), "--repeat", str(repeat), "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, check=False)  # noqa: S603 -- this script, no shell
    if done.returncode != 0:
        raise SystemExit(f"the {side} worker failed with exit status {done.returncode}")
    figures: dict[str, Any] = json.loads(output.read_text())
    return figures


# ---------------------------------------------------------------- sections


def pipeline_section(
    report: Report, plan: Plan, response: bench_decode.Response, tmp: Path, wanted: set[str]
) -> None:
    folder = tmp / "pipeline"
    folder.mkdir()
    (folder / "response.json").write_bytes(response.body)
    (folder / "meta.json").write_text(json.dumps(response.meta()))
    users = response.accounts()
    progress(f"pipeline: driftsnap's side, {plan.repeat} runs in a fresh process")
    ours = _spawn("driftsnap", folder, plan.repeat)
    cpu_ours = statistics.median(ours["cpu"])
    report.details.append(
        f"response: simnet {plan.scenario().name} (seed 1, 5 slots in), one getProgramAccounts"
        f" of {len(response.body) / 1e6:.1f} MB: {users:,} User accounts, {len(response.markets)}"
        f" markets, {ours['orders']:,} eligible orders, scored under"
        f" {len(bench_decode.METHODS)} methods"
    )
    report.figures["response"] = {
        "scenario": plan.scenario().name,
        "bytes": len(response.body),
        "users": users,
        "markets": len(response.markets),
        "orders": ours["orders"],
    }
    report.figures["driftsnap"] = {k: v for k, v in ours.items() if k != "fingerprint"}
    stages = ", ".join(f"{k} {v:.3f}" for k, v in ours["stages"].items())
    report.details.append(
        f"driftsnap: CPU median {cpu_ours:.3f} s of {len(ours['cpu'])} (wall"
        f" {statistics.median(ours['wall']):.3f} s); last run by stage: {stages}"
    )
    if "pipeline" in wanted:
        progress(f"pipeline: driftpy's side, {plan.driftpy_repeat} runs in a fresh process")
        theirs = _spawn("driftpy", folder, plan.driftpy_repeat)
        cpu_theirs = statistics.median(theirs["cpu"])
        report.figures["driftpy"] = {k: v for k, v in theirs.items() if k != "fingerprint"}
        stages = ", ".join(f"{k} {v:.3f}" for k, v in theirs["stages"].items())
        report.details.append(
            f"driftpy:   CPU median {cpu_theirs:.3f} s of {len(theirs['cpu'])} (wall"
            f" {statistics.median(theirs['wall']):.3f} s); last run by stage: {stages}"
        )
        shared = ours["stages"]["score"]
        report.details.append(
            f"without the scoring both sides share: driftpy"
            f" {cpu_theirs - theirs['stages']['score']:.3f} s vs driftsnap"
            f" {cpu_ours - shared:.3f} s ="
            f" {(cpu_theirs - theirs['stages']['score']) / (cpu_ours - shared):.1f}x"
        )
        ratio = cpu_theirs / cpu_ours
        report.rows.append(
            Row(
                "pipeline.cpu",
                f"1 pipeline: gPA bytes → books → scores, {users:,} users",
                _s(cpu_ours),
                f"{_s(cpu_theirs)} driftpy",
                f"{ratio:.1f}x",
                f"≥ {PIPELINE_RATIO_TARGET:.0f}x",
                ratio >= PIPELINE_RATIO_TARGET,
                {"driftsnap_s": cpu_ours, "driftpy_s": cpu_theirs, "ratio": ratio},
            )
        )
        mem_ours, mem_theirs = ours["max_rss_mb"], theirs["max_rss_mb"]
        report.rows.append(
            Row(
                "pipeline.memory",
                "1 peak memory, one fresh process per side (VmHWM)",
                f"{mem_ours:,.0f} MB",
                f"{mem_theirs:,.0f} MB driftpy",
                f"{mem_theirs / mem_ours:.1f}x",
                f"< {MEMORY_TARGET_MB:.0f} MB",
                mem_ours < MEMORY_TARGET_MB,
                {"driftsnap_mb": mem_ours, "driftpy_mb": mem_theirs},
            )
        )
        report.details.append(
            f"memory: RSS before the first run (imports and response loaded) driftsnap"
            f" {ours['rss_before_mb']:.0f} MB, driftpy {theirs['rss_before_mb']:.0f} MB"
            f" (its DriftClient built); peak above that: driftsnap"
            f" {mem_ours - ours['rss_before_mb']:.0f} MB, driftpy"
            f" {mem_theirs - theirs['rss_before_mb']:.0f} MB"
        )
        diff = bench_decode.differences(ours["fingerprint"], theirs["fingerprint"])
        report.disagreement = diff
        markets = len(ours["fingerprint"])
        agree = markets - len(diff)
        report.rows.append(
            Row(
                "pipeline.agree",
                "1 same books and scores, driftsnap vs driftpy",
                f"{agree}/{markets} markets",
                f"{agree}/{markets} markets",
                "—",
                "all agree",
                not diff,
                {"markets": markets, "agree": agree, "differences": diff},
            )
        )
    if "floor" in wanted:
        floor = statistics.median(ours["floor_cpu"])
        ratio = cpu_ours / floor
        report.rows.append(
            Row(
                "floor.cpu",
                "2 that pipeline vs the floor (JSON + base64 only)",
                _s(cpu_ours),
                f"{_s(floor)} floor",
                f"{ratio:.1f}x",
                f"≤ {FLOOR_RATIO_TARGET:.0f}x",
                ratio <= FLOOR_RATIO_TARGET,
                {"driftsnap_s": cpu_ours, "floor_s": floor, "ratio": ratio},
            )
        )
        one = statistics.median(ours["one_method_cpu"])
        report.rows.append(
            Row(
                "floor.one_method",
                f"2 books + the program's method ({bench_decode.METHODS[0].name}) vs the floor",
                _s(one),
                f"{_s(floor)} floor",
                f"{one / floor:.2f}x",
                f"≤ {ONE_METHOD_FLOOR_TARGET}x",
                one / floor <= ONE_METHOD_FLOOR_TARGET,
                {"driftsnap_s": one, "floor_s": floor, "ratio": one / floor},
            )
        )


def write_section(
    report: Report, plan: Plan, response: bench_decode.Response, admin: sa.URL
) -> None:
    outcome = bench_decode.driftsnap_pipeline(response)
    markets = [snapshots.MarketSnapshot(outcome.books[i], outcome.scores[i]) for i in outcome.books]
    progress(f"write: one tick, {plan.write_ticks} timed writes per side")
    figures = bench_store.compare_writes(
        admin, markets, plan.write_ticks, f"driftsnap_bench_writes_{os.getpid()}"
    )
    ratio = figures.copy_rate / figures.plain_rate
    report.rows.append(
        Row(
            "write.rate",
            f"3 write one tick, {figures.rows:,} rows",
            f"{figures.copy_rate / 1000:,.0f}k rows/s",
            f"{figures.plain_rate / 1000:,.0f}k rows/s executemany",
            f"{ratio:.1f}x",
            f"≥ {ROWS_TARGET // 1000}k rows/s",
            figures.copy_rate >= ROWS_TARGET,
            {
                "rows": figures.rows,
                "copy_s": figures.copy_s,
                "executemany_s": figures.plain_s,
                "copy_rows_per_s": figures.copy_rate,
                "executemany_rows_per_s": figures.plain_rate,
            },
        )
    )
    report.details.append(
        f"write: median {statistics.median(figures.copy_s):.3f} s per tick with write_tick"
        f" (runs {', '.join(f'{s:.2f}' for s in figures.copy_s)}), "
        f"{statistics.median(figures.plain_s):.3f} s with executemany"
        f" (runs {', '.join(f'{s:.2f}' for s in figures.plain_s)})"
    )


def close_section(report: Report, plan: Plan, admin: sa.URL, tmp: Path) -> None:
    progress(f"close: simulating {plan.templates} distinct default-scenario ticks")
    templates = bench_close.distinct_ticks(plan.templates)
    for seconds, target in CLOSE_TARGETS_S.items():
        cadence = timedelta(seconds=seconds)
        whole = timedelta(days=7) // cadence
        ticks = whole // plan.week_share
        name = f"driftsnap_bench_close{seconds}_{os.getpid()}"
        progress(f"close: writing {ticks:,} ticks at {seconds} s cadence")
        engine = bench_store.fresh_database(admin, name)
        try:
            written = bench_close.write_week(
                engine, tmp / f"seeds{seconds}", cadence=cadence, ticks=ticks, templates=templates
            )
            progress(f"close: close-week at {seconds} s cadence")
            seeds = tmp / f"seeds{seconds}"
            figures = bench_close.close(engine, seeds, ticks=ticks, cadence=cadence)
        finally:
            engine.dispose()
            bench_store.drop_database(admin, name)
        part = "" if ticks == whole else f" (1/{plan.week_share} week)"
        report.rows.append(
            Row(
                f"close.{seconds}s.time",
                f"4 close-week, {seconds} s cadence, {ticks:,} ticks{part}",
                _s(figures.seconds),
                "—",
                "—",
                f"< {target:.0f} s",
                figures.seconds < target,
                {"seconds": figures.seconds, "ticks": ticks, "books": figures.books},
            )
        )
        disk_target = WEEK_DISK_TARGET if seconds == 60 else None
        report.rows.append(
            Row(
                f"close.{seconds}s.disk",
                f"4   that week on disk, {written.rows / 1e6:.1f}M rows",
                _mib(figures.disk_bytes),
                "—",
                "—",
                "< 1 GiB" if disk_target else "—",
                None if disk_target is None else figures.disk_bytes < disk_target,
                {"bytes": figures.disk_bytes, "rows": written.rows},
            )
        )
        report.details.append(
            f"close at {seconds} s: {figures.source}, {figures.books:,} books; the week was"
            f" generated in {written.seconds:.1f} s ({written.templates} templates repeated)"
        )


def storage_section(report: Report, plan: Plan, admin: sa.URL, tmp: Path) -> None:
    """Disk per ok tick by table, the layout before migration 0008 and today's (issue 16)."""
    quick = plan is QUICK
    progress("storage: simulating ticks" + (" (the default scenario only)" if quick else ""))
    mib = 2**20
    for case, before, after in bench_storage.run(admin, plan.storage_ticks, tmp, quick=quick):
        target = bench_storage.TARGETS_MIB.get(case.key) if case.cadence_s == 60 else None
        total = after.total_mean()
        was = None if before is None else before.total_mean()
        report.rows.append(
            Row(
                f"storage.{case.key}.{case.cadence_s}s",
                f"6 disk per ok tick, {case.label}",
                f"{total / mib:.3f} MiB",
                "no git history" if was is None else f"{was / mib:.3f} MiB before 0008",
                "—" if not was else f"{was / total:.1f}x less",
                "—" if target is None else f"≤ {target} MiB",
                None if target is None else total <= target * mib,
                {
                    "after": after.as_json(),
                    "before": None if before is None else before.as_json(),
                    "week_gib_after": total * (7 * 86400 // case.cadence_s) / 2**30,
                },
            )
        )
        tables = sorted(after.mean().items(), key=lambda kv: -kv[1])
        report.details.append(
            f"storage, {case.label}: mean of {len(after.ticks)} ticks"
            f" (median {after.total_median() / mib:.3f} MiB); write median"
            f" {statistics.median(after.write_s) * 1000:.0f} ms"
            + (
                ""
                if before is None
                else f" (before: {statistics.median(before.write_s) * 1000:.0f} ms)"
            )
            + "; by table: "
            + ", ".join(f"{t} {n / mib:.3f}" for t, n in tables if n >= mib / 1000)
        )


def tick_section(report: Report, plan: Plan, admin: sa.URL, tmp: Path) -> None:
    """A whole tick's CPU in the daemon's process, the simulator in another (issue 17)."""
    progress(f"tick: {plan.ticks} daemon ticks against simnet --scenario {plan.tick_scenario}")
    figures = bench_tick.measure(admin, plan.tick_scenario, plan.ticks, tmp)
    cpu = statistics.median(figures.cpu_s)
    wall = statistics.median(figures.wall_s)
    report.rows.append(
        Row(
            "tick.cpu",
            f"7 whole tick, read + score + write, {figures.markets} markets,"
            f" {bench_tick.METHOD} ({plan.tick_scenario})",
            f"{_s(cpu)} CPU",
            f"{_s(wall)} wall",
            "—",
            f"≤ {bench_tick.TARGET_S} s",
            cpu <= bench_tick.TARGET_S,
            figures.as_json(),
        )
    )
    runs = ", ".join(f"{c:.2f}" for c in figures.cpu_s)
    report.details.append(
        f"tick: CPU of the daemon's process from wake-up to the next wait, median of"
        f" {len(figures.cpu_s)} after a warm-up (runs {runs});"
        f" {figures.orders:,.0f} orders; wall by stage (medians): read"
        f" {statistics.median(figures.rpc_ms):.0f} ms, score"
        f" {statistics.median(figures.score_ms):.0f} ms, write"
        f" {statistics.median(figures.write_ms):.0f} ms; the simulator (its own process)"
        f" {figures.simnet_cpu_s / figures.simnet_ticks:.3f} s CPU per tick"
    )


def scale_section(report: Report, plan: Plan) -> None:
    points: list[tuple[int, int, float]] = []  # (users asked, users in the response, CPU s)
    for users in plan.scale:
        progress(f"scale: {users:,} users")
        scenario = bench_decode.scaled(scenarios.MAINNET_SCALE, users)
        response = bench_decode.simnet_response(scenario)
        run = functools.partial(bench_decode.driftsnap_pipeline, response)
        cpu, _, _ = _timed(run, plan.repeat)
        points.append((users, response.accounts(), statistics.median(cpu)))
        del response  # a 20k-user response is 120 MB: not kept while the next is measured
        gc.collect()
    base_users, base_accounts, base_s = points[0]
    for users, accounts, seconds in points:
        per_1k = seconds / accounts * 1000
        linear = base_s * accounts / base_accounts
        ratio = seconds / linear
        first = users == base_users
        report.rows.append(
            Row(
                f"scale.{users}",
                f"5 pipeline at {accounts:,} users (per 1k users)",
                f"{_s(seconds)} ({per_1k * 1000:.0f} ms/1k)",
                "—" if first else f"{_s(linear)} linear from {base_accounts:,}",
                "—" if first else f"{ratio:.2f}x",
                "—" if first else f"≤ {SCALE_TOLERANCE:.2f}x",
                None if first else ratio <= SCALE_TOLERANCE,
                {"users": accounts, "seconds": seconds, "per_1k_s": per_1k},
            )
        )
    _, top_accounts, top_s = points[-1]
    growth = top_s / base_s
    linear_growth = top_accounts / base_accounts
    report.rows.append(
        Row(
            "scale.growth",
            f"5 growth {base_accounts:,} → {top_accounts:,} users",
            f"{growth:.1f}x",
            f"{linear_growth:.1f}x linear",
            f"{growth / linear_growth:.2f}x",
            f"≤ {linear_growth * SCALE_TOLERANCE:.0f}x",
            growth <= linear_growth * SCALE_TOLERANCE,
            {"growth": growth, "linear": linear_growth},
        )
    )


# ---------------------------------------------------------------- output


HEADERS: Final = ("what", "driftsnap", "comparison", "ratio", "target", "result")


def table(rows: Sequence[Row]) -> str:
    cells = [HEADERS, *((r.what, r.ours, r.theirs, r.ratio, r.target, r.result) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def server(url: str | None, tmp: Path, needed: bool) -> Iterator[tuple[sa.URL | None, str]]:
    """The admin URL of the server the database sections use, and where it comes from."""
    if not needed:
        yield None, ""
        return
    if url:
        yield database.parse(url), "given URL"
        return
    progress("starting an embedded PostgreSQL")
    embedded = database.start_embedded(tmp / "pg")
    try:
        yield embedded.url.set(database="postgres"), "embedded, default settings"
    finally:
        embedded.stop()


def parse_only(values: Sequence[str] | None) -> set[str]:
    if not values:
        return set(SECTIONS)
    wanted = {v.strip() for value in values for v in value.split(",") if v.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}: {', '.join(SECTIONS)}")
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes, few repeats")
    parser.add_argument("--only", action="append", metavar="NAME", help=", ".join(SECTIONS))
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures here")
    parser.add_argument(
        "--url", default=os.environ.get(URL_ENV), help=f"a superuser URL (default ${URL_ENV})"
    )
    parser.add_argument("--worker", choices=("driftsnap", "driftpy"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logs.configure("warning")
    if args.worker:
        worker(args.worker, args.input, args.repeat, args.output)
        return

    wanted = parse_only(args.only)
    plan = QUICK if args.quick else FULL
    report = Report()
    command = _command()
    needs_db = bool(wanted & {"write", "close", "tick", "storage"})
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp_dir,
        server(args.url, Path(tmp_dir), needs_db) as (admin, source),
    ):
        tmp = Path(tmp_dir)
        facts = machine(admin, source)
        print(f"driftsnap benchmarks, {facts['date']}, commit {facts['commit']}")
        print(f"command:  {command}" + ("   (--quick: a smoke run)" if args.quick else ""))
        print(
            f"machine:  {facts['cpu']}, {facts['cores']} cores, {facts['ram']} RAM,"
            f" load average at start {facts['load']}"
        )
        print(
            f"software: {facts['python']}, PostgreSQL {facts['postgresql']},"
            f" driftpy {facts['driftpy']}, numpy {facts['numpy']}"
        )
        sys.stdout.flush()
        response = None
        if wanted & {"pipeline", "floor", "write"}:
            progress(f"building the {plan.scenario().name} getProgramAccounts response")
            response = bench_decode.simnet_response(plan.scenario())
        if response is not None and wanted & {"pipeline", "floor"}:
            pipeline_section(report, plan, response, tmp, wanted)
        if response is not None and admin is not None and "write" in wanted:
            write_section(report, plan, response, admin)
        del response
        if admin is not None and "close" in wanted:
            close_section(report, plan, admin, tmp)
        if "scale" in wanted:
            scale_section(report, plan)
        if admin is not None and "tick" in wanted:
            tick_section(report, plan, admin, tmp)
        if admin is not None and "storage" in wanted:
            storage_section(report, plan, admin, tmp)
    finish(report, facts, command=command, plan=plan, args=args, started=started)


def finish(
    report: Report,
    facts: dict[str, str],
    *,
    command: str,
    plan: Plan,
    args: argparse.Namespace,
    started: float,
) -> None:
    """Print the table and the details, write the JSON, exit 1 if the two paths disagree."""
    failed = [r for r in report.rows if r.ok is False]
    print()
    print(table(report.rows))
    print(
        "\nCPU seconds are medians of process time after one warm-up run; write and close are"
        " wall time.\nThe first digit of each row is the item of issue 9 it answers."
    )
    for line in report.details:
        print(f"- {line}")
    for line in report.disagreement[:10]:
        print(f"  DIFFER {line}")
    print(
        f"\n{len(failed)} of {sum(r.ok is not None for r in report.rows)} targets missed"
        + (": " + "; ".join(r.key for r in failed) if failed else "")
        + f" (run took {time.perf_counter() - started:.0f} s)"
    )
    if args.json:
        doc = {
            "machine": facts,
            "command": command,
            "quick": args.quick,
            "plan": dataclasses.asdict(plan),
            "rows": [{**dataclasses.asdict(r), "result": r.result} for r in report.rows],
            "figures": report.figures,
            "details": report.details,
        }
        args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    if report.disagreement:
        print("driftsnap and driftpy disagree: the comparison above is not like for like")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
