"""Drift v2 account and event bytes, as the program lays them out.

Two encoders live here. The reference one is anchorpy's ``Coder`` over the IDL that driftpy ships:
it is what proves the bytes are real. The fast one packs the same layout with :mod:`struct` and is
what the simulator serves, because anchorpy needs milliseconds per User account and
``mainnet-scale`` re-encodes thousands of them; tests assert the two agree byte for byte.

PerpMarket accounts are never packed by hand: they are the real mainnet bytes (or an anchorpy
re-encoding of them), and only the fields the simulation moves are patched in place, at offsets
found by asking the coder itself where those fields live.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import struct
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from anchorpy.coder.coder import Coder
from anchorpy.program.common import NamedInstruction
from anchorpy_core.idl import Idl
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.protocol import Direction, MarketType, OrderStatus, OrderType, TriggerCondition

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DRIFT_PROGRAM_ID: Final = Pubkey.from_string(protocol.DRIFT_PROGRAM_ID)

USER_SIZE: Final = 4376
PERP_MARKET_SIZE: Final = 1216
PYTH_LAZER_ORACLE_SIZE: Final = 48
USER_STATS_SIZE: Final = 240
ORDER_SLOTS: Final = 32
PERP_POSITION_SLOTS: Final = 8

# Offsets inside a User account (8-byte discriminator first); the Order and PerpPosition structs
# are 96 bytes each and the spot positions before them 40 bytes each.
_AUTHORITY_OFFSET: Final = 8
_PERP_POSITIONS_OFFSET: Final = 8 + 32 + 32 + 32 + 8 * 40
_ORDERS_OFFSET: Final = _PERP_POSITIONS_OFFSET + PERP_POSITION_SLOTS * 96
_TAIL_OFFSET: Final = _ORDERS_OFFSET + ORDER_SLOTS * 96

_ORDER: Final = struct.Struct("<QQQQQQqqqiIH14B")
_PERP_POSITION: Final = struct.Struct("<qqqqqqqqQqq2xHHBb")
_USER_TAIL: Final = struct.Struct("<qQQQqqqQQIIHHBBBBBBBBB3xI12x")
_PYTH_LAZER: Final = struct.Struct("<qQQi4xQ")
_U64: Final = struct.Struct("<Q")
_I64: Final = struct.Struct("<q")


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    """One slot of a User's ``orders`` array, field for field as the IDL names them."""

    order_id: int
    market_index: int
    direction: Direction
    base_asset_amount: int
    slot: int
    price: int = 0
    order_type: OrderType = OrderType.LIMIT
    market_type: MarketType = MarketType.PERP
    status: OrderStatus = OrderStatus.OPEN
    base_asset_amount_filled: int = 0
    quote_asset_amount_filled: int = 0
    trigger_price: int = 0
    trigger_condition: TriggerCondition = TriggerCondition.ABOVE
    auction_start_price: int = 0
    auction_end_price: int = 0
    auction_duration: int = 0
    max_ts: int = 0
    oracle_price_offset: int = 0
    post_only: bool = False
    reduce_only: bool = False
    immediate_or_cancel: bool = False
    user_order_id: int = 0
    bit_flags: int = 0

    @property
    def remaining(self) -> int:
        """The base amount not yet filled."""
        return self.base_asset_amount - self.base_asset_amount_filled


@dataclasses.dataclass(frozen=True, slots=True)
class PerpPosition:
    """The parts of a PerpPosition the simulation moves; everything else stays zero."""

    market_index: int
    base_asset_amount: int = 0
    quote_asset_amount: int = 0
    open_bids: int = 0
    open_asks: int = 0
    open_orders: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """A User account's content as the simulator holds it."""

    authority: Pubkey
    sub_account_id: int
    orders: tuple[Order, ...]
    perp_positions: tuple[PerpPosition, ...] = ()
    next_order_id: int = 1
    last_active_slot: int = 0

    @property
    def open_orders(self) -> int:
        """The number of order slots holding an open order."""
        return sum(1 for o in self.orders if o.status == OrderStatus.OPEN)


@functools.cache
def idl_text() -> str:
    """The Drift IDL JSON that driftpy ships (read once)."""
    return resources.files("driftpy").joinpath("idl/drift.json").read_text()


@functools.cache
def coder() -> Any:
    """anchorpy's coder over the Drift IDL shipped inside driftpy (loaded once)."""
    return Coder(Idl.from_json(idl_text()))


@functools.cache
def _variant_index(type_name: str, variant: str) -> int:
    types = {t["name"]: t for t in json.loads(idl_text())["types"]}
    names = [v["name"] for v in types[type_name]["type"]["variants"]]
    return names.index(variant)


