"""The book JSON format shared by ``score-book``, ``books`` and the simulator's ground truth.

    {"market": "SOL-PERP", "market_index": 0, "slot": 123, "ts": 1700000000,
     "oracle_price": 100000000,
     "orders": [{"user": "<base58>", "authority": "<base58>", "side": "bid",
                 "price": 99990000, "size": 50000000000, "order_id": 7}]}

Prices in ``PRICE_PRECISION`` (1e6), sizes in ``BASE_PRECISION`` (1e9), all JSON integers (a
float or a boolean is refused rather than rounded). Unknown keys are ignored so writers may add
facts (oracle slot, best prices, ...). Every validation failure becomes one :class:`InputError`
line that names the offending field, e.g. ``orders[3].size: must be greater than 0``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from driftsnap import errors, protocol
from driftsnap.errors import InputError
from driftsnap.scoring import book as book_mod

# The chain's fields are u64, but prices and sizes beyond i64 would mean a broken reader, and the
# columnar view is int64: refuse them at the door rather than overflow later.
I64_MAX = 2**63 - 1

PositiveInt = Annotated[int, Field(strict=True, gt=0, le=I64_MAX)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0, le=I64_MAX)]


class _OrderIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    user: Annotated[str, Field(strict=True)]
    authority: Annotated[str, Field(strict=True)]
    side: Literal["bid", "ask"]
    price: PositiveInt
    size: PositiveInt
    order_id: NonNegativeInt
    vamm: Annotated[bool, Field(strict=True)] = False

    _user = field_validator("user", "authority")(protocol.pubkey)


class _BookIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    market: Annotated[str, Field(strict=True, min_length=1)]
    market_index: NonNegativeInt
    slot: NonNegativeInt
    ts: NonNegativeInt
    oracle_price: PositiveInt
    orders: list[_OrderIn]


def parse(text: str | bytes, *, source: str = "book") -> book_mod.Book:
    """A validated :class:`Book` from JSON text; :class:`InputError` naming the problem if not."""
    if not text.strip():
        raise InputError(f"{source}: file is empty; expected a JSON book")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from None
    return from_dict(data, source=source)


def from_dict(data: Any, *, source: str = "book") -> book_mod.Book:
    """A validated :class:`Book` from parsed JSON; :class:`InputError` naming the problem if not."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    try:
        model = _BookIn.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: {errors.describe(exc)}") from None
    return book_mod.Book(
        market=model.market,
        market_index=model.market_index,
        slot=model.slot,
        ts=model.ts,
        oracle_price=model.oracle_price,
        orders=tuple(
            book_mod.Order(
                user=o.user,
                authority=o.authority,
                side=book_mod.Side.BID if o.side == "bid" else book_mod.Side.ASK,
                price=o.price,
                size=o.size,
                order_id=o.order_id,
                is_vamm=o.vamm,
            )
            for o in model.orders
        ),
    )


def to_dict(book: book_mod.Book) -> dict[str, Any]:
    """The JSON object of ``book`` (orders in their stored order)."""
    return {
        "market": book.market,
        "market_index": book.market_index,
        "slot": book.slot,
        "ts": book.ts,
        "oracle_price": book.oracle_price,
        "orders": [
            {
                "user": o.user,
                "authority": o.authority,
                "side": o.side.label,
                "price": o.price,
                "size": o.size,
                "order_id": o.order_id,
                **({"vamm": True} if o.is_vamm else {}),
            }
            for o in book.orders
        ],
    }
