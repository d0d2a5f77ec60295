"""The chain clock: the daemon's time taken from the node's block times (getSlot, getBlockTime).

Most tests step the simnet by hand (its clock stands still), so each knows which block the node
shows when the clock looks; the last ones run the daemon on the chain clock against a simnet that
runs a simulated minute every 20 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftsnap import calendar, config, daemon, parts
from driftsnap.chain import rpc, snapshot
from driftsnap.chain.clock import RPS, TIMEOUT_S, ChainClock
from driftsnap.flows import tick
from driftsnap.simnet import server
from tests.soak import truth as soak_truth
from tests.test_daemon import SteppedClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.asyncio

MINUTE_MS = 60_000
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47


@contextlib.asynccontextmanager
async def chain_clock(url: str) -> AsyncIterator[ChainClock]:
    settings = config.Settings(rpc_url=SecretStr(url), metrics_port=0)
    async with parts.chain_clock(settings) as clock:
        assert await clock.start(asyncio.Event())
        yield clock


async def until(condition: Any, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def node_and_clock(
    seed: int, *, slot_ms: int = MINUTE_MS, advance: int = 0
) -> AsyncIterator[tuple[server.SimnetServer, ChainClock]]:
    """A simnet standing still (``advance`` slots in) and a started chain clock on it."""
    async with server.serve("quiet", seed=seed, slot_ms=slot_ms) as node:
        await node.advance(advance)
        async with chain_clock(node.url) as clock:
            yield node, clock


def at(sim: server.SimnetServer, slot: int, plus_s: float = 0) -> datetime:
    return datetime.fromtimestamp(sim.sim.ts_at(slot) + plus_s, UTC)


async def test_now_is_the_block_time_of_the_nodes_latest_slot() -> None:
    """After start, now() is the latest block's time and slot the latest slot, to the second."""
    async with node_and_clock(1, advance=7) as (node, clock):
        assert clock.slot == node.sim.slot
        assert clock.now() == datetime.fromtimestamp(node.sim.ts, UTC)
        assert node.sim.ts == node.sim.ts_at(node.sim.slot)


async def test_it_wakes_in_the_block_in_force_at_the_moment_and_says_the_moment() -> None:
    """With even one-minute blocks, the wait ends once the block covering the moment is the
    node's latest (not the next one), and now() is then the moment itself."""
    async with node_and_clock(2) as (node, clock):
        start = node.sim.slot
        moment = at(node, start + 4, plus_s=31.5)  # inside block start+4
        stop = asyncio.Event()
        waiting = asyncio.create_task(clock.sleep_until(moment, stop))
        for _ in range(3):  # blocks start+1..start+3: their blocks end before the moment
            await node.advance(1)
            await until(lambda: clock.slot == node.sim.slot)
            await asyncio.sleep(0.05)
            assert not waiting.done()
        await node.advance(1)
        assert await asyncio.wait_for(waiting, 10)
        assert clock.slot == start + 4
        assert clock.now() == moment
        # Time never goes back: the next moment of the same block is reached at once.
        assert await clock.sleep_until(moment - timedelta(seconds=20), stop)
        assert clock.now() == moment


async def test_with_sub_second_blocks_it_waits_for_a_block_at_or_past_the_moment() -> None:
    """At mainnet's 400 ms slots block times are whole seconds: the clock wakes at the first
    block whose time is at or past the moment, and now() is that block's time."""
    async with node_and_clock(3, slot_ms=400) as (node, clock):
        moment = datetime.fromtimestamp(node.sim.ts + 2.5, UTC)
        stop = asyncio.Event()
        waiting = asyncio.create_task(clock.sleep_until(moment, stop))
        for _ in range(40):
            await node.advance(1)
            await until(lambda: clock.slot == node.sim.slot or waiting.done())
            if waiting.done():
                break
        assert waiting.result()
        assert node.sim.ts >= moment.timestamp()
        assert node.sim.ts_at(node.sim.slot - 1) < moment.timestamp()  # not a block later
        assert clock.now() == datetime.fromtimestamp(node.sim.ts, UTC)


async def test_a_stop_ends_the_wait_with_false_at_once() -> None:
    """A stop while waiting for a far moment returns False within a moment, not at the moment."""
    async with node_and_clock(4) as (node, clock):
        stop = asyncio.Event()
        waiting = asyncio.create_task(clock.sleep_until(at(node, node.sim.slot + 500), stop))
        await asyncio.sleep(0.3)
        stop.set()
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, 5) is False
        assert time.monotonic() - started < 1


async def test_the_clock_waits_out_a_node_outage_and_goes_on() -> None:
    """While the node is away the clock keeps its last time and retries; back, it goes on."""
    async with node_and_clock(5) as (node, clock):
        before = clock.now()
        moment = at(node, node.sim.slot + 3)
        stop = asyncio.Event()
        waiting = asyncio.create_task(clock.sleep_until(moment, stop))
        await node.go_away()
        await node.advance(5)
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert clock.now() == before
        await node.come_back()
        assert await asyncio.wait_for(waiting, 10)
        assert clock.slot == node.sim.slot
        assert clock.now() == datetime.fromtimestamp(node.sim.ts, UTC)


