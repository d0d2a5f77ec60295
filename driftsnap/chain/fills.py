"""Maker fills from the chain: signatures of the Drift program, their transactions, their events.

Reading is split in three steps, so the caller (:mod:`driftsnap.flows.fills`) can commit in between:

1. :func:`new_signatures` pages ``getSignaturesForAddress`` backwards with ``before`` from the head
   down to a known signature (``until``), and returns what is new **oldest first**. Paging goes on
   until a page is empty, never "until a short page": more than 1,000 signatures between two
   polls are all found. A page may also stop at a slot bound, so a watermark that the node no
   longer retains cannot turn one poll into a walk through all of history.
2. :func:`fetch` gets many transactions at once (``maxSupportedTransactionVersion: 0``); the
   client throttles them. A transaction the node answers ``null`` for (not yet available) is
   returned as ``None``: the caller must not move its watermark past it.
3. :func:`parse` turns one ``getTransaction`` answer into its fills with driftpy's log parser,
   one log line at a time, so an event of a version driftpy's IDL does not decode is counted and
   logged and the other events of the transaction are still read. Logs cut by the node ("Log
   truncated") mark the transaction ``truncated``; a failed transaction (``meta.err``) has none.

:class:`Authorities` maps User accounts to their authorities (``getMultipleAccounts``, cached);
:func:`next_fill_record_ids` reads the PerpMarkets' counters for the gap check and
:func:`maker_volumes` the program's own ``UserStats.maker_volume30d`` for the volume cross-check.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from anchorpy.coder.coder import Coder
from anchorpy_core.idl import Idl
from driftpy.events import parse as driftpy_parse
from solders.pubkey import Pubkey

from driftsnap import logs, protocol
from driftsnap.chain import accounts, errors, idl, markets, users
from driftsnap.scoring import fill

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from driftsnap.chain import rpc

Json = Any
log = logs.get(__name__)
# driftpy's log parser is untyped; it is used through this one name.
_parser: Any = driftpy_parse

Commitment = fill.Commitment
MAX_SIGNATURES: Final = 1000  # getSignaturesForAddress's largest page
MAX_MULTIPLE_ACCOUNTS: Final = 100
TRUNCATED: Final = "Log truncated"


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """One entry of ``getSignaturesForAddress``; ``failed`` when the transaction errored."""

    signature: str
    slot: int
    block_time: int | None
    failed: bool


@dataclass(frozen=True, slots=True)
class Transaction:
    """What one transaction holds for driftsnap."""

    signature: str
    slot: int
    block_time: int
    failed: bool
    truncated: bool
    fills: tuple[fill.Fill, ...]
    decode_errors: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    """New signatures, oldest first, and how many ``getSignaturesForAddress`` calls found them."""

    signatures: tuple[SignatureInfo, ...]
    pages: int


async def head_slot(client: rpc.Client, commitment: Commitment) -> int:
    """The node's slot at ``commitment``: every signature listed afterwards covers up to it."""
    slot = await client.call("getSlot", [{"commitment": commitment}])
    if not isinstance(slot, int):
        raise _malformed(client, "getSlot", "the slot is not an integer")
    return slot


async def block_time(client: rpc.Client, slot: int) -> int | None:
    """The block time of ``slot``; ``None`` when the node has none (a skipped slot)."""
    try:
        value = await client.call("getBlockTime", [slot])
    except errors.RpcError as exc:
        if exc.code in (-32004, -32009):  # block not available / slot skipped
            return None
        raise
    return value if isinstance(value, int) else None


async def new_signatures(
    client: rpc.Client,
    *,
    program: str = protocol.DRIFT_PROGRAM_ID,
    until: str | None,
    min_slot: int | None,
    commitment: Commitment,
    page_size: int = MAX_SIGNATURES,
) -> Page:
    """Signatures of ``program`` newer than ``until`` (and at ``min_slot`` or later), oldest first.

    With ``until=None`` and ``min_slot=None`` the whole history the node retains is listed.
    """
    found: list[SignatureInfo] = []
    before: str | None = None
    pages = 0
    while True:
        config: dict[str, Json] = {"limit": page_size, "commitment": commitment}
        if before is not None:
            config["before"] = before
        if until is not None:
            config["until"] = until
        answer = await client.call("getSignaturesForAddress", [program, config])
        pages += 1
        if not isinstance(answer, list):
            raise _malformed(client, "getSignaturesForAddress", "the result is not a list")
        page = [_signature_info(client, item) for item in answer]
        if not page:
            break
        done = False
        for info in page:
            if min_slot is not None and info.slot < min_slot:
                done = True  # newest first: everything after this is older still
                break
            found.append(info)
        if done:
            break
        before = page[-1].signature
    found.reverse()
    return Page(tuple(found), pages)


