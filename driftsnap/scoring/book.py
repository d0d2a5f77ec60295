"""One snapshot of one perp market's eligible maker orders (spec section 1).

A :class:`Book` holds integers exactly as the chain has them: prices in ``PRICE_PRECISION``
(1e6 = $1), sizes in ``BASE_PRECISION`` (1e9 = one base unit). Methods work on
:class:`BookColumns`, a columnar numpy view of the same orders for one choice of maker key, built
once per book and maker key and shared by every method that scores it.

A book read from the chain holds its orders as an :class:`OrderTable` (sorted columns, makers as
dense ids); its :class:`Order` objects are a view built only when asked for (``score-book``,
reports, tests, the store's rows), never to score it.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Sequence

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
class OrderTable:
    """A book's orders as columns, in book order (no vAMM orders).

    ``user[i]`` and ``authority[i]`` index ``users`` and ``authorities``, name tables sorted as
    strings (and shared by every book of one read), so dense ids follow the names' order.
    """

    side: npt.NDArray[np.int8]
    price: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    order_id: npt.NDArray[np.int64]
    user: npt.NDArray[np.intp]
    authority: npt.NDArray[np.intp]
    users: Sequence[str]
    authorities: Sequence[str]

    def __len__(self) -> int:
        return int(self.price.shape[0])

    def orders(self) -> tuple[Order, ...]:
        """The rows as :class:`Order` objects (a view for readers, not for scoring)."""
        users, authorities = self.users, self.authorities
        return tuple(
            Order(users[u], authorities[a], _SIDES[s], p, z, i)
            for u, a, s, p, z, i in zip(
                self.user.tolist(),
                self.authority.tolist(),
                self.side.tolist(),
                self.price.tolist(),
                self.size.tolist(),
                self.order_id.tolist(),
                strict=True,
            )
        )

    def columns(self, maker_key: MakerKey) -> BookColumns:
        """The columnar view for ``maker_key``: makers renumbered densely, in string order."""
        ids = self.user if maker_key == "user" else self.authority
        names = self.users if maker_key == "user" else self.authorities
        present, first, dense = unique_ids(ids)
        makers = _at(names, present, distinct=True)
        if maker_key == "user":
            authority_of = dict(
                zip(makers, _at(self.authorities, self.authority[first]), strict=True)
            )
        else:
            authority_of = dict(zip(makers, makers, strict=True))
        return BookColumns(
            side=self.side,
            price=self.price,
            size=self.size,
            maker=dense.astype(np.intp, copy=False).reshape(len(self)),
            makers=makers,
            authority_of=authority_of,
        )


_SIDES = (Side.BID, Side.ASK)


def _at(
    names: Sequence[str], at: npt.NDArray[np.intp], *, distinct: bool = False
) -> tuple[str, ...]:
    """``names[i]`` for each ``i`` of ``at``. ``distinct``: ``at`` is ascending without repeats,
    so when it is as long as ``names`` it is every position (a book read back from the store,
    whose name tables hold only its own accounts) and ``names`` is the answer."""
    if distinct and len(at) == len(names):
        return tuple(names)
    keys = at.tolist()
    if len(keys) < 2:
        return tuple(names[k] for k in keys)
    got: tuple[str, ...] = operator.itemgetter(*keys)(names)
    return got


def unique_ids(
    ids: npt.NDArray[np.integer[Any]],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``np.unique(ids, return_index=True, return_inverse=True)`` for integer ids.

    The distinct ids ascending, the position of each one's first occurrence, and each id's
    position among the distinct ones. Ids in a range not much wider than their count (a book's
    accounts numbered by one read, a week's, an archive's) are counted into a table, with no
    sort: ~15x faster on a mainnet-scale book, the same arrays. Other ids are sorted by numpy.
    """
    n = int(ids.shape[0])
    if n == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty.copy(), empty.copy()
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= 16 * n + 65_536:
        present, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        return (
            present.astype(np.intp, copy=False),
            first.astype(np.intp, copy=False),
            inverse.astype(np.intp, copy=False).reshape(n),
        )
    at = ids.astype(np.intp, copy=False)
    first_at = np.full(high + 1, n, dtype=np.intp)
    np.minimum.at(first_at, at, np.arange(n, dtype=np.intp))
    present = np.flatnonzero(first_at < n)
    position = np.empty(high + 1, dtype=np.intp)
    position[present] = np.arange(len(present), dtype=np.intp)
    return present, first_at[present], position[at]


class _Orders:
    """The ``orders`` field of :class:`Book`: the tuple given, or built once from its table."""

    @overload
    def __get__(self, book: None, owner: type | None = None) -> None: ...
    @overload
    def __get__(self, book: Book, owner: type | None = None) -> tuple[Order, ...]: ...
    def __get__(self, book: Book | None, owner: type | None = None) -> tuple[Order, ...] | None:
        """The orders; ``None`` read on the class (the field's default: from the table)."""
        if book is None:
            return None
        orders: tuple[Order, ...] | None = book.__dict__["_orders"]
        if orders is None:
            orders = book.table.orders() if book.table is not None else ()
            book.__dict__["_orders"] = orders
        return orders

    def __set__(self, book: Book, orders: tuple[Order, ...] | None) -> None:
        """Keep ``orders`` as given (``None``: built from the table when first read)."""
        book.__dict__["_orders"] = orders
        book.__dict__["_given"] = orders is not None
        book.__dict__["_columns"] = {}


@dataclass(frozen=True)
class Book:
    """The eligible orders of one market at one slot, with the oracle price they were priced at.

    Built from ``orders`` or from ``table`` (an :class:`OrderTable`, as the chain reader builds
    it; ``orders`` is then materialised from it on first use). Equality, hashing and ``repr``
    see the orders, however the book was built.
    """

    market: str
    market_index: int
    slot: int
    ts: int
    oracle_price: int
    orders: _Orders = _Orders()
    table: OrderTable | None = field(default=None, compare=False, repr=False)

    @property
    def source_table(self) -> OrderTable | None:
        """The table the orders come from (``None``: the book was given its orders)."""
        return None if self.__dict__["_given"] else self.table

    def authorities(self) -> set[str]:
        """The authorities (wallets) of the book's orders, without materialising them."""
        table = self.source_table
        if table is None:
            return {o.authority for o in self.orders}
        return {table.authorities[i] for i in np.unique(table.authority).tolist()}

    @property
    def order_count(self) -> int:
        """The number of orders, without materialising them."""
        if self.table is not None and not self.__dict__["_given"]:
            return len(self.table)
        return len(self.orders)

    def columns(self, maker_key: MakerKey, *, include_vamm: bool) -> BookColumns:
        """The columnar view for ``maker_key``, with vAMM orders only if ``include_vamm``.

        Built once per book and choice, and shared by every method that asks for it.
        """
        cache: dict[tuple[str, bool], BookColumns] = self.__dict__["_columns"]
        from_table = self.table is not None and not self.__dict__["_given"]
        key = (maker_key, include_vamm or from_table)
        cached = cache.get(key)
        if cached is None:
            if self.table is not None and from_table:
                cached = self.table.columns(maker_key)  # a table holds no vAMM orders
            else:
                cached = BookColumns.from_book(self, maker_key, include_vamm=include_vamm)
            cache[key] = cached
        return cached


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
