"""The simnet for long simulated runs: a chosen genesis, long slots, a node that answers from
behind consistently, and ground truth that says which fills a reader could see."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import signal
import sys
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from driftsnap.simnet import command, layout, model, scenarios, server, truth
from tests import simnet_helpers as h

ENTRY = (
    "import argparse, sys\n"
    "from driftsnap.simnet import command\n"
    "parser = argparse.ArgumentParser()\n"
    "command.add_arguments(parser)\n"
    "sys.exit(command.run(parser.parse_args(sys.argv[1:])))\n"
)
MONDAY = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp())


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_the_flags_for_long_runs() -> None:
    """--genesis-ts, --history-slots and --max-transactions reach the simulator; bad values stop."""
    args = _parse("--genesis-ts", str(MONDAY), "--history-slots", "9000", "--max-transactions", "7")
    assert args.genesis_ts == MONDAY
    chosen = command.scenario_from(args)
    assert (chosen.history_slots, chosen.max_transactions) == (9_000, 7)
    assert chosen.markets == scenarios.DEFAULT.markets
    assert command.scenario_from(_parse()) == scenarios.DEFAULT
    assert command.DEFAULT_GENESIS_TS == model.GENESIS_TS
    for bad in (["--slot-ms", "0"], ["--genesis-ts", "-5"], ["--history-slots", "x"]):
        with pytest.raises(SystemExit):
            _parse(*bad)


def test_the_chain_time_starts_now_unless_fixed_or_given() -> None:
    """Without --genesis-ts the simulated chain starts at the wall clock (a daemon on the wall
    clock then sees its fills in the current week); --fixed-time keeps June 2025 on every run,
    and the two flags exclude each other."""
    before = int(time.time())
    now = command.genesis_ts(_parse())
    assert before <= now <= int(time.time())
    assert command.genesis_ts(_parse("--fixed-time")) == model.GENESIS_TS
    assert command.genesis_ts(_parse("--genesis-ts", str(MONDAY))) == MONDAY
    with pytest.raises(SystemExit):
        _parse("--fixed-time", "--genesis-ts", str(MONDAY))


@pytest.mark.asyncio
async def test_the_simnet_command_serves_todays_block_times() -> None:
    """`driftsnap simnet` with no time flag: the latest block time is within a minute of now."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "--scenario", "quiet", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
        async with aiohttp.ClientSession() as session:
            slot = (await h.call(session, ready["rpc"], "getSlot"))["result"]
            block = (await h.call(session, ready["rpc"], "getBlockTime", [slot]))["result"]
        assert abs(block - time.time()) < 60
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0


def test_time_starts_at_the_genesis_given() -> None:
    """Block times start at genesis_ts and advance slot_ms per slot; a bad slot_ms is refused."""
    sim = model.Simulator(scenarios.QUIET, seed=1, slot_ms=60_000, genesis_ts=MONDAY)
    assert sim.ts == MONDAY
    for _ in range(3):
        sim.step()
    assert sim.ts == MONDAY + 180
    assert sim.ts_at(model.GENESIS_SLOT + 60) == MONDAY + 3_600
    with pytest.raises(ValueError, match="slot_ms"):
        model.Simulator(scenarios.QUIET, seed=1, slot_ms=0)


def test_an_expiring_order_lives_fifty_slots_at_any_slot_length() -> None:
    """The scenario's order that expires mid-run rests 50 slots (max_ts), a minute a slot too."""
    # Seed 4: the order is neither filled nor pulled before it expires.
    sim = model.Simulator(scenarios.QUIET, seed=4, slot_ms=60_000, genesis_ts=MONDAY)
    expiring = [
        (address, o)
        for address, user in sim.users.items()
        for o in user.orders
        if o.max_ts > sim.ts and o.post_only
    ]
    assert expiring
    assert {o.max_ts for _, o in expiring} == {sim.ts_at(model.GENESIS_SLOT + 50)}
    for _ in range(55):
        sim.step()
    boundary = 0
    for address, order in expiring:
        for s in range(model.GENESIS_SLOT, model.GENESIS_SLOT + 55):
            state = sim.state_at(s)
            assert state is not None
            # Takers fill it, or the maker pulls it once the oracle crosses it: on the account?
            on = any(
                o.order_id == order.order_id and o.remaining > 0
                for o in state.users[address].orders
            )
            listed = any(
                o["user"] == str(address) and o["order_id"] == order.order_id
                for o in truth.book(sim, s, order.market_index)["orders"]
            )
            assert listed == (on and s <= model.GENESIS_SLOT + 50), (s, on, listed)
            boundary += on and s == model.GENESIS_SLOT + 51
    assert boundary  # one was still on the account once it had expired, and left the book


