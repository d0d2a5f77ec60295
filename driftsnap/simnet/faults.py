"""The faults the simulator can inject, as one validated settings object.

Counters (``http_429``, ``node_behind``, ...) affect the next N requests and count down, so a test
arms exactly the failure it wants and knows when it is over. ``chaos`` instead draws transient
faults at random (from its own seeded RNG), for long runs from the command line.
``signature_burst``, ``truncate_logs``, ``unlist_transactions``, ``forge_fills`` and ``down_ms``
are actions: the server performs them and resets them to zero; ``burst_every_slots``,
``truncate_every_slots`` and ``outage_every_slots`` repeat them on the slot clock, for long runs.
``forge_fills`` and ``ignore_before`` make it a lying node, not a failing one.
"""

from __future__ import annotations

from typing import Literal

import pydantic

Malformation = Literal["truncated", "wrong_discriminator", "wrong_owner"]


class Faults(pydantic.BaseModel):
    """What the server does wrong, and for how long."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    http_429: int = pydantic.Field(0, ge=0, description="next N HTTP requests get 429")
    retry_after_s: int = pydantic.Field(1, ge=0, description="Retry-After of those 429s")
    delay_ms: int = pydantic.Field(0, ge=0, description="every HTTP response is delayed this long")
    node_behind: int = pydantic.Field(0, ge=0, description="next N calls fail with -32005")
    behind_by_slots: int = pydantic.Field(42, ge=1)
    min_context_not_reached: int = pydantic.Field(0, ge=0, description="next N calls: -32016")
    slot_backwards: int = pydantic.Field(0, ge=0, description="next N calls see an older slot")
    backwards_by: int = pydantic.Field(5, ge=1)
    malformed: dict[str, Malformation] = pydantic.Field(default_factory=dict)
    transaction_null_slots: int = pydantic.Field(
        0, ge=0, description="getTransaction is null until a transaction is this many slots old"
    )
    ws_silent: bool = pydantic.Field(False, description="websockets stay open but say nothing")
    chaos: float = pydantic.Field(0.0, ge=0.0, le=1.0, description="chance of a random fault")
    burst_every_slots: int = pydantic.Field(
        0, ge=0, description="every N slots, burst_size fills in one slot"
    )
    burst_size: int = pydantic.Field(1_200, ge=1, description="fills per periodic burst")
    truncate_every_slots: int = pydantic.Field(
        0, ge=0, description="every N slots, one transaction's logs are truncated"
    )
    outage_every_slots: int = pydantic.Field(
        0, ge=0, description="every N slots, stop listening for outage_ms"
    )
    outage_ms: int = pydantic.Field(2_000, ge=1, description="length of each periodic outage")
    signature_burst: int = pydantic.Field(0, ge=0, description="action: N fills in the next slot")
    truncate_logs: int = pydantic.Field(0, ge=0, description="action: next N txs lose their logs")
    unlist_transactions: int = pydantic.Field(
        0, ge=0, description="action: getSignaturesForAddress never lists the next N txs"
    )
    down_ms: int = pydantic.Field(0, ge=0, description="action: stop listening for this long")
    # A lying node: what an attacker in front of the chain (or a compromised provider) serves.
    forge_fills: int = pydantic.Field(
        0,
        ge=0,
        description="action: N forged fills in the next slot: transactions listed under Drift "
        "whose logs claim a Drift fill of 1,000,000 USDC, but which never invoke Drift",
    )
    ignore_before: int = pydantic.Field(
        0, ge=0, description="next N getSignaturesForAddress calls ignore before (pages repeat)"
    )

    def updated(self, changes: dict[str, object]) -> Faults:
        """A copy with ``changes`` applied and validated (raises ``pydantic.ValidationError``)."""
        return Faults.model_validate({**self.model_dump(), **changes})
