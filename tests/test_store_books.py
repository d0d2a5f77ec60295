"""The stored form of an order-level book restores it exactly (store.books, no database)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from driftsnap.scoring import book as book_mod
from driftsnap.store import books
from driftsnap.store.errors import IntegrityError
from tests import books as tb

if TYPE_CHECKING:
    import random

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
    """Any book, order of orders, vAMM flags and int64 extremes included, decodes equal (as
    Order objects with vAMM orders, else as a table), and its canonical hash is the same
    computed on its columns."""
    book = book_mod.Book("SOL-PERP", 0, 123, 1_700_000_000, 150_000_000, tuple(order_list))
    ids = {k: i + 1 for i, k in enumerate(KEYS)}
    data = books.encode(book, ids)
    assert books.account_ids(data, len(order_list)) == {
        ids[k] for o in order_list for k in (o.user, o.authority)
    }
    assert books.canonical_sha256_of(
        books.columns_of(book, ids), {i: k for k, i in ids.items()}
    ) == books.canonical_sha256(book)
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


def _columns(order_list: list[book_mod.Order]) -> books.Columns:
    ids = {k: i + 1 for i, k in enumerate(KEYS)}
    return books.columns_of(tb.make(order_list), ids)


@given(st.lists(orders, max_size=30), st.lists(orders, max_size=30), st.randoms())
def test_a_delta_restores_its_book_or_the_book_is_stored_whole(
    base: list[book_mod.Order], extra: list[book_mod.Order], rnd: random.Random
) -> None:
    """Against any base, a book of kept, dropped, re-priced, new and shuffled orders is stored as
    a delta that restores it exactly, or whole (format 1) when a delta would not be exact."""
    kept = [o for o in base if rnd.random() < 0.7]
    moved = [dataclasses.replace(o, price=rnd.randint(1, I64)) for o in base if rnd.random() < 0.3]
    new = kept + moved + extra
    if rnd.random() < 0.5:
        new.sort(key=lambda o: (o.price, o.size))
    else:
        rnd.shuffle(new)
    ids = {k: i + 1 for i, k in enumerate(KEYS)}
    book = tb.make(new)
    enc = books.encode_with_hash(book, ids, {i: k for k, i in ids.items()}, _columns(base))
    assert enc.sha256 == books.canonical_sha256(book)
    restored = books.stored_columns(enc.format, enc.data, len(new), _columns(base))
    assert all(np.array_equal(a, b) for a, b in zip(restored, _columns(new), strict=True))


def test_a_book_mostly_kept_is_a_delta_and_smaller() -> None:
    """200 resting orders of which 10 changed: a delta, a fraction of the whole book's size."""
    base = [
        tb.order(f"m{i % 7}", "bid", (90 + i) * tb.PRICE, tb.BASE, order_id=i) for i in range(200)
    ]
    new = [*base[:190], *(tb.order("n", "ask", (300 + i) * tb.PRICE, tb.BASE) for i in range(10))]
    ids = {
        k: i + 1
        for i, k in enumerate(
            sorted({o.user for o in base + new} | {o.authority for o in base + new})
        )
    }
    pubkeys = {i: k for k, i in ids.items()}
    whole = books.encode_with_hash(tb.make(new), ids, pubkeys)
    delta = books.encode_with_hash(tb.make(new), ids, pubkeys, books.columns_of(tb.make(base), ids))
    assert (whole.format, delta.format) == (books.FORMAT, books.DELTA)
    assert len(delta.data) * 3 < len(whole.data)
    reordered = books.encode_with_hash(
        tb.make(new[::-1]), ids, pubkeys, books.columns_of(tb.make(base), ids)
    )
    assert reordered.format == books.FORMAT


