"""Fill integrity: record id gaps, self-matches, week volume and its view, finality, cross-check."""

from __future__ import annotations

import collections
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftsnap import protocol
from driftsnap.calendar import Week
from driftsnap.flows import close as close_flow
from driftsnap.flows import fills as fills_flow
from driftsnap.scoring import fill
from driftsnap.simnet import model, truth
from driftsnap.store import fills as store_fills
from tests.fills_helpers import simnet, stored, truth_rows

if TYPE_CHECKING:
    from driftsnap.simnet import server

HOUR_MS = 3_600_000  # one simulated slot per hour: a program week is 168 slots


def week_of(ts: int) -> Week:
    return Week.containing(datetime.fromtimestamp(ts, tz=UTC))


def true_fills(node: server.SimnetServer) -> list[dict[str, object]]:
    return truth.fills(node.sim, model.GENESIS_SLOT, node.sim.slot)


@pytest.mark.asyncio
async def test_fills_a_node_never_lists_are_reported_as_gaps(pg_engine: sa.Engine) -> None:
    """Unlisted fill transactions (inside the history and at its newest end) are exact gaps."""
    async with simnet("default", seed=21) as (node, client):
        await node.advance(20)
        node.set_faults(unlist_transactions=2)
        await node.advance(20)
        node.set_faults(unlist_transactions=1)
        # Stop right after the newest transaction is hidden: its fills are the market's last.
        while len(node.sim.unlisted) < 3:
            await node.advance(1)
        await fills_flow.poll_once(client, pg_engine)
        checks = await fills_flow.check(client, pg_engine)
    hidden = {
        (f.market_index, f.fill_record_id)
        for s in node.sim.unlisted
        for f in node.sim.ledger.transactions[s].fills
    }
    assert hidden
    assert len(stored(pg_engine)) == len(truth_rows(node)) - len(hidden)
    reported = {
        (c.market_index, i) for c in checks for g in c.gaps for i in range(g.first, g.last + 1)
    }
    assert reported == hidden
    assert all(c.tail_checked for c in checks)
    assert {c.market_index for c in checks if not c.ok} == {m for m, _ in hidden}
    # Without the chain's counters only the holes between stored fills can be seen.
    with pg_engine.connect() as conn:
        inner = {
            (c.market_index, i)
            for w in store_fills.weeks_with_fills(conn)
            for c in store_fills.check(conn, w, program=protocol.DRIFT_PROGRAM_ID)
            for g in c.gaps
            for i in range(g.first, g.last + 1)
        }
    assert inner <= hidden
    with pg_engine.connect() as conn:
        blockers = close_flow.fill_problems(conn, week_of(node.sim.ts), checks)
    assert sum("missing" in b for b in blockers) == len({m for m, _ in hidden})
    assert any("not finalized" in b for b in blockers)


@pytest.mark.asyncio
async def test_a_complete_ingest_has_no_gaps(pg_engine: sa.Engine) -> None:
    """With every fill stored, each market's ids are contiguous up to its on-chain counter."""
    async with simnet("default", seed=22) as (node, client):
        await node.advance(60)
        await fills_flow.poll_once(client, pg_engine)
        checks = await fills_flow.check(client, pg_engine)
    assert checks
    assert all(c.ok and c.tail_checked for c in checks)
    assert {c.market_index for c in checks} == {f["market_index"] for f in true_fills(node)}
    for c in checks:
        assert c.last_id == node.sim.markets[c.market_index].next_fill_record_id - 1
        assert c.fills == c.last_id - c.first_id + 1


@pytest.mark.asyncio
async def test_self_matches_are_listed_and_left_out_of_volume(pg_engine: sa.Engine) -> None:
    """A fill between two sub-accounts of one wallet is listed and counts for no volume."""
    async with simnet("default", seed=23) as (node, client):
        await node.advance(200)
        await fills_flow.poll_once(client, pg_engine)
    fills = true_fills(node)
    week = week_of(int(str(fills[0]["ts"])))
    assert all(week_of(int(str(f["ts"]))) == week for f in fills)
    selfish = sorted(str(f["signature"]) for f in fills if f["self_match"])
    assert selfish  # the scenario makes some
    want: collections.Counter[str] = collections.Counter()
    for f in fills:
        if not f["self_match"]:
            want[str(f["maker_authority"])] += int(str(f["quote_asset_amount"]))
    with pg_engine.connect() as conn:
        listed = store_fills.self_matches(conn, week)
        volume = store_fills.week_volume(conn, week)
    assert sorted(m.signature for m in listed) == selfish
    assert all(m.maker != m.taker for m in listed)
    assert volume == dict(want)


