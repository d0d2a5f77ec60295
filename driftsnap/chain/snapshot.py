"""One snapshot: User accounts at slot S, markets and oracles at S or later, a book per market.

The order of the reads is the point. One ``getProgramAccounts`` returns every User account with an
open order together with the slot S it was read at; the PerpMarkets and their oracles are then read
with ``minContextSlot = S``, so the oracle price that floating orders are priced at is never older
than the orders. Both slots are recorded. A snapshot whose second read landed more than
``max_slot_gap`` slots after S, or whose slot went backwards (against the previous snapshot, or a
node that ignored ``minContextSlot``) is returned *rejected* with a reason, as is one with too large
a share of bad User accounts (an open order with a number no program writes is bad too, see
:mod:`~driftsnap.chain.users`), one without any User account at all (Drift always has some: the
node lost or withholds them), and one whose market, oracle or block time holds a number outside
the protocol's bounds (:mod:`~driftsnap.chain.markets`, :func:`~driftsnap.chain.clock.
block_time_problem`): the caller records the miss and goes on; it never gets a wrong book.
Errors that no retry cures (an unknown market, an unsupported oracle, a malformed PerpMarket or
oracle account, an endpoint that stays down) are raised as
:class:`~driftsnap.chain.errors.ChainError`.

Markets configured by name are found by a ``getProgramAccounts`` over every PerpMarket; by index,
by their PDAs with ``getMultipleAccounts``. A snapshot records the indexes it resolved
(:attr:`Snapshot.market_indexes`), so a daemon asks by name once and by index afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import gc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from solders.pubkey import Pubkey

from driftsnap import logs, protocol
from driftsnap.chain import accounts, books, clock, errors, idl, markets, rpc, users
from driftsnap.scoring import bookfile

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from driftsnap.chain.markets import OraclePrice, PerpMarket
    from driftsnap.scoring.book import Book

Json = Any
log = logs.get(__name__)

MAX_MULTIPLE_ACCOUNTS: Final = 100  # Solana's getMultipleAccounts limit
INVALID_PARAMS: Final = -32602
# getBlockTime's "no time for this slot" answers: block not available, slot skipped, and a slot
# whose block was cleaned up or is not yet in long-term storage.
_NO_BLOCK_TIME: Final = frozenset({-32004, -32007, -32009, -32011})
_PROGRAM: Final = Pubkey.from_string(protocol.DRIFT_PROGRAM_ID)


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    """What makes a snapshot acceptable; the CLI maps driftsnap's Settings onto it."""

    # Floating orders are priced at the oracle as read, up to this many slots after S (~0.4 s
    # each): the bound on how far that price may be from the one the protocol used at S.
    max_slot_gap: int = 25
    max_skipped_share: float = 0.01  # more than this share of bad User accounts rejects
    commitment: Literal["processed", "confirmed", "finalized"] = "confirmed"
    # A block time later than the wall clock by more than this is a lie (validators' clocks
    # keep Solana's block times within seconds of real time); None: no wall clock to hold it
    # to (the daemon follows the chain's own time, a simulated chain may run far ahead).
    max_block_time_ahead_s: float | None = 3600.0


