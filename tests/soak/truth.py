"""The independent side of the end-to-end checks: the database against the simnet's ground truth.

The daemon read the chain over JSON-RPC, through its own decoder, eligibility rules and book
builder; here the same week is rebuilt from the simulator's own state (``simnet.truth``): the book
of every ok tick at the slot the tick recorded, the week's fills as the simulator made them, then
scored with ``driftsnap.scoring`` and settled and digested as the spec says. Nothing here reads
what the daemon computed, except where the digest commits to the database's own encoding (the
book hashes are over the stored bytes, which name accounts by database ids).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from driftsnap.scoring import bookfile, digest, methods, scorer, settlement
from driftsnap.simnet import model, truth
from driftsnap.store import closes, schema

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from driftsnap import calendar, config
    from driftsnap.scoring import book as book_mod

Json = Any


@dataclass(frozen=True, slots=True)
class StoredTick:
    """One tick header as stored."""

    at: datetime
    interval: int
    status: str
    reason: str
    taken_at: datetime | None
    gpa_slot: int | None
    market_slot: int | None


def stored_ticks(engine: sa.Engine, start: datetime, end: datetime) -> list[StoredTick]:
    """The tick headers with ``start <= tick_at < end``, in time order."""
    t = schema.ticks
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                t.c.tick_at, t.c.interval_index, t.c.status, t.c.reason, t.c.taken_at,
                t.c.gpa_slot, t.c.market_slot,
            )
            .where(t.c.tick_at >= start, t.c.tick_at < end)
            .order_by(t.c.tick_at)
        ).all()  # fmt: skip
    return [StoredTick(*r) for r in rows]


def slot_at(sim: model.Simulator, moment: datetime) -> int:
    """The slot whose block is in force at ``moment`` (its time is the last at or before it)."""
    elapsed_ms = int((moment.timestamp() - sim.genesis_ts) * 1000)
    slot = model.GENESIS_SLOT + elapsed_ms // sim.slot_ms
    while sim.ts_at(slot + 1) <= moment.timestamp():
        slot += 1
    while sim.ts_at(slot) > moment.timestamp():
        slot -= 1
    return slot


# ---------------------------------------------------------------------------- fills


def truth_fill_facts(
    sim: model.Simulator, start: datetime, end: datetime, *, observable: bool = True
) -> list[digest.FillFact]:
    """The simulator's fills with a block time in ``[start, end)`` as the digest's facts; only
    those a reader of the node could see with ``observable`` (not unlisted, not cut from logs)."""
    out = []
    for f in truth.fills(sim, 0, sim.slot):
        if not start.timestamp() <= f["ts"] < end.timestamp():
            continue
        if observable and not (f["listed"] and f["logged"]):
            continue
        out.append(
            digest.FillFact(
                market_type="perp", market_index=f["market_index"],
                fill_record_id=f["fill_record_id"], signature=f["signature"], slot=f["slot"],
                block_time=f["ts"], maker=f["maker"], maker_authority=f["maker_authority"],
                taker=f["taker"], taker_authority=f["taker_authority"],
                quote_filled=f["quote_asset_amount"],
            )
        )  # fmt: skip
    return out


def hidden_fills(sim: model.Simulator, start: datetime, end: datetime) -> list[Json]:
    """The fills in ``[start, end)`` that the node's faults hid from every reader."""
    return [
        f
        for f in truth.fills(sim, 0, sim.slot)
        if start.timestamp() <= f["ts"] < end.timestamp() and not (f["listed"] and f["logged"])
    ]


