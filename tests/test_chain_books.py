"""Books from decoded users: the eligible orders driftpy's functions name, sorted best first."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from driftpy.decode.user import decode_user
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.chain import accounts, books, markets, users
from driftsnap.scoring.book import Book, Side
from tests.test_chain_eligibility import reference

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/mainnet/accounts.json"
S = 300_000_000
T = 1_750_000_000


def market(index: int, name: str) -> markets.PerpMarket:
    return markets.PerpMarket(
        pubkey=str(Pubkey(hashlib.sha256(f"market{index}".encode()).digest())),
        market_index=index,
        name=name,
        status="Active",
        contract_type="Perpetual",
        oracle=str(Pubkey(hashlib.sha256(f"oracle{index}".encode()).digest())),
        oracle_source="PythLazer",
        order_tick_size=100,
        order_step_size=1,
        min_order_size=1,
        next_fill_record_id=1,
    )


def user_bytes(authority: bytes, orders: list[dict[str, int]]) -> bytes:
    """A User account (our IDL layout, proven equal to anchorpy's elsewhere) with these orders."""
    record = np.zeros(1, dtype=users.ACCOUNT_DTYPE)
    record["discriminator"] = int.from_bytes(accounts.DISCRIMINATORS[accounts.Kind.USER], "little")
    record["user"]["authority"][0] = np.frombuffer(authority, dtype=np.uint8)
    for slot, fields in enumerate(orders):
        for name, value in fields.items():
            record["user"]["orders"][0, slot][name] = value
    return record.tobytes()


def limit(price: int, *, long: bool, order_id: int, offset: int = 0, **more: int) -> dict[str, int]:
    return {
        "status": protocol.OrderStatus.OPEN,
        "market_type": protocol.MarketType.PERP,
        "order_type": protocol.OrderType.LIMIT,
        "direction": protocol.Direction.LONG if long else protocol.Direction.SHORT,
        "price": price,
        "oracle_price_offset": offset,
        "base_asset_amount": 10**9,
        "order_id": order_id,
        "slot": S - 10,
        "post_only": 1,
    } | more


def raw(pubkey_seed: str, authority_seed: str, orders: list[dict[str, int]]) -> accounts.RawAccount:
    return accounts.RawAccount(
        pubkey=str(Pubkey(hashlib.sha256(pubkey_seed.encode()).digest())),
        owner=protocol.DRIFT_PROGRAM_ID,
        data=user_bytes(hashlib.sha256(authority_seed.encode()).digest(), orders),
    )


def assert_sorted(book: Book) -> None:
    bids = [o for o in book.orders if o.side is Side.BID]
    asks = [o for o in book.orders if o.side is Side.ASK]
    assert list(book.orders) == bids + asks
    assert [o.price for o in bids] == sorted((o.price for o in bids), reverse=True)
    assert [o.price for o in asks] == sorted(o.price for o in asks)


def test_fixed_and_floating_orders_interleave_by_price() -> None:
    """Oracle-offset orders sort among fixed ones by their price at S (driftpy's DLOB does not)."""
    oracle = 100_000_000
    raw_users = [
        raw(
            "a",
            "A",
            [
                limit(99_000_000, long=True, order_id=1),
                limit(0, long=True, order_id=2, offset=-500_000),
            ],
        ),
        raw(
            "b",
            "B",
            [
                limit(99_800_000, long=True, order_id=1),
                limit(0, long=False, order_id=2, offset=300_000),
            ],
        ),
        raw(
            "c",
            "C",
            [
                limit(100_200_000, long=False, order_id=1),
                limit(100_400_000, long=False, order_id=2),
            ],
        ),
    ]
    decoded = users.decode(raw_users, accounts.Skipped())
    book = books.build(decoded, [market(0, "SOL-PERP")], {0: oracle}, slot=S, ts=T)[0]
    assert [(o.side, o.price) for o in book.orders] == [
        (Side.BID, 99_800_000),
        (Side.BID, 99_500_000),
        (Side.BID, 99_000_000),
        (Side.ASK, 100_200_000),
        (Side.ASK, 100_300_000),
        (Side.ASK, 100_400_000),
    ]
    assert (book.market, book.market_index, book.slot, book.ts, book.oracle_price) == (
        "SOL-PERP",
        0,
        S,
        T,
        oracle,
    )


def test_equal_prices_go_by_age_then_account_then_order_id() -> None:
    """Ties: the older order first, then the lower User pubkey, then the lower order id."""
    same = 99_000_000
    raw_users = [
        raw(
            "x",
            "X",
            [
                limit(same, long=True, order_id=7, slot=S - 5),
                limit(same, long=True, order_id=3, slot=S - 5),
            ],
        ),
        raw(
            "y",
            "Y",
            [
                limit(same, long=True, order_id=1, slot=S - 5),
                limit(same, long=True, order_id=9, slot=S - 50),
            ],
        ),
    ]
    decoded = users.decode(raw_users, accounts.Skipped())
    book = books.build(decoded, [market(0, "SOL-PERP")], {0: same}, slot=S, ts=T)[0]
    x, y = raw_users[0].pubkey, raw_users[1].pubkey
    same_slot = [(x, 3), (x, 7), (y, 1)] if x < y else [(y, 1), (x, 3), (x, 7)]
    expected = [(y, 9), *same_slot]
    assert [(o.user, o.order_id) for o in book.orders] == expected


def test_orders_carry_the_user_account_and_its_authority() -> None:
    """``user`` is the User account's address and ``authority`` the wallet inside the account."""
    raw_users = [
        raw("sub0", "wallet", [limit(99_000_000, long=True, order_id=1)]),
        raw("sub1", "wallet", [limit(101_000_000, long=False, order_id=1)]),
    ]
    decoded = users.decode(raw_users, accounts.Skipped())
    book = books.build(decoded, [market(0, "SOL-PERP")], {0: 100_000_000}, slot=S, ts=T)[0]
    wallet = str(Pubkey(hashlib.sha256(b"wallet").digest()))
    assert [(o.user, o.authority) for o in book.orders] == [
        (raw_users[0].pubkey, wallet),
        (raw_users[1].pubkey, wallet),
    ]
    assert [o.size for o in book.orders] == [10**9, 10**9]


def test_every_requested_market_gets_a_book_even_when_empty() -> None:
    """A market with no resting order is an empty book, and unrequested markets are left out."""
    raw_users = [raw("a", "A", [limit(99_000_000, long=True, order_id=1, market_index=5)])]
    decoded = users.decode(raw_users, accounts.Skipped())
    built = books.build(decoded, [market(0, "SOL-PERP")], {0: 100_000_000}, slot=S, ts=T)
    assert list(built) == [0]
    assert built[0].orders == ()


def test_no_users_give_empty_books() -> None:
    """A snapshot without User accounts still yields one (empty) book per market."""
    decoded = users.decode([], accounts.Skipped())
    built = books.build(decoded, [market(0, "SOL-PERP")], {0: 100_000_000}, slot=S, ts=T)
    assert built[0].orders == ()


def test_the_fixture_users_give_the_listed_sol_perp_book() -> None:
    """The 104 mainnet Users' SOL-PERP book at S and T: six bids, two asks, expiry respected."""
    doc = json.loads(FIXTURES.read_text())
    raw_users = [
        accounts.RawAccount(
            e["summary"]["user_pda"], e["owner"], base64.b64decode(e["data_base64"])
        )
        for e in doc["accounts"]
        if e["kind"] == "User"
    ]
    decoded = users.decode(raw_users, accounts.Skipped())
    sol = market(0, "SOL-PERP")
    expiry = 1_738_894_676
    at_expiry = books.build(decoded, [sol], {0: 193_500_000}, slot=318_979_837, ts=expiry)[0]
    turbo = "2aMcirYcF9W8aTFem6qe8QtvfQ22SLY6KUe6yUQbqfHk"
    assert [(o.user[:6], o.side, o.price, o.order_id) for o in at_expiry.orders] == [
        (turbo[:6], Side.BID, 193_511_600, 85942690),
        (turbo[:6], Side.BID, 193_414_800, 85942691),
        ("8BGzx6", Side.BID, 69_007_500, 9),
        ("5bG189", Side.BID, 67_990_000, 11),
        ("FjxeNZ", Side.BID, 61_169_000, 9),
        ("BFgK6D", Side.BID, 50_000_000, 97),
        (turbo[:6], Side.ASK, 193_896_800, 85942692),
        (turbo[:6], Side.ASK, 193_993_700, 85942693),
    ]
    assert at_expiry.orders[0].authority == "F3no8aqNZRSkxvMEARC4feHJfvvrST2ZrHzr2NBVyJUr"
    assert at_expiry.orders[0].size == 80_000_000_000
    after = books.build(decoded, [sol], {0: 193_500_000}, slot=318_979_837, ts=expiry + 1)[0]
    assert [o.order_id for o in after.orders] == [9, 11, 9, 97]


# ---------------------------------------------------------------- against driftpy, at random


_random_order = st.fixed_dictionaries(
    {
        "status": st.sampled_from([1] * 6 + [0, 2, 3]),
        "market_type": st.sampled_from([1] * 6 + [0]),
        "market_index": st.integers(0, 3),
        "order_type": st.sampled_from([1] * 5 + [3, 3, 0, 2, 4]),
        "trigger_condition": st.sampled_from([2, 3, 0, 1]),
        "direction": st.integers(0, 1),
        "post_only": st.sampled_from([1, 1, 0]),
        "price": st.one_of(st.just(0), st.integers(95_000_000, 105_000_000)),
        "trigger_price": st.integers(95_000_000, 105_000_000),
        "oracle_price_offset": st.one_of(st.just(0), st.integers(-3_000_000, 3_000_000)),
        "base_asset_amount": st.integers(1, 5).map(lambda n: n * 10**8),
        "base_asset_amount_filled": st.sampled_from([0] * 4 + [10**8, 5 * 10**8]),
        "slot": st.integers(S - 30, S),
        "auction_duration": st.sampled_from([0, 0, 10, 20]),
        "auction_start_price": st.sampled_from([0, 0, -1_000_000, 99_000_000]),
        "auction_end_price": st.sampled_from([0, 0, 1_000_000, 101_000_000]),
        "max_ts": st.sampled_from([0] * 4 + [T - 1, T, T + 1]),
    }
)


@given(accounts_orders=st.lists(st.lists(_random_order, max_size=8), min_size=1, max_size=12))
def test_books_hold_exactly_what_driftpy_calls_eligible_in_sorted_order(
    accounts_orders: list[list[dict[str, Any]]],
) -> None:
    """Per market: the (user, order id, side, price, size) set is driftpy's verdict, sorted."""
    configured = [market(0, "SOL-PERP"), market(1, "BTC-PERP"), market(2, "ETH-PERP")]
    oracle = {0: 100_000_000, 1: 100_100_000, 2: 99_900_000}
    raw_users = [
        raw(f"user{i}", f"wallet{i % 3}", [o | {"order_id": j + 1} for j, o in enumerate(orders)])
        for i, orders in enumerate(accounts_orders)
    ]
    decoded = users.decode(raw_users, accounts.Skipped())
    built = books.build(decoded, configured, oracle, slot=S, ts=T)

    expected: dict[int, set[tuple[str, int, Side, int, int]]] = {0: set(), 1: set(), 2: set()}
    for account in raw_users:
        for order in decode_user(account.data).orders:
            if order.market_index not in oracle:
                continue
            price = reference(order, S, T, oracle[order.market_index])
            if price is None:
                continue
            side = Side.BID if type(order.direction).__name__ == "Long" else Side.ASK
            size = order.base_asset_amount - order.base_asset_amount_filled
            expected[order.market_index].add((account.pubkey, order.order_id, side, price, size))
    for index, book in built.items():
        got = [(o.user, o.order_id, o.side, o.price, o.size) for o in book.orders]
        assert len(got) == len(set(got))
        assert set(got) == expected[index]
        assert_sorted(book)
