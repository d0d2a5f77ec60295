"""The stored form of an order-level book restores it exactly (store.books, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftsnap.scoring import book as book_mod
from driftsnap.store import books
from driftsnap.store.errors import IntegrityError
from tests import books as tb

I64 = 2**63 - 1
KEYS = [tb.key(f"k{i}") for i in range(6)]

orders = st.builds(
    book_mod.Order,
    user=st.sampled_from(KEYS),
    authority=st.sampled_from(KEYS),
    side=st.sampled_from(book_mod.Side),
    price=st.integers(1, I64),
    size=st.integers(1, I64),
    order_id=st.integers(0, I64),
    is_vamm=st.booleans(),
)


@given(st.lists(orders, max_size=40))
def test_encode_then_decode_is_the_identity(order_list: list[book_mod.Order]) -> None:
    """Any book, order of orders, vAMM flags and int64 extremes included, decodes equal."""
    book = book_mod.Book("SOL-PERP", 0, 123, 1_700_000_000, 150_000_000, tuple(order_list))
    ids = {k: i + 1 for i, k in enumerate(KEYS)}
    data = books.encode(book, ids)
    assert books.account_ids(data, len(order_list)) == {
        ids[k] for o in order_list for k in (o.user, o.authority)
    }
    restored = books.decode(
        data,
        len(order_list),
        {i: k for k, i in ids.items()},
        market=book.market,
        market_index=book.market_index,
        slot=book.slot,
        ts=book.ts,
        oracle_price=book.oracle_price,
    )
    assert restored == book


def test_a_value_beyond_int64_is_refused() -> None:
    """A size that does not fit int64 is an IntegrityError naming the market, not a wrap-around."""
    order = tb.order("m", "bid", 100 * tb.PRICE, 2**63)
    with pytest.raises(IntegrityError, match="SOL-PERP"):
        books.encode(tb.make([order]), {order.user: 1, order.authority: 2})


def test_a_truncated_value_is_refused() -> None:
    """A stored value whose length does not match its order count is refused, not misread."""
    order = tb.order("m", "bid", 100 * tb.PRICE, tb.BASE)
    data = books.encode(tb.make([order]), {order.user: 1, order.authority: 2})
    with pytest.raises(IntegrityError, match="bytes"):
        books.account_ids(data, 2)
