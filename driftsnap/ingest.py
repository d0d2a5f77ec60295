"""Fills from the chain into the store, exactly once: the wiring between ``chain`` and ``store``.

``chain`` and ``store`` never import each other, so the orchestration lives here. The daemon calls
:func:`poll_once` every tick and :func:`finalize` before a week closes; the CLI calls
:func:`check` (``driftsnap fills check [--week W]``), :func:`self_matches` (``driftsnap fills
self-matches --week W``) and the week close :func:`week_volume`.

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
import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from driftsnap import logs, protocol
from driftsnap.chain import fills as chain_fills
from driftsnap.chain import snapshot
from driftsnap.store import fills as store_fills

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import sqlalchemy as sa

    from driftsnap.calendar import Week
    from driftsnap.chain import rpc

log = logs.get(__name__)

_T = TypeVar("_T")


async def _read(engine: sa.Engine, fn: Callable[[sa.Connection], _T]) -> _T:
    """``fn`` on a connection, in a worker thread: the event loop, which the daemon's tick loop
    and clock share with the fills, never waits on the database (a locked table, a server that
    hangs until the connect timeout)."""

    def run() -> _T:
        with engine.connect() as conn:
            return fn(conn)

    return await asyncio.to_thread(run)


async def _write(engine: sa.Engine, fn: Callable[[sa.Connection], _T]) -> _T:
    """``fn`` in one transaction, in a worker thread (see :func:`_read`)."""

    def run() -> _T:
        with engine.begin() as conn:
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
    rows = [_row(f, owners, settings.commitment) for f in fills]
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


def _row(
    fill: chain_fills.Fill,
    owners: dict[str, str | None],
    commitment: chain_fills.Commitment,
) -> store_fills.Fill:
    return store_fills.Fill(
        market_type=fill.market_type,
        market_index=fill.market_index,
        fill_record_id=fill.fill_record_id,
        signature=fill.signature,
        event_index=fill.event_index,
        slot=fill.slot,
        block_time=fill.block_time,
        maker=fill.maker,
        maker_authority=None if fill.maker is None else owners.get(fill.maker),
        taker=fill.taker,
        taker_authority=None if fill.taker is None else owners.get(fill.taker),
        base_filled=fill.base_filled,
        quote_filled=fill.quote_filled,
        maker_fee=fill.maker_fee,
        action_explanation=fill.action_explanation,
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
    week: Week,
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
                await _write(engine, functools.partial(_set_watermark, mark))
    finality = await _write(
        engine, functools.partial(_record_finality, week=week, finalized_through=mark)
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


def _set_watermark(mark: store_fills.Watermark, conn: sa.Connection) -> None:
    store_fills.set_watermark(conn, mark)


def _record_finality(
    conn: sa.Connection, *, week: Week, finalized_through: store_fills.Watermark | None
) -> store_fills.WeekFinality:
    return store_fills.record_finality(conn, week, finalized_through=finalized_through)


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
    week: Week | None = None,
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


def check_stored(
    conn: sa.Connection, week: Week, *, program: str = protocol.DRIFT_PROGRAM_ID
) -> list[store_fills.MarketCheck]:
    """:func:`check` without the chain: gaps among the stored fills only (no tail check)."""
    return store_fills.check(conn, week, program=program)


def close_blockers(
    conn: sa.Connection,
    week: Week,
    checks: Sequence[store_fills.MarketCheck] | None = None,
    *,
    program: str = protocol.DRIFT_PROGRAM_ID,
) -> list[str]:
    """Why ``week``'s volume cannot be closed yet (empty: it can). A week with gaps or not yet
    finalized closes only with ``--force`` and a recorded reason, which the caller handles.

    ``checks`` are :func:`check`'s results when the chain was asked (they see gaps at the
    newest end too); without them the stored fills are checked.
    """
    if checks is None:
        checks = check_stored(conn, week, program=program)
    reasons = [
        f"{c.market or f'{c.market_type} {c.market_index}'}: {c.missing} fill record(s) missing "
        f"({', '.join(f'{g.first}..{g.last}' for g in c.gaps)})"
        for c in checks
        if c.week == str(week) and not c.ok
    ]
    if not store_fills.finalized(conn, week):
        reasons.append(f"the fills of {week} are not finalized (run the finalized pass)")
    unknown = store_fills.unattributed(conn, week)
    if unknown:
        reasons.append(f"{unknown} fill(s) have a maker whose authority is unknown")
    return reasons


def self_matches(conn: sa.Connection, week: Week) -> list[store_fills.SelfMatch]:
    """``driftsnap fills self-matches --week W``: fills whose maker and taker share a wallet."""
    return store_fills.self_matches(conn, week)


def week_volume(conn: sa.Connection, week: Week) -> dict[str, int]:
    """Maker volume per authority in ``week`` (QUOTE_PRECISION), self-matches excluded."""
    return store_fills.week_volume(conn, week)


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