def _signature_info(client: rpc.Client, item: Json) -> SignatureInfo:
    try:
        signature, slot = item["signature"], item["slot"]
        if not isinstance(signature, str) or not isinstance(slot, int):
            raise TypeError("signature or slot of the wrong type")
        when = item.get("blockTime")
        return SignatureInfo(
            signature=signature,
            slot=slot,
            block_time=when if isinstance(when, int) else None,
            failed=item.get("err") is not None,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise _malformed(
            client, "getSignaturesForAddress", f"an entry is malformed ({exc})"
        ) from None


async def fetch(
    client: rpc.Client,
    signatures: Sequence[str],
    *,
    commitment: Commitment,
    concurrency: int = 16,
) -> list[Transaction | None]:
    """The parsed transactions of ``signatures`` in the same order; ``None`` where the node had
    none yet. At most ``concurrency`` requests are in flight; the client's throttle paces them."""
    gate = asyncio.Semaphore(concurrency)

    async def one(signature: str) -> Transaction | None:
        async with gate:
            answer = await client.call(
                "getTransaction",
                [
                    signature,
                    {
                        "encoding": "json",
                        "commitment": commitment,
                        "maxSupportedTransactionVersion": 0,
                    },
                ],
            )
        if answer is None:
            return None
        return parse(signature, answer)

    try:
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(one(s), name=f"getTransaction-{s[:12]}") for s in signatures
            ]
    except ExceptionGroup as group:
        # One failed request cancels the rest; the caller gets that error as itself, typed, as
        # from any other call of the client. Anything else stays the group it is.
        first = group.exceptions[0]
        if isinstance(first, errors.ChainError):
            raise first from None
        raise
    return [task.result() for task in running]


# ---------------------------------------------------------------- parsing


class _EventSource:
    """The one thing driftpy's log parser reads of an anchorpy ``Program``: its ``coder``."""

    def __init__(self, coder: Any) -> None:
        self.coder = coder


@functools.cache
def _events() -> _EventSource:
    # The IDL driftpy ships is the one its parser is meant to read; building a whole anchorpy
    # Program would need a provider and a wallet, which a reader must not have.
    idl = resources.files("driftpy").joinpath("idl/drift.json").read_text()
    return _EventSource(Coder(Idl.from_json(idl)))


def parse(signature: str, answer: Json) -> Transaction:
    """One ``getTransaction`` answer (json encoding) as its fills; never raises on event bytes."""
    try:
        slot, when = answer["slot"], answer.get("blockTime")
        meta = answer.get("meta") or {}
        lines = meta.get("logMessages") or []
        failed = meta.get("err") is not None
    except (KeyError, TypeError, AttributeError) as exc:
        raise errors.TransactionError(
            f"transaction {signature}: malformed answer ({exc})"
        ) from None
    if not isinstance(slot, int) or not isinstance(lines, list):
        raise errors.TransactionError(f"transaction {signature}: malformed slot or logs")
    block = when if isinstance(when, int) else 0
    truncated = any(isinstance(x, str) and x.startswith(TRUNCATED) for x in lines)
    if failed:
        # A failed transaction's state changes are rolled back; its logs may still show events
        # emitted before the failure, which never happened.
        return Transaction(signature, slot, block, True, truncated, ())
    events, decode_errors = _events_of(signature, lines)
    fills = [
        record
        for index, event in events
        if event.name == "OrderActionRecord"
        and (record := _fill(event.data, signature=signature, index=index, slot=slot, block=block))
        is not None
    ]
    return Transaction(signature, slot, block, False, truncated, tuple(fills), decode_errors)


