"""The daemon's tick end to end: read (RPC), score, write, against the mainnet-scale simulator.

    .venv/bin/python bench/bench_daemon.py [--scenario mainnet-scale] [--ticks 5]

Runs ``daemon.run`` in process against an in-process simnet and an embedded PostgreSQL in a
temporary directory (deleted afterwards), on a virtual clock that jumps to each sample instant,
so ticks follow one another without waiting for the cadence. Prints each tick's read, score and
write times; the issue's target is score + write (RPC excluded) under 1 s for a mainnet-scale
tick. A benchmark, not a test: figures depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from driftsnap import config, daemon, logs
from driftsnap.simnet import scenarios, server
from driftsnap.store import database, migrations

if TYPE_CHECKING:
    from driftsnap.flows import tick

TARGET_MS = 1000


class JumpingClock:
    """Virtual time that jumps to every instant the daemon waits for."""

    slot: int | None = None

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    async def start(self, stop: asyncio.Event) -> bool:
        return not stop.is_set()

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        await asyncio.sleep(0)
        self._now = max(self._now, moment)
        return not stop.is_set()


async def bench(scenario: str, ticks: int, tmp: Path) -> list[tick.TickReport]:
    pg = database.start_embedded(tmp / "pg")
    try:
        engine = database.create_engine(pg.url)
        with engine.begin() as conn:
            migrations.apply(conn)
        engine.dispose()
        async with server.serve(scenario, seed=1) as sim:
            await sim.advance(5)
            reports: list[tick.TickReport] = []
            stop = asyncio.Event()

            def on_tick(report: tick.TickReport) -> None:
                reports.append(report)
                if len(reports) >= ticks:
                    stop.set()

            settings = config.Settings(
                rpc_url=SecretStr(sim.url),
                database_url=SecretStr(pg.url.render_as_string(hide_password=False)),
                data_dir=tmp,
                metrics_port=0,
                cadence=timedelta(seconds=60),
                # Every market the simulator serves, not only those with a pool in the program.
                markets=tuple(str(i) for i in sorted(sim.sim.markets)),
                rpc_rps=1000,
                rpc_gpa_rps=1000,
            )
            await daemon.run(settings, once=False, stop=stop, clock=JumpingClock(), on_tick=on_tick)
            return reports
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(scenarios.SCENARIOS), default="mainnet-scale")
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory(prefix="driftsnap-bench-") as tmp:
        reports = asyncio.run(bench(args.scenario, args.ticks, Path(tmp)))
    for r in reports:
        print(
            f"tick {r.interval}: {r.status} {r.markets} markets, {r.orders} orders, "
            f"{r.makers} makers: read {r.rpc_ms} ms, score {r.score_ms} ms, write {r.write_ms} ms"
        )
    local = statistics.median(r.score_ms + r.write_ms for r in reports)
    verdict = "ok" if local < TARGET_MS else "over target"
    print(f"median score + write: {local:.0f} ms (target < {TARGET_MS} ms): {verdict}")
    print(f"median read (RPC): {statistics.median(r.rpc_ms for r in reports):.0f} ms")


if __name__ == "__main__":
    main()
