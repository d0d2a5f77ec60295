"""A whole tick's CPU (read + score + write, one method) in the daemon's own process.

    .venv/bin/python bench/bench_tick.py [--scenario mainnet-scale] [--ticks 10] [--url URL]

The simulator runs as a process of its own (``driftsnap simnet``, slots of 400 ms in real time,
so the books move between ticks), and so does the daemon: ``daemon.run`` in a fresh worker
process (this script with ``--worker``), on a fresh migrated database, with the program's method
only (``DRIFTSNAP_METHODS=drift-2023-08``: its per-maker detail too), the program's markets (the
three paying a pool), no fills job and no metrics endpoint, on a virtual clock that jumps to each
sample instant so ticks follow one another. A tick's CPU is the worker's ``time.process_time``
(every thread: the scoring and the write run in worker threads) from the clock's wake-up to the
next wait: the read (HTTP, JSON, base64, decoding), the books, the scores, the transaction and
the GC's collection after the tick. The first tick (the week opened, caches filled) is not
counted. The issue's target (17): at most 0.35 s at mainnet scale, so a 1 s cadence fits on one
core. ``bench/run.py --only tick`` prints the same figure in its table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import bench_store
from pydantic import SecretStr

from driftsnap import config, daemon, logs
from driftsnap.store import database

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa

    from driftsnap.flows import tick

DRIFTSNAP: Final = Path(sys.executable).parent / "driftsnap"
METHOD: Final = "drift-2023-08"  # the program's
TARGET_S: Final = 0.35
CLOCK_TICK: Final = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    """The counted ticks' CPU and wall seconds, their stages (ms) and the simulator's CPU."""

    cpu_s: list[float]
    wall_s: list[float]
    rpc_ms: list[int]
    score_ms: list[int]
    write_ms: list[int]
    orders: int
    markets: int
    simnet_cpu_s: float  # the simulator's CPU over the worker's whole run, warm-up tick included
    simnet_ticks: int  # the ticks it served meanwhile

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CpuClock:
    """Virtual time jumping to each instant, noting process and wall time at each wake-up and
    at the start of each wait (the end of the cycle before it); stops after ``ticks`` ticks."""

    slot: int | None = None

    def __init__(self, ticks: int) -> None:
        self._now = datetime.now(UTC)
        self._ticks = ticks
        self.woke: list[tuple[float, float]] = []
        self.waited: list[tuple[float, float]] = []

    def now(self) -> datetime:
        return self._now

    async def start(self, stop: asyncio.Event) -> bool:
        return not stop.is_set()

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        self.waited.append((time.process_time(), time.perf_counter()))
        if len(self.woke) >= self._ticks:
            stop.set()
            return False
        await asyncio.sleep(0)
        self._now = max(self._now, moment)
        self.woke.append((time.process_time(), time.perf_counter()))
        return not stop.is_set()


def worker(rpc_url: str, database_url: str, data_dir: Path, ticks: int, output: Path) -> None:
    """``ticks`` + 1 ticks of ``daemon.run`` in this process; the figures to ``output``."""
    reports: list[tick.TickReport] = []
    clock = CpuClock(ticks + 1)
    settings = config.Settings(
        rpc_url=SecretStr(rpc_url),
        database_url=SecretStr(database_url),
        data_dir=data_dir,
        metrics_port=0,
        cadence=timedelta(seconds=60),
        methods=(METHOD,),
        fills=False,
        rpc_rps=1000,
        rpc_gpa_rps=1000,
    )
    code = asyncio.run(
        daemon.run(settings, once=False, stop=asyncio.Event(), clock=clock, on_tick=reports.append)
    )
    if code != 0 or len(reports) != ticks + 1 or any(r.status != "ok" for r in reports):
        raise SystemExit(f"the daemon exited {code} after {[r.status for r in reports]}")
    # Tick i runs from wake-up i to wait i + 1; the first is the warm-up.
    cycles = [
        (end[0] - start[0], end[1] - start[1])
        for start, end in zip(clock.woke, clock.waited[1:], strict=False)
    ][1:]
    counted = reports[1:]
    output.write_text(
        json.dumps(
            {
                "cpu_s": [c for c, _ in cycles],
                "wall_s": [w for _, w in cycles],
                "rpc_ms": [r.rpc_ms for r in counted],
                "score_ms": [r.score_ms for r in counted],
                "write_ms": [r.write_ms for r in counted],
                "orders": statistics.median(r.orders for r in counted),
                "markets": counted[-1].markets,
            }
        )
    )


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def simnet(scenario: str, seed: int = 1) -> Iterator[tuple[str, int]]:
    """``driftsnap simnet`` in a process of its own: its RPC URL and pid, until the block ends."""
    proc = subprocess.Popen(  # noqa: S603 -- our own console script, fixed arguments
        [
            str(DRIFTSNAP),
            "simnet",
            "--scenario",
            scenario,
            "--seed",
            str(seed),
            "--port",
            str(_free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"driftsnap simnet exited with status {proc.wait()}")
        yield json.loads(line)["rpc"], proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(admin: sa.URL, scenario: str, ticks: int, tmp: Path) -> Figures:
    """The figures of ``ticks`` counted ticks against ``scenario``, on a fresh database."""
    name = f"driftsnap_bench_tick_{os.getpid()}"
    bench_store.fresh_database(admin, name).dispose()
    try:
        with simnet(scenario) as (url, pid):
            output = tmp / "tick.json"
            command = [
                sys.executable, str(Path(__file__).resolve()), "--worker", "--rpc-url", url,
                "--database-url", admin.set(database=name).render_as_string(hide_password=False),
                "--data-dir", str(tmp / "tick-data"), "--ticks", str(ticks),
                "--output", str(output),
            ]  # fmt: skip
            before = _cpu_seconds(pid)
            done = subprocess.run(command, check=False)  # noqa: S603 -- this script, no shell
            simnet_cpu = _cpu_seconds(pid) - before
            if done.returncode != 0:
                raise SystemExit(f"the tick worker failed with exit status {done.returncode}")
            doc = json.loads(output.read_text())
    finally:
        bench_store.drop_database(admin, name)
    return Figures(**doc, simnet_cpu_s=simnet_cpu, simnet_ticks=ticks + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="mainnet-scale")
    parser.add_argument("--ticks", type=int, default=10, help="counted ticks, after a warm-up")
    parser.add_argument("--url", help="a superuser URL (default: an embedded PostgreSQL)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rpc-url", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logs.configure("warning")
    if args.worker:
        worker(args.rpc_url, args.database_url, args.data_dir, args.ticks, args.output)
        return
    with tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.url:
            figures = measure(database.parse(args.url), args.scenario, args.ticks, tmp)
        else:
            pg = database.start_embedded(tmp / "pg")
            try:
                figures = measure(pg.url.set(database="postgres"), args.scenario, args.ticks, tmp)
            finally:
                pg.stop()
    cpu = statistics.median(figures.cpu_s)
    print(
        f"{args.scenario}, {figures.markets} markets, {figures.orders:,.0f} orders, {METHOD}:"
        f" whole tick CPU median {cpu:.3f} s of {len(figures.cpu_s)} (runs"
        f" {', '.join(f'{c:.2f}' for c in figures.cpu_s)}), wall"
        f" {statistics.median(figures.wall_s):.3f} s; target ≤ {TARGET_S} s:"
        f" {'met' if cpu <= TARGET_S else 'not met'}"
    )
    print(
        f"stages (wall, medians): read {statistics.median(figures.rpc_ms):.0f} ms, score"
        f" {statistics.median(figures.score_ms):.0f} ms, write"
        f" {statistics.median(figures.write_ms):.0f} ms; the simulator's CPU"
        f" {figures.simnet_cpu_s / figures.simnet_ticks:.3f} s per tick"
    )


if __name__ == "__main__":
    main()
