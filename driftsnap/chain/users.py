"""Many User accounts decoded at once: numpy views over the raw bytes, laid out by the IDL.

driftpy's ``decode_user`` builds Python objects for every position and order of every account,
which is most of the CPU of reading a 10,000-account snapshot. Here the accounts are copied once
into one buffer and read through a structured dtype (:func:`driftsnap.chain.idl.dtype`), so an
order field of every account is one strided array; nothing is decoded that a book does not need.

Enum bytes stay the IDL's variant indices (the ``OrderType`` ... classes below). An open order with
an index the IDL does not define makes its account bad (skipped and counted), where driftpy would
raise, or silently read any unknown direction as ``Short``.

So does an open order with a number no Drift program can have written (reason ``bounds``, checked
over all accounts at once like the enums):

- ``base_asset_amount`` above ``i64::MAX``: the program adds an order's size to the position's
  ``open_bids``/``open_asks`` and fills it into ``base_asset_amount``, all ``i64``, so placing a
  larger order fails; 2**64 - 1 is a forged size, not a big order;
- ``slot`` after the slot the accounts were read at: an order is not placed in the future.

Prices are not bounds here: a limit price is the owner's to choose (an ask at any price rests,
its margin is counted at the oracle), and one no book can hold is left out as unpriceable; so is
an order filled beyond its size (nothing remains of it to rest).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import zstandard
from solders.pubkey import Pubkey

from driftsnap.chain import accounts, errors, idl
from driftsnap.protocol import Direction, MarketType, OrderStatus, OrderType, TriggerCondition

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import numpy.typing as npt

ORDER_SLOTS: Final = 32
ORDER_DTYPE: Final = idl.dtype("Order")
ACCOUNT_DTYPE: Final = np.dtype([("discriminator", "<u8"), ("user", idl.dtype("User"))])
I64_MAX: Final = 2**63 - 1
_USER_SIZE: Final = accounts.SIZES[accounts.Kind.USER]
_USER_TEXT: Final = accounts.max_text(_USER_SIZE)
# base58 of authorities, kept across ticks (the same makers quote every tick); cleared when full.
_BASE58: dict[bytes, str] = {}
_BASE58_MAX: Final = 1 << 20


# The enums above are spelled out for readers and type checkers; the IDL stays the authority, and
# a test holds them to its variant names and order.
IDL_ENUMS: Final = {
    OrderStatus: "OrderStatus",
    OrderType: "OrderType",
    MarketType: "MarketType",
    Direction: "PositionDirection",
    TriggerCondition: "OrderTriggerCondition",
}


@dataclass(frozen=True, slots=True)
class Users:
    """Decoded User accounts: row ``i`` of every array is the account ``pubkeys[i]``.

    ``orders`` has shape ``(n, 32)`` and dtype :data:`ORDER_DTYPE` (all 32 slots, open or not),
    a view over the accounts' bytes. ``open_orders`` holds only the ``Open`` slots, gathered
    once (1-D, the same dtype), and ``open_row`` the row of each.
    """

    pubkeys: tuple[str, ...]
    authority: npt.NDArray[np.uint8]
    sub_account_id: npt.NDArray[np.uint16]
    orders: npt.NDArray[np.void]
    open_row: npt.NDArray[np.intp]
    open_orders: npt.NDArray[np.void]

    def __len__(self) -> int:
        return len(self.pubkeys)

    def authority_of(self, row: int) -> str:
        """The base58 authority of the account in ``row``."""
        return base58(self.authority[row].tobytes())

    def authorities(self) -> tuple[npt.NDArray[np.intp], tuple[str, ...]]:
        """Every row's authority as a dense id, and the base58 names those ids index, sorted.

        Ids follow the names' string order, so per-maker outputs keyed by them come out sorted.
        """
        n = len(self.pubkeys)
        if n == 0:
            return np.zeros(0, dtype=np.intp), ()
        raw = np.ascontiguousarray(self.authority).view(np.dtype((np.void, 32))).reshape(n)
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        names = [base58(self.authority[i].tobytes()) for i in first.tolist()]
        order = sorted(range(len(names)), key=names.__getitem__)
        rank = np.empty(len(names), dtype=np.intp)
        rank[order] = np.arange(len(names))
        return rank[inverse.reshape(n)], tuple(names[i] for i in order)


def base58(key: bytes) -> str:
    """The base58 text of a 32-byte key, cached across calls (and ticks)."""
    name = _BASE58.get(key)
    if name is None:
        if len(_BASE58) >= _BASE58_MAX:
            _BASE58.clear()
        name = _BASE58[key] = str(Pubkey(key))
    return name


def decode_program_accounts(
    items: Iterable[Any], skipped: accounts.Skipped, *, slot: int | None = None
) -> Users:
    """The ``value`` list of a ``getProgramAccounts`` result, straight to :class:`Users`.

    The same checks and counts as :func:`accounts.from_program_accounts` (with ``max_size`` a
    User's size) followed by :func:`decode`, without an object per account: each account's
    base64 is decoded and copied into one buffer the structured dtype is laid over.
    """
    size = _USER_SIZE
    listed = items if isinstance(items, list) else list(items)
    buffer = bytearray(len(listed) * size)
    view = memoryview(buffer)
    pubkeys: list[str] = []
    seen: set[str] = set()
    decompressor: zstandard.ZstdDecompressor | None = None
    skipped.seen += len(listed)
    check = accounts.check
    user = accounts.Kind.USER
    a2b = binascii.a2b_base64
    for item in listed:
        # The common case inline: plain base64 short enough to hold one User; else from_rpc.
        try:
            pubkey = item["pubkey"]
            if type(pubkey) is not str:
                pubkey = str(pubkey)
            account = item["account"]
            text, encoding = account["data"]
            if type(text) is str and encoding == "base64" and len(text) <= _USER_TEXT:
                data = a2b(text, strict_mode=True)
                owner = account["owner"]
                if type(owner) is not str:
                    owner = str(owner)
            else:
                decompressor = decompressor or zstandard.ZstdDecompressor()
                raw = accounts.from_rpc(pubkey, account, decompressor, max_size=size)
                data, owner = raw.data, raw.owner
        except (KeyError, TypeError, ValueError, binascii.Error):
            skipped.add(accounts.Reason.ENCODING)
            continue
        except errors.AccountError as exc:
            skipped.add(accounts.Reason(exc.reason))
            continue
        if len(data) > size:
            skipped.add(accounts.Reason.LENGTH)
            continue
        reason = check(owner, data, user)
        if reason is None and pubkey in seen:
            reason = accounts.Reason.DUPLICATE
        if reason is not None:
            skipped.add(reason)
            continue
        seen.add(pubkey)
        start = len(pubkeys) * size
        view[start : start + size] = data
        pubkeys.append(pubkey)
    return _checked(buffer, pubkeys, skipped, slot)


def decode(
    raw: Sequence[accounts.RawAccount], skipped: accounts.Skipped, *, slot: int | None = None
) -> Users:
    """Decode User accounts; a bad one is left out and counted in ``skipped``, never raised.

    ``slot`` is the slot the accounts were read at: no open order may be placed after it.
    """
    size = _USER_SIZE
    buffer = bytearray(len(raw) * size)
    view = memoryview(buffer)
    pubkeys: list[str] = []
    seen: set[str] = set()
    skipped.seen += len(raw)
    for account in raw:
        reason = accounts.check(account.owner, account.data, accounts.Kind.USER)
        if reason is None and account.pubkey in seen:
            reason = accounts.Reason.DUPLICATE
        if reason is not None:
            skipped.add(reason)
            continue
        seen.add(account.pubkey)
        start = len(pubkeys) * size
        view[start : start + size] = account.data
        pubkeys.append(account.pubkey)
    return _checked(buffer, pubkeys, skipped, slot)


def _checked(
    buffer: bytearray, pubkeys: list[str], skipped: accounts.Skipped, slot: int | None
) -> Users:
    """:class:`Users` over the first ``len(pubkeys)`` accounts of ``buffer``, less those with a
    bad enum or an out-of-bounds open order (counted in ``skipped``).

    Only the ``Open`` slots are gathered (once) and checked field by field; a bad row is
    dropped from the views, never copied out of the buffer.
    """
    records = np.frombuffer(buffer, dtype=ACCOUNT_DTYPE, count=len(pubkeys))
    orders = records["user"]["orders"]
    status = orders["status"]
    open_row, open_column = np.nonzero(status == OrderStatus.OPEN)
    gathered = orders[open_row, open_column]
    keep = np.ones(len(pubkeys), dtype=np.bool_)
    for reason in (accounts.Reason.ENUM, accounts.Reason.BOUNDS):
        if reason is accounts.Reason.ENUM:
            wrong = _bad_enums(gathered)
            bad = np.zeros(len(pubkeys), dtype=np.bool_)
            bad[(status > max(OrderStatus)).any(axis=1)] = True
        else:
            wrong = _out_of_bounds(gathered, slot)
            bad = np.zeros(len(pubkeys), dtype=np.bool_)
        bad[open_row[wrong]] = True
        bad &= keep
        if bad.any():
            skipped.add(reason, int(bad.sum()))
            keep &= ~bad
    if not keep.all():
        rows = np.flatnonzero(keep)
        records = records[rows]
        pubkeys = [pubkeys[i] for i in rows.tolist()]
        renumber = np.cumsum(keep) - 1
        kept = keep[open_row]
        open_row, gathered = renumber[open_row[kept]], gathered[kept]
    user = records["user"]
    return Users(
        pubkeys=tuple(pubkeys),
        authority=user["authority"],
        sub_account_id=user["sub_account_id"],
        orders=user["orders"],
        open_row=open_row.astype(np.intp, copy=False),
        open_orders=gathered,
    )


def _bad_enums(orders: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Per open order (1-D): an enum or bool outside the IDL."""
    bad: npt.NDArray[np.bool_] = (
        (orders["order_type"] > max(OrderType))
        | (orders["market_type"] > max(MarketType))
        | (orders["direction"] > max(Direction))
        | (orders["trigger_condition"] > max(TriggerCondition))
        | (orders["post_only"] > 1)
    )
    return bad


def _out_of_bounds(orders: npt.NDArray[np.void], slot: int | None) -> npt.NDArray[np.bool_]:
    """Per open order (1-D): a number no Drift program writes (see the module text)."""
    wrong: npt.NDArray[np.bool_] = orders["base_asset_amount"] > np.uint64(I64_MAX)
    if slot is not None:
        wrong |= orders["slot"] > np.uint64(max(slot, 0))
    return wrong
