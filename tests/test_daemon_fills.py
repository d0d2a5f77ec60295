"""`driftsnap run` ingests maker fills beside its snapshots: exactly the chain's, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftsnap import daemon, metrics
from driftsnap.simnet import server
from tests import fills_helpers
from tests.test_daemon import SteppedClock, finish, settings_for

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.asyncio


async def _until(condition: object, timeout_s: float = 30.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


async def test_the_daemon_stores_the_ground_truth_fills_while_it_ticks(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """While ticking, the writer polls fills: the stored set equals the simnet's, no duplicates."""
    engine = sa.create_engine(pg_url)
    registry = metrics.Metrics()
    try:
        async with server.serve("default", seed=3) as node:
            await node.advance(40)  # fills before the daemon starts: the first poll backfills
            settings = settings_for(
                pg_url, node.url, tmp_path, fills_poll=timedelta(milliseconds=200)
            )
            clock = SteppedClock()
            stop = asyncio.Event()
            task = asyncio.create_task(
                daemon.run(settings, once=False, stop=stop, clock=clock, registry=registry),
                name="daemon-under-test",
            )
            await clock.tick(2)
            await node.advance(60)  # more fills while it runs
            await clock.tick(1)
            expected = fills_helpers.truth_rows(node)
            assert expected, "the scenario should have produced fills"
            await _until(lambda: fills_helpers.stored(engine) == expected)
            assert await finish(task, stop) == 0
        stored = fills_helpers.stored(engine)
        assert stored == expected
        assert len(stored) == len(set(stored))
        exported = registry.render().decode()
        assert f"driftsnap_fills_ingested_total {float(len(expected))}" in exported
        assert 'driftsnap_fills_polls_total{status="ok"}' in exported
    finally:
        engine.dispose()


async def test_fills_can_be_turned_off(pg_url: sa.URL, tmp_path: Path) -> None:
    """With DRIFTSNAP_FILLS=false the daemon writes snapshots and stores no fill."""
    engine = sa.create_engine(pg_url)
    try:
        async with server.serve("default", seed=4) as node:
            await node.advance(40)
            settings = settings_for(
                pg_url, node.url, tmp_path, fills=False, fills_poll=timedelta(milliseconds=100)
            )
            clock = SteppedClock()
            stop = asyncio.Event()
            task = asyncio.create_task(
                daemon.run(settings, once=False, stop=stop, clock=clock), name="daemon-no-fills"
            )
            await clock.tick(2)
            await asyncio.sleep(0.5)  # several poll intervals, had polling been on
            assert await finish(task, stop) == 0
        assert fills_helpers.truth_rows(node)
        assert fills_helpers.stored(engine) == []
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from ticks")).scalar_one() >= 2
    finally:
        engine.dispose()
