"""`fills check --verify-rpc-url`: a node that lies consistently, caught by a second provider.

The primary is tests/hostile.py in front of the simulator, inflating one fill's quote inside a
well-formed Drift event in Drift's own frame: every check a single node's replies allow passes,
and the lie is stored. The second provider is the simulator itself.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.chain import rpc
from driftsnap.flows import fills as fills_flow
from driftsnap.simnet import ledger, server
from tests import hostile
from tests.fills_helpers import run_cli, settings

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.asyncio
INFLATE = 3


def _inflating(target: ledger.Transaction) -> Callable[[hostile.Call], Any]:
    """A rewrite that multiplies the quote of ``target``'s one fill inside its event bytes."""
    (record,) = target.fills
    was = b"\x01" + record.quote.to_bytes(8, "little")  # Some(quote_asset_amount_filled)
    now = b"\x01" + (record.quote * INFLATE).to_bytes(8, "little")

    def rewrite(call: hostile.Call) -> Any:
        if call.method != "getTransaction" or call.params[0] != target.signature:
            return None
        answer = call.result
        logs = answer["meta"]["logMessages"]
        for i, line in enumerate(logs):
            if line.startswith("Program data: "):
                event = base64.b64decode(line.removeprefix("Program data: "))
                assert was in event
                # The first is the record's own quote_asset_amount_filled (the maker order's
                # filled quote, later in the record, may hold the same number).
                forged = event.replace(was, now, 1)
                logs[i] = "Program data: " + base64.b64encode(forged).decode()
        return hostile.result(call, answer)

    return rewrite


def _quote_of(engine: sa.Engine, signature: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("SELECT quote_filled FROM fills WHERE signature = :s"), {"s": signature}
        ).scalar_one()
    return int(value)


async def test_a_consistent_lie_is_stored_and_the_second_provider_names_it(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """The primary's inflated fill passes every single-node check and is stored; `fills check
    --verify-rpc-url` reads the week's transactions again from an honest node, exits 1 and
    names the transaction; against the honest node itself it agrees and exits 0."""
    async with server.serve("default", seed=43) as node:
        await node.advance(30)
        target = next(tx for tx in node.sim.ledger.transactions.values() if len(tx.fills) == 1)
        week = calendar.Week.containing(datetime.fromtimestamp(target.block_time, UTC))
        async with (
            hostile.serve(node.url, _inflating(target)) as liar,
            rpc.Client(settings(liar.url)) as client,
        ):
            await fills_flow.poll_once(client, pg_engine)
        assert liar.calls["getTransaction"] > 0
        (record,) = target.fills
        assert _quote_of(pg_engine, target.signature) == record.quote * INFLATE  # believed

        code, _, err = await run_cli(
            "fills", "check", "--week", str(week), "--verify-rpc-url", node.url, url=pg_url
        )
        assert code == 1, err
        assert f"second provider disagrees (different) on {target.signature}" in err
        assert str(record.quote * INFLATE) in err
        assert "1 disagreement(s)" in err

        sample = await run_cli(
            "fills", "check", "--week", str(week), "--verify-rpc-url", node.url,
            "--sample", "3", url=pg_url,
        )  # fmt: skip
        assert "3 of " in sample[2]

        with pg_engine.begin() as conn:  # the stored fact made true again
            conn.execute(
                sa.text("UPDATE fills SET quote_filled = :q WHERE signature = :s"),
                {"q": record.quote, "s": target.signature},
            )
        code, _, err = await run_cli(
            "fills", "check", "--week", str(week), "--verify-rpc-url", node.url, url=pg_url
        )
    assert code == 0, err
    assert "0 disagreement(s)" in err
