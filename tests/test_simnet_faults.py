"""Every fault the simnet injects shows up over the wire exactly as armed, and then stops."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aiohttp
import pytest
import pytest_asyncio
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey
from solders.rpc.errors import MinContextSlotNotReachedMessage, NodeUnhealthyMessage
from solders.rpc.responses import GetSlotResp
from solders.signature import Signature

from driftsnap.simnet import faults, layout, model, rpc, server
from tests import simnet_helpers as h

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest_asyncio.fixture
async def node() -> AsyncIterator[server.SimnetServer]:
    async with server.serve("quiet", seed=13) as running:
        await running.advance(20)
        yield running


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.asyncio
async def test_429_with_retry_after_for_the_next_n_requests(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """http_429=2 refuses exactly two requests with 429 and Retry-After, then serves again."""
    node.set_faults(http_429=2, retry_after_s=3)
    request = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
    for _ in range(2):
        async with session.post(node.url, json=request) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
    assert (await h.call(session, node.url, "getSlot"))["result"] == node.sim.slot


@pytest.mark.asyncio
async def test_slow_responses(node: server.SimnetServer, session: aiohttp.ClientSession) -> None:
    """delay_ms holds every response at least that long; a short client timeout then fires."""
    node.set_faults(delay_ms=150)
    started = time.monotonic()
    await h.call(session, node.url, "getSlot")
    assert time.monotonic() - started >= 0.15
    request = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
    with pytest.raises(asyncio.TimeoutError):
        await session.post(node.url, json=request, timeout=aiohttp.ClientTimeout(total=0.05))


@pytest.mark.asyncio
async def test_node_behind(node: server.SimnetServer, session: aiohttp.ClientSession) -> None:
    """node_behind answers -32005 with numSlotsBehind, which solders reads as NodeUnhealthy."""
    node.set_faults(node_behind=1, behind_by_slots=17)
    text = await h.call_text(session, node.url, "getHealth")
    parsed = GetSlotResp.from_json(text)
    assert isinstance(parsed, NodeUnhealthyMessage)
    assert parsed.data.num_slots_behind == 17
    assert (await h.call(session, node.url, "getHealth"))["result"] == "ok"


@pytest.mark.asyncio
async def test_min_context_slot_not_reached(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """min_context_not_reached answers -32016 with the node's contextSlot, once."""
    node.set_faults(min_context_not_reached=1)
    text = await h.call_text(session, node.url, "getSlot")
    parsed = GetSlotResp.from_json(text)
    assert isinstance(parsed, MinContextSlotNotReachedMessage)
    assert parsed.data.context_slot == node.sim.slot
    assert (await h.call(session, node.url, "getSlot"))["result"] == node.sim.slot


