"""The week close: the program, the stored week and the scoring spec joined into one result.

``driftsnap close-week`` calls :func:`close_week`, ``driftsnap verify-week`` :func:`verify_week`,
``driftsnap forfeit`` :func:`forfeit`; the week report reads an :class:`Outcome` and
:func:`payout_table`. The errors are drawn in :mod:`driftsnap.flows.errors`.

Close, in one transaction under the close lock (:func:`driftsnap.store.locks.lock_close`):

1. a week already closed returns its stored result (a second or concurrent run changes nothing);
2. the week must have ended; then the **refusals**: fill gaps, fill ids with two different
   records, fills not finalized or without a known maker authority (when the volume pool
   pays), snapshot coverage below ``min_coverage`` in a paid market, a sampling seed that is
   missing, unrevealable or contradicted by the tick times. Each says what to do; ``force``
   with a ``reason`` overrides them all, and the reason and the overridden refusals are
   stored with the result;
3. the **terms** (:func:`terms`): the program file's pools, pause and participants for the week,
   plus the makers registered and the forfeits recorded in the database;
4. the week's score totals (the stored accumulators when complete for the method, else the
   stored order-level books re-scored) and maker volume go through ``scoring.settlement.settle``;
5. the seed is revealed (stored), and the result, its digests and its payout rows are stored;
   the migration's triggers then refuse any change to the week.

Participants and forfeits from two places: the program file stays the source of the program's
*rules* (``participants = "all" | "registered"``); the database adds registrations and forfeits
that operators record between releases (``driftsnap makers`` / ``driftsnap forfeit``). Under
``participants = "all"`` registrations are recorded but do not restrict anyone. Under
``"registered"`` (the shipped program) a week with nobody registered is refused, even forced
(:func:`no_participants`): paying nobody is a registration missing, not a judgement call.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, config, logs, protocol, sampling
from driftsnap.errors import InputError
from driftsnap.flows.errors import (
    CloseError,
    CloseRefusedError,
    NotClosedError,
    WeekNotEndedError,
)
from driftsnap.scoring import digest, methods, scorer, settlement
from driftsnap.store import books as store_books
from driftsnap.store import closes, database, fills, locks, makers, queries, weeks

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    import sqlalchemy as sa

    from driftsnap.store.seeds import Seeds


log = logs.get(__name__)

DEFAULT_MIN_COVERAGE = config.DEFAULT_CLOSE_MIN_COVERAGE


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a close produced: the stored (or dry-run) close and the result it holds."""

    week: calendar.Week
    close: closes.Close
    result: dict[str, Any]
    stored: bool  # written by this run
    already: bool  # closed before this run
    source: str  # "accumulators" | "books" | "stored"
    ms: float
    refusals: tuple[str, ...] = ()  # a dry run's: what a real close would refuse over


def stored_outcome(done: closes.Close, *, ms: float = 0.0) -> Outcome:
    """The :class:`Outcome` of a week closed before: its stored close and result."""
    week = calendar.Week.containing(done.week_start)
    result = json.loads(done.result_json)
    return Outcome(week, done, result, stored=False, already=True, source="stored", ms=ms)


# ---------------------------------------------------------------------------- terms


def terms(
    conn: sa.Connection, program: config.Program, week: calendar.Week
) -> settlement.WeekTerms:
    """The program's terms of ``week`` with the database's registrations and forfeits added."""
    base = program.terms(week)
    registered = base.participants.registered
    if registered is not None:
        registered = registered | {p.authority for p in makers.participants(conn) if p.active(week)}
    forfeited = base.participants.forfeited | {f.authority for f in makers.forfeits(conn, week)}
    return replace(
        base, participants=settlement.Participants(registered=registered, forfeited=forfeited)
    )


def no_participants(t: settlement.WeekTerms) -> str | None:
    """Why a week of a registered-only program cannot be paid when nobody is registered for it
    (``None``: someone is, everyone is, or the week pays nothing anyway)."""
    if t.paused or t.participants.registered is None or t.participants.registered:
        return None
    return (
        f'participants = "registered" but no maker is registered for {t.week}: run '
        "`driftsnap makers add AUTHORITY` or list [[participant]] entries in the program file"
    )


def _terms_from(doc: dict[str, Any], week: calendar.Week) -> settlement.WeekTerms:
    """The terms a stored result was computed with (verify uses them, not today's program)."""
    t = doc["terms"]
    return settlement.WeekTerms(
        week=week,
        score_pools=t["score_pools"],
        volume_pool=t["volume_pool"],
        participants=settlement.Participants(
            registered=None if t["registered"] is None else frozenset(t["registered"]),
            forfeited=frozenset(t["forfeited"]),
        ),
        paused=doc["paused"],
        pause_reason=doc["pause_reason"],
    )


