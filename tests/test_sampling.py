"""Sample instants: random within each interval, committed in advance, verifiable afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest

from driftsnap import calendar, sampling

W = calendar.Week.parse("2026-W47")
MINUTE = timedelta(seconds=60)
SEED = bytes(range(32))


def test_every_sample_falls_inside_its_own_interval() -> None:
    """Each of the week's 10,080 one-minute intervals is sampled inside that interval."""
    schedule = sampling.Schedule(W, MINUTE, SEED)
    assert schedule.intervals == 10_080
    for i in range(schedule.intervals):
        at = schedule.sample_at(i)
        assert W.start + i * MINUTE <= at < W.start + (i + 1) * MINUTE


def test_offsets_are_spread_over_the_interval_not_clustered() -> None:
    """Offsets cover the minute roughly uniformly: each 6-second tenth gets 7-13% of samples."""
    schedule = sampling.Schedule(W, MINUTE, SEED)
    tenths = [0] * 10
    for i in range(schedule.intervals):
        offset = schedule.sample_at(i) - (W.start + i * MINUTE)
        tenths[int(offset / MINUTE * 10)] += 1
    assert all(0.07 < n / schedule.intervals < 0.13 for n in tenths)


def test_the_seed_decides_the_schedule_and_the_commitment_hides_it() -> None:
    """Same seed, same instants; another seed, other instants; the commitment is sha256(seed)."""
    a = sampling.Schedule(W, MINUTE, SEED)
    b = sampling.Schedule(W, MINUTE, SEED)
    c = sampling.Schedule(W, MINUTE, bytes(32))
    assert [a.sample_at(i) for i in range(50)] == [b.sample_at(i) for i in range(50)]
    assert sum(a.sample_at(i) != c.sample_at(i) for i in range(50)) >= 49
    assert sampling.commitment(SEED) == (
        "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    )


def test_verify_accepts_honest_ticks_and_flags_chosen_instants() -> None:
    """verify() passes ticks taken at their instants and names the interval of a moved one."""
    schedule = sampling.Schedule(W, MINUTE, SEED)
    ticks = {i: schedule.sample_at(i) + timedelta(milliseconds=300) for i in range(100)}
    committed = sampling.commitment(SEED)
    assert sampling.verify(W, MINUTE, SEED, committed, ticks) == []
    ticks[42] = W.start + 42 * MINUTE  # a tick taken at a time of the daemon's choosing
    assert [p.split(":")[0] for p in sampling.verify(W, MINUTE, SEED, committed, ticks)] == [
        "interval 42"
    ]
    assert sampling.verify(W, MINUTE, bytes(32), committed, ticks) == [
        f"seed does not match the commitment {committed[:16]}..."
    ]


def test_next_sample_walks_forward_through_the_week() -> None:
    """next_sample gives this interval's instant if still ahead, else the next one; None at end."""
    schedule = sampling.Schedule(W, MINUTE, SEED)
    first = schedule.sample_at(0)
    assert schedule.next_sample(W.start - timedelta(hours=1)) == (0, first)
    assert schedule.next_sample(first) == (0, first)
    assert schedule.next_sample(first + timedelta(microseconds=1)) == (1, schedule.sample_at(1))
    last = schedule.sample_at(schedule.intervals - 1)
    assert schedule.next_sample(last + timedelta(microseconds=1)) is None
    assert schedule.next_sample(W.end) is None


@pytest.mark.parametrize(
    ("cadence", "seed", "message"),
    [
        (timedelta(seconds=11), SEED, "must be positive and divide the week evenly"),
        (timedelta(0), SEED, "must be positive"),
        (MINUTE, b"short", "has 32 bytes, got 5"),
    ],
)
def test_bad_cadence_or_seed_is_refused(cadence: timedelta, seed: bytes, message: str) -> None:
    """A cadence that does not divide the week, or a seed of the wrong size, is an error."""
    with pytest.raises(sampling.SamplingError, match=message):
        sampling.Schedule(W, cadence, seed)
