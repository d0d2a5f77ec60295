"""`driftsnap fills check` and `fills self-matches` as a user runs them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.flows import fills as fills_flow
from tests.fills_helpers import run_cli as run
from tests.fills_helpers import simnet

SCRIPT = Path(sys.executable).parent / "driftsnap"
pytestmark = pytest.mark.asyncio


async def test_fills_check_finds_the_missing_records_and_exits_1(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """A hidden fill transaction shows as a gap per market (with the chain's counters), exit 1."""
    async with simnet("default", seed=41) as (node, client):
        await node.advance(20)
        node.set_faults(unlist_transactions=1)
        await node.advance(20)
        await fills_flow.poll_once(client, pg_engine)
        hidden = {
            # No snapshot was stored, so the markets table has no names: index form.
            (f"perp-{f.market_index}", f.fill_record_id)
            for s in node.sim.unlisted
            for f in node.sim.ledger.transactions[s].fills
        }
        assert hidden
        code, out, err = await run(
            "fills", "check", "--rpc-url", node.url, "--format", "json", url=pg_url
        )
    assert code == 1, err
    rows = json.loads(out)
    reported = {
        (r["market"], i) for r in rows for first, last in r["gaps"] for i in range(first, last + 1)
    }
    assert reported == hidden
    assert sum(r["missing"] for r in rows) == len(hidden)
    assert f"{len(hidden)} fill record(s) missing" in err


async def test_fills_check_is_clean_after_a_complete_ingest(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """Every fill stored: each market's ids are contiguous, the table says so, exit 0."""
    async with simnet("default", seed=42) as (node, client):
        await node.advance(40)
        await fills_flow.poll_once(client, pg_engine)
        code, out, err = await run("fills", "check", "--rpc-url", node.url, url=pg_url)
    assert code == 0, err
    assert "Fill record ids per market and week" in out
    assert "missing" in out


async def test_self_matches_lists_the_weeks_self_matched_fills(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """fills self-matches prints every fill whose maker and taker share a wallet, with its tx."""
    async with simnet("default", seed=23) as (node, client):
        await node.advance(80)
        await fills_flow.poll_once(client, pg_engine)
        self_matched = [
            f
            for tx in node.sim.ledger.transactions.values()
            for f in tx.fills
            if f.maker_authority == f.taker_authority
        ]
    assert self_matched, "the scenario should produce self-matches"
    w = calendar.Week.containing(datetime.fromtimestamp(self_matched[0].ts, UTC))
    expected = {
        (f.signature, f.fill_record_id)
        for f in self_matched
        if calendar.Week.containing(datetime.fromtimestamp(f.ts, UTC)) == w
    }
    code, out, err = await run(
        "fills", "self-matches", "--week", str(w), "--format", "json", url=pg_url
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["week"] == str(w)
    assert {(m["signature"], m["fill_record_id"]) for m in doc["self_matches"]} == expected
    assert all(m["maker"] != m["taker"] for m in doc["self_matches"])


async def test_fills_finalize_runs_the_finalized_pass_the_close_hint_names(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """`fills finalize --week W` is the command close-week's refusal points at: it marks the
    listed fills final and says the week is not final while the chain has not passed its end."""
    async with simnet("default", seed=44) as (node, client):
        await node.advance(30)
        await fills_flow.poll_once(client, pg_engine)
        week = calendar.Week.containing(datetime.fromtimestamp(node.sim.ts, UTC))
        code, out, err = await run(
            "fills", "finalize", "--week", str(week), "--rpc-url", node.url, url=pg_url
        )
    assert code == 1, err  # the simulated week has not ended: not final yet
    assert out.startswith(f"week {week}: ")
    assert "signature(s) listed at finalized" in out
    assert err.strip() == "not final: the finalized chain has not reached past the week's end yet"
    with pg_engine.connect() as conn:
        final = conn.execute(
            sa.text("SELECT count(*) FROM fills WHERE commitment = 'finalized'")
        ).scalar_one()
    assert final > 0  # the pass marked what it listed
    code, _, err = await run("fills", "finalize", "--week", str(week), url=pg_url)
    assert code == 2  # no RPC URL: configuration, before the database is opened
