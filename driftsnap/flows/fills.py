"""Maker fills from the chain into the store, exactly once.

``chain`` and ``store`` never import each other, so the job that joins them lives here. The
daemon runs a :class:`Poller` (a confirmed :func:`poll_once`, then :func:`finalize` of the week
that ended); ``driftsnap fills check`` calls :func:`check`. One fill type
(:class:`driftsnap.scoring.fill.Fill`) goes from the chain's parser to the store, its authorities
filled in on the way.

One poll, at ``confirmed``:

1. read the watermark (the newest signature whose transaction, and every older one, is stored);
2. read the head slot, then list every newer signature of the Drift program, oldest first;
3. fetch their transactions in batches; a batch's fills, its truncated transactions and the new
   watermark are written in **one** database transaction, so a crash loses at most the batch in
   flight, and re-reading it stores nothing twice;
4. stop at the first transaction the node answers ``null`` for: the watermark stays before it,
   and the next poll asks again.

The finalized pass (:func:`finalize`) lists the same signatures at ``finalized`` behind its own
watermark and marks the fills of each listed signature finalized; it never runs ahead of the
confirmed pass. A week is finalized once that pass has reached past the week's end and no fill
of the week is left unconfirmed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from driftsnap import calendar, logs, protocol
from driftsnap.chain import fills as chain_fills
from driftsnap.chain import snapshot
from driftsnap.chain.errors import ChainError
from driftsnap.store import closes, database, weeks
from driftsnap.store import fills as store_fills
from driftsnap.store.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import sqlalchemy as sa

    from driftsnap import metrics
    from driftsnap.chain import rpc
    from driftsnap.scoring import fill

log = logs.get(__name__)

_T = TypeVar("_T")


async def _read(engine: sa.Engine, fn: Callable[[sa.Connection], _T]) -> _T:
    """``fn`` on a connection, in a worker thread: the event loop, which the daemon's tick loop
    and clock share with the fills, never waits on the database (a locked table, a server that
    hangs until the connect timeout)."""

    def run() -> _T:
        with database.connect(engine) as conn:
            return fn(conn)

    return await asyncio.to_thread(run)


async def _write(engine: sa.Engine, fn: Callable[[sa.Connection], _T]) -> _T:
    """``fn`` in one transaction, in a worker thread (see :func:`_read`)."""

    def run() -> _T:
        with database.begin(engine) as conn:
            return fn(conn)

    return await asyncio.to_thread(run)


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How one poll reads. ``max_transactions`` bounds the work of one poll (the rest waits for
    the next); ``backfill_slots`` bounds how far back the very first poll of a database looks
    (``None``: all the history the node keeps)."""

    program: str = protocol.DRIFT_PROGRAM_ID
    commitment: chain_fills.Commitment = "confirmed"
    batch_size: int = 200
    concurrency: int = 16
    max_transactions: int | None = None
    backfill_slots: int | None = None


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one poll did; ``caught_up`` when every listed signature was processed."""

    signatures: int
    pages: int
    transactions: int
    failed: int
    new_fills: int
    fills_seen: int
    null_pending: int
    truncated: int
    truncated_signatures: tuple[str, ...]
    decode_errors: int
    authority_lookups: int
    caught_up: bool
    watermark_slot: int | None
    ms: float


@dataclass
class _Tally:
    transactions: int = 0
    failed: int = 0
    new_fills: int = 0
    fills_seen: int = 0
    decode_errors: int = 0
    truncated: list[str] = field(default_factory=list)


async def poll_once(
    client: rpc.Client,
    engine: sa.Engine,
    settings: PollSettings | None = None,
    *,
    authorities: chain_fills.Authorities | None = None,
) -> IngestReport:
    """One poll: list, fetch, parse and store every new fill, moving the watermark with them.

    ``authorities`` is a cache the daemon keeps between polls (the store remembers every pair
    too, so a fresh one costs a database query, not RPC calls).
    """
    started = time.perf_counter()
    settings = settings or PollSettings()
    authorities = authorities if authorities is not None else chain_fills.Authorities()
    lookups_before = authorities.lookups
    mark = await _read(
        engine, lambda conn: store_fills.watermark(conn, settings.program, settings.commitment)
    )
    head = await chain_fills.head_slot(client, settings.commitment)
    if mark is not None:
        min_slot: int | None = mark.slot
    elif settings.backfill_slots is not None:
        min_slot = max(0, head - settings.backfill_slots)
    else:
        min_slot = None
    page = await chain_fills.new_signatures(
        client,
        program=settings.program,
        until=None if mark is None else mark.signature,
        min_slot=min_slot,
        commitment=settings.commitment,
    )
    todo = list(page.signatures)
    if settings.max_transactions is not None:
        todo = todo[: settings.max_transactions]
    tally = _Tally()
    done = 0
    null_hit = False
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        everything = start + len(batch) == len(page.signatures)
        processed, mark, null_hit = await _batch(
            client,
            engine,
            settings,
            batch,
            mark=mark,
            head=head if everything else None,
            authorities=authorities,
            tally=tally,
        )
        done += processed
        if null_hit:
            break
    if not page.signatures and mark is not None and (mark.through_slot or 0) < head:
        # Nothing new since the watermark: everything up to the head is processed.
        mark = store_fills.Watermark(
            mark.program, mark.commitment, mark.signature, mark.slot, head, mark.through_time
        )
        caught_up = mark
        await _write(engine, lambda conn: store_fills.set_watermark(conn, caught_up))
    report = IngestReport(
        signatures=len(page.signatures),
        pages=page.pages,
        transactions=tally.transactions,
        failed=tally.failed,
        new_fills=tally.new_fills,
        fills_seen=tally.fills_seen,
        null_pending=len(page.signatures) - done if null_hit else 0,
        truncated=len(tally.truncated),
        truncated_signatures=tuple(tally.truncated),
        decode_errors=tally.decode_errors,
        authority_lookups=authorities.lookups - lookups_before,
        caught_up=done == len(page.signatures),
        watermark_slot=None if mark is None else mark.slot,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    log.info(
        "fills_polled",
        signatures=report.signatures,
        pages=report.pages,
        transactions=report.transactions,
        new_fills=report.new_fills,
        null_pending=report.null_pending,
        truncated=report.truncated,
        decode_errors=report.decode_errors,
        caught_up=report.caught_up,
        watermark_slot=report.watermark_slot,
        ms=report.ms,
    )
    if report.truncated:
        log.warning("fills_logs_truncated", signatures=list(report.truncated_signatures))
    return report


async def _batch(
    client: rpc.Client,
    engine: sa.Engine,
    settings: PollSettings,
    batch: Sequence[chain_fills.SignatureInfo],
    *,
    mark: store_fills.Watermark | None,
    head: int | None,
    authorities: chain_fills.Authorities,
    tally: _Tally,
) -> tuple[int, store_fills.Watermark | None, bool]:
    """Fetch and store one batch; (signatures processed, the new watermark, a null was hit)."""
    # A failed transaction carries no fills: its listing says so, no need to fetch it.
    wanted = [s.signature for s in batch if not s.failed]
    fetched = await chain_fills.fetch(
        client, wanted, commitment=settings.commitment, concurrency=settings.concurrency
    )
    by_signature = dict(zip(wanted, fetched, strict=True))
    txs: list[chain_fills.Transaction] = []
    processed = 0
    null_hit = False
    for info in batch:
        if info.failed:
            tally.failed += 1
            processed += 1
            continue
        tx = by_signature[info.signature]
        if tx is None:
            # Not available yet: nothing at or after it may pass the watermark.
            null_hit = True
            log.info("fills_transaction_pending", signature=info.signature, slot=info.slot)
            break
        txs.append(tx)
        processed += 1
    if processed == 0:
        return 0, mark, null_hit
    fills = [f for tx in txs for f in tx.fills]
    users = {u for f in fills for u in (f.maker, f.taker) if u is not None}
    unknown = [u for u in users if u not in authorities.known]
    if unknown:
        authorities.remember(await _read(engine, lambda c: store_fills.authorities(c, unknown)))
    owners = await authorities.resolve(client, users, commitment=settings.commitment)
    rows = [_attributed(f, owners, settings.commitment) for f in fills]
    truncated = [
        store_fills.Truncated(tx.signature, tx.slot, tx.block_time, len(tx.fills))
        for tx in txs
        if tx.truncated
    ]
    last = batch[processed - 1]
    complete = head is not None and not null_hit
    # Oldest first: every signature of a slot before the last one processed is processed.
    through = head if complete else max((mark.through_slot or 0) if mark else 0, last.slot - 1)
    new_mark = store_fills.Watermark(
        program=settings.program,
        commitment=settings.commitment,
        signature=last.signature,
        slot=last.slot,
        through_slot=through,
        through_time=None,
    )
    new = await _write(
        engine,
        lambda conn: store_fills.write(conn, rows, watermark=new_mark, truncated=truncated),
    )
    tally.transactions += len(txs)
    tally.new_fills += new
    tally.fills_seen += len(rows)
    tally.decode_errors += sum(tx.decode_errors for tx in txs)
    tally.truncated += [t.signature for t in truncated]
    return processed, new_mark, null_hit


def _attributed(
    record: fill.Fill, owners: dict[str, str | None], commitment: chain_fills.Commitment
) -> fill.Fill:
    """``record`` with its maker's and taker's authorities, as seen at ``commitment``."""
    return dataclasses.replace(
        record,
        maker_authority=None if record.maker is None else owners.get(record.maker),
        taker_authority=None if record.taker is None else owners.get(record.taker),
        commitment=commitment,
    )


# ---------------------------------------------------------------------------- finality


@dataclass(frozen=True, slots=True)
class FinalizeReport:
    """The finalized pass's work and the week's verdict."""

    finality: store_fills.WeekFinality
    signatures: int
    pages: int
    marked: int  # fills newly seen at finalized
    behind_confirmed: bool  # stopped where the confirmed pass has not been yet


async def finalize(
    client: rpc.Client,
    engine: sa.Engine,
    week: calendar.Week,
    *,
    program: str = protocol.DRIFT_PROGRAM_ID,
    chunk: int = 1000,
) -> FinalizeReport:
    """Re-check fills at ``finalized`` and record whether ``week`` is final (``fill_weeks``).

    A signature listed at ``finalized`` needs no second ``getTransaction``: the same signature is
    the same transaction, already parsed by the confirmed pass. What the pass proves is that the
    transaction is in the finalized chain; a fill it never lists stays ``confirmed`` and keeps
    the week from being finalized.
    """
    confirmed, mark = await _read(
        engine,
        lambda conn: (
            store_fills.watermark(conn, program, "confirmed"),
            store_fills.watermark(conn, program, "finalized"),
        ),
    )
    head = await chain_fills.head_slot(client, "finalized")
    covered_up_to = None if confirmed is None else confirmed.through_slot
    page = chain_fills.Page((), 0)
    marked = 0
    behind = False
    if confirmed is not None and covered_up_to is not None:
        page = await chain_fills.new_signatures(
            client,
            program=program,
            until=None if mark is None else mark.signature,
            min_slot=await _finalized_start(engine, confirmed, mark),
            commitment="finalized",
        )
        todo = [s for s in page.signatures if s.slot <= covered_up_to]
        behind = len(todo) < len(page.signatures)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            last = part[-1]
            everything = start + len(part) == len(todo) and not behind
            through = min(head, covered_up_to) if everything else last.slot - 1
            when = await chain_fills.block_time(client, through) if everything else None
            if when is None and last.block_time is not None and not everything:
                # Every signature before the last one processed is processed: the pass
                # covers at least up to its time (to the second, a slot shares it).
                when = last.block_time - 1
            mark = store_fills.Watermark(
                program, "finalized", last.signature, last.slot, through, _utc(when)
            )
            marked += await _write(engine, functools.partial(_mark_finalized, part, mark))
        if not page.signatures and mark is not None:
            through = min(head, covered_up_to)
            if (mark.through_slot or 0) < through:
                when = await chain_fills.block_time(client, through)
                mark = store_fills.Watermark(
                    program, "finalized", mark.signature, mark.slot, through, _utc(when)
                )
                await _write(engine, functools.partial(store_fills.set_watermark, mark=mark))
    finality = await _write(
        engine, functools.partial(store_fills.record_finality, week=week, finalized_through=mark)
    )
    log.info(
        "fills_finality",
        week=str(week),
        finalized=finality.finalized,
        covered=finality.covered,
        fills=finality.fills,
        unconfirmed=finality.unconfirmed,
        marked=marked,
    )
    return FinalizeReport(finality, len(page.signatures), page.pages, marked, behind)


def _mark_finalized(
    part: Sequence[chain_fills.SignatureInfo], mark: store_fills.Watermark, conn: sa.Connection
) -> int:
    marked = store_fills.mark_finalized(conn, [s.signature for s in part if not s.failed])
    store_fills.set_watermark(conn, mark)
    return marked


async def _finalized_start(
    engine: sa.Engine, confirmed: store_fills.Watermark, mark: store_fills.Watermark | None
) -> int:
    """Where the finalized pass starts listing: its watermark, else the oldest fill not yet
    finalized, else where the confirmed pass stands."""
    if mark is not None:
        return mark.slot
    oldest = await _read(engine, store_fills.oldest_confirmed_slot)
    return confirmed.slot if oldest is None else oldest


def _utc(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, tz=UTC)


# ---------------------------------------------------------------------------- reports


async def check(
    client: rpc.Client,
    engine: sa.Engine,
    week: calendar.Week | None = None,
    *,
    program: str = protocol.DRIFT_PROGRAM_ID,
) -> list[store_fills.MarketCheck]:
    """``driftsnap fills check [--week W]``: fill record id gaps per market and week.

    The perp markets' ``next_fill_record_id`` is read from the chain so that fills missing at
    the newest end are found too (once the confirmed pass has caught up with the read).
    """
    weeks, indexes = await _read(
        engine,
        lambda conn: (
            [week] if week is not None else store_fills.weeks_with_fills(conn),
            store_fills.market_indexes(conn, "perp"),
        ),
    )
    next_ids: dict[int, int] = {}
    slot = None
    if indexes:
        addresses = {i: snapshot.perp_market_address(i) for i in indexes}
        next_ids, slot = await chain_fills.next_fill_record_ids(
            client, addresses, commitment="confirmed"
        )
    return await _read(
        engine,
        lambda conn: [
            c
            for w in weeks
            for c in store_fills.check(
                conn, w, next_ids=next_ids, next_ids_slot=slot, program=program
            )
        ],
    )


# ---------------------------------------------------------------------------- the daemon's job


class Poller:
    """The writer daemon's fills job, one :meth:`poll` at a time: a confirmed poll, and once it
    has caught up, the finalized pass of the week before ``now`` until that week is final (the
    week close refuses a week whose fills are not).

    Each batch of fills is committed with its watermark (:func:`poll_once`), so a stop or a crash
    loses nothing. A failed poll is logged and counted, and the next one starts from the same
    watermark; nothing here raises for the chain or the database.
    """

    def __init__(
        self,
        client: rpc.Client,
        engine: sa.Engine,
        settings: PollSettings,
        registry: metrics.Metrics,
    ) -> None:
        """A job reading through ``client`` and writing to ``engine``."""
        self._client = client
        self._engine = engine
        self._settings = settings
        self._registry = registry
        self._authorities = chain_fills.Authorities()  # kept across polls: they never change
        self._final: set[calendar.Week] = set()

    async def poll(self, now: datetime) -> None:
        """One confirmed poll; the finalized pass of the week before ``now`` if it caught up."""
        if await self._confirmed():
            await self._finalize(calendar.Week.containing(now).previous())

    async def _confirmed(self) -> bool:
        """One confirmed poll; whether it caught up with the node."""
        m = self._registry
        try:
            report = await poll_once(
                self._client, self._engine, self._settings, authorities=self._authorities
            )
        except (ChainError, StoreError) as exc:
            m.fills_polls.labels(status="failed").inc()
            log.warning("fills_poll_failed", reason=str(exc))
            return False
        m.fills_polls.labels(status="ok").inc()
        m.fills_ingested.inc(report.new_fills)
        m.fills_truncated.inc(report.truncated)
        m.fills_null_pending.set(report.null_pending)
        if report.watermark_slot is not None:
            m.fills_watermark_slot.set(report.watermark_slot)
        # poll_once logs the poll's one summary line (fills_polled) and the truncated
        # transactions (fills_logs_truncated) itself.
        return report.caught_up and not report.null_pending

    async def _finalize(self, ended: calendar.Week) -> None:
        if ended in self._final:
            return
        try:
            if not await _read(self._engine, functools.partial(_closable, week=ended)):
                return
            report = await finalize(
                self._client, self._engine, ended, program=self._settings.program
            )
        except (ChainError, StoreError) as exc:
            log.warning("fills_finalize_failed", week=str(ended), reason=str(exc))
            return
        if report.finality.finalized:
            self._final.add(ended)
            log.info("fills_week_finalized", week=str(ended), fills=report.finality.fills)


def _closable(conn: sa.Connection, *, week: calendar.Week) -> bool:
    """Whether ``week`` may still close: sampled by this database (it has a seed commitment)
    and not closed yet (a closed week's fills are immutable)."""
    return weeks.record(conn, week) is not None and not closes.closed_weeks(conn, [week])


# ---------------------------------------------------------------------------- cross-check


async def sample_maker_volume(
    client: rpc.Client,
    engine: sa.Engine,
    authorities: Sequence[str] | None = None,
) -> int:
    """Store ``UserStats.maker_volume30d`` of ``authorities`` (default: every maker authority
    with stored fills); returns the slot the sample stands for. Take one per cadence tick or
    per poll; :func:`cross_check` compares two."""
    if authorities is None:
        authorities = await _read(engine, store_fills.maker_authorities)
    volumes, slot = await chain_fills.maker_volumes(client, authorities, commitment="confirmed")
    when = await chain_fills.block_time(client, slot) if volumes else None
    samples = [
        store_fills.VolumeSample(v.authority, v.maker_volume_30d, v.last_ts)
        for v in volumes.values()
    ]
    if samples and when is not None:
        at = when
        await _write(engine, lambda conn: store_fills.write_volume_samples(conn, slot, at, samples))
    return slot


def cross_check(
    conn: sa.Connection,
    from_slot: int,
    to_slot: int,
    *,
    relative: float = 0.01,
    absolute: int = 1_000_000,
) -> list[store_fills.VolumeCrossCheck]:
    """The authorities whose ``maker_volume30d`` moved between two samples by more than the
    ingested fills say (beyond ``relative`` of the volume plus ``absolute`` micro-USD).

    Meaningful once the confirmed ingest has passed ``to_slot``; large differences are logged.
    """
    checks = store_fills.cross_check(conn, from_slot, to_slot)
    large = [c for c in checks if c.large(relative=relative, absolute=absolute)]
    for c in large:
        log.warning(
            "fills_volume_mismatch",
            authority=c.authority,
            from_slot=from_slot,
            to_slot=to_slot,
            chain_delta=c.chain_delta,
            ingested=c.ingested,
            decay_estimate=c.decay_estimate,
            difference=c.difference,
        )
    return large
