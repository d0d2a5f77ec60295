"""The snapshot daemon: the cadence loop, its lifecycle, and the wiring of settings onto the parts.

Only this module and the CLI import chain, store and scoring together (import-linter contract).

One tick::

    wait for the interval's sample instant (drawn from the week's committed seed)
      -> snapshot.take (RPC)          rejected: a `rejected` header with the reason, no scores
      -> scorer.score per method      (a worker thread)
      -> one transaction               missed ticks owed + gaps + this tick, all or nothing
      -> metrics, one `tick_written` log line

A tick that fails (RPC down, database down) is logged, counted and remembered: its interval is
written as a `missed` tick, with the reason, by the first write that succeeds. So is one the
daemon woke for more than ``MAX_LATENESS`` after its instant (a stalled process, a clock that
jumped): the week close checks every tick's time against the seed. Intervals nobody sampled (the
daemon was down, also over Monday 00:00, or a tick overran) are filled in as `missed` the same
way, so every interval has a header and a week's coverage never overstates. More than
``max_consecutive_failures`` failed ticks in a row end the loop with exit status 1 for the
supervisor.

Time comes from a :class:`Clock`: the wall clock (:class:`SystemClock`), or the chain's block
time (:class:`ChainClock`, ``DRIFTSNAP_CLOCK=chain``), with which the daemon follows a simulated
chain that runs a program week in minutes.

Only one daemon writes per database: the writer holds a session advisory lock; a second daemon
waits as standby and takes over when the lock comes free. Signals only set the stop Event; a
snapshot in flight is abandoned, a commit in flight is shielded and finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy import exc as sa_exc

from driftsnap import calendar, config, ingest, logs, metrics, sampling
from driftsnap.chain import fills as chain_fills
from driftsnap.chain import rpc, snapshot
from driftsnap.chain.errors import ChainError
from driftsnap.errors import ConfigError, DriftsnapError
from driftsnap.scoring import scorer
from driftsnap.store import closes, database, locks, migrations, schema, snapshots, weeks
from driftsnap.store import fills as store_fills
from driftsnap.store.errors import ConnectError, IntegrityError, LockError, StoreError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import httpx

    from driftsnap.scoring import methods as methods_mod

log = logs.get(__name__)
_T = TypeVar("_T")

RUN_HINT = (
    "no RPC URL: pass --rpc-url URL (or set DRIFTSNAP_RPC_URL) to read a Solana node; "
    "to try driftsnap without one, run `driftsnap demo`, which starts the local simulator"
)

LOCK_POLL_S: Final = 1.0  # how often a standby asks for the writer lock
PROBE_TIMEOUT_S: Final = 3.0  # /readyz gives up on the database after this long
CONNECT_TIMEOUT_S: Final = 5  # a database that is down fails a tick fast instead of hanging it
READY_AFTER_CADENCES: Final = 3.0  # /readyz: the last ok tick is at most this many cadences old
MAX_REASON: Final = 300
STARTUP_ATTEMPTS: Final = 5  # schema checks at start while the database is unavailable
STARTUP_RETRY_S: Final = 2.0
NOBODY_SAMPLED: Final = "no snapshot was taken (no daemon was writing)"
OVERRUN: Final = "no snapshot was taken (the daemon was busy, or its clock jumped past the instant)"
APPLICATION_NAME: Final = "driftsnap"  # shows the daemon's sessions in pg_stat_activity
# A tick taken later than this after its sample instant would fail the week close's check of the
# instants (sampling.verify's tolerance): the interval is recorded as missed instead.
MAX_LATENESS: Final = timedelta(seconds=5)
# The chain clock (ChainClock): its own budget of getSlot/getBlockTime calls, how long one may
# take and pause after a 429 (short: a stop waits for the call in flight), how long it sleeps at
# most without a look, and how long it waits after the node did not answer.
CHAIN_CLOCK_RPS: Final = 500
CHAIN_CLOCK_TIMEOUT_S: Final = 2.0
CHAIN_CLOCK_RETRY_AFTER_MAX_S: Final = 1.0
CHAIN_SLEEP_MAX_S: Final = 5.0
CHAIN_RETRY_S: Final = 0.1
CHAIN_COMMITMENT: Final = "confirmed"  # the snapshot's: the clock must not run behind the reads
# JSON-RPC methods the reader calls: the only values of the metrics' `method` label.
RPC_METHODS: Final = frozenset(
    {"getProgramAccounts", "getMultipleAccounts", "getBlockTime", "getSlot", "getAccountInfo"}
)


def rpc_settings(settings: config.Settings) -> rpc.RpcSettings:
    """The RPC client's settings; a clear error pointing at --rpc-url and demo without a URL."""
    if settings.rpc_url is None:
        raise ConfigError(RUN_HINT)
    return rpc.RpcSettings(
        url=settings.rpc_url.get_secret_value(),
        timeout_s=settings.rpc_timeout_s,
        max_retries=settings.rpc_max_retries,
        rps=settings.rpc_rps,
        gpa_rps=settings.rpc_gpa_rps,
    )


def snapshot_settings(settings: config.Settings) -> snapshot.SnapshotSettings:
    return snapshot.SnapshotSettings(
        max_slot_gap=settings.max_slot_gap, max_skipped_share=settings.max_skipped_share
    )


def markets(settings: config.Settings, program: config.Program, now: datetime) -> list[str | int]:
    """Configured markets (names, or indexes given as digits); default: those paying a pool now."""
    if settings.markets:
        return [int(m) if m.isdigit() else m for m in settings.markets]
    pools = program.score_pools(calendar.Week.containing(now))
    return [market for market, pool in pools.items() if pool > 0]


# ---------------------------------------------------------------------------- time


