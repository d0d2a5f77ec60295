"""The book JSON format: valid books parse exactly, bad ones fail with one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driftsnap.errors import InputError
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import bookfile
from tests.books import key

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "market": "SOL-PERP",
        "market_index": 0,
        "slot": 123,
        "ts": 1_700_000_000,
        "oracle_price": 100_000_000,
        "orders": [
            {
                "user": key("u"),
                "authority": key("a"),
                "side": "bid",
                "price": 99_990_000,
                "size": 50_000_000_000,
                "order_id": 7,
            }
        ],
    }
    doc.update(changes)
    return doc


def _with_order(**changes: Any) -> str:
    doc = _doc()
    doc["orders"][0].update(changes)
    return json.dumps(doc)


def test_a_valid_book_parses_to_exact_integers_and_round_trips() -> None:
    """Every field arrives as the exact integer given, and to_dict writes the same document."""
    text = json.dumps(_doc())
    book = bookfile.parse(text)
    assert book.orders[0] == book_mod.Order(
        user=key("u"),
        authority=key("a"),
        side=book_mod.Side.BID,
        price=99_990_000,
        size=50_000_000_000,
        order_id=7,
    )
    assert bookfile.to_dict(book) == json.loads(text)


def test_unknown_keys_are_ignored_so_writers_can_add_facts() -> None:
    """Extra keys (oracle slot, best prices) from the chain reader do not break the format."""
    book = bookfile.parse(json.dumps(_doc(oracle_slot=120, note="x")))
    assert book.slot == 123


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "book: file is empty"),
        ("   \n", "book: file is empty"),
        ("{not json", "book: not valid JSON"),
        ("[]", "book: expected a JSON object, got list"),
        (
            json.dumps({k: v for k, v in _doc().items() if k != "oracle_price"}),
            "oracle_price: missing required field",
        ),
        (_with_order(size=-5), "orders[0].size: input should be greater than 0 (got -5)"),
        (_with_order(size=0), "orders[0].size: input should be greater than 0 (got 0)"),
        (_with_order(side="buy"), "orders[0].side: input should be 'bid' or 'ask' (got 'buy')"),
        (_with_order(price=99.5), "orders[0].price: input should be a valid integer (got 99.5)"),
        (_with_order(price=True), "orders[0].price: input should be a valid integer (got True)"),
        (_with_order(price="99990000"), "orders[0].price: input should be a valid integer"),
        (_with_order(user="not-a-key"), "orders[0].user: not a base58 public key: 'not-a-key'"),
        (_with_order(order_id=None), "orders[0].order_id: input should be a valid integer"),
        (json.dumps(_doc(oracle_price=0)), "oracle_price: input should be greater than 0"),
        (json.dumps(_doc(orders={})), "orders: input should be a valid list"),
        (json.dumps(_doc(slot=2**63)), "slot: input should be less than or equal to"),
    ],
)
def test_bad_books_fail_with_one_line_naming_the_problem(text: str, message: str) -> None:
    """Empty, non-JSON, missing, negative, wrongly typed or unknown values: one clear line each."""
    with pytest.raises(InputError) as err:
        bookfile.parse(text)
    assert str(err.value).startswith(message if message.startswith("book:") else f"book: {message}")
    assert "\n" not in str(err.value)


def test_shipped_examples_are_valid_books() -> None:
    """The two example books under examples/ parse (the README points users at them)."""
    books = [bookfile.parse(p.read_text(), source=p.name) for p in sorted(EXAMPLES.glob("*.json"))]
    assert [b.market for b in books] == ["BTC-PERP", "SOL-PERP"]
    assert all(b.orders for b in books)