class Rejection(enum.StrEnum):
    """Why a snapshot was not used."""

    SLOT_REGRESSION = "slot_regression"  # S before the last good snapshot, or a read before S
    SLOT_GAP = "slot_gap"  # markets or oracles read too long after S
    BAD_ACCOUNTS = "bad_accounts"  # too many User accounts failed their checks
    NO_USERS = "no_users"  # not a single User account with an open order
    OUT_OF_BOUNDS = "out_of_bounds"  # a market, oracle or block time the protocol cannot have
    # Rejections of the tick flow (flows/tick.py), which judges a snapshot against the last one:
    BOOK_COLLAPSE = "book_collapse"  # a market lost most of its orders since the last tick
    UNSCORABLE = "unscorable"  # a book the scorer refused (order sizes beyond its arithmetic)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of :func:`take`: ``ok`` with books, or rejected with a reason and a detail.

    ``slot`` is S, the slot of the User accounts; ``market_slot`` the latest context slot of the
    PerpMarket and oracle reads; ``ts`` the block time of S (``ts_estimated`` when the node had
    none and the wall clock stood in). ``skipped`` counts bad User accounts by reason against
    ``accounts_seen``. ``durations_ms`` splits the time into ``rpc``, ``decode``, ``books`` and
    ``total``. A rejected snapshot fills in what was known when it was rejected.
    """

    slot: int
    rejection: Rejection | None = None
    detail: str = ""
    market_slot: int | None = None
    ts: int | None = None
    ts_estimated: bool = False
    markets: tuple[PerpMarket, ...] = ()
    oracles: Mapping[int, OraclePrice] = field(default_factory=dict)
    books: Mapping[int, Book] = field(default_factory=dict)
    users: int = 0
    orders: int = 0
    accounts_seen: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    encoding: str = ""
    durations_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the snapshot can be used: it was not rejected."""
        return self.rejection is None

    @property
    def market_indexes(self) -> tuple[int, ...]:
        """The configured markets as indexes, in the order asked: pass them to the next take."""
        return tuple(m.market_index for m in self.markets)


