"""Decoded users, markets and oracle prices at slot S, time T → one sorted :class:`Book` per market.

The book is built and sorted here rather than by driftpy's DLOB: its L2/L3 views merge the fixed
and the floating (oracle-offset) order lists with an inverted comparison, so levels come out of
price order when both kinds rest on one side.

Order within a side: best price first (bids descending, asks ascending), then the older order
(lower placement slot, the protocol's time priority), then User account and order id, so equal
inputs always give byte-identical books.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np

from driftsnap.chain import eligibility
from driftsnap.protocol import Direction, MarketType, OrderStatus
from driftsnap.scoring.book import Book, Order, Side

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from driftsnap.chain.markets import PerpMarket
    from driftsnap.chain.users import Users

_MARKET_INDEXES: Final = 1 << 16  # market_index is a u16
_SIDES: Final = (Side.BID, Side.ASK)


def build(
    users: Users,
    markets: Sequence[PerpMarket],
    oracle_prices: Mapping[int, int],
    *,
    slot: int,
    ts: int,
) -> dict[int, Book]:
    """One book per market in ``markets`` (empty when nothing rests), keyed by market index.

    ``oracle_prices`` maps each market index to its oracle price at ``slot``.
    """
    wanted = np.zeros(_MARKET_INDEXES, dtype=np.bool_)
    oracle_of = np.zeros(_MARKET_INDEXES, dtype=np.int64)
    for market in markets:
        wanted[market.market_index] = True
        oracle_of[market.market_index] = oracle_prices[market.market_index]

    # Cheap filters over all 32 slots of every account first, then the full rules on the few left.
    slots = users.orders
    candidate = (
        (slots["status"] == OrderStatus.OPEN)
        & (slots["market_type"] == MarketType.PERP)
        & wanted[slots["market_index"]]
    )
    rows, columns = np.nonzero(candidate)
    orders = slots[rows, columns]
    market_index = orders["market_index"]
    priced = eligibility.evaluate(orders, slot=slot, ts=ts, oracle_price=oracle_of[market_index])
    keep = np.flatnonzero(priced.eligible)
    rows, orders, price = rows[keep], orders[keep], priced.price[keep]
    market_index = orders["market_index"]
    side = (orders["direction"] != Direction.LONG).astype(np.int8)

    user_rank = np.empty(len(users), dtype=np.int64)
    user_rank[np.argsort(np.array(users.pubkeys))] = np.arange(len(users))
    sort_price = np.where(side == Side.BID, -price, price)
    by = np.lexsort(
        (orders["order_id"], user_rank[rows], orders["slot"], sort_price, side, market_index)
    )

    authorities = {row: users.authority_of(row) for row in np.unique(rows).tolist()}
    size = orders["base_asset_amount"] - orders["base_asset_amount_filled"]
    columns_sorted = zip(
        rows[by].tolist(),
        side[by].tolist(),
        price[by].tolist(),
        size[by].tolist(),
        orders["order_id"][by].tolist(),
        strict=True,
    )
    per_market: dict[int, list[Order]] = {m.market_index: [] for m in markets}
    for index, (row, side_index, order_price, order_size, order_id) in zip(
        market_index[by].tolist(), columns_sorted, strict=True
    ):
        per_market[index].append(
            Order(
                user=users.pubkeys[row],
                authority=authorities[row],
                side=_SIDES[side_index],
                price=order_price,
                size=order_size,
                order_id=order_id,
            )
        )
    return {
        m.market_index: Book(
            market=m.name,
            market_index=m.market_index,
            slot=slot,
            ts=ts,
            oracle_price=oracle_prices[m.market_index],
            orders=tuple(per_market[m.market_index]),
        )
        for m in markets
    }