def _events_of(signature: str, lines: list[Json]) -> tuple[list[tuple[int, Any]], int]:
    """(event index, anchorpy event) of the Drift program's events, and how many did not decode.

    driftpy's ``parse_logs`` stops at the first event it cannot decode and loses the whole
    transaction; its ``handle_log`` is applied here line by line instead, so one bad event costs
    only itself. The index counts every Drift event line, decoded or not, so it is stable.
    """
    found: list[tuple[int, Any]] = []
    decode_errors = 0
    context = _parser.ExecutionContext()
    index = 0
    for line in lines:
        if not isinstance(line, str) or line.startswith(TRUNCATED):
            break
        is_event = (
            bool(context.stack)
            and context.program() == protocol.DRIFT_PROGRAM_ID
            and line.startswith(_parser.PROGRAM_DATA)
        )
        try:
            event, pushed, popped = _parser.handle_log(context, line, _events())
        except Exception as exc:  # noqa: BLE001 -- any decoder failure is one bad event, counted
            decode_errors += 1
            log.warning(
                "fill_event_undecodable",
                signature=signature,
                event_index=index,
                error=f"{type(exc).__name__}: {exc}"[:200],
            )
            event, pushed, popped = None, None, False
        else:
            if is_event and event is None:
                # A Drift event line whose discriminator the IDL lacks (an event newer than
                # driftpy's IDL) or whose base64 is broken: not a fill driftsnap can read.
                decode_errors += 1
                log.warning("fill_event_unknown", signature=signature, event_index=index)
        if event is not None:
            found.append((index, event))
        index += is_event
        if pushed:
            context.push(pushed)
        if popped and context.stack:
            context.pop()
    return found, decode_errors


def _fill(data: Any, *, signature: str, index: int, slot: int, block: int) -> fill.Fill | None:
    if type(data.action).__name__ != "Fill" or data.fill_record_id is None:
        return None
    market_type: Literal["perp", "spot"] = (
        "spot" if type(data.market_type).__name__ == "Spot" else "perp"
    )
    return fill.Fill(
        market_type=market_type,
        market_index=int(data.market_index),
        fill_record_id=int(data.fill_record_id),
        signature=signature,
        event_index=index,
        slot=slot,
        block_time=block or int(data.ts),
        maker=None if data.maker is None else str(data.maker),
        taker=None if data.taker is None else str(data.taker),
        base_filled=int(data.base_asset_amount_filled or 0),
        quote_filled=int(data.quote_asset_amount_filled or 0),
        maker_fee=None if data.maker_fee is None else int(data.maker_fee),
        action_explanation=type(data.action_explanation).__name__,
    )


# ---------------------------------------------------------------- authorities


@dataclass
class Authorities:
    """User account → authority, read from the chain once per account and kept.

    ``known`` may be pre-filled (the store remembers every pair it has seen). A User account that
    no longer exists stays unknown (``None``) and is asked again next time: it may be a read
    from a lagging node.
    """

    known: dict[str, str] = field(default_factory=dict)
    lookups: int = 0  # accounts asked of the chain, for the report

    def remember(self, pairs: Mapping[str, str]) -> None:
        """Add account → authority pairs already known (e.g. the store's) to ``known``."""
        self.known.update(pairs)

    async def resolve(
        self, client: rpc.Client, user_accounts: Iterable[str], *, commitment: Commitment
    ) -> dict[str, str | None]:
        """The authority of each of ``user_accounts`` (``None`` where the account is gone)."""
        wanted = sorted(set(user_accounts))
        missing = [u for u in wanted if u not in self.known]
        for start in range(0, len(missing), MAX_MULTIPLE_ACCOUNTS):
            chunk = missing[start : start + MAX_MULTIPLE_ACCOUNTS]
            config = {"encoding": "base64", "commitment": commitment}
            answer = await client.call("getMultipleAccounts", [chunk, config])
            value = answer.get("value") if isinstance(answer, dict) else None
            if not isinstance(value, list) or len(value) != len(chunk):
                raise _malformed(client, "getMultipleAccounts", "value does not match the keys")
            self.lookups += len(chunk)
            raw = [accounts.from_rpc(k, v) for k, v in zip(chunk, value, strict=True) if v]
            skipped = accounts.Skipped()
            decoded = users.decode(raw, skipped)
            for row, pubkey in enumerate(decoded.pubkeys):
                self.known[pubkey] = decoded.authority_of(row)
            if skipped.total:
                log.warning(
                    "fill_user_unreadable",
                    accounts=skipped.total,
                    reasons={r.value: n for r, n in skipped.by_reason.items()},
                )
        return {u: self.known.get(u) for u in wanted}


# ---------------------------------------------------------------- fill record counters


