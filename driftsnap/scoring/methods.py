"""Scoring methods as named, immutable parameter sets (spec section 2.3).

Every rule a reasonable reader could read differently is a parameter here, so any week can be
recomputed under another reading. A parameter set has one canonical JSON form (sorted keys, no
whitespace, decimals as strings) and its ``params_hash`` is the sha256 of that text; every stored
score, week result and payout file carries it.

Three presets ship:

``drift-2023-08``         the default: the Aug-2023 program text, bracketed by distance from the
                          best order on each side (spec 2.1).
``drift-mm-scoring``      compatibility: Drift's own scorer (``drift-labs/mm-scoring``, HEAD logic)
                          with the parameters of its first commit (spec 2.2).
``drift-points-2024-01``  the same code with the parameters at mm-scoring's HEAD (Jan 2024).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from driftsnap.errors import ScoringError
from driftsnap.scoring.book import MakerKey

# Decimals serialise as strings so the canonical form never depends on float formatting.
Dec = Annotated[Decimal, PlainSerializer(lambda d: format(d.normalize(), "f"), return_type=str)]

Aggregation = Literal["sum", "normalized"]
SideCombination = Literal["mean", "sum"]


class _Method(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    min_notional_usd: Dec = Decimal(5000)
    side_combination: SideCombination
    maker_key: MakerKey
    include_vamm: bool = False
    aggregation: Aggregation = "sum"

    def canonical_json(self) -> str:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )

    @property
    def params_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def side_factor(self) -> float:
        """The ½ of the spec: ``mean`` averages the two sides, ``sum`` adds them (Drift's code)."""
        return 0.5 if self.side_combination == "mean" else 1.0


class BracketMethod(_Method):
    """Spec 2.1: brackets by exact integer distance from the best order on the same side."""

    kind: Literal["brackets"] = "brackets"
    edges_bps: tuple[Dec, ...] = Field(min_length=1)
    weights: tuple[Dec, ...] = Field(min_length=1)
    side_combination: SideCombination = "mean"
    maker_key: MakerKey = "authority"

    @model_validator(mode="after")
    def _check(self) -> BracketMethod:
        if len(self.edges_bps) != len(self.weights):
            raise ValueError("edges_bps and weights must have the same length")
        if any(e <= 0 for e in self.edges_bps) or list(self.edges_bps) != sorted(
            set(self.edges_bps)
        ):
            raise ValueError("edges_bps must be positive and strictly increasing")
        if any(w < 0 for w in self.weights):
            raise ValueError("weights must not be negative")
        return self


class MmScoringMethod(_Method):
    """Spec 2.2: a port of ``getLiquidityScoreForSnapshot`` in ``drift-labs/mm-scoring``."""

    kind: Literal["mm-scoring"] = "mm-scoring"
    mbps: tuple[Dec, ...] = Field(min_length=1)
    multipliers: tuple[Dec, ...] = Field(min_length=1)
    fallback_step_usd: Dec = Decimal("0.0005")
    side_combination: SideCombination = "sum"
    maker_key: MakerKey = "user"

    @model_validator(mode="after")
    def _check(self) -> MmScoringMethod:
        if any(m <= 0 for m in self.mbps):
            raise ValueError("mbps must be positive")
        return self


Method = BracketMethod | MmScoringMethod

DRIFT_2023_08 = BracketMethod(
    name="drift-2023-08",
    edges_bps=tuple(Decimal(e) for e in ("1", "5", "10", "20", "50", "100")),
    weights=tuple(Decimal(w) for w in ("4", "2", "0.75", "0.4", "0.3", "0.2")),
)

# mm-scoring's first commit (d842f4c, Dec 2023) carried the Aug-2023 program's parameters.
DRIFT_MM_SCORING = MmScoringMethod(
    name="drift-mm-scoring",
    mbps=tuple(Decimal(m) for m in ("0.0001", "0.0005", "0.001", "0.002", "0.005", "0.01")),
    multipliers=tuple(Decimal(w) for w in ("4", "2", "0.75", "0.4", "0.3", "0.2")),
)

# mm-scoring HEAD (v0.16.0, Jan 2024): "update mbpsValues" and "update tier multiples".
DRIFT_POINTS_2024_01 = MmScoringMethod(
    name="drift-points-2024-01",
    mbps=tuple(Decimal(m) for m in ("0.00025", "0.0005", "0.001", "0.002", "0.003", "0.004")),
    multipliers=tuple(Decimal(w) for w in ("8", "4", "0.75", "0.4", "0.3", "0.1")),
)

PRESETS: dict[str, Method] = {
    m.name: m for m in (DRIFT_2023_08, DRIFT_MM_SCORING, DRIFT_POINTS_2024_01)
}
DEFAULT_METHOD = DRIFT_2023_08.name
# The week report's two-sided uptime is measured under this method's bracket cells.
UPTIME_METHOD = DRIFT_2023_08


def get(name: str) -> Method:
    """The preset called ``name``; a clear error listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ScoringError(f"unknown scoring method {name!r} (known: {known})") from None
