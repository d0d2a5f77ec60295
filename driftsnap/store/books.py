"""The stored form of an order-level book: one compressed binary value per market snapshot.

Format 1 is zstd of six little-endian column arrays, one after the other, each ``orders`` long:

    user_id int32 | authority_id int32 | flags uint8 | price int64 | size int64 | order_id int64

(``flags``: bit 0 = ask side, bit 1 = vAMM liquidity). Columns compress far better than rows:
ids repeat, prices share their high bytes. Orders keep their order, so :func:`decode` restores a
:class:`~driftsnap.scoring.book.Book` equal to the one written, and re-scoring it gives the stored
scores. Public keys are stored once, in ``accounts``; the book carries their integer ids.

Format 2 (migration 0008) is a **delta** against an earlier stored book of the same market, its
*base* (the snapshot's ``book_base``): most resting orders are the same order a minute later,
and most of the others are the same order at another price (an order pegged to the oracle). zstd
of

    n_base, n, n_moved uint32 | kept: n_base bits | fresh: n bits | moved: one bit per fresh
    | moved orders' base positions, as int32 steps | their price changes int64
    | the other fresh orders' six columns

``kept`` marks the base's orders still in the book, ``fresh`` the book's positions that hold an
order not in the base; the others are filled, in order, with the kept orders. A fresh order is
*moved* when it is a base order that left with only its price changed (the base position and the
price change are stored, wrapping modulo 2**64), else its columns are stored. Exact by
construction: an order is kept only when all six of its fields are equal, and a delta is written
only when the kept orders appear in the book in the base's order (otherwise the book is stored
whole, as format 1). :func:`encode_with_hash` checks that the delta restores the book.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import zstandard

from driftsnap.scoring import book as book_mod
from driftsnap.store.errors import IntegrityError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

FORMAT = 1
DELTA: Final = 2  # format 2: a delta against the snapshot's book_base
# A delta stores the book whole instead when more than this share of its orders are new.
DELTA_MAX_NEW: Final = 0.75
BYTES_HASH = 1  # a close's leaves hash the stored bytes (account ids of one database)
CANONICAL_HASH = 2  # ... or canonical_sha256 (public keys): the default since migration 0007
ASK = 1
VAMM = 2
_LEVEL = 3  # zstd level: ~5x on real books at ~200 MB/s; higher levels buy little here
_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype("<i4"),
    np.dtype("<i4"),
    np.dtype("u1"),
    np.dtype("<i8"),
    np.dtype("<i8"),
    np.dtype("<i8"),
)
_ROW = np.dtype([(f"c{i}", d) for i, d in enumerate(_DTYPES)])  # packed: 33 bytes an order
_ROW_BYTES = np.dtype((np.void, _ROW.itemsize))
_HEAD = struct.Struct("<III")
_PRICE = 3  # the price column

Columns = tuple["npt.NDArray[np.generic]", ...]  # the six columns of one book, account ids in it


@dataclass(frozen=True, slots=True)
class Encoded:
    """A book as a snapshot row stores it, and its columns (the base of the next delta)."""

    format: int
    data: bytes
    sha256: str  # canonical_sha256 of the whole book
    columns: Columns


def encode(book: book_mod.Book, ids: Mapping[str, int]) -> bytes:
    """The format-1 value of ``book``; ``ids`` maps every user and authority to its account id."""
    return zstandard.ZstdCompressor(level=_LEVEL).compress(_raw(book, ids))


def _raw(book: book_mod.Book, ids: Mapping[str, int]) -> bytes:
    """The six columns of ``book``, uncompressed, accounts as ``ids`` gives them."""
    return b"".join(c.tobytes() for c in columns_of(book, ids))


def columns_of(book: book_mod.Book, ids: Mapping[str, int]) -> Columns:
    """The six columns of ``book``, accounts as ``ids`` gives them (from its table when it has
    one: the daemon's books, whose Order objects are then never built)."""
    table = book.source_table
    if table is not None:
        return (
            _ids_of(table.user, table.users, ids),
            _ids_of(table.authority, table.authorities, ids),
            (table.side.astype(np.uint8) & ASK),
            table.price.astype(_DTYPES[3]),
            table.size.astype(_DTYPES[4]),
            table.order_id.astype(_DTYPES[5]),
        )
    orders = book.orders
    n = len(orders)
    try:
        columns: Columns = (
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
        )
    except OverflowError:
        raise IntegrityError(
            f"{book.market} at slot {book.slot}: an order's price, size or id exceeds int64"
        ) from None
    return columns


def _ids_of(
    index: npt.NDArray[np.intp], names: Sequence[str], ids: Mapping[str, int]
) -> npt.NDArray[np.int32]:
    """The account ids of a table's name column (each name looked up once)."""
    present, inverse = np.unique(index, return_inverse=True)
    mapped = np.array([ids[names[i]] for i in present.tolist()], dtype=_DTYPES[0])
    return mapped[inverse.reshape(-1)] if len(index) else np.empty(0, dtype=_DTYPES[0])


def accounts_of(book: book_mod.Book) -> tuple[set[str], set[tuple[str, str]]]:
    """The public keys ``book``'s orders name (users and authorities), and its (user,
    authority) pairs, from its table when it has one."""
    table = book.source_table
    if table is None:
        pairs = {(o.user, o.authority) for o in book.orders}
    elif len(table):
        both = np.unique(np.stack([table.user, table.authority], axis=1), axis=0).tolist()
        pairs = {(table.users[u], table.authorities[a]) for u, a in both}
    else:
        pairs = set()
    return {k for pair in pairs for k in pair}, pairs


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


def canonical_sha256_of(columns: Columns, pubkeys: Mapping[int, str]) -> str:
    """:func:`canonical_sha256` of the book of stored ``columns`` (accounts as ids, ``pubkeys``
    naming them), computed on the columns."""
    n = len(columns[0])
    seq = np.empty(2 * n, dtype=_DTYPES[0])
    seq[0::2] = columns[0]
    seq[1::2] = columns[1]
    unique, first, inverse = book_mod.unique_ids(seq)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(unique), dtype=_DTYPES[0])
    rank[by_first] = np.arange(len(unique), dtype=_DTYPES[0])
    local = rank[inverse]
    head = "\n".join(_keys(pubkeys, unique[by_first])).encode() + b"\0"
    body = [local[0::2].tobytes(), local[1::2].tobytes()]
    body.extend(
        c.astype(d, copy=False).tobytes() for c, d in zip(columns[2:], _DTYPES[2:], strict=True)
    )
    return hashlib.sha256(head + b"".join(body)).hexdigest()