async def next_fill_record_ids(
    client: rpc.Client, market_addresses: Mapping[int, str], *, commitment: Commitment
) -> tuple[dict[int, int], int]:
    """Each perp market's ``next_fill_record_id`` by index, and the context slot it was read at.

    ``market_addresses`` maps market indexes to PerpMarket addresses
    (:func:`driftsnap.chain.snapshot.perp_market_address`). Every fill of a slot up to the
    returned one has an id below its market's counter.
    """
    indexes = sorted(market_addresses)
    out: dict[int, int] = {}
    slots: list[int] = []
    for start in range(0, len(indexes), MAX_MULTIPLE_ACCOUNTS):
        chunk = indexes[start : start + MAX_MULTIPLE_ACCOUNTS]
        keys = [market_addresses[i] for i in chunk]
        answer = await client.call(
            "getMultipleAccounts", [keys, {"encoding": "base64", "commitment": commitment}]
        )
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, list) or len(value) != len(keys):
            raise _malformed(client, "getMultipleAccounts", "value does not match the keys")
        slot = answer.get("context", {}).get("slot")
        if not isinstance(slot, int):
            raise _malformed(client, "getMultipleAccounts", "no context slot")
        slots.append(slot)
        for index, key, item in zip(chunk, keys, value, strict=True):
            if item is None:
                raise errors.MarketNotFoundError(f"perp market {index} ({key}) is not on chain")
            market = markets.decode(accounts.from_rpc(key, item))
            out[index] = market.next_fill_record_id
    # Chunks may be read at different slots: only the oldest bounds every counter.
    return out, min(slots, default=0)


def _malformed(client: rpc.Client, method: str, detail: str) -> errors.RpcError:
    return errors.RpcError(detail, method=method, endpoint=client.endpoint)


# ---------------------------------------------------------------- the program's maker volume

_USER_STATS: Final = "UserStats"
_USER_STATS_DTYPE: Final = np.dtype([("discriminator", "V8"), ("stats", idl.dtype(_USER_STATS))])


@dataclass(frozen=True, slots=True)
class MakerVolume:
    """An authority's ``UserStats.maker_volume30d`` (QUOTE_PRECISION) and when it last moved."""

    authority: str
    maker_volume_30d: int
    last_ts: int


def user_stats_address(authority: str) -> str:
    """The UserStats PDA of a wallet: seeds ``[b"user_stats", authority]``."""
    program = Pubkey.from_string(protocol.DRIFT_PROGRAM_ID)
    seeds = [b"user_stats", bytes(Pubkey.from_string(authority))]
    return str(Pubkey.find_program_address(seeds, program)[0])


async def maker_volumes(
    client: rpc.Client, authorities: Iterable[str], *, commitment: Commitment
) -> tuple[dict[str, MakerVolume], int]:
    """``maker_volume30d`` of each authority that has a UserStats account, and the oldest
    context slot the accounts were read at (every fill up to it is in the numbers)."""
    wanted = sorted(set(authorities))
    out: dict[str, MakerVolume] = {}
    slots: list[int] = []
    discriminator = idl.discriminator(_USER_STATS)
    for start in range(0, len(wanted), MAX_MULTIPLE_ACCOUNTS):
        chunk = wanted[start : start + MAX_MULTIPLE_ACCOUNTS]
        keys = [user_stats_address(a) for a in chunk]
        answer = await client.call(
            "getMultipleAccounts", [keys, {"encoding": "base64", "commitment": commitment}]
        )
        value = answer.get("value") if isinstance(answer, dict) else None
        slot = answer.get("context", {}).get("slot") if isinstance(answer, dict) else None
        if not isinstance(value, list) or len(value) != len(keys) or not isinstance(slot, int):
            raise _malformed(client, "getMultipleAccounts", "value does not match the keys")
        slots.append(slot)
        for authority, key, item in zip(chunk, keys, value, strict=True):
            if item is None:
                continue  # a wallet that never traded has no UserStats
            raw = accounts.from_rpc(key, item)
            if (
                raw.owner != protocol.DRIFT_PROGRAM_ID
                or raw.data[:8] != discriminator
                or len(raw.data) != _USER_STATS_DTYPE.itemsize
            ):
                raise errors.AccountError(
                    f"account {key} is not the Drift UserStats of {authority}",
                    reason=accounts.Reason.DISCRIMINATOR.value,
                )
            stats = np.frombuffer(raw.data, dtype=_USER_STATS_DTYPE)[0]["stats"]
            out[authority] = MakerVolume(
                authority=authority,
                maker_volume_30d=int(stats["maker_volume30d"]),
                last_ts=int(stats["last_maker_volume30d_ts"]),
            )
    return out, min(slots, default=0)
