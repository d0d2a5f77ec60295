"""The simnet speaks Solana JSON-RPC: solana-py's client and solders' parsers read every answer."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import aiohttp
import pytest
import pytest_asyncio
import zstandard
from driftpy.decode.user import decode_user
from solana.rpc.async_api import AsyncClient
from solana.rpc.types import MemcmpOpts
from solders.pubkey import Pubkey
from solders.rpc.errors import (
    BlockNotAvailableMessage,
    InvalidParamsMessage,
    MethodNotFoundMessage,
    MinContextSlotNotReachedMessage,
)
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBlockTimeResp,
    GetProgramAccountsWithContextResp,
    GetSlotResp,
)
from solders.signature import Signature

from driftsnap.simnet import layout, model, rpc, server, truth
from tests import simnet_helpers as h

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

USER_DISCRIMINATOR = rpc.b58encode(layout.account_discriminator("User")).decode()


@pytest_asyncio.fixture
async def node() -> AsyncIterator[server.SimnetServer]:
    async with server.serve("default", seed=21) as running:
        await running.advance(60)
        yield running


@pytest_asyncio.fixture
async def client(node: server.SimnetServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(node.url) as c:
        yield c


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.asyncio
async def test_get_slot_and_health(node: server.SimnetServer, client: AsyncClient) -> None:
    """getSlot returns the simulator's slot, getHealth says ok, and both follow advance()."""
    assert (await client.get_slot()).value == node.sim.slot
    assert await client.is_connected()
    await node.advance(3)
    assert (await client.get_slot()).value == node.sim.slot


@pytest.mark.asyncio
async def test_get_account_info_serves_a_user_at_its_pda(
    node: server.SimnetServer, client: AsyncClient
) -> None:
    """getAccountInfo returns a User's exact bytes, Drift owner, context slot and rent fields."""
    address = next(iter(node.sim.makers))
    resp = await client.get_account_info(address)
    assert resp.context.slot == node.sim.slot
    assert resp.value is not None
    assert resp.value.owner == layout.DRIFT_PROGRAM_ID
    assert resp.value.data == layout.encode_user(node.sim.users[address])
    assert resp.value.lamports == model.rent_exempt_lamports(layout.USER_SIZE)
    assert decode_user(resp.value.data).authority == node.sim.users[address].authority
    assert (await client.get_account_info(Pubkey.new_unique())).value is None


