"""Perp markets and their oracle prices, read from the chain rather than from tables.

A market's name, index, oracle address and oracle source all come from its PerpMarket account, so
a market configured as ``"SOL-PERP"`` or ``0`` is found among the accounts the program holds, and a
new listing needs no release of driftsnap. Oracle prices are decoded with driftpy's
``decode_oracle``, limited to the sources Drift's live perp markets use; the legacy Pyth push
oracles and Switchboard v2 are no longer updated on mainnet, so a market still pointing at one is an
error naming it rather than a price from the past.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from driftpy.accounts import oracle
from driftpy.types import OracleSource
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.chain import accounts, errors, idl

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from driftpy.types import OraclePriceData

_DTYPE: Final = np.dtype([("discriminator", "V8"), ("market", idl.dtype("PerpMarket"))])

# What each supported oracle account must look like before driftpy decodes it: driftpy's pull
# decoder reads a short buffer without complaint, so size and discriminator are checked here. The
# Drift program writes Pyth Lazer and Prelaunch accounts, hence also their owner; the external
# ones sit at the address the market names, which only their own program can write.
_PRICE_UPDATE_V2: Final = (None, idl.discriminator("PriceUpdateV2"), 134)
_ORACLE_LAYOUTS: Final = {
    **dict.fromkeys(
        ("PythLazer", "PythLazer1K", "PythLazer1M", "PythLazerStableCoin"),
        (
            protocol.DRIFT_PROGRAM_ID,
            accounts.DISCRIMINATORS[accounts.Kind.PYTH_LAZER_ORACLE],
            accounts.SIZES[accounts.Kind.PYTH_LAZER_ORACLE],
        ),
    ),
    "Prelaunch": (
        protocol.DRIFT_PROGRAM_ID,
        accounts.DISCRIMINATORS[accounts.Kind.PRELAUNCH_ORACLE],
        accounts.SIZES[accounts.Kind.PRELAUNCH_ORACLE],
    ),
    **dict.fromkeys(
        ("PythPull", "Pyth1KPull", "Pyth1MPull", "PythStableCoinPull"), _PRICE_UPDATE_V2
    ),
    "SwitchboardOnDemand": (None, idl.discriminator("PullFeedAccountData"), 3208),
}
SUPPORTED_ORACLES: Final = frozenset(_ORACLE_LAYOUTS)


@dataclass(frozen=True, slots=True)
class PerpMarket:
    """The fields of a PerpMarket account that books and fills need."""

    pubkey: str
    market_index: int
    name: str
    status: str
    contract_type: str
    oracle: str
    oracle_source: str
    order_tick_size: int
    order_step_size: int
    min_order_size: int
    next_fill_record_id: int


@dataclass(frozen=True, slots=True)
class OraclePrice:
    """driftpy's reading of an oracle account, in ``PRICE_PRECISION``."""

    price: int
    confidence: int
    slot: int


def decode(account: accounts.RawAccount) -> PerpMarket:
    """A checked PerpMarket account, or :class:`~driftsnap.chain.errors.AccountError`."""
    data = accounts.require(account, accounts.Kind.PERP_MARKET)
    market = np.frombuffer(data, dtype=_DTYPE)[0]["market"]
    amm = market["amm"]
    return PerpMarket(
        pubkey=account.pubkey,
        market_index=int(market["market_index"]),
        name=_name(market["name"].tobytes(), account.pubkey),
        status=_variant("MarketStatus", int(market["status"]), account.pubkey),
        contract_type=_variant("ContractType", int(market["contract_type"]), account.pubkey),
        oracle=str(Pubkey(amm["oracle"].tobytes())),
        oracle_source=_variant("OracleSource", int(amm["oracle_source"]), account.pubkey),
        order_tick_size=int(amm["order_tick_size"]),
        order_step_size=int(amm["order_step_size"]),
        min_order_size=int(amm["min_order_size"]),
        next_fill_record_id=int(market["next_fill_record_id"]),
    )


