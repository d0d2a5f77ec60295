"""`driftsnap run` as an operator runs it: a subprocess against the simnet and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftsnap import config, daemon, parts
from driftsnap.errors import ConfigError
from driftsnap.scoring import methods
from driftsnap.simnet import server

if TYPE_CHECKING:
    from tests import pg

SCRIPT = Path(sys.executable).parent / "driftsnap"
MARKETS = 3  # the default scenario's perp markets, all with a pool in the shipped program


def env_for(url: sa.URL, rpc_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DRIFTSNAP_DATABASE_URL": url.render_as_string(hide_password=False),
        "DRIFTSNAP_RPC_URL": rpc_url,
        "DRIFTSNAP_DATA_DIR": str(tmp),
        "DRIFTSNAP_METRICS_PORT": "0",
        "DRIFTSNAP_LOG_FORMAT": "json",
        "DRIFTSNAP_RPC_MAX_RETRIES": "1",
        "DRIFTSNAP_ALLOW_ROOT": "true",  # CI runs as root; the refusal has its own test
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Daemon:
    """A `driftsnap run` subprocess whose JSON log lines are read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str, env: dict[str, str]) -> Daemon:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            "run",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def wait_for(self, event: str, timeout_s: float = 30) -> dict[str, Any]:
        """The next log line of ``event`` (every line read is kept in ``lines``)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"exited before {event}: {''.join(self.lines)[-2000:]}")
                line = raw.decode()
                self.lines.append(line)
                doc = json.loads(line) if line.startswith("{") else {}
                if doc.get("event") == event:
                    return dict(doc)

    async def finish(self, timeout_s: float = 10) -> tuple[int, str]:
        """Exit status and all output once it exits within ``timeout_s``."""
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout_s)
        self.lines.append(err.decode())
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode() + "".join(self.lines)


def test_run_without_an_rpc_url_prints_the_hint_and_exits_2(tmp_path: Path) -> None:
    """No RPC URL: one line pointing at --rpc-url and demo, exit 2, never a silent simulator."""
    out = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), "run", "--once"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_DATA_DIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"driftsnap: error: {parts.RUN_HINT}"


@pytest.mark.asyncio
async def test_run_with_a_market_the_chain_lacks_refuses_to_start(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """`run --market FOO-PERP` is a start-up error, exit 2, naming the markets the chain has:
    not ten missed ticks and then a give-up."""
    async with server.serve("default", seed=5) as node:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "run", "--market", "FOO-PERP",
            env=env_for(pg_url, node.url, tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("driftsnap: error: perp market(s) 'FOO-PERP' not found on chain")
    assert "0=SOL-PERP" in last


@pytest.mark.asyncio
async def test_sigterm_stops_the_daemon_with_exit_0_within_10_s(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """SIGTERM after a tick: the writer lock is released and the process exits 0 in < 10 s."""
    async with server.serve("default", seed=21, tick_s=0.05) as sim:
        proc = await Daemon.start("--cadence", "1s", env=env_for(pg_url, sim.url, tmp_path))
        written = await proc.wait_for("tick_written")
        assert written["status"] == "ok"
        assert written["markets"] == MARKETS
        sent = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code, output = await proc.finish(10)
        assert time.monotonic() - sent < 10
    assert code == 0, output
    assert '"event": "writer_released"' in output
    assert '"event": "daemon_stopped"' in output


@pytest.mark.asyncio
async def test_clock_chain_from_the_command_line_follows_the_chains_time(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """`run --clock chain` against a fast simulated chain of March 2025: the ticks are of the
    chain's week and instants, not the wall clock's."""
    genesis = datetime(2025, 3, 3, 6, tzinfo=UTC)  # a Monday of 2025-W10, 06:00
    async with server.serve(
        "default", seed=22, tick_s=0.02, slot_ms=60_000, genesis_ts=int(genesis.timestamp())
    ) as sim:
        env = env_for(
            pg_url, sim.url, tmp_path, DRIFTSNAP_RPC_RPS="500", DRIFTSNAP_RPC_GPA_RPS="100"
        )
        proc = await Daemon.start("--clock", "chain", "--cadence", "1h", env=env)
        written = await proc.wait_for("tick_written", timeout_s=60)
        proc.proc.send_signal(signal.SIGTERM)
        code, output = await proc.finish(10)
    assert code == 0, output
    assert written["status"] == "ok"
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            taken = conn.execute(
                sa.text("SELECT tick_at, taken_at FROM ticks WHERE status = 'ok'")
            ).all()
    finally:
        engine.dispose()
    assert taken
    for tick_at, taken_at in taken:
        assert genesis < tick_at < genesis + timedelta(days=1)
        assert taken_at == tick_at  # the chain clock wakes in the block in force at the instant


def _write_in_flight(url: sa.URL, deadline_s: float) -> bool:
    """Poll until a daemon session's transaction has written (holds an xid); False at deadline."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            end = time.monotonic() + deadline_s
            while time.monotonic() < end:
                found = conn.execute(
                    sa.text(
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = :app"
                        " AND backend_xid IS NOT NULL AND datname = current_database()"
                    ),
                    {"app": parts.APPLICATION_NAME},
                ).first()
                conn.rollback()
                if found is not None:
                    return True
        return False
    finally:
        engine.dispose()


