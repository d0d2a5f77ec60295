"""Fills read from the simnet over HTTP are stored exactly once, whatever the node does."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from driftsnap import protocol
from driftsnap.chain import errors, rpc
from driftsnap.flows import fills as fills_flow
from driftsnap.store import fills as store_fills
from tests.fills_helpers import lost_to_truncation, settings, simnet, stored, truth_rows

if TYPE_CHECKING:
    import httpx


def watermark(engine: sa.Engine) -> store_fills.Watermark | None:
    with engine.connect() as conn:
        return store_fills.watermark(conn, protocol.DRIFT_PROGRAM_ID, "confirmed")


@pytest.mark.asyncio
async def test_polls_across_many_slots_store_exactly_the_ground_truth(
    pg_engine: sa.Engine,
) -> None:
    """Polling between advances stores the simnet's fills: the same set, none twice."""
    async with simnet("default", seed=11) as (node, client):
        for _ in range(4):
            await node.advance(40)
            report = await fills_flow.poll_once(client, pg_engine)
            assert report.caught_up
            assert report.new_fills == report.fills_seen
        assert stored(pg_engine) == truth_rows(node)
        assert len(stored(pg_engine)) > 100
        again = await fills_flow.poll_once(client, pg_engine)
    assert (again.signatures, again.new_fills) == (0, 0)
    mark = watermark(pg_engine)
    assert mark is not None
    assert mark.through_slot == node.sim.slot


class CrashError(RuntimeError):
    """Stands for the process dying in the middle of a poll."""


@pytest.mark.asyncio
async def test_a_crash_between_batches_loses_nothing_and_doubles_nothing(
    pg_url: sa.URL,
) -> None:
    """A poll killed mid-way (after some batches were committed) is completed by a new process."""
    calls = 0

    async def crash_after_40(request: httpx.Request) -> None:
        nonlocal calls
        if b"getTransaction" in request.content:
            calls += 1
            if calls > 40:
                raise CrashError("killed")

    async with simnet("default", seed=12) as (node, client):
        await node.advance(120)
        engine = sa.create_engine(pg_url)
        try:
            async with rpc.Client(
                settings(node.url), event_hooks={"request": [crash_after_40]}
            ) as crashing:
                with pytest.raises(ExceptionGroup) as caught:
                    await fills_flow.poll_once(
                        crashing, engine, fills_flow.PollSettings(batch_size=16, concurrency=4)
                    )
            assert caught.group_contains(CrashError)
            partial = stored(engine)
            assert 0 < len(partial) < len(truth_rows(node))
        finally:
            engine.dispose()
        # A new process: a new engine and client, nothing carried over in memory.
        engine = sa.create_engine(pg_url)
        try:
            first = await fills_flow.poll_once(
                client, engine, fills_flow.PollSettings(max_transactions=7)
            )
            assert not first.caught_up
            assert first.transactions == 7
            rest = await fills_flow.poll_once(client, engine)
            assert rest.caught_up
            assert stored(engine) == truth_rows(node)
        finally:
            engine.dispose()