class Clock(Protocol):
    """Where the loop gets the time and waits for a sample instant (tests drive their own)."""

    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        """Return True at ``moment``, False as soon as ``stop`` is set."""
        ...


class SystemClock:
    """The wall clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            left = (moment - self.now()).total_seconds()
            if left <= 0:
                return True
            # Wake at least every minute to read the wall clock again: NTP may step it meanwhile.
            await wait_for_event(stop, min(left, 60.0))
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
        self._client = rpc.Client(settings)
        self._blocks: deque[_Block] = deque(maxlen=history)
        self._spacings: deque[float] = deque(maxlen=history)  # chain seconds per slot, by pair
        self._reached: datetime | None = None
        self._failing_since: float | None = None

    @classmethod
    def for_settings(cls, settings: config.Settings) -> ChainClock:
        base = rpc_settings(settings)
        return cls(
            dataclasses.replace(
                base,
                max_retries=0,
                rps=CHAIN_CLOCK_RPS,
                timeout_s=min(base.timeout_s, CHAIN_CLOCK_TIMEOUT_S),
                retry_after_max_s=CHAIN_CLOCK_RETRY_AFTER_MAX_S,
            )
        )

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
            if not await self._observe():
                await wait_for_event(stop, CHAIN_RETRY_S)
        return True

    async def sleep_until(self, moment: datetime, stop: asyncio.Event) -> bool:
        # A look is short (CHAIN_CLOCK_TIMEOUT_S, and a 429 pauses it at most
        # CHAIN_CLOCK_RETRY_AFTER_MAX_S), so ``stop`` is checked between looks only.
        while not stop.is_set():
            if self._blocks and self._in_force(moment):
                self._reached = moment if self._reached is None else max(self._reached, moment)
                return True
            pause = self._pause(moment) if self._blocks else 0.0
            if pause > 0 and await wait_for_event(stop, pause):
                return False
            if not await self._observe():
                await wait_for_event(stop, CHAIN_RETRY_S)
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
            return CHAIN_RETRY_S  # no pace measured yet
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
        return min(max(ahead, 0.0), CHAIN_SLEEP_MAX_S)

    async def _observe(self) -> bool:
        """One look at the node: its latest slot, and that slot's time if it is new; whether
        the node answered."""
        try:
            slot = await self._client.call("getSlot", [{"commitment": CHAIN_COMMITMENT}])
            latest = self._blocks[-1] if self._blocks else None
            if not isinstance(slot, int) or isinstance(slot, bool):
                raise ChainError(f"getSlot answered {slot!r}, not a slot")
            if latest is not None and slot <= latest.slot:
                # No new block yet, or a node behind the one we asked before: nothing to learn.
                self._recovered()
                return True
            block_time = await self._client.call("getBlockTime", [slot])
        except ChainError as exc:
            self._unavailable(str(exc))
            return False
        if not isinstance(block_time, int) or isinstance(block_time, bool):
            self._unavailable(f"no block time for slot {slot}")  # null: not known yet
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


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``event``; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()


# ---------------------------------------------------------------------------- the week's seed


def seeds_directory(settings: config.Settings) -> Path:
    return (settings.data_dir or database.default_data_dir()).expanduser() / "seeds"


def seed_path(directory: Path, w: calendar.Week, commitment: str) -> Path:
    return directory / f"{w}-{commitment[:16]}.seed"


def read_seed(directory: Path, w: calendar.Week, commitment: str) -> bytes | None:
    """The secret seed of ``w`` committed as ``commitment``, if this machine holds it."""
    path = seed_path(directory, w, commitment)
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable sampling seed ({exc})") from None
    if sampling.commitment(seed) != commitment:
        raise IntegrityError(f"{path}: the seed does not match the week's commitment")
    return seed


def _save_seed(directory: Path, w: calendar.Week, seed: bytes) -> None:
    # The seed stays secret until the week close (then weeks.reveal_seed stores it): it must not
    # be in the database, whose views and tables makers may read, but it must survive restarts.
    # So it is a 0600 file under the data directory, named by its commitment; written (and
    # fsynced) before the commitment is stored, so a committed seed always has its file.
    path = seed_path(directory, w, sampling.commitment(seed))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, seed.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


# ---------------------------------------------------------------------------- what a tick says


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick did, for observers (the demo's table, tests)."""

    status: snapshots.TickStatus
    interval: int
    at: datetime
    reason: str = ""
    slot: int | None = None
    markets: int = 0
    orders: int = 0
    makers: int = 0
    missed_written: int = 0
    ms: int = 0  # the whole tick: read, score and write
    rpc_ms: int = 0
    score_ms: int = 0
    write_ms: int = 0


def _below(snap: snapshot.Snapshot, floor: int) -> snapshot.Snapshot:
    """``snap`` rejected if its User accounts were read at a slot before ``floor``, the block
    the chain clock saw in force at the sample instant (a node behind answered)."""
    if not snap.ok or snap.slot >= floor:
        return snap
    rejection = snapshot.Rejection.SLOT_REGRESSION
    detail = (
        f"User accounts read at slot {snap.slot}, before slot {floor}, whose block the chain "
        "clock saw in force at the sample instant"
    )
    log.warning("snapshot_rejected", reason=rejection.value, detail=detail, slot=snap.slot)
    return dataclasses.replace(snap, rejection=rejection, detail=detail, books={})


class _LostWriterError(StoreError):
    """Another daemon took the writer lock while this one's session was gone."""


