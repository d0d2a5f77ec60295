"""Spec 1.1 eligibility and limit prices, vectorised, against driftpy's own order functions."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
from driftpy.decode.user import decode_user
from driftpy.math.orders import (
    get_limit_price,
    is_order_expired,
    is_resting_limit_order,
    is_triggered,
    must_be_triggered,
)
from driftpy.types import (
    MarketType,
    OraclePriceData,
    Order,
    OrderStatus,
    OrderTriggerCondition,
    OrderType,
    PositionDirection,
    is_variant,
)
from hypothesis import given
from hypothesis import strategies as st

from driftsnap import protocol
from driftsnap.chain import accounts, eligibility, idl, users

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/mainnet/accounts.json"
S = 300_000_000
ORDER_FIELDS: tuple[str, ...] = users.ORDER_DTYPE.names or ()
T = 1_750_000_000

_ENUM_TYPES = {
    "status": ("OrderStatus", OrderStatus),
    "order_type": ("OrderType", OrderType),
    "market_type": ("MarketType", MarketType),
    "existing_position_direction": ("PositionDirection", PositionDirection),
    "direction": ("PositionDirection", PositionDirection),
    "trigger_condition": ("OrderTriggerCondition", OrderTriggerCondition),
}


def reference(order: Order, slot: int, ts: int, oracle: int) -> int | None:
    """Spec 1.1 spelled with driftpy's functions: the book price, or None when not eligible."""
    eligible = (
        is_variant(order.status, "Open")
        and is_variant(order.market_type, "Perp")
        and is_resting_limit_order(order, slot)
        and (not must_be_triggered(order) or is_triggered(order))
        and order.base_asset_amount - order.base_asset_amount_filled > 0
        and (order.max_ts == 0 or ts <= order.max_ts)
    )
    if not eligible:
        return None
    price: int | None = get_limit_price(order, OraclePriceData(oracle, slot, 0, 0, 0, True), slot)
    if price is None or not 0 < price <= eligibility.I64_MAX:
        return None
    return price


def to_driftpy(fields: dict[str, Any]) -> Order:
    values = dict(fields)
    for name, (idl_name, cls) in _ENUM_TYPES.items():
        values[name] = getattr(cls, idl.variants(idl_name)[values[name]])()
    for name in ("reduce_only", "post_only", "immediate_or_cancel"):
        values[name] = values[name] == 1
    return Order(**values)


def to_records(rows: list[dict[str, Any]]) -> np.ndarray[Any, np.dtype[np.void]]:
    records = np.zeros(len(rows), dtype=users.ORDER_DTYPE)
    for i, row in enumerate(rows):
        for name, value in row.items():
            records[i][name] = value
    return records


def evaluate(rows: list[dict[str, Any]], slot: int, ts: int, oracle: int) -> list[int | None]:
    records = to_records(rows)
    priced = eligibility.evaluate(
        records, slot=slot, ts=ts, oracle_price=np.full(len(rows), oracle, dtype=np.int64)
    )
    return [
        int(p) if ok else None
        for ok, p in zip(priced.eligible.tolist(), priced.price.tolist(), strict=True)
    ]


def _near(center: int, spread: int, lo: int, hi: int) -> st.SearchStrategy[int]:
    """Values around ``center`` (where the rules' edges are) plus the full range now and then."""
    return st.one_of(
        st.integers(max(lo, center - spread), min(hi, center + spread)),
        st.sampled_from([lo, hi, 0] if lo <= 0 <= hi else [lo, hi]),
        st.integers(lo, hi),
    )


