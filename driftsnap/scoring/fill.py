"""One maker fill, as the chain records it and the store keeps it: the Volume Reward's input.

The reader (:mod:`driftsnap.chain.fills`) parses it out of a transaction's ``OrderActionRecord``
events without the makers' and takers' authorities, which the fills flow then resolves from
their User accounts; the store writes it as is. The close's digest covers the fields the volume
depends on (:class:`driftsnap.scoring.digest.FillFact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Commitment = Literal["confirmed", "finalized"]


@dataclass(frozen=True, slots=True)
class Fill:
    """One ``OrderActionRecord`` with action ``Fill``, where it was found, as the program wrote it.

    Pubkeys are base58; ``block_time`` is unix seconds. ``maker`` is ``None`` when the taker was
    filled by the AMM; ``quote_filled`` is in QUOTE_PRECISION and ``maker_fee`` is negative for a
    rebate. ``commitment`` is the highest one the transaction was seen at.
    """

    market_type: Literal["perp", "spot"]
    market_index: int
    fill_record_id: int
    signature: str
    event_index: int
    slot: int
    block_time: int
    maker: str | None
    taker: str | None
    base_filled: int
    quote_filled: int
    maker_fee: int | None
    action_explanation: str
    maker_authority: str | None = None
    taker_authority: str | None = None
    commitment: Commitment = "confirmed"

    @property
    def key(self) -> tuple[str, int, int]:
        """The natural key: one fill record id per market."""
        return (self.market_type, self.market_index, self.fill_record_id)
