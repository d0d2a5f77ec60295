"""Digests of a week close: the canonical result, the inputs' Merkle root, the fills digest.

Pure functions, no I/O: the week close and ``verify-week`` compute them from what the store
holds, and anyone holding the same data computes the same hex strings.

- **Canonical JSON**: sorted keys, no whitespace, ASCII only; floats in Python's shortest
  round-trip form (the same digits JavaScript prints), integers exact.
- **Book leaf** of one snapshot: sha256 of the canonical JSON of its header (tick time, market
  index, slot, ts, oracle price, order count) and the sha256 of the stored book value.
- **Merkle root** of the week's leaves in (tick time, market index) order: ``H(0x00 || leaf)`` for
  a leaf, ``H(0x01 || left || right)`` for a node, an odd node promoted unchanged (never paired
  with itself, so two different leaf lists cannot share a root). The empty list's root is
  ``sha256(b"")``.
- **Fills digest**: sha256 over one canonical JSON line per fill, in natural-key order.
- **Result digest**: sha256 of the canonical JSON of ``{"result", "params_hash", "seed",
  "books_root", "fills_digest"}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from driftsnap.scoring import settlement

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def canonical_json(doc: Any) -> str:
    """The one text form of ``doc`` that every digest is taken over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(data: str | bytes) -> str:
    """The hex sha256 of ``data`` (text as UTF-8)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True, slots=True)
class BookLeaf:
    """What the Merkle root commits to for one stored snapshot."""

    tick_at: str  # ISO 8601, UTC
    market_index: int
    slot: int
    ts: int
    oracle_price: int
    orders: int
    book_sha256: str

    def hash(self) -> str:
        """The leaf hash: sha256 of the canonical JSON of the leaf's fields."""
        return sha256_hex(
            canonical_json(
                {
                    "tick_at": self.tick_at,
                    "market_index": self.market_index,
                    "slot": self.slot,
                    "ts": self.ts,
                    "oracle_price": self.oracle_price,
                    "orders": self.orders,
                    "book_sha256": self.book_sha256,
                }
            )
        )


def merkle_root(leaves: Sequence[str]) -> str:
    """Root of the hex leaf hashes ``leaves`` in the order given (see the module docstring)."""
    if not leaves:
        return EMPTY_ROOT
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(x)).digest() for x in leaves]
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


@dataclass(frozen=True, slots=True)
class FillFact:
    """The fields of a stored fill that the volume depends on, in base58 and integers."""

    market_type: str
    market_index: int
    fill_record_id: int
    signature: str
    slot: int
    block_time: int
    maker: str | None
    maker_authority: str | None
    taker: str | None
    taker_authority: str | None
    quote_filled: int

    @property
    def key(self) -> tuple[str, int, int]:
        """The fill's natural key: market type, market index, fill record id."""
        return (self.market_type, self.market_index, self.fill_record_id)


def fills_digest(fills: Iterable[FillFact]) -> tuple[str, int]:
    """(sha256 over the fills in natural-key order, how many there were)."""
    h = hashlib.sha256()
    count = 0
    for f in sorted(fills, key=lambda f: f.key):
        line = canonical_json(
            [
                f.market_type, f.market_index, f.fill_record_id, f.signature, f.slot,
                f.block_time, f.maker, f.maker_authority, f.taker, f.taker_authority,
                f.quote_filled,
            ]
        )  # fmt: skip
        h.update(line.encode() + b"\n")
        count += 1
    return h.hexdigest(), count


def maker_volume(fills: Iterable[FillFact]) -> dict[str, int]:
    """Maker volume per authority (spec 4): self-matches and unattributed fills left out."""
    out: dict[str, int] = {}
    for f in fills:
        if f.maker_authority is None or f.maker_authority == f.taker_authority:
            continue
        out[f.maker_authority] = out.get(f.maker_authority, 0) + f.quote_filled
    return out


def result_document(result: settlement.WeekResult, terms: settlement.WeekTerms) -> dict[str, Any]:
    """The canonical result of a week: its terms, every pool with every maker, the payouts.

    Shares are left out: they are ``weight / sum of the participants' weights`` and exact
    fractions of floats would only add long numbers. Rewards are micro-USDC integers.
    """
    participants = terms.participants
    return {
        "week": str(result.week),
        "method": result.method,
        "params_hash": result.params_hash,
        "paused": result.paused,
        "pause_reason": result.pause_reason,
        "terms": {
            "score_pools": dict(sorted(terms.score_pools.items())),
            "volume_pool": terms.volume_pool,
            "registered": (
                None if participants.registered is None else sorted(participants.registered)
            ),
            "forfeited": sorted(participants.forfeited),
        },
        "pools": [
            {
                "market": p.market,
                "pool": p.pool,
                "snapshots": p.snapshots,
                "paid": p.paid,
                "unallocated": p.unallocated,
                "makers": [
                    {
                        "maker": m.maker,
                        "authority": m.authority,
                        "weight": m.weight,
                        "participant": m.participant,
                        "reward": m.reward,
                    }
                    for m in p.makers
                ],
            }
            for p in result.pools
        ],
        "payouts": result.payouts(),
        "unallocated": result.unallocated,
    }


def close_digest(
    result_doc: dict[str, Any],
    *,
    params_hash: str,
    seed_hex: str | None,
    books_root: str,
    fills_digest: str,
) -> str:
    """The digest printed and stored with a closed week."""
    return sha256_hex(
        canonical_json(
            {
                "result": result_doc,
                "params_hash": params_hash,
                "seed": seed_hex,
                "books_root": books_root,
                "fills_digest": fills_digest,
            }
        )
    )


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where two JSON documents first differ, as ``path: expected != actual``; None if equal."""
    found: str | None = None
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                found = f"{path}.{key}: present on one side only"
            else:
                found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                break
    elif isinstance(expected, list) and isinstance(actual, list):
        for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                break
        if not found and len(expected) != len(actual):
            found = f"{path}: {len(expected)} entries != {len(actual)}"
    elif expected != actual or type(expected) is not type(actual):
        found = f"{path or '.'}: {expected!r} != {actual!r}"
    return found
