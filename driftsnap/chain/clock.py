"""The daemon's time: the wall clock, or the chain's block time.

Both are a :class:`Clock`: ``now()``, ``sleep_until(moment, stop)``, the slot in force (the chain
clock's; none for the wall clock) and ``start(stop)``. The tick flow asks it for the sample
instants; tests drive a virtual one of their own.

What the chain says about time is held to what a chain can say (:func:`block_time_problem`,
:func:`slot_problem`): a block time after Solana's genesis and before 2100, a slot below 2**53;
the snapshot also holds a block time to the wall clock (``max_ahead_s``). The chain clock treats
a node that answers otherwise as one that did not answer.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol

from driftsnap import logs, tasks
from driftsnap.chain import rpc
from driftsnap.chain.errors import ChainError

if TYPE_CHECKING:
    import asyncio

log = logs.get(__name__)

# The chain clock: its own budget of getSlot/getBlockTime calls, how long one may take and pause
# after a 429 (short: a stop waits for the call in flight), how long it sleeps at most without a
# look, and how long it waits after the node did not answer.
RPS: Final = 500
TIMEOUT_S: Final = 2.0
RETRY_AFTER_MAX_S: Final = 1.0
SLEEP_MAX_S: Final = 5.0
RETRY_S: Final = 0.1
COMMITMENT: Final = "confirmed"  # the snapshot's: the clock must not run behind the reads
MAX_REASON: Final = 300

# Solana mainnet-beta's genesis (2020-03-16 14:29 UTC): no block of a chain Drift runs on is older.
SOLANA_GENESIS_TS: Final = 1_584_368_940
# 2100-01-01 UTC: later than any chain, simulated ones running weeks a minute included, reaches
# (and a datetime, PostgreSQL and a JSON number all hold it exactly).
MAX_BLOCK_TIME: Final = 4_102_444_800
# Slots below 2**53 (exact in any JSON reader); mainnet passed 3.5e8 after five years of 0.4 s.
MAX_SLOT: Final = 2**53


def slot_problem(slot: object) -> str | None:
    """Why ``slot`` (as a node answered it) is not a slot, or ``None`` when it is."""
    if not isinstance(slot, int) or isinstance(slot, bool):
        return f"{_show(slot)} is not a slot"
    if not 0 <= slot < MAX_SLOT:
        return f"slot {_show(slot)} is out of bounds (0 .. 2**53)"
    return None


def block_time_problem(
    ts: object, *, now: float | None = None, max_ahead_s: float | None = None
) -> str | None:
    """Why ``ts`` (a ``getBlockTime`` answer) cannot be a block time, or ``None`` when it can.

    ``max_ahead_s``: how far past the wall clock (``now``, unix seconds) a block time may be.
    """
    if not isinstance(ts, int) or isinstance(ts, bool):
        return f"block time {_show(ts)} is not a number of seconds"
    if not SOLANA_GENESIS_TS <= ts < MAX_BLOCK_TIME:
        return f"block time {_show(ts)} is out of bounds (Solana's genesis, 2020, .. 2100)"
    if max_ahead_s is not None:
        wall = time.time() if now is None else now
        if ts > wall + max_ahead_s:
            return (
                f"block time {ts} is {ts - wall:.0f} s after the wall clock (at most "
                f"{max_ahead_s:g} s)"
            )
    return None


def _show(value: object) -> str:
    """``repr`` of an answer, cut short: a node may answer with anything."""
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"{value:.0e}" if abs(value) < 10**300 else "a huge integer"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


class Clock(Protocol):
    """Where the loop gets the time and waits for a sample instant (tests drive their own)."""

    @property
    def slot(self) -> int | None:
        """The chain's slot in force at :meth:`now`, for a clock that reads the chain."""
        ...

    def now(self) -> datetime:
        """The current time (UTC)."""
        ...

    async def start(self, stop: asyncio.Event) -> bool:
        """Be ready for :meth:`now`; False if ``stop`` is set first."""
        ...

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        """Return True at ``moment``, False as soon as ``stop`` is set."""
        ...


