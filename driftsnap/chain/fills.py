"""Maker fills from the chain: signatures of the Drift program, their transactions, their events.

The node is not trusted: what it serves is held against itself before one fill is believed.
Reading is split in three steps, so the caller (:mod:`driftsnap.flows.fills`) can commit in between:

1. :func:`new_signatures` pages ``getSignaturesForAddress`` backwards with ``before`` from the head
   down to a known signature (``until``), and returns what is new **oldest first**. Paging goes on
   until a page is empty, never "until a short page": more than 1,000 signatures between two
   polls are all found. A page may also stop at a slot bound, so a watermark that the node no
   longer retains cannot turn one poll into a walk through all of history. A page that repeats
   a signature (a node ignoring ``before`` serves the first page forever) or whose slots go up,
   and a listing past :data:`MAX_PAGES` calls, raise :class:`PagingError`: nothing listed is
   used, since the older part of the range was never reached.
2. :func:`fetch` gets many transactions at once (``maxSupportedTransactionVersion: 0``); the
   client throttles them. A transaction the node answers ``null`` for (not yet available) is
   returned as ``None``, one it errors on or answers with something that is not a transaction
   as :class:`Unread`: it costs only itself, and the caller must not move its watermark past
   either.
3. :func:`parse` turns one ``getTransaction`` answer into its fills, one log line at a time, so
   an event of a version driftpy's IDL does not decode is counted and logged and the other
   events of the transaction are still read. Every line is held against the **message** (its
   static account keys, then the addresses loaded from lookup tables, writable then readonly,
   as Solana orders them): the N-th ``invoke [1]`` frame must be the program of instruction N,
   a CPI frame the matching entry of ``innerInstructions``, every frame closed by its own
   program, and an event counts only as a ``Program data:`` line whose innermost frame is
   Drift's. Logs that contradict the message come back ``forged`` (no fills: a node that lies
   about one line is believed about none); logs that end inside a frame or show fewer frames
   than the message runs, or no logs at all, for a transaction that names Drift come back
   ``cut`` (not read), unless the node said so ("Log truncated": the transaction is marked
   ``truncated`` and what came before the cut is read). A failed transaction (``meta.err``)
   has no fills.

:class:`Authorities` maps User accounts to their authorities (``getMultipleAccounts``, cached);
:func:`next_fill_record_ids` reads the PerpMarkets' counters for the gap check and
:func:`maker_volumes` the program's own ``UserStats.maker_volume30d`` for the volume cross-check.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from anchorpy.coder.coder import Coder
from anchorpy_core.idl import Idl
from solders.pubkey import Pubkey

from driftsnap import logs, protocol
from driftsnap.chain import accounts, errors, idl, markets, users
from driftsnap.scoring import fill

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from driftsnap.chain import rpc

Json = Any
log = logs.get(__name__)
Commitment = fill.Commitment
MAX_SIGNATURES: Final = 1000  # getSignaturesForAddress's largest page
# The most getSignaturesForAddress calls one listing may take: a million signatures. A poll
# every 15 s sees a few hundred of Drift's; a million is many hours of mainnet traffic (a
# daemon stopped that long is re-started with a backfill bound), and it bounds what a node
# that never stops paging can cost: ~1,000 calls and ~300 MB of signatures, then an error.
MAX_PAGES: Final = 1000
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
    # Why its logs cannot be trusted (they contradict the message): its fills are rejected, and
    # ``claimed`` is how many fill events the logs carried.
    forged: str | None = None
    claimed: int = 0
    # Why its logs are incomplete although the node did not say "Log truncated" (or are missing):
    # the transaction is not read; the caller retries it.
    cut: str | None = None


@dataclass(frozen=True, slots=True)
class Unread:
    """A transaction the node did not serve this time: an error answer for it alone, or an
    answer without the shape of a transaction. The caller retries it."""

    signature: str
    reason: str


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


class PagingError(errors.RpcError):
    """``getSignaturesForAddress`` paged in a way that cannot be right: a page repeating
    signatures already listed, slots going up, or more pages than one poll may take. What was
    listed is not used: the older part of the range was never reached, so no watermark may move
    past it."""


async def new_signatures(
    client: rpc.Client,
    *,
    program: str = protocol.DRIFT_PROGRAM_ID,
    until: str | None,
    min_slot: int | None,
    commitment: Commitment,
    page_size: int = MAX_SIGNATURES,
    max_pages: int = MAX_PAGES,
) -> Page:
    """Signatures of ``program`` newer than ``until`` (and at ``min_slot`` or later), oldest first.

    With ``until=None`` and ``min_slot=None`` the whole history the node retains is listed.
    Newest first, each page continues below the last: its slots never go up and none of its
    signatures was listed before. A node that breaks this (one that ignores ``before`` serves
    the same page forever) or that needs more than ``max_pages`` calls raises
    :class:`PagingError` after a warning.
    """
    found: list[SignatureInfo] = []
    seen: set[str] = set()
    before: str | None = None
    pages = 0
    while True:
        if pages >= max_pages:
            raise _paging(
                client,
                f"still listing after {pages} pages ({len(found)} signatures; at most "
                f"{max_pages} per poll): nothing was used",
                pages=pages,
            )
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
            lowest = found[-1].slot if found else None
            if info.signature in seen or info.signature == until:
                raise _paging(
                    client,
                    f"page {pages} repeats signature {info.signature} (was `before` ignored?)",
                    pages=pages,
                )
            if lowest is not None and info.slot > lowest:
                raise _paging(
                    client,
                    f"page {pages} goes up from slot {lowest} to {info.slot}: not newest first",
                    pages=pages,
                )
            if min_slot is not None and info.slot < min_slot:
                done = True  # newest first: everything after this is older still
                break
            seen.add(info.signature)
            found.append(info)
        if done:
            break
        before = page[-1].signature
    found.reverse()
    return Page(tuple(found), pages)


def _paging(client: rpc.Client, detail: str, *, pages: int) -> PagingError:
    log.warning("fills_paging_stopped", pages=pages, detail=detail, endpoint=client.endpoint)
    return PagingError(detail, method="getSignaturesForAddress", endpoint=client.endpoint)


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
    program: str = protocol.DRIFT_PROGRAM_ID,
) -> list[Transaction | Unread | None]:
    """The parsed transactions of ``signatures`` in the same order; ``None`` where the node had
    none yet. At most ``concurrency`` requests are in flight; the client's throttle paces them.

    One transaction the node errors on (a JSON-RPC error for it, after the client's retries,
    or an answer that is not a transaction) is returned as :class:`Unread` and costs only
    itself. A 429 past the retries is the whole endpoint's and fails the whole fetch.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(signature: str) -> Transaction | Unread | None:
        async with gate:
            try:
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
            except errors.RateLimitedError:
                raise
            except errors.RpcError as exc:
                return Unread(signature, exc.detail[:300])
        if answer is None:
            return None
        try:
            return parse(signature, answer, program=program)
        except errors.TransactionError as exc:
            return Unread(signature, str(exc)[:300])

    try:
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(one(s), name=f"getTransaction-{s[:12]}") for s in signatures
            ]
    except ExceptionGroup as group:
        # A 429 cancels the rest; the caller gets that error as itself, typed, as from any
        # other call of the client. Anything else stays the group it is.
        first = group.exceptions[0]
        if isinstance(first, errors.ChainError):
            raise first from None
        raise
    return [task.result() for task in running]


