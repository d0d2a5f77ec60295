"""The stored form of an order-level book: one compressed binary value per market snapshot.

Format 1 is zstd of six little-endian column arrays, one after the other, each ``orders`` long:

    user_id int32 | authority_id int32 | flags uint8 | price int64 | size int64 | order_id int64

(``flags``: bit 0 = ask side, bit 1 = vAMM liquidity). Columns compress far better than rows:
ids repeat, prices share their high bytes. Orders keep their order, so :func:`decode` restores a
:class:`~driftsnap.scoring.book.Book` equal to the one written, and re-scoring it gives the stored
scores. Public keys are stored once, in ``accounts``; the book carries their integer ids.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import zstandard

from driftsnap.scoring import book as book_mod
from driftsnap.store.errors import IntegrityError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

FORMAT = 1
BYTES_HASH = 1  # a close's leaves hash the stored bytes (account ids of one database)
CANONICAL_HASH = 2  # ... or canonical_sha256 (public keys): the default since migration 0007
ASK = 1
VAMM = 2
_LEVEL = 3  # zstd level: ~5x on real books at ~200 MB/s; higher levels buy little here
_DTYPES = (
    np.dtype("<i4"),
    np.dtype("<i4"),
    np.dtype("u1"),
    np.dtype("<i8"),
    np.dtype("<i8"),
    np.dtype("<i8"),
)


def encode(book: book_mod.Book, ids: Mapping[str, int]) -> bytes:
    """The format-1 value of ``book``; ``ids`` maps every user and authority to its account id."""
    return zstandard.ZstdCompressor(level=_LEVEL).compress(_raw(book, ids))


def _raw(book: book_mod.Book, ids: Mapping[str, int]) -> bytes:
    """The six columns of ``book``, uncompressed, accounts as ``ids`` gives them."""
    orders = book.orders
    n = len(orders)
    try:
        columns: list[npt.NDArray[np.generic]] = [
            np.fromiter((ids[o.user] for o in orders), dtype=_DTYPES[0], count=n),
            np.fromiter((ids[o.authority] for o in orders), dtype=_DTYPES[1], count=n),
            np.fromiter(
                (
                    (ASK if o.side is book_mod.Side.ASK else 0) | (VAMM if o.is_vamm else 0)
                    for o in orders
                ),
                dtype=_DTYPES[2],
                count=n,
            ),
            np.fromiter((o.price for o in orders), dtype=_DTYPES[3], count=n),
            np.fromiter((o.size for o in orders), dtype=_DTYPES[4], count=n),
            np.fromiter((o.order_id for o in orders), dtype=_DTYPES[5], count=n),
        ]
    except OverflowError:
        raise IntegrityError(
            f"{book.market} at slot {book.slot}: an order's price, size or id exceeds int64"
        ) from None
    return b"".join(c.tobytes() for c in columns)


def canonical_sha256(book: book_mod.Book) -> str:
    """The hex sha256 of ``book``'s canonical form, which names accounts by public key.

    The form: the book's distinct public keys (users and authorities) in order of first
    appearance, one per line in UTF-8, a NUL byte, then the format-1 columns uncompressed with
    each account as its position in that list. The same orders give the same hash in any
    database, whatever ids its ``accounts`` table gave them.
    """
    local: dict[str, int] = {}
    for o in book.orders:
        local.setdefault(o.user, len(local))
        local.setdefault(o.authority, len(local))
    head = "\n".join(local).encode() + b"\0"
    return hashlib.sha256(head + _raw(book, local)).hexdigest()


def encode_with_hash(
    book: book_mod.Book, ids: Mapping[str, int], pubkeys: Mapping[int, str]
) -> tuple[bytes, str]:
    """:func:`encode` and :func:`canonical_sha256` of ``book`` at once, the columns built once
    (the write path); ``pubkeys`` is ``ids`` inverted."""
    raw = _raw(book, ids)
    n = len(book.orders)
    seq = np.empty(2 * n, dtype=_DTYPES[0])
    seq[0::2] = np.frombuffer(raw, dtype=_DTYPES[0], count=n)
    seq[1::2] = np.frombuffer(raw, dtype=_DTYPES[1], count=n, offset=4 * n)
    unique, first = np.unique(seq, return_index=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(unique), dtype=_DTYPES[0])
    rank[by_first] = np.arange(len(unique), dtype=_DTYPES[0])
    local = rank[np.searchsorted(unique, seq)]
    head = "\n".join(pubkeys[int(i)] for i in unique[by_first]).encode() + b"\0"
    body = local[0::2].tobytes() + local[1::2].tobytes() + raw[8 * n :]
    compressed = zstandard.ZstdCompressor(level=_LEVEL).compress(raw)
    return compressed, hashlib.sha256(head + body).hexdigest()


def account_ids(data: bytes, orders: int) -> set[int]:
    """The account ids a stored book refers to (to look their public keys up)."""
    columns = _columns(data, orders)
    return {int(i) for i in np.unique(np.concatenate([columns[0], columns[1]]))}


def decode(
    data: bytes,
    orders: int,
    pubkeys: Mapping[int, str],
    *,
    market: str,
    market_index: int,
    slot: int,
    ts: int,
    oracle_price: int,
) -> book_mod.Book:
    """The :class:`Book` stored as ``data``; ``pubkeys`` maps account ids back to public keys."""
    user, authority, flags, price, size, order_id = (c.tolist() for c in _columns(data, orders))
    return book_mod.Book(
        market=market,
        market_index=market_index,
        slot=slot,
        ts=ts,
        oracle_price=oracle_price,
        orders=tuple(
            book_mod.Order(
                user=pubkeys[u],
                authority=pubkeys[a],
                side=book_mod.Side.ASK if f & ASK else book_mod.Side.BID,
                price=p,
                size=s,
                order_id=i,
                is_vamm=bool(f & VAMM),
            )
            for u, a, f, p, s, i in zip(user, authority, flags, price, size, order_id, strict=True)
        ),
    )


def _columns(data: bytes, orders: int) -> list[npt.NDArray[np.generic]]:
    raw = zstandard.ZstdDecompressor().decompress(data)
    expected = orders * sum(d.itemsize for d in _DTYPES)
    if len(raw) != expected:
        raise IntegrityError(f"a stored book holds {len(raw)} bytes, {expected} expected")
    out: list[npt.NDArray[np.generic]] = []
    offset = 0
    for dtype in _DTYPES:
        out.append(np.frombuffer(raw, dtype=dtype, count=orders, offset=offset))
        offset += orders * dtype.itemsize
    return out
