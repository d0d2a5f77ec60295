"""Maker fills from the chain into the store, exactly once.

``chain`` and ``store`` never import each other, so the job that joins them lives here. The
daemon runs a :class:`Poller` (a confirmed :func:`poll_once`, then :func:`finalize` of the week
that ended); ``driftsnap fills check`` calls :func:`check`. One fill type
(:class:`driftsnap.scoring.fill.Fill`) goes from the chain's parser to the store, its authorities
filled in on the way.

One poll, at ``confirmed``:

1. read the watermark (the newest signature whose transaction, and every older one, is stored);
2. read the head slot, then list every newer signature of the Drift program, oldest first;
3. fetch their transactions in batches; a batch's fills, its truncated, rejected (forged logs)
   and unread transactions and the new watermark are written in **one** database transaction,
   so a crash loses at most the batch in flight, and re-reading it stores nothing twice;
4. stop at the first transaction not read: one the node answers ``null`` for, one it errors on
   (or answers with something that is not a transaction), or one whose logs are cut without a
   marker. The watermark stays before it and the next poll asks again; the fills of the other
   transactions of the batch are stored all the same. One not served readably is asked again
   with backoff (:class:`PollSettings`) and, once its attempts are spent, recorded unreadable,
   reported and passed; it is still asked now and then, and stored the day it reads. When not
   one transaction of a batch is served the node is failing, not a transaction: the poll fails
   and no attempt is spent.

A listing that does not page down (a node ignoring ``before``) fails the poll with a warning
(:class:`driftsnap.chain.fills.PagingError`); the daemon counts it and tries again next time.
The daemon's :class:`Poller` also samples the markets' ``next_fill_record_id`` now and then
(:func:`sample_counters`), so ``fills check`` sees a week in which counters moved but nothing was
stored as the gap it is.

The finalized pass (:func:`finalize`) lists the same signatures at ``finalized`` behind its own
watermark and marks the fills of each listed signature finalized; it never runs ahead of the
confirmed pass. A week is finalized once that pass has reached past the week's end and no fill
of the week is left unconfirmed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from driftsnap import calendar, logs, protocol
from driftsnap.chain import fills as chain_fills
from driftsnap.chain import snapshot
from driftsnap.chain.errors import ChainError, TransactionError
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
    (``None``: all the history the node keeps).

    A transaction the node does not serve readably is asked again ``read_attempts`` times in
    all, ``retry_backoff_s`` after the first failure and twice as long after each next one (the
    defaults, 5 and 2 s, give it ~30 s over several polls); then it is recorded unreadable and
    the ingest moves on. Unreadable ones are asked again, ``recheck_limit`` a poll, at most
    every ``recheck_max_s``. ``max_pages`` bounds the listing of one poll
    (:data:`driftsnap.chain.fills.MAX_PAGES`); ``counter_every_s`` is how often the daemon's
    :class:`Poller` samples the markets' ``next_fill_record_id``.
    """

    program: str = protocol.DRIFT_PROGRAM_ID
    commitment: chain_fills.Commitment = "confirmed"
    batch_size: int = 200
    concurrency: int = 16
    max_transactions: int | None = None
    backfill_slots: int | None = None
    read_attempts: int = 5
    retry_backoff_s: float = 2.0
    recheck_limit: int = 8
    recheck_max_s: float = 3600.0
    max_pages: int = chain_fills.MAX_PAGES
    counter_every_s: float = 600.0


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one poll did; ``caught_up`` when every listed signature was processed.

    ``rejected`` transactions had logs that contradict their message (fills not stored);
    ``retrying`` ones were not served readably and hold the watermark; ``unreadable`` ones
    spent their attempts this poll (recorded, reported, passed); ``recovered`` formerly
    unreadable ones read at last; ``conflicts`` are fill ids newly found with two records.
    """

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
    rejected_signatures: tuple[str, ...] = ()
    retrying_signatures: tuple[str, ...] = ()
    unreadable_signatures: tuple[str, ...] = ()
    recovered_signatures: tuple[str, ...] = ()
    conflicts: tuple[tuple[str, int, int], ...] = ()


@dataclass
class _Tally:
    transactions: int = 0
    failed: int = 0
    new_fills: int = 0
    fills_seen: int = 0
    decode_errors: int = 0
    truncated: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, int, int]] = field(default_factory=list)


async def poll_once(
    client: rpc.Client,
    engine: sa.Engine,
    settings: PollSettings | None = None,
    *,
    authorities: chain_fills.Authorities | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """One poll: list, fetch, parse and store every new fill, moving the watermark with them.

    ``authorities`` is a cache the daemon keeps between polls (the store remembers every pair
    too, so a fresh one costs a database query, not RPC calls). ``now`` times the retries of
    transactions not served readably (default: the wall clock).
    """
    started = time.perf_counter()
    settings = settings or PollSettings()
    now = now or datetime.now(UTC)
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
        max_pages=settings.max_pages,
    )
    todo = list(page.signatures)
    if settings.max_transactions is not None:
        todo = todo[: settings.max_transactions]
    tally = _Tally()
    done = 0
    stop: str | None = None
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        everything = start + len(batch) == len(page.signatures)
        processed, mark, stop = await _batch(
            client,
            engine,
            settings,
            batch,
            mark=mark,
            head=head if everything else None,
            authorities=authorities,
            tally=tally,
            now=now,
        )
        done += processed
        if stop is not None:
            break
    if not page.signatures and mark is not None and (mark.through_slot or 0) < head:
        # Nothing new since the watermark: everything up to the head is processed.
        mark = store_fills.Watermark(
            mark.program, mark.commitment, mark.signature, mark.slot, head, mark.through_time
        )
        caught_up = mark
        await _write(engine, lambda conn: store_fills.set_watermark(conn, caught_up))
    await _recheck(client, engine, settings, authorities=authorities, tally=tally, now=now)
    report = IngestReport(
        signatures=len(page.signatures),
        pages=page.pages,
        transactions=tally.transactions,
        failed=tally.failed,
        new_fills=tally.new_fills,
        fills_seen=tally.fills_seen,
        null_pending=len(page.signatures) - done if stop == "null" else 0,
        truncated=len(tally.truncated),
        truncated_signatures=tuple(tally.truncated),
        decode_errors=tally.decode_errors,
        authority_lookups=authorities.lookups - lookups_before,
        caught_up=done == len(page.signatures),
        watermark_slot=None if mark is None else mark.slot,
        ms=round((time.perf_counter() - started) * 1000, 1),
        rejected_signatures=tuple(tally.rejected),
        retrying_signatures=tuple(tally.retrying),
        unreadable_signatures=tuple(tally.unreadable),
        recovered_signatures=tuple(tally.recovered),
        conflicts=tuple(tally.conflicts),
    )
    log.info(
        "fills_polled",
        signatures=report.signatures,
        pages=report.pages,
        transactions=report.transactions,
        new_fills=report.new_fills,
        null_pending=report.null_pending,
        truncated=report.truncated,
        rejected=len(report.rejected_signatures),
        retrying=len(report.retrying_signatures),
        unreadable=len(report.unreadable_signatures),
        conflicts=len(report.conflicts),
        decode_errors=report.decode_errors,
        caught_up=report.caught_up,
        watermark_slot=report.watermark_slot,
        ms=report.ms,
    )
    if report.truncated:
        log.warning("fills_logs_truncated", signatures=list(report.truncated_signatures))
    if report.conflicts:
        log.warning(
            "fills_conflicting_records",
            ids=[f"{t}-{i}#{n}" for t, i, n in report.conflicts],
            hint="two records for one fill id: run `driftsnap fills check`",
        )
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
    now: datetime,
) -> tuple[int, store_fills.Watermark | None, str | None]:
    """Fetch and store one batch; (signatures processed, the new watermark, why it stopped).

    The watermark stops before the first transaction not read: one the node answers null for
    (``"null"``), or one it does not serve readably (``"unread"``), which is retried with
    backoff over the next polls and then recorded unreadable (and passed). The fills of every
    other transaction of the batch, before and after it, are stored all the same: a later poll
    re-reads them, and a re-read stores nothing twice.
    """
    known = await _read(engine, lambda c: store_fills.unread(c, [s.signature for s in batch]))
    # Not due yet: the node is not asked again before its backoff has passed.
    waiting = {s for s, u in known.items() if not u.unreadable and u.next_attempt_at > now}
    # A failed transaction carries no fills: its listing says so, no need to fetch it.
    wanted = [s.signature for s in batch if not s.failed and s.signature not in waiting]
    fetched = await chain_fills.fetch(
        client,
        wanted,
        commitment=settings.commitment,
        concurrency=settings.concurrency,
        program=settings.program,
    )
    _node_wide(fetched)
    by_signature = dict(zip(wanted, fetched, strict=True))
    sorting = _Sorting()
    for info in batch:
        sorting.add(info, by_signature, waiting, known, settings=settings, now=now, tally=tally)
    txs, unread, read = sorting.txs, sorting.unread, sorting.read
    processed, stop = sorting.processed, sorting.stop
    if not txs and not unread and processed == 0:
        return 0, mark, stop
    new_mark = mark
    if processed:
        last = batch[processed - 1]
        complete = head is not None and stop is None
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
    await _store(
        client, engine, settings, txs, watermark=new_mark if processed else None,
        unread=unread, read=read, authorities=authorities, tally=tally,
    )  # fmt: skip
    return processed, new_mark, stop


@dataclass
class _Sorting:
    """A batch's answers sorted, oldest first: what to store, what to retry, where to stop."""

    txs: list[chain_fills.Transaction] = field(default_factory=list)
    unread: list[store_fills.Unread] = field(default_factory=list)
    read: list[str] = field(default_factory=list)  # formerly unread, read now
    processed: int = 0  # the listed signatures before the first one not read
    stop: str | None = None  # why the watermark stops there: "null" or "unread"

    def add(
        self,
        info: chain_fills.SignatureInfo,
        answers: dict[str, chain_fills.Transaction | chain_fills.Unread | None],
        waiting: set[str],
        known: dict[str, store_fills.Unread],
        *,
        settings: PollSettings,
        now: datetime,
        tally: _Tally,
    ) -> None:
        """Sort the next listed signature; the watermark may pass it only if it was read."""
        passed = True
        if info.failed:
            tally.failed += self.stop is None
        elif info.signature in waiting:
            passed = False
            if self.stop is None:
                tally.retrying.append(info.signature)
        elif (answer := answers[info.signature]) is None:
            # Not available yet: nothing at or after it may pass the watermark.
            passed = False
            if self.stop is None:
                log.info("fills_transaction_pending", signature=info.signature, slot=info.slot)
        elif isinstance(answer, chain_fills.Unread) or answer.cut is not None:
            record = _attempt(info, answer, known.get(info.signature), settings, now)
            self.unread.append(record)
            passed = record.unreadable
            (tally.unreadable if passed else tally.retrying).append(info.signature)
        else:
            self.txs.append(answer)
            if info.signature in known:
                self.read.append(info.signature)
                tally.recovered.append(info.signature)
        if not passed and self.stop is None:
            self.stop = "null" if answers.get(info.signature, 0) is None else "unread"
        if self.stop is None:
            self.processed += 1


