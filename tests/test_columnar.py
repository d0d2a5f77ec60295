"""The columnar tick (issue 17) gives the books and scores of the object path, on simnet bytes.

The bytes are a ``getProgramAccounts`` answer of the ``mainnet-scale`` scenario (scaled down), with
a few hostile items added. The object path here is the one the reader had before: one
``RawAccount`` per account, ``users.decode``, one ``Order`` per order sorted in Python, and each
method building its columns from those objects.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from driftsnap import protocol
from driftsnap.chain import accounts, books, eligibility, idl, markets, users
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import methods, scorer
from driftsnap.simnet import model, scenarios
from driftsnap.store import books as store_books
from driftsnap.store import snapshots
from tests import pg

SEED = 7


@pytest.fixture(scope="module")
def chain() -> dict[str, Any]:
    """A scaled mainnet-scale chain after a few slots: gPA items, markets, oracle prices."""
    scenario = dataclasses.replace(scenarios.MAINNET_SCALE, authorities=120)
    sim = model.Simulator(scenario, seed=SEED)
    for _ in range(5):
        sim.step()
    user_kind = accounts.DISCRIMINATORS[accounts.Kind.USER]
    flag = idl.offset("User", "has_open_order")
    program = list(sim.program_accounts())
    items: list[dict[str, Any]] = [
        {
            "pubkey": str(address),
            "account": {
                "data": [base64.b64encode(a.data).decode(), "base64"],
                "owner": str(a.owner),
            },
        }
        for address, a in program
        if a.data[:8] == user_kind and a.data[flag] == 1
    ]
    assert len(items) > 200
    # Hostile items: a duplicate, a foreign owner, bad base64, a short account, no pubkey.
    drift = protocol.DRIFT_PROGRAM_ID
    short = items[5]["account"]["data"][0][:100]
    foreign = {**items[4]["account"], "owner": "11111111111111111111111111111111"}
    items += [
        items[3],
        {"pubkey": "x1", "account": foreign},
        {"pubkey": "x2", "account": {"data": ["!!!", "base64"], "owner": drift}},
        {"pubkey": "x3", "account": {"data": [short, "base64"], "owner": drift}},
        {"account": items[6]["account"]},
    ]
    raw = {str(k): accounts.RawAccount(str(k), str(a.owner), a.data) for k, a in program}
    perp_kind = accounts.DISCRIMINATORS[accounts.Kind.PERP_MARKET]
    perp = sorted(
        (markets.decode(a) for a in raw.values() if a.data[:8] == perp_kind),
        key=lambda m: m.market_index,
    )
    oracle = {m.market_index: markets.oracle_price(m, raw.get(m.oracle)).price for m in perp}
    return {"items": items, "markets": perp, "oracle": oracle, "slot": sim.slot, "ts": sim.ts}


def _object_books(chain: dict[str, Any]) -> tuple[dict[int, book_mod.Book], accounts.Skipped]:
    """The object path: RawAccounts, users.decode, Orders sorted by the documented key."""
    skipped = accounts.Skipped()
    size = accounts.SIZES[accounts.Kind.USER]
    raw = accounts.from_program_accounts(chain["items"], skipped, max_size=size)
    decoded = users.decode(raw, skipped, slot=chain["slot"])
    per_market: dict[int, list[tuple[Any, ...]]] = {m.market_index: [] for m in chain["markets"]}
    for row in range(len(decoded)):
        slots = decoded.orders[row]
        oracle = np.array(
            [chain["oracle"].get(int(i), 0) for i in slots["market_index"]], dtype=np.int64
        )
        priced = eligibility.evaluate(
            slots, slot=chain["slot"], ts=chain["ts"], oracle_price=oracle
        )
        for k in range(len(slots)):
            o = slots[k]
            index = int(o["market_index"])
            if not priced.eligible[k] or index not in per_market:
                continue
            side = (
                book_mod.Side.BID
                if o["direction"] == protocol.Direction.LONG
                else book_mod.Side.ASK
            )
            price = int(priced.price[k])
            order = book_mod.Order(
                user=decoded.pubkeys[row],
                authority=decoded.authority_of(row),
                side=side,
                price=price,
                size=int(o["base_asset_amount"]) - int(o["base_asset_amount_filled"]),
                order_id=int(o["order_id"]),
            )
            key = (int(side), -price if side == book_mod.Side.BID else price, int(o["slot"]),
                   order.user, order.order_id)  # fmt: skip
            per_market[index].append((key, order))
    built = {
        m.market_index: book_mod.Book(
            market=m.name,
            market_index=m.market_index,
            slot=chain["slot"],
            ts=chain["ts"],
            oracle_price=chain["oracle"][m.market_index],
            orders=tuple(o for _, o in sorted(per_market[m.market_index], key=lambda x: x[0])),
        )
        for m in chain["markets"]
    }
    return built, skipped


def _columnar_books(chain: dict[str, Any]) -> tuple[dict[int, book_mod.Book], accounts.Skipped]:
    skipped = accounts.Skipped()
    decoded = users.decode_program_accounts(list(chain["items"]), skipped, slot=chain["slot"])
    built = books.build(
        decoded, chain["markets"], chain["oracle"], slot=chain["slot"], ts=chain["ts"]
    )
    return built, skipped


def test_columnar_books_and_checks_equal_the_object_path(chain: dict[str, Any]) -> None:
    """Same accounts skipped for the same reasons, and the same books order by order."""
    ours, ours_skipped = _columnar_books(chain)
    theirs, theirs_skipped = _object_books(chain)
    assert ours_skipped.seen == theirs_skipped.seen == len(chain["items"])
    assert ours_skipped.by_reason == theirs_skipped.by_reason
    assert set(ours_skipped.by_reason) == {
        accounts.Reason.DUPLICATE, accounts.Reason.OWNER, accounts.Reason.ENCODING,
        accounts.Reason.LENGTH,
    }  # fmt: skip
    assert all(b.table is not None for b in ours.values())
    assert sum(b.order_count for b in ours.values()) > 500
    assert [b.order_count for b in ours.values()] == [len(b.orders) for b in theirs.values()]
    assert ours == theirs


@pytest.mark.parametrize("method", list(methods.PRESETS.values()), ids=list(methods.PRESETS))
def test_columnar_scores_equal_the_object_path(
    chain: dict[str, Any], method: methods.Method
) -> None:
    """Integer sums exact, best prices exact, per-maker scores within 1e-12 relative."""
    ours, _ = _columnar_books(chain)
    theirs, _ = _object_books(chain)
    scored = 0
    for index, book in ours.items():
        a, b = scorer.score(book, method), scorer.score(theirs[index], method)
        assert (a.best_bid, a.best_ask) == (b.best_bid, b.best_ask)
        assert a.authority_of == b.authority_of
        assert list(a.scores) == list(b.scores)  # same makers, in the same (sorted) order
        for maker, value in b.scores.items():
            assert math.isclose(a.scores[maker], value, rel_tol=1e-12, abs_tol=0.0)
        assert len(a.brackets) == len(b.brackets)
        for x, y in zip(a.brackets, b.brackets, strict=True):
            assert (x.name, x.total_bid, x.total_ask, x.bid_price, x.ask_price) == (
                y.name, y.total_bid, y.total_ask, y.bid_price, y.ask_price,
            )  # fmt: skip
            assert (dict(x.maker_bid), dict(x.maker_ask)) == (dict(y.maker_bid), dict(y.maker_ask))
            assert x.q == y.q
            assert x.value == y.value
        scored += sum(v > 0 for v in a.scores.values())
    assert scored > 0


def test_mm_scoring_sums_are_deterministic_and_listing_order_free(chain: dict[str, Any]) -> None:
    """The vectorised per-maker sums give the same bits for any listing of the same orders."""
    ours, _ = _columnar_books(chain)
    book = max(ours.values(), key=lambda b: b.order_count)
    method = methods.PRESETS["drift-mm-scoring"]
    rng = np.random.default_rng(3)
    shuffled = dataclasses.replace(
        book, orders=tuple(book.orders[i] for i in rng.permutation(book.order_count)), table=None
    )
    a, b = scorer.score(book, method), scorer.score(shuffled, method)
    assert a.scores == b.scores
    assert scorer.score(book, method).scores == a.scores


def test_a_book_built_from_a_table_reads_like_one_built_from_orders(chain: dict[str, Any]) -> None:
    """Equality, hashing, replace and the cached columns of a table book."""
    ours, _ = _columnar_books(chain)
    book = max(ours.values(), key=lambda b: b.order_count)
    plain = book_mod.Book(
        market=book.market, market_index=book.market_index, slot=book.slot, ts=book.ts,
        oracle_price=book.oracle_price, orders=book.orders,
    )  # fmt: skip
    assert plain == book
    assert hash(plain) == hash(book)
    assert book.columns("user", include_vamm=False) is book.columns("user", include_vamm=True)
    moved = dataclasses.replace(book, slot=book.slot + 1)
    assert moved.orders == book.orders
    assert moved.slot == book.slot + 1
    fewer = dataclasses.replace(book, orders=book.orders[:3])
    assert len(fewer.columns("authority", include_vamm=False)) == 3 == fewer.order_count


def test_the_store_writes_a_table_book_without_building_its_orders(
    chain: dict[str, Any], pg_engine: sa.Engine
) -> None:
    """write_tick takes a table book's columns as they are (no Order objects built, the daemon's
    path), stores what the object path would, and the tick's counts are the book's."""
    ours, _ = _columnar_books(chain)
    theirs, _ = _object_books(chain)
    markets_ = [
        snapshots.MarketSnapshot(b, tuple(scorer.score(b, m) for m in pg.METHODS))
        for b in ours.values()
    ]
    with pg_engine.begin() as conn:
        assert snapshots.write_tick(conn, pg.ok_tick(pg.MONDAY), markets_, methods=pg.METHODS)
    assert all(b.__dict__["_orders"] is None for b in ours.values()), "Orders were built"
    with pg_engine.connect() as conn:
        header = conn.execute(sa.text("SELECT orders, makers FROM ticks")).one()
        for index, book in theirs.items():
            assert snapshots.read_book(conn, pg.MONDAY, book.market) == book
            stored = conn.execute(
                sa.text("SELECT book_sha256 FROM snapshots WHERE market_index = :i"), {"i": index}
            ).scalar_one()
            assert stored == store_books.canonical_sha256(book)
    assert header.orders == sum(b.order_count for b in theirs.values())
    assert header.makers == len({o.authority for b in theirs.values() for o in b.orders})
