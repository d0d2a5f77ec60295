"""The vectorised User decoder against driftpy's ``decode_user``: mainnet bytes and random ones."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from anchorpy.coder.coder import Coder
from anchorpy.program.common import NamedInstruction
from anchorpy_core.idl import Idl
from driftpy.decode.user import decode_user
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.chain import accounts, idl, users

if TYPE_CHECKING:
    import enum

    import numpy as np

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/mainnet/accounts.json"

# Order fields as driftpy's Order dataclass names them; enums compare by IDL variant name.
_ENUMS = {
    "status": "OrderStatus",
    "order_type": "OrderType",
    "market_type": "MarketType",
    "existing_position_direction": "PositionDirection",
    "direction": "PositionDirection",
    "trigger_condition": "OrderTriggerCondition",
}
_BOOLS = ("reduce_only", "post_only", "immediate_or_cancel")
_INTS = (
    "slot",
    "price",
    "base_asset_amount",
    "base_asset_amount_filled",
    "quote_asset_amount_filled",
    "trigger_price",
    "auction_start_price",
    "auction_end_price",
    "max_ts",
    "oracle_price_offset",
    "order_id",
    "market_index",
    "user_order_id",
    "auction_duration",
    "posted_slot_tail",
    "bit_flags",
)


@functools.cache
def fixture_users() -> list[dict[str, Any]]:
    doc = json.loads(FIXTURES.read_text())
    return [a for a in doc["accounts"] if a["kind"] == "User"]


def raw_user(entry: dict[str, Any]) -> accounts.RawAccount:
    return accounts.RawAccount(
        pubkey=entry["summary"]["user_pda"],
        owner=entry["owner"],
        data=base64.b64decode(entry["data_base64"]),
    )


def ours(record: np.void) -> dict[str, object]:
    """One decoded order slot in driftpy's terms."""
    out: dict[str, object] = {name: int(record[name]) for name in _INTS}
    out |= {name: int(record[name]) == 1 for name in _BOOLS}
    out |= {name: idl.variants(enum)[int(record[name])] for name, enum in _ENUMS.items()}
    return out


def theirs(order: Any) -> dict[str, object]:
    """A driftpy Order in the same terms (sumtype variants by class name)."""
    out: dict[str, object] = {name: getattr(order, name) for name in (*_INTS, *_BOOLS)}
    out |= {name: type(getattr(order, name)).__name__ for name in _ENUMS}
    return out


def assert_same_as_driftpy(decoded: users.Users, row: int, data: bytes) -> None:
    expected = decode_user(data)
    assert decoded.authority_of(row) == str(expected.authority)
    assert int(decoded.sub_account_id[row]) == expected.sub_account_id
    slots = decoded.orders[row]
    open_slots = [s for s in slots if int(s["status"]) == protocol.OrderStatus.OPEN]
    assert [ours(s) for s in open_slots] == [theirs(o) for o in expected.orders]


def test_every_fixture_user_decodes_as_driftpy_does() -> None:
    """All 104 mainnet Users: authority, sub-account and every field of every open order agree."""
    entries = fixture_users()
    assert len(entries) == 104
    skipped = accounts.Skipped()
    decoded = users.decode([raw_user(e) for e in entries], skipped)
    assert len(decoded) == 104
    assert skipped.total == 0
    for row, entry in enumerate(entries):
        assert decoded.pubkeys[row] == entry["summary"]["user_pda"]
        assert_same_as_driftpy(decoded, row, base64.b64decode(entry["data_base64"]))


def test_fixture_users_match_their_listed_values() -> None:
    """The decoded authorities, sub-accounts and 26 open orders equal the fixture's summaries."""
    entries = fixture_users()
    decoded = users.decode([raw_user(e) for e in entries], accounts.Skipped())
    n_orders = 0
    for row, entry in enumerate(entries):
        summary = entry["summary"]
        assert decoded.authority_of(row) == summary["authority"]
        assert int(decoded.sub_account_id[row]) == summary["sub_account_id"]
        open_slots = [
            ours(s) for s in decoded.orders[row] if int(s["status"]) == protocol.OrderStatus.OPEN
        ]
        assert len(open_slots) == summary["num_open_orders"] == summary["open_orders_field"]
        for got, listed in zip(open_slots, summary["open_orders"], strict=True):
            assert {k: got[k] for k in listed} == listed
        n_orders += len(open_slots)
    assert n_orders == 26


# ---------------------------------------------------------------- synthetic users (anchorpy)


@functools.cache
def coder() -> Any:
    return Coder(Idl.from_json(idl.text()))


@functools.cache
def variant(enum: str, index: int) -> Any:
    return coder().types.decode(enum, bytes([index]))