class SystemClock:
    """The wall clock (UTC)."""

    slot: int | None = None  # the wall clock knows no slot

    async def __aenter__(self) -> SystemClock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def now(self) -> datetime:
        """The wall clock's time."""
        return datetime.now(UTC)

    async def start(self, stop: asyncio.Event) -> bool:
        """Nothing to read first."""
        return not stop.is_set()

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        """Return True at ``moment``, False as soon as ``stop`` is set."""
        while not stop.is_set():
            left = (moment - self.now()).total_seconds()
            if left <= 0:
                return True
            # Wake at least every minute to read the wall clock again: NTP may step it meanwhile.
            await tasks.wait_for_event(stop, min(left, 60.0))
        return False


@dataclass(frozen=True, slots=True)
class _Block:
    """A block the chain clock saw: its slot, its time (unix s), and when it was first seen."""

    slot: int
    time: int
    seen: float  # time.monotonic()


class ChainClock:
    """The chain's time: the block time of the node's latest slot (getSlot, then getBlockTime).

    Against a real node this is the wall clock to the second, as the chain records it; against
    the simnet in fast mode (``driftsnap simnet --fast --slot-ms 60000``) a simulated week passes
    in minutes and the daemon follows it. Use it as ``async with ChainClock(...) as clock`` and
    ``await clock.start(stop)`` before the first :meth:`now`.

    A block's state holds from its time until the next block's. :meth:`sleep_until` returns once
    the node's latest block is the one in force at the moment (its time is at or before the
    moment, and the next block's, its time plus the slot duration, after it), or any later block;
    :meth:`now` is then the moment, so the snapshot read next is the chain's state at that
    instant and its ``taken_at`` is the sample instant, as with the wall clock. That rule needs
    evenly spaced blocks at least a second apart (block times are whole seconds): the spacing
    is measured between the blocks seen and the rule is used only while every measure agrees;
    otherwise (mainnet's 0.4 s slots) the clock waits for a block whose time is at or past the
    moment, at most a second late.

    The clock looks at the node only near a moment: it measures how much wall time a slot takes,
    sleeps most of the way, then looks a few times per slot. Its calls go through a client of
    their own (read-only, no retries: the clock retries itself and never stops on a failure).
    """

    def __init__(self, settings: rpc.RpcSettings, *, history: int = 16) -> None:
        """A clock reading the node of ``settings`` (the reader's), with a client of its own."""
        self._client = rpc.Client(
            dataclasses.replace(
                settings,
                max_retries=0,
                rps=RPS,
                timeout_s=min(settings.timeout_s, TIMEOUT_S),
                retry_after_max_s=RETRY_AFTER_MAX_S,
            )
        )
        self._blocks: deque[_Block] = deque(maxlen=history)
        self._spacings: deque[float] = deque(maxlen=history)  # chain seconds per slot, by pair
        self._reached: datetime | None = None
        self._failing_since: float | None = None

    async def __aenter__(self) -> ChainClock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ the Clock protocol

    @property
    def slot(self) -> int | None:
        """The latest slot seen (None before :meth:`start`)."""
        return self._blocks[-1].slot if self._blocks else None

    def now(self) -> datetime:
        """The latest block's time, or the moment :meth:`sleep_until` last reached if later."""
        if not self._blocks:
            raise RuntimeError("the chain clock has not read the chain yet: await start() first")
        block_time = datetime.fromtimestamp(self._blocks[-1].time, UTC)
        return block_time if self._reached is None else max(block_time, self._reached)

    async def start(self, stop: asyncio.Event) -> bool:
        """Read the chain's time once, retrying while the node does not answer; False if
        ``stop`` is set first."""
        while not self._blocks:
            if stop.is_set():
                return False
            if not await self._look():
                await tasks.wait_for_event(stop, RETRY_S)
        return True

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        """Return True once the block in force at ``moment`` is seen, False once ``stop`` is set."""
        # A look is short (TIMEOUT_S, and a 429 pauses it at most
        # RETRY_AFTER_MAX_S), so ``stop`` is checked between looks only.
        while not stop.is_set():
            if self._blocks and self._in_force(moment):
                self._reached = moment if self._reached is None else max(self._reached, moment)
                return True
            pause = self._pause(moment) if self._blocks else 0.0
            if pause > 0 and await tasks.wait_for_event(stop, pause):
                return False
            if not await self._look():
                await tasks.wait_for_event(stop, RETRY_S)
        return False

    # ------------------------------------------------------------ reading the chain

    def _in_force(self, moment: datetime) -> bool:
        """Whether the latest block seen is the one in force at ``moment``, or a later one."""
        block = self._blocks[-1]
        at = moment.timestamp()
        if block.time >= at:
            return True
        spacing = self._even_spacing()
        return spacing is not None and block.time + spacing > at

    def _even_spacing(self) -> float | None:
        """Chain seconds per slot when every measure agrees and blocks are a second apart."""
        if len(self._spacings) < 2:
            return None
        low, high = min(self._spacings), max(self._spacings)
        return low if high - low < 1e-9 and low >= 1.0 else None

    def _pause(self, moment: datetime) -> float:
        """Wall seconds to wait before the next look: most of the way to the block in force at
        ``moment`` once the pace is known; none over the last slot and a half before it, so
        that block is seen (and read) as soon as it comes, however briefly it lasts."""
        first, block = self._blocks[0], self._blocks[-1]
        slots = block.slot - first.slot
        if slots < 1 or block.time <= first.time:
            return RETRY_S  # no pace measured yet
        chain_per_slot = (block.time - first.time) / slots
        # The pace of a loaded node (or of a simnet sharing a busy process) wavers, and a block
        # missed is a tick missed: plan with the fastest pace seen between two looks (but not
        # a fluke of two looks either side of a block's start: a quarter of the average at
        # least), and go three quarters of the way at a time.
        average = (block.seen - first.seen) / slots
        fastest = min(
            (b.seen - a.seen) / (b.slot - a.slot) for a, b in itertools.pairwise(self._blocks)
        )
        wall_per_slot = max(fastest, average / 4)
        slots_left = (moment.timestamp() - block.time) / chain_per_slot
        ahead = 0.75 * (slots_left - 1.5) * wall_per_slot - (time.monotonic() - block.seen)
        return min(max(ahead, 0.0), SLEEP_MAX_S)

    async def _look(self) -> bool:
        """One look at the node: its latest slot, and that slot's time if it is new; whether
        the node answered."""
        try:
            slot = await self._client.call("getSlot", [{"commitment": COMMITMENT}])
            latest = self._blocks[-1] if self._blocks else None
            if (problem := slot_problem(slot)) is not None:
                raise ChainError(f"getSlot answered: {problem}")
            if latest is not None and slot <= latest.slot:
                # No new block yet, or a node behind the one we asked before: nothing to learn.
                self._recovered()
                return True
            block_time = await self._client.call("getBlockTime", [slot])
        except ChainError as exc:
            self._unavailable(str(exc))
            return False
        if block_time is None:
            self._unavailable(f"no block time for slot {slot}")  # null: not known yet
            return False
        if (problem := block_time_problem(block_time)) is not None:
            self._unavailable(f"getBlockTime of slot {slot}: {problem}")
            return False
        self._recovered()
        if latest is not None and block_time < latest.time:
            return True  # a block time that goes backwards is the node's problem, not our time
        if latest is not None:
            self._spacings.append((block_time - latest.time) / (slot - latest.slot))
        self._blocks.append(_Block(slot, block_time, time.monotonic()))
        return True

    def _unavailable(self, reason: str) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("chain_clock_unavailable", reason=reason[:MAX_REASON])

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info(
                "chain_clock_recovered", after_s=round(time.monotonic() - self._failing_since, 1)
            )
            self._failing_since = None
