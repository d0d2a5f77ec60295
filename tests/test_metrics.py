"""The health and metrics endpoint: /metrics, /livez, /readyz, and `driftsnap healthcheck`."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from aiohttp import web

from driftsnap import __version__, daemon, metrics
from driftsnap.errors import ConfigError
from driftsnap.simnet import server
from tests.test_daemon import SteppedClock, settings_for

if TYPE_CHECKING:
    import sqlalchemy as sa

SCRIPT = Path(sys.executable).parent / "driftsnap"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_readiness_needs_the_database_and_a_recent_ok_tick() -> None:
    """Not ready without the database, before the first ok tick, or after 3 cadences without."""
    ready = metrics.readiness(last_ok=100.0, cadence_s=60, ready_after=3, database_ok=True, now=150)
    assert ready == metrics.Readiness(True, "ok")
    down = metrics.readiness(last_ok=100.0, cadence_s=60, ready_after=3, database_ok=False, now=150)
    assert down == metrics.Readiness(False, "database unreachable")
    never = metrics.readiness(last_ok=None, cadence_s=60, ready_after=3, database_ok=True)
    assert never == metrics.Readiness(False, "no snapshot written yet")
    stale = metrics.readiness(last_ok=100.0, cadence_s=60, ready_after=3, database_ok=True, now=281)
    assert stale == metrics.Readiness(False, "last snapshot written 181 s ago")


async def _healthcheck(url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "healthcheck",
        "--url",
        url,
        env={"PATH": os.environ.get("PATH", "")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.asyncio
async def test_endpoints_and_healthcheck_follow_the_probe() -> None:
    """/livez is 200; /readyz and healthcheck's exit follow readiness; metric labels are bounded."""
    state = metrics.Readiness(False, "no snapshot written yet")

    async def probe() -> metrics.Readiness:
        return state

    registry = metrics.Metrics()
    registry.ticks.labels("ok").inc()
    registry.rpc_seconds.labels("getProgramAccounts").observe(0.2)
    runner = web.AppRunner(metrics.application(registry, probe))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(base + "/livez")).status_code == 200
            not_ready = await http.get(base + "/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"status": "not ready", "reason": state.reason}
            exposition = (await http.get(base + "/metrics")).text
        code, out = await _healthcheck(base)
        assert (code, out.strip()) == (1, f"{base}/readyz: not ready (no snapshot written yet)")
        state = metrics.Readiness(True, "ok")
        code, out = await _healthcheck(base)
        assert (code, out.strip()) == (0, f"{base}/readyz: ready (ok)")
    finally:
        await runner.cleanup()
    code, out = await _healthcheck(base)  # nobody listening any more
    assert code == 1
    assert "not ready (no answer: ConnectError)" in out
    for name in (
        'driftsnap_ticks_total{status="ok"} 1.0',
        "driftsnap_tick_duration_seconds_bucket",
        'driftsnap_rpc_request_duration_seconds_count{method="getProgramAccounts"} 1.0',
        "driftsnap_last_ok_slot",
        "driftsnap_snapshot_lag_seconds",
        "driftsnap_writer",
    ):
        assert name in exposition
    labels = {
        part.split("=")[0]
        for line in exposition.splitlines()
        if "{" in line and not line.startswith("#")
        for part in line[line.index("{") + 1 : line.index("}")].split(",")
    }
    # version and python: driftsnap_build_info's, one constant series per process.
    assert labels <= {"status", "method", "kind", "market", "reason", "le", "version", "python"}


@pytest.mark.asyncio
async def test_the_daemon_is_ready_only_after_its_first_ok_tick(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """The daemon's /readyz says not ready until a tick is written, then ready; /livez at once."""
    port = free_port()
    async with server.serve("default", seed=31) as sim:
        await sim.advance(5)
        clock, stop = SteppedClock(), asyncio.Event()
        settings = settings_for(pg_url, sim.url, tmp_path, metrics_port=port)
        task = asyncio.create_task(daemon.run(settings, once=False, stop=stop, clock=clock))
        await clock.tick(0)  # the daemon is up and waits for its first sample instant
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(trust_env=False) as http:
            assert (await http.get(base + "/livez")).status_code == 200
            before = await http.get(base + "/readyz")
            await clock.tick()
            after = await http.get(base + "/readyz")
            exposition = (await http.get(base + "/metrics")).text
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert before.json() == {"status": "not ready", "reason": "no snapshot written yet"}
    assert after.json() == {"status": "ready", "reason": "ok"}
    assert 'driftsnap_ticks_total{status="ok"} 1.0' in exposition
    assert 'driftsnap_book_orders{market="SOL-PERP"}' in exposition
    # Series a dashboard graphs exist at 0 before the first event, not "No data".
    for zero in (
        'driftsnap_ticks_total{status="rejected"} 0.0',
        'driftsnap_rpc_errors_total{kind="node_behind"} 0.0',
        'driftsnap_rpc_errors_total{kind="http_429"} 0.0',
        'driftsnap_rpc_errors_total{kind="response_too_large"} 0.0',
        'driftsnap_skipped_accounts_total{reason="bounds"} 0.0',
        'driftsnap_fills_anomalies_total{kind="conflict"} 0.0',
    ):
        assert zero in exposition
    assert (
        f'driftsnap_build_info{{python="{platform.python_version()}",version="{__version__}"}} 1.0'
        in exposition
    )


@pytest.mark.asyncio
async def test_a_metrics_port_in_use_fails_the_start_with_one_line(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """A taken metrics port is a ConfigError naming it, not a traceback or a daemon without it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_for(pg_url, "http://127.0.0.1:9", tmp_path, metrics_port=port)
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await daemon.run(settings, once=False, stop=asyncio.Event(), clock=SteppedClock())
