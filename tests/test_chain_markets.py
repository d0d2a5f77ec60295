"""PerpMarket and oracle decoding on real mainnet bytes, and the errors that name a market."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from anchorpy.coder.coder import Coder
from anchorpy_core.idl import Idl
from solders.pubkey import Pubkey

from driftsnap.chain import accounts, errors, idl, markets

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/mainnet/accounts.json"
_UNSUPPORTED = {"Pyth", "Pyth1K", "Pyth1M", "PythStableCoin", "Switchboard", "QuoteAsset"}


@functools.cache
def entries(kind: str) -> list[dict[str, Any]]:
    doc = json.loads(FIXTURES.read_text())
    return [a for a in doc["accounts"] if a["kind"] == kind]


def raw(entry: dict[str, Any], pubkey: str | None = None) -> accounts.RawAccount:
    return accounts.RawAccount(
        pubkey=pubkey or entry["pubkey"],
        owner=entry["owner"] or str(Pubkey.default()),  # one PriceUpdateV2 has no known owner
        data=base64.b64decode(entry["data_base64"]),
    )


def sol_perp() -> markets.PerpMarket:
    return markets.decode(raw(entries("PerpMarket")[0]))


@pytest.mark.parametrize("entry", entries("PerpMarket"), ids=lambda e: e["source"])
def test_fixture_perp_markets_decode_to_their_listed_values(entry: dict[str, Any]) -> None:
    """Name, index, status, oracle, oracle source, sizes and fill id equal the fixture summary."""
    market = markets.decode(raw(entry))
    summary = entry["summary"]
    assert market.pubkey == summary["pubkey"]
    for name in (
        "market_index",
        "name",
        "status",
        "contract_type",
        "oracle",
        "oracle_source",
        "next_fill_record_id",
        "order_tick_size",
        "order_step_size",
        "min_order_size",
    ):
        assert getattr(market, name) == summary[name], name


def test_perp_market_decode_agrees_with_anchorpys_coder() -> None:
    """Every fixture market reads the same through our IDL dtype as through anchorpy's coder."""
    coder = Coder(Idl.from_json(idl.text()))
    for entry in entries("PerpMarket"):
        market = markets.decode(raw(entry))
        theirs = coder.accounts.decode(base64.b64decode(entry["data_base64"]))
        assert market.market_index == theirs.market_index
        assert market.name == bytes(theirs.name).decode().strip()
        assert market.oracle == str(theirs.amm.oracle)
        assert market.oracle_source == type(theirs.amm.oracle_source).__name__
        assert market.order_tick_size == theirs.amm.order_tick_size
        assert market.next_fill_record_id == theirs.next_fill_record_id


def test_a_perp_market_with_the_wrong_owner_or_length_is_refused() -> None:
    """A PerpMarket not owned by Drift, or of another size, raises AccountError with its reason."""
    good = raw(entries("PerpMarket")[0])
    with pytest.raises(errors.AccountError, match="owner") as foreign:
        markets.decode(dataclasses.replace(good, owner=str(Pubkey.default())))
    assert foreign.value.reason == "owner"
    with pytest.raises(errors.AccountError) as short:
        markets.decode(dataclasses.replace(good, data=good.data[:-8]))
    assert short.value.reason == "length"
    with pytest.raises(errors.AccountError) as other:
        markets.decode(raw(entries("SpotMarket")[0]))
    assert other.value.reason == "discriminator"


def test_markets_are_selected_by_name_or_index_in_the_order_asked() -> None:
    """``"ETH-PERP"`` and ``0`` find ETH-PERP and SOL-PERP among the decoded accounts."""
    decoded = [markets.decode(raw(e)) for e in entries("PerpMarket")[:3]]
    chosen = markets.select(decoded, ["ETH-PERP", 0])
    assert [(m.name, m.market_index) for m in chosen] == [("ETH-PERP", 2), ("SOL-PERP", 0)]
    assert [m.name for m in markets.select(decoded, ["1"])] == ["BTC-PERP"]  # from a setting


def test_a_market_not_on_chain_is_an_error_listing_the_known_ones() -> None:
    """An unknown name or index raises MarketNotFoundError naming it and the markets that exist."""
    decoded = [markets.decode(raw(e)) for e in entries("PerpMarket")[:3]]
    with pytest.raises(errors.MarketNotFoundError, match=r"'DOGE-PERP', 99 .*0=SOL-PERP"):
        markets.select(decoded, ["DOGE-PERP", 99, "SOL-PERP"])