# ---------------------------------------------------------------- parsing


class _EventSource:
    """The one thing driftsnap reads of an anchorpy ``Program``: its ``coder``."""

    def __init__(self, coder: Any) -> None:
        self.coder = coder


@functools.cache
def _events() -> _EventSource:
    # The IDL driftpy ships is the one its parser is meant to read; building a whole anchorpy
    # Program would need a provider and a wallet, which a reader must not have.
    idl = resources.files("driftpy").joinpath("idl/drift.json").read_text()
    return _EventSource(Coder(Idl.from_json(idl)))


# The runtime's own log lines: "Program <id> invoke [<depth>]" opens a frame, "Program <id>
# success" or "Program <id> failed: ..." closes it. A program cannot print these itself (its
# own lines are prefixed "Program log:" / "Program data:"), so only the node can forge them.
# Program ids are base58 (so no reason quoting one can carry a control character).
_ID: Final = r"([1-9A-HJ-NP-Za-km-z]{32,44})"
_INVOKE: Final = re.compile(rf"Program {_ID} invoke \[(\d{{1,2}})\]")
_RESULT: Final = re.compile(rf"Program {_ID} (success|failed(?::.*)?)", re.DOTALL)
PROGRAM_DATA: Final = "Program data: "
# The runtime checks these programs' instructions itself and logs no frame for them.
PRECOMPILES: Final = frozenset(
    {
        "Ed25519SigVerify111111111111111111111111111",
        "KeccakSecp256k11111111111111111111111111111",
        "Secp256r1SigVerify1111111111111111111111111",
    }
)
_KEY: Final = re.compile(_ID)