# A separate process that polls slowly (20 requests a second, small batches) until it is killed.
_SLOW_POLL = """
import asyncio, sys
import sqlalchemy as sa
from driftsnap.chain import rpc
from driftsnap.flows import fills

async def main() -> None:
    engine = sa.create_engine(sys.argv[2])
    settings = rpc.RpcSettings(sys.argv[1], rps=20)
    async with rpc.Client(settings) as client:
        await fills.poll_once(client, engine, fills.PollSettings(batch_size=5, concurrency=2))

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_a_poll_killed_with_sigkill_is_completed_by_the_next(pg_url: sa.URL) -> None:
    """kill -9 of a polling process mid-way leaves a store the next poll completes exactly."""
    async with simnet("default", seed=17) as (node, client):
        await node.advance(100)
        url = pg_url.render_as_string(hide_password=False)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SLOW_POLL, node.url, url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        engine = sa.create_engine(pg_url)
        try:
            for _ in range(300):  # until it has committed a few batches (or 30 s)
                await asyncio.sleep(0.1)
                if len(stored(engine)) >= 10:
                    break
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
            partial = stored(engine)
            assert 10 <= len(partial) < len(truth_rows(node))
            assert set(partial) < set(truth_rows(node))
            report = await fills_flow.poll_once(client, engine)
            assert report.caught_up
            assert stored(engine) == truth_rows(node)
        finally:
            engine.dispose()


@pytest.mark.asyncio
async def test_2500_signatures_between_polls_are_all_found(pg_engine: sa.Engine) -> None:
    """A burst of 2,500 transactions in one slot is paged through with ``before``, none lost."""
    async with simnet("quiet", seed=13) as (node, client):
        await node.advance(5)
        await fills_flow.poll_once(client, pg_engine)
        node.set_faults(signature_burst=2_500)
        await node.advance(2)
        report = await fills_flow.poll_once(client, pg_engine)
    assert report.signatures >= 2_500
    assert report.pages >= 4  # three full pages, one partial and the empty one that ends it
    assert report.caught_up
    assert stored(pg_engine) == truth_rows(node)


@pytest.mark.asyncio
async def test_null_transactions_hold_the_watermark_until_they_arrive(
    pg_engine: sa.Engine,
) -> None:
    """A transaction the node answers null for is asked again later; the watermark waits."""
    async with simnet("default", seed=14) as (node, client):
        await node.advance(30)
        node.set_faults(transaction_null_slots=10)
        held = await fills_flow.poll_once(client, pg_engine)
        mark = watermark(pg_engine)
        assert held.null_pending > 0
        assert not held.caught_up
        assert mark is not None
        # Everything stored is true, and nothing of the last 10 slots is (they were null).
        assert set(stored(pg_engine)) < set(truth_rows(node))
        assert mark.slot <= node.sim.slot - 10
        assert all(row[4] <= node.sim.slot - 10 for row in stored(pg_engine))
        node.set_faults(transaction_null_slots=0)
        done = await fills_flow.poll_once(client, pg_engine)
    assert done.caught_up
    assert done.null_pending == 0
    assert stored(pg_engine) == truth_rows(node)


@pytest.mark.asyncio
async def test_429s_are_waited_out_and_nothing_is_lost(pg_engine: sa.Engine) -> None:
    """Rate-limited answers (HTTP 429 with Retry-After) are retried; the store is still exact."""
    async with simnet("quiet", seed=15) as (node, client):
        await node.advance(60)
        node.set_faults(http_429=6, retry_after_s=0)
        report = await fills_flow.poll_once(client, pg_engine)
        assert node.faults.http_429 == 0
    assert report.caught_up
    assert stored(pg_engine) == truth_rows(node)


@pytest.mark.asyncio
async def test_429s_past_the_retries_fail_the_poll_and_keep_the_watermark(
    pg_engine: sa.Engine,
) -> None:
    """When the retries run out the poll raises; the watermark stays where it was."""
    async with simnet("quiet", seed=15, max_retries=1) as (node, client):
        await node.advance(20)
        await fills_flow.poll_once(client, pg_engine)
        before = watermark(pg_engine)
        await node.advance(20)
        node.set_faults(http_429=50, retry_after_s=0)
        with pytest.raises(errors.RateLimitedError):
            await fills_flow.poll_once(client, pg_engine)
    assert watermark(pg_engine) == before


@pytest.mark.asyncio
async def test_truncated_logs_are_flagged_and_reported(pg_engine: sa.Engine) -> None:
    """A transaction with cut logs is recorded and reported; what its logs still show is stored."""
    async with simnet("default", seed=16) as (node, client):
        await node.advance(5)
        node.set_faults(truncate_logs=12)
        await node.advance(60)
        report = await fills_flow.poll_once(client, pg_engine)
    cut = {
        tx.signature
        for tx in node.sim.ledger.transactions.values()
        if tx.logs[-1] == "Log truncated"
    }
    assert len(cut) == 12
    assert set(report.truncated_signatures) == cut
    assert report.truncated == 12
    with pg_engine.connect() as conn:
        recorded = {
            t.signature: t.fills_parsed
            for w in store_fills.weeks_with_fills(conn)
            for t in store_fills.truncated(conn, w)
        }
    assert set(recorded) == cut
    assert all(n == 1 for n in recorded.values())  # the node kept the first event of each
    assert stored(pg_engine) == truth_rows(node, lost=lost_to_truncation(node))


@pytest.mark.asyncio
async def test_a_poll_waiting_on_the_database_leaves_the_event_loop_free(
    pg_url: sa.URL, pg_engine: sa.Engine
) -> None:
    """While a poll waits on a locked table, the event loop (which the daemon's tick loop and
    clock share with the fills) keeps running; the poll completes once the lock goes."""
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        engine = sa.create_engine(pg_url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("LOCK TABLE fill_watermarks IN ACCESS EXCLUSIVE MODE"))
                locked.set()
                release.wait(10)
        finally:
            engine.dispose()

    async with simnet("quiet", seed=18) as (node, client):
        await node.advance(20)
        holder = threading.Thread(target=hold_lock, name="lock-holder")
        holder.start()
        try:
            assert await asyncio.to_thread(locked.wait, 10)
            poll = asyncio.create_task(fills_flow.poll_once(client, pg_engine))
            beats: list[float] = []
            for _ in range(30):  # 0.6 s of heartbeats while the poll is stuck on the lock
                beats.append(time.monotonic())
                await asyncio.sleep(0.02)
            assert not poll.done()
        finally:
            release.set()
            await asyncio.to_thread(holder.join, 10)
        report = await poll
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 0.3, f"the event loop stalled for {max(gaps):.2f} s"
    assert report.caught_up
    assert stored(pg_engine) == truth_rows(node)
