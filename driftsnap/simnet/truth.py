"""Ground truth: what was really on the simulated chain at a slot, in ``score-book`` JSON.

A book lists every eligible order (spec 1.1) of one perp market at one slot, priced as the protocol
prices it then: oracle-offset orders at ``oracle_price + oracle_price_offset``, others at ``price``.
Tests compare what driftsnap reads from the RPC against these.
"""

from __future__ import annotations

from typing import Any

from driftsnap import protocol
from driftsnap.simnet import model

Json = Any


class UnknownSlotError(LookupError):
    """The slot is outside the simulator's retained history."""


def book(sim: model.Simulator, slot: int, market_index: int) -> dict[str, Json]:
    """The eligible book of one market at ``slot`` as the ``score-book`` JSON object."""
    state = sim.state_at(slot)
    if state is None:
        raise UnknownSlotError(f"slot {slot} is not in the simulator's history")
    market = sim.markets[market_index]
    oracle_price = state.oracle_prices[market_index]
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


def books(sim: model.Simulator, slot: int) -> list[dict[str, Json]]:
    """Every market's book at ``slot``, by market index."""
    return [book(sim, slot, index) for index in sorted(sim.markets)]


def fills(sim: model.Simulator, first_slot: int, last_slot: int) -> list[dict[str, Json]]:
    """The fills of slots ``first_slot..last_slot`` as JSON objects, oldest first."""
    return [
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
        }
        for f in sim.ledger.fills_between(first_slot, last_slot)
    ]