@dataclass(frozen=True, slots=True)
class _Message:
    """What a transaction's message says it runs, to hold its logs against."""

    keys: tuple[str, ...]  # static keys, then loaded writable, then loaded readonly
    # The program of each top-level instruction that logs a frame, in order; a precompile's
    # instruction is verified by the runtime without a frame in the logs.
    programs: tuple[str, ...]
    positions: tuple[int, ...]  # the message index of each of them
    # The programs (and stack heights) of the CPIs under each top-level instruction, in order;
    # None when the node gives no inner instructions.
    inner: dict[int, tuple[tuple[str, int | None], ...]] | None


def _message(signature: str, answer: Mapping[str, Json], meta: Mapping[str, Json]) -> _Message:
    """The account keys and instruction programs of ``answer``; raises on a malformed one."""

    def bad(detail: str) -> errors.TransactionError:
        return errors.TransactionError(f"transaction {signature}: {detail}")

    try:
        message = answer["transaction"]["message"]
        static = message["accountKeys"]
        loaded = meta.get("loadedAddresses") or {}
        keys = [*static, *(loaded.get("writable") or []), *(loaded.get("readonly") or [])]
        if not all(isinstance(k, str) and _KEY.fullmatch(k) for k in keys):
            raise bad("an account key is not a base58 public key")

        def program(item: Json) -> str:
            index = item["programIdIndex"]
            if not isinstance(index, int) or not 0 <= index < len(keys):
                raise bad(f"programIdIndex {index!r} is not one of {len(keys)} account keys")
            return str(keys[index])

        called = [(n, program(ix)) for n, ix in enumerate(message["instructions"])]
        framed = [(n, p) for n, p in called if p not in PRECOMPILES]
        listed = meta.get("innerInstructions")
        inner: dict[int, tuple[tuple[str, int | None], ...]] | None = None
        if listed is not None:
            inner = {}
            for entry in listed:
                at = entry["index"]
                if not isinstance(at, int) or at in inner:
                    raise bad(f"inner instructions of index {at!r} are malformed")
                inner[at] = tuple(
                    (program(ix), h if isinstance(h := ix.get("stackHeight"), int) else None)
                    for ix in entry["instructions"]
                )
    except (KeyError, TypeError, AttributeError) as exc:
        raise bad(f"malformed message ({type(exc).__name__}: {exc})"[:300]) from None
    return _Message(tuple(keys), tuple(p for _, p in framed), tuple(n for n, _ in framed), inner)


def parse(signature: str, answer: Json, *, program: str = protocol.DRIFT_PROGRAM_ID) -> Transaction:
    """One ``getTransaction`` answer (json encoding) as its fills; never raises on event bytes.

    Raises :class:`~driftsnap.chain.errors.TransactionError` for an answer without the shape
    of a transaction (the caller retries it). Logs that contradict the message come back
    ``forged`` (no fills); logs cut without a marker, or none, ``cut`` (not read).
    """
    if not isinstance(answer, dict):
        raise errors.TransactionError(f"transaction {signature}: the answer is not an object")
    try:
        slot, when = answer["slot"], answer.get("blockTime")
        meta = answer.get("meta") or {}
        lines = meta.get("logMessages")
        failed = meta.get("err") is not None
    except (KeyError, TypeError, AttributeError) as exc:
        raise errors.TransactionError(
            f"transaction {signature}: malformed answer ({exc})"
        ) from None
    if (
        not isinstance(slot, int)
        or isinstance(slot, bool)
        or not (lines is None or isinstance(lines, list))
    ):
        raise errors.TransactionError(f"transaction {signature}: malformed slot or logs")
    message = _message(signature, answer, meta)
    block = when if isinstance(when, int) else 0
    truncated = lines is not None and any(
        isinstance(x, str) and x.startswith(TRUNCATED) for x in lines
    )
    if failed:
        # A failed transaction's state changes are rolled back; its logs may still show events
        # emitted before the failure, which never happened.
        return Transaction(signature, slot, block, True, truncated, ())
    if lines is None:
        if program in message.keys:
            return Transaction(
                signature, slot, block, False, False, (), cut="the node served no logs (null)"
            )
        return Transaction(signature, slot, block, False, False, ())
    walk = _walk(signature, lines, message, program)
    if walk.forged is not None:
        return Transaction(
            signature, slot, block, False, truncated, (), walk.decode_errors, forged=walk.forged,
            claimed=_claimed_fills(lines),
        )  # fmt: skip
    fills = [
        record
        for index, event in walk.events
        if event.name == "OrderActionRecord"
        and (record := _fill(event.data, signature=signature, index=index, slot=slot, block=block))
        is not None
    ]
    return Transaction(
        signature, slot, block, False, walk.truncated, tuple(fills), walk.decode_errors,
        cut=walk.cut,
    )  # fmt: skip


