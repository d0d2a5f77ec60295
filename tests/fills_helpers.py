"""Shared by the fills tests: what the store holds against what the simnet really did."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftsnap.chain import rpc
from driftsnap.simnet import model, server, truth
from tests.test_chain_rpc import fast

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

Row = tuple[Any, ...]

_STORED = """
SELECT f.market_type, f.market_index, f.fill_record_id, f.signature, f.slot,
       extract(epoch FROM f.block_time)::bigint, m.pubkey, ma.pubkey, t.pubkey, ta.pubkey,
       f.base_filled, f.quote_filled
FROM fills AS f
LEFT JOIN accounts AS m ON m.account_id = f.maker_id
LEFT JOIN accounts AS ma ON ma.account_id = f.maker_authority_id
LEFT JOIN accounts AS t ON t.account_id = f.taker_id
LEFT JOIN accounts AS ta ON ta.account_id = f.taker_authority_id
"""


def settings(url: str, **changes: Any) -> rpc.RpcSettings:
    """Fast RPC settings with room for the retries a faulty node needs."""
    return fast(url, **{"max_retries": 8, "rps": 5000, **changes})


@contextlib.asynccontextmanager
async def simnet(
    scenario: str, *, seed: int, slot_ms: int = 400, **rpc_changes: Any
) -> AsyncIterator[tuple[server.SimnetServer, rpc.Client]]:
    """A still-clocked simnet and an RPC client of ours talking to it over HTTP."""
    async with (
        server.serve(scenario, seed=seed, slot_ms=slot_ms) as node,
        rpc.Client(settings(node.url, **rpc_changes)) as client,
    ):
        yield node, client


def stored(engine: sa.Engine) -> list[Row]:
    """Every stored fill as a comparable row (a list: duplicates would show)."""
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(_STORED)))


def truth_rows(node: server.SimnetServer, *, lost: frozenset[Row] = frozenset()) -> list[Row]:
    """The simnet's fills since genesis as the same rows, minus ``lost``."""
    rows = [
        (
            "perp", f["market_index"], f["fill_record_id"], f["signature"], f["slot"], f["ts"],
            f["maker"], f["maker_authority"], f["taker"], f["taker_authority"],
            f["base_asset_amount"], f["quote_asset_amount"],
        )
        for f in truth.fills(node.sim, model.GENESIS_SLOT, node.sim.slot)
    ]  # fmt: skip
    return sorted(r for r in rows if r not in lost)


def lost_to_truncation(node: server.SimnetServer) -> frozenset[Row]:
    """Fills whose events the node cut from their transaction's logs (after the first event)."""
    lost = set()
    rows = {(r[1], r[2]): r for r in truth_rows(node)}
    for tx in node.sim.ledger.transactions.values():
        if tx.logs and tx.logs[-1] == "Log truncated":
            lost |= {rows[(f.market_index, f.fill_record_id)] for f in tx.fills[1:]}
    return frozenset(lost)


async def run_cli(*args: str, url: sa.URL) -> tuple[int, str, str]:
    """``driftsnap ARGS`` as a user runs it against the database at ``url``: (exit, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "driftsnap"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DRIFTSNAP_LOG_LEVEL": "warning",
            "DRIFTSNAP_DATABASE_URL": url.render_as_string(hide_password=False),
        },
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