async def test_a_node_behind_never_moves_the_clock_back() -> None:
    """Slots answered from behind (slot_backwards) leave the clock where it was."""
    async with node_and_clock(6, advance=20) as (node, clock):
        now, slot = clock.now(), clock.slot
        node.set_faults(slot_backwards=50, backwards_by=10)
        stop = asyncio.Event()
        assert not await asyncio.wait_for(
            _stopped_after(clock.sleep_until(at(node, node.sim.slot + 2), stop), stop, 0.5),
            5,
        )
        assert (clock.now(), clock.slot) == (now, slot)


async def _stopped_after(waiting: Any, stop: asyncio.Event, seconds: float) -> bool:
    task = asyncio.create_task(waiting)
    await asyncio.sleep(seconds)
    stop.set()
    result: bool = await task
    return result


async def test_a_snapshot_read_before_the_block_in_force_is_rejected() -> None:
    """User accounts read at a slot before the one the clock saw in force are no book."""
    read = snapshot.Snapshot(slot=100, ts=1, books={0: object()})  # type: ignore[dict-item]
    rejected = tick.below(read, 103)
    assert rejected.rejection == snapshot.Rejection.SLOT_REGRESSION
    assert "before slot 103" in rejected.detail
    assert rejected.books == {}
    assert tick.below(read, 100) is read


async def test_the_clock_reads_with_its_own_client_and_read_methods_only() -> None:
    """The chain clock's client sends nothing outside the read allowlist and has its own budget."""
    settings = config.Settings(rpc_url=SecretStr("http://127.0.0.1:9/?api-key=k"))
    clock = parts.chain_clock(settings)
    try:
        chosen = clock._client.settings
        assert chosen.max_retries == 0
        assert chosen.rps == RPS
        assert chosen.timeout_s <= TIMEOUT_S
        assert {"getSlot", "getBlockTime"} <= rpc.READ_METHODS
    finally:
        await clock.__aexit__(None, None, None)


# ---------------------------------------------------------------------------- the daemon


def stored_ticks(url: sa.URL, start: datetime, end: datetime) -> list[soak_truth.StoredTick]:
    """The tick headers stored from ``start`` to ``end``, in time order."""
    engine = sa.create_engine(url)
    try:
        return soak_truth.stored_ticks(engine, start, end)
    finally:
        engine.dispose()


def _settings(url: sa.URL, rpc_url: str, tmp: Path, **changes: Any) -> config.Settings:
    given: dict[str, Any] = {
        "database_url": SecretStr(url.render_as_string(hide_password=False)),
        "rpc_url": SecretStr(rpc_url),
        "data_dir": tmp,
        "metrics_port": 0,
        "rpc_timeout_s": 5,
        "rpc_rps": 2_000,
        "rpc_gpa_rps": 200,
        "clock": "chain",
        "fills": False,
        "markets": ("SOL-PERP",),
    }
    return config.Settings(**{**given, **changes})


@pytest.mark.slow
async def test_on_a_fast_chain_each_tick_is_its_instant_read_in_the_block_in_force(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """DRIFTSNAP_CLOCK=chain against a simnet running a minute every 20 ms: a tick per 10
    simulated minutes, each taken at its instant, at the slot whose block was in force then."""
    genesis = int((MONDAY + timedelta(hours=1)).timestamp())
    async with server.serve(
        "quiet", seed=7, slot_ms=MINUTE_MS, tick_s=0.02, genesis_ts=genesis
    ) as node:
        settings = _settings(pg_url, node.url, tmp_path, cadence=timedelta(minutes=10))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(settings, once=False, stop=stop))
        await until(lambda: node.sim.ts >= genesis + 3 * 3600, timeout_s=60)
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
        ticks = stored_ticks(pg_url, MONDAY, MONDAY + timedelta(days=1))
        ok = [t for t in ticks if t.status == "ok"]
        assert len(ok) >= 15
        assert [t.interval for t in ticks] == list(range(ticks[0].interval, ticks[-1].interval + 1))
        assert all(t.taken_at == t.at for t in ok)
        # Read in the block in force at the instant; a read straddling a block lands after it.
        lag = [(t.gpa_slot or 0) - soak_truth.slot_at(node.sim, t.at) for t in ok]
        assert min(lag) >= 0
        assert max(lag) <= snapshot.SnapshotSettings().max_slot_gap
        assert lag.count(0) >= 0.8 * len(ok)


