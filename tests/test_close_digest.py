"""The close's pure digests (driftsnap.scoring.digest): Merkle root, fills digest, differences."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from driftsnap.scoring import digest

LEAVES = [hashlib.sha256(bytes([i])).hexdigest() for i in range(7)]


def _fill(record_id: int, quote: int, maker: str | None, taker: str | None) -> digest.FillFact:
    return digest.FillFact(
        "perp", 0, record_id, f"sig{record_id}", 10 + record_id, 1_700_000_000, "u", maker, "t",
        taker, quote,
    )  # fmt: skip


def test_merkle_root_of_known_leaves() -> None:
    """The root follows the documented construction: 0x00 leaves, 0x01 nodes, odd one promoted."""
    h = hashlib.sha256
    a, b, c = (h(b"\x00" + bytes.fromhex(x)).digest() for x in LEAVES[:3])
    assert (
        digest.merkle_root(LEAVES[:3]) == h(b"\x01" + h(b"\x01" + a + b).digest() + c).hexdigest()
    )
    assert digest.merkle_root(LEAVES[:1]) == a.hex()
    assert digest.merkle_root([]) == digest.EMPTY_ROOT


@given(st.lists(st.integers(0, 6), min_size=1, max_size=12))
def test_merkle_root_changes_with_any_leaf_or_order(indexes: list[int]) -> None:
    """Dropping, duplicating or swapping leaves changes the root (no odd-leaf duplication trick)."""
    leaves = [LEAVES[i] for i in indexes]
    root = digest.merkle_root(leaves)
    assert digest.merkle_root([*leaves, leaves[-1]]) != root
    if len(leaves) > 1:
        assert digest.merkle_root(leaves[:-1]) != root
        swapped = [leaves[1], leaves[0], *leaves[2:]]
        assert (digest.merkle_root(swapped) == root) == (leaves[0] == leaves[1])


def test_fills_digest_ignores_order_and_sees_every_field() -> None:
    """The fills digest is over natural-key order; any changed amount changes it."""
    fills = [_fill(i, 1_000 * i, "A", "B") for i in range(5)]
    one, n = digest.fills_digest(fills)
    assert n == 5
    assert digest.fills_digest(reversed(fills))[0] == one
    changed = [*fills[:4], _fill(4, 4_001, "A", "B")]
    assert digest.fills_digest(changed)[0] != one


def test_maker_volume_leaves_out_self_matches_and_unknown_makers() -> None:
    """Spec 4: a fill whose maker and taker share an authority, or has no authority, adds 0."""
    fills = [
        _fill(1, 5, "A", "B"),
        _fill(2, 7, "A", "A"),
        _fill(3, 11, None, "B"),
        _fill(4, 13, "B", None),
    ]
    assert digest.maker_volume(fills) == {"A": 5, "B": 13}


def test_first_difference_names_the_path() -> None:
    """The first differing key or index is reported with both values; equal documents give None."""
    doc = {"pools": [{"makers": [{"reward": 5}]}], "week": "2026-W47"}
    assert digest.first_difference(doc, doc) is None
    other = {"pools": [{"makers": [{"reward": 6}]}], "week": "2026-W47"}
    assert digest.first_difference(doc, other) == ".pools[0].makers[0].reward: 5 != 6"
    assert digest.first_difference({"a": 1}, {"a": 1.0}) == ".a: 1 != 1.0"
    assert digest.first_difference([1], [1, 2]) == ": 1 entries != 2"