def _mostly(value: int, other: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """Usually ``value`` (so that most orders get past the earlier rules), else ``other``."""
    return st.one_of(st.just(value), st.just(value), st.just(value), other)


U64 = 2**64 - 1
I64 = 2**63 - 1
PRICE = 150_000_000

_FIELDS: dict[str, st.SearchStrategy[int]] = {
    "slot": st.one_of(st.integers(S - 60, S + 3), _near(S, 300, 0, U64)),
    "price": st.one_of(st.just(PRICE), _near(PRICE, 5_000_000, 0, U64)),
    "base_asset_amount": _near(10**9, 10**9, 0, U64),
    "base_asset_amount_filled": _mostly(0, _near(10**9, 10**9, 0, U64)),
    "quote_asset_amount_filled": st.just(0),
    "trigger_price": st.one_of(st.just(PRICE), _near(PRICE, 5_000_000, 0, U64)),
    "auction_start_price": _mostly(0, _near(0, 5_000_000, -I64 - 1, I64)),
    "auction_end_price": _mostly(0, _near(0, 5_000_000, -I64 - 1, I64)),
    "max_ts": _mostly(0, _near(T, 5, -I64 - 1, I64)),
    "oracle_price_offset": st.one_of(st.just(0), _near(0, 2_000_000, -(2**31), 2**31 - 1)),
    "order_id": st.integers(0, 2**32 - 1),
    "market_index": st.integers(0, 3),
    "status": _mostly(1, st.integers(0, 3)),
    "order_type": st.one_of(st.sampled_from([1, 1, 3]), st.integers(0, 4)),
    "market_type": _mostly(1, st.integers(0, 1)),
    "user_order_id": st.just(0),
    "existing_position_direction": st.integers(0, 1),
    "direction": st.integers(0, 1),
    "reduce_only": st.integers(0, 1),
    "post_only": st.integers(0, 1),
    "immediate_or_cancel": st.integers(0, 1),
    "trigger_condition": st.integers(0, 3),
    "auction_duration": st.one_of(st.just(0), st.integers(0, 40), st.integers(0, 255)),
    "posted_slot_tail": st.just(0),
    "bit_flags": st.integers(0, 255),
}
order_fields = st.fixed_dictionaries(_FIELDS)
# Live auctions and trigger limits: open perp limit orders placed within an auction's reach of S.
_AUCTION_PRICE = st.one_of(
    _near(PRICE, 3_000_000, -I64 - 1, I64), _near(0, 3_000_000, -I64 - 1, I64)
)
auction_fields = st.fixed_dictionaries(
    _FIELDS
    | {
        "status": st.just(1),
        "market_type": st.just(1),
        "order_type": st.sampled_from([1, 3]),
        "slot": st.integers(S - 45, S + 2),
        "auction_duration": st.integers(1, 40),
        "auction_start_price": _AUCTION_PRICE,
        "auction_end_price": _AUCTION_PRICE,
        "base_asset_amount_filled": st.just(0),
        "max_ts": st.just(0),
    }
)


@given(
    rows=st.lists(order_fields, min_size=1, max_size=40),
    slot=_near(S, 50, 0, 2**63),
    ts=_near(T, 5, -(2**62), 2**62),
    oracle=st.one_of(st.integers(1, 10**12), st.just(PRICE)),
)
def test_random_orders_are_eligible_and_priced_exactly_as_driftpy_says(
    rows: list[dict[str, Any]], slot: int, ts: int, oracle: int
) -> None:
    """Statuses, types, offsets, auctions, triggers, expiry, slots: verdicts and prices agree."""
    assert evaluate(rows, slot, ts, oracle) == [
        reference(to_driftpy(r), slot, ts, oracle) for r in rows
    ]


@given(rows=st.lists(auction_fields, min_size=1, max_size=40), oracle=st.integers(1, 10**12))
def test_orders_in_live_auctions_are_priced_as_driftpy_prices_them(
    rows: list[dict[str, Any]], oracle: int
) -> None:
    """Post-only limits mid-auction take driftpy's auction price; trigger limits wait it out."""
    assert evaluate(rows, S, T, oracle) == [reference(to_driftpy(r), S, T, oracle) for r in rows]


@given(rows=st.lists(order_fields, min_size=1, max_size=20), ts=_near(T, 5, 0, 2**62))
def test_expiry_agrees_with_driftpy_except_for_trigger_orders(
    rows: list[dict[str, Any]], ts: int
) -> None:
    """For non-trigger open orders the spec's expiry is driftpy's ``is_order_expired``."""
    for row in rows:
        order = to_driftpy(row)
        if must_be_triggered(order) or not is_variant(order.status, "Open"):
            continue
        spec_live = order.max_ts == 0 or ts <= order.max_ts
        assert spec_live == (not is_order_expired(order, ts))


def test_a_triggered_expired_trigger_limit_is_out_though_driftpy_would_not_expire_it() -> None:
    """Spec rule 4 applies to trigger orders too; driftpy's ``is_order_expired`` skips them."""
    row = dict.fromkeys(ORDER_FIELDS, 0)
    row |= {
        "status": 1,
        "market_type": 1,
        "order_type": protocol.OrderType.TRIGGER_LIMIT,
        "trigger_condition": protocol.TriggerCondition.TRIGGERED_BELOW,
        "direction": protocol.Direction.LONG,
        "price": PRICE,
        "trigger_price": PRICE,
        "base_asset_amount": 10**9,
        "max_ts": T - 1,
    }
    assert not is_order_expired(to_driftpy(row), T)
    assert evaluate([row], S, T, PRICE) == [None]
    assert evaluate([row], S, T - 1, PRICE) == [PRICE]


def test_fixture_orders_are_eligible_and_priced_as_driftpy_says() -> None:
    """All 26 open mainnet orders, at slots and times on both sides of their edges, agree."""
    doc = json.loads(FIXTURES.read_text())
    rows: list[dict[str, Any]] = []
    decoded = []
    for entry in doc["accounts"]:
        if entry["kind"] != "User" or not entry["summary"]["open_orders"]:
            continue
        data = base64.b64decode(entry["data_base64"])
        batch = users.decode([accounts.RawAccount("u", entry["owner"], data)], accounts.Skipped())
        slots = batch.orders[0]
        rows += [
            {name: int(s[name]) for name in ORDER_FIELDS if name != "padding"}
            for s in slots
            if int(s["status"]) == protocol.OrderStatus.OPEN
        ]
        decoded += decode_user(data).orders
    assert len(rows) == len(decoded) == 26
    latest = max(r["slot"] for r in rows)
    eligible_somewhere = 0
    for slot in (latest, latest + 1, latest + 1_000):
        for ts in (1_738_894_676, 1_738_894_677):
            ours = evaluate(rows, slot, ts, 190_000_000)
            assert ours == [reference(o, slot, ts, 190_000_000) for o in decoded]
            eligible_somewhere += sum(p is not None for p in ours)
    assert eligible_somewhere > 0