def _node_wide(fetched: Sequence[chain_fills.Transaction | chain_fills.Unread | None]) -> None:
    """Raise when not one transaction of a batch was served readably but some erred: that is
    the node failing, not one transaction, and no transaction's attempts may be spent on it."""
    bad = [
        f.reason if isinstance(f, chain_fills.Unread) else f"{f.signature}: {f.cut}"
        for f in fetched
        if isinstance(f, chain_fills.Unread) or (f is not None and f.cut is not None)
    ]
    good = any(isinstance(f, chain_fills.Transaction) and f.cut is None for f in fetched)
    if bad and not good:
        raise TransactionError(
            f"no transaction of {len(fetched)} was served readably (first: {bad[0]})"[:400]
        )


def _attempt(
    info: chain_fills.SignatureInfo,
    answer: chain_fills.Transaction | chain_fills.Unread,
    before: store_fills.Unread | None,
    settings: PollSettings,
    now: datetime,
) -> store_fills.Unread:
    """The unread record of one more failed attempt at ``info``'s transaction."""
    if isinstance(answer, chain_fills.Unread):
        kind, reason = "error", answer.reason
    else:
        kind, reason = "cut", answer.cut or "cut"
    attempts = (before.attempts if before is not None else 0) + 1
    spent = attempts >= settings.read_attempts
    delay = settings.retry_backoff_s * 2 ** (attempts - 1)
    if spent:
        delay = min(settings.recheck_max_s, max(delay, settings.retry_backoff_s))
    record = store_fills.Unread(
        signature=info.signature,
        slot=info.slot,
        block_time=info.block_time,
        kind=kind,
        reason=reason[:500],
        attempts=attempts,
        unreadable=spent or (before is not None and before.unreadable),
        next_attempt_at=now + timedelta(seconds=delay),
    )
    event = "fills_transaction_unreadable" if record.unreadable else "fills_transaction_unread"
    log.warning(
        event,
        signature=info.signature,
        slot=info.slot,
        kind=kind,
        reason=record.reason,
        attempts=attempts,
        of=settings.read_attempts,
    )
    return record


