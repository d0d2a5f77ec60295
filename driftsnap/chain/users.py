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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from solders.pubkey import Pubkey

from driftsnap.chain import accounts, idl
from driftsnap.protocol import Direction, MarketType, OrderStatus, OrderType, TriggerCondition

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

ORDER_SLOTS: Final = 32
ORDER_DTYPE: Final = idl.dtype("Order")
ACCOUNT_DTYPE: Final = np.dtype([("discriminator", "<u8"), ("user", idl.dtype("User"))])
I64_MAX: Final = 2**63 - 1


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

    ``orders`` has shape ``(n, 32)`` and dtype :data:`ORDER_DTYPE` (all 32 slots, open or not).
    """

    pubkeys: tuple[str, ...]
    authority: npt.NDArray[np.uint8]
    sub_account_id: npt.NDArray[np.uint16]
    orders: npt.NDArray[np.void]

    def __len__(self) -> int:
        return len(self.pubkeys)

    def authority_of(self, row: int) -> str:
        """The base58 authority of the account in ``row``."""
        return str(Pubkey(self.authority[row].tobytes()))


def decode(
    raw: Sequence[accounts.RawAccount], skipped: accounts.Skipped, *, slot: int | None = None
) -> Users:
    """Decode User accounts; a bad one is left out and counted in ``skipped``, never raised.

    ``slot`` is the slot the accounts were read at: no open order may be placed after it.
    """
    size = accounts.SIZES[accounts.Kind.USER]
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
    records = np.frombuffer(buffer, dtype=ACCOUNT_DTYPE, count=len(pubkeys))

    for reason in (accounts.Reason.ENUM, accounts.Reason.BOUNDS):
        orders = records["user"]["orders"]
        bad = _bad_enums(orders) if reason is accounts.Reason.ENUM else _out_of_bounds(orders, slot)
        if bad.any():
            skipped.add(reason, int(bad.sum()))
            records = records[~bad]
            pubkeys = [p for p, b in zip(pubkeys, bad.tolist(), strict=True) if not b]
    user = records["user"]
    return Users(
        pubkeys=tuple(pubkeys),
        authority=user["authority"],
        sub_account_id=user["sub_account_id"],
        orders=user["orders"],
    )


def _bad_enums(orders: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Rows with a status outside the IDL, or an open order with an enum or bool outside it."""
    is_open = orders["status"] == OrderStatus.OPEN
    bad_open = (
        (orders["order_type"] > max(OrderType))
        | (orders["market_type"] > max(MarketType))
        | (orders["direction"] > max(Direction))
        | (orders["trigger_condition"] > max(TriggerCondition))
        | (orders["post_only"] > 1)
    )
    bad: npt.NDArray[np.bool_] = ((orders["status"] > max(OrderStatus)) | (is_open & bad_open)).any(
        axis=1
    )
    return bad


def _out_of_bounds(orders: npt.NDArray[np.void], slot: int | None) -> npt.NDArray[np.bool_]:
    """Rows with an open order whose numbers no Drift program writes (see the module text)."""
    wrong = orders["base_asset_amount"] > np.uint64(I64_MAX)
    if slot is not None:
        wrong |= orders["slot"] > np.uint64(max(slot, 0))
    bad: npt.NDArray[np.bool_] = ((orders["status"] == OrderStatus.OPEN) & wrong).any(axis=1)
    return bad
