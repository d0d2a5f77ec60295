"""The simnet's bytes are Drift's bytes: driftpy's own decoders read them back exactly."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from driftpy.accounts.oracle import decode_oracle
from driftpy.addresses import get_user_account_public_key, get_user_stats_account_public_key
from driftpy.decode.user import decode_user
from driftpy.decode.user_stat import decode_user_stat
from driftpy.types import OracleSource
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.simnet import layout, mainnet, model, scenarios

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mainnet" / "accounts.json"


def _fixture_accounts() -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = json.loads(FIXTURES.read_text())["accounts"]
    return accounts


def _variant_name(value: object) -> str:
    return type(value).__name__


orders = st.builds(
    layout.Order,
    order_id=st.integers(1, 2**32 - 1),
    market_index=st.integers(0, 2**16 - 1),
    direction=st.sampled_from(protocol.Direction),
    base_asset_amount=st.integers(0, 2**64 - 1),
    slot=st.integers(0, 2**64 - 1),
    price=st.integers(0, 2**64 - 1),
    order_type=st.sampled_from(protocol.OrderType),
    market_type=st.sampled_from(protocol.MarketType),
    status=st.sampled_from(protocol.OrderStatus),
    base_asset_amount_filled=st.integers(0, 2**64 - 1),
    trigger_condition=st.sampled_from(protocol.TriggerCondition),
    auction_start_price=st.integers(-(2**63), 2**63 - 1),
    auction_duration=st.integers(0, 255),
    max_ts=st.integers(-(2**63), 2**63 - 1),
    oracle_price_offset=st.integers(-(2**31), 2**31 - 1),
    post_only=st.booleans(),
    reduce_only=st.booleans(),
)
positions = st.builds(
    layout.PerpPosition,
    market_index=st.integers(0, 2**16 - 1),
    base_asset_amount=st.integers(-(2**63), 2**63 - 1),
    quote_asset_amount=st.integers(-(2**63), 2**63 - 1),
    open_bids=st.integers(0, 2**63 - 1),
    open_asks=st.integers(-(2**63), 0),
    open_orders=st.integers(0, 32),
)
users = st.builds(
    layout.User,
    authority=st.binary(min_size=32, max_size=32).map(Pubkey),
    sub_account_id=st.integers(0, 2**16 - 1),
    orders=st.lists(orders, max_size=layout.ORDER_SLOTS).map(tuple),
    perp_positions=st.lists(positions, max_size=layout.PERP_POSITION_SLOTS).map(tuple),
    next_order_id=st.integers(0, 2**32 - 1),
    last_active_slot=st.integers(0, 2**64 - 1),
)


@settings(max_examples=25, deadline=None)
@given(users)
def test_fast_user_encoder_matches_anchorpy(user: layout.User) -> None:
    """The struct-packed User equals anchorpy's IDL encoding of the same fields, byte for byte."""
    assert layout.encode_user(user) == layout.encode_account("User", layout.user_fields(user))


@settings(max_examples=25, deadline=None)
@given(users)
def test_driftpy_decode_user_reads_the_simulated_user(user: layout.User) -> None:
    """driftpy's decode_user reads back authority, sub-account and every open order's fields."""
    decoded = decode_user(layout.encode_user(user))
    assert decoded.authority == user.authority
    assert decoded.sub_account_id == user.sub_account_id
    assert decoded.next_order_id == user.next_order_id
    assert decoded.open_orders == user.open_orders
    open_orders = [o for o in user.orders if o.status == protocol.OrderStatus.OPEN]
    assert [o.order_id for o in decoded.orders] == [o.order_id for o in open_orders]
    for got, want in zip(decoded.orders, open_orders, strict=True):
        assert (got.price, got.base_asset_amount, got.base_asset_amount_filled) == (
            want.price,
            want.base_asset_amount,
            want.base_asset_amount_filled,
        )
        assert (got.oracle_price_offset, got.max_ts, got.slot, got.post_only) == (
            want.oracle_price_offset,
            want.max_ts,
            want.slot,
            want.post_only,
        )
        assert _variant_name(got.direction) == want.direction.name.title()
        assert _variant_name(got.market_type) == want.market_type.name.title()
        assert got.auction_duration == want.auction_duration


