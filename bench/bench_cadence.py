"""A 1 s cadence against a mainnet-scale chain: does the daemon keep up, and whose CPU is it?

    .venv/bin/python bench/bench_cadence.py [--seconds 300] [--cadence 1s] [--methods NAME,...]

Starts, each as its own process, ``driftsnap simnet --scenario mainnet-scale`` (slots of 400 ms
in real time, as mainnet's, its clock starting now) and ``driftsnap run --cadence 1s --clock
chain`` on a fresh embedded PostgreSQL in a temporary directory (deleted afterwards), with the
daemon's defaults but for the methods (default: the program's method only, ``DRIFTSNAP_METHODS``)
and the rate limits (raised so that the client's limiter is not what is measured). Once the
daemon has written its first tick it runs for ``--seconds`` more, then it is stopped with
SIGTERM and the window's ticks are read from the ``ticks`` table: ok, rejected and missed
intervals (every interval of the window has a header, so any interval not ok was lost), how late
each ok tick was taken after its instant, and each process's CPU over the window (user + system
from ``/proc/<pid>/stat``; PostgreSQL: the postmaster and all its backends) per interval, so the
daemon's share is plain even when the machine is the limit. The fills job runs as usual.

A benchmark, not a test: it needs Linux (``/proc``) and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa

from driftsnap import config, logs
from driftsnap.store import database, migrations

if TYPE_CHECKING:
    from collections.abc import Callable

DRIFTSNAP = Path(sys.executable).parent / "driftsnap"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PROGRAM_METHOD = "drift-2023-08"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (Linux ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime (fields 14, 15)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu(pid: int) -> float:
    """CPU of ``pid`` and its live children (PostgreSQL: the postmaster and its backends).

    A backend that exited in the window takes its CPU with it; the daemon keeps its connections
    pooled, so its backends live as long as it does.
    """
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(p)
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Lines:
    """A child's stderr (or stdout), copied to a file, with the JSON lines kept as they come."""

    def __init__(self, stream: IO[bytes], copy: Path) -> None:
        self.docs: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._read, args=(stream, copy), name=f"read-{copy.name}", daemon=True
        )
        self._thread.start()

    def _read(self, stream: IO[bytes], copy: Path) -> None:
        with copy.open("wb") as out:
            for raw in stream:
                out.write(raw)
                doc: dict[str, Any] = {}
                with contextlib.suppress(ValueError):
                    doc = json.loads(raw)
                with self._cond:
                    if isinstance(doc, dict):
                        self.docs.append(doc)
                    self._cond.notify_all()

    def wait_for(
        self, event: str, timeout_s: float, when: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The first line of ``event`` (for which ``when`` holds), waiting up to ``timeout_s``."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for doc in self.docs:
                    if doc.get("event") == event and (when is None or when(doc)):
                        return doc
                left = end - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise SystemExit(f"no {event} within {timeout_s:.0f} s")
                self._cond.wait(min(left, 1.0))


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def window_ticks(url: sa.URL, first: int, last: int) -> list[Any]:
    """The headers of intervals ``first`` to ``last`` (one week: the window is minutes)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT tick_at, taken_at, status, reason FROM ticks"
                        " WHERE interval_index BETWEEN :first AND :last ORDER BY tick_at"
                    ),
                    {"first": first, "last": last},
                ).all()
            )
    finally:
        engine.dispose()


def main() -> None:  # noqa: PLR0915 -- one straight script: start, run, measure, print
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="the measured window")
    parser.add_argument("--cadence", default="1s", help="the daemon's --cadence")
    parser.add_argument("--scenario", default="mainnet-scale")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slot-ms", type=int, default=400, help="the simulator's slot time")
    parser.add_argument(
        "--methods",
        default=PROGRAM_METHOD,
        help="DRIFTSNAP_METHODS for the daemon ('' : every preset)",
    )
    parser.add_argument(
        "--no-fills", action="store_true", help="DRIFTSNAP_FILLS=false: the ticks' CPU alone"
    )
    parser.add_argument("--keep", type=Path, help="copy the logs here")
    args = parser.parse_args()
    logs.configure("warning")
    cadence = config.Settings(cadence=args.cadence).cadence
    methods = args.methods or "all three presets"
    with tempfile.TemporaryDirectory(prefix="driftsnap-cadence-") as tmp_dir:
        tmp = Path(tmp_dir)
        pg = database.start_embedded(tmp / "pg")
        engine = database.create_engine(pg.url)
        with engine.begin() as conn:
            migrations.apply(conn)
        engine.dispose()
        port = free_port()
        sim = subprocess.Popen(  # noqa: S603 -- our own console script, fixed arguments
            [
                str(DRIFTSNAP),
                "simnet",
                "--scenario",
                args.scenario,
                "--seed",
                str(args.seed),
                "--port",
                str(port),
                "--slot-ms",
                str(args.slot_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        daemon: subprocess.Popen[bytes] | None = None
        try:
            assert sim.stdout is not None
            sim_lines = Lines(sim.stdout, tmp / "simnet.log")
            listening = sim_lines.wait_for("simnet_listening", 300)
            env = {
                **os.environ,
                "DRIFTSNAP_DATABASE_URL": pg.url.render_as_string(hide_password=False),
                "DRIFTSNAP_DATA_DIR": str(tmp / "data"),
                "DRIFTSNAP_LOG_FORMAT": "json",
                "DRIFTSNAP_METRICS_PORT": "0",
                "DRIFTSNAP_RPC_RPS": "100",
                "DRIFTSNAP_RPC_GPA_RPS": "10",
                "DRIFTSNAP_METHODS": args.methods,
                "DRIFTSNAP_FILLS": "false" if args.no_fills else "true",
            }
            command = [
                str(DRIFTSNAP), "run", "--cadence", args.cadence, "--clock", "chain",
                "--rpc-url", listening["rpc"],
            ]  # fmt: skip
            daemon = subprocess.Popen(  # noqa: S603 -- our own console script
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            assert daemon.stderr is not None
            daemon_lines = Lines(daemon.stderr, tmp / "daemon.log")
            first = daemon_lines.wait_for("tick_written", 300)
            start_at = datetime.fromisoformat(first["tick_at"])
            postmaster = postmaster_pid(tmp / "pg")
            cpu0 = {
                "daemon": cpu_seconds(daemon.pid),
                "simnet": cpu_seconds(sim.pid),
                "postgres": tree_cpu(postmaster),
            }
            wall0 = time.monotonic()
            # The window: the N intervals after the first tick's, N = seconds / cadence.
            first_interval = int(first["interval"]) + 1
            last_interval = first_interval + round(args.seconds / cadence.total_seconds()) - 1
            print(
                f"measuring {args.seconds} s of chain time from the tick of"
                f" {start_at.isoformat()} (first tick {first.get('ms')} ms)",
                file=sys.stderr,
                flush=True,
            )
            # The window is chain time (the daemon's): a simulator that cannot keep its slots
            # to the wall clock slows the chain, not the count of intervals.
            last = daemon_lines.wait_for(
                "tick_written",
                3 * args.seconds + 60,
                lambda doc: int(doc["interval"]) > last_interval,
            )
            chain_s = (datetime.fromisoformat(last["tick_at"]) - start_at).total_seconds()
            cpu1 = {
                "daemon": cpu_seconds(daemon.pid),
                "simnet": cpu_seconds(sim.pid),
                "postgres": tree_cpu(postmaster),
            }
            wall = time.monotonic() - wall0
            load = os.getloadavg()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
        finally:
            for proc in (daemon, sim):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
        rows = window_ticks(pg.url, first_interval, last_interval)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("daemon.log", "simnet.log"):
                (args.keep / name).write_bytes((tmp / name).read_bytes())
        pg.stop()
    report(
        args=args,
        cadence=cadence,
        methods=methods,
        rows=rows,
        cpu0=cpu0,
        cpu1=cpu1,
        wall=wall,
        chain_s=chain_s,
        load=load,
        code=code,
        docs=daemon_lines.docs,
    )


def report(
    *,
    args: argparse.Namespace,
    cadence: timedelta,
    methods: str,
    rows: list[Any],
    cpu0: dict[str, float],
    cpu1: dict[str, float],
    wall: float,
    chain_s: float,
    load: tuple[float, float, float],
    code: int,
    docs: list[dict[str, Any]],
) -> None:
    intervals = round(args.seconds / cadence.total_seconds())
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    ok = by_status.get("ok", 0)
    late = [(r.taken_at - r.tick_at).total_seconds() for r in rows if r.status == "ok"]
    reasons = sorted({re.sub(r"[\d.]+ s", "N s", r.reason) for r in rows if r.status != "ok"})
    written = [d for d in docs if d.get("event") == "tick_written" and d.get("status") == "ok"]
    stages = {k: [d[k] for d in written[1:]] for k in ("rpc_ms", "score_ms", "write_ms", "ms")}
    print(
        f"driftsnap run --cadence {args.cadence} --clock chain against simnet --scenario"
        f" {args.scenario} (slots of {args.slot_ms} ms each, paced to the wall clock),"
        f" methods: {methods}"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average at the end"
        f" {', '.join(f'{x:.2f}' for x in load)}; the window's {chain_s:.0f} s of chain time"
        f" took {wall:.0f} s of wall time, daemon exit status {code} after SIGTERM;"
        f" fills job {'off' if args.no_fills else 'on'}, polls"
        f" {sum(d.get('event') == 'fills_polled' for d in docs)}"
    )
    print(
        f"intervals in the window: {intervals}; headers stored: {len(rows)}; ok {ok},"
        f" rejected {by_status.get('rejected', 0)}, missed {by_status.get('missed', 0)};"
        f" missed intervals (not ok): {intervals - ok}"
    )
    if late:
        print(
            f"ok ticks taken after their instant: median {statistics.median(late):.2f} s,"
            f" max {max(late):.2f} s (a tick more than 5 s late is stored as missed)"
        )
    for why in reasons:
        print(f"  not ok: {why}")
    if stages["ms"]:
        print(
            "per tick (the daemon's tick_written lines, medians): "
            + ", ".join(
                f"{name} {statistics.median(v):.0f} ms"
                for name, v in (
                    ("read", stages["rpc_ms"]),
                    ("score", stages["score_ms"]),
                    ("write", stages["write_ms"]),
                    ("whole", stages["ms"]),
                )
            )
        )
    per = max(ok, 1)
    print("CPU over the window (user + system), per ok tick and as a share of one core:")
    for name in ("daemon", "simnet", "postgres"):
        spent = cpu1[name] - cpu0[name]
        print(f"  {name:9s} {spent:7.1f} s   {spent / per:.3f} s per tick   {spent / wall:.0%}")
    total = sum(cpu1[n] - cpu0[n] for n in cpu0)
    print(f"  {'all':9s} {total:7.1f} s   {total / per:.3f} s per tick   {total / wall:.0%}")


if __name__ == "__main__":
    main()