@pytest.mark.asyncio
async def test_weekly_volume_view_shares_the_pool_by_volume(pg_engine: sa.Engine) -> None:
    """weekly_volume splits the week's volume pool by maker volume; rows add up to the pool."""
    async with simnet("default", seed=24) as (node, client):
        await node.advance(80)
        await fills_flow.poll_once(client, pg_engine)
    week = week_of(int(str(true_fills(node)[0]["ts"])))
    pool = 1_500_000_000
    with pg_engine.begin() as conn:
        store_fills.set_volume_pool(conn, week, pool)
        # Market names come from the snapshots' markets table; the view shows them when known.
        conn.execute(
            sa.text("INSERT INTO markets (market_index, name) VALUES (:i, :n)"),
            [{"i": i, "n": m.name} for i, m in node.sim.markets.items() if i != 2],
        )
        rows = store_fills.volume_rows(conn, week)
        volume = store_fills.week_volume(conn, week)
        live = conn.execute(sa.text("SELECT count(*) FROM live_volume")).scalar_one()
    per_authority: collections.Counter[str] = collections.Counter()
    for r in rows:
        per_authority[r.authority] += r.volume_quote
    assert dict(per_authority) == volume
    assert sum(r.share for r in rows) == pytest.approx(1.0)
    rewards = [r.projected_reward_micro_usdc or 0 for r in rows]
    assert pool - len(rows) <= sum(rewards) <= pool
    assert {(r.market_index, r.market) for r in rows} == {
        (r.market_index, None if r.market_index == 2 else node.sim.markets[r.market_index].name)
        for r in rows
    }
    assert {r.market_index for r in rows} == set(node.sim.markets)
    assert live == 0  # the simulated week (June 2025) is not the server's current week


@pytest.mark.asyncio
async def test_finalize_records_a_week_once_the_finalized_pass_covers_it(
    pg_engine: sa.Engine,
) -> None:
    """A week is final once the finalized pass passes its end with every fill seen again."""
    async with simnet("quiet", seed=25, slot_ms=HOUR_MS) as (node, client):
        week = week_of(node.sim.ts)
        await node.advance(40)
        await fills_flow.poll_once(client, pg_engine)
        early = await fills_flow.finalize(client, pg_engine, week)
        assert not early.finality.finalized
        assert not early.finality.covered  # the week has not ended yet
        await node.advance(150)  # past Monday 00:00 UTC
        await fills_flow.poll_once(client, pg_engine)
        # A fill confirmed once but never finalized (its fork was dropped).
        orphan = fill.Fill(
            market_type="perp", market_index=0, fill_record_id=10**12, signature="orphan",
            event_index=0, slot=node.sim.slot - 100, block_time=node.sim.ts_at(
                node.sim.slot - 100), maker=None, maker_authority=None, taker=None,
            taker_authority=None, base_filled=1, quote_filled=1, maker_fee=None,
            action_explanation="OrderFilledWithMatch",
        )  # fmt: skip
        assert week_of(orphan.block_time) == week
        with pg_engine.begin() as conn:
            store_fills.write(conn, [orphan], watermark=None)
        refused = await fills_flow.finalize(client, pg_engine, week)
        assert refused.finality.covered
        assert not refused.finality.finalized
        assert refused.finality.unconfirmed_signatures == ("orphan",)
        with pg_engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM fills WHERE signature = 'orphan'"))
        final = await fills_flow.finalize(client, pg_engine, week)
    in_week = [f for f in true_fills(node) if week_of(int(str(f["ts"]))) == week]
    assert final.finality.finalized
    assert final.finality.fills == len(in_week) > 0
    with pg_engine.connect() as conn:
        assert store_fills.finalized(conn, week)
        assert not store_fills.finalized(conn, week.next())
        assert close_flow.fill_problems(conn, week) == []
        left = conn.execute(
            sa.text(
                "SELECT count(*) FROM fills WHERE commitment = 'confirmed' AND block_time < :e"
            ),
            {"e": week.end},
        ).scalar_one()
    assert left == 0


@pytest.mark.asyncio
async def test_the_programs_maker_volume_agrees_with_the_ingested_fills(
    pg_engine: sa.Engine,
) -> None:
    """maker_volume30d moves by the ingested volume less its decay; hidden fills stand out."""
    async with simnet("default", seed=26) as (node, client):
        wallets = sorted(str(a) for a in node.sim.sub_accounts)
        await node.advance(40)
        await fills_flow.poll_once(client, pg_engine)
        first = await fills_flow.sample_maker_volume(client, pg_engine, wallets)
        await node.advance(60)
        await fills_flow.poll_once(client, pg_engine)
        second = await fills_flow.sample_maker_volume(client, pg_engine, wallets)
        node.set_faults(unlist_transactions=1)
        while not node.sim.unlisted:
            await node.advance(1)
        await node.advance(10)
        await fills_flow.poll_once(client, pg_engine)
        third = await fills_flow.sample_maker_volume(client, pg_engine, wallets)
    with pg_engine.connect() as conn:
        agreed = store_fills.cross_check(conn, first, second)
        clean = fills_flow.cross_check(conn, first, second, relative=0.0, absolute=1_000_000)
        flagged = fills_flow.cross_check(conn, second, third, relative=0.0, absolute=1_000_000)
    assert {c.authority for c in agreed} == set(wallets)  # every wallet has its UserStats
    assert sum(c.ingested for c in agreed) > 0
    assert any(c.decay_estimate > 0 for c in agreed)
    assert clean == []
    (hidden,) = node.sim.unlisted
    makers = {f.maker_authority for f in node.sim.ledger.transactions[hidden].fills}
    assert {c.authority for c in flagged} == makers
    assert all(c.difference > 0 for c in flagged)  # the chain saw volume the store did not