def variant(type_name: str, name: str | int) -> Any:
    """An IDL enum value (by variant name or index) as anchorpy's coder represents it."""
    index = name if isinstance(name, int) else _variant_index(type_name, name)
    return coder().types.decode(type_name, bytes([index]))


def account_discriminator(name: str) -> bytes:
    """Anchor's 8-byte discriminator of account type ``name``."""
    return hashlib.sha256(f"account:{name}".encode()).digest()[:8]


def event_discriminator(name: str) -> bytes:
    """Anchor's 8-byte discriminator of event type ``name``."""
    return hashlib.sha256(f"event:{name}".encode()).digest()[:8]


def fields_of(value: Any) -> Any:
    """A decoded anchorpy value as plain dicts and lists, ready to be modified and re-encoded.

    anchorpy's own encoder turns dataclasses into dicts with ``dataclasses.asdict``, which
    deep-copies every leaf and fails on ``solders`` public keys; converting shallowly avoids that.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: fields_of(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [fields_of(v) for v in value]
    return value


def encode_account(name: str, fields: Mapping[str, Any]) -> bytes:
    """Encode an account with anchorpy (discriminator + borsh)."""
    return bytes(coder().accounts.build(NamedInstruction(data=dict(fields), name=name)))


def decode_account(raw: bytes) -> Any:
    """An account's bytes decoded with anchorpy (its discriminator picks the type)."""
    return coder().accounts.decode(raw)


def blank_fields(name: str, size: int) -> dict[str, Any]:
    """The fields of an all-zero account of this type: every number 0, every enum its variant 0."""
    return dict(fields_of(decode_account(account_discriminator(name) + bytes(size - 8))))


def encode_event(name: str, fields: Mapping[str, Any]) -> bytes:
    """An anchor event as it appears base64-encoded after ``Program data:`` in the logs."""
    return event_discriminator(name) + bytes(coder().events.layouts[name].build(fields))


# ---------------------------------------------------------------- User (fast path)

_USER_DISCRIMINATOR: Final = account_discriminator("User")


def encode_user(user: User) -> bytes:
    """Pack a User account exactly as anchorpy would encode it (``user_fields``)."""
    if len(user.orders) > ORDER_SLOTS or len(user.perp_positions) > PERP_POSITION_SLOTS:
        raise ValueError("more orders or positions than a User account holds")
    buf = bytearray(USER_SIZE)
    buf[0:8] = _USER_DISCRIMINATOR
    buf[_AUTHORITY_OFFSET : _AUTHORITY_OFFSET + 32] = bytes(user.authority)
    for i, p in enumerate(user.perp_positions):
        _PERP_POSITION.pack_into(
            buf,
            _PERP_POSITIONS_OFFSET + 96 * i,
            0,
            p.base_asset_amount,
            p.quote_asset_amount,
            0,
            0,
            p.open_bids,
            p.open_asks,
            0,
            0,
            0,
            0,
            0,
            p.market_index,
            p.open_orders,
            0,
        )
    for i, o in enumerate(user.orders):
        _ORDER.pack_into(
            buf,
            _ORDERS_OFFSET + 96 * i,
            o.slot,
            o.price,
            o.base_asset_amount,
            o.base_asset_amount_filled,
            o.quote_asset_amount_filled,
            o.trigger_price,
            o.auction_start_price,
            o.auction_end_price,
            o.max_ts,
            o.oracle_price_offset,
            o.order_id,
            o.market_index,
            o.status,
            o.order_type,
            o.market_type,
            o.user_order_id,
            o.direction,  # existing_position_direction: the simulator opens from flat
            o.direction,
            o.reduce_only,
            o.post_only,
            o.immediate_or_cancel,
            o.trigger_condition,
            o.auction_duration,
            o.slot & 0xFF,  # posted_slot_tail, as the program stores it
            o.bit_flags,
            0,
        )
    open_orders = user.open_orders
    _USER_TAIL.pack_into(
        buf,
        _TAIL_OFFSET,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        user.last_active_slot,
        user.next_order_id,
        0,
        0,
        user.sub_account_id,
        0,
        0,
        0,
        open_orders,
        open_orders > 0,
        0,
        0,
        0,
        0,
        0,
    )
    return bytes(buf)