async def _store(
    client: rpc.Client,
    engine: sa.Engine,
    settings: PollSettings,
    txs: Sequence[chain_fills.Transaction],
    *,
    watermark: store_fills.Watermark | None,
    unread: Sequence[store_fills.Unread],
    read: Sequence[str],
    authorities: chain_fills.Authorities,
    tally: _Tally,
) -> None:
    """Attribute and write the fills of ``txs`` with what else was found, in one transaction."""
    trusted = [tx for tx in txs if tx.forged is None]
    rejected = [
        store_fills.Rejected(tx.signature, tx.slot, tx.block_time, tx.forged, tx.claimed)
        for tx in txs
        if tx.forged is not None
    ]
    for r in rejected:
        log.warning(
            "fills_transaction_rejected",
            signature=r.signature,
            slot=r.slot,
            reason=r.reason,
            fills_claimed=r.fills_claimed,
        )
    fills = [f for tx in trusted for f in tx.fills]
    users = {u for f in fills for u in (f.maker, f.taker) if u is not None}
    unknown = [u for u in users if u not in authorities.known]
    if unknown:
        authorities.remember(await _read(engine, lambda c: store_fills.authorities(c, unknown)))
    owners = await authorities.resolve(client, users, commitment=settings.commitment)
    rows = [_attributed(f, owners, settings.commitment) for f in fills]
    truncated = [
        store_fills.Truncated(tx.signature, tx.slot, tx.block_time, len(tx.fills))
        for tx in trusted
        if tx.truncated
    ]
    written = await _write(
        engine,
        lambda conn: store_fills.write_batch(
            conn,
            rows,
            watermark=watermark,
            truncated=truncated,
            rejected=rejected,
            unread=unread,
            read=read,
        ),
    )
    tally.transactions += len(txs)
    tally.new_fills += written.inserted
    tally.fills_seen += len(rows)
    tally.decode_errors += sum(tx.decode_errors for tx in txs)
    tally.truncated += [t.signature for t in truncated]
    tally.rejected += [r.signature for r in rejected]
    tally.conflicts += written.conflicts


