"""Spec 1.1, vectorised: which orders rest on a perp book at slot S and time T, and at what price.

Each rule mirrors driftpy 0.8.89 (``driftpy/math/orders.py`` and ``math/auction.py``), which the
tests check order by order:

- ``is_resting_limit_order``: ``Limit`` orders rest when post-only or their auction is complete;
  ``TriggerLimit`` orders only when the auction is complete and the trigger price is not on the
  wrong side of the limit price (long: ``trigger >= price``; short: ``trigger <= price``).
- a trigger order must also have fired (``TriggeredAbove``/``TriggeredBelow``): driftpy's DLOB
  keeps untriggered ones in a separate trigger list, and the protocol does not fill them.
- expiry follows the spec, ``max_ts == 0 or T <= max_ts``, for every order type (driftpy's
  ``is_order_expired`` never expires trigger orders).
- ``get_limit_price`` without a fallback price: the auction price while an auction with prices
  runs (only reachable for post-only ``Limit`` orders here), else ``oracle + oracle_price_offset``
  when the offset is non-zero, else ``price``; ``price == 0`` gives no price, and such an order is
  left out, as is any price outside ``1 .. 2**63 - 1`` (a book holds positive int64 prices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from driftsnap.protocol import Direction, MarketType, OrderStatus, OrderType, TriggerCondition

if TYPE_CHECKING:
    import numpy.typing as npt

I64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Priced:
    """Per order: whether it is eligible, and its limit price (meaningful where eligible)."""

    eligible: npt.NDArray[np.bool_]
    price: npt.NDArray[np.int64]


def evaluate(
    orders: npt.NDArray[np.void], *, slot: int, ts: int, oracle_price: npt.NDArray[np.int64]
) -> Priced:
    """Rules 1-4 of spec 1.1 (all but the market match) and the limit price, for 1-D ``orders``.

    ``oracle_price[i]`` is the oracle price of order ``i``'s market at ``slot``.
    """
    order_type = orders["order_type"]
    is_limit = order_type == OrderType.LIMIT
    is_trigger_limit = order_type == OrderType.TRIGGER_LIMIT
    is_long = orders["direction"] == Direction.LONG
    limit_price = orders["price"]
    trigger_price = orders["trigger_price"]

    complete = _auction_complete(orders, slot)
    trigger_side_ok = np.where(is_long, trigger_price >= limit_price, trigger_price <= limit_price)
    resting = (is_limit & ((orders["post_only"] == 1) | complete)) | (
        is_trigger_limit & trigger_side_ok & complete
    )
    condition = orders["trigger_condition"]
    fired = (condition == TriggerCondition.TRIGGERED_ABOVE) | (
        condition == TriggerCondition.TRIGGERED_BELOW
    )
    max_ts = orders["max_ts"]
    eligible = (
        (orders["status"] == OrderStatus.OPEN)
        & (orders["market_type"] == MarketType.PERP)
        & resting
        & (~is_trigger_limit | fired)
        & (orders["base_asset_amount"] > orders["base_asset_amount_filled"])
        & ((max_ts == 0) | (max_ts >= ts))
    )

    offset = orders["oracle_price_offset"].astype(np.int64)
    floating = offset != 0
    in_auction = ~complete & (
        (orders["auction_start_price"] != 0) | (orders["auction_end_price"] != 0)
    )
    fixed_ok = (limit_price != 0) & (limit_price <= I64_MAX)
    # Prices beyond int64 wrap here, but fixed_ok already marks them unpriceable.
    price = np.where(floating, oracle_price + offset, limit_price.astype(np.int64))
    priceable = floating | fixed_ok
    for i in np.flatnonzero(eligible & in_auction).tolist():
        auction_price = _auction_price(orders[i], slot, int(oracle_price[i]))
        price[i] = auction_price if 0 < auction_price <= I64_MAX else 0
        priceable[i] = True
    eligible &= priceable & (price > 0)
    return Priced(eligible=eligible, price=price)


def _auction_complete(orders: npt.NDArray[np.void], slot: int) -> npt.NDArray[np.bool_]:
    """``auction_duration == 0 or slot - order.slot > auction_duration``, without u64 wrap."""
    placed = orders["slot"]
    duration = orders["auction_duration"].astype(np.uint64)
    now = np.uint64(slot)
    after = placed < now
    elapsed = np.where(after, now - np.where(after, placed, now), np.uint64(0))
    complete: npt.NDArray[np.bool_] = (duration == 0) | (after & (elapsed > duration))
    return complete


def _auction_price(order: np.void, slot: int, oracle_price: int) -> int:
    """driftpy's ``get_auction_price`` for a ``Limit`` order, in Python integers (no overflow).

    driftpy evaluates ``end - start * elapsed // duration`` left to right, i.e. it scales ``start``
    before subtracting; the spec prices orders as driftpy does, so that reading is kept here.
    """
    start = int(order["auction_start_price"])
    end = int(order["auction_end_price"])
    duration = int(order["auction_duration"])
    elapsed = min(slot - int(order["slot"]), duration)
    if int(order["direction"]) == Direction.LONG:
        price = start + (end - start * elapsed // duration)
    else:
        price = start - (start - end * elapsed // duration)
    offset = int(order["oracle_price_offset"])
    return oracle_price + price if offset != 0 else price