def _oracle_cases() -> list[dict[str, Any]]:
    return [e for e in entries("Oracle") if e["oracle_source"] not in _UNSUPPORTED]


@pytest.mark.parametrize("entry", _oracle_cases(), ids=lambda e: e["source"])
def test_supported_fixture_oracles_give_their_listed_prices(entry: dict[str, Any]) -> None:
    """PythLazer (and 1M, stable), Pyth pull (and 1M, stable), Switchboard On-Demand, Prelaunch."""
    pubkey = entry["pubkey"] or str(Pubkey.default())
    market = dataclasses.replace(sol_perp(), oracle=pubkey, oracle_source=entry["oracle_source"])
    price = markets.oracle_price(market, raw(entry, pubkey))
    summary = entry["summary"]
    assert (price.price, price.confidence, price.slot) == (
        summary["price"],
        summary["confidence"],
        summary["slot"],
    )


def test_fixture_oracles_cover_every_supported_source_family() -> None:
    """The fixture cases exercise Lazer, pull, Switchboard On-Demand and Prelaunch decoding."""
    sources = {e["oracle_source"] for e in _oracle_cases()}
    assert sources <= markets.SUPPORTED_ORACLES
    assert {"PythLazer", "PythPull", "SwitchboardOnDemand", "Prelaunch", "PythLazer1M"} <= sources


@pytest.mark.parametrize("source", sorted(_UNSUPPORTED))
def test_an_unsupported_oracle_source_is_an_error_naming_the_market(source: str) -> None:
    """Legacy Pyth, Switchboard v2 and QuoteAsset: UnsupportedOracleError naming the market."""
    market = dataclasses.replace(sol_perp(), oracle_source=source)
    with pytest.raises(
        errors.UnsupportedOracleError, match=rf"SOL-PERP \(perp market 0\) .*{source}"
    ):
        markets.oracle_price(market, None)


def test_fixture_markets_on_legacy_pyth_are_refused_by_name() -> None:
    """The 2024 SUI-PERP snapshot (legacy Pyth) cannot be priced: the error says SUI-PERP."""
    sui = next(
        markets.decode(raw(e)) for e in entries("PerpMarket") if e["summary"]["name"] == "SUI-PERP"
    )
    with pytest.raises(errors.UnsupportedOracleError, match="SUI-PERP"):
        markets.require_supported(sui)


def test_oracle_accounts_that_are_missing_foreign_or_malformed_are_errors() -> None:
    """No account, another address, a foreign owner or a truncated feed raise OracleError."""
    lazer = next(e for e in entries("Oracle") if e["oracle_source"] == "PythLazer")
    pull = next(e for e in entries("Oracle") if e["oracle_source"] == "PythPull" and e["pubkey"])
    market = dataclasses.replace(sol_perp(), oracle=lazer["pubkey"], oracle_source="PythLazer")
    with pytest.raises(errors.OracleError, match="not found"):
        markets.oracle_price(market, None)
    with pytest.raises(errors.OracleError, match="instead"):
        markets.oracle_price(market, raw(lazer, str(Pubkey.default())))
    with pytest.raises(errors.OracleError, match="owned by"):
        markets.oracle_price(market, dataclasses.replace(raw(lazer), owner=str(Pubkey.default())))
    pull_market = dataclasses.replace(sol_perp(), oracle=pull["pubkey"], oracle_source="PythPull")
    truncated = dataclasses.replace(raw(pull), data=raw(pull).data[:100])
    with pytest.raises(errors.OracleError, match="not a PythPull account"):
        markets.oracle_price(pull_market, truncated)


def test_a_non_positive_oracle_price_is_an_error() -> None:
    """A Prelaunch oracle reading 0 cannot price a book: OracleError, not a zero price."""
    prelaunch = next(e for e in entries("Oracle") if e["oracle_source"] == "Prelaunch")
    data = bytearray(base64.b64decode(prelaunch["data_base64"]))
    price_at = idl.offset("PrelaunchOracle", "price")
    data[price_at : price_at + 8] = bytes(8)
    market = dataclasses.replace(sol_perp(), oracle=prelaunch["pubkey"], oracle_source="Prelaunch")
    with pytest.raises(errors.OracleError, match="price 0 is not a positive int64"):
        markets.oracle_price(market, dataclasses.replace(raw(prelaunch), data=bytes(data)))