async def take(
    client: rpc.Client,
    settings: SnapshotSettings,
    wanted_markets: Sequence[str | int],
    *,
    last_slot: int | None = None,
) -> Snapshot:
    """Read one snapshot of ``wanted_markets`` (names or indexes; empty: every perp market).

    ``last_slot`` is the slot of the previous ok snapshot, if any. Rejections are returned, not
    raised; see the module docstring.
    """
    started = time.perf_counter()
    user_items, slot, encoding = await _user_accounts(client, settings)
    first = _first_look(slot, encoding, user_items, last_slot)
    if first is not None:
        return first
    try:
        selected, oracles, first_slot, market_slot = await _markets_and_oracles(
            client, settings, wanted_markets, slot
        )
    except errors.OutOfBoundsError as exc:
        return _rejected(Rejection.OUT_OF_BOUNDS, str(exc), slot=slot, encoding=encoding)
    facts: dict[str, Any] = {
        "slot": slot,
        "market_slot": market_slot,
        "markets": tuple(selected),
        "oracles": oracles,
        "encoding": encoding,
    }
    late = _market_slots(settings, slot, first_slot, market_slot, facts)
    if late is not None:
        return late
    ts, ts_estimated = await _block_time(client, slot)
    problem = clock.block_time_problem(ts, max_ahead_s=settings.max_block_time_ahead_s)
    if problem is not None:
        return _rejected(
            Rejection.OUT_OF_BOUNDS, f"getBlockTime of slot {slot}: {problem}", **facts
        )
    rpc_done = time.perf_counter()

    skipped = accounts.Skipped()
    with paused_gc():
        decoded = users.decode_program_accounts(user_items, skipped, slot=slot)
    del user_items  # the JSON tree is freed before the books are built
    decode_done = time.perf_counter()
    counts: dict[str, Any] = {
        "users": len(decoded),
        "accounts_seen": skipped.seen,
        "skipped": {r.value: n for r, n in sorted(skipped.by_reason.items())},
        "ts": ts,
        "ts_estimated": ts_estimated,
    }
    try:
        skipped.enforce(settings.max_skipped_share)
    except errors.SnapshotRejectedError as exc:
        return _rejected(Rejection.BAD_ACCOUNTS, str(exc), **facts, **counts)

    prices = {index: oracle.price for index, oracle in oracles.items()}
    with paused_gc():
        built = books.build(decoded, selected, prices, slot=slot, ts=ts)
    done = time.perf_counter()
    snapshot = Snapshot(
        **facts,
        **counts,
        books=built,
        orders=sum(b.order_count for b in built.values()),
        durations_ms={
            "rpc": _ms(started, rpc_done),
            "decode": _ms(rpc_done, decode_done),
            "books": _ms(decode_done, done),
            "total": _ms(started, done),
        },
    )
    log.info(
        "snapshot_taken",
        slot=slot,
        market_slot=market_slot,
        markets=len(selected),
        users=snapshot.users,
        orders=snapshot.orders,
        skipped=skipped.total,
        ts_estimated=ts_estimated,
        ms=snapshot.durations_ms["total"],
    )
    return snapshot


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC off for a block (and back on after it, whatever happens).

    Decoding and building books allocates no reference cycles, so a collection there only walks
    the JSON tree and the arrays again and again: a cost growing faster than the users. Nested
    in a pause already on (the daemon's tick pauses it from the read to the write), it leaves it
    off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _first_look(
    slot: int, encoding: str, user_items: Sequence[Json], last_slot: int | None
) -> Snapshot | None:
    """The snapshot rejected on what the User accounts' read alone shows, or None."""
    if last_slot is not None and slot < last_slot:
        return _rejected(
            Rejection.SLOT_REGRESSION,
            f"User accounts read at slot {slot}, before the last snapshot's slot {last_slot}",
            slot=slot,
            encoding=encoding,
        )
    if not user_items:
        return _rejected(
            Rejection.NO_USERS,
            f"getProgramAccounts found no User account with an open order at slot {slot}: "
            "Drift always has some, so the node lost or withholds them",
            slot=slot,
            encoding=encoding,
        )
    return None


async def _markets_and_oracles(
    client: rpc.Client, settings: SnapshotSettings, wanted: Sequence[str | int], slot: int
) -> tuple[list[PerpMarket], dict[int, OraclePrice], int, int]:
    """The wanted markets, their oracle prices and the first and last context slot of the reads."""
    selected, first_slot, market_slot = await _markets(client, settings, wanted, slot)
    for market in selected:
        markets.require_supported(market)
    oracle_accounts, oracle_first, oracle_last = await _multiple_accounts(
        client, settings, [m.oracle for m in selected], slot, max_size=markets.MAX_ORACLE_SIZE
    )
    oracles = {
        m.market_index: markets.oracle_price(m, account, read_slot=oracle_last)
        for m, account in zip(selected, oracle_accounts, strict=True)
    }
    return selected, oracles, min(first_slot, oracle_first), max(market_slot, oracle_last)


def _market_slots(
    settings: SnapshotSettings, slot: int, first_slot: int, market_slot: int, facts: dict[str, Any]
) -> Snapshot | None:
    """The snapshot rejected for markets or oracles read before S or too long after, or None."""
    if first_slot < slot:
        return _rejected(
            Rejection.SLOT_REGRESSION,
            f"markets or oracles read at slot {first_slot}, before the users' slot {slot} "
            "(the node ignored minContextSlot)",
            **facts,
        )
    if market_slot - slot > settings.max_slot_gap:
        return _rejected(
            Rejection.SLOT_GAP,
            f"markets and oracles read at slot {market_slot}, {market_slot - slot} slots after "
            f"the users' slot {slot} (allowed: {settings.max_slot_gap})",
            **facts,
        )
    return None


def book_documents(snapshot: Snapshot) -> dict[str, dict[str, Json]]:
    """Each market's book as ``score-book`` JSON plus the slot and oracle facts, by market name.

    Raises :class:`~driftsnap.chain.errors.SnapshotRejectedError` for a rejected snapshot.
    """
    if not snapshot.ok:
        raise errors.SnapshotRejectedError(
            f"snapshot at slot {snapshot.slot} rejected ({snapshot.rejection}): {snapshot.detail}"
        )
    documents: dict[str, dict[str, Json]] = {}
    for market in snapshot.markets:
        book = snapshot.books[market.market_index]
        oracle = snapshot.oracles[market.market_index]
        # The book lists each side best price first, so the first of a side is its best.
        bids = [o.price for o in book.orders if o.side.label == "bid"]
        asks = [o.price for o in book.orders if o.side.label == "ask"]
        documents[market.name] = {
            **bookfile.to_dict(book),
            "market_slot": snapshot.market_slot,
            "ts_estimated": snapshot.ts_estimated,
            "oracle": market.oracle,
            "oracle_source": market.oracle_source,
            "oracle_slot": oracle.slot,
            "oracle_confidence": oracle.confidence,
            "best_bid": bids[0] if bids else None,
            "best_ask": asks[0] if asks else None,
        }
    return documents


def perp_market_address(market_index: int) -> str:
    """The PDA of a PerpMarket account: seeds ``b"perp_market"`` and the index as u16 LE."""
    seeds = [b"perp_market", market_index.to_bytes(2, "little")]
    return str(Pubkey.find_program_address(seeds, _PROGRAM)[0])


# ---------------------------------------------------------------- reads


def _memcmp(offset: int, data: bytes) -> dict[str, Json]:
    return {
        "memcmp": {"offset": offset, "bytes": base64.b64encode(data).decode(), "encoding": "base64"}
    }


def _user_filters() -> list[dict[str, Json]]:
    # The has_open_order flag is kept by the program alongside the orders array, so the node
    # leaves out the vast majority of accounts (no open order) before encoding anything.
    return [
        {"dataSize": accounts.SIZES[accounts.Kind.USER]},
        _memcmp(0, accounts.DISCRIMINATORS[accounts.Kind.USER]),
        _memcmp(idl.offset("User", "has_open_order"), b"\x01"),
    ]


async def _user_accounts(
    client: rpc.Client, settings: SnapshotSettings
) -> tuple[list[Json], int, str]:
    """The gPA items of every User with an open order, the context slot S, and the encoding."""
    while True:
        encoding = "base64+zstd" if client.zstd else "base64"
        config = {
            "encoding": encoding,
            "withContext": True,
            "commitment": settings.commitment,
            "filters": _user_filters(),
        }
        try:
            answer = await client.call("getProgramAccounts", [protocol.DRIFT_PROGRAM_ID, config])
        except errors.RpcError as exc:
            # Nodes without zstd support refuse the encoding as invalid params: ask once more
            # in plain base64, and remember it for this client.
            if client.zstd and exc.code == INVALID_PARAMS and "encoding" in exc.detail.lower():
                log.warning("rpc_zstd_unsupported", endpoint=client.endpoint, detail=exc.detail)
                client.zstd = False
                continue
            raise
        items, slot = _with_context(client, "getProgramAccounts", answer)
        if not isinstance(items, list):
            raise _malformed(client, "getProgramAccounts", "value is not a list")
        return items, slot, encoding


async def _markets(
    client: rpc.Client, settings: SnapshotSettings, wanted: Sequence[str | int], slot: int
) -> tuple[list[markets.PerpMarket], int, int]:
    """The wanted PerpMarkets (at ``minContextSlot = slot``) and the first and last context slot.

    Nothing wanted means every perp market on chain, by index.
    """
    indexes = [int(w) for w in wanted if isinstance(w, int) or w.isdigit()]
    if wanted and len(indexes) == len(wanted) and all(0 <= i < 1 << 16 for i in indexes):
        keys = [perp_market_address(i) for i in indexes]
        found, first, last = await _multiple_accounts(
            client, settings, keys, slot, max_size=accounts.SIZES[accounts.Kind.PERP_MARKET]
        )
        if all(a is not None for a in found):
            return [markets.decode(a) for a in found if a is not None], first, last
    # By name, or an index without an account: read them all, and let select() name what is
    # missing together with what exists.
    everything, first, last = await _all_markets(client, settings, slot)
    if not wanted:
        return sorted(everything, key=lambda m: m.market_index), first, last
    return markets.select(everything, wanted), first, last


async def _all_markets(
    client: rpc.Client, settings: SnapshotSettings, slot: int
) -> tuple[list[markets.PerpMarket], int, int]:
    config = {
        "encoding": "base64",
        "withContext": True,
        "commitment": settings.commitment,
        "minContextSlot": slot,
        "filters": [
            {"dataSize": accounts.SIZES[accounts.Kind.PERP_MARKET]},
            _memcmp(0, accounts.DISCRIMINATORS[accounts.Kind.PERP_MARKET]),
        ],
    }
    answer = await client.call("getProgramAccounts", [protocol.DRIFT_PROGRAM_ID, config])
    items, context_slot = _with_context(client, "getProgramAccounts", answer)
    if not isinstance(items, list):
        raise _malformed(client, "getProgramAccounts", "value is not a list")
    size = accounts.SIZES[accounts.Kind.PERP_MARKET]
    found = [
        markets.decode(accounts.from_rpc(str(i["pubkey"]), i["account"], max_size=size))
        for i in items
    ]
    return found, context_slot, context_slot


async def _multiple_accounts(
    client: rpc.Client,
    settings: SnapshotSettings,
    keys: Sequence[str],
    slot: int,
    *,
    max_size: int,
) -> tuple[list[accounts.RawAccount | None], int, int]:
    """Accounts by address (``None`` where absent), in chunks the node accepts, at slot >= S;
    none decoded past ``max_size`` bytes."""
    found: list[accounts.RawAccount | None] = []
    slots: list[int] = []
    for start in range(0, len(keys), MAX_MULTIPLE_ACCOUNTS):
        chunk = list(keys[start : start + MAX_MULTIPLE_ACCOUNTS])
        config = {"encoding": "base64", "commitment": settings.commitment, "minContextSlot": slot}
        answer = await client.call("getMultipleAccounts", [chunk, config])
        value, context_slot = _with_context(client, "getMultipleAccounts", answer)
        if not isinstance(value, list) or len(value) != len(chunk):
            raise _malformed(client, "getMultipleAccounts", "value does not match the keys")
        slots.append(context_slot)
        found += [
            None if item is None else accounts.from_rpc(key, item, max_size=max_size)
            for key, item in zip(chunk, value, strict=True)
        ]
    return found, min(slots, default=slot), max(slots, default=slot)


async def _block_time(client: rpc.Client, slot: int) -> tuple[Json, bool]:
    """The node's block time of ``slot`` as answered (to be checked: it may be anything), or the
    wall clock (flagged) when the node has none."""
    try:
        ts = await client.call("getBlockTime", [slot])
    except errors.RpcError as exc:
        if exc.code not in _NO_BLOCK_TIME:
            raise
        ts = None
    if ts is not None:
        return ts, False
    log.warning("block_time_missing", slot=slot, endpoint=client.endpoint)
    return int(time.time()), True


def _with_context(client: rpc.Client, method: str, answer: Json) -> tuple[Json, int]:
    """``(value, context.slot)`` of a result asked for ``withContext``."""
    try:
        slot = answer["context"]["slot"]
        value = answer["value"]
    except (KeyError, TypeError):
        raise _malformed(client, method, "result without context.slot and value") from None
    if (problem := clock.slot_problem(slot)) is not None:
        raise _malformed(client, method, f"context {problem}")
    return value, slot


def _malformed(client: rpc.Client, method: str, detail: str) -> errors.RpcError:
    return errors.RpcError(detail, method=method, endpoint=client.endpoint)


def _rejected(reason: Rejection, detail: str, **facts: Any) -> Snapshot:
    log.warning("snapshot_rejected", reason=reason.value, detail=detail, slot=facts.get("slot"))
    return Snapshot(rejection=reason, detail=detail, **facts)


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 1)


async def configured_markets(
    client: rpc.Client, settings: SnapshotSettings, wanted: Sequence[str | int]
) -> list[markets.PerpMarket]:
    """The PerpMarkets ``wanted`` names or indexes, as the chain has them now; raises
    :class:`~driftsnap.chain.errors.MarketNotFoundError` naming those it lacks and those it has
    (a start-up check: a market the chain does not have is configuration, not an outage)."""
    found, _, _ = await _markets(client, settings, wanted, 0)
    return found
