"""One snapshot of one perp market's eligible maker orders (spec section 1).

A :class:`Book` holds integers exactly as the chain has them: prices in ``PRICE_PRECISION``
(1e6 = $1), sizes in ``BASE_PRECISION`` (1e9 = one base unit). Methods work on
:class:`BookColumns`, a columnar numpy view of the same orders for one choice of maker key, built
once per scoring call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

MakerKey = Literal["authority", "user"]


class Side(enum.IntEnum):
    """Book side. The integer values index numpy arrays: bid = 0, ask = 1."""

    BID = 0
    ASK = 1

    @property
    def label(self) -> str:
        """``"bid"`` or ``"ask"``."""
        return "bid" if self is Side.BID else "ask"


@dataclass(frozen=True, slots=True)
class Order:
    """One eligible resting order: ``size`` is the remaining base amount."""

    user: str
    authority: str
    side: Side
    price: int
    size: int
    order_id: int
    is_vamm: bool = False

    def maker(self, key: MakerKey) -> str:
        """The order's maker under ``key``: its authority or its User account."""
        return self.authority if key == "authority" else self.user


@dataclass(frozen=True, slots=True)
class Book:
    """The eligible orders of one market at one slot, with the oracle price they were priced at."""

    market: str
    market_index: int
    slot: int
    ts: int
    oracle_price: int
    orders: tuple[Order, ...]

    def columns(self, maker_key: MakerKey, *, include_vamm: bool) -> BookColumns:
        """The columnar view for ``maker_key``, with vAMM orders only if ``include_vamm``."""
        return BookColumns.from_book(self, maker_key, include_vamm=include_vamm)


@dataclass(frozen=True, slots=True)
class BookColumns:
    """Columnar view of a book: one row per order, makers as dense integer ids.

    ``makers`` is sorted, so maker ids (and every per-maker output) are independent of the order
    in which the orders were listed.
    """

    side: npt.NDArray[np.int8]
    price: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    maker: npt.NDArray[np.intp]
    makers: tuple[str, ...]
    authority_of: dict[str, str]

    @classmethod
    def from_book(cls, book: Book, maker_key: MakerKey, *, include_vamm: bool) -> BookColumns:
        """The columnar view of ``book``'s orders, with vAMM orders only if ``include_vamm``."""
        orders = [o for o in book.orders if include_vamm or not o.is_vamm]
        keys = [o.maker(maker_key) for o in orders]
        makers = tuple(sorted(set(keys)))
        index = {m: i for i, m in enumerate(makers)}
        authority_of = {o.maker(maker_key): o.authority for o in orders}
        n = len(orders)
        return cls(
            side=np.fromiter((o.side for o in orders), dtype=np.int8, count=n),
            price=np.fromiter((o.price for o in orders), dtype=np.int64, count=n),
            size=np.fromiter((o.size for o in orders), dtype=np.int64, count=n),
            maker=np.fromiter((index[k] for k in keys), dtype=np.intp, count=n),
            makers=makers,
            authority_of=authority_of,
        )

    def __len__(self) -> int:
        return int(self.price.shape[0])
