"""A whole program week in minutes: the daemon on the chain clock against a fast simnet, then close.

The simnet starts two hours before Monday 00:00 of 2026-W47 and runs a slot (three simulated
minutes) every 30 ms; the daemon, in this process, follows the chain's block time (``clock =
"chain"``), samples every hour at the seed's instants and ingests fills. Once the week has ended
and its fills are final, ``close_week`` must pay what the simulator's ground truth says: the
truth's books at the recorded slots scored with ``driftsnap.scoring``, the truth's fills as maker
volume, settled and digested independently (``tests/soak/truth.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftsnap import calendar, config, daemon, parts
from driftsnap.chain import snapshot
from driftsnap.flows import close as close_flow
from driftsnap.scoring import digest, methods
from driftsnap.simnet import scenarios, server
from driftsnap.store import makers, schema
from tests.soak import truth as soak_truth

if TYPE_CHECKING:
    from pathlib import Path

WEEK = calendar.Week.parse("2026-W47")
GENESIS = WEEK.start - timedelta(hours=2)
CADENCE = timedelta(hours=1)
SLOT_MS = 180_000  # three simulated minutes per slot
TICK_S = 0.03  # ...every 30 ms: a week is 3,360 slots, about 100 s
PROGRAM = config.load_program()
# The whole run in the simulator's memory: ground truth for every slot and every transaction.
SCENARIO = dataclasses.replace(scenarios.DEFAULT, history_slots=6_000, max_transactions=60_000)


def _finalized(engine: sa.Engine, w: calendar.Week) -> bool:
    with engine.connect() as conn:
        t = schema.fill_weeks
        value = conn.execute(sa.select(t.c.finalized).where(t.c.week_start == w.monday)).scalar()
    return bool(value)


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_a_simulated_week_closes_to_what_the_ground_truth_pays(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """A fast simnet week sampled on the chain clock closes to the truth's payouts and digest."""
    settings = config.Settings(
        database_url=SecretStr(pg_url.render_as_string(hide_password=False)),
        data_dir=tmp_path,
        metrics_port=0,
        rpc_timeout_s=5,
        # A slot every 30 ms brings ~40 transactions a second and a tick every 0.6 s: a
        # provider's budget (10 requests, 2 getProgramAccounts a second) could not keep up.
        rpc_rps=2_000,
        rpc_gpa_rps=200,
        cadence=CADENCE,
        clock="chain",
        fills_poll=timedelta(milliseconds=500),  # wall time: 25 slots
        rpc_url=SecretStr("http://127.0.0.1:9"),  # replaced below, once the node listens
    )
    engine = sa.create_engine(pg_url)
    started = time.monotonic()
    try:
        async with server.serve(
            SCENARIO, seed=47, slot_ms=SLOT_MS, tick_s=TICK_S, genesis_ts=int(GENESIS.timestamp())
        ) as node:
            settings = settings.model_copy(update={"rpc_url": SecretStr(node.url)})
            stop = asyncio.Event()
            task = asyncio.create_task(
                daemon.run(settings, once=False, stop=stop), name="daemon-under-test"
            )
            # Until the week has ended and the daemon's finalized pass has closed its fills.
            deadline = time.monotonic() + 200
            while not (node.sim.ts >= WEEK.end.timestamp() and _finalized(engine, WEEK)):
                assert not task.done(), f"the daemon stopped: {task.result()}"
                assert time.monotonic() < deadline, f"chain at {node.sim.ts}, not finalized"
                await asyncio.sleep(0.5)
            stop.set()
            assert await asyncio.wait_for(task, 30) == 0
        sim = node.sim
        run_s = time.monotonic() - started

        # Every interval of the week has a header; the chain clock put each ok tick at its
        # instant, read at the slot whose block was in force then: never before it, and after
        # it only when the read straddled a block (30 ms each, a slot or two on a busy machine).
        ticks = soak_truth.stored_ticks(engine, WEEK.start, WEEK.end)
        assert [t.interval for t in ticks] == list(range(timedelta(days=7) // CADENCE))
        ok = [t for t in ticks if t.status == "ok"]
        assert len(ok) >= 0.95 * len(ticks), [
            (t.status, t.reason) for t in ticks if t.status != "ok"
        ]
        in_force = [soak_truth.slot_at(sim, t.at) for t in ok]
        assert all(t.taken_at == t.at for t in ok)
        lag = [(t.gpa_slot or 0) - s for t, s in zip(ok, in_force, strict=True)]
        assert min(lag) >= 0
        assert max(lag) <= snapshot.SnapshotSettings().max_slot_gap
        assert lag.count(0) >= 0.9 * len(ok)

        # The shipped program pays registered makers: all the simulator's but one.
        registered = sim.maker_authorities()[:-1]
        with engine.begin() as conn:
            for authority in registered:
                makers.add_participant(conn, authority, name="", from_week=None)
        outcome = close_flow.close_week(
            engine, PROGRAM, now=WEEK.end + timedelta(hours=1),
            seeds=parts.seed_files(settings), week=WEEK,
        )  # fmt: skip
        assert outcome.stored
        assert not outcome.close.forced
        assert outcome.close.seed is not None
        expected = soak_truth.recompute_week(
            engine, sim, PROGRAM, WEEK, bytes.fromhex(outcome.close.seed), registered=registered
        )
        assert digest.first_difference(expected.doc, outcome.result) is None
        assert (outcome.close.books, outcome.close.fills) == (expected.books, expected.fills)
        assert outcome.close.fills_digest == expected.fills_digest
        assert outcome.close.books_root == expected.books_root
        assert outcome.close.digest == expected.digest
        assert expected.books == len(ok) * len(sim.markets)
        assert expected.fills > 1_000
        paid = outcome.result["payouts"]
        assert set(paid) <= set(registered)
        assert sum(paid.values()) == sum(PROGRAM.score_pools(WEEK).values()) + (
            PROGRAM.volume_pool_for(WEEK)
        )
        stored_fills = soak_truth.stored_fill_facts(engine, WEEK.start, WEEK.end)
        truth_fills = soak_truth.truth_fill_facts(sim, WEEK.start, WEEK.end)
        assert sorted(stored_fills, key=lambda f: f.key) == sorted(truth_fills, key=lambda f: f.key)

        again = close_flow.close_week(
            engine, PROGRAM, now=WEEK.end + timedelta(days=1),
            seeds=parts.seed_files(settings), week=WEEK,
        )  # fmt: skip
        assert again.already
        assert again.close.digest == outcome.close.digest
        verified = close_flow.verify_week(engine, WEEK)
        assert verified.ok, verified.difference
        assert verified.digest == outcome.close.digest
        assert methods.get(outcome.close.method) == methods.get(PROGRAM.method)
        assert run_s < 200
    finally:
        engine.dispose()