def stored_fill_facts(engine: sa.Engine, start: datetime, end: datetime) -> list[digest.FillFact]:
    """Every stored fill with a block time in ``[start, end)``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.market_type, f.market_index, f.fill_record_id, f.signature, f.slot,"
                " extract(epoch FROM f.block_time)::bigint, m.pubkey, ma.pubkey, t.pubkey,"
                " ta.pubkey, f.quote_filled FROM fills AS f"
                " LEFT JOIN accounts AS m ON m.account_id = f.maker_id"
                " LEFT JOIN accounts AS ma ON ma.account_id = f.maker_authority_id"
                " LEFT JOIN accounts AS t ON t.account_id = f.taker_id"
                " LEFT JOIN accounts AS ta ON ta.account_id = f.taker_authority_id"
                " WHERE f.block_time >= :start AND f.block_time < :end"
            ),
            {"start": start, "end": end},
        )
        return [digest.FillFact(*r) for r in rows]


# ---------------------------------------------------------------------------- books


@dataclass(frozen=True, slots=True)
class CheckedBook:
    """One ok snapshot checked against the truth: the truth's book and the leaf it makes."""

    tick_at: datetime
    book: book_mod.Book
    leaf: digest.BookLeaf
    oracle_slot: int
    omitted: bool = False  # the stored book lacks an omitted User account's orders


def _orders(book: book_mod.Book) -> Counter[tuple[str, str, int, int, int, int]]:
    return Counter(
        (o.user, o.authority, int(o.side), o.price, o.size, o.order_id) for o in book.orders
    )


def checked_books(
    engine: sa.Engine,
    sim: model.Simulator,
    week: calendar.Week,
    *,
    omitted: Callable[[int], set[str]] = lambda slot: set(),
) -> list[CheckedBook]:
    """Every ok snapshot of ``week`` against the simulator's book at the tick's slot.

    The reader prices floating orders at the oracle of its second read, a few slots after the
    users' slot: the truth's oracle must have had the stored price at some slot of that window,
    and priced there the truth's book must hold exactly the stored orders; or, for a User account
    in ``omitted(slot)`` (one a faulty node left out of its answer), exactly the others. Raises
    AssertionError naming the first difference.
    """
    t = schema.ticks
    with engine.connect() as conn:
        slots = dict(
            conn.execute(
                sa.select(t.c.tick_at, t.c.market_slot).where(
                    t.c.tick_at >= week.start, t.c.tick_at < week.end, t.c.status == "ok"
                )
            ).all()
        )
        stored = list(closes.week_books(conn, week))
    out = []
    for s in stored:
        b = s.book
        where = f"{b.market} at {s.tick_at.isoformat()} (slot {b.slot})"
        assert b.ts == sim.ts_at(b.slot), (
            f"{where}: ts {b.ts} != the block time {sim.ts_at(b.slot)}"
        )
        window = range(b.slot, max(b.slot, slots[s.tick_at]) + 1)
        priced = [
            o
            for o in window
            if (state := sim.state_at(o)) is not None
            and state.oracle_prices[b.market_index] == b.oracle_price
        ]
        assert priced, f"{where}: oracle {b.oracle_price} is no price of slots {window}"
        want = bookfile.from_dict(truth.book(sim, b.slot, b.market_index, oracle_slot=priced[0]))
        assert (want.market, want.slot, want.ts, want.oracle_price) == (
            b.market, b.slot, b.ts, b.oracle_price,
        ), where  # fmt: skip
        allowed = [want] + [
            dataclasses.replace(want, orders=tuple(o for o in want.orders if o.user != user))
            for user in omitted(b.slot)
        ]
        if not any(_orders(a) == _orders(b) for a in allowed):
            missing = _orders(want) - _orders(b)
            extra = _orders(b) - _orders(want)
            raise AssertionError(f"{where}: orders differ: missing {missing}, extra {extra}")
        out.append(CheckedBook(s.tick_at, want, s.leaf, priced[0], _orders(want) != _orders(b)))
    return out


# ---------------------------------------------------------------------------- the week


@dataclass(frozen=True, slots=True)
class Recomputed:
    """A week settled from the truth: its canonical result and digest, and what went in."""

    doc: dict[str, Json]
    digest: str
    books: int
    fills: int
    books_root: str
    fills_digest: str


