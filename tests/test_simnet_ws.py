"""The simnet's websocket API: solana-py's websocket client subscribes and parses every message."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import websockets
from driftpy.accounts.oracle import decode_oracle
from driftpy.types import OracleSource
from solana.rpc.types import MemcmpOpts
from solana.rpc.websocket_api import SolanaWsClientProtocol, connect
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.responses import (
    AccountNotification,
    LogsNotification,
    ProgramNotification,
    SlotNotification,
    SubscriptionResult,
)
from websockets.exceptions import ConnectionClosed

from driftsnap.simnet import layout, rpc, server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest_asyncio.fixture
async def node() -> AsyncIterator[server.SimnetServer]:
    async with server.serve("quiet", seed=17) as running:
        await running.advance(5)
        yield running


async def _subscribed(ws: SolanaWsClientProtocol) -> int:
    (answer,) = await ws.recv()
    assert isinstance(answer, SubscriptionResult)
    return int(answer.result)


async def _notifications(ws: SolanaWsClientProtocol, count: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < count:
        out.extend(await asyncio.wait_for(ws.recv(), timeout=5))
    return out


@pytest.mark.asyncio
async def test_slot_subscribe(node: server.SimnetServer) -> None:
    """slotSubscribe notifies every new slot with its parent, until unsubscribed."""
    async with connect(node.ws_url) as ws:
        await ws.slot_subscribe()
        sub = await _subscribed(ws)
        await node.advance(2)
        first, second = await _notifications(ws, 2)
        assert isinstance(first, SlotNotification)
        assert first.subscription == sub
        assert (first.result.slot, second.result.slot) == (node.sim.slot - 1, node.sim.slot)
        assert first.result.parent == first.result.slot - 1
        await ws.slot_unsubscribe(sub)
        (answer,) = await ws.recv()
        assert answer.result is True


@pytest.mark.asyncio
async def test_logs_subscribe_mentions_the_drift_program(node: server.SimnetServer) -> None:
    """logsSubscribe(mentions Drift) sends each new transaction's signature and logs."""
    async with connect(node.ws_url) as ws:
        await ws.logs_subscribe(RpcTransactionLogsFilterMentions(layout.DRIFT_PROGRAM_ID))
        await _subscribed(ws)
        before = node.sim.ledger.next_seq
        node.set_faults(signature_burst=3)
        await node.advance(1)
        txs = node.sim.ledger.since(before)
        got = await _notifications(ws, len(txs))
    assert all(isinstance(n, LogsNotification) for n in got)
    assert [str(n.result.value.signature) for n in got] == [tx.signature for tx in txs]
    assert [list(n.result.value.logs) for n in got] == [list(tx.logs) for tx in txs]


@pytest.mark.asyncio
async def test_account_subscribe_sends_the_new_oracle(node: server.SimnetServer) -> None:
    """accountSubscribe on an oracle sends its new bytes each slot; driftpy reads the price."""
    market = node.sim.markets[0]
    async with connect(node.ws_url) as ws:
        await ws.account_subscribe(market.oracle_address, encoding="base64")
        await _subscribed(ws)
        await node.advance(1)
        (note,) = await _notifications(ws, 1)
    assert isinstance(note, AccountNotification)
    assert note.result.context.slot == node.sim.slot
    price = decode_oracle(note.result.value.data, OracleSource.PythLazer())
    assert price.price == market.oracle_price


@pytest.mark.asyncio
async def test_program_subscribe_with_filters(node: server.SimnetServer) -> None:
    """programSubscribe (dataSize + memcmp) sends only matching accounts, only when they change."""
    async with connect(node.ws_url) as ws:
        user_disc = rpc.b58encode(layout.account_discriminator("User")).decode()
        await ws.program_subscribe(
            layout.DRIFT_PROGRAM_ID,
            encoding="base64",
            filters=[layout.USER_SIZE, MemcmpOpts(offset=0, bytes=user_disc)],
        )
        await _subscribed(ws)
        before = {a: layout.encode_user(u) for a, u in node.sim.users.items()}
        node.set_faults(signature_burst=2)
        await node.advance(1)
        changed = {a for a, u in node.sim.users.items() if layout.encode_user(u) != before.get(a)}
        got = await _notifications(ws, len(changed))
    assert changed
    assert all(isinstance(n, ProgramNotification) for n in got)
    assert {n.result.value.pubkey for n in got} == changed
    for n in got:
        assert n.result.value.account.data == layout.encode_user(
            node.sim.users[n.result.value.pubkey]
        )


@pytest.mark.asyncio
async def test_silent_websocket_stays_open(node: server.SimnetServer) -> None:
    """ws_silent keeps the socket open but sends nothing; lifting it resumes notifications."""
    async with connect(node.ws_url) as ws:
        await ws.slot_subscribe()
        await _subscribed(ws)
        node.set_faults(ws_silent=True)
        await node.advance(3)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), timeout=0.2)
        node.set_faults(ws_silent=False)
        await node.advance(1)
        (note,) = await _notifications(ws, 1)
        assert note.result.slot == node.sim.slot


@pytest.mark.asyncio
async def test_websocket_closes_when_the_server_goes_away(node: server.SimnetServer) -> None:
    """go_away closes open websockets, so a client sees the connection end."""
    async with connect(node.ws_url) as ws:
        await ws.slot_subscribe()
        await _subscribed(ws)
        await node.go_away()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    await node.come_back()


@pytest.mark.asyncio
async def test_bad_websocket_requests_get_json_rpc_errors(node: server.SimnetServer) -> None:
    """Unknown methods, bad ids and bad filters are answered with errors; the socket stays up."""
    async with websockets.connect(node.ws_url) as ws:
        requests = [
            {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
            {"jsonrpc": "2.0", "id": 2, "method": "slotUnsubscribe", "params": [[1]]},
            {"jsonrpc": "2.0", "id": 3, "method": "slotUnsubscribe", "params": [999]},
            {"jsonrpc": "2.0", "id": 4, "method": "programSubscribe", "params": ["nope"]},
            {"jsonrpc": "2.0", "id": 5, "method": "logsSubscribe", "params": [{"mentions": []}]},
        ]
        codes = []
        for request in requests:
            await ws.send(json.dumps(request))
            codes.append(json.loads(await ws.recv())["error"]["code"])
        await ws.send("{not json")
        codes.append(json.loads(await ws.recv())["error"]["code"])
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 6, "method": "slotSubscribe"}))
        assert isinstance(json.loads(await ws.recv())["result"], int)
    assert codes == [-32601, -32602, -32602, -32602, -32602, -32700]