def user_fields(user: User) -> dict[str, Any]:
    """The same User as anchorpy fields: the reference encoding the fast path is tested against."""
    fields = blank_fields("User", USER_SIZE)
    fields["authority"] = user.authority
    fields["sub_account_id"] = user.sub_account_id
    fields["next_order_id"] = user.next_order_id
    fields["last_active_slot"] = user.last_active_slot
    fields["open_orders"] = user.open_orders
    fields["has_open_order"] = user.open_orders > 0
    for i, p in enumerate(user.perp_positions):
        fields["perp_positions"][i].update(
            market_index=p.market_index,
            base_asset_amount=p.base_asset_amount,
            quote_asset_amount=p.quote_asset_amount,
            open_bids=p.open_bids,
            open_asks=p.open_asks,
            open_orders=p.open_orders,
        )
    for i, o in enumerate(user.orders):
        fields["orders"][i].update(
            slot=o.slot,
            price=o.price,
            base_asset_amount=o.base_asset_amount,
            base_asset_amount_filled=o.base_asset_amount_filled,
            quote_asset_amount_filled=o.quote_asset_amount_filled,
            trigger_price=o.trigger_price,
            auction_start_price=o.auction_start_price,
            auction_end_price=o.auction_end_price,
            max_ts=o.max_ts,
            oracle_price_offset=o.oracle_price_offset,
            order_id=o.order_id,
            market_index=o.market_index,
            status=variant("OrderStatus", int(o.status)),
            order_type=variant("OrderType", int(o.order_type)),
            market_type=variant("MarketType", int(o.market_type)),
            user_order_id=o.user_order_id,
            existing_position_direction=variant("PositionDirection", int(o.direction)),
            direction=variant("PositionDirection", int(o.direction)),
            reduce_only=o.reduce_only,
            post_only=o.post_only,
            immediate_or_cancel=o.immediate_or_cancel,
            trigger_condition=variant("OrderTriggerCondition", int(o.trigger_condition)),
            auction_duration=o.auction_duration,
            posted_slot_tail=o.slot & 0xFF,
            bit_flags=o.bit_flags,
        )
    return fields


# ---------------------------------------------------------------- oracle and market


def encode_pyth_lazer(
    price: int, exponent: int, conf: int, publish_time_us: int, slot: int
) -> bytes:
    """A PythLazerOracle account (Drift-owned), packed as the IDL lays it out."""
    return account_discriminator("PythLazerOracle") + _PYTH_LAZER.pack(
        price, publish_time_us, slot, exponent, conf
    )


def decode_pyth_lazer(raw: bytes) -> tuple[int, int, int, int, int]:
    """(price, exponent, conf, publish_time_us, posted_slot) of a PythLazerOracle account."""
    price, publish_time_us, slot, exponent, conf = _PYTH_LAZER.unpack_from(raw, 8)
    return price, exponent, conf, publish_time_us, slot


def pyth_lazer_address(feed_id: int) -> Pubkey:
    """Drift's PDA for a Pyth Lazer feed."""
    return Pubkey.find_program_address(
        [b"pyth_lazer", feed_id.to_bytes(4, "little")], DRIFT_PROGRAM_ID
    )[0]


def _offset_of(
    name: str, fields: dict[str, Any], setter: Callable[[dict[str, Any], int], int]
) -> int:
    """Where a u64/i64 field lives: re-encode with each byte of it changed, find the first diff."""
    base = encode_account(name, fields)
    old = setter(fields, -1)
    # Flipping one bit in each byte changes all eight bytes, whatever the old value.
    setter(fields, old ^ 0x0101010101010101)
    changed = encode_account(name, fields)
    setter(fields, old)
    return next(i for i, (a, b) in enumerate(zip(base, changed, strict=True)) if a != b)


@dataclasses.dataclass(frozen=True, slots=True)
class PerpMarketTemplate:
    """A PerpMarket's bytes plus where its moving fields live."""

    data: bytes
    next_fill_record_id_offset: int
    last_oracle_price_offset: int

    @classmethod
    def from_bytes(cls, data: bytes) -> PerpMarketTemplate:
        """A template of a PerpMarket's bytes, its moving fields located through the coder."""
        fields = fields_of(decode_account(data))

        def fill_id(f: dict[str, Any], value: int) -> int:
            old: int = f["next_fill_record_id"]
            if value >= 0:
                f["next_fill_record_id"] = value
            return old

        def oracle_price(f: dict[str, Any], value: int) -> int:
            hist = f["amm"]["historical_oracle_data"]
            old: int = hist["last_oracle_price"]
            if value != -1:
                hist["last_oracle_price"] = value
            return old

        return cls(
            data=data,
            next_fill_record_id_offset=_offset_of("PerpMarket", fields, fill_id),
            last_oracle_price_offset=_offset_of("PerpMarket", fields, oracle_price),
        )

    def render(self, next_fill_record_id: int, last_oracle_price: int) -> bytes:
        """The bytes with ``next_fill_record_id`` and ``last_oracle_price`` patched in."""
        buf = bytearray(self.data)
        _U64.pack_into(buf, self.next_fill_record_id_offset, next_fill_record_id)
        _I64.pack_into(buf, self.last_oracle_price_offset, last_oracle_price)
        return bytes(buf)


