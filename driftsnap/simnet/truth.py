"""Ground truth: what was really on the simulated chain at a slot, in ``score-book`` JSON.

A book lists every eligible order (spec 1.1) of one perp market at one slot, priced as the protocol
prices it then: oracle-offset orders at ``oracle_price + oracle_price_offset``, others at ``price``.
Tests compare what driftsnap reads from the RPC against these. A reader prices floating orders at
the oracle it read a few slots later (its second read): ``oracle_slot`` prices the book of ``slot``
at the oracle of that later slot, which is what such a reader must have built.

Each fill says whether a reader of the node could see it: ``listed`` is false for a transaction
``getSignaturesForAddress`` never lists (the ``unlist_transactions`` fault), ``logged`` false for
an event cut off by truncated logs (every event of a truncated transaction but the first).
"""

from __future__ import annotations

from typing import Any

from driftsnap import protocol
from driftsnap.simnet import model

Json = Any


class UnknownSlotError(LookupError):
    """The slot is outside the simulator's retained history."""


def book(
    sim: model.Simulator, slot: int, market_index: int, *, oracle_slot: int | None = None
) -> dict[str, Json]:
    """The eligible book of one market at ``slot`` as the ``score-book`` JSON object, priced at
    the oracle of ``oracle_slot`` (default: ``slot``)."""
    state = sim.state_at(slot)
    if state is None:
        raise UnknownSlotError(f"slot {slot} is not in the simulator's history")
    market = sim.markets[market_index]
    oracle_price = state.oracle_prices[market_index]
    if oracle_slot is not None:
        priced = sim.state_at(oracle_slot)
        if priced is None:
            raise UnknownSlotError(f"slot {oracle_slot} is not in the simulator's history")
        oracle_price = priced.oracle_prices[market_index]
    orders = []
    for address, user in state.users.items():
        for order in user.orders:
            price = model.eligible_price(order, market_index, state.slot, state.ts, oracle_price)
            if price is None:
                continue
            orders.append(
                {
                    "user": str(address),
                    "authority": str(user.authority),
                    "side": "bid" if order.direction == protocol.Direction.LONG else "ask",
                    "price": price,
                    "size": order.remaining,
                    "order_id": order.order_id,
                }
            )
    orders.sort(key=lambda o: (o["user"], o["order_id"]))
    return {
        "market": market.name,
        "market_index": market_index,
        "slot": state.slot,
        "ts": state.ts,
        "oracle_price": oracle_price,
        "orders": orders,
    }


def books(
    sim: model.Simulator, slot: int, *, oracle_slot: int | None = None
) -> list[dict[str, Json]]:
    """Every market's book at ``slot`` (priced at ``oracle_slot``'s oracles), by market index."""
    return [book(sim, slot, index, oracle_slot=oracle_slot) for index in sorted(sim.markets)]


def fills(sim: model.Simulator, first_slot: int, last_slot: int) -> list[dict[str, Json]]:
    """The fills of slots ``first_slot..last_slot`` as JSON objects, oldest first."""
    out = []
    for tx in sim.ledger.between(first_slot, last_slot):
        truncated = bool(tx.logs) and tx.logs[-1] == model.TRUNCATED_LOG
        for event_index, f in enumerate(tx.fills):
            out.append(
                {
                    "market": sim.markets[f.market_index].name,
                    "market_index": f.market_index,
                    "fill_record_id": f.fill_record_id,
                    "slot": f.slot,
                    "ts": f.ts,
                    "signature": f.signature,
                    "maker": f.maker,
                    "maker_authority": f.maker_authority,
                    "maker_order_id": f.maker_order_id,
                    "taker": f.taker,
                    "taker_authority": f.taker_authority,
                    "taker_order_id": f.taker_order_id,
                    "base_asset_amount": f.base,
                    "quote_asset_amount": f.quote,
                    "price": f.price,
                    "jit": f.jit,
                    "self_match": f.self_match,
                    "listed": tx.signature not in sim.unlisted,
                    # A node cuts logs after the first event (model._add_transaction).
                    "logged": not truncated or event_index == 0,
                }
            )
    return out
