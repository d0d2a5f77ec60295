"""End to end: what driftsnap's chain reader builds from the simnet's RPC is the ground truth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from driftsnap.chain import accounts, books, markets, users
from driftsnap.simnet import layout, rpc, server, truth
from tests import simnet_helpers as h

if TYPE_CHECKING:
    from driftsnap.scoring.book import Book

USER_DISCRIMINATOR = rpc.b58encode(layout.account_discriminator("User")).decode()


async def _read_books(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[int, Book]]:
    """The reader's path: users and markets by getProgramAccounts, oracles, block time, books."""
    program = str(layout.DRIFT_PROGRAM_ID)
    user_filters = [
        {"dataSize": layout.USER_SIZE},
        {"memcmp": {"offset": 0, "bytes": USER_DISCRIMINATOR}},
    ]
    config: dict[str, Any] = {
        "encoding": "base64+zstd",
        "withContext": True,
        "filters": user_filters,
    }
    answer = (await h.call(session, url, "getProgramAccounts", [program, config]))["result"]
    slot = answer["context"]["slot"]
    raw_users = [accounts.from_rpc(a["pubkey"], a["account"]) for a in answer["value"]]
    decoded_users = users.decode(raw_users, accounts.Skipped())
    market_config = {"encoding": "base64", "filters": [{"dataSize": layout.PERP_MARKET_SIZE}]}
    market_items = (await h.call(session, url, "getProgramAccounts", [program, market_config]))[
        "result"
    ]
    perp_markets = [
        markets.decode(accounts.from_rpc(a["pubkey"], a["account"])) for a in market_items
    ]
    oracle_keys = [m.oracle for m in perp_markets]
    oracle_items = (
        await h.call(session, url, "getMultipleAccounts", [oracle_keys, {"encoding": "base64"}])
    )["result"]["value"]
    prices = {
        m.market_index: markets.oracle_price(m, accounts.from_rpc(m.oracle, item)).price
        for m, item in zip(perp_markets, oracle_items, strict=True)
    }
    ts = (await h.call(session, url, "getBlockTime", [slot]))["result"]
    return slot, books.build(decoded_users, perp_markets, prices, slot=slot, ts=ts)


@pytest.mark.asyncio
async def test_reader_books_equal_the_simnet_ground_truth() -> None:
    """At several slots, every market's book as driftsnap reads it equals the dumped truth."""
    async with server.serve("default", seed=31) as node, aiohttp.ClientSession() as session:
        for _ in range(4):
            await node.advance(25)
            slot, read = await _read_books(session, node.url)
            assert slot == node.sim.slot
            for index in node.sim.markets:
                want = truth.book(node.sim, slot, index)
                got = read[index]
                assert (got.market, got.slot, got.ts, got.oracle_price) == (
                    want["market"],
                    want["slot"],
                    want["ts"],
                    want["oracle_price"],
                )
                got_orders = {
                    (o.user, o.authority, o.side.label, o.price, o.size, o.order_id)
                    for o in got.orders
                }
                want_orders = {
                    (o["user"], o["authority"], o["side"], o["price"], o["size"], o["order_id"])
                    for o in want["orders"]
                }
                assert got_orders == want_orders