# ---------------------------------------------------------------------------- refusals


def _seed(
    conn: sa.Connection, week: calendar.Week, seeds: Seeds
) -> tuple[weeks.WeekRecord | None, bytes | None, list[str]]:
    """The week's commitment, its seed if it can be revealed, and what is wrong."""
    record = weeks.record(conn, week)
    if record is None:
        return None, None, [f"week {week} has no sampling commitment (was the daemon running?)"]
    seed = record.seed or seeds.read(week, record.seed_sha256)
    if seed is None:
        return (
            record,
            None,
            [
                f"the sampling seed of {week} is not revealed and not in {seeds.directory}: run "
                f"close-week with the daemon's data directory (DRIFTSNAP_DATA_DIR)"
            ],
        )
    problems = sampling.verify(
        week, record.cadence, seed, record.seed_sha256, closes.tick_times(conn, week)
    )
    if problems:
        return (
            record,
            seed,
            [
                f"{len(problems)} tick(s) were not taken at their scheduled instant "
                f"(first: {problems[0]})"
            ],
        )
    return record, seed, []


def _coverage(
    conn: sa.Connection,
    week: calendar.Week,
    t: settlement.WeekTerms,
    record: weeks.WeekRecord | None,
    min_coverage: float,
) -> list[str]:
    paid = sorted(m for m, pool in t.score_pools.items() if pool > 0)
    if t.paused or not paid:
        return []
    rows = {c.market: c for c in queries.week_coverage(conn, week)}
    ticks = max((c.ticks for c in rows.values()), default=0)
    # Against the schedule, not the ticks written: a daemon stopped for good writes none.
    expected = (week.end - week.start) // record.cadence if record is not None else ticks
    if not expected:
        return [f"no ticks of {week} are stored (was the daemon running that week?)"]
    out = []
    for market in paid:
        ok = rows[market].ok if market in rows else 0
        if ok / expected < min_coverage:
            out.append(
                f"{market}: {ok} of {expected} ticks ok ({ok / expected:.1%} < "
                f"{min_coverage:.0%}; the weekly_coverage view shows the missed and rejected)"
            )
    return out


def fill_problems(
    conn: sa.Connection,
    week: calendar.Week,
    checks: Sequence[fills.MarketCheck] | None = None,
    *,
    program: str = protocol.DRIFT_PROGRAM_ID,
) -> list[str]:
    """Why ``week``'s volume cannot be paid yet (empty: it can): fill record ids missing, fill
    ids with two different records, fills not finalized, or fills whose maker's authority is
    unknown.

    ``checks`` are ``driftsnap fills check``'s results when the chain was asked (they see gaps
    at the newest end too); without them the stored fills are checked.
    """
    if checks is None:
        checks = fills.check(conn, week, program=program)
    reasons = [
        f"{c.market or f'{c.market_type} {c.market_index}'}: {c.missing} fill record(s) missing "
        f"({', '.join(f'{g.first}..{g.last}' for g in c.gaps)}) (run `driftsnap fills check`)"
        for c in checks
        if c.week == str(week) and not c.ok
    ]
    # Two different records for one fill id: one is not the chain's, and the store cannot tell
    # which (the first stored is counted). An operator decides, and says why (--force --reason).
    conflicting = sorted(
        {(c.market_type, c.market_index, c.fill_record_id) for c in fills.conflicts(conn, week)}
    )
    if conflicting:
        shown = ", ".join(f"{t}-{i} #{n}" for t, i, n in conflicting[:10])
        more = f" and {len(conflicting) - 10} more" if len(conflicting) > 10 else ""
        reasons.append(
            f"{len(conflicting)} fill record id(s) have two different records ({shown}{more}) "
            "(run `driftsnap fills check`)"
        )
    if not fills.finalized(conn, week):
        reasons.append(
            f"the fills of {week} are not finalized (the running daemon finalizes them after the "
            f"week; now: `driftsnap fills finalize --week {week}`)"
        )
    unknown = fills.unattributed(conn, week)
    if unknown:
        reasons.append(f"{unknown} fill(s) have a maker whose authority is unknown")
    return reasons