def test_a_delta_that_does_not_add_up_is_refused() -> None:
    """A delta read against another base than its own, or cut short, is an IntegrityError."""
    base = [tb.order("m", "bid", (90 + i) * tb.PRICE, tb.BASE, order_id=i) for i in range(20)]
    new = base[:15]
    ids = {k: i + 1 for i, k in enumerate({o.user for o in base} | {o.authority for o in base})}
    pubkeys = {i: k for k, i in ids.items()}
    enc = books.encode_with_hash(tb.make(new), ids, pubkeys, books.columns_of(tb.make(base), ids))
    assert enc.format == books.DELTA
    with pytest.raises(IntegrityError, match="against"):
        books.apply(enc.data, 15, books.columns_of(tb.make(base[:19]), ids))
    cut = zstandard.ZstdCompressor().compress(
        zstandard.ZstdDecompressor().decompress(enc.data)[:-1]
    )
    with pytest.raises(IntegrityError, match="add up"):
        books.apply(cut, 15, books.columns_of(tb.make(base), ids))
    with pytest.raises(IntegrityError, match="without its base"):
        books.stored_columns(books.DELTA, enc.data, 15, None)


def test_orders_that_only_moved_are_stored_as_their_price_change() -> None:
    """A book whose 200 orders all moved (pegged to an oracle that moved) is a delta of a tenth
    of the whole book's size, restored exactly (a move from 1 to the int64 maximum included)."""
    base = [
        tb.order(f"m{i % 7}", "bid", (90 + i) * tb.PRICE, tb.BASE, order_id=i) for i in range(200)
    ]
    base.append(tb.order("edge", "ask", 1, tb.BASE, order_id=7))
    moved = [dataclasses.replace(o, price=o.price + 3 * tb.PRICE // 100) for o in base[:200]]
    moved.append(dataclasses.replace(base[200], price=I64))
    keys = sorted({k for o in base for k in (o.user, o.authority)})
    ids = {k: i + 1 for i, k in enumerate(keys)}
    pubkeys = {i: k for k, i in ids.items()}
    book = tb.make(moved)
    whole = books.encode_with_hash(book, ids, pubkeys)
    delta = books.encode_with_hash(book, ids, pubkeys, books.columns_of(tb.make(base), ids))
    assert delta.format == books.DELTA
    assert len(delta.data) * 10 < len(whole.data)
    restored = books.apply(delta.data, len(moved), books.columns_of(tb.make(base), ids))
    assert books.book_of(
        restored, pubkeys, market=book.market, market_index=book.market_index, slot=book.slot,
        ts=book.ts, oracle_price=book.oracle_price,
    ) == book  # fmt: skip


@given(
    st.lists(orders, max_size=40),
    st.permutations(range(len(KEYS))),
    st.sampled_from([1, 1_000, 10**8]),  # account ids are int32
)
def test_a_book_reads_the_same_whatever_ids_its_accounts_have(
    order_list: list[book_mod.Order], order: list[int], spread: int
) -> None:
    """Ids numbered in the keys' order or not, dense or far apart (a table lookup or a sort):
    the stored columns read back as the same book, with the same canonical hash and scores'
    maker tables."""
    book = book_mod.Book("SOL-PERP", 0, 123, 1_700_000_000, 150_000_000, tuple(order_list))
    ids = {k: order[i] * spread + 5 for i, k in enumerate(KEYS)}
    pubkeys = {i: k for k, i in ids.items()}
    columns = books.columns_of(book, ids)
    read = books.book_of(
        columns, pubkeys, market=book.market, market_index=book.market_index, slot=book.slot,
        ts=book.ts, oracle_price=book.oracle_price,
    )  # fmt: skip
    assert read == book
    assert books.canonical_sha256_of(columns, pubkeys) == books.canonical_sha256(book)
    for key in ("user", "authority"):
        ours = read.columns(key, include_vamm=True)
        theirs = book_mod.BookColumns.from_book(book, key, include_vamm=True)
        assert ours.makers == theirs.makers
        if read.table is not None:
            assert (ours.maker == theirs.maker).all()


@given(st.lists(st.integers(0, 3_000), max_size=300) | st.lists(st.integers(0, 2**40)))
def test_unique_ids_is_numpys_unique(values: list[int]) -> None:
    """Counted into a table or sorted, the same three arrays np.unique returns."""
    ids = np.array(values, dtype=np.int64)
    ours = book_mod.unique_ids(ids)
    theirs = np.unique(ids, return_index=True, return_inverse=True)
    for a, b in zip(ours, theirs, strict=True):
        assert a.tolist() == b.reshape(-1).tolist()
