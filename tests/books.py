"""Building books for tests: deterministic pubkeys and $-denominated sizes."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.scoring import book as book_mod

if TYPE_CHECKING:
    from collections.abc import Iterable

PRICE = protocol.PRICE_PRECISION
BASE = protocol.BASE_PRECISION


def key(name: str) -> str:
    """A valid base58 public key derived from ``name``."""
    return str(Pubkey(hashlib.sha256(name.encode()).digest()))


def order(
    maker: str,
    side: str,
    price: int,
    size: int,
    *,
    user: str | None = None,
    order_id: int = 0,
) -> book_mod.Order:
    """An order of authority ``key(maker)`` (user account ``key(user or maker + '/0')``)."""
    return book_mod.Order(
        user=key(user or f"{maker}/0"),
        authority=key(maker),
        side=book_mod.Side.BID if side == "bid" else book_mod.Side.ASK,
        price=price,
        size=size,
        order_id=order_id,
    )


def make(
    orders: Iterable[book_mod.Order], *, oracle_price: int = 100 * PRICE, market: str = "SOL-PERP"
) -> book_mod.Book:
    return book_mod.Book(
        market=market,
        market_index=0,
        slot=1_000,
        ts=1_700_000_000,
        oracle_price=oracle_price,
        orders=tuple(orders),
    )


def usd_size(usd: int, oracle_price: int = 100 * PRICE) -> int:
    """Base amount worth ``usd`` dollars at ``oracle_price`` (exact for the prices tests use)."""
    size, rest = divmod(usd * PRICE * BASE, oracle_price)
    assert rest == 0, "pick a price at which the dollar size is a whole number of base units"
    return size