async def _recheck(
    client: rpc.Client,
    engine: sa.Engine,
    settings: PollSettings,
    *,
    authorities: chain_fills.Authorities,
    tally: _Tally,
    now: datetime,
) -> None:
    """Ask the node again for a few transactions recorded unreadable; store what reads now.

    The watermark has passed them, so this is the only way their fills can still come in;
    their row goes once they read (or are found forged, which is recorded as such).
    """
    if settings.recheck_limit <= 0:
        return
    due = await _read(engine, lambda c: store_fills.due_unreadable(c, now, settings.recheck_limit))
    due = [u for u in due if u.signature not in tally.unreadable]  # just asked, this poll
    if not due:
        return
    fetched = await chain_fills.fetch(
        client,
        [u.signature for u in due],
        commitment=settings.commitment,
        concurrency=settings.concurrency,
        program=settings.program,
    )
    txs: list[chain_fills.Transaction] = []
    again: list[store_fills.Unread] = []
    for before, answer in zip(due, fetched, strict=True):
        if isinstance(answer, chain_fills.Transaction) and answer.cut is None:
            txs.append(answer)
            tally.recovered.append(before.signature)
            log.info("fills_transaction_recovered", signature=before.signature)
            continue
        delay = min(
            settings.recheck_max_s, settings.retry_backoff_s * 2 ** min(before.attempts, 30)
        )
        again.append(
            dataclasses.replace(
                before,
                attempts=before.attempts + 1,
                next_attempt_at=now + timedelta(seconds=delay),
            )
        )
    await _store(
        client, engine, settings, txs, watermark=None, unread=again,
        read=[tx.signature for tx in txs], authorities=authorities, tally=tally,
    )  # fmt: skip


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
    the newest end are found too (once the confirmed pass has caught up with the read), and so
    that a market whose counter moved while no fill of it was stored is a gap, not silence.
    Every market the store knows is read: sampled, with fills, or with a stored counter.
    """
    weeks, indexes = await _read(
        engine,
        lambda conn: (
            [week] if week is not None else store_fills.weeks_to_check(conn),
            store_fills.known_perp_markets(conn),
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


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One thing a second provider says otherwise than what is stored."""

    kind: str  # not_served | rejected | cut | different | beyond_counter
    subject: str  # a signature, or a market
    detail: str

    def line(self) -> str:
        """One line naming what disagrees."""
        return f"second provider disagrees ({self.kind}) on {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class CrossCheck:
    """What ``fills check --verify-rpc-url`` compared, and every disagreement."""

    week: calendar.Week
    transactions: int  # stored transactions asked of the second provider
    of_transactions: int  # ...of this many with fills stored in the week
    fills: int  # stored fills in those transactions
    disagreements: tuple[Disagreement, ...]