@dataclass
class _Walk:
    events: list[tuple[int, Any]] = field(default_factory=list)
    decode_errors: int = 0
    truncated: bool = False
    forged: str | None = None
    cut: str | None = None


def _walk(signature: str, lines: list[Json], message: _Message, program: str) -> _Walk:
    """The program's events of ``lines``, each held against the frame it is emitted in.

    An event counts only in a frame of ``program`` that the message really runs at that
    position (:class:`_Frames`). Any contradiction makes the whole transaction ``forged``: a
    node that lies about one line is believed about none. Logs that end inside a frame, or
    show fewer frames than the message runs, are ``cut`` unless the node said so ("Log
    truncated"). The event index counts every event line of ``program``, decoded or not, so it
    is stable. driftpy's ``parse_logs`` would stop at the first event it cannot decode and
    lose the transaction; one bad event here costs only itself.
    """
    out = _Walk()
    frames = _Frames(message, program)
    index = 0
    for line in lines:
        problem: str | None = None
        if not isinstance(line, str):
            problem = "a log line is not text"
        elif line.startswith(TRUNCATED):
            out.truncated = True
            break
        elif invoke := _INVOKE.fullmatch(line):
            problem = frames.invoke(invoke[1], int(invoke[2]))
        elif result := _RESULT.fullmatch(line):
            problem = frames.close(result[1], result[2])
        elif frames.emitting() and line.startswith(PROGRAM_DATA):
            problem = frames.unverified()
            if problem is None:
                event = _event(signature, index, line.removeprefix(PROGRAM_DATA), out)
                if event is not None:
                    out.events.append((index, event))
                index += 1
        # Anything else is not an event of the program: a caller's, a CPI's, a log line.
        if problem is not None:
            out.forged = problem
            return out
    out.cut = None if out.truncated else frames.cut()
    return out


