"""The daemon's loop in process: simnet over real HTTP, a real PostgreSQL, a stepped clock.

The clock is virtual: the daemon asks it to sleep until a sample instant and the test lets it go,
one tick at a time, so each test knows exactly which ticks ran and the week's schedule (drawn
from the committed seed) is followed without waiting for it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftsnap import calendar, config, daemon, parts, sampling
from driftsnap.scoring import bookfile, scorer
from driftsnap.simnet import server, truth
from driftsnap.store import database, migrations, schema, snapshots, weeks
from driftsnap.store.errors import ConnectError, SchemaError

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from pathlib import Path

pytestmark = pytest.mark.asyncio

START = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # a Monday, 2026-W47
WEEK = calendar.Week.containing(START)
CADENCE = timedelta(seconds=60)


class SteppedClock:
    """Virtual time: it moves to a sample instant only when the test lets the next tick go, or
    past it to a later time the test names (a stalled process, a clock that jumped)."""

    slot: int | None = None  # like the wall clock, it knows no slot

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._idle = asyncio.Event()
        self._go = asyncio.Event()
        self._to: datetime | None = None

    def now(self) -> datetime:
        return self._now

    async def start(self, stop: asyncio.Event) -> bool:
        return not stop.is_set()

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        self._idle.set()
        go = asyncio.create_task(self._go.wait(), name="clock-go")
        halt = asyncio.create_task(stop.wait(), name="clock-stop")
        try:
            await asyncio.wait({go, halt}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            go.cancel()
            halt.cancel()
            await asyncio.gather(go, halt, return_exceptions=True)
        self._go.clear()
        if stop.is_set():
            return False
        self._now = max(self._now, moment, self._to or moment)
        self._to = None
        return True

    @property
    def waiting(self) -> bool:
        """Whether the daemon is waiting for a sample instant (not standby, not mid-tick)."""
        return self._idle.is_set()

    async def go(self, to: datetime | None = None) -> None:
        """Once the daemon waits for its next instant, let it take that tick (waking at ``to``
        instead, if that is later)."""
        await asyncio.wait_for(self._idle.wait(), 30)
        self._idle.clear()
        self._to = to
        self._go.set()

    async def tick(self, n: int = 1, *, to: datetime | None = None) -> None:
        """Let ``n`` ticks run (the first waking at ``to`` if given), and return once the daemon
        waits for the next instant."""
        for i in range(n):
            await self.go(to if i == 0 else None)
        await asyncio.wait_for(self._idle.wait(), 30)


def settings_for(url: sa.URL, rpc_url: str, tmp: Path, **changes: Any) -> config.Settings:
    given: dict[str, Any] = {
        "database_url": SecretStr(url.render_as_string(hide_password=False)),
        "rpc_url": SecretStr(rpc_url),
        "data_dir": tmp,
        "metrics_port": 0,
        "rpc_max_retries": 0,  # an RPC failure fails its tick at once
        "rpc_timeout_s": 5,
        "cadence": CADENCE,
    }
    return config.Settings(**{**given, **changes})


async def run_daemon(
    settings: config.Settings, clock: SteppedClock, stop: asyncio.Event
) -> asyncio.Task[int]:
    task = asyncio.create_task(
        daemon.run(settings, once=False, stop=stop, clock=clock), name="daemon-under-test"
    )
    return task


async def finish(task: Awaitable[int], stop: asyncio.Event) -> int:
    stop.set()
    return await asyncio.wait_for(task, 30)


def tick_rows(url: sa.URL) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            t = schema.ticks
            return list(
                conn.execute(
                    sa.select(
                        t.c.tick_at, t.c.interval_index, t.c.status, t.c.reason, t.c.gpa_slot
                    ).order_by(t.c.tick_at)
                ).all()
            )
    finally:
        engine.dispose()


async def test_ticks_store_one_header_each_and_the_scores_of_the_true_books(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """N ticks store N ok headers; every stored score is scorer.score of the simnet's true book."""
    async with server.serve("default", seed=5) as sim:
        await sim.advance(5)
        clock, stop = SteppedClock(), asyncio.Event()
        settings = settings_for(pg_url, sim.url, tmp_path)
        task = await run_daemon(settings, clock, stop)
        for _ in range(3):
            await clock.tick()
            await sim.advance(3)
        assert await finish(task, stop) == 0
        rows = tick_rows(pg_url)
        assert [r.status for r in rows] == ["ok"] * 3
        assert [r.interval_index for r in rows] == list(
            range(rows[0].interval_index, rows[0].interval_index + 3)
        )
        engine = sa.create_engine(pg_url)
        try:
            with engine.connect() as conn:
                for row in rows:
                    for index in sim.sim.markets:
                        true_book = bookfile.from_dict(truth.book(sim.sim, row.gpa_slot, index))
                        for method in settings.method_presets():
                            stored = snapshots.read_scores(
                                conn, row.tick_at, true_book.market, method.params_hash
                            )
                            assert stored == scorer.score(true_book, method)
        finally:
            engine.dispose()


