"""Drift v2 protocol constants: the program id, the precisions, the enums, and what a pubkey is.

Shared by the reader (``chain``), which decodes accounts, the simulator (``simnet``), which
encodes them, and the scoring rules, which read their integers; none of them may import another
for these, so the one definition lives here. The enums are numbered as the program's IDL numbers
them (borsh variant indices); a test in tests/test_chain_users.py holds them to the IDL's
variant names and order.
"""

from __future__ import annotations

import enum
from typing import Final

from solders.pubkey import Pubkey

DRIFT_PROGRAM_ID: Final = "dRiftyHA39MWEi3m9aunc5MzRF1JYuBsbn6VPcn33UH"

# Integers as the program keeps them: prices in 1e6 (one dollar), base amounts in 1e9 (one base
# unit: 1 SOL of SOL-PERP), quote amounts (USDC) in 1e6.
PRICE_PRECISION: Final = 1_000_000
BASE_PRECISION: Final = 1_000_000_000
QUOTE_PRECISION: Final = 1_000_000


def pubkey(text: str) -> str:
    """``text`` if it is a base58 Solana public key; ``ValueError`` naming it if not."""
    try:
        Pubkey.from_string(text)
    except ValueError:
        raise ValueError(f"not a base58 public key: {text!r}") from None
    return text


class OrderStatus(enum.IntEnum):
    """IDL ``OrderStatus`` (borsh variant indices)."""

    INIT = 0
    OPEN = 1
    FILLED = 2
    CANCELED = 3


class OrderType(enum.IntEnum):
    """IDL ``OrderType``."""

    MARKET = 0
    LIMIT = 1
    TRIGGER_MARKET = 2
    TRIGGER_LIMIT = 3
    ORACLE = 4


class MarketType(enum.IntEnum):
    """IDL ``MarketType``."""

    SPOT = 0
    PERP = 1


class Direction(enum.IntEnum):
    """IDL ``PositionDirection``: a long order is a bid, a short order an ask."""

    LONG = 0
    SHORT = 1


class TriggerCondition(enum.IntEnum):
    """IDL ``OrderTriggerCondition``; the ``TRIGGERED_*`` values mark a trigger order that fired."""

    ABOVE = 0
    BELOW = 1
    TRIGGERED_ABOVE = 2
    TRIGGERED_BELOW = 3