def encode_with_hash(
    book: book_mod.Book,
    ids: Mapping[str, int],
    pubkeys: Mapping[int, str],
    base: Columns | None = None,
) -> Encoded:
    """``book`` as the write path stores it, with its :func:`canonical_sha256`, the columns
    built once; ``pubkeys`` is ``ids`` inverted. Given the columns of a stored ``base`` book,
    a format-2 delta against it when that is exact and worth it, else format 1."""
    columns = columns_of(book, ids)
    raw = b"".join(c.tobytes() for c in columns)
    n = len(columns[0])
    sha256 = canonical_sha256_of(columns, pubkeys)
    compressor = zstandard.ZstdCompressor(level=_LEVEL)
    delta = None if base is None else _delta(columns, base)
    if base is not None and delta is not None:
        data = compressor.compress(delta)
        if any(
            not np.array_equal(a, b) for a, b in zip(apply(data, n, base), columns, strict=True)
        ):
            raise IntegrityError(f"{book.market} at slot {book.slot}: a delta did not restore it")
        return Encoded(DELTA, data, sha256, columns)
    return Encoded(FORMAT, compressor.compress(raw), sha256, columns)


def _rows(columns: Columns) -> npt.NDArray[np.void]:
    """One 33-byte value per order (all six fields), to match orders between two books."""
    rows = np.empty(len(columns[0]), dtype=_ROW)
    for i, c in enumerate(columns):
        rows[f"c{i}"] = c
    return rows.view(_ROW_BYTES)