def select(markets: Iterable[PerpMarket], wanted: Sequence[str | int]) -> list[PerpMarket]:
    """The markets configured by name (``"SOL-PERP"``) or index (``0`` or ``"0"``), as asked.

    Raises :class:`~driftsnap.chain.errors.MarketNotFoundError` for any that is not on chain.
    """
    by_index = {m.market_index: m for m in markets}
    by_name = {m.name: m for m in by_index.values()}
    found, missing = [], []
    for key in wanted:
        # Settings from the environment arrive as text: a bare number is an index, as no
        # market is named by digits alone.
        if isinstance(key, int) or key.isdigit():
            market = by_index.get(int(key))
        else:
            market = by_name.get(key)
        if market is None:
            missing.append(repr(key))
        else:
            found.append(market)
    if missing:
        known = ", ".join(
            f"{m.market_index}={m.name}" for m in sorted(by_index.values(), key=_index)
        )
        raise errors.MarketNotFoundError(
            f"perp market(s) {', '.join(missing)} not found on chain (known: {known or 'none'})"
        )
    return found


def require_supported(market: PerpMarket) -> None:
    """Raise :class:`~driftsnap.chain.errors.UnsupportedOracleError` for an unsupported source."""
    if market.oracle_source not in SUPPORTED_ORACLES:
        raise errors.UnsupportedOracleError(
            f"{market.name} (perp market {market.market_index}) uses oracle source "
            f"{market.oracle_source}, which driftsnap does not read (supported: "
            f"{', '.join(sorted(SUPPORTED_ORACLES))})"
        )


def oracle_price(market: PerpMarket, account: accounts.RawAccount | None) -> OraclePrice:
    """The market's oracle price from its oracle account, decoded as driftpy does.

    Raises :class:`~driftsnap.chain.errors.UnsupportedOracleError` for a source outside
    :data:`SUPPORTED_ORACLES` and :class:`~driftsnap.chain.errors.OracleError` for a missing,
    foreign or undecodable account or a price that is not a positive int64.
    """
    require_supported(market)
    where = f"{market.name} oracle {market.oracle} ({market.oracle_source})"
    if account is None:
        raise errors.OracleError(f"{where}: account not found")
    if account.pubkey != market.oracle:
        raise errors.OracleError(f"{where}: got account {account.pubkey} instead")
    owner, discriminator, size = _ORACLE_LAYOUTS[market.oracle_source]
    if owner is not None and account.owner != owner:
        raise errors.OracleError(f"{where}: owned by {account.owner}, not {owner}")
    if account.data[:8] != discriminator or len(account.data) != size:
        raise errors.OracleError(
            f"{where}: not a {market.oracle_source} account ({len(account.data)} bytes, "
            f"discriminator {account.data[:8].hex()})"
        )
    try:
        data = _decode_oracle(account.data, market.oracle_source)
    except (ValueError, IndexError, KeyError, struct.error) as exc:
        raise errors.OracleError(f"{where}: does not decode ({exc})") from exc
    price = int(data.price)
    if not 0 < price < 2**63:  # a book holds positive int64 prices
        raise errors.OracleError(f"{where}: price {price} is not a positive int64")
    return OraclePrice(price=price, confidence=int(data.confidence), slot=int(data.slot))


def _decode_oracle(data: bytes, source: str) -> OraclePriceData:
    decoded: OraclePriceData = oracle.decode_oracle(data, getattr(OracleSource, source)())
    return decoded


def _name(raw: bytes, pubkey: str) -> str:
    try:
        return raw.decode("utf-8").strip(" \x00")
    except UnicodeDecodeError as exc:
        raise errors.AccountError(
            f"perp market {pubkey}: name is not UTF-8", reason=accounts.Reason.ENCODING.value
        ) from exc


def _variant(enum: str, index: int, pubkey: str) -> str:
    names = idl.variants(enum)
    if index >= len(names):
        raise errors.AccountError(
            f"perp market {pubkey}: {enum} index {index} is not in the IDL",
            reason=accounts.Reason.ENUM.value,
        )
    return names[index]


def _index(market: PerpMarket) -> int:
    return market.market_index