def _judge(
    signature: str,
    want: set[tuple[object, ...]],
    tx: chain_fills.Transaction | chain_fills.Unread | None,
) -> Disagreement | None:
    """How the second provider's answer for ``signature`` disagrees with the stored fills."""
    if tx is None or isinstance(tx, chain_fills.Unread):
        why = "null" if tx is None else tx.reason
        return Disagreement("not_served", signature, f"no transaction ({why})")
    if tx.forged is not None:
        return Disagreement("rejected", signature, tx.forged)
    if tx.cut is not None:
        return Disagreement("cut", signature, tx.cut)
    got = {_fact_of(f) for f in tx.fills}
    if got == want:
        return None
    stored_only, served_only = sorted(map(str, want - got)), sorted(map(str, got - want))
    return Disagreement(
        "different",
        signature,
        f"{len(want)} fill(s) stored, {len(got)} served; (market type, index, id, slot, maker, "
        f"taker, quote) stored {stored_only[0] if stored_only else '-'}, served "
        f"{served_only[0] if served_only else '-'}",
    )


def _fact_of(f: fill.Fill) -> tuple[object, ...]:
    return (f.market_type, f.market_index, f.fill_record_id, f.slot, f.maker, f.taker,
            f.quote_filled)  # fmt: skip


async def cross_check_week(
    second: rpc.Client,
    engine: sa.Engine,
    week: calendar.Week,
    *,
    sample: int | None = None,
    program: str = protocol.DRIFT_PROGRAM_ID,
) -> CrossCheck:
    """The week's stored fills against a second provider (``--verify-rpc-url``).

    Each stored transaction of the week (or a ``sample`` of them, drawn from the week's name so
    that a re-run asks the same ones) is read again from ``second`` and parsed with the same
    checks; its fills must be the stored ones, fact for fact (ids, slot, maker and taker
    accounts, quote). Each perp market's stored ids must also be below the second provider's
    ``next_fill_record_id``: an id the chain has not reached is a forged one. A primary node
    that lies consistently about transactions is caught unless the second lies the same way.
    """
    facts = await _read(engine, lambda conn: closes.fill_facts(conn, week))
    indexes = await _read(engine, store_fills.known_perp_markets)
    by_signature: dict[str, set[tuple[object, ...]]] = {}
    for x in facts:
        by_signature.setdefault(x.signature, set()).add(
            (x.market_type, x.market_index, x.fill_record_id, x.slot, x.maker, x.taker,
             x.quote_filled)
        )  # fmt: skip
    signatures = sorted(by_signature)
    if sample is not None and len(signatures) > sample:
        # A reproducible draw (a re-run asks the same transactions), not a secret one.
        signatures = sorted(random.Random(str(week)).sample(signatures, sample))  # noqa: S311
    found: list[Disagreement] = []
    for start in range(0, len(signatures), 200):
        chunk = signatures[start : start + 200]
        answers = await chain_fills.fetch(second, chunk, commitment="confirmed", program=program)
        for signature, tx in zip(chunk, answers, strict=True):
            if (d := _judge(signature, by_signature[signature], tx)) is not None:
                found.append(d)
    if indexes:
        addresses = {i: snapshot.perp_market_address(i) for i in indexes}
        counters, _ = await chain_fills.next_fill_record_ids(
            second, addresses, commitment="confirmed"
        )
        top: dict[int, int] = {}
        for x in facts:
            if x.market_type == "perp":
                top[x.market_index] = max(top.get(x.market_index, -1), x.fill_record_id)
        for index, highest in sorted(top.items()):
            if index in counters and highest >= counters[index]:
                found.append(
                    Disagreement(
                        "beyond_counter",
                        f"perp market {index}",
                        f"fill id {highest} is stored, the chain's next_fill_record_id is "
                        f"{counters[index]}",
                    )
                )
    return CrossCheck(
        week, len(signatures), len(by_signature), sum(len(by_signature[s]) for s in signatures),
        tuple(found),
    )  # fmt: skip