def _reason(exc: BaseException, db_url: sa.URL | None = None) -> str:
    """One line for a failed tick, without secrets: our errors never carry one; driver errors
    are cut to their first line and scrubbed of the database password."""
    if isinstance(exc, sa_exc.DBAPIError):
        text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        text = f"database: {text}"
    elif isinstance(exc, DriftsnapError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    if db_url is not None:
        text = database.scrub(text, db_url)
    return text[:MAX_REASON]


def _error_kind(exc: BaseException) -> str:
    """A bounded metrics label: the error class in snake case (``node_behind``...)."""
    name = type(exc).__name__.removesuffix("Error") or "error"
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


# ---------------------------------------------------------------------------- the daemon


@dataclass
class _Daemon:
    settings: config.Settings
    program: config.Program
    db: database.Database
    clock: Clock
    stop: asyncio.Event
    registry: metrics.Metrics
    on_tick: Callable[[TickReport], None] | None
    started_at: datetime
    methods: tuple[methods_mod.Method, ...] = ()
    wanted: list[str | int] = field(default_factory=list)
    last_slot: int | None = None
    last: tuple[calendar.Week, int] | None = None  # the last interval handled
    backlog: list[snapshots.Tick] = field(default_factory=list)  # missed ticks owed
    failures: int = 0
    last_failure: str = ""
    schedules: dict[calendar.Week, sampling.Schedule] = field(default_factory=dict)
    finalized_weeks: set[calendar.Week] = field(default_factory=set)
    # Whether this daemon is the writer. Its lock session may die with the database (then each
    # write tries to take the lock again); only losing the lock to another daemon ends it.
    writer: bool = False
    lock_conn: sa.Connection | None = None
    lock_pid: int | None = None

    # ------------------------------------------------------------ the loop

    async def loop(self, *, once: bool) -> int:
        hooks: dict[str, list[Callable[..., Awaitable[Any]]]] = {
            "request": [self._on_request],
            "response": [self._on_response],
        }
        async with rpc.Client(rpc_settings(self.settings), event_hooks=hooks) as client:
            try:
                if once:
                    return await self._once(client)
                while not self.stop.is_set():
                    if not self.writer and not await self._become_writer(wait=True):
                        break
                    await self._tick(client)
                    if self.failures > self.settings.max_consecutive_failures:
                        log.error(
                            "daemon_giving_up",
                            failures=self.failures,
                            threshold=self.settings.max_consecutive_failures,
                            reason=self.last_failure,
                        )
                        return 1
                return 0
            finally:
                await _shielded(self._release, name="writer-release")

    async def _once(self, client: rpc.Client) -> int:
        """One tick, at the sample instant of the next interval (this one's if it is still
        ahead, else the next one's: at most two cadences away), like any tick of the loop; 0 if
        an ok snapshot was written, or if stopped while waiting.

        Not "now": a tick off the committed schedule would fail the week close's check of the
        instants against the revealed seed, and the close would refuse its week.
        """
        await self._become_writer(wait=False)
        while not self.stop.is_set():
            now = self.clock.now()
            try:
                schedule = await self._schedule(now)
            except _FatalError:
                raise
            except (StoreError, sa_exc.DBAPIError) as exc:
                log.error("tick_failed", reason=_reason(exc, self.db.url))
                return 1
            nxt = self._next(schedule, now)
            if nxt is None:  # past the week's last instant: the next week's first one
                await self.clock.sleep_until(schedule.week.end, self.stop)
                continue
            interval, at = nxt
            log.info(
                "once_waiting",
                interval=interval,
                at=at.isoformat(),
                wait_s=round(max(0.0, (at - now).total_seconds()), 1),
            )
            if not await self.clock.sleep_until(at, self.stop):
                break
            self.last = (schedule.week, interval)
            late = self.clock.now() - at
            if late > MAX_LATENESS:
                self._late(interval, at, late)  # owed: written with the next interval's tick
                continue
            report = await self._sample(client, schedule, interval, at)
            return 0 if report is not None and report.status == "ok" else 1
        log.info("tick_abandoned", reason="stopping")
        return 0

    async def _tick(self, client: rpc.Client) -> None:
        now = self.clock.now()
        try:
            schedule = await self._schedule(now)
        except _FatalError:
            raise
        except (StoreError, sa_exc.DBAPIError) as exc:
            # No schedule, no instant to record a miss at: the gap fill records this interval
            # once the week opens. Retry within the interval.
            self._failed(_reason(exc, self.db.url), exc)
            await wait_for_event(self.stop, min(self.settings.cadence.total_seconds(), 5.0))
            return
        nxt = self._next(schedule, now)
        if nxt is None:  # the week's last interval is done: the next week opens at its start
            await self.clock.sleep_until(schedule.week.end, self.stop)
            return
        interval, at = nxt
        if not await self.clock.sleep_until(at, self.stop):
            return
        self.last = (schedule.week, interval)
        late = self.clock.now() - at
        if late > MAX_LATENESS:
            # Woken too late (a stalled process, a chain clock that could not see the node): a
            # snapshot now would not be of the instant the seed committed to.
            self._late(interval, at, late)
            return
        await self._sample(client, schedule, interval, at)

    def _late(self, interval: int, at: datetime, late: timedelta) -> None:
        reason = (
            f"woke {late.total_seconds():.1f} s after the sample instant (at most "
            f"{MAX_LATENESS.total_seconds():g} s): not sampled"
        )
        log.warning("tick_late", interval=interval, tick_at=at.isoformat(), reason=reason)
        self.registry.ticks.labels("late").inc()
        # Written as missed with the next write; not a failure of the node or the database, so
        # it does not count towards giving up.
        self.backlog.append(
            snapshots.Tick(at=at, interval=interval, status="missed", reason=reason)
        )

    def _next(self, schedule: sampling.Schedule, now: datetime) -> tuple[int, datetime] | None:
        """The next interval to sample: never one already handled (a fast or stepped clock may
        still be inside it)."""
        nxt = schedule.next_sample(now)
        last = self.last
        if nxt is not None and last is not None and last[0] == schedule.week and nxt[0] <= last[1]:
            j = last[1] + 1
            nxt = (j, schedule.sample_at(j)) if j < schedule.intervals else None
        return nxt

    async def _sample(
        self, client: rpc.Client, schedule: sampling.Schedule, interval: int, at: datetime
    ) -> TickReport | None:
        """Take, score and write the tick of ``interval`` scheduled at ``at``."""
        taken_at = self.clock.now()
        # With the chain clock, the slot whose block is in force at the instant: the book must
        # not be older than it.
        floor = self.clock.slot if isinstance(self.clock, ChainClock) else None
        started = time.perf_counter()
        try:
            snap = await self._take(client)
        except DriftsnapError as exc:
            self.registry.rpc_errors.labels(_error_kind(exc)).inc()
            self._owe(interval, at, _reason(exc), exc)
            return None
        if snap is None:
            log.info("tick_abandoned", interval=interval, reason="stopping")
            return None
        if floor is not None:
            snap = _below(snap, floor)
            if snap.ok and snap.ts_estimated:
                # The reader put the wall clock's time on the books, which says nothing about a
                # chain the daemon follows by its block times: a failed read, not a book.
                no_time = ChainError(
                    f"getBlockTime: the node had no block time for slot {snap.slot} (the chain "
                    "clock cannot let the wall clock stand in)"
                )
                self._owe(interval, at, _reason(no_time), no_time)
                return None
        rpc_ms = round((time.perf_counter() - started) * 1000)
        if snap.ok:
            # Ask by index from now on (one gPA less), and reject a slot that goes backwards.
            self.wanted = list(snap.market_indexes)
            self.last_slot = snap.slot
            market_rows = await asyncio.to_thread(self._score, snap)
            tick = snapshots.Tick(
                at=at, interval=interval, status="ok", taken_at=taken_at, gpa_slot=snap.slot,
                market_slot=snap.market_slot,
                duration_ms=round((time.perf_counter() - started) * 1000),
            )  # fmt: skip
        else:
            market_rows = []
            tick = snapshots.Tick(
                at=at, interval=interval, status="rejected",
                reason=f"{snap.rejection}: {snap.detail}"[:MAX_REASON], taken_at=taken_at,
                gpa_slot=snap.slot, market_slot=snap.market_slot,
                duration_ms=round((time.perf_counter() - started) * 1000),
            )  # fmt: skip
        score_ms = round((time.perf_counter() - started) * 1000) - rpc_ms
        write_started = time.perf_counter()
        try:
            missed, stored = await self._commit(schedule, tick, market_rows)
        except _LostWriterError as exc:
            log.warning("writer_lock_lost", reason=str(exc), dropped_missed=len(self.backlog))
            # The new writer fills the intervals it finds empty; ours are its to record now.
            self.backlog.clear()
            self.writer = False
            self.registry.writer.set(0)
            return None
        except (StoreError, sa_exc.DBAPIError, OSError) as exc:
            self._owe(interval, at, _reason(exc, self.db.url), exc)
            return None
        write_ms = round((time.perf_counter() - write_started) * 1000)
        self.failures, self.last_failure = 0, ""
        report = TickReport(
            status=tick.status, interval=interval, at=at, reason=tick.reason, slot=snap.slot,
            markets=len(market_rows), orders=sum(len(m.book.orders) for m in market_rows),
            makers=len({o.authority for m in market_rows for o in m.book.orders}),
            missed_written=missed, ms=tick.duration_ms + write_ms, rpc_ms=rpc_ms,
            score_ms=score_ms, write_ms=write_ms,
        )  # fmt: skip
        self._observe(report, snap, stored=stored, at=at)
        log.info(
            "tick_written" if stored else "tick_already_stored",
            status=report.status,
            interval=interval,
            tick_at=at.isoformat(),
            slot=snap.slot,
            market_slot=snap.market_slot,
            markets=report.markets,
            orders=report.orders,
            makers=report.makers,
            missed=missed,
            reason=report.reason or None,
            rpc_ms=rpc_ms,
            score_ms=score_ms,
            write_ms=write_ms,
            ms=report.ms,
        )
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    async def _take(self, client: rpc.Client) -> snapshot.Snapshot | None:
        """A snapshot, or None if a stop came first (the read in flight is abandoned)."""
        wanted = self.wanted or markets(self.settings, self.program, self.clock.now())
        take = asyncio.create_task(
            snapshot.take(
                client, snapshot_settings(self.settings), wanted, last_slot=self.last_slot
            ),
            name="snapshot-take",
        )
        watch = asyncio.create_task(self.stop.wait(), name="snapshot-stop-watch")
        try:
            await asyncio.wait({take, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (take, watch):
                task.cancel()
            # Both are awaited (no task outlives its tick); take's error is read just below.
            await asyncio.gather(take, watch, return_exceptions=True)
        if take.cancelled():
            return None
        return take.result()

    def _score(self, snap: snapshot.Snapshot) -> list[snapshots.MarketSnapshot]:
        return [
            snapshots.MarketSnapshot(
                snap.books[index], tuple(scorer.score(snap.books[index], m) for m in self.methods)
            )
            for index in snap.market_indexes
        ]

    def _owe(self, interval: int, at: datetime, reason: str, exc: BaseException) -> None:
        """A failed tick: remember to write its interval as missed, and count the failure."""
        self.backlog.append(
            snapshots.Tick(at=at, interval=interval, status="missed", reason=reason)
        )
        self._failed(reason, exc)

    def _failed(self, reason: str, exc: BaseException) -> None:
        self.failures += 1
        self.last_failure = reason
        self.registry.ticks.labels("failed").inc()
        log.warning(
            "tick_failed",
            reason=reason,
            error=type(exc).__name__,
            consecutive=self.failures,
            owed=len(self.backlog),
        )

    def _observe(
        self, report: TickReport, snap: snapshot.Snapshot, *, stored: bool, at: datetime
    ) -> None:
        m = self.registry
        if report.missed_written:
            m.ticks.labels("missed").inc(report.missed_written)
        if not stored:
            return
        m.ticks.labels(report.status).inc()
        for reason, n in snap.skipped.items():
            m.skipped_accounts.labels(reason).inc(n)
        if report.status != "ok":
            return
        now = time.time()
        m.tick_seconds.observe(max(0.0, (self.clock.now() - at).total_seconds()))
        m.last_ok_slot.set(snap.slot)
        m.last_ok_time.set(now)
        if snap.ts is not None:
            m.snapshot_lag.set(max(0.0, now - snap.ts))
        for market in snap.markets:
            m.orders.labels(market.name).set(len(snap.books[market.market_index].orders))

    # ------------------------------------------------------------ the database

    async def _schedule(self, now: datetime) -> sampling.Schedule:
        w = calendar.Week.containing(now)
        if w not in self.schedules:
            self.schedules[w] = await asyncio.to_thread(self._open_week, w)
        return self.schedules[w]

    def _open_week(self, w: calendar.Week) -> sampling.Schedule:
        """The week's schedule; its seed drawn and committed if this is the week's first tick."""
        cadence = self.settings.cadence
        directory = seeds_directory(self.settings)
        with self.db.engine.begin() as conn:
            record = weeks.record(conn, w)
            if record is None:
                seed = sampling.new_seed()
                _save_seed(directory, w, seed)
                weeks.commit_seed(conn, w, cadence=cadence, seed_sha256=sampling.commitment(seed))
                log.info("week_opened", week=str(w), commitment=sampling.commitment(seed))
            else:
                if record.cadence != cadence:
                    raise _FatalError(
                        f"week {w} is sampled every {record.cadence.total_seconds():g} s; the "
                        f"cadence ({cadence.total_seconds():g} s) can change from next week"
                    )
                found = record.seed or read_seed(directory, w, record.seed_sha256)
                if found is None:
                    raise _FatalError(
                        f"week {w} is committed to seed sha256 {record.seed_sha256[:16]}..., whose "
                        f"secret is not in {directory}: copy it from the daemon that committed it"
                    )
                seed = found
            weeks.set_pools(conn, w, self.program.score_pools(w))
            store_fills.set_volume_pool(conn, w, self.program.volume_pool_for(w))
            self._reveal_previous(conn, w, directory)
        return sampling.Schedule(w, cadence, seed)

    def _reveal_previous(self, conn: sa.Connection, w: calendar.Week, directory: Path) -> None:
        """Reveal the seed of the week before ``w``: all its instants are past, so nothing is
        left to predict, and a close-week running elsewhere (a CronJob) finds it stored."""
        prev = w.previous()
        record = weeks.record(conn, prev)
        if record is None or record.seed is not None:
            return
        seed = read_seed(directory, prev, record.seed_sha256)
        if seed is None:
            log.warning("seed_not_revealed", week=str(prev), reason=f"no seed file in {directory}")
            return
        weeks.reveal_seed(conn, prev, seed)
        log.info("seed_revealed", week=str(prev), commitment=record.seed_sha256)

    # ------------------------------------------------------------ maker fills

    async def fills_loop(self) -> None:
        """Poll the chain for maker fills every ``fills_poll`` while this daemon is the writer.

        A task of its own, so a backlog of fills never delays a snapshot; each batch of fills is
        committed with its watermark (ingest.poll_once), so a stop or a crash loses nothing. A
        failed poll is logged and counted, and the next one starts from the same watermark.
        """
        poll = ingest.PollSettings(backfill_slots=self.settings.fills_backfill_slots)
        authorities = chain_fills.Authorities()  # kept across polls: authorities never change
        interval_s = self.settings.fills_poll.total_seconds()
        async with rpc.Client(rpc_settings(self.settings)) as client:
            while not self.stop.is_set():
                if self.writer and await self._poll_fills(client, poll, authorities):
                    await self._finalize_ended(client)
                await wait_for_event(self.stop, interval_s)

    async def _poll_fills(
        self, client: rpc.Client, poll: ingest.PollSettings, authorities: chain_fills.Authorities
    ) -> bool:
        """One confirmed poll; whether it caught up with the node."""
        try:
            report = await ingest.poll_once(client, self.db.engine, poll, authorities=authorities)
        except (ChainError, StoreError, sa_exc.DBAPIError) as exc:
            self.registry.fills_polls.labels(status="failed").inc()
            log.warning("fills_poll_failed", reason=_reason(exc, self.db.url))
            return False
        self.registry.fills_polls.labels(status="ok").inc()
        self.registry.fills_ingested.inc(report.new_fills)
        self.registry.fills_truncated.inc(report.truncated)
        self.registry.fills_null_pending.set(report.null_pending)
        if report.watermark_slot is not None:
            self.registry.fills_watermark_slot.set(report.watermark_slot)
        # ingest.poll_once logs the poll's one summary line (fills_polled) and the truncated
        # transactions (fills_logs_truncated) itself.
        return report.caught_up and not report.null_pending

    async def _finalize_ended(self, client: rpc.Client) -> None:
        """Run the finalized pass for the week before the clock's, once it has ended and until
        its fills are final: the week close refuses a week whose fills are not (ingest)."""
        ended = calendar.Week.containing(self.clock.now()).previous()
        if ended in self.finalized_weeks:
            return
        try:
            if not await asyncio.to_thread(self._closable, ended):
                return
            report = await ingest.finalize(client, self.db.engine, ended)
        except (ChainError, StoreError, sa_exc.DBAPIError) as exc:
            log.warning("fills_finalize_failed", week=str(ended), reason=_reason(exc, self.db.url))
            return
        if report.finality.finalized:
            self.finalized_weeks.add(ended)
            log.info("fills_week_finalized", week=str(ended), fills=report.finality.fills)

    def _closable(self, w: calendar.Week) -> bool:
        """Whether ``w`` may still close: sampled by this database (it has a seed commitment)
        and not closed yet (a closed week's fills are immutable)."""
        with self.db.engine.connect() as conn:
            return weeks.record(conn, w) is not None and not closes.closed_weeks(conn, [w])

    async def _commit(
        self,
        schedule: sampling.Schedule,
        tick: snapshots.Tick,
        market_rows: list[snapshots.MarketSnapshot],
    ) -> tuple[int, bool]:
        return await _shielded(self._write, schedule, tick, market_rows, name="tick-write")

    def _write(
        self,
        schedule: sampling.Schedule,
        tick: snapshots.Tick,
        market_rows: list[snapshots.MarketSnapshot],
    ) -> tuple[int, bool]:
        """One transaction: the missed ticks owed, the unsampled gap, then this tick.

        Returns (missed ticks written, whether this tick was written).
        """
        self._ensure_writer()
        missed = 0
        with self.db.engine.begin() as conn:
            # In time order, each after the gap before it: the gap is measured from the last
            # stored tick, so an owed tick written first would hide the intervals passed over
            # before it (a stall, a chain that jumped) and they would never get a header.
            for owed in sorted(self.backlog, key=lambda t: t.at):
                owed_schedule = self.schedules.get(calendar.Week.containing(owed.at))
                if owed_schedule is not None:
                    missed += self._fill_gap(conn, owed_schedule, owed.interval)
                if not self._interval_taken(conn, owed):
                    missed += snapshots.write_tick(conn, owed)
            missed += self._fill_gap(conn, schedule, tick.interval)
            stored = not self._interval_taken(conn, tick) and snapshots.write_tick(
                conn, tick, market_rows, methods=self.methods
            )
        # Only once the transaction has committed are the misses paid.
        self.backlog.clear()
        return missed, stored

    def _interval_taken(self, conn: sa.Connection, tick: snapshots.Tick) -> bool:
        """Whether ``tick``'s interval already has a tick (e.g. one of `run --once`)."""
        start = calendar.Week.containing(tick.at).start + tick.interval * self.settings.cadence
        t = schema.ticks
        found = conn.execute(
            sa.select(t.c.tick_at)
            .where(t.c.tick_at >= start, t.c.tick_at < start + self.settings.cadence)
            .limit(1)
        ).first()
        return found is not None

    def _fill_gap(self, conn: sa.Connection, schedule: sampling.Schedule, upto: int) -> int:
        """Write the intervals of the week before ``upto`` that nobody sampled as missed."""
        w = schedule.week
        last = _last_interval(conn, w)
        written = 0
        if last is not None:
            first = last + 1
        elif self.started_at < w.start or _sampled_before(conn, w):
            # This process was running when the week began, or an earlier week was sampled
            # (the daemon was down over Monday 00:00): the week is ours to account for from
            # its start, and the week before to its end.
            first = 0
            written += self._fill_previous(conn, w)
        else:
            return 0  # a database's first week starts with its first tick
        written += self._fill(conn, schedule, range(first, upto))
        return written

    def _fill_previous(self, conn: sa.Connection, w: calendar.Week) -> int:
        """The intervals after the last tick of the week before ``w``, as missed."""
        prev = w.previous()
        last = _last_interval(conn, prev)
        if last is None or closes.closed_weeks(conn, [prev]):
            return 0  # never sampled (no instants to name), or closed: immutable
        schedule = self.schedules.get(prev) or self._past_schedule(conn, prev)
        if schedule is None:
            log.warning("missed_intervals_unfilled", week=str(prev), reason="no sampling seed")
            return 0
        return self._fill(conn, schedule, range(last + 1, schedule.intervals))

    def _past_schedule(self, conn: sa.Connection, w: calendar.Week) -> sampling.Schedule | None:
        record = weeks.record(conn, w)
        if record is None:
            return None
        seed = record.seed or read_seed(seeds_directory(self.settings), w, record.seed_sha256)
        return None if seed is None else sampling.Schedule(w, record.cadence, seed)

    def _fill(self, conn: sa.Connection, schedule: sampling.Schedule, intervals: range) -> int:
        written = 0
        for k in intervals:
            at = schedule.sample_at(k)
            # This process's last failure explains the intervals since it started, not before;
            # without one, an interval it was running for was passed over (a tick overran it,
            # or the clock jumped: a wall clock stepped, a chain that went on while unseen).
            reason = NOBODY_SAMPLED if at < self.started_at else self.last_failure or OVERRUN
            gap = snapshots.Tick(at=at, interval=k, status="missed", reason=reason)
            written += snapshots.write_tick(conn, gap)
        if written:
            log.info(
                "missed_intervals_filled",
                week=str(schedule.week),
                first=intervals.start,
                last=intervals.stop - 1,
            )
        return written

    # ------------------------------------------------------------ the writer lock

    async def _become_writer(self, *, wait: bool) -> bool:
        """Hold the writer lock; as standby, wait until it comes free. False if stopped first."""
        standby = False
        while not self.stop.is_set():
            try:
                got = await _shielded(self._try_lock, name="writer-lock")
            except (StoreError, sa_exc.DBAPIError) as exc:
                if not wait:
                    raise
                log.warning("writer_lock_unavailable", reason=_reason(exc, self.db.url))
                got = False
            if got:
                self.writer = True
                self.registry.writer.set(1)
                log.info("writer_active", standby_before=standby)
                return True
            if not wait:
                raise LockError(
                    "another driftsnap writes to this database (it holds the writer lock)"
                )
            if not standby:
                standby = True
                log.info("writer_standby", reason="another daemon holds the writer lock")
            await wait_for_event(self.stop, LOCK_POLL_S)
        return False

    def _try_lock(self) -> bool:
        conn = self.db.engine.connect()
        try:
            got = locks.try_acquire_writer(conn)
            if got:
                self.lock_pid = conn.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
                conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self.lock_conn = conn
        return True

    def _ensure_writer(self) -> None:
        """Check that the lock's session still holds it; take it again if it died and the lock
        is free. A session that died with the server lost the lock: another daemon may have it.

        A lock lost between this check and the commit is harmless: ticks are keyed by their
        instant and intervals checked, so two writers cannot store one interval twice.
        """
        conn = self.lock_conn
        if conn is not None:
            try:
                holder = locks.holder(conn)
                conn.commit()
                if holder == self.lock_pid:
                    return
            except sa_exc.DBAPIError:
                pass  # the session died with the server: see whether the lock can be had again
            conn.invalidate()
            conn.close()
            self.lock_conn = None
        if not self._try_lock():
            raise _LostWriterError("another daemon holds the writer lock now")
        log.info("writer_lock_reacquired")

    def _release(self) -> None:
        conn, self.lock_conn = self.lock_conn, None
        if conn is None:
            return
        try:
            locks.release_writer(conn)
            log.info("writer_released")
        except (sa_exc.DBAPIError, LockError):
            conn.invalidate()  # the server releases a dead session's lock by itself
        finally:
            conn.close()
            self.registry.writer.set(0)

    # ------------------------------------------------------------ health and metrics

    async def readiness(self) -> metrics.Readiness:
        """Ready: the database answers and holds a recent ok tick (whichever daemon wrote it)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                now, last_ok = await asyncio.to_thread(self._last_ok)
        except (TimeoutError, sa_exc.DBAPIError):
            return metrics.readiness(last_ok=None, cadence_s=1, ready_after=1, database_ok=False)
        return metrics.readiness(
            last_ok=last_ok,
            cadence_s=self.settings.cadence.total_seconds(),
            ready_after=READY_AFTER_CADENCES,
            database_ok=True,
            now=now,
        )

    def _last_ok(self) -> tuple[float, float | None]:
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM now())::float8,"
                    " (SELECT extract(epoch FROM written_at)::float8 FROM ticks"
                    "  WHERE status = 'ok' ORDER BY tick_at DESC LIMIT 1)"
                )
            ).one()
        return float(row[0]), None if row[1] is None else float(row[1])

    async def _on_request(self, request: httpx.Request) -> None:
        request.extensions["driftsnap_started"] = time.perf_counter()

    async def _on_response(self, response: httpx.Response) -> None:
        request = response.request
        started = request.extensions.get("driftsnap_started")
        try:
            method = json.loads(request.content).get("method")
        except (ValueError, AttributeError):
            method = None
        label = method if method in RPC_METHODS else "other"
        if isinstance(started, float):
            self.registry.rpc_seconds.labels(label).observe(time.perf_counter() - started)
        if response.status_code != 200:
            self.registry.rpc_errors.labels(f"http_{response.status_code}").inc()


async def _shielded(fn: Callable[..., _T], *args: Any, name: str) -> _T:
    """``fn(*args)`` in a worker thread, shielded: a stop or a cancellation that arrives meanwhile
    waits for it, so the process never leaves with a commit (or a lock session) in flight whose
    outcome it does not know. A thread cannot be interrupted anyway."""
    task = asyncio.create_task(asyncio.to_thread(fn, *args), name=name)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # its failure is the cancelled tick's; not ours
            await task
        raise


def _last_interval(conn: sa.Connection, w: calendar.Week) -> int | None:
    """The interval of the latest tick stored in week ``w``, if any."""
    t = schema.ticks
    last: int | None = conn.execute(
        sa.select(t.c.interval_index)
        .where(t.c.tick_at >= w.start, t.c.tick_at < w.end)
        .order_by(t.c.tick_at.desc())
        .limit(1)
    ).scalar()
    return last


def _sampled_before(conn: sa.Connection, w: calendar.Week) -> bool:
    """Whether any tick before week ``w`` is stored (so ``w`` is not the database's first)."""
    t = schema.ticks
    return (
        conn.execute(sa.select(t.c.tick_at).where(t.c.tick_at < w.start).limit(1)).first()
        is not None
    )


class _FatalError(IntegrityError):
    """A week the daemon cannot sample: retrying will not help, so the daemon stops."""


# ---------------------------------------------------------------------------- entry points


async def _start_metrics(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen before the loop starts: a port in use fails the start, not a running daemon."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}); "
            "set --metrics-port (0 turns the endpoint off)"
        ) from None
    log.info("metrics_listening", url=f"http://{host}:{port}/metrics")
    return runner


async def _serve_metrics(runner: web.AppRunner, done: asyncio.Event) -> None:
    try:
        await done.wait()
    finally:
        await runner.cleanup()


def open_database(settings: config.Settings) -> database.Database:
    """The daemon's database (embedded when no URL is set), failing fast when it is down."""
    return database.open(
        settings.database_url,
        data_dir=settings.data_dir,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": APPLICATION_NAME},
    )


def _check_schema(db: database.Database) -> None:
    """Refuse a schema that is behind; a database that fails meanwhile (it restarts as we start)
    is a one-line StoreError, never a driver traceback."""
    try:
        with db.engine.connect() as conn:
            migrations.check(conn)
    except sa_exc.DBAPIError as exc:
        raise ConnectError(
            f"cannot check the database schema at start: {_reason(exc, db.url)}"
        ) from None


async def _open_patiently(settings: config.Settings, stop: asyncio.Event) -> database.Database:
    """The database, its schema checked; retried for a few seconds while the server is
    unavailable (restarting as the daemon starts), as the loop rides out an outage. A schema
    that is behind fails at once; a server still down after the retries is a one-line error."""
    for attempt in itertools.count(1):
        try:
            db = await asyncio.to_thread(open_database, settings)
        except ConnectError as exc:
            failure: ConnectError = exc
        else:
            try:
                await asyncio.to_thread(_check_schema, db)
                return db
            except ConnectError as exc:
                await asyncio.to_thread(db.close)
                failure = exc
            except BaseException:
                await asyncio.to_thread(db.close)
                raise
        if attempt == STARTUP_ATTEMPTS or stop.is_set():
            raise failure
        log.warning("database_unavailable_at_start", reason=str(failure), attempt=attempt)
        await wait_for_event(stop, STARTUP_RETRY_S)
    raise AssertionError("itertools.count() ended")  # pragma: no cover (it never does)


async def run(
    settings: config.Settings,
    *,
    once: bool,
    stop: asyncio.Event,
    clock: Clock | None = None,
    on_tick: Callable[[TickReport], None] | None = None,
    registry: metrics.Metrics | None = None,
) -> int:
    """Run the daemon until ``stop`` is set (or for one tick): 0 on a clean stop, 1 after too
    many failures in a row (or a failed ``once``). Startup problems raise DriftsnapError."""
    rpc_settings(settings)  # no URL: RUN_HINT before anything starts
    program = config.load_program(settings.program_file)
    async with contextlib.AsyncExitStack() as owned:
        if clock is None and settings.clock == "chain":
            clock = await owned.enter_async_context(ChainClock.for_settings(settings))
        return await _run(
            settings, program, once=once, stop=stop, clock=clock or SystemClock(),
            on_tick=on_tick, registry=registry,
        )  # fmt: skip


async def _run(
    settings: config.Settings,
    program: config.Program,
    *,
    once: bool,
    stop: asyncio.Event,
    clock: Clock,
    on_tick: Callable[[TickReport], None] | None,
    registry: metrics.Metrics | None,
) -> int:
    db = await _open_patiently(settings, stop)  # a schema that is behind: refuse to start
    try:
        if isinstance(clock, ChainClock):
            log.info("chain_clock_starting", rpc=rpc_settings(settings).endpoint)
            if not await clock.start(stop):
                log.info("daemon_stopped", exit_code=0, reason="stopped before the chain answered")
                return 0
        daemon = _Daemon(
            settings=settings,
            program=program,
            db=db,
            clock=clock,
            stop=stop,
            registry=registry or metrics.Metrics(),
            on_tick=on_tick,
            started_at=clock.now(),
            methods=settings.method_presets(),
        )
        log.info(
            "daemon_started",
            cadence_s=settings.cadence.total_seconds(),
            methods=[m.name for m in daemon.methods],
            database=database.display(db.url),
            rpc=rpc_settings(settings).endpoint,
            clock=type(clock).__name__,
            now=clock.now().isoformat(),
            once=once,
        )
        done = asyncio.Event()
        runner = None
        if settings.metrics_port:
            app = metrics.application(daemon.registry, daemon.readiness)
            runner = await _start_metrics(app, settings.metrics_host, settings.metrics_port)

        async def fills_loop() -> None:
            # Ends with the tick loop (done), whichever way that ends.
            stopper = asyncio.create_task(done.wait(), name="fills-stop-watch")
            fills = asyncio.create_task(daemon.fills_loop(), name="fills-poller")
            try:
                await asyncio.wait({stopper, fills}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                fills.cancel()
                results = await asyncio.gather(stopper, fills, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    raise result

        async def tick_loop() -> int:
            try:
                return await daemon.loop(once=once)
            finally:
                done.set()  # the metrics endpoint goes with the loop

        async with asyncio.TaskGroup() as tasks:
            if runner is not None:
                tasks.create_task(_serve_metrics(runner, done), name="metrics-server")
            loop_task = tasks.create_task(tick_loop(), name="tick-loop")
            if settings.fills and not once:
                tasks.create_task(fills_loop(), name="fills-loop")
        code = loop_task.result()
        log.info("daemon_stopped", exit_code=code)
        return code
    except BaseExceptionGroup as group:
        # The task group wraps a lone failure (a ConfigError of the metrics port, say): unwrap it
        # so the CLI turns it into its one line.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await asyncio.to_thread(db.close)


def refuse_root(settings: config.Settings, *, euid: int) -> None:
    """A read-only scorer needs no privilege: refuse uid 0 unless DRIFTSNAP_ALLOW_ROOT says so."""
    if euid == 0 and not settings.allow_root:
        raise ConfigError(
            "refusing to run the daemon as root: run it as an ordinary user (the container "
            "image uses uid 10001), or set DRIFTSNAP_ALLOW_ROOT=true if you mean it"
        )


def main(settings: config.Settings, *, once: bool) -> int:
    """``driftsnap run``: the daemon in its own event loop; SIGTERM and SIGINT set its stop."""
    rpc_settings(settings)  # no node: the hint comes first, there is nothing to refuse yet
    refuse_root(settings, euid=os.geteuid())

    async def supervised() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopping, stop, sig)
        try:
            return await run(settings, once=once, stop=stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(supervised())


def _stopping(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("daemon_stopping", signal=sig.name)
    stop.set()
