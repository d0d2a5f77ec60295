"""The book JSON format shared by ``score-book``, ``books`` and the simulator's ground truth.

    {"market": "SOL-PERP", "market_index": 0, "slot": 123, "ts": 1700000000,
     "oracle_price": 100000000,
     "orders": [{"user": "<base58>", "authority": "<base58>", "side": "bid",
                 "price": 99990000, "size": 50000000000, "order_id": 7}]}

Prices in ``PRICE_PRECISION`` (1e6), sizes in ``BASE_PRECISION`` (1e9), all JSON integers (a
float or a boolean is refused rather than rounded). Unknown keys are ignored so writers may add
facts (oracle slot, best prices, ...). Every validation failure becomes one :class:`InputError`
line that names the offending field, e.g. ``orders[3].size: must be greater than 0``.

A book is hostile input until it validates, so the reader bounds what it accepts before any of
it is scored: at most :data:`MAX_BOOK_BYTES` of text (a 64 MiB book holds some 400,000 orders,
far beyond a real market's few thousand), JSON nested at most :data:`MAX_DEPTH` deep (the format
is three deep), no integer of more than :data:`MAX_INT_DIGITS` digits (nothing in the format
exceeds 64 bits; Python would refuse 4,301 digits with a traceback) and no ``NaN`` or
``Infinity``. Numbers are held to the chain's own types: ``market_index`` a u16, ``order_id`` a
u32, prices, sizes, slots and timestamps within i64.
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
U32_MAX = 2**32 - 1  # Order.order_id
U16_MAX = 2**16 - 1  # PerpMarket.market_index

MAX_BOOK_BYTES = 64 << 20
MAX_DEPTH = 32
MAX_INT_DIGITS = 40  # a sign and 20 digits hold any u64; 40 leaves room for a writer's extras

PositiveInt = Annotated[int, Field(strict=True, gt=0, le=I64_MAX)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0, le=I64_MAX)]


class _OrderIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    user: Annotated[str, Field(strict=True)]
    authority: Annotated[str, Field(strict=True)]
    side: Literal["bid", "ask"]
    price: PositiveInt
    size: PositiveInt
    order_id: Annotated[int, Field(strict=True, ge=0, le=U32_MAX)]
    vamm: Annotated[bool, Field(strict=True)] = False

    _user = field_validator("user", "authority")(protocol.pubkey)


class _BookIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    market: Annotated[str, Field(strict=True, min_length=1)]
    market_index: Annotated[int, Field(strict=True, ge=0, le=U16_MAX)]
    slot: NonNegativeInt
    ts: NonNegativeInt
    oracle_price: PositiveInt
    orders: list[_OrderIn]


def _int(source: str) -> Any:
    def parse_int(digits: str) -> int:
        if len(digits) > MAX_INT_DIGITS:
            raise InputError(
                f"{source}: an integer of {len(digits)} digits is out of range "
                "(every number of a book fits in 64 bits)"
            )
        return int(digits)

    return parse_int


def _constant(source: str) -> Any:
    def parse_constant(name: str) -> float:
        raise InputError(f"{source}: not valid JSON ({name} is not a JSON number)")

    return parse_constant


def _check_depth(data: Any, source: str) -> None:
    """:class:`InputError` if ``data`` nests deeper than :data:`MAX_DEPTH` (without recursing)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: JSON nested more than {MAX_DEPTH} deep; not a book")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def parse(text: str | bytes, *, source: str = "book") -> book_mod.Book:
    """A validated :class:`Book` from JSON text; :class:`InputError` naming the problem if not."""
    if len(text) > MAX_BOOK_BYTES:
        raise InputError(f"{source}: larger than {MAX_BOOK_BYTES >> 20} MiB; not a book")
    if not text.strip():
        raise InputError(f"{source}: file is empty; expected a JSON book")
    try:
        data = json.loads(text, parse_int=_int(source), parse_constant=_constant(source))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested more than {MAX_DEPTH} deep; not a book") from None
    if isinstance(data, dict | list):
        _check_depth(data, source)
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