def fields_of(value: Any) -> Any:
    """anchorpy's decoded value as plain dicts and lists, ready to be modified and re-encoded."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: fields_of(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [fields_of(v) for v in value]
    return value


@functools.cache
def template_fields() -> str:
    """A real user with positions and orders (base64), decoded afresh for every example."""
    entry = next(e for e in fixture_users() if e["summary"]["open_orders"])
    return str(entry["data_base64"])


def _u(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, 2**bits - 1)


def _i(bits: int) -> st.SearchStrategy[int]:
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


order_fields = st.fixed_dictionaries(
    {
        "slot": _u(64),
        "price": _u(64),
        "base_asset_amount": _u(64),
        "base_asset_amount_filled": _u(64),
        "quote_asset_amount_filled": _u(64),
        "trigger_price": _u(64),
        "auction_start_price": _i(64),
        "auction_end_price": _i(64),
        "max_ts": _i(64),
        "oracle_price_offset": _i(32),
        "order_id": _u(32),
        "market_index": _u(16),
        "status": st.integers(0, 3),
        "order_type": st.integers(0, 4),
        "market_type": st.integers(0, 1),
        "user_order_id": _u(8),
        "existing_position_direction": st.integers(0, 1),
        "direction": st.integers(0, 1),
        "reduce_only": st.booleans(),
        "post_only": st.booleans(),
        "immediate_or_cancel": st.booleans(),
        "trigger_condition": st.integers(0, 3),
        "auction_duration": _u(8),
        "posted_slot_tail": _u(8),
        "bit_flags": _u(8),
    }
)


def encode_user(authority: bytes, sub_account_id: int, orders: dict[int, dict[str, Any]]) -> bytes:
    """anchorpy's encoding of the template user with these fields replaced."""
    fields = fields_of(coder().accounts.decode(base64.b64decode(template_fields())))
    fields["authority"] = Pubkey(authority)
    fields["sub_account_id"] = sub_account_id
    for slot, values in orders.items():
        order = fields["orders"][slot]
        for name, value in values.items():
            order[name] = variant(_ENUMS[name], value) if name in _ENUMS else value
    return bytes(coder().accounts.build(NamedInstruction(data=fields, name="User")))


@given(
    authority=st.binary(min_size=32, max_size=32),
    sub_account_id=_u(16),
    orders=st.dictionaries(st.integers(0, 31), order_fields, max_size=6),
)
def test_random_users_encoded_by_anchorpy_decode_as_driftpy_does(
    authority: bytes, sub_account_id: int, orders: dict[int, dict[str, Any]]
) -> None:
    """Any field values anchorpy can encode (full integer ranges, every enum) decode identically,
    but for an account with an open order larger than i64 (no program writes one): skipped."""
    data = encode_user(authority, sub_account_id, orders)
    skipped = accounts.Skipped()
    decoded = users.decode([accounts.RawAccount("u", protocol.DRIFT_PROGRAM_ID, data)], skipped)
    if any(
        o["status"] == protocol.OrderStatus.OPEN and o["base_asset_amount"] > users.I64_MAX
        for o in orders.values()
    ):
        assert len(decoded) == 0
        assert dict(skipped.by_reason) == {accounts.Reason.BOUNDS: 1}
        return
    assert skipped.total == 0
    assert_same_as_driftpy(decoded, 0, data)
    for slot, values in orders.items():
        record = ours(decoded.orders[0][slot])
        for name, value in values.items():
            expected = idl.variants(_ENUMS[name])[value] if name in _ENUMS else value
            assert record[name] == expected, name


# ---------------------------------------------------------------- bad accounts


def test_bad_accounts_are_skipped_and_counted_by_reason() -> None:
    """Wrong owner, wrong kind, wrong length, a duplicate and a bad enum are skipped, not raised."""
    good = [raw_user(e) for e in fixture_users()[:5]]
    stats = base64.b64decode(
        next(a for a in json.loads(FIXTURES.read_text())["accounts"] if a["kind"] == "UserStats")[
            "data_base64"
        ]
    )
    bad_enum = bytearray(good[1].data)
    order_offset = idl.offset("User", "orders")
    bad_enum[order_offset + 82] = protocol.OrderStatus.OPEN  # slot 0 open...
    bad_enum[order_offset + 83] = 9  # ...with an order type the IDL does not have
    raw = [
        *good,
        dataclasses.replace(good[0], pubkey="x1", owner=str(Pubkey.default())),
        accounts.RawAccount("x2", protocol.DRIFT_PROGRAM_ID, stats),
        dataclasses.replace(good[0], pubkey="x3", data=good[0].data + b"\x00"),
        good[2],
        dataclasses.replace(good[1], pubkey="x4", data=bytes(bad_enum)),
    ]
    skipped = accounts.Skipped()
    decoded = users.decode(raw, skipped)
    assert decoded.pubkeys == tuple(r.pubkey for r in good)
    assert skipped.seen == 10
    assert dict(skipped.by_reason) == {
        accounts.Reason.OWNER: 1,
        accounts.Reason.DISCRIMINATOR: 1,
        accounts.Reason.LENGTH: 1,
        accounts.Reason.DUPLICATE: 1,
        accounts.Reason.ENUM: 1,
    }
    for row, account in enumerate(good):
        assert_same_as_driftpy(decoded, row, account.data)


def test_no_accounts_decode_to_an_empty_batch() -> None:
    """An empty response is an empty batch with the 32-slot order shape, not an error."""
    decoded = users.decode([], accounts.Skipped())
    assert len(decoded) == 0
    assert decoded.orders.shape == (0, users.ORDER_SLOTS)


@pytest.mark.parametrize("field", ["orders", "authority", "sub_account_id"])
def test_offsets_come_from_the_idl_and_match_driftpys_reader(field: str) -> None:
    """The dtype puts authority, orders and sub_account_id where driftpy's reader finds them."""
    expected = {"authority": 8, "orders": 8 + 32 * 3 + 8 * 40 + 8 * 96, "sub_account_id": 4346}
    assert idl.offset("User", field) == expected[field]


@pytest.mark.parametrize(("cls", "idl_name"), list(users.IDL_ENUMS.items()))
def test_the_spelled_out_enums_are_the_idls(cls: type[enum.IntEnum], idl_name: str) -> None:
    """Each IntEnum lists the IDL's variants in borsh order (CamelCase names as UPPER_SNAKE)."""
    assert [m.name for m in cls] == [_upper_snake(v) for v in idl.variants(idl_name)]
    assert [m.value for m in cls] == list(range(len(cls)))


def _upper_snake(name: str) -> str:
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()
