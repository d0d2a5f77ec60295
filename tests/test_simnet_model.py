"""The simulated market: deterministic, bounded, and its ground truth is spec 1.1 exactly."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from collections import defaultdict

import pytest
from driftpy.decode.user import decode_user
from driftpy.math.orders import (
    get_limit_price,
    is_resting_limit_order,
    is_triggered,
    must_be_triggered,
)
from driftpy.types import OraclePriceData
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.simnet import layout, model, scenarios, truth


def _stepped(scenario: scenarios.Scenario, seed: int, slots: int) -> model.Simulator:
    sim = model.Simulator(scenario, seed=seed)
    for _ in range(slots):
        sim.step()
    return sim


@pytest.fixture(scope="module")
def default_sim() -> model.Simulator:
    return _stepped(scenarios.DEFAULT, seed=11, slots=300)


def _served_bytes(sim: model.Simulator) -> dict[str, bytes]:
    return {str(address): account.data for address, account in sim.program_accounts()}


def test_same_seed_same_market() -> None:
    """Two simulators with one seed serve identical bytes and transactions after many slots."""
    a = _stepped(scenarios.QUIET, seed=4, slots=120)
    b = _stepped(scenarios.QUIET, seed=4, slots=120)
    assert _served_bytes(a) == _served_bytes(b)
    assert list(a.ledger.transactions) == list(b.ledger.transactions)
    assert truth.books(a, a.slot) == truth.books(b, b.slot)


def test_another_seed_another_market() -> None:
    """A different seed gives different makers and a different price path."""
    a = _stepped(scenarios.QUIET, seed=4, slots=30)
    b = _stepped(scenarios.QUIET, seed=5, slots=30)
    assert set(_served_bytes(a)) != set(_served_bytes(b))
    assert a.markets[0].oracle_price != b.markets[0].oracle_price


def test_simulated_time_follows_the_slot() -> None:
    """Time is derived from the slot at slot_ms per slot, never from the wall clock."""
    sim = model.Simulator(scenarios.QUIET, seed=1, slot_ms=400)
    start = sim.ts
    for _ in range(25):
        sim.step()
    assert sim.ts == start + 10
    assert sim.ts_at(sim.slot - 5) == start + 8


def test_default_scenario_has_the_promised_size(default_sim: model.Simulator) -> None:
    """default: 3 markets, 10 maker authorities with sub-accounts, a few hundred orders."""
    sim = default_sim
    assert [m.name for m in sim.markets.values()] == ["SOL-PERP", "BTC-PERP", "ETH-PERP"]
    maker_authorities = {sim.users[a].authority for a in sim.makers}
    assert len(maker_authorities) == 10
    assert any(len(sim.sub_accounts[a]) > 1 for a in maker_authorities)
    open_orders = sum(u.open_orders for u in sim.users.values())
    assert 200 <= open_orders <= 600
    for index in range(3):
        book = truth.book(sim, sim.slot, index)
        sides = {o["side"] for o in book["orders"]}
        assert sides == {"bid", "ask"}


def _eligible_by_driftpy(
    sim: model.Simulator, slot: int, market_index: int
) -> set[tuple[str, int, int, int]]:
    """Spec 1.1 assembled from driftpy's own predicates, over the bytes the simnet served."""
    state = sim.state_at(slot)
    assert state is not None
    oracle = OraclePriceData(
        price=state.oracle_prices[market_index],
        slot=slot,
        confidence=0,
        twap=0,
        twap_confidence=0,
        has_sufficient_number_of_data_points=True,
    )
    out = set()
    for address, user in state.users.items():
        decoded = decode_user(layout.encode_user(user))
        for order in decoded.orders:
            remaining = order.base_asset_amount - order.base_asset_amount_filled
            if (
                type(order.market_type).__name__ == "Perp"
                and order.market_index == market_index
                and is_resting_limit_order(order, slot)
                and (not must_be_triggered(order) or is_triggered(order))
                and remaining > 0
                and (order.max_ts == 0 or state.ts <= order.max_ts)
            ):
                price = get_limit_price(order, oracle, slot)
                out.add((str(address), order.order_id, price, remaining))
    return out


def test_ground_truth_book_agrees_with_driftpy_at_every_slot(default_sim: model.Simulator) -> None:
    """At every retained slot, the dumped book is what driftpy's predicates select and price."""
    sim = default_sim
    for slot in range(sim.history[0].slot, sim.slot + 1, 7):
        for index in sim.markets:
            book = truth.book(sim, slot, index)
            got = {(o["user"], o["order_id"], o["price"], o["size"]) for o in book["orders"]}
            assert got == _eligible_by_driftpy(sim, slot, index)


def test_book_json_has_the_score_book_shape(default_sim: model.Simulator) -> None:
    """A book carries market, index, slot, ts, oracle price and orders with the six fields."""
    book = truth.book(default_sim, default_sim.slot, 1)
    assert book["market"] == "BTC-PERP"
    assert book["market_index"] == 1
    assert book["slot"] == default_sim.slot
    assert book["ts"] == default_sim.ts
    assert book["oracle_price"] == default_sim.markets[1].oracle_price
    for order in book["orders"]:
        assert set(order) == {"user", "authority", "side", "price", "size", "order_id"}
        assert order["authority"] == str(default_sim.users[_pubkey(order["user"])].authority)


def _pubkey(text: str) -> Pubkey:
    return Pubkey.from_string(text)


