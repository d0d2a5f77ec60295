"""One cadence tick: the week's schedule, the sample instant, the snapshot, its scores, one write.

A :class:`Ticker` takes the ticks of the committed schedule one :meth:`~Ticker.step` at a time::

    wait for the next interval's sample instant (drawn from the week's committed seed)
      -> snapshot.take (RPC)          rejected: a `rejected` header with the reason, no scores
      -> judged against the last one  a market that lost most of its orders at once: rejected
      -> scorer.score per method      (a worker thread; a book it refuses: rejected)
      -> one transaction               the misses owed + the unsampled gap + this tick
      -> metrics, one `tick_written` log line
    the cyclic GC is off from the read to the write, and collects the tick's young cycles after

A mainnet-scale read parses a ~60 MB getProgramAccounts answer into hundreds of thousands of
containers and builds books and rows from them; none of it forms reference cycles, so a
collection during the tick would only walk that tree and the arrays again and again. The GC is
therefore disabled for the whole tick (restored as it was, whatever happens) and a young
collection runs once the tick is written, while the daemon waits for the next instant.

A tick that fails (RPC down, database down) is logged, counted and owed: its interval is written
as a `missed` tick, with the reason, by the first write that succeeds. So is one the ticker woke
for more than :data:`MAX_LATENESS` after its instant (a stalled process, a clock that jumped):
the week close checks every tick's time against the seed. Intervals nobody sampled (no daemon
was writing, also over Monday 00:00, or a tick overran) are recorded as `missed` the same way,
so every interval has a header and a week's coverage never overstates.

A book that cannot be right is rejected, never stored as a fact: the snapshot rejects one without
any User account; the ticker one where a market that had at least ``book_drop_min_orders``
orders at the last snapshot lost more than ``max_book_drop`` of them at once (a node that dropped
accounts). The baseline is the last snapshot that had books, rejected for this reason or not, so
a market that really emptied costs one tick, not the rest of the week. It lives in memory: the
first tick after a start has none, and only the snapshot's own checks hold for it.

The first tick of a week opens it: a seed is drawn, kept in a seed file, and its commitment
stored; the seed of the week before is revealed. The daemon (:mod:`driftsnap.daemon`) owns the
loop around the steps; this module never imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

from driftsnap import calendar, logs, sampling, tasks
from driftsnap.chain import snapshot
from driftsnap.chain.errors import ChainError
from driftsnap.errors import DriftsnapError
from driftsnap.flows.errors import ScheduleError
from driftsnap.scoring import scorer
from driftsnap.store import closes, database, snapshots, weeks
from driftsnap.store import fills as store_fills
from driftsnap.store.errors import LostLockError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import sqlalchemy as sa

    from driftsnap import config, metrics
    from driftsnap.chain import rpc
    from driftsnap.chain.clock import Clock
    from driftsnap.scoring import methods
    from driftsnap.store import locks
    from driftsnap.store.seeds import Seeds

log = logs.get(__name__)

MAX_REASON: Final = 300
# A tick taken later than this after its sample instant would fail the week close's check of the
# instants (sampling.verify's tolerance): the interval is recorded as missed instead.
MAX_LATENESS: Final = timedelta(seconds=5)
NOBODY_SAMPLED: Final = "no snapshot was taken (no daemon was writing)"
OVERRUN: Final = "no snapshot was taken (the daemon was busy, or its clock jumped past the instant)"


@dataclass(frozen=True, slots=True)
class TickSettings:
    """What a tick needs of the settings (:func:`driftsnap.parts.tick_settings` builds it)."""

    cadence: timedelta
    methods: tuple[methods.Method, ...]
    snapshot: snapshot.SnapshotSettings
    # The params hashes of the methods whose per-maker detail is stored (the others: totals).
    detail: frozenset[str] = frozenset()
    # Markets by name or index; empty: those paying a score pool in the week being sampled.
    markets: tuple[str | int, ...] = ()
    # A market with at least book_drop_min_orders orders at the last snapshot that has lost more
    # than this share of them at once is a rejected tick (1.0: never).
    max_book_drop: float = 0.9
    book_drop_min_orders: int = 50


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


StepKind = Literal["sampled", "late", "week_ended", "stopped", "unscheduled"]


@dataclass(frozen=True, slots=True)
class Step:
    """What one step came to: a tick ``sampled`` (its report; none if it failed or was
    abandoned), woken ``late`` (owed as missed), the week's last interval done
    (``week_ended``), ``stopped`` while waiting, or no schedule to be had (``unscheduled``: the
    database failed; the interval is recorded once the week opens)."""

    kind: StepKind
    report: TickReport | None = None

    @property
    def ok(self) -> bool:
        """Whether an ok snapshot was written."""
        return self.report is not None and self.report.status == "ok"


def reason(exc: BaseException) -> str:
    """One line for a failed tick, without secrets: the store and the reader scrub theirs."""
    text = str(exc) if isinstance(exc, DriftsnapError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_REASON]


def error_kind(exc: BaseException) -> str:
    """A bounded metrics label: the error class in snake case (``node_behind``...)."""
    return kind_of(type(exc))


def kind_of(cls: type[BaseException]) -> str:
    """:func:`error_kind` of any error of class ``cls``."""
    name = cls.__name__.removesuffix("Error") or "error"
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def collapsed(
    snap: snapshot.Snapshot, before: dict[int, int], *, max_drop: float, min_orders: int
) -> snapshot.Snapshot:
    """``snap`` rejected if a market had at least ``min_orders`` orders in ``before`` (the last
    snapshot's counts by market index) and lost more than ``max_drop`` of them."""
    if not snap.ok:
        return snap
    for market in snap.markets:
        was = before.get(market.market_index, 0)
        now = snap.books[market.market_index].order_count
        if was < min_orders or now >= was * (1 - max_drop):
            continue
        rejection = snapshot.Rejection.BOOK_COLLAPSE
        detail = (
            f"{market.name} has {now} orders, {was} at the last snapshot: more than "
            f"{max_drop:.0%} of them gone at once (DRIFTSNAP_MAX_BOOK_DROP), as when a node "
            "loses accounts; the next snapshot is judged against this one"
        )
        log.warning("snapshot_rejected", reason=rejection.value, detail=detail, slot=snap.slot)
        return dataclasses.replace(snap, rejection=rejection, detail=detail, books={})
    return snap


def below(snap: snapshot.Snapshot, floor: int) -> snapshot.Snapshot:
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


def unscorable(snap: snapshot.Snapshot, exc: DriftsnapError) -> snapshot.Snapshot:
    """``snap`` rejected because the scorer refused one of its books."""
    rejection = snapshot.Rejection.UNSCORABLE
    detail = reason(exc)
    log.warning("snapshot_rejected", reason=rejection.value, detail=detail, slot=snap.slot)
    return dataclasses.replace(snap, rejection=rejection, detail=detail, books={})


class Ticker:
    """The writer's ticks, one :meth:`step` at a time, and what they owe.

    ``failures`` counts the failed ticks in a row (the daemon gives up past its threshold) and
    ``last_failure`` says why the last one failed.
    """

    def __init__(
        self,
        settings: TickSettings,
        program: config.Program,
        *,
        engine: sa.Engine,
        client: rpc.Client,
        clock: Clock,
        seeds: Seeds,
        writer: locks.Writer,
        stop: asyncio.Event,
        registry: metrics.Metrics,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        """A ticker writing through ``writer``'s lock, from the clock's time on."""
        self.settings = settings
        self.program = program
        self.engine = engine
        self.client = client
        self.clock = clock
        self.seeds = seeds
        self.writer = writer
        self.stop = stop
        self.registry = registry
        self.on_tick = on_tick
        self.started_at = clock.now()
        self.failures = 0
        self.last_failure = ""
        self._markets: list[str | int] = []  # by index, once a book was read
        self._last_slot: int | None = None
        self._orders: dict[int, int] = {}  # each market's orders at the last snapshot with books
        self._handled: tuple[calendar.Week, int] | None = None  # the last interval stepped
        self._owed: list[snapshots.Tick] = []  # missed ticks not yet written
        self._schedules: dict[calendar.Week, sampling.Schedule] = {}

    # ------------------------------------------------------------ one step

    async def step(self, *, announce: bool = False) -> Step:
        """Wait for the next interval's sample instant and take its tick (see :class:`Step`).

        ``announce`` logs the wait (``next_tick``) at info (``run --once``, a console on a TTY),
        else at debug.
        """
        now = self.clock.now()
        try:
            schedule = await self._schedule(now)
        except ScheduleError:
            raise
        except StoreError as exc:
            # No schedule, no instant to record a miss at: the missed intervals are recorded
            # once the week opens.
            self._failed(reason(exc), exc)
            return Step("unscheduled")
        due = self._next(schedule, now)
        if due is None:  # the week's last interval is done: the next week opens at its start
            await self.clock.sleep_until(schedule.week.end, self.stop)
            return Step("stopped" if self.stop.is_set() else "week_ended")
        interval, at = due
        (log.info if announce else log.debug)(
            "next_tick",
            in_s=round(max(0.0, (at - now).total_seconds()), 1),
            at=at.isoformat(),
            interval=interval,
        )
        if not await self.clock.sleep_until(at, self.stop):
            return Step("stopped")
        self._handled = (schedule.week, interval)
        late = self.clock.now() - at
        if late > MAX_LATENESS:
            # Woken too late (a stalled process, a chain clock that could not see the node): a
            # snapshot now would not be of the instant the seed committed to.
            self._late(interval, at, late)
            return Step("late")
        with snapshot.paused_gc():
            report = await self._sample(schedule, interval, at)
        # The cycles the tick made (futures, exceptions, driver objects) are all young: none was
        # collected during it. Now, with the tick written, is the idle time to free them.
        gc.collect(1)
        return Step("sampled", report)

    def _next(self, schedule: sampling.Schedule, now: datetime) -> tuple[int, datetime] | None:
        """The next interval to sample: never one already handled (a fast or stepped clock may
        still be inside it)."""
        due = schedule.next_sample(now)
        handled = self._handled
        if due is None or handled is None or handled[0] != schedule.week or due[0] > handled[1]:
            return due
        j = handled[1] + 1
        return (j, schedule.sample_at(j)) if j < schedule.intervals else None

    def _late(self, interval: int, at: datetime, late: timedelta) -> None:
        why = (
            f"woke {late.total_seconds():.1f} s after the sample instant (at most "
            f"{MAX_LATENESS.total_seconds():g} s): not sampled"
        )
        log.warning("tick_late", interval=interval, tick_at=at.isoformat(), reason=why)
        self.registry.ticks.labels("late").inc()
        # Written as missed with the next write; not a failure of the node or the database, so
        # it does not count towards giving up.
        self._owed.append(snapshots.Tick(at=at, interval=interval, status="missed", reason=why))

    # ------------------------------------------------------------ sample, score, write

    async def _sample(
        self, schedule: sampling.Schedule, interval: int, at: datetime
    ) -> TickReport | None:
        """Take, score and write the tick of ``interval`` scheduled at ``at``."""
        taken_at = self.clock.now()
        # With the chain clock, the slot whose block is in force at the instant: the book must
        # not be older than it.
        floor = self.clock.slot
        started = time.perf_counter()
        try:
            snap = await self._take()
        except DriftsnapError as exc:
            self.registry.rpc_errors.labels(error_kind(exc)).inc()
            self._owe(interval, at, reason(exc), exc)
            return None
        if snap is None:
            log.info("tick_abandoned", interval=interval, reason="stopping")
            return None
        if floor is not None:
            snap = below(snap, floor)
            if snap.ok and snap.ts_estimated:
                # The reader put the wall clock's time on the books, which says nothing about a
                # chain the daemon follows by its block times: a failed read, not a book.
                no_time = ChainError(
                    f"getBlockTime: the node had no block time for slot {snap.slot} (the chain "
                    "clock cannot let the wall clock stand in)"
                )
                self._owe(interval, at, reason(no_time), no_time)
                return None
        if snap.ok:
            counts = {index: book.order_count for index, book in snap.books.items()}
            snap = collapsed(
                snap,
                self._orders,
                max_drop=self.settings.max_book_drop,
                min_orders=self.settings.book_drop_min_orders,
            )
            self._orders = counts
        rpc_ms = _ms(started)
        market_rows: list[snapshots.MarketSnapshot] = []
        if snap.ok:
            # Ask by index from now on (one gPA less), and reject a slot that goes backwards.
            self._markets = list(snap.market_indexes)
            self._last_slot = snap.slot
            try:
                market_rows = await asyncio.to_thread(self._score, snap)
            except DriftsnapError as exc:
                # A book the scorer refuses (sizes beyond its exact arithmetic): not a fact.
                snap = unscorable(snap, exc)
        tick = snapshots.Tick(
            at=at,
            interval=interval,
            status="ok" if snap.ok else "rejected",
            reason="" if snap.ok else f"{snap.rejection}: {snap.detail}"[:MAX_REASON],
            taken_at=taken_at,
            gpa_slot=snap.slot,
            market_slot=snap.market_slot,
            duration_ms=_ms(started),
        )
        score_ms = _ms(started) - rpc_ms
        write_started = time.perf_counter()
        try:
            missed, stored = await tasks.shielded(
                self._write, schedule, tick, market_rows, name="tick-write"
            )
        except LostLockError as exc:
            log.warning("writer_lock_lost", reason=str(exc), dropped_missed=len(self._owed))
            # The new writer records the intervals it finds empty; ours are its to record now.
            self._owed.clear()
            self.registry.writer.set(0)
            return None
        except (StoreError, OSError) as exc:
            self._owe(interval, at, reason(exc), exc)
            return None
        write_ms = _ms(write_started)
        self.failures, self.last_failure = 0, ""
        report = TickReport(
            status=tick.status,
            interval=interval,
            at=at,
            reason=tick.reason,
            slot=snap.slot,
            markets=len(market_rows),
            orders=sum(m.book.order_count for m in market_rows),
            makers=len(set().union(*(m.book.authorities() for m in market_rows))),
            missed_written=missed,
            ms=tick.duration_ms + write_ms,
            rpc_ms=rpc_ms,
            score_ms=score_ms,
            write_ms=write_ms,
        )
        self._record_metrics(report, snap, stored=stored, at=at)
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

    async def _take(self) -> snapshot.Snapshot | None:
        """A snapshot, or None if a stop came first (the read in flight is abandoned)."""
        wanted = self._markets or self._default_markets()
        take = asyncio.create_task(
            snapshot.take(self.client, self.settings.snapshot, wanted, last_slot=self._last_slot),
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

    def _default_markets(self) -> list[str | int]:
        if self.settings.markets:
            return list(self.settings.markets)
        return self.program.paid_markets(calendar.Week.containing(self.clock.now()))

    def _score(self, snap: snapshot.Snapshot) -> list[snapshots.MarketSnapshot]:
        methods = self.settings.methods
        return [
            snapshots.MarketSnapshot(
                snap.books[index], tuple(scorer.score(snap.books[index], m) for m in methods)
            )
            for index in snap.market_indexes
        ]

    def _owe(self, interval: int, at: datetime, why: str, exc: BaseException) -> None:
        """A failed tick: remember to write its interval as missed, and count the failure."""
        self._owed.append(snapshots.Tick(at=at, interval=interval, status="missed", reason=why))
        self._failed(why, exc)

    def _failed(self, why: str, exc: BaseException) -> None:
        self.failures += 1
        self.last_failure = why
        self.registry.ticks.labels("failed").inc()
        log.warning(
            "tick_failed",
            reason=why,
            error=type(exc).__name__,
            consecutive=self.failures,
            owed=len(self._owed),
        )

    def _record_metrics(
        self, report: TickReport, snap: snapshot.Snapshot, *, stored: bool, at: datetime
    ) -> None:
        m = self.registry
        if report.missed_written:
            m.ticks.labels("missed").inc(report.missed_written)
        if not stored:
            return
        m.ticks.labels(report.status).inc()
        for why, n in snap.skipped.items():
            m.skipped_accounts.labels(why).inc(n)
        if report.status != "ok":
            return
        now = time.time()
        m.tick_seconds.observe(max(0.0, (self.clock.now() - at).total_seconds()))
        m.last_ok_slot.set(snap.slot)
        m.last_ok_time.set(now)
        if snap.ts is not None:
            m.snapshot_lag.set(max(0.0, now - snap.ts))
        for market in snap.markets:
            m.orders.labels(market.name).set(snap.books[market.market_index].order_count)

    # ------------------------------------------------------------ the week's schedule

    async def _schedule(self, now: datetime) -> sampling.Schedule:
        week = calendar.Week.containing(now)
        if week not in self._schedules:
            self._schedules[week] = await asyncio.to_thread(self._open_week, week)
        return self._schedules[week]

    def _open_week(self, week: calendar.Week) -> sampling.Schedule:
        """The week's schedule; its seed drawn and committed if this is the week's first tick."""
        cadence = self.settings.cadence
        with database.begin(self.engine) as conn:
            record = weeks.record(conn, week)
            if record is None:
                seed = sampling.new_seed()
                # The file first: a committed seed always has its file.
                self.seeds.save(week, seed)
                commitment = sampling.commitment(seed)
                weeks.commit_seed(conn, week, cadence=cadence, seed_sha256=commitment)
                log.info("week_opened", week=str(week), commitment=commitment)
            else:
                if record.cadence != cadence:
                    raise ScheduleError(
                        f"week {week} is sampled every {record.cadence.total_seconds():g} s; "
                        f"the cadence ({cadence.total_seconds():g} s) can change from next week"
                    )
                found = record.seed or self.seeds.read(week, record.seed_sha256)
                if found is None:
                    raise ScheduleError(
                        f"week {week} is committed to seed sha256 {record.seed_sha256[:16]}..., "
                        f"whose secret is not in {self.seeds.directory}: copy it from the daemon "
                        "that committed it"
                    )
                seed = found
            weeks.set_pools(conn, week, self.program.score_pools(week))
            store_fills.set_volume_pool(conn, week, self.program.volume_pool_for(week))
            weeks.set_participants(conn, week, self.program.terms(week).participants)
            self._reveal_previous(conn, week)
        return sampling.Schedule(week, cadence, seed)

    def _reveal_previous(self, conn: sa.Connection, week: calendar.Week) -> None:
        """Reveal the seed of the week before ``week``: all its instants are past, so nothing is
        left to predict, and a close-week running elsewhere (a CronJob) finds it stored."""
        prev = week.previous()
        record = weeks.record(conn, prev)
        if record is None or record.seed is not None:
            return
        seed = self.seeds.read(prev, record.seed_sha256)
        if seed is None:
            log.warning(
                "seed_not_revealed",
                week=str(prev),
                reason=f"no seed file in {self.seeds.directory}",
            )
            return
        weeks.reveal_seed(conn, prev, seed)
        log.info("seed_revealed", week=str(prev), commitment=record.seed_sha256)

    # ------------------------------------------------------------ the transaction

    def _write(
        self,
        schedule: sampling.Schedule,
        tick: snapshots.Tick,
        market_rows: Sequence[snapshots.MarketSnapshot],
    ) -> tuple[int, bool]:
        """One transaction: the missed ticks owed, the unsampled gap, then this tick.

        Returns (missed ticks written, whether this tick was written).
        """
        self.writer.ensure()
        missed = 0
        cadence = self.settings.cadence
        with database.begin(self.engine) as conn:
            # In time order, each after the gap before it: the gap is measured from the last
            # stored tick, so an owed tick written first would hide the intervals passed over
            # before it (a stall, a chain that jumped) and they would never get a header.
            for owed in sorted(self._owed, key=lambda t: t.at):
                week = calendar.Week.containing(owed.at)
                owed_schedule = self._schedules.get(week)
                if owed_schedule is not None:
                    missed += self._write_gap(conn, owed_schedule, owed.interval)
                if not snapshots.interval_taken(conn, week, owed.interval, cadence):
                    missed += snapshots.write_tick(conn, owed)
            missed += self._write_gap(conn, schedule, tick.interval)
            taken = snapshots.interval_taken(conn, schedule.week, tick.interval, cadence)
            stored = not taken and snapshots.write_tick(
                conn,
                tick,
                market_rows,
                methods=self.settings.methods,
                detail=self.settings.detail,
            )
        # Only once the transaction has committed are the misses paid.
        self._owed.clear()
        return missed, stored

    def _write_gap(self, conn: sa.Connection, schedule: sampling.Schedule, upto: int) -> int:
        """Write the intervals of the week before ``upto`` that nobody sampled as missed."""
        week = schedule.week
        last = snapshots.last_interval(conn, week)
        written = 0
        if last is not None:
            first = last + 1
        elif self.started_at < week.start or snapshots.sampled_before(conn, week):
            # This process was running when the week began, or an earlier week was sampled
            # (the daemon was down over Monday 00:00): the week is ours to account for from
            # its start, and the week before to its end.
            first = 0
            written += self._write_previous_gap(conn, week)
        else:
            return 0  # a database's first week starts with its first tick
        written += self._write_missed(conn, schedule, range(first, upto))
        return written

    def _write_previous_gap(self, conn: sa.Connection, week: calendar.Week) -> int:
        """The intervals after the last tick of the week before ``week``, as missed."""
        prev = week.previous()
        last = snapshots.last_interval(conn, prev)
        if last is None or closes.closed_weeks(conn, [prev]):
            return 0  # never sampled (no instants to name), or closed: immutable
        schedule = self._schedules.get(prev) or self._past_schedule(conn, prev)
        if schedule is None:
            log.warning("missed_intervals_unrecorded", week=str(prev), reason="no sampling seed")
            return 0
        return self._write_missed(conn, schedule, range(last + 1, schedule.intervals))

    def _past_schedule(self, conn: sa.Connection, week: calendar.Week) -> sampling.Schedule | None:
        record = weeks.record(conn, week)
        if record is None:
            return None
        seed = record.seed or self.seeds.read(week, record.seed_sha256)
        return None if seed is None else sampling.Schedule(week, record.cadence, seed)

    def _write_missed(
        self, conn: sa.Connection, schedule: sampling.Schedule, intervals: range
    ) -> int:
        written = 0
        for k in intervals:
            at = schedule.sample_at(k)
            # This process's last failure explains the intervals since it started, not before;
            # without one, an interval it was running for was passed over (a tick overran it,
            # or the clock jumped: a wall clock stepped, a chain that went on while unseen).
            why = NOBODY_SAMPLED if at < self.started_at else self.last_failure or OVERRUN
            gap = snapshots.Tick(at=at, interval=k, status="missed", reason=why)
            written += snapshots.write_tick(conn, gap)
        if written:
            log.info(
                "missed_intervals_recorded",
                week=str(schedule.week),
                first=intervals.start,
                last=intervals.stop - 1,
            )
        return written


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