async def sample_counters(client: rpc.Client, engine: sa.Engine) -> int | None:
    """Store the ``next_fill_record_id`` of every perp market the store knows, as read now;
    the slot of the read (``None``: no market known, or the slot has no block time).

    A week in which a counter moved but no fill of the market was stored is then a gap for
    ``fills check`` even when nothing at all was ingested (a node that lists nothing).
    """
    indexes = await _read(engine, store_fills.known_perp_markets)
    if not indexes:
        return None
    addresses = {i: snapshot.perp_market_address(i) for i in indexes}
    counters, slot = await chain_fills.next_fill_record_ids(
        client, addresses, commitment="confirmed"
    )
    when = await chain_fills.block_time(client, slot)
    if when is None:
        return None
    at = when
    await _write(engine, lambda conn: store_fills.write_counters(conn, slot, at, counters))
    return slot


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
        self._sampled: datetime | None = None  # when the fill counters were last sampled

    async def poll(self, now: datetime) -> None:
        """One confirmed poll; the finalized pass of the week before ``now`` if it caught up."""
        if await self._confirmed(now):
            await self._finalize(calendar.Week.containing(now).previous())

    async def _confirmed(self, now: datetime) -> bool:
        """One confirmed poll; whether it caught up with the node."""
        m = self._registry
        try:
            report = await poll_once(
                self._client,
                self._engine,
                self._settings,
                authorities=self._authorities,
                now=now,
            )
        except (ChainError, StoreError) as exc:
            m.fills_polls.labels(status="failed").inc()
            if isinstance(exc, chain_fills.PagingError):
                m.fills_anomalies.labels(kind="paging").inc()
            log.warning("fills_poll_failed", reason=str(exc))
            return False
        m.fills_polls.labels(status="ok").inc()
        m.fills_ingested.inc(report.new_fills)
        m.fills_truncated.inc(report.truncated)
        m.fills_null_pending.set(report.null_pending)
        m.fills_retrying.set(len(report.retrying_signatures))
        for kind, found in (
            ("rejected", report.rejected_signatures),
            ("unreadable", report.unreadable_signatures),
            ("conflict", report.conflicts),
        ):
            if found:
                m.fills_anomalies.labels(kind=kind).inc(len(found))
        if report.watermark_slot is not None:
            m.fills_watermark_slot.set(report.watermark_slot)
        # poll_once logs the poll's one summary line (fills_polled), the truncated
        # transactions (fills_logs_truncated) and every anomaly itself.
        await self._sample(now)
        return report.caught_up and not report.null_pending

    async def _sample(self, now: datetime) -> None:
        """The markets' fill counters, every ``counter_every_s`` (see :func:`sample_counters`)."""
        if self._sampled is not None and (now - self._sampled).total_seconds() < (
            self._settings.counter_every_s
        ):
            return
        try:
            await sample_counters(self._client, self._engine)
        except (ChainError, StoreError) as exc:
            log.warning("fills_counters_failed", reason=str(exc))
            return
        self._sampled = now

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