def recompute_week(
    engine: sa.Engine,
    sim: model.Simulator,
    program: config.Program,
    week: calendar.Week,
    seed: bytes,
    *,
    registered: Collection[str] = (),
) -> Recomputed:
    """The week's result and digest from the truth's books at the stored ok ticks and the truth's
    fills, under the program's method and terms, with ``registered`` the makers recorded in the
    database (``driftsnap makers add``; no forfeits recorded)."""
    method = methods.get(program.method)
    books = checked_books(engine, sim, week)
    acc = settlement.WeekAccumulator(method.aggregation)
    for checked in books:
        acc.add(scorer.score(checked.book, method))
    fills = truth_fill_facts(sim, week.start, week.end)
    terms = program.terms(week)
    if terms.participants.registered is not None:
        terms = dataclasses.replace(
            terms,
            participants=settlement.Participants(
                registered=terms.participants.registered | frozenset(registered),
                forfeited=terms.participants.forfeited,
            ),
        )
    result = settlement.settle(
        terms, acc, digest.maker_volume(fills), method=method.name, params_hash=method.params_hash
    )
    doc = digest.result_document(result, terms)
    # The leaves: slot, time, oracle and order count from the truth; the book hash is over the
    # stored bytes (the database's account ids), whose orders checked_books compared one by one.
    leaves = [
        digest.BookLeaf(
            c.tick_at.astimezone(UTC).isoformat(), c.book.market_index, c.book.slot, c.book.ts,
            c.book.oracle_price, len(c.book.orders), c.leaf.book_sha256,
        )
        for c in books
    ]  # fmt: skip
    books_root = digest.merkle_root([leaf.hash() for leaf in leaves])
    fills_digest, count = digest.fills_digest(fills)
    return Recomputed(
        doc=doc,
        digest=digest.close_digest(
            doc,
            params_hash=method.params_hash,
            seed_hex=seed.hex(),
            books_root=books_root,
            fills_digest=fills_digest,
        ),
        books=len(leaves),
        fills=count,
        books_root=books_root,
        fills_digest=fills_digest,
    )


# ---------------------------------------------------------------------------- completeness


def partial_snapshots(engine: sa.Engine, markets: int, methods_: int) -> list[str]:
    """Every way a tick's rows are incomplete (empty: none): an ok tick without all its markets'
    snapshots and books, without every method's summary, or a row of a tick that is not ok."""
    problems = []
    with engine.connect() as conn:

        def rows(sql: str) -> list[Any]:
            return list(conn.execute(sa.text(sql)).all())

        for at, n in rows(
            "SELECT t.tick_at, count(s.market_index) FROM ticks t"
            " LEFT JOIN snapshots s ON s.tick_at = t.tick_at AND s.status = 'ok'"
            " AND s.book IS NOT NULL WHERE t.status = 'ok' GROUP BY t.tick_at"
        ):
            if n != markets:
                problems.append(f"ok tick {at}: {n} of {markets} market books")
        for at, n in rows(
            "SELECT t.tick_at, count(m.method_id) FROM ticks t"
            " LEFT JOIN snapshot_methods m ON m.tick_at = t.tick_at"
            " WHERE t.status = 'ok' GROUP BY t.tick_at"
        ):
            if n != markets * methods_:
                problems.append(f"ok tick {at}: {n} of {markets * methods_} method summaries")
        for table in ("snapshots", "snapshot_methods", "brackets", "tick_maker_scores"):
            for (at,) in rows(
                f"SELECT DISTINCT x.tick_at FROM {table} x"  # noqa: S608 (a fixed table name)
                " LEFT JOIN ticks t ON t.tick_at = x.tick_at"
                " WHERE t.tick_at IS NULL OR t.status <> 'ok'"
            ):
                problems.append(f"{table}: rows of {at}, which has no ok header")
        for at, n in rows(
            "SELECT t.tick_at, count(DISTINCT (x.market_index, x.method_id)) FROM ticks t"
            " JOIN tick_maker_scores x ON x.tick_at = t.tick_at WHERE t.status = 'ok'"
            " GROUP BY t.tick_at"
        ):
            if n > markets * methods_:
                problems.append(f"ok tick {at}: scores of {n} (market, method) pairs")
        ok = rows("SELECT count(*) FROM ticks WHERE status = 'ok'")[0][0]
        for method, n in rows(
            "SELECT method_id, sum(snapshots) FROM week_methods GROUP BY method_id"
        ):
            if n != ok * markets:
                problems.append(
                    f"week_methods: method {method} counts {n} snapshots, not {ok * markets}"
                )
    return problems