def derive_perp_market(
    template: bytes, *, market_index: int, name: str, oracle: Pubkey, pubkey: Pubkey
) -> bytes:
    """A new PerpMarket from a real one: same parameters, another index, name and oracle."""
    fields = fields_of(decode_account(template))
    fields["market_index"] = market_index
    fields["pubkey"] = pubkey
    fields["name"] = list(name.encode().ljust(32, b" "))
    fields["amm"]["oracle"] = oracle
    return encode_account("PerpMarket", fields)


def perp_market_address(market_index: int) -> Pubkey:
    """Drift's PDA for perp market ``market_index``."""
    return Pubkey.find_program_address(
        [b"perp_market", market_index.to_bytes(2, "little")], DRIFT_PROGRAM_ID
    )[0]


def user_address(authority: Pubkey, sub_account_id: int) -> Pubkey:
    """Drift's PDA for ``authority``'s User account ``sub_account_id``."""
    return Pubkey.find_program_address(
        [b"user", bytes(authority), sub_account_id.to_bytes(2, "little")], DRIFT_PROGRAM_ID
    )[0]


def user_stats_address(authority: Pubkey) -> Pubkey:
    """Drift's PDA for ``authority``'s UserStats account."""
    return Pubkey.find_program_address([b"user_stats", bytes(authority)], DRIFT_PROGRAM_ID)[0]


def encode_user_stats(
    authority: Pubkey,
    number_of_sub_accounts: int,
    *,
    maker_volume_30d: int = 0,
    last_maker_volume_30d_ts: int = 0,
) -> bytes:
    """A UserStats account (anchorpy-encoded: there are few, and they change only on fills)."""
    fields = blank_fields("UserStats", USER_STATS_SIZE)
    fields["authority"] = authority
    fields["number_of_sub_accounts"] = number_of_sub_accounts
    fields["number_of_sub_accounts_created"] = number_of_sub_accounts
    fields["maker_volume30d"] = maker_volume_30d
    fields["last_maker_volume30d_ts"] = last_maker_volume_30d_ts
    return encode_account("UserStats", fields)


def order_action_fill(
    *,
    ts: int,
    market_index: int,
    filler: Pubkey,
    fill_record_id: int,
    base: int,
    quote: int,
    taker: Pubkey | None,
    taker_order: Order | None,
    maker: Pubkey,
    maker_order: Order,
    oracle_price: int,
    jit: bool,
) -> bytes:
    """An ``OrderActionRecord`` with action Fill, as the Drift program emits it."""

    def direction(o: Order) -> Any:
        return variant("PositionDirection", int(o.direction))

    explanation = "OrderFilledWithMatchJit" if jit else "OrderFilledWithMatch"
    maker_fee = -(quote // 40_000)  # a 0.25 bps rebate, negative as the program records it
    fields: dict[str, Any] = {
        "ts": ts,
        "action": variant("OrderAction", "Fill"),
        "action_explanation": variant("OrderActionExplanation", explanation),
        "market_index": market_index,
        "market_type": variant("MarketType", "Perp"),
        "filler": filler,
        "filler_reward": 0,
        "fill_record_id": fill_record_id,
        "base_asset_amount_filled": base,
        "quote_asset_amount_filled": quote,
        "taker_fee": quote * 3 // 10_000 if taker is not None else None,
        "maker_fee": maker_fee,
        "referrer_reward": None,
        "quote_asset_amount_surplus": None,
        "spot_fulfillment_method_fee": None,
        "taker": taker,
        "taker_order_id": taker_order.order_id if taker_order else None,
        "taker_order_direction": direction(taker_order) if taker_order else None,
        "taker_order_base_asset_amount": taker_order.base_asset_amount if taker_order else None,
        "taker_order_cumulative_base_asset_amount_filled": (
            taker_order.base_asset_amount_filled if taker_order else None
        ),
        "taker_order_cumulative_quote_asset_amount_filled": (
            taker_order.quote_asset_amount_filled if taker_order else None
        ),
        "maker": maker,
        "maker_order_id": maker_order.order_id,
        "maker_order_direction": direction(maker_order),
        "maker_order_base_asset_amount": maker_order.base_asset_amount,
        "maker_order_cumulative_base_asset_amount_filled": maker_order.base_asset_amount_filled,
        "maker_order_cumulative_quote_asset_amount_filled": maker_order.quote_asset_amount_filled,
        "oracle_price": oracle_price,
        "bit_flags": 0,
        "taker_existing_quote_entry_amount": None,
        "taker_existing_base_asset_amount": None,
        "maker_existing_quote_entry_amount": None,
        "maker_existing_base_asset_amount": None,
        "trigger_price": None,
        "builder_idx": None,
        "builder_fee": None,
    }
    return encode_event("OrderActionRecord", fields)