def _delta(columns: Columns, base: Columns) -> bytes | None:
    """The uncompressed format-2 value of ``columns`` against ``base``; ``None`` when the book
    is better stored whole (mostly new orders, a repeated order, kept orders reordered)."""
    new_rows, base_rows = _rows(columns), _rows(base)
    n, n_base = len(new_rows), len(base_rows)
    if not n or not n_base:
        return None
    fresh = ~np.isin(new_rows, base_rows)
    kept = np.isin(base_rows, new_rows)
    if len(np.unique(base_rows[kept])) != int(kept.sum()):
        return None  # an order repeated in the base: which copy is kept would be ambiguous
    if not np.array_equal(new_rows[~fresh], base_rows[kept]):
        return None
    # Fresh orders that are a dropped base order at another price (all else equal).
    at_fresh, dropped = np.flatnonzero(fresh), np.flatnonzero(~kept)
    unpriced = _rows(_without_price(columns))[at_fresh]
    keys, first = np.unique(_rows(_without_price(base))[dropped], return_index=True)
    pos = np.minimum(np.searchsorted(keys, unpriced), max(len(keys) - 1, 0))
    moved = keys[pos] == unpriced if len(keys) else np.zeros(len(at_fresh), dtype=bool)
    if (len(at_fresh) - int(moved.sum())) > DELTA_MAX_NEW * n:
        return None
    source = dropped[first[pos[moved]]].astype(np.int64)
    steps = np.diff(source, prepend=0).astype("<i4")
    change = (columns[_PRICE][at_fresh[moved]] - base[_PRICE][source]).astype("<i8")
    parts = [
        _HEAD.pack(n_base, n, len(source)),
        np.packbits(kept).tobytes(),
        np.packbits(fresh).tobytes(),
        np.packbits(moved).tobytes(),
        steps.tobytes(),
        change.tobytes(),
    ]
    literal = at_fresh[~moved]
    parts.extend(c[literal].tobytes() for c in columns)
    return b"".join(parts)


def _without_price(columns: Columns) -> Columns:
    zero = np.zeros(len(columns[0]), dtype=_DTYPES[_PRICE])
    return (*columns[:_PRICE], zero, *columns[_PRICE + 1 :])