@pytest.mark.asyncio
async def test_account_encodings_and_data_slice(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """base64, base64+zstd, base58 (small accounts only) and dataSlice all give the same bytes."""
    market = node.sim.markets[0]
    expected = node.sim.account(market.oracle_address)
    assert expected is not None
    for encoding in ("base64", "base64+zstd", "base58"):
        text = await h.call_text(
            session,
            node.url,
            "getAccountInfo",
            [str(market.oracle_address), {"encoding": encoding}],
        )
        parsed = GetAccountInfoResp.from_json(text)
        assert isinstance(parsed, GetAccountInfoResp)
        assert parsed.value is not None
        assert parsed.value.data == expected.data
    too_big = await h.call(
        session, node.url, "getAccountInfo", [str(market.address), {"encoding": "base58"}]
    )
    assert too_big["error"]["code"] == -32600
    sliced = await h.call(
        session,
        node.url,
        "getAccountInfo",
        [str(market.address), {"encoding": "base64", "dataSlice": {"offset": 8, "length": 32}}],
    )
    assert base64.b64decode(sliced["result"]["value"]["data"][0]) == bytes(market.address)
    assert sliced["result"]["value"]["space"] == layout.PERP_MARKET_SIZE


@pytest.mark.asyncio
async def test_get_multiple_accounts_keeps_order_and_caps_at_100(
    node: server.SimnetServer, client: AsyncClient, session: aiohttp.ClientSession
) -> None:
    """getMultipleAccounts answers in request order, null for unknown keys; refuses > 100 keys."""
    keys = [node.sim.markets[1].address, Pubkey.new_unique(), *list(node.sim.users)[:3]]
    resp = await client.get_multiple_accounts(keys)
    assert resp.context.slot == node.sim.slot
    assert resp.value[1] is None
    for key, account in zip(keys, resp.value, strict=True):
        if account is not None:
            served = node.sim.account(key)
            assert served is not None
            assert account.data == served.data
    too_many = [str(Pubkey.new_unique()) for _ in range(101)]
    error = await h.call(session, node.url, "getMultipleAccounts", [too_many])
    assert error["error"]["code"] == -32602


@pytest.mark.asyncio
async def test_get_program_accounts_filters(node: server.SimnetServer, client: AsyncClient) -> None:
    """dataSize and memcmp (discriminator, authority) select exactly the matching accounts."""
    users = await client.get_program_accounts(
        layout.DRIFT_PROGRAM_ID,
        encoding="base64",
        filters=[layout.USER_SIZE, MemcmpOpts(offset=0, bytes=USER_DISCRIMINATOR)],
    )
    assert {a.pubkey for a in users.value} == set(node.sim.users)
    for keyed in users.value:
        assert keyed.account.data == layout.encode_user(node.sim.users[keyed.pubkey])
    authority = node.sim.users[next(iter(node.sim.makers))].authority
    mine = await client.get_program_accounts(
        layout.DRIFT_PROGRAM_ID,
        encoding="base64+zstd",
        filters=[
            MemcmpOpts(offset=0, bytes=USER_DISCRIMINATOR),
            MemcmpOpts(offset=8, bytes=str(authority)),
        ],
    )
    assert {a.pubkey for a in mine.value} == set(node.sim.sub_accounts[authority])
    markets = await client.get_program_accounts(
        layout.DRIFT_PROGRAM_ID, encoding="base64", filters=[1216]
    )
    assert {a.pubkey for a in markets.value} == {m.address for m in node.sim.markets.values()}
    everything = await client.get_program_accounts(layout.DRIFT_PROGRAM_ID, encoding="base64")
    assert len(everything.value) == len(list(node.sim.program_accounts()))
    other = await client.get_program_accounts(Pubkey.new_unique(), encoding="base64")
    assert other.value == []


@pytest.mark.asyncio
async def test_get_program_accounts_zstd_is_per_account_zstd(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """base64+zstd data is each account's bytes zstd-compressed, then base64-encoded."""
    answer = await h.call(
        session,
        node.url,
        "getProgramAccounts",
        [
            str(layout.DRIFT_PROGRAM_ID),
            {"encoding": "base64+zstd", "filters": [{"dataSize": 4376}]},
        ],
    )
    for item in answer["result"]:
        payload, encoding = item["account"]["data"]
        assert encoding == "base64+zstd"
        raw = zstandard.ZstdDecompressor().decompress(base64.b64decode(payload))
        assert raw == layout.encode_user(node.sim.users[Pubkey.from_string(item["pubkey"])])


@pytest.mark.asyncio
async def test_get_program_accounts_with_context_and_min_context_slot(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """withContext wraps the list with the slot; a minContextSlot ahead of the node is -32016."""
    params = {"encoding": "base64", "withContext": True, "filters": [{"dataSize": 1216}]}
    text = await h.call_text(
        session, node.url, "getProgramAccounts", [str(layout.DRIFT_PROGRAM_ID), params]
    )
    parsed = GetProgramAccountsWithContextResp.from_json(text)
    assert isinstance(parsed, GetProgramAccountsWithContextResp)
    assert parsed.context.slot == node.sim.slot
    assert len(parsed.value) == 3
    ok = {**params, "minContextSlot": node.sim.slot}
    assert "result" in await h.call(
        session, node.url, "getProgramAccounts", [str(layout.DRIFT_PROGRAM_ID), ok]
    )
    ahead = {**params, "minContextSlot": node.sim.slot + 5}
    text = await h.call_text(
        session, node.url, "getProgramAccounts", [str(layout.DRIFT_PROGRAM_ID), ahead]
    )
    error = GetProgramAccountsWithContextResp.from_json(text)
    assert isinstance(error, MinContextSlotNotReachedMessage)
    assert error.data.context_slot == node.sim.slot
    slot_text = await h.call_text(
        session, node.url, "getSlot", [{"minContextSlot": node.sim.slot + 1}]
    )
    assert isinstance(GetSlotResp.from_json(slot_text), MinContextSlotNotReachedMessage)


@pytest.mark.asyncio
async def test_bad_filters_are_invalid_params(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """Unknown filters, bad base58 and more than four filters are -32602 invalid params."""
    program = str(layout.DRIFT_PROGRAM_ID)
    bad = [
        [{"dataSizeX": 1}],
        [{"memcmp": {"offset": 0, "bytes": "0OIl"}}],
        [{"dataSize": 1}] * 5,
        "not a list",
    ]
    for filters in bad:
        text = await h.call_text(
            session, node.url, "getProgramAccounts", [program, {"filters": filters}]
        )
        assert isinstance(GetSlotResp.from_json(text), InvalidParamsMessage)


@pytest.mark.asyncio
async def test_signatures_newest_first_with_before_until_and_limit(
    node: server.SimnetServer, client: AsyncClient, session: aiohttp.ClientSession
) -> None:
    """getSignaturesForAddress pages newest first; before/until bound it; limit is at most 1000."""
    everything = (
        await client.get_signatures_for_address(layout.DRIFT_PROGRAM_ID, limit=1000)
    ).value
    assert len(everything) == len(node.sim.ledger.transactions)
    slots = [s.slot for s in everything]
    assert slots == sorted(slots, reverse=True)
    assert everything[0].signature == Signature.from_string(list(node.sim.ledger.transactions)[-1])
    page = (await client.get_signatures_for_address(layout.DRIFT_PROGRAM_ID, limit=5)).value
    assert page == everything[:5]
    after = await client.get_signatures_for_address(
        layout.DRIFT_PROGRAM_ID, before=page[-1].signature, limit=5
    )
    assert after.value == everything[5:10]
    window = await client.get_signatures_for_address(
        layout.DRIFT_PROGRAM_ID, before=everything[2].signature, until=everything[7].signature
    )
    assert window.value == everything[3:7]
    assert all(s.block_time == node.sim.ts_at(s.slot) for s in everything)
    maker = everything[0]
    tx = node.sim.ledger.transactions[str(maker.signature)]
    user = Pubkey.from_string(tx.fills[0].maker)
    mine = (await client.get_signatures_for_address(user, limit=1000)).value
    assert maker.signature in {s.signature for s in mine}
    error = await h.call(session, node.url, "getSignaturesForAddress", [str(user), {"limit": 1001}])
    assert error["error"]["code"] == -32602


@pytest.mark.asyncio
async def test_get_transaction_carries_drift_events_driftpy_decodes(
    node: server.SimnetServer, client: AsyncClient
) -> None:
    """getTransaction (json) has slot, blockTime and logs whose events driftpy parses as fills."""
    sigs = (await client.get_signatures_for_address(layout.DRIFT_PROGRAM_ID, limit=50)).value
    fills = {
        (f.market_index, f.fill_record_id): f
        for f in node.sim.ledger.fills_between(0, node.sim.slot)
    }
    decoded = 0
    for sig in sigs:
        resp = await client.get_transaction(
            sig.signature, encoding="json", max_supported_transaction_version=0
        )
        assert resp.value is not None
        assert resp.value.slot == sig.slot
        assert resp.value.block_time == sig.block_time
        meta = resp.value.transaction.meta
        assert meta is not None
        assert meta.log_messages is not None
        for event in h.drift_events(list(meta.log_messages)):
            assert event.name == "OrderActionRecord"
            data = event.data
            fill = fills[(data.market_index, data.fill_record_id)]
            assert fill.signature == str(sig.signature)
            assert str(data.maker) == fill.maker
            assert str(data.taker) == fill.taker
            assert data.base_asset_amount_filled == fill.base
            assert data.quote_asset_amount_filled == fill.quote
            assert data.maker_order_id == fill.maker_order_id
            assert data.ts == fill.ts
            assert type(data.action).__name__ == "Fill"
            decoded += 1
    assert decoded >= len(sigs)
    missing = await client.get_transaction(Signature.default(), encoding="json")
    assert missing.value is None


@pytest.mark.asyncio
async def test_get_transaction_rejects_other_encodings(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """Only the json encoding is served; asking for another is -32602 invalid params."""
    signature = next(iter(node.sim.ledger.transactions))
    answer = await h.call(session, node.url, "getTransaction", [signature, {"encoding": "base64"}])
    assert answer["error"]["code"] == -32602
    nothing = await h.call(session, node.url, "getSignaturesForAddress", [str(Pubkey.new_unique())])
    assert nothing["result"] == []


@pytest.mark.asyncio
async def test_get_block_time(
    node: server.SimnetServer, client: AsyncClient, session: aiohttp.ClientSession
) -> None:
    """getBlockTime is the simulated time of a slot; a future slot is -32004 block not available."""
    assert (await client.get_block_time(node.sim.slot - 10)).value == node.sim.ts_at(
        node.sim.slot - 10
    )
    text = await h.call_text(session, node.url, "getBlockTime", [node.sim.slot + 100])
    assert isinstance(GetBlockTimeResp.from_json(text), BlockNotAvailableMessage)


@pytest.mark.asyncio
async def test_batches_and_json_rpc_errors(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """Batches answer each item by id; parse error, bad request, unknown method use -327xx codes."""
    batch = [
        {"jsonrpc": "2.0", "id": 7, "method": "getSlot"},
        {"jsonrpc": "2.0", "id": 8, "method": "noSuchMethod"},
        {"jsonrpc": "2.0", "id": 9, "method": "getAccountInfo", "params": ["not-a-key"]},
    ]
    status, answer, _ = await h.post(session, node.url, batch)
    assert status == 200
    assert [a["id"] for a in answer] == [7, 8, 9]
    assert answer[0]["result"] == node.sim.slot
    assert answer[1]["error"]["code"] == -32601
    assert answer[2]["error"]["code"] == -32602
    _, parse_error, _ = await h.post(session, node.url, "{not json")
    assert parse_error == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    _, empty, _ = await h.post(session, node.url, [])
    assert empty["error"]["code"] == -32600
    _, no_version, _ = await h.post(session, node.url, {"id": 1, "method": "getSlot"})
    assert no_version["error"]["code"] == -32600
    text = await h.call_text(session, node.url, "getFoo")
    assert isinstance(GetSlotResp.from_json(text), MethodNotFoundMessage)


@pytest.mark.asyncio
async def test_ground_truth_endpoint_serves_the_book_and_fills(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """GET /_simnet/book and /_simnet/fills return the same JSON as the truth module."""
    slot = node.sim.slot - 3
    async with session.get(
        f"{node.url}/_simnet/book", params={"slot": slot, "market": "ETH-PERP"}
    ) as resp:
        assert await resp.json() == truth.book(node.sim, slot, 2)
    async with session.get(f"{node.url}/_simnet/book", params={"slot": slot}) as resp:
        assert await resp.json() == truth.books(node.sim, slot)
    async with session.get(f"{node.url}/_simnet/book", params={"slot": 1}) as resp:
        assert resp.status == 404
    async with session.get(
        f"{node.url}/_simnet/fills", params={"from": slot - 20, "to": slot}
    ) as resp:
        assert await resp.json() == truth.fills(node.sim, slot - 20, slot)
    async with session.post(f"{node.url}/_simnet/step", json={"slots": 4}) as resp:
        assert (await resp.json())["slot"] == slot + 7
