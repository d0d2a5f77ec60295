"""When to take each snapshot: one instant per cadence interval, unpredictable but verifiable.

Makers must not be able to quote only at known times, so the sample instant inside each interval
is random; users must be able to check afterwards that the daemon did not pick favourable instants,
so the randomness is committed in advance. At the start of a week the daemon draws a 32-byte seed
and stores only ``commitment = sha256(seed)``; at the week close it reveals the seed. The offset of
interval ``i`` is

    HMAC-SHA256(seed, "driftsnap/sample/v1|<week>|<cadence_s>|<i>")  as a big-endian integer
    mod (cadence in microseconds)

so anyone holding the seed recomputes every sample time of the week and compares it with the tick
times stored in the database (:func:`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from driftsnap.errors import DriftsnapError

if TYPE_CHECKING:
    from driftsnap import calendar

SEED_BYTES = 32
_DOMAIN = b"driftsnap/sample/v1"


class SamplingError(DriftsnapError):
    """A seed that does not match its commitment, or a schedule asked for an impossible tick."""


def new_seed() -> bytes:
    """A fresh secret seed for a week, ``SEED_BYTES`` random bytes."""
    return secrets.token_bytes(SEED_BYTES)


def commitment(seed: bytes) -> str:
    """The hex sha256 stored when the week starts, before any sample is taken."""
    return hashlib.sha256(seed).hexdigest()


@dataclass(frozen=True, slots=True)
class Schedule:
    """The sample instants of one week at one cadence, derived from the week's seed."""

    week: calendar.Week
    cadence: timedelta
    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise SamplingError(f"a sampling seed has {SEED_BYTES} bytes, got {len(self.seed)}")
        if self.cadence <= timedelta(0) or timedelta(days=7) % self.cadence:
            raise SamplingError(
                f"cadence {self.cadence} must be positive and divide the week evenly"
            )

    @property
    def intervals(self) -> int:
        """The number of cadence intervals in the week."""
        return timedelta(days=7) // self.cadence

    def interval_of(self, moment: datetime) -> int:
        """Index of the interval containing ``moment`` (which must fall inside the week)."""
        if not self.week.start <= moment < self.week.end:
            raise SamplingError(f"{moment.isoformat()} is outside week {self.week}")
        return (moment - self.week.start) // self.cadence

    def sample_at(self, interval: int) -> datetime:
        """The instant at which interval ``interval`` is sampled."""
        if not 0 <= interval < self.intervals:
            raise SamplingError(f"week {self.week} has intervals 0..{self.intervals - 1}")
        cadence_us = self.cadence // timedelta(microseconds=1)
        message = b"|".join(
            [_DOMAIN, str(self.week).encode(), str(cadence_us).encode(), str(interval).encode()]
        )
        digest = hmac.new(self.seed, message, hashlib.sha256).digest()
        offset_us = int.from_bytes(digest, "big") % cadence_us
        return self.week.start + interval * self.cadence + timedelta(microseconds=offset_us)

    def next_sample(self, now: datetime) -> tuple[int, datetime] | None:
        """The first (interval, instant) not before ``now`` in this week, or None past its end."""
        if now < self.week.start:
            return 0, self.sample_at(0)
        if now >= self.week.end:
            return None
        i = self.interval_of(now)
        for j in (i, i + 1):
            if j < self.intervals and (at := self.sample_at(j)) >= now:
                return j, at
        return None


def verify(
    week: calendar.Week,
    cadence: timedelta,
    seed: bytes,
    committed: str,
    ticks: dict[int, datetime],
    *,
    tolerance: timedelta = timedelta(seconds=5),
) -> list[str]:
    """Problems found checking a closed week's ticks against its revealed seed (empty if none).

    ``ticks`` maps interval index to the time the snapshot was actually taken; a tick may lag its
    scheduled instant by up to ``tolerance`` (RPC latency), never precede it.
    """
    if commitment(seed) != committed:
        return [f"seed does not match the commitment {committed[:16]}..."]
    schedule = Schedule(week, cadence, seed)
    problems = []
    for interval, taken in sorted(ticks.items()):
        due = schedule.sample_at(interval)
        if not due <= taken <= due + tolerance:
            problems.append(
                f"interval {interval}: taken at {taken.isoformat()}, scheduled {due.isoformat()}"
            )
    return problems