async def test_a_rejected_snapshot_is_a_rejected_header_without_scores(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """A snapshot whose slot went backwards is a rejected tick with its reason and no rows."""
    async with server.serve("default", seed=6) as sim:
        await sim.advance(5)
        clock, stop = SteppedClock(), asyncio.Event()
        # No fills job: the fault is the next call's, and it must be the snapshot's.
        settings = settings_for(pg_url, sim.url, tmp_path, fills=False)
        task = await run_daemon(settings, clock, stop)
        await clock.tick()
        sim.set_faults(slot_backwards=1, backwards_by=5)  # the next gPA answers 5 slots back
        await clock.tick()
        assert await finish(task, stop) == 0
    rows = tick_rows(pg_url)
    assert [r.status for r in rows] == ["ok", "rejected"]
    assert rows[1].reason.startswith("slot_regression: ")
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            for table in (schema.snapshots, schema.tick_maker_scores, schema.snapshot_methods):
                at = conn.execute(sa.select(table.c.tick_at).distinct()).scalars().all()
                assert at == [rows[0].tick_at], table.name
    finally:
        engine.dispose()


async def test_rpc_down_for_three_intervals_records_three_missed_ticks_then_recovers(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """While the node is away each tick fails; when it returns the misses are stored with why."""
    async with server.serve("default", seed=7) as sim:
        await sim.advance(5)
        clock, stop = SteppedClock(), asyncio.Event()
        task = await run_daemon(settings_for(pg_url, sim.url, tmp_path), clock, stop)
        await clock.tick()
        await sim.go_away()
        await clock.tick(3)
        assert [r.status for r in tick_rows(pg_url)] == ["ok"]  # nothing written while down
        await sim.come_back()
        await sim.advance(3)
        await clock.tick()
        assert await finish(task, stop) == 0
    rows = tick_rows(pg_url)
    assert [r.status for r in rows] == ["ok", "missed", "missed", "missed", "ok"]
    assert [r.interval_index - rows[0].interval_index for r in rows] == [0, 1, 2, 3, 4]
    assert all("TransportError" in r.reason or "getProgramAccounts" in r.reason for r in rows[1:4])


async def test_a_database_restart_mid_run_records_missed_ticks_when_it_returns(
    tmp_path: Path,
) -> None:
    """A second embedded server is stopped for two ticks and started again: both are missed."""
    pg_dir = tmp_path / "pg"
    cluster = await asyncio.to_thread(database.start_embedded, pg_dir)
    try:
        engine = database.create_engine(cluster.url)
        with engine.begin() as conn:
            migrations.apply(conn)
        engine.dispose()
        async with server.serve("default", seed=8) as sim:
            await sim.advance(5)
            clock, stop = SteppedClock(), asyncio.Event()
            task = await run_daemon(settings_for(cluster.url, sim.url, tmp_path), clock, stop)
            await clock.tick()
            await asyncio.to_thread(cluster.stop)
            await clock.tick(2)
            cluster = await asyncio.to_thread(database.start_embedded, pg_dir)
            await sim.advance(3)
            await clock.tick()
            assert await finish(task, stop) == 0
        rows = tick_rows(cluster.url)
        assert [r.status for r in rows] == ["ok", "missed", "missed", "ok"]
        assert all(r.reason.startswith("database: ") for r in rows[1:3])
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_database_restarting_as_the_daemon_starts_is_waited_for(tmp_path: Path) -> None:
    """The server is down when the daemon starts and back a moment later: the daemon waits (no
    traceback, no exit) and takes its tick; down for good, it is one error naming the server."""
    pg_dir = tmp_path / "pg"
    cluster = await asyncio.to_thread(database.start_embedded, pg_dir)
    try:
        engine = database.create_engine(cluster.url)
        with engine.begin() as conn:
            migrations.apply(conn)
        engine.dispose()
        await asyncio.to_thread(cluster.stop)
        async with server.serve("default", seed=24) as sim:
            await sim.advance(5)
            settings = settings_for(cluster.url, sim.url, tmp_path)
            clock, stop = SteppedClock(), asyncio.Event()
            task = await run_daemon(settings, clock, stop)
            await asyncio.sleep(daemon.STARTUP_RETRY_S / 2)
            assert not task.done()  # waiting for the server, not failed
            cluster = await asyncio.to_thread(database.start_embedded, pg_dir)
            await clock.tick()
            assert await finish(task, stop) == 0
            assert [r.status for r in tick_rows(cluster.url)] == ["ok"]
            await asyncio.to_thread(cluster.stop)
            gone = asyncio.Event()
            with pytest.raises(ConnectError) as err:
                await daemon.run(settings, once=True, stop=gone, clock=SteppedClock())
            assert "\n" not in str(err.value)
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_one_writer_per_database_and_the_standby_takes_over(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """A second daemon waits as standby while the first writes, and writes once it has stopped."""
    async with server.serve("default", seed=9) as sim:
        await sim.advance(5)
        settings = settings_for(pg_url, sim.url, tmp_path)
        first_clock, first_stop = SteppedClock(), asyncio.Event()
        first = await run_daemon(settings, first_clock, first_stop)
        await first_clock.tick()
        second_clock, second_stop = SteppedClock(START + timedelta(minutes=5)), asyncio.Event()
        second = await run_daemon(settings, second_clock, second_stop)
        await asyncio.sleep(2 * daemon.LOCK_POLL_S)  # it polls for the lock, in real time
        assert not second_clock.waiting  # still standby: never reached a sample wait
        await sim.advance(3)
        await first_clock.tick()
        assert await finish(first, first_stop) == 0
        await sim.advance(3)
        # tick() first waits for the standby to take the lock and reach its first sample wait.
        await second_clock.tick()
        await sim.advance(3)
        await second_clock.tick()
        assert await finish(second, second_stop) == 0
    rows = tick_rows(pg_url)
    statuses = [r.status for r in rows]
    # The first's two ticks, the intervals nobody sampled while the writer changed, the second's.
    assert statuses[:2] == ["ok", "ok"]
    assert statuses[-2:] == ["ok", "ok"]
    assert set(statuses[2:-2]) == {"missed"}
    assert [r.interval_index for r in rows] == list(
        range(rows[0].interval_index, rows[0].interval_index + len(rows))
    )


async def test_sample_instants_verify_against_the_committed_seed_across_a_restart(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """Ok ticks sit at the instants of the committed seed, which a restart reuses; verify agrees."""
    async with server.serve("default", seed=10) as sim:
        await sim.advance(5)
        settings = settings_for(pg_url, sim.url, tmp_path)
        for restart in range(2):
            clock, stop = SteppedClock(START + timedelta(minutes=10 * restart)), asyncio.Event()
            task = await run_daemon(settings, clock, stop)
            for _ in range(2):
                await clock.tick()
                await sim.advance(3)
            assert await finish(task, stop) == 0
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            record = weeks.record(conn, WEEK)
            assert record is not None
            assert record.seed is None  # still secret until the week close
            seed = parts.seed_files(settings).read(WEEK, record.seed_sha256)
            assert seed is not None
            weeks.reveal_seed(conn, WEEK, seed)
            t = schema.ticks
            ok = conn.execute(
                sa.select(t.c.interval_index, t.c.taken_at).where(t.c.status == "ok")
            ).all()
    finally:
        engine.dispose()
    assert len(ok) == 4
    assert sampling.verify(WEEK, CADENCE, seed, record.seed_sha256, dict(ok)) == []
    assert sampling.verify(WEEK, CADENCE, sampling.new_seed(), record.seed_sha256, dict(ok))
    seed_file = parts.seed_files(settings).path(WEEK, record.seed_sha256)
    assert seed_file.stat().st_mode & 0o777 == 0o600


async def test_once_takes_its_tick_at_the_committed_instant_so_the_close_can_verify_it(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """`run --once` waits for the next sample instant of the week's seed (not "now", which the
    week close would refuse as off-schedule), writes that tick and exits 0."""
    async with server.serve("default", seed=23) as sim:
        await sim.advance(5)
        settings = settings_for(pg_url, sim.url, tmp_path)
        clock, stop = SteppedClock(START), asyncio.Event()
        task = asyncio.create_task(daemon.run(settings, once=True, stop=stop, clock=clock))
        await clock.go()
        assert await asyncio.wait_for(task, 30) == 0
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            record = weeks.record(conn, WEEK)
            t = schema.ticks
            rows = conn.execute(sa.select(t.c.interval_index, t.c.status, t.c.taken_at)).all()
    finally:
        engine.dispose()
    assert record is not None
    seed = parts.seed_files(settings).read(WEEK, record.seed_sha256)
    assert seed is not None
    here = (START - WEEK.start) // CADENCE  # START's interval, or the next if its instant passed
    assert [(i, status) for i, status, _ in rows] in ([(here, "ok")], [(here + 1, "ok")])
    ((_, _, taken_at),) = rows
    assert taken_at > START  # it waited for the instant
    ok = {i: at for i, _, at in rows}
    assert sampling.verify(WEEK, CADENCE, seed, record.seed_sha256, ok) == []


async def test_too_many_failures_in_a_row_exit_1(pg_url: sa.URL, tmp_path: Path) -> None:
    """With the node gone, the daemon gives up with 1 after max_consecutive_failures + 1 ticks."""
    async with server.serve("quiet", seed=11) as sim:
        await sim.advance(5)
        await sim.go_away()
        clock, stop = SteppedClock(), asyncio.Event()
        settings = settings_for(pg_url, sim.url, tmp_path, max_consecutive_failures=2)
        task = await run_daemon(settings, clock, stop)
        await clock.tick(2)
        assert not task.done()
        await clock.go()
        assert await asyncio.wait_for(task, 30) == 1


async def test_run_refuses_a_schema_that_is_behind(pg_empty_url: sa.URL, tmp_path: Path) -> None:
    """On an unmigrated database run raises SchemaError pointing at driftsnap migrate."""
    settings = settings_for(pg_empty_url, "http://127.0.0.1:9", tmp_path)
    with pytest.raises(SchemaError, match="run driftsnap migrate"):
        await daemon.run(settings, once=False, stop=asyncio.Event(), clock=SteppedClock())


async def test_opening_a_week_reveals_the_finished_weeks_seed(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """Crossing Monday 00:00 stores last week's seed, matching its commitment, for close-week."""
    sunday = WEEK.start - timedelta(minutes=2)  # 23:58 on the last day of the previous week
    previous = WEEK.previous()
    async with server.serve("quiet", seed=9) as node:
        await node.advance(5)
        settings = settings_for(pg_url, node.url, tmp_path, markets=("SOL-PERP",))
        clock = SteppedClock(sunday)
        stop = asyncio.Event()
        task = await run_daemon(settings, clock, stop)
        await clock.tick(1)  # a tick of the previous week: its seed is committed, still secret
        engine = sa.create_engine(pg_url)
        try:
            with engine.connect() as conn:
                before = weeks.record(conn, previous)
            assert before is not None
            assert before.seed is None
            await clock.tick(3)  # into WEEK: opening it reveals the previous week's seed
            with engine.connect() as conn:
                after = weeks.record(conn, previous)
                current = weeks.record(conn, WEEK)
        finally:
            engine.dispose()
        assert await finish(task, stop) == 0
    assert after is not None
    assert after.seed is not None
    assert sampling.commitment(after.seed) == before.seed_sha256
    assert current is not None
    assert current.seed is None  # this week's instants are still ahead: its seed stays secret