def test_embedded_mainnet_bytes_equal_the_fixture_file() -> None:
    """The bytes the package embeds are exactly the shared mainnet fixtures they came from."""
    fixture = {
        (a["pubkey"], a["source"]): a["data_base64"] for a in _fixture_accounts() if a["pubkey"]
    }
    for pubkey, (_, source, data) in mainnet.ACCOUNTS.items():
        assert fixture[(pubkey, source)] == data


@pytest.mark.parametrize("kind", ["PerpMarket", "PythLazerOracle"])
def test_mainnet_fixture_accounts_round_trip_through_the_idl_coder(kind: str) -> None:
    """Every real mainnet account of this kind decodes and re-encodes to its original bytes."""
    checked = 0
    for entry in _fixture_accounts():
        raw = base64.b64decode(entry["data_base64"])
        if raw[:8] != layout.account_discriminator(kind):
            continue
        decoded = layout.decode_account(raw)
        assert layout.encode_account(kind, layout.fields_of(decoded)) == raw
        checked += 1
    assert checked >= 5


def test_served_perp_markets_are_the_mainnet_bytes_with_moving_fields_patched() -> None:
    """SOL/BTC/ETH-PERP are served as the mainnet bytes, changed only where the sim moves them."""
    sim = model.Simulator(scenarios.DEFAULT, seed=1)
    for index in range(3):
        market = sim.markets[index]
        account = sim.account(market.address)
        assert account is not None
        real = mainnet.raw(str(market.address))
        changed = {i for i, (a, b) in enumerate(zip(account.data, real, strict=True)) if a != b}
        moving = set(
            range(
                market.template.last_oracle_price_offset,
                market.template.last_oracle_price_offset + 8,
            )
        )
        moving |= set(
            range(
                market.template.next_fill_record_id_offset,
                market.template.next_fill_record_id_offset + 8,
            )
        )
        assert changed <= moving
        assert account.owner == layout.DRIFT_PROGRAM_ID
        assert layout.perp_market_address(index) == market.address


def test_simulated_markets_and_oracles_decode_to_the_simulator_values() -> None:
    """After fills and oracle moves, PerpMarket and oracle bytes decode to what the sim holds."""
    small = dataclasses.replace(scenarios.MAINNET_SCALE, authorities=12, takers=3)
    sim = model.Simulator(small, seed=5)
    for _ in range(40):
        sim.step()
    for market in sim.markets.values():
        account = sim.account(market.address)
        assert account is not None
        decoded = layout.decode_account(account.data)
        assert decoded.market_index == market.index
        assert bytes(decoded.name).decode().strip() == market.name
        assert decoded.next_fill_record_id == market.next_fill_record_id
        assert decoded.amm.historical_oracle_data.last_oracle_price == market.oracle_price
        assert decoded.amm.oracle == market.oracle_address
        assert layout.encode_account("PerpMarket", layout.fields_of(decoded)) == account.data
        oracle = sim.account(market.oracle_address)
        assert oracle is not None
        price = decode_oracle(oracle.data, OracleSource.PythLazer())
        assert price.price == market.oracle_price
        assert price.slot == sim.slot


def test_user_and_user_stats_accounts_sit_at_their_pdas_and_decode() -> None:
    """Every User is at its driftpy PDA and decodes; every UserStats counts its sub-accounts."""
    sim = model.Simulator(scenarios.DEFAULT, seed=2)
    for _ in range(20):
        sim.step()
    for address, user in sim.users.items():
        assert (
            get_user_account_public_key(
                layout.DRIFT_PROGRAM_ID, user.authority, user.sub_account_id
            )
            == address
        )
        account = sim.account(address)
        assert account is not None
        assert decode_user(account.data).authority == user.authority
    for authority, subs in sim.sub_accounts.items():
        address = get_user_stats_account_public_key(layout.DRIFT_PROGRAM_ID, authority)
        account = sim.account(address)
        assert account is not None
        stats = decode_user_stat(account.data)
        assert stats.authority == authority
        assert stats.number_of_sub_accounts == len(subs)