def test_orders_the_scorer_must_ignore_are_on_chain_and_out_of_the_book() -> None:
    """Trigger, expired, filled, spot and in-auction taker orders are served but never eligible."""
    sim = _stepped(scenarios.DEFAULT, seed=3, slots=80)
    kinds: dict[str, int] = defaultdict(int)
    for state in sim.history:
        books = {
            (o["user"], o["order_id"])
            for index in sim.markets
            for o in truth.book(sim, state.slot, index)["orders"]
        }
        for address, user in state.users.items():
            for order in user.orders:
                key = (str(address), order.order_id)
                kind = None
                if order.order_type in (
                    protocol.OrderType.TRIGGER_LIMIT,
                    protocol.OrderType.TRIGGER_MARKET,
                ):
                    kind = "untriggered"
                elif order.max_ts and state.ts > order.max_ts:
                    kind = "expired"
                elif order.remaining == 0:
                    kind = "filled"
                elif order.market_type == protocol.MarketType.SPOT:
                    kind = "spot"
                elif order.auction_duration and state.slot - order.slot <= order.auction_duration:
                    kind = "auction"
                if kind is not None:
                    kinds[kind] += 1
                    assert key not in books, kind
    assert set(kinds) == {"untriggered", "expired", "filled", "spot", "auction"}


def test_an_order_counts_until_its_max_ts_and_not_after() -> None:
    """An order with max_ts is in the book while ts <= max_ts and out once ts > max_ts."""
    sim = _stepped(scenarios.QUIET, seed=9, slots=80)
    seen = []
    for state in sim.history:
        for address, user in state.users.items():
            for order in user.orders:
                if order.max_ts > sim.history[0].ts and order.post_only:
                    ids = {
                        (o["user"], o["order_id"]) for o in truth.book(sim, state.slot, 0)["orders"]
                    }
                    seen.append((state.ts <= order.max_ts, (str(address), order.order_id) in ids))
    assert (True, True) in seen
    assert (False, False) in seen
    assert all(inside == listed for inside, listed in seen)


def test_fill_record_ids_are_contiguous_per_market_and_advance_the_counter() -> None:
    """Fill ids run without gaps from each market's mainnet counter; the account shows the next."""
    sim = model.Simulator(scenarios.DEFAULT, seed=8)
    start = {i: m.next_fill_record_id for i, m in sim.markets.items()}
    for _ in range(200):
        sim.step()
    fills = sim.ledger.fills_between(0, sim.slot)
    for index, market in sim.markets.items():
        ids = [f.fill_record_id for f in fills if f.market_index == index]
        assert ids == list(range(start[index], start[index] + len(ids)))
        assert market.next_fill_record_id == start[index] + len(ids)
        account = sim.account(market.address)
        assert account is not None
        assert layout.decode_account(account.data).next_fill_record_id == market.next_fill_record_id
    assert any(f.self_match for f in fills)
    assert any(f.jit for f in fills)
    assert any(not f.jit and not f.self_match for f in fills)


def test_self_matches_are_two_sub_accounts_of_one_authority(default_sim: model.Simulator) -> None:
    """A self-match has the same authority on both sides but two different User accounts."""
    matches = [f for f in default_sim.ledger.fills_between(0, default_sim.slot) if f.self_match]
    assert matches
    for f in matches:
        assert f.maker != f.taker
        assert f.maker_authority == f.taker_authority


def test_history_and_transaction_log_stay_bounded() -> None:
    """Past history_slots and max_transactions the oldest entries are dropped, so memory is flat."""
    small = dataclasses.replace(
        scenarios.QUIET, history_slots=30, max_transactions=40, fills_per_slot=2.0
    )
    sim = _stepped(small, seed=2, slots=120)
    assert len(sim.history) == 30
    assert sim.state_at(sim.slot - 30) is None
    assert sim.state_at(sim.slot - 29) is not None
    assert len(sim.ledger.transactions) == 40
    with pytest.raises(truth.UnknownSlotError):
        truth.book(sim, sim.slot - 100, 0)
    newest = sim.ledger.signatures_for(model.DRIFT_PROGRAM, before=None, until=None, limit=1000)
    assert len(newest) == 40


def test_oracle_prices_walk_but_stay_near_the_start() -> None:
    """Oracles move every slot in a random walk of a few bps per slot."""
    sim = model.Simulator(scenarios.DEFAULT, seed=6)
    start = sim.markets[0].oracle_price
    prices = []
    for _ in range(100):
        sim.step()
        prices.append(sim.markets[0].oracle_price)
    assert len(set(prices)) > 50
    assert all(abs(p - start) < start * 0.05 for p in prices)


def _simnet_bytes() -> int:
    """Traced memory allocated by the simnet's own code (other tests' leftovers excluded)."""
    gc.collect()
    only_simnet = [tracemalloc.Filter(inclusive=True, filename_pattern="*driftsnap/simnet/*")]
    snapshot = tracemalloc.take_snapshot().filter_traces(only_simnet)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_memory_stops_growing_once_the_caps_are_reached() -> None:
    """After history and transaction caps fill, more slots allocate no more memory (a long run)."""
    small = dataclasses.replace(scenarios.QUIET, history_slots=200, max_transactions=300)
    sim = model.Simulator(small, seed=0)
    tracemalloc.start()
    try:
        for _ in range(800):
            sim.step()
        filled = _simnet_bytes()
        for _ in range(800):
            sim.step()
        later = _simnet_bytes()
    finally:
        tracemalloc.stop()
    assert later < filled * 1.05