@pytest.mark.asyncio
async def test_context_slot_goes_backwards(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """slot_backwards serves the next calls at an older slot (getSlot and context.slot alike)."""
    node.set_faults(slot_backwards=2, backwards_by=4)
    now = node.sim.slot
    assert (await h.call(session, node.url, "getSlot"))["result"] == now - 4
    answer = await h.call(
        session,
        node.url,
        "getAccountInfo",
        [str(node.sim.markets[0].address), {"encoding": "base64"}],
    )
    assert answer["result"]["context"]["slot"] == now - 4
    assert (await h.call(session, node.url, "getSlot"))["result"] == now


@pytest.mark.asyncio
async def test_malformed_accounts(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """Truncated, wrong-discriminator and wrong-owner users are served so, and filters see it."""
    truncated, wrong_disc, wrong_owner = [str(a) for a in list(node.sim.users)[:3]]
    node.set_faults(
        malformed={
            truncated: "truncated",
            wrong_disc: "wrong_discriminator",
            wrong_owner: "wrong_owner",
        }
    )
    async with AsyncClient(node.url) as client:
        got = (
            await client.get_multiple_accounts(
                [Pubkey.from_string(k) for k in (truncated, wrong_disc, wrong_owner)]
            )
        ).value
        assert got[0] is not None
        assert len(got[0].data) == layout.USER_SIZE // 2
        assert got[1] is not None
        assert got[1].data[:8] != layout.account_discriminator("User")
        assert got[1].data[8:40] == bytes(node.sim.users[Pubkey.from_string(wrong_disc)].authority)
        assert got[2] is not None
        assert got[2].owner == rpc.SYSTEM_PROGRAM
        users = await client.get_program_accounts(
            layout.DRIFT_PROGRAM_ID, encoding="base64", filters=[layout.USER_SIZE]
        )
    listed = {str(a.pubkey) for a in users.value}
    assert wrong_disc in listed
    assert truncated not in listed
    assert wrong_owner not in listed
    assert len(listed) == len(node.sim.users) - 2


@pytest.mark.asyncio
async def test_get_transaction_null_until_old_enough(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """transaction_null_slots hides a transaction from getTransaction until it is N slots old."""
    node.set_faults(transaction_null_slots=3, signature_burst=1)
    await node.advance(1)
    newest = node.sim.ledger.signatures_for(
        str(layout.DRIFT_PROGRAM_ID), before=None, until=None, limit=1
    )[0]
    params = [newest.signature, {"encoding": "json", "maxSupportedTransactionVersion": 0}]
    assert (await h.call(session, node.url, "getTransaction", params))["result"] is None
    await node.advance(2)
    assert (await h.call(session, node.url, "getTransaction", params))["result"] is None
    await node.advance(1)
    assert (await h.call(session, node.url, "getTransaction", params))["result"][
        "slot"
    ] == newest.slot


@pytest.mark.asyncio
async def test_truncated_logs_lose_events(node: server.SimnetServer) -> None:
    """truncate_logs cuts the next transaction's logs at 'Log truncated'; later events are gone."""
    node.set_faults(truncate_logs=1, signature_burst=3)
    before = node.sim.ledger.next_seq
    await node.advance(1)
    txs = node.sim.ledger.since(before)
    truncated = [tx for tx in txs if tx.logs[-1] == "Log truncated"]
    assert len(truncated) == 1
    assert truncated[0] is txs[0]
    async with AsyncClient(node.url) as client:
        for tx in txs:
            resp = await client.get_transaction(Signature.from_string(tx.signature))
            assert resp.value is not None
            assert resp.value.transaction.meta is not None
            logs = resp.value.transaction.meta.log_messages
            assert logs is not None
            events = h.drift_events(list(logs))
            assert len(events) <= len(tx.fills)
            if tx is truncated[0]:
                assert logs[-1] == "Log truncated"
            else:
                assert len(events) == len(tx.fills)


@pytest.mark.asyncio
async def test_more_than_1000_signatures_between_two_polls(node: server.SimnetServer) -> None:
    """signature_burst puts 1,500 transactions in one slot: a poll must page to see them all."""
    async with AsyncClient(node.url) as client:
        last = (await client.get_signatures_for_address(layout.DRIFT_PROGRAM_ID, limit=1)).value[0]
        node.set_faults(signature_burst=1500)
        await node.advance(1)
        page = (
            await client.get_signatures_for_address(layout.DRIFT_PROGRAM_ID, until=last.signature)
        ).value
        assert len(page) == 1000
        rest = (
            await client.get_signatures_for_address(
                layout.DRIFT_PROGRAM_ID, before=page[-1].signature, until=last.signature
            )
        ).value
    assert len(page) + len(rest) >= 1500
    assert {s.signature for s in page}.isdisjoint({s.signature for s in rest})


@pytest.mark.asyncio
async def test_forged_fills_are_listed_under_drift_but_never_invoke_it(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """forge_fills=2: two transactions listed under Drift whose logs claim a Drift fill of a
    million USDC with the market's next real id, while their message never names Drift."""
    next_ids = {i: m.next_fill_record_id for i, m in node.sim.markets.items()}
    before = node.sim.ledger.next_seq
    node.set_faults(forge_fills=2)
    await node.advance(1)
    forged = [tx for tx in node.sim.ledger.since(before) if tx.signature in node.sim.forged]
    assert len(forged) == 2
    assert node.faults.forge_fills == 0  # an action: performed once, then reset
    listed = await h.call(
        session, node.url, "getSignaturesForAddress", [model.DRIFT_PROGRAM, {"limit": 1000}]
    )
    assert {tx.signature for tx in forged} <= {s["signature"] for s in listed["result"]}
    for tx in forged:
        assert tx.fills == ()  # nothing happened on chain
        answer = (await h.call(session, node.url, "getTransaction", [tx.signature]))["result"]
        message = answer["transaction"]["message"]
        assert model.DRIFT_PROGRAM not in message["accountKeys"]
        (instruction,) = message["instructions"]
        assert message["accountKeys"][instruction["programIdIndex"]] == model.FORGER_PROGRAM
        logs = answer["meta"]["logMessages"]
        assert logs[0] == f"Program {model.DRIFT_PROGRAM} invoke [1]"
        (event,) = h.drift_events(logs)
        assert int(event.data.quote_asset_amount_filled) == model.FORGED_QUOTE
        assert int(event.data.fill_record_id) >= next_ids[int(event.data.market_index)]
    # The forgeries do not advance the markets' counters: only real fills do.
    real = [f for tx in node.sim.ledger.since(before) for f in tx.fills]
    for index, market in node.sim.markets.items():
        assert market.next_fill_record_id == next_ids[index] + sum(
            1 for f in real if f.market_index == index
        )


@pytest.mark.asyncio
async def test_ignore_before_serves_the_newest_page_again(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """ignore_before=2: two pages asked for ``before`` X come back as the newest page, then
    paging works again."""
    params = [model.DRIFT_PROGRAM, {"limit": 5}]
    newest = (await h.call(session, node.url, "getSignaturesForAddress", params))["result"]
    older = [model.DRIFT_PROGRAM, {"limit": 5, "before": newest[-1]["signature"]}]
    node.set_faults(ignore_before=2)
    for _ in range(2):
        again = (await h.call(session, node.url, "getSignaturesForAddress", older))["result"]
        assert again == newest
    paged = (await h.call(session, node.url, "getSignaturesForAddress", older))["result"]
    assert paged
    assert {s["signature"] for s in paged}.isdisjoint(s["signature"] for s in newest)


@pytest.mark.asyncio
async def test_periodic_bursts_and_truncations(node: server.SimnetServer) -> None:
    """burst_every_slots and truncate_every_slots repeat on the slot clock until switched off."""
    node.set_faults(burst_every_slots=5, burst_size=30, truncate_every_slots=10)
    per_slot: dict[int, int] = {}
    truncated_slots = set()
    before = node.sim.ledger.next_seq
    await node.advance(20)
    for tx in node.sim.ledger.since(before):
        per_slot[tx.slot] = per_slot.get(tx.slot, 0) + 1
        if tx.logs[-1] == "Log truncated":
            truncated_slots.add(tx.slot)
    bursts = {slot for slot, n in per_slot.items() if n >= 30}
    assert bursts == {slot for slot in per_slot if slot % 5 == 0}
    assert truncated_slots == {slot for slot in per_slot if slot % 10 == 0}
    node.set_faults(burst_every_slots=0, truncate_every_slots=0)
    before = node.sim.ledger.next_seq
    await node.advance(10)
    assert all(tx.logs[-1] != "Log truncated" for tx in node.sim.ledger.since(before))
    assert len(node.sim.ledger.since(before)) < 30


@pytest.mark.asyncio
async def test_server_goes_away_and_comes_back(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """go_away refuses connections; come_back serves again on the same port with the same chain."""
    port, slot = node.port, node.sim.slot
    await node.go_away()
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.call(session, node.url, "getSlot")
    await node.advance(2)
    await node.come_back()
    assert node.port == port
    assert (await h.call(session, node.url, "getSlot"))["result"] == slot + 2


@pytest.mark.asyncio
async def test_control_endpoint_sets_faults_and_an_outage(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """POST /_simnet/faults validates and applies settings; down_ms takes the node away a while."""
    async with session.post(f"{node.url}/_simnet/faults", json={"no_such_fault": 1}) as resp:
        assert resp.status == 400
    async with session.post(f"{node.url}/_simnet/faults", json={"http_429": -1}) as resp:
        assert resp.status == 400
    async with session.post(f"{node.url}/_simnet/faults", json={"node_behind": 1}) as resp:
        assert resp.status == 200
        assert (await resp.json())["node_behind"] == 1
    assert (await h.call(session, node.url, "getSlot"))["error"]["code"] == -32005
    async with session.post(f"{node.url}/_simnet/faults", json={"down_ms": 300}) as resp:
        assert resp.status == 200
    went_away = came_back = False
    # A real outage in wall time: poll until it starts and until it is over (bounded).
    for _ in range(200):
        try:
            await h.call(session, node.url, "getSlot")
        except aiohttp.ClientConnectionError:
            went_away = True
        else:
            came_back = went_away
        if came_back:
            break
        await asyncio.sleep(0.01)
    assert went_away
    assert came_back


@pytest.mark.asyncio
async def test_periodic_outages(node: server.SimnetServer, session: aiohttp.ClientSession) -> None:
    """outage_every_slots takes the node away on the slot clock; it listens again afterwards."""
    node.set_faults(outage_every_slots=3, outage_ms=100)
    await node.advance(3)
    went_away = False
    for _ in range(100):  # the outage starts in wall time: poll (bounded) until it has
        try:
            await h.call(session, node.url, "getSlot")
        except aiohttp.ClientConnectionError:
            went_away = True
            break
        await asyncio.sleep(0.005)
    assert went_away
    await node.outage_over()
    node.set_faults(outage_every_slots=0)
    assert (await h.call(session, node.url, "getSlot"))["result"] == node.sim.slot


@pytest.mark.asyncio
async def test_chaos_is_seeded_and_mixes_fault_kinds(
    node: server.SimnetServer, session: aiohttp.ClientSession
) -> None:
    """chaos=1 faults every request with a mix of 429, -32005, -32016 and backwards slots."""
    node.set_faults(chaos=1.0)
    seen = set()
    for _ in range(40):
        status, answer, _ = await h.post(
            session, node.url, {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
        )
        if status == 429:
            seen.add("429")
        elif "error" in answer:
            seen.add(str(answer["error"]["code"]))
        else:
            assert answer["result"] < node.sim.slot
            seen.add("backwards")
    assert seen == {"429", "-32005", "-32016", "backwards"}


def test_faults_reject_unknown_settings() -> None:
    """A Faults object refuses unknown keys and out-of-range values."""
    with pytest.raises(ValueError, match="extra"):
        faults.Faults().updated({"nope": 1})
    with pytest.raises(ValueError, match="less than or equal"):
        faults.Faults().updated({"chaos": 2})
