"""Perp markets and their oracle prices, read from the chain rather than from tables.

A market's name, index, oracle address and oracle source all come from its PerpMarket account, so
a market configured as ``"SOL-PERP"`` or ``0`` is found among the accounts the program holds, and a
new listing needs no release of driftsnap. Oracle prices are decoded with driftpy's
``decode_oracle``, limited to the sources Drift's live perp markets use; the legacy Pyth push
oracles and Switchboard v2 are no longer updated on mainnet, so a market still pointing at one is an
error naming it rather than a price from the past.

Numbers are held to what the protocol can have before anything uses them; one outside raises
:class:`~driftsnap.chain.errors.OutOfBoundsError` (the snapshot is rejected, not crashed):

- a PerpMarket's u64 counters and sizes (``next_fill_record_id``, tick, step and minimum order
  sizes) fit ``i64``, as everything stored does (a counter that each fill moves by one never
  gets near 2**63);
- an oracle price in (0, :data:`MAX_ORACLE_PRICE`]: ten to the fifteenth ``PRICE_PRECISION``
  units is a billion dollars per base unit, ten thousand times BTC's price (Drift lists cheap
  assets per thousand or million units, 1MBONK-PERP, so none comes near); a confidence in
  [0, :data:`MAX_ORACLE_PRICE`]; an oracle slot no later than the read's context slot (an oracle
  is not written in the future);
- a Pyth exponent within +-:data:`MAX_EXPONENT` before driftpy scales by ``10**|exponent|``
  (an i32 exponent of -2**31 would have it compute a number of two billion digits).
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
MAX_ORACLE_SIZE: Final = max(size for _, _, size in _ORACLE_LAYOUTS.values())
I64_MAX: Final = 2**63 - 1
MAX_ORACLE_PRICE: Final = 10**15  # PRICE_PRECISION units: $1e9 per base unit
MAX_EXPONENT: Final = 30
_LAZER_EXPONENT: Final = idl.offset("PythLazerOracle", "exponent")


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
    for where, name in (
        (market, "next_fill_record_id"),
        (amm, "order_tick_size"),
        (amm, "order_step_size"),
        (amm, "min_order_size"),
    ):
        if int(where[name]) > I64_MAX:
            raise errors.OutOfBoundsError(
                f"perp market {account.pubkey}: {name} {int(where[name])} is beyond i64"
            )
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


def oracle_price(
    market: PerpMarket, account: accounts.RawAccount | None, *, read_slot: int | None = None
) -> OraclePrice:
    """The market's oracle price from its oracle account, decoded as driftpy does.

    Raises :class:`~driftsnap.chain.errors.UnsupportedOracleError` for a source outside
    :data:`SUPPORTED_ORACLES`, :class:`~driftsnap.chain.errors.OracleError` for a missing,
    foreign or undecodable account or a price that is not a positive int64, and
    :class:`~driftsnap.chain.errors.OutOfBoundsError` for numbers outside the module's bounds
    (``read_slot``: the context slot the account was read at, which its slot may not pass).
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
        exponent = _exponent(account.data, market.oracle_source)
        if exponent is not None and abs(exponent) > MAX_EXPONENT:
            raise errors.OutOfBoundsError(f"{where}: exponent {exponent} is out of bounds")
        data = _decode_oracle(account.data, market.oracle_source)
        price, confidence, slot = int(data.price), int(data.confidence), int(data.slot)
    except (ValueError, IndexError, KeyError, struct.error, OverflowError) as exc:
        raise errors.OracleError(f"{where}: does not decode ({exc})") from exc
    if not 0 < price < 2**63:  # a book holds positive int64 prices
        raise errors.OracleError(f"{where}: price {price} is not a positive int64")
    if price > MAX_ORACLE_PRICE:
        raise errors.OutOfBoundsError(
            f"{where}: price {price} is out of bounds (at most {MAX_ORACLE_PRICE:.0e})"
        )
    if not 0 <= confidence <= MAX_ORACLE_PRICE:
        raise errors.OutOfBoundsError(f"{where}: confidence {confidence} is out of bounds")
    if slot < 0 or (read_slot is not None and slot > read_slot):
        raise errors.OutOfBoundsError(
            f"{where}: oracle slot {slot} is out of bounds (read at slot {read_slot})"
        )
    return OraclePrice(price=price, confidence=confidence, slot=slot)


def _exponent(data: bytes, source: str) -> int | None:
    """The Pyth exponent driftpy scales the price by, read before driftpy does; None if none."""
    if source.startswith("PythLazer"):
        offset = _LAZER_EXPONENT
    elif source in ("PythPull", "Pyth1KPull", "Pyth1MPull", "PythStableCoinPull"):
        # PriceUpdateV2: write authority, then a verification level of 1 byte (Full) or 2
        # (Partial, with its count), the feed id, price and confidence: driftpy's reading.
        offset = 8 + 32 + (1 if data[8 + 32] & 1 else 2) + 32 + 8 + 8
    else:
        return None
    exponent: int = struct.unpack_from("<i", data, offset)[0]
    return exponent


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