async def test_an_instant_the_clock_oversleeps_is_missed_not_sampled_late(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """When the chain jumps past a sample instant (the node was away, the process stalled), the
    interval is stored missed with how late the daemon woke, and later instants are sampled."""
    genesis = int((MONDAY + timedelta(hours=1)).timestamp())
    async with server.serve("quiet", seed=8, slot_ms=MINUTE_MS, genesis_ts=genesis) as node:
        settings = _settings(pg_url, node.url, tmp_path, cadence=timedelta(hours=1))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(settings, once=False, stop=stop))
        await asyncio.sleep(1)  # the daemon opens the week and waits for its first instant
        await node.advance(150)  # 150 minutes at once: the first instant is long past
        await asyncio.sleep(1)
        for _ in range(150):  # then minute by minute, through two more instants
            await node.advance(1)
            await asyncio.sleep(0.03)
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    ticks = stored_ticks(pg_url, MONDAY, MONDAY + timedelta(days=1))
    first = ticks[0]
    assert (first.status, first.taken_at, first.gpa_slot) == ("missed", None, None)
    assert first.reason.startswith("woke ")
    assert first.reason.endswith("s after the sample instant (at most 5 s): not sampled")
    late_s = float(first.reason.split()[1])
    assert late_s > 5
    # An instant passed over while the daemon handled the late one says so; then all are ok.
    statuses = [t.status for t in ticks]
    assert statuses.count("ok") >= 2
    assert statuses == sorted(statuses, key=lambda s: s == "ok")
    assert all(t.reason == tick.OVERRUN for t in ticks[1:] if t.status == "missed")
    assert all(t.taken_at == t.at for t in ticks if t.status == "ok")


async def test_intervals_passed_over_before_a_failed_tick_still_get_their_header(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """A late wake (owed), intervals passed over, a failed tick (owed), then a write: every
    interval in between is stored missed, none is left without a header (a regression: the
    owed ticks were written before the gap was measured, hiding it)."""
    start = MONDAY + timedelta(hours=9)
    async with server.serve("quiet", seed=9) as node:
        await node.advance(5)
        settings = _settings(
            pg_url, node.url, tmp_path, clock="wall", cadence=timedelta(minutes=1),
            rpc_max_retries=0,
        )  # fmt: skip
        clock, stop = SteppedClock(start), asyncio.Event()
        task = asyncio.create_task(daemon.run(settings, once=False, stop=stop, clock=clock))
        await clock.tick()  # an ok tick
        await clock.tick(to=clock.now() + timedelta(seconds=200))  # woke 2-3 minutes late
        await node.go_away()
        await clock.tick()  # the node is away: a failed tick, owed
        await node.come_back()
        await node.advance(3)
        await clock.tick()  # an ok tick writes the owed ones and the gaps
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    ticks = stored_ticks(pg_url, MONDAY, MONDAY + timedelta(days=1))
    intervals = [t.interval for t in ticks]
    assert intervals == list(range(intervals[0], intervals[0] + len(intervals)))
    statuses = [t.status for t in ticks]
    assert statuses[0] == "ok"
    assert statuses[-1] == "ok"
    assert statuses[1:-1] == ["missed"] * (len(ticks) - 2)
    assert len(ticks) >= 5  # the ok, the late, at least one passed over, the failed, the ok
    assert ticks[1].reason.startswith("woke ")
    assert ticks[-2].reason.startswith("getProgramAccounts")


async def test_a_daemon_down_over_monday_leaves_no_interval_of_either_week_without_a_header(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """Stopped before Sunday's last intervals, started again after Monday's first: the old
    week's tail and the new week's head are stored missed (a regression: both were left out)."""
    sunday = MONDAY - timedelta(minutes=10)
    async with server.serve("quiet", seed=10) as node:
        await node.advance(5)
        settings = _settings(pg_url, node.url, tmp_path, clock="wall", cadence=timedelta(minutes=1))
        for start in (sunday, MONDAY + timedelta(minutes=6)):
            clock, stop = SteppedClock(start), asyncio.Event()
            task = asyncio.create_task(daemon.run(settings, once=False, stop=stop, clock=clock))
            await clock.tick()
            await node.advance(2)
            await clock.tick()
            stop.set()
            assert await asyncio.wait_for(task, 30) == 0
    ticks = stored_ticks(pg_url, sunday, MONDAY + timedelta(hours=1))
    starts = [
        calendar.Week.containing(t.at).start + t.interval * timedelta(minutes=1) for t in ticks
    ]
    assert starts == [starts[0] + i * timedelta(minutes=1) for i in range(len(starts))]
    assert starts[0] < MONDAY < starts[-1]
    statuses = [t.status for t in ticks]
    assert statuses[:2] == ["ok", "ok"]
    assert statuses[-2:] == ["ok", "ok"]
    assert set(statuses[2:-2]) == {"missed"}
    assert {t.reason for t in ticks[2:-2]} == {tick.NOBODY_SAMPLED}
    assert len(ticks) >= 4 + 7 + 5  # Sunday's last 7 or more, Monday's first 5 or more
