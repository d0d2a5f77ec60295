"""Drift v2 protocol enums, numbered as the program's IDL numbers them (borsh variant indices).

Shared by the reader (``chain``), which decodes them, and the simulator (``simnet``), which
encodes them; neither may import the other, so the one definition lives here. A test in
tests/test_chain_users.py holds them to the IDL's variant names and order.
"""

from __future__ import annotations

import enum


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
