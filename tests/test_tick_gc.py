"""The cyclic GC around a tick, and the getProgramAccounts JSON tree freed before the books.

Real ticks against the in-process simnet and a real PostgreSQL; what the GC does is observed,
not arranged: ``gc.callbacks`` see every collection, and a profile hook (``sys.setprofile``,
``threading.setprofile``) notes ``gc.isenabled()`` as our own functions are entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

from driftsnap import daemon
from driftsnap.chain import books, rpc, snapshot
from driftsnap.scoring import scorer
from driftsnap.simnet import server
from driftsnap.store import snapshots
from tests.test_daemon import SteppedClock, finish, settings_for, tick_rows

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime
    from pathlib import Path
    from types import FrameType

    import sqlalchemy as sa

    from driftsnap.flows import tick

pytestmark = pytest.mark.asyncio

Profiler = Any  # sys.setprofile's callback: (frame, event, arg) -> object


class WatchedClock(SteppedClock):
    """The stepped clock, noting the GC's state whenever the daemon starts or ends a wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[bool] = []  # gc.isenabled() as each wait began
        self.wakes: list[bool] = []  # ... and as it ended (a tick about to start)
        self.in_tick = False  # from the first RPC answer parsed to the tick written

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        self.waits.append(gc.isenabled())
        woke = await super().sleep_until(moment, stop)
        if woke:
            self.wakes.append(gc.isenabled())
        return woke


@contextlib.contextmanager
def profiled(fn: Profiler) -> Iterator[None]:
    """``fn`` as the profile hook of this thread and of threads started meanwhile."""
    before = sys.getprofile()
    sys.setprofile(fn)
    threading.setprofile(fn)
    try:
        yield
    finally:
        sys.setprofile(before)
        threading.setprofile(None)


async def test_the_gc_is_off_from_read_to_write_and_as_it_was_between_ticks(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """Parsing the gPA answer, scoring and writing run with the GC disabled and no collection
    happens inside a tick; between ticks and after the daemon it is enabled, nothing frozen."""
    watched = {
        json.loads.__code__: "parse",
        scorer.score.__code__: "score",
        snapshots.write_tick.__code__: "write",
    }
    seen: list[tuple[str, bool]] = []

    def hook(frame: FrameType, event: str, arg: object) -> None:
        what = watched.get(frame.f_code) if event == "call" else None
        # json.loads of an RPC answer, not of the daemon's own request bodies.
        if what == "parse" and (frame.f_back is None or frame.f_back.f_code is not _RESULT):
            return
        if what is not None:
            seen.append((what, gc.isenabled()))
            clock.in_tick = clock.in_tick or what == "parse"

    clock = WatchedClock()
    collections: list[int] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and clock.in_tick:
            collections.append(info["generation"])

    ended: list[bool] = []

    def on_tick(report: tick.TickReport) -> None:
        ended.append(gc.isenabled())
        clock.in_tick = False

    assert gc.isenabled()
    gc.callbacks.append(on_gc)
    try:
        async with server.serve("mainnet-scale", seed=3) as sim:
            await sim.advance(2)
            stop = asyncio.Event()
            settings = settings_for(pg_url, sim.url, tmp_path, fills=False)
            with profiled(hook):
                task = asyncio.create_task(
                    daemon.run(settings, once=False, stop=stop, clock=clock, on_tick=on_tick),
                    name="daemon-under-test",
                )
                await clock.tick(2)
                assert await finish(task, stop) == 0
    finally:
        gc.callbacks.remove(on_gc)
    assert [r.status for r in tick_rows(pg_url)] == ["ok", "ok"]
    assert {what for what, _ in seen} == {"parse", "score", "write"}
    assert [on for _, on in seen] == [False] * len(seen)
    assert ended == [False, False]  # on_tick is called inside the tick, once it is written
    assert collections == []
    assert len(clock.waits) == 3  # before each tick and after the last: the GC on
    assert all(clock.waits)
    assert len(clock.wakes) == 2
    assert all(clock.wakes)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_the_json_tree_is_freed_before_the_books_are_built() -> None:
    """When books.build starts, not one item of the getProgramAccounts answer is still alive."""
    items: set[int] = set()
    alive: list[int] = []

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if (
            event == "return"
            and frame.f_code is _USER_ACCOUNTS
            and isinstance(arg, tuple)
            and isinstance(arg[0], list)
        ):
            items.update(id(item) for item in arg[0])  # ids only: no reference is kept
        elif event == "call" and frame.f_code is _BUILD:
            alive.append(
                sum(
                    1
                    for o in gc.get_objects()
                    if id(o) in items and isinstance(o, dict) and "pubkey" in o
                )
            )

    async with server.serve("default", seed=4) as sim:
        await sim.advance(3)
        async with rpc.Client(rpc.RpcSettings(url=sim.url)) as client:
            with profiled(hook):
                snap = await snapshot.take(client, snapshot.SnapshotSettings(), [])
    assert snap.ok
    assert len(items) == snap.accounts_seen > 0
    assert alive == [0]


_RESULT = rpc.Client._result.__code__  # the frame the hook looks for
_USER_ACCOUNTS = snapshot._user_accounts.__code__
_BUILD = books.build.__code__
