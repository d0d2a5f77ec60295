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
from driftsnap.protocol import Direction, MarketType
from driftsnap.scoring.book import Book, OrderTable, Side

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from driftsnap.chain.markets import PerpMarket
    from driftsnap.chain.users import Users

_MARKET_INDEXES: Final = 1 << 16  # market_index is a u16


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

    # Only the Open slots were gathered at decode; cheap filters first, then the full rules.
    slots = users.open_orders
    candidate = np.flatnonzero(
        (slots["market_type"] == MarketType.PERP) & wanted[slots["market_index"]]
    )
    rows, orders = users.open_row[candidate], slots[candidate]
    market_index = orders["market_index"]
    priced = eligibility.evaluate(orders, slot=slot, ts=ts, oracle_price=oracle_of[market_index])
    keep = np.flatnonzero(priced.eligible)
    rows, orders, price = rows[keep], orders[keep], priced.price[keep]
    market_index = orders["market_index"]
    side = (orders["direction"] != Direction.LONG).astype(np.int8)

    # Users as dense ids in the string order of their pubkeys (the book's tie-break).
    by_name = np.argsort(np.array(users.pubkeys)) if len(users) else np.zeros(0, dtype=np.intp)
    user_rank = np.empty(len(users), dtype=np.intp)
    user_rank[by_name] = np.arange(len(users))
    names = tuple(users.pubkeys[i] for i in by_name.tolist())
    authority_of_row, authorities = users.authorities()

    sort_price = np.where(side == Side.BID, -price, price)
    user_id = user_rank[rows]
    order_id = orders["order_id"].astype(np.int64)
    by = np.lexsort((order_id, user_id, orders["slot"], sort_price, side, market_index))
    size = (orders["base_asset_amount"] - orders["base_asset_amount_filled"]).astype(np.int64)
    sorted_market = market_index[by]
    side, price, size = side[by], price[by], size[by]
    order_id, user_id, authority_id = order_id[by], user_id[by], authority_of_row[rows[by]]
    books = {}
    for m in markets:
        i = m.market_index
        lo, hi = (
            np.searchsorted(sorted_market, i, "left"),
            np.searchsorted(sorted_market, i, "right"),
        )
        table = OrderTable(
            side=side[lo:hi],
            price=price[lo:hi],
            size=size[lo:hi],
            order_id=order_id[lo:hi],
            user=user_id[lo:hi],
            authority=authority_id[lo:hi],
            users=names,
            authorities=authorities,
        )
        books[i] = Book(
            market=m.name,
            market_index=i,
            slot=slot,
            ts=ts,
            oracle_price=oracle_prices[i],
            table=table,
        )
    return books