def apply(data: bytes, orders: int, base: Columns) -> Columns:
    """The columns of the format-2 value ``data`` (``orders`` orders) against ``base``."""
    raw = _decompress(data)
    if len(raw) < _HEAD.size:
        raise IntegrityError("a stored book delta is truncated")
    n_base, n, n_moved = _HEAD.unpack_from(raw)
    if n != orders or n_base != len(base[0]):
        raise IntegrityError(
            f"a stored book delta is of {n} orders against {n_base}, "
            f"{orders} against {len(base[0])} expected"
        )
    reader = _Cursor(raw, _HEAD.size)
    kept = np.unpackbits(reader.take(np.uint8, (n_base + 7) // 8), count=n_base).astype(bool)
    fresh = np.unpackbits(reader.take(np.uint8, (n + 7) // 8), count=n).astype(bool)
    at_fresh = np.flatnonzero(fresh)
    moved = np.unpackbits(
        reader.take(np.uint8, (len(at_fresh) + 7) // 8), count=len(at_fresh)
    ).astype(bool)
    source = np.cumsum(reader.take(np.dtype("<i4"), n_moved), dtype=np.int64)
    change = reader.take(np.dtype("<i8"), n_moved)
    n_literal = len(at_fresh) - n_moved
    if (
        int(kept.sum()) != n - len(at_fresh)
        or int(moved.sum()) != n_moved
        or (n_moved and (source.min() < 0 or source.max() >= n_base))
    ):
        raise IntegrityError("a stored book delta does not add up")
    at_moved, at_literal = at_fresh[moved], at_fresh[~moved]
    out = []
    for i, (dtype, column) in enumerate(zip(_DTYPES, base, strict=True)):
        c = np.empty(n, dtype=dtype)
        c[~fresh] = column[kept]
        c[at_moved] = column[source] + change if i == _PRICE else column[source]
        c[at_literal] = reader.take(dtype, n_literal)
        out.append(c)
    if reader.at != len(raw):
        raise IntegrityError("a stored book delta does not add up")
    return tuple(out)


class _Cursor:
    """Reads consecutive arrays out of a buffer, refusing to read past its end."""

    def __init__(self, raw: bytes, at: int) -> None:
        self.raw, self.at = raw, at

    def take(self, dtype: Any, count: int) -> npt.NDArray[Any]:
        size = np.dtype(dtype).itemsize * count
        if self.at + size > len(self.raw):
            raise IntegrityError("a stored book delta does not add up")
        out = np.frombuffer(self.raw, dtype=dtype, count=count, offset=self.at)
        self.at += size
        return out


def stored_columns(book_format: int, data: bytes, orders: int, base: Columns | None) -> Columns:
    """The columns of a stored book of either format (a delta needs its base's columns)."""
    if book_format == FORMAT:
        return tuple(_columns(data, orders))
    if book_format == DELTA:
        if base is None:
            raise IntegrityError("a stored book delta was read without its base")
        return apply(data, orders, base)
    raise IntegrityError(f"book format {book_format} is not one this driftsnap reads")


def ids_in(columns: Columns) -> set[int]:
    """The account ids a book's columns refer to."""
    return {int(i) for i in np.unique(np.concatenate([columns[0], columns[1]]))}


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
    return book_of(
        tuple(_columns(data, orders)),
        pubkeys,
        market=market,
        market_index=market_index,
        slot=slot,
        ts=ts,
        oracle_price=oracle_price,
    )


def book_of(
    columns: Columns,
    pubkeys: Mapping[int, str],
    *,
    market: str,
    market_index: int,
    slot: int,
    ts: int,
    oracle_price: int,
) -> book_mod.Book:
    """The :class:`Book` of stored ``columns``; ``pubkeys`` maps account ids to public keys.

    Backed by an :class:`~driftsnap.scoring.book.OrderTable` (scored on its columns, its
    ``Order`` objects built only if read), unless it holds vAMM orders, which a table cannot.
    """
    user, authority, flag_column, price, size, order_id = columns
    flags = np.asarray(flag_column, dtype=np.uint8)
    if not (flags & VAMM).any():
        users, user_ix = _named(user, pubkeys)
        authorities, authority_ix = _named(authority, pubkeys)
        table = book_mod.OrderTable(
            side=(flags & ASK).astype(np.int8),
            price=np.asarray(price, dtype=np.int64),
            size=np.asarray(size, dtype=np.int64),
            order_id=np.asarray(order_id, dtype=np.int64),
            user=user_ix,
            authority=authority_ix,
            users=users,
            authorities=authorities,
        )
        return book_mod.Book(
            market=market,
            market_index=market_index,
            slot=slot,
            ts=ts,
            oracle_price=oracle_price,
            table=table,
        )
    return _book_of_orders(
        columns,
        pubkeys,
        market=market,
        market_index=market_index,
        slot=slot,
        ts=ts,
        oracle_price=oracle_price,
    )


def _named(
    ids: npt.NDArray[np.generic], pubkeys: Mapping[int, str]
) -> tuple[tuple[str, ...], npt.NDArray[np.intp]]:
    """The public keys of ``ids`` sorted as strings, and each id's position among them."""
    present, _, inverse = book_mod.unique_ids(np.asarray(ids))
    names, rank = _in_name_order(_keys(pubkeys, present))
    return names, rank[inverse]


def _in_name_order(names: tuple[str, ...]) -> tuple[tuple[str, ...], npt.NDArray[np.intp]]:
    """``names`` sorted, and each one's position among them. Fast when ids were numbered in
    their keys' order (an archive's are), so ``names`` is sorted already."""
    ordered = tuple(sorted(names))
    if ordered == names:
        return names, np.arange(len(names), dtype=np.intp)
    by_name = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.intp)
    rank[by_name] = np.arange(len(names), dtype=np.intp)
    return ordered, rank


def _keys(table: Mapping[int, str] | Sequence[str], at: npt.NDArray[np.generic]) -> tuple[str, ...]:
    """``table[i]`` for each ``i`` of ``at``, in order, looked up in C (a book names ~2,000
    accounts, and a week's close, export or verify reads tens of thousands of books)."""
    keys = at.tolist()
    if len(keys) < 2:
        return tuple(table[k] for k in keys)  # itemgetter of one key returns it bare
    got: tuple[str, ...] = operator.itemgetter(*keys)(table)
    return got


def _book_of_orders(
    columns: Columns,
    pubkeys: Mapping[int, str],
    *,
    market: str,
    market_index: int,
    slot: int,
    ts: int,
    oracle_price: int,
) -> book_mod.Book:
    user, authority, flags, price, size, order_id = (c.tolist() for c in columns)
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


def _decompress(data: bytes) -> bytes:
    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"a stored book does not decompress: {exc}") from None


def _columns(data: bytes, orders: int) -> list[npt.NDArray[np.generic]]:
    raw = _decompress(data)
    expected = orders * sum(d.itemsize for d in _DTYPES)
    if len(raw) != expected:
        raise IntegrityError(f"a stored book holds {len(raw)} bytes, {expected} expected")
    out: list[npt.NDArray[np.generic]] = []
    offset = 0
    for dtype in _DTYPES:
        out.append(np.frombuffer(raw, dtype=dtype, count=orders, offset=offset))
        offset += orders * dtype.itemsize
    return out
