"""Spec section 4: a JIT-auction fill is maker volume like any other."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from driftsnap import calendar
from driftsnap.flows import fills as fills_flow
from driftsnap.store import fills as store_fills
from tests.fills_helpers import simnet

if TYPE_CHECKING:
    import sqlalchemy as sa

pytestmark = pytest.mark.asyncio


async def test_jit_fills_count_as_maker_volume(pg_engine: sa.Engine) -> None:
    """A burst of JIT fills (the maker's order placed and filled in one transaction, recorded
    OrderFilledWithMatchJit) is ingested and counted in its maker's week volume, to the unit,
    with the other fills; self-matches stay out."""
    async with simnet("default", seed=45) as (node, client):
        await node.advance(5)
        node.set_faults(signature_burst=40)  # a burst is JIT fills
        await node.advance(3)
        await fills_flow.poll_once(client, pg_engine)
        truth = [f for tx in node.sim.ledger.transactions.values() for f in tx.fills]
    jit = [f for f in truth if f.jit]
    assert len(jit) >= 40
    week = calendar.Week.containing(datetime.fromtimestamp(truth[0].ts, UTC))
    assert all(calendar.Week.containing(datetime.fromtimestamp(f.ts, UTC)) == week for f in truth)
    expected: Counter[str] = Counter()
    for f in truth:
        if not f.self_match:
            expected[f.maker_authority] += f.quote
    with pg_engine.connect() as conn:
        volume = store_fills.week_volume(conn, week)
        explained = Counter(
            e
            for (e,) in conn.exec_driver_sql(
                "SELECT action_explanation FROM fills WHERE signature = ANY(%(s)s)",
                {"s": [f.signature for f in jit]},
            )
        )
    assert volume == dict(expected)
    jit_volume = sum(f.quote for f in jit if not f.self_match)
    assert jit_volume > 0
    assert sum(volume.values()) == sum(expected.values())  # JIT included, not left out
    assert explained == {"OrderFilledWithMatchJit": len(jit)}