def refusals(
    conn: sa.Connection,
    week: calendar.Week,
    t: settlement.WeekTerms,
    *,
    min_coverage: float,
    seeds: Seeds,
) -> tuple[list[str], bytes | None]:
    """Why ``week`` cannot be closed (empty: it can), and its seed when it can be revealed."""
    reasons: list[str] = []
    if t.volume_pool > 0 and not t.paused:
        reasons += fill_problems(conn, week)
    record, seed, seed_problems = _seed(conn, week, seeds)
    if any(closes.ok_snapshots(conn, week).values()):
        reasons += seed_problems
    reasons += _coverage(conn, week, t, record, min_coverage)
    return reasons, seed


# ---------------------------------------------------------------------------- computing


def _accumulator(
    totals: dict[str, closes.MarketTotals], aggregation: settlement.Aggregation
) -> settlement.WeekAccumulator:
    acc = settlement.WeekAccumulator(aggregation)
    for name, m in totals.items():
        acc.markets[name] = settlement.MarketAccumulator(
            market=name,
            snapshots=m.snapshots,
            totals={k: settlement.ExactSum([v]) for k, v in m.totals.items()},
            authority_of=dict(m.authority_of),
        )
    return acc


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a close is computed from: the week's totals, its books' leaves and its fills."""

    scores: settlement.WeekAccumulator
    leaves: list[digest.BookLeaf]
    fills: list[digest.FillFact]
    source: str


def _from_books(
    conn: sa.Connection,
    week: calendar.Week,
    method: methods.Method,
    books_hash: int = store_books.CANONICAL_HASH,
) -> Inputs:
    acc = settlement.WeekAccumulator(method.aggregation)
    leaves = []
    for stored in closes.week_books(conn, week, books_hash):
        acc.add(scorer.score(stored.book, method))
        leaves.append(stored.leaf)
    return Inputs(acc, leaves, closes.fill_facts(conn, week), "books")


def _inputs(conn: sa.Connection, week: calendar.Week, method: methods.Method) -> Inputs:
    """Score totals from the stored accumulators when they hold every ok snapshot under
    ``method`` (the daemon's methods), else from the order-level books."""
    totals = closes.week_totals(conn, week, method.params_hash, maker_key=method.maker_key)
    ok = closes.ok_snapshots(conn, week)
    complete = all(totals.get(m) and totals[m].snapshots == n for m, n in ok.items() if n)
    if not complete:
        return _from_books(conn, week, method)
    return Inputs(
        _accumulator(totals, method.aggregation),
        closes.book_leaves(conn, week),
        closes.fill_facts(conn, week),
        "accumulators",
    )


def _build(
    week: calendar.Week,
    method: methods.Method,
    t: settlement.WeekTerms,
    inputs: Inputs,
    volume: dict[str, int],
    *,
    program_digest: str,
    seed: bytes | None,
    seed_sha256: str | None,
    forced: bool,
    reason: str,
    overridden: Iterable[str],
) -> tuple[closes.Close, dict[str, Any], list[closes.PayoutRow]]:
    result = settlement.settle(
        t, inputs.scores, volume, method=method.name, params_hash=method.params_hash
    )
    doc = digest.result_document(result, t)
    text = digest.canonical_json(doc)
    books_root = digest.merkle_root([leaf.hash() for leaf in inputs.leaves])
    fills_digest, fill_count = digest.fills_digest(inputs.fills)
    seed_hex = None if seed is None else seed.hex()
    close = closes.Close(
        week_start=week.monday,
        method=method.name,
        params_hash=method.params_hash,
        program_digest=program_digest,
        forced=forced,
        force_reason=reason,
        overridden=tuple(overridden),
        seed_sha256=seed_sha256,
        seed=seed_hex,
        books=len(inputs.leaves),
        books_root=books_root,
        fills=fill_count,
        fills_digest=fills_digest,
        result_json=text,
        result_sha256=digest.sha256_hex(text),
        digest=digest.close_digest(
            doc,
            params_hash=method.params_hash,
            seed_hex=seed_hex,
            books_root=books_root,
            fills_digest=fills_digest,
        ),
    )
    rows = [
        closes.PayoutRow(
            pool=p.market,
            maker=m.maker,
            authority=m.authority,
            weight=Decimal(m.weight),
            participant=m.participant,
            reward_micro_usdc=m.reward,
        )
        for p in result.pools
        for m in p.makers
    ]
    return close, doc, rows


def close_week(
    engine: sa.Engine,
    program: config.Program,
    *,
    now: datetime,
    seeds: Seeds,
    week: calendar.Week | None = None,
    method: str | None = None,
    default_method: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str = "",
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> Outcome:
    """Close ``week`` (default: the last completed one at ``now``); see the module docstring.

    ``method`` recomputes under that method from the order-level books (``--method``); without
    it the week closes under ``default_method`` or the program's, from the stored accumulators
    when they hold every snapshot.
    """
    started = time.perf_counter()
    w = week or calendar.Week.last_completed(now)
    if force and not reason.strip():
        raise CloseError("--force needs --reason TEXT: the reason is stored with the result")
    if w.end > now:
        raise WeekNotEndedError(
            f"week {w} has not ended: it closes after {w.end.isoformat()} (Monday 00:00 UTC); "
            f"close the last completed week ({calendar.Week.last_completed(now)}) instead"
        )
    chosen = methods.get(method or default_method or program.method)
    with database.begin(engine) as conn:
        locks.lock_close(conn)
        done = closes.stored(conn, w)
        if done is not None and not dry_run:
            if method is not None and done.params_hash != chosen.params_hash:
                raise CloseError(
                    f"week {w} is closed under {done.method}; a closed week is immutable "
                    f"(compare another method with --dry-run --method {chosen.name})"
                )
            return stored_outcome(done, ms=_ms(started))
        t = terms(conn, program, w)
        reasons, seed = refusals(conn, w, t, min_coverage=min_coverage, seeds=seeds)
        nobody = no_participants(t)
        if nobody is not None and not dry_run:
            # Not a refusal --force overrides: a close paying nobody is a missing registration.
            raise CloseError(nobody)
        if nobody is not None:
            reasons.append(nobody)
        if reasons and not force and not dry_run:
            raise CloseRefusedError(w, reasons)
        inputs = _from_books(conn, w, chosen) if method else _inputs(conn, w, chosen)
        record = weeks.record(conn, w)
        new, doc, rows = _build(
            w,
            chosen,
            t,
            inputs,
            fills.week_volume(conn, w),
            program_digest=program.digest,
            seed=seed,
            seed_sha256=None if record is None else record.seed_sha256,
            forced=force,
            reason=reason.strip() if force else "",
            overridden=reasons if force else (),
        )
        if dry_run:
            conn.rollback()
            return Outcome(
                w,
                new,
                doc,
                stored=False,
                already=done is not None,
                source=inputs.source,
                ms=_ms(started),
                refusals=() if force else tuple(reasons),
            )
        if seed is not None:
            weeks.reveal_seed(conn, w, seed)
        closes.write(conn, new, rows)
    log.info(
        "week_closed",
        week=str(w),
        method=chosen.name,
        digest=new.digest,
        forced=force,
        books=new.books,
        fills=new.fills,
        source=inputs.source,
        ms=_ms(started),
    )
    return Outcome(w, new, doc, stored=True, already=False, source=inputs.source, ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# ---------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class Verification:
    """What recomputing a closed week found."""

    week: calendar.Week
    digest: str
    difference: str | None  # the first one found; None: everything matches
    books: int
    fills: int

    @property
    def ok(self) -> bool:
        """Whether everything matched."""
        return self.difference is None


def verify_week(engine: sa.Engine, week: calendar.Week) -> Verification:
    """Recompute a closed week from its stored books and fills and compare every digest."""
    with database.connect(engine) as conn:
        done = closes.stored(conn, week)
        if done is None:
            raise NotClosedError(
                f"week {week} is not closed (run `driftsnap close-week --week {week}`)"
            )
        method = methods.get(done.method)
        inputs = _from_books(conn, week, method, done.books_hash)
        rows = closes.payout_rows(conn, week)
        record = weeks.record(conn, week)
    return compare(
        week, done, inputs, rows, committed=None if record is None else record.seed_sha256
    )


def merged_inputs(
    runs: Iterable[tuple[settlement.WeekAccumulator, list[digest.BookLeaf]]],
    fills_: list[digest.FillFact],
    source: str,
) -> Inputs:
    """The inputs of a close from runs of its books scored apart (in the books' order): their
    week totals merged (exact sums, so the same bits as scored in one run), leaves in order."""
    acc: settlement.WeekAccumulator | None = None
    leaves: list[digest.BookLeaf] = []
    for totals, run_leaves in runs:
        if acc is None:
            acc = totals
        else:
            acc.merge(totals)
        leaves.extend(run_leaves)
    if acc is None:
        raise ValueError("merged_inputs needs at least one run")
    return Inputs(acc, leaves, fills_, source)


def scored_inputs(
    stored: Iterable[closes.StoredBook],
    fills_: list[digest.FillFact],
    method: methods.Method,
    source: str,
) -> Inputs:
    """What a close is computed from, given its books (with their leaves) and fills."""
    acc = settlement.WeekAccumulator(method.aggregation)
    leaves = []
    for b in stored:
        acc.add(scorer.score(b.book, method, detail=False))
        leaves.append(b.leaf)
    return Inputs(acc, leaves, fills_, source)


def compare(
    week: calendar.Week,
    done: closes.Close,
    inputs: Inputs,
    rows: list[closes.PayoutRow],
    *,
    committed: str | None,
) -> Verification:
    """Recompute ``done`` from ``inputs`` and compare every digest and payout row with it;
    ``committed`` is the week's stored seed commitment."""
    stored_doc = json.loads(done.result_json)
    method = methods.get(done.method)
    volume = digest.maker_volume(inputs.fills)
    seed = None if done.seed is None else bytes.fromhex(done.seed)
    again, doc, again_rows = _build(
        week,
        method,
        _terms_from(stored_doc, week),
        inputs,
        volume,
        program_digest=done.program_digest,
        seed=seed,
        seed_sha256=done.seed_sha256,
        forced=done.forced,
        reason=done.force_reason,
        overridden=done.overridden,
    )
    checks: list[tuple[str, object, object]] = [
        ("params_hash", done.params_hash, method.params_hash),
        ("result_sha256 of the stored result", done.result_sha256,
         digest.sha256_hex(done.result_json)),
        ("books", done.books, again.books),
        ("books_root", done.books_root, again.books_root),
        ("fills", done.fills, again.fills),
        ("fills_digest", done.fills_digest, again.fills_digest),
        ("seed commitment", done.seed_sha256, committed),
        ("seed", done.seed_sha256,
         done.seed_sha256 if seed is None else sampling.commitment(seed)),
    ]  # fmt: skip
    difference = next((f"{n}: stored {a} != recomputed {b}" for n, a, b in checks if a != b), None)
    if difference is None:
        found = digest.first_difference(stored_doc, doc)
        difference = None if found is None else f"result{found} (stored != recomputed)"
    if difference is None:
        stored_rows = {_row_key(r): r for r in rows}
        for row in again_rows:
            if stored_rows.pop(_row_key(row), None) != row:
                difference = f"week_close_payouts {_row_key(row)}: stored row != {row}"
                break
        else:
            if stored_rows:
                difference = f"week_close_payouts: extra stored row {next(iter(stored_rows))}"
    if difference is None:
        digests = (
            ("result_sha256", done.result_sha256, again.result_sha256),
            ("digest", done.digest, again.digest),
        )
        for name, a, b in digests:
            if a != b:
                difference = f"{name}: stored {a} != recomputed {b}"
                break
    return Verification(week, done.digest, difference, again.books, again.fills)


def _row_key(r: closes.PayoutRow) -> tuple[str, str]:
    return (r.pool, r.maker)


# ---------------------------------------------------------------------------- payouts


def payout_table(result: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per paid authority: score reward per market, volume reward, total (micro-USDC)."""
    # Markets without a pool that week (SUI-PERP, ARB-PERP at 0 in 2023) would be empty columns.
    markets = [
        p["market"] for p in result["pools"] if p["market"] != settlement.VOLUME and p["pool"] > 0
    ]
    by_authority: dict[str, dict[str, int]] = {}
    for p in result["pools"]:
        for m in p["makers"]:
            if m["reward"]:
                cell = by_authority.setdefault(m["authority"], {})
                cell[p["market"]] = cell.get(p["market"], 0) + m["reward"]
    rows = []
    for authority, cells in sorted(by_authority.items()):
        row: dict[str, Any] = {"authority": authority}
        for market in markets:
            row[market] = cells.get(market, 0)
        row["volume"] = cells.get(settlement.VOLUME, 0)
        row["total"] = sum(cells.values())
        rows.append(row)
    return markets, rows


# ---------------------------------------------------------------------------- forfeits


def forfeit(
    engine: sa.Engine, who: str, forfeited: list[calendar.Week], *, reason: str
) -> list[calendar.Week]:
    """Record ``who``'s forfeit of the weeks ``forfeited``; refuses if one is already closed."""
    if not reason.strip():
        raise InputError("--reason TEXT is required: it is kept with the forfeit")
    with database.begin(engine) as conn:
        locks.lock_close(conn)  # a close in flight either sees the forfeit or refuses it
        closed = sorted(closes.closed_weeks(conn, forfeited))
        if closed:
            raise CloseError(
                f"week {', '.join(map(str, closed))} is already closed and paid; a forfeit "
                "cannot change a closed week (record it for open weeks only)"
            )
        makers.add_forfeits(conn, who, forfeited, reason=reason.strip())
    return forfeited