class _Frames:
    """The frame stack of one transaction's logs, held against its message.

    The runtime logs one ``invoke [1]`` frame per top-level instruction, in order, and one
    ``invoke [N]`` per CPI, in the order of ``innerInstructions`` (whose ``stackHeight`` is
    N); each frame is closed by ``success`` of its own program (a ``failed`` one fails the
    transaction). The methods return why a line contradicts that, or ``None``.
    """

    def __init__(self, message: _Message, program: str) -> None:
        self.message = message
        self.program = program
        self.stack: list[str] = []
        self.top = -1  # the top-level instruction being run
        self.cpis = 0  # CPIs seen under it
        self.unlisted = False  # inside a CPI of ``program`` without inner instructions to check
        self.short: str | None = None  # the first instruction with fewer CPI frames than CPIs

    def invoke(self, called: str, depth: int) -> str | None:
        """A frame of ``called`` opens at ``depth``."""
        if depth != len(self.stack) + 1:
            return f"frame of {called} at depth {depth} inside {len(self.stack)} frame(s)"
        self.stack.append(called)
        if depth == 1:
            self.top, self.cpis = self.top + 1, 0
            return self._top_level(called)
        if self.message.inner is None:
            self.unlisted = self.unlisted or called == self.program
            return None
        return self._cpi(called, depth, self._inner())

    def _index(self) -> int:
        """The message index of the top-level instruction being run (its frame's, past them)."""
        positions = self.message.positions
        return positions[self.top] if 0 <= self.top < len(positions) else self.top

    def _inner(self) -> tuple[tuple[str, int | None], ...]:
        """The CPIs the message lists under the top-level instruction being run."""
        inner, positions = self.message.inner, self.message.positions
        if inner is None or not 0 <= self.top < len(positions):
            return ()
        return inner.get(positions[self.top], ())

    def _top_level(self, called: str) -> str | None:
        programs = self.message.programs
        if self.top >= len(programs):
            return f"more top-level frames than the {len(programs)} instruction(s)"
        if programs[self.top] == called:
            return None
        if called == self.program and self.program not in self.message.keys:
            return f"logs claim {called} but the message never names {self.program}"
        return _misplaced(called, f"instruction {self._index()}", programs[self.top])

    def _cpi(
        self, called: str, depth: int, under: tuple[tuple[str, int | None], ...]
    ) -> str | None:
        at = self.cpis
        self.cpis += 1
        if at >= len(under):
            return f"CPI {at} of instruction {self._index()} ({called}) is not in the message"
        listed, height = under[at]
        if listed != called or (height is not None and height != depth):
            return _misplaced(called, f"CPI {at} of instruction {self._index()}", listed)
        return None

    def close(self, closed: str, outcome: str) -> str | None:
        """A frame of ``closed`` ends with ``outcome`` (``success`` or ``failed: ...``)."""
        if not self.stack or self.stack[-1] != closed:
            return f"{closed} closes a frame of {self.stack[-1] if self.stack else 'nothing'}"
        if outcome != "success":
            return f"{closed} failed in a transaction that succeeded"
        self.stack.pop()
        if len(self.stack) <= 1:
            self.unlisted = False
        expected = len(self._inner())
        if not self.stack and self.cpis < expected and self.short is None:
            self.short = f"instruction {self._index()} shows {self.cpis} of its {expected} CPI(s)"
        return None

    def emitting(self) -> bool:
        """Whether a line now is emitted by the program itself (its frame is the innermost)."""
        return bool(self.stack) and self.stack[-1] == self.program

    def unverified(self) -> str | None:
        """Why an event here cannot be believed: a CPI of the program the message cannot show."""
        if len(self.stack) > 1 and self.unlisted:
            return f"an event in a CPI of {self.program} that no inner instruction shows"
        return None

    def cut(self) -> str | None:
        """Why the logs, at their end, are incomplete (``None``: they are whole)."""
        if self.stack:
            return f"the logs end inside a frame of {self.stack[-1]} (no success line)"
        if self.short is not None:
            return self.short
        if self.top + 1 < len(self.message.programs):
            return (
                f"the logs show {self.top + 1} of the {len(self.message.programs)} instruction(s)"
            )
        return None


def _claimed_fills(lines: list[Json]) -> int:
    """How many fill events ``lines`` carry anywhere, frames aside: what a forgery claimed."""
    claimed = 0
    for line in lines:
        if isinstance(line, str) and line.startswith(PROGRAM_DATA):
            try:
                raw = base64.b64decode(line.removeprefix(PROGRAM_DATA), validate=True)
                event = _events().coder.events.parse(raw) if len(raw) >= 8 else None
            except Exception:  # noqa: BLE001, S112 -- only counting: a bad line is no fill
                continue
            claimed += bool(
                event is not None
                and event.name == "OrderActionRecord"
                and type(event.data.action).__name__ == "Fill"
            )
    return claimed


def _misplaced(called: str, where: str, actual: str) -> str:
    return f"logs say {called} runs {where}, the message says {actual}"


def _event(signature: str, index: int, data: str, walk: _Walk) -> Any:
    """The anchorpy event of one event line, or ``None`` (counted in ``walk.decode_errors``)."""
    try:
        raw = base64.b64decode(data, validate=True)
        event = _events().coder.events.parse(raw) if len(raw) >= 8 else None
    except Exception as exc:  # noqa: BLE001 -- any decoder failure is one bad event, counted
        walk.decode_errors += 1
        log.warning(
            "fill_event_undecodable",
            signature=signature,
            event_index=index,
            error=f"{type(exc).__name__}: {exc}"[:200],
        )
        return None
    if event is None:
        # An event whose discriminator the IDL lacks (an event newer than driftpy's IDL) or
        # whose base64 is broken: not a fill driftsnap can read.
        walk.decode_errors += 1
        log.warning("fill_event_unknown", signature=signature, event_index=index)
    return event


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
