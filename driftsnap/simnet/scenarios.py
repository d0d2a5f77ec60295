"""Named market set-ups the simulator can run: ``quiet``, ``default`` and ``mainnet-scale``.

A scenario says how big the market is and how busy; the seed decides everything else.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

Side = Literal["bid", "ask"]


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """How a maker account quotes: which sides, how far from the oracle, how big."""

    name: str
    sides: tuple[Side, ...]
    distances_bps: tuple[int, ...]
    notional_usd: tuple[float, float]
    floating_share: float


@dataclasses.dataclass(frozen=True, slots=True)
class MarketSpec:
    """A perp market; indexes 0-2 start from the real mainnet bytes, others derive from SOL-PERP."""

    index: int
    name: str
    volatility_bps: float = 2.0
    start_price: int = 0  # PRICE_PRECISION; 0 = the market's own last oracle price


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """Size and activity of a simulated market."""

    name: str
    markets: tuple[MarketSpec, ...]
    authorities: int
    sub_accounts: tuple[int, ...]  # sub-accounts per authority, cycled
    profiles: tuple[Profile, ...]
    orders_per_maker: int
    markets_per_maker: int
    takers: int
    ignored_per_market: int
    requotes_per_slot: float
    fills_per_slot: float
    taker_orders_per_slot: float
    jit_share: float
    self_match_share: float
    history_slots: int
    max_transactions: int


TIGHT = Profile("tight", ("bid", "ask"), (1, 2, 3, 5, 8), (2_000.0, 15_000.0), 0.5)
LADDER = Profile("ladder", ("bid", "ask"), (5, 10, 20, 40, 80), (1_000.0, 10_000.0), 0.3)
BIDS_ONLY = Profile("bids-only", ("bid",), (2, 6, 15, 30), (1_000.0, 8_000.0), 0.5)
ASKS_ONLY = Profile("asks-only", ("ask",), (2, 6, 15, 30), (1_000.0, 8_000.0), 0.0)
WIDE = Profile("wide", ("bid", "ask"), (120, 200, 350), (5_000.0, 30_000.0), 0.5)
PROFILES: Final = (TIGHT, LADDER, BIDS_ONLY, TIGHT, ASKS_ONLY, LADDER, WIDE)

MAJORS: Final = (
    MarketSpec(0, "SOL-PERP", volatility_bps=1.0),
    MarketSpec(1, "BTC-PERP", volatility_bps=0.6),
    MarketSpec(2, "ETH-PERP", volatility_bps=0.8),
)

QUIET: Final = Scenario(
    name="quiet",
    markets=MAJORS[:1],
    authorities=3,
    sub_accounts=(2, 1, 1),
    profiles=(TIGHT, LADDER, WIDE),
    orders_per_maker=4,
    markets_per_maker=1,
    takers=2,
    ignored_per_market=6,
    requotes_per_slot=0.5,
    fills_per_slot=0.5,
    taker_orders_per_slot=0.2,
    jit_share=0.2,
    self_match_share=0.3,
    history_slots=2_000,
    max_transactions=5_000,
)

DEFAULT: Final = Scenario(
    name="default",
    markets=MAJORS,
    authorities=10,
    sub_accounts=(1, 2, 1, 3, 1),
    profiles=PROFILES,
    orders_per_maker=16,
    markets_per_maker=2,
    takers=4,
    ignored_per_market=12,
    requotes_per_slot=2.0,
    fills_per_slot=1.0,
    taker_orders_per_slot=0.3,
    jit_share=0.15,
    self_match_share=0.15,
    history_slots=2_000,
    max_transactions=5_000,
)

_OTHER_NAMES: Final = (
    "APT", "1MBONK", "POL", "ARB", "DOGE", "BNB", "SUI", "1MPEPE", "OP", "RNDR", "XRP", "HNT",
    "INJ", "LINK", "RLB", "PYTH", "TIA", "JTO", "SEI", "AVAX", "WIF", "JUP", "DYM", "TAO", "W",
)  # fmt: skip

MAINNET_SCALE: Final = Scenario(
    name="mainnet-scale",
    markets=(
        *MAJORS,
        *(
            MarketSpec(3 + i, f"{name}-PERP", volatility_bps=1.2, start_price=(i + 1) * 1_370_000)
            for i, name in enumerate(_OTHER_NAMES)
        ),
    ),
    authorities=6_000,
    sub_accounts=(1, 2, 1, 3, 1, 2),  # 10,000 User accounts over 6,000 authorities
    profiles=PROFILES,
    orders_per_maker=6,
    markets_per_maker=3,
    takers=20,
    ignored_per_market=20,
    requotes_per_slot=20.0,
    fills_per_slot=2.0,
    taker_orders_per_slot=0.5,
    jit_share=0.2,
    self_match_share=0.05,
    history_slots=16,
    max_transactions=10_000,
)

SCENARIOS: Final = {s.name: s for s in (QUIET, DEFAULT, MAINNET_SCALE)}