@pytest.mark.asyncio
async def test_fast_with_minute_slots_runs_an_hour_a_second() -> None:
    """`driftsnap simnet --fast --slot-ms 60000` advances a slot every 20 ms and a minute of
    block time per slot, and says so in its first line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "--scenario", "quiet", "--port", "0", "--fast",
        "--slot-ms", "60000", "--genesis-ts", str(MONDAY),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
        assert ready["event"] == "simnet_listening"
        assert (ready["slot_ms"], ready["wall_ms_per_slot"]) == (60_000, 20)
        assert ready["block_time"] >= MONDAY
        async with aiohttp.ClientSession() as session:
            slot = (await h.call(session, ready["rpc"], "getSlot"))["result"]
            await asyncio.sleep(1.0)
            later = (await h.call(session, ready["rpc"], "getSlot"))["result"]
            times = [
                (await h.call(session, ready["rpc"], "getBlockTime", [s]))["result"]
                for s in (slot, later)
            ]
        assert 20 <= later - slot <= 55  # ~50 at 20 ms, fewer on a loaded machine
        assert times[1] - times[0] == (later - slot) * 60
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0


@pytest.mark.asyncio
async def test_a_node_behind_serves_its_older_state_not_todays_under_an_older_slot() -> None:
    """slot_backwards answers accounts as they were at the older slot it names: Users, markets
    and oracles, byte for byte."""
    async with server.serve("default", seed=3, slot_ms=60_000) as node:
        await node.advance(30)
        behind = node.sim.slot - 6
        users = list(node.sim.users)
        old = node.sim.state_at(behind)
        assert old is not None
        assert any(old.users[u] is not node.sim.users[u] for u in users)  # something changed
        market = node.sim.markets[0]
        node.set_faults(slot_backwards=2, backwards_by=6)
        async with aiohttp.ClientSession() as session:
            answer = await h.call(
                session, node.url, "getMultipleAccounts",
                [[str(u) for u in users], {"encoding": "base64"}],
            )  # fmt: skip
            oracle = await h.call(
                session, node.url, "getAccountInfo",
                [str(market.oracle_address), {"encoding": "base64"}],
            )  # fmt: skip
        assert answer["result"]["context"]["slot"] == behind
        for address, served in zip(users, answer["result"]["value"], strict=True):
            data = base64.b64decode(served["data"][0])
            assert data == layout.encode_user(old.users[address])
        price = layout.decode_pyth_lazer(base64.b64decode(oracle["result"]["value"]["data"][0]))
        assert price[0] == market.oracle_raw(old.oracle_prices[0])
        assert oracle["result"]["context"]["slot"] == behind
        assert old.oracle_prices[0] != market.oracle_price


def test_truth_prices_a_book_at_a_later_oracle() -> None:
    """oracle_slot keeps the orders of the slot and moves floating ones with the later oracle."""
    sim = model.Simulator(scenarios.DEFAULT, seed=4)
    for _ in range(10):
        sim.step()
    slot = sim.slot - 5
    plain = truth.book(sim, slot, 0)
    later = truth.book(sim, slot, 0, oracle_slot=sim.slot)
    assert later["oracle_price"] != plain["oracle_price"]
    moved = later["oracle_price"] - plain["oracle_price"]
    pairs = list(zip(plain["orders"], later["orders"], strict=True))
    assert {(a["user"], a["order_id"]) for a, _ in pairs} == {
        (b["user"], b["order_id"]) for _, b in pairs
    }
    shifts = {b["price"] - a["price"] for a, b in pairs}
    assert shifts == {0, moved}  # fixed-price orders stay, oracle-offset orders move


def test_truth_says_which_fills_a_reader_could_see() -> None:
    """A fill is listed unless its transaction was unlisted, logged unless truncated logs cut
    its event: exactly the events driftpy parses out of the node's logs."""
    sim = model.Simulator(dataclasses.replace(scenarios.DEFAULT, fills_per_slot=3.0), seed=5)
    for i in range(200):
        sim.truncate_next_logs += 1 if i % 3 == 0 else 0
        sim.unlist_next += 1 if i % 50 == 0 else 0
        sim.step()
    fills = truth.fills(sim, 0, sim.slot)
    by_signature: dict[str, list[dict[str, object]]] = {}
    for f in fills:
        by_signature.setdefault(str(f["signature"]), []).append(f)
    cut = 0
    for tx in sim.ledger.between(0, sim.slot):
        seen = {int(e.data.fill_record_id) for e in h.drift_events(list(tx.logs))}
        logged = {int(str(f["fill_record_id"])) for f in by_signature[tx.signature] if f["logged"]}
        assert seen == logged
        cut += len(by_signature[tx.signature]) - len(logged)
        assert all(
            f["listed"] == (tx.signature not in sim.unlisted) for f in by_signature[tx.signature]
        )
    assert cut > 0
    assert 0 < sum(not f["listed"] for f in fills) < len(fills)