@pytest.mark.asyncio
async def test_kill_9_during_a_write_leaves_no_partial_snapshot(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """SIGKILL while a tick's transaction has written rows: every stored ok tick is complete."""
    async with server.serve("default", seed=22, tick_s=0.05) as sim:
        env = env_for(pg_url, sim.url, tmp_path)
        proc = await Daemon.start("--cadence", "1s", env=env)
        await proc.wait_for("tick_written")
        assert await asyncio.to_thread(_write_in_flight, pg_url, 30)
        proc.proc.kill()
        code, _ = await proc.finish()
        assert code == -signal.SIGKILL
        # The killed session's lock and transaction died with it: a new daemon writes at once.
        again = await Daemon.start("--once", "--cadence", "1s", env=env)
        code, output = await again.finish(60)
        assert code == 0, output
    n_methods = len(methods.PRESETS)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:

            def scalar(sql: str) -> Any:
                return conn.execute(sa.text(sql)).scalar_one()

            ok = scalar("SELECT count(*) FROM ticks WHERE status = 'ok'")
            assert ok >= 2
            assert scalar("SELECT count(*) FROM snapshots") == ok * MARKETS
            assert scalar("SELECT count(*) FROM snapshot_methods") == ok * MARKETS * n_methods
            # Every (tick, market) has the per-maker scores of the detail method (the program's,
            # drift-2023-08, by default), and the accumulators count every tick.
            assert (
                scalar(
                    "SELECT count(DISTINCT (tick_at, market_index, method_id))"
                    " FROM tick_maker_scores"
                )
                == ok * MARKETS
            )
            assert scalar("SELECT min(snapshots) = max(snapshots) FROM week_methods")
            assert scalar("SELECT sum(snapshots) FROM week_methods") == ok * MARKETS * n_methods
            assert scalar("SELECT sum(ticks) FROM week_ticks") == scalar(
                "SELECT count(*) FROM ticks"
            )
    finally:
        engine.dispose()


@pytest.mark.asyncio
async def test_secrets_never_appear_in_logs_or_metrics(
    pg_cluster: pg.Cluster, pg_url: sa.URL, tmp_path: Path
) -> None:
    """The database password and the RPC key appear in no log line (debug) and no endpoint."""
    password = "Sentinel-DbPa55-7e41"  # noqa: S105 (a sentinel, not a credential)
    key = "Sentinel-RpcKey-0b9d"
    role = f"sentinel_{os.getpid()}"
    with pg_cluster.admin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    try:
        port = free_port()
        async with server.serve("default", seed=23, tick_s=0.05) as sim:
            env = env_for(
                pg_url.set(username=role, password=password),
                f"{sim.url}/?api-key={key}",
                tmp_path,
                DRIFTSNAP_LOG_LEVEL="debug",
                DRIFTSNAP_METRICS_PORT=str(port),
            )
            proc = await Daemon.start("--cadence", "1s", env=env)
            await proc.wait_for("tick_written")
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(trust_env=False) as http:
                answers = {p: await http.get(base + p) for p in ("/metrics", "/livez", "/readyz")}
            proc.proc.send_signal(signal.SIGTERM)
            code, output = await proc.finish()
        assert code == 0, output
        assert answers["/livez"].status_code == 200
        assert answers["/readyz"].status_code == 200, answers["/readyz"].text
        assert answers["/readyz"].json() == {"status": "ready", "reason": "ok"}
        exposition = answers["/metrics"].text
        assert 'driftsnap_ticks_total{status="ok"}' in exposition
        assert 'driftsnap_rpc_request_duration_seconds_count{method="getProgramAccounts"}' in (
            exposition
        )
        assert "driftsnap_writer 1.0" in exposition
        everything = output + "".join(a.text for a in answers.values())
        assert '"event": "rpc_call"' in output  # debug lines were on
        assert password not in everything
        assert key not in everything
    finally:
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
        engine.dispose()
        with pg_cluster.admin() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}")


@pytest.mark.parametrize(
    ("euid", "allow_root", "refused"),
    [(0, False, True), (0, True, False), (10001, False, False)],
)
def test_the_daemon_refuses_root_unless_allowed(
    tmp_path: Path, euid: int, allow_root: bool, refused: bool
) -> None:
    """uid 0 is refused with a line naming DRIFTSNAP_ALLOW_ROOT; other users and the opt-in pass."""
    settings = config.Settings(
        rpc_url=SecretStr("http://127.0.0.1:1"), data_dir=tmp_path, allow_root=allow_root
    )
    if refused:
        with pytest.raises(ConfigError, match="DRIFTSNAP_ALLOW_ROOT=true"):
            daemon.refuse_root(settings, euid=euid)
    else:
        daemon.refuse_root(settings, euid=euid)


def test_run_as_root_is_refused_from_the_command_line(tmp_path: Path) -> None:
    """As root (CI), `driftsnap run` without the opt-in stops at once with that one line."""
    if os.geteuid() != 0:
        pytest.skip("only root can show the refusal end to end; the unit test covers the rule")
    out = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), "run", "--once", "--rpc-url", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_DATA_DIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "refusing to run the daemon as root" in out.stderr
