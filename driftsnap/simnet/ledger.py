"""The simulator's transaction log: confirmed fill transactions, by signature and by account.

It answers what getSignaturesForAddress and getTransaction need (pages newest first, bounded by
``before``/``until``) and keeps only the newest ``max_transactions``, so it stays a fixed size.
Every transaction has a sequence number; a lower number is an older transaction, including within
one slot, which is the order Solana lists them in.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import deque


@dataclasses.dataclass(frozen=True, slots=True)
class Fill:
    """One maker fill: the ground truth behind one ``OrderActionRecord`` event."""

    market_index: int
    fill_record_id: int
    slot: int
    ts: int
    signature: str
    maker: str
    maker_authority: str
    maker_order_id: int
    taker: str | None
    taker_authority: str | None
    taker_order_id: int | None
    base: int
    quote: int
    price: int
    jit: bool

    @property
    def self_match(self) -> bool:
        """Whether the taker is the maker's own authority."""
        return self.taker_authority is not None and self.taker_authority == self.maker_authority


@dataclasses.dataclass(frozen=True, slots=True)
class Transaction:
    """A confirmed transaction as getTransaction shows it."""

    seq: int
    signature: str
    slot: int
    block_time: int
    account_keys: tuple[str, ...]
    logs: tuple[str, ...]
    compute_units: int
    fills: tuple[Fill, ...]
    # Addresses a lying node lists the transaction under though its message never names them
    # (a forged fill, listed under the Drift program): getSignaturesForAddress sees them.
    listed_under: tuple[str, ...] = ()

    @property
    def index_keys(self) -> tuple[str, ...]:
        """Every address getSignaturesForAddress lists this transaction under."""
        return self.account_keys + tuple(k for k in self.listed_under if k not in self.account_keys)


class Ledger:
    """Retained transactions, oldest first, with an index from account to transactions."""

    def __init__(self, max_transactions: int) -> None:
        self.max_transactions = max_transactions
        self.transactions: dict[str, Transaction] = {}
        self._order: deque[Transaction] = deque()
        self._by_address: dict[str, list[int]] = {}  # account -> sequence numbers, ascending
        self._by_seq: dict[int, Transaction] = {}
        self._next_seq = 0

    @property
    def next_seq(self) -> int:
        """The sequence number the next transaction will get."""
        return self._next_seq

    def record(
        self,
        *,
        signature: str,
        slot: int,
        block_time: int,
        account_keys: tuple[str, ...],
        logs: tuple[str, ...],
        compute_units: int,
        fills: tuple[Fill, ...],
        listed_under: tuple[str, ...] = (),
    ) -> Transaction:
        """Append a transaction, dropping the oldest beyond ``max_transactions``."""
        tx = Transaction(
            self._next_seq,
            signature,
            slot,
            block_time,
            account_keys,
            logs,
            compute_units,
            fills,
            listed_under,
        )
        self._next_seq += 1
        self.transactions[signature] = tx
        self._by_seq[tx.seq] = tx
        self._order.append(tx)
        for key in tx.index_keys:
            self._by_address.setdefault(key, []).append(tx.seq)
        while len(self._order) > self.max_transactions:
            self._forget(self._order.popleft())
        return tx

    def _forget(self, tx: Transaction) -> None:
        del self.transactions[tx.signature]
        del self._by_seq[tx.seq]
        for key in tx.index_keys:
            seqs = self._by_address[key]
            # The oldest transaction is first in every list it is in.
            del seqs[0]
            if not seqs:
                del self._by_address[key]

    def signatures_for(
        self, address: str, *, before: str | None, until: str | None, limit: int
    ) -> list[Transaction]:
        """Transactions mentioning ``address``, newest first, as getSignaturesForAddress pages."""
        seqs = self._by_address.get(address, [])
        hi = len(seqs)
        if before is not None:
            tx = self.transactions.get(before)
            hi = bisect.bisect_left(seqs, tx.seq) if tx is not None else 0
        lo = 0
        if until is not None:
            tx = self.transactions.get(until)
            lo = bisect.bisect_right(seqs, tx.seq) if tx is not None else 0
        picked = seqs[max(lo, hi - limit) : hi]
        return [self._by_seq[s] for s in reversed(picked)]

    def since(self, seq: int) -> list[Transaction]:
        """Retained transactions with sequence number ``seq`` or later, oldest first."""
        out: list[Transaction] = []
        for tx in reversed(self._order):
            if tx.seq < seq:
                break
            out.append(tx)
        out.reverse()
        return out

    def between(self, first_slot: int, last_slot: int) -> list[Transaction]:
        """Retained transactions of slots ``first_slot..last_slot`` (inclusive), oldest first."""
        return [tx for tx in self._order if first_slot <= tx.slot <= last_slot]

    def fills_between(self, first_slot: int, last_slot: int) -> list[Fill]:
        """Fills of slots ``first_slot..last_slot`` (inclusive), oldest first."""
        return [f for tx in self.between(first_slot, last_slot) for f in tx.fills]
