"""Solana JSON-RPC 2.0 over the simulator: methods, response shapes, error codes, faults.

Shapes follow what an Agave node returns (and what solders' response parsers accept): results
that Solana wraps carry ``{"context": {"apiVersion", "slot"}, "value": ...}``, errors are
``{"code", "message", "data"?}`` with Solana's codes::

    -32700 parse error            -32600 invalid request        -32601 method not found
    -32602 invalid params         -32004 block not available    -32005 node is behind
    -32016 minimum context slot has not been reached

This module knows nothing of HTTP: :meth:`Node.call` takes one decoded request object and returns
one response object; the server does transport, batches, 429s and delays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import TYPE_CHECKING, Any, Final

import zstandard
from solders.pubkey import Pubkey

from driftsnap.simnet import faults as faults_mod
from driftsnap.simnet import ledger, model

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

API_VERSION: Final = "2.2.0"
MAX_MULTIPLE_ACCOUNTS: Final = 100
MAX_SIGNATURES: Final = 1000
MAX_FILTERS: Final = 4
MAX_BASE58_BYTES: Final = 128
RENT_EPOCH: Final = 2**64 - 1
SYSTEM_PROGRAM: Final = Pubkey.from_string("11111111111111111111111111111111")
FILL_PERP_ORDER_SIGHASH: Final = hashlib.sha256(b"global:fill_perp_order").digest()[:8]

Json = Any


class RawJson(str):
    """A result that is already JSON text, spliced into the response as it is."""

    __slots__ = ()


def response_text(response: Json) -> str:
    """A response object (or a batch of them) as JSON text, splicing :class:`RawJson` results."""
    if isinstance(response, list):
        return "[" + ",".join(response_text(r) for r in response) + "]"
    result = response.get("result") if isinstance(response, dict) else None
    if isinstance(result, RawJson):
        return f'{{"jsonrpc":"2.0","result":{result},"id":{json.dumps(response["id"])}}}'
    return json.dumps(response, separators=(",", ":"))


class RpcError(Exception):
    """A JSON-RPC error response."""

    def __init__(self, code: int, message: str, data: Json = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Json]:
        """The ``error`` object of a JSON-RPC response."""
        error: dict[str, Json] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str) -> RpcError:
    """The JSON-RPC invalid-params error (-32602) with ``message``."""
    return RpcError(-32602, message)


def error_response(error: RpcError, request_id: Json) -> dict[str, Json]:
    """The JSON-RPC response carrying ``error`` for request ``request_id``."""
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


class Node:
    """The JSON-RPC methods of one simulated node."""

    def __init__(self, sim: model.Simulator, faults: faults_mod.Faults, *, seed: int) -> None:
        self.sim = sim
        self.faults = faults
        # Draws which transient fault fires under ``chaos``; not cryptographic.
        self._chaos = random.Random(seed ^ 0x5EED_FA17)  # noqa: S311
        self._request_chaos: str | None = None
        self._zstd = zstandard.ZstdCompressor(level=1)
        # (address, encoding) -> (account as last rendered, its JSON text): accounts are immutable
        # objects that the simulator replaces on change, so identity says whether it changed.
        self._texts: dict[tuple[Pubkey, str], tuple[model.Account, str]] = {}
        self._methods: dict[str, Callable[[list[Json], int], Json]] = {
            "getSlot": self._get_slot,
            "getHealth": self._get_health,
            "getAccountInfo": self._get_account_info,
            "getMultipleAccounts": self._get_multiple_accounts,
            "getProgramAccounts": self._get_program_accounts,
            "getSignaturesForAddress": self._get_signatures_for_address,
            "getTransaction": self._get_transaction,
            "getBlockTime": self._get_block_time,
            "getVersion": self._get_version,
        }

    # ------------------------------------------------------------ faults

    def _take(self, name: str) -> bool:
        """Consume one count of a counted fault; True when it fires."""
        left: int = getattr(self.faults, name)
        if left <= 0:
            return False
        self.faults = self.faults.model_copy(update={name: left - 1})
        return True

    def _chaos_draw(self) -> str | None:
        if self.faults.chaos <= 0 or self._chaos.random() >= self.faults.chaos:
            return None
        return self._chaos.choice(("http_429", "node_behind", "min_context", "slot_backwards"))

    def http_fault(self) -> int | None:
        """Retry-After seconds if this HTTP request is to be refused with 429, else None.

        Called once per HTTP request, before :meth:`call`: a chaos draw made here that is not a
        429 is kept for the first call of the request, so one draw decides one request's fate.
        """
        chaos = self._chaos_draw()
        if self._take("http_429") or chaos == "http_429":
            return self.faults.retry_after_s
        self._request_chaos = chaos
        return None

    # ------------------------------------------------------------ dispatch

    def call(self, request: Json) -> dict[str, Json]:
        """Answer one JSON-RPC request object (already decoded from JSON)."""
        if not isinstance(request, dict):
            return error_response(RpcError(-32600, "Invalid request"), None)
        request_id = request.get("id")
        if request.get("jsonrpc") != "2.0":
            return error_response(RpcError(-32600, "Invalid request"), request_id)
        method = request.get("method")
        params = request.get("params") or []
        if not isinstance(method, str) or not isinstance(params, list):
            return error_response(RpcError(-32600, "Invalid request"), request_id)
        handler = self._methods.get(method)
        if handler is None:
            return error_response(RpcError(-32601, "Method not found"), request_id)
        try:
            slot = self._fault_slot(method)
            result = handler(params, slot)
        except RpcError as error:
            return error_response(error, request_id)
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    def _fault_slot(self, method: str) -> int:
        """The slot this call is served at, after the node-level faults had their say."""
        chaos, self._request_chaos = self._request_chaos, None
        if self._take("node_behind") or chaos == "node_behind":
            behind = self.faults.behind_by_slots
            raise RpcError(-32005, f"Node is behind by {behind} slots", {"numSlotsBehind": behind})
        if method != "getHealth" and (
            self._take("min_context_not_reached") or chaos == "min_context"
        ):
            raise _min_context_error(self.sim.slot)
        if self._take("slot_backwards") or chaos == "slot_backwards":
            return self.sim.slot - self.faults.backwards_by
        return self.sim.slot

    # ------------------------------------------------------------ methods

    def _get_slot(self, params: list[Json], slot: int) -> Json:
        _check_min_context(_config(params, 0), slot)
        return slot

    def _get_health(self, params: list[Json], slot: int) -> Json:
        return "ok"

    def _get_version(self, params: list[Json], slot: int) -> Json:
        return {"solana-core": API_VERSION, "feature-set": 3_294_202_862}

    def _get_account_info(self, params: list[Json], slot: int) -> Json:
        address = parse_pubkey(_param(params, 0, str, "pubkey"))
        config = _config(params, 1)
        _check_min_context(config, slot)
        return _with_context(slot, self._render(address, config, slot))

    def _get_multiple_accounts(self, params: list[Json], slot: int) -> Json:
        keys = _param(params, 0, list, "pubkeys")
        if len(keys) > MAX_MULTIPLE_ACCOUNTS:
            raise invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        addresses = [parse_pubkey(k) for k in keys]
        config = _config(params, 1)
        _check_min_context(config, slot)
        return _with_context(slot, [self._render(a, config, slot) for a in addresses])

    def _get_program_accounts(self, params: list[Json], slot: int) -> Json:
        program = parse_pubkey(_param(params, 0, str, "program id"))
        config = _config(params, 1)
        _check_min_context(config, slot)
        matches = parse_filters(config.get("filters"))
        encoding = parse_encoding(config)
        data_slice = _data_slice(config)
        # Tens of megabytes at mainnet scale: assembled from per-account JSON text cached until
        # the account changes, because json.dumps of the whole list costs more than the rest.
        # A node that is behind (the slot_backwards fault) answers from its own older state.
        current = slot == self.sim.slot
        items = [
            '{"pubkey":"%s","account":%s}'  # noqa: UP031 -- an f-string would need brace escapes
            % (address, self._account_text(address, account, encoding, data_slice, cache=current))
            for address, account in self.program_accounts(program, slot)
            if all(match(account.data) for match in matches)
        ]
        accounts = "[" + ",".join(items) + "]"
        if config.get("withContext"):
            context = json.dumps({"apiVersion": API_VERSION, "slot": slot})
            return RawJson(f'{{"context":{context},"value":{accounts}}}')
        return RawJson(accounts)

    def _get_signatures_for_address(self, params: list[Json], slot: int) -> Json:
        address = str(parse_pubkey(_param(params, 0, str, "address")))
        config = _config(params, 1)
        _check_min_context(config, slot)
        limit = config.get("limit")
        limit = MAX_SIGNATURES if limit is None else limit
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SIGNATURES:
            raise invalid_params("Invalid limit; max 1000")
        before, until = config.get("before"), config.get("until")
        for name, value in (("before", before), ("until", until)):
            if value is not None and not isinstance(value, str):
                raise invalid_params(f"Invalid param: {name} must be a signature string")
        if self._take("ignore_before"):
            before = None  # a broken (or hostile) node: every page is the newest one again
        txs = self.sim.ledger.signatures_for(address, before=before, until=until, limit=limit)
        return [
            {
                "signature": tx.signature,
                "slot": tx.slot,
                "err": None,
                "memo": None,
                "blockTime": tx.block_time,
                "confirmationStatus": "finalized",
            }
            for tx in txs
            if tx.slot <= slot and tx.signature not in self.sim.unlisted
        ]

    def _get_transaction(self, params: list[Json], slot: int) -> Json:
        signature = _param(params, 0, str, "signature")
        config = _config(params, 1)
        encoding = config.get("encoding") or "json"
        if encoding != "json":
            raise invalid_params(f"Invalid params: unsupported encoding {encoding}")
        tx = self.sim.ledger.transactions.get(signature)
        # Unknown, not yet visible at this (possibly lagging) slot, or held back by the fault.
        if tx is None or tx.slot > slot or slot - tx.slot < self.faults.transaction_null_slots:
            return None
        response = _transaction_json(tx)
        if config.get("maxSupportedTransactionVersion") is not None:
            response["version"] = "legacy"
        return response

    def _get_block_time(self, params: list[Json], slot: int) -> Json:
        block = _param(params, 0, int, "slot")
        if not model.GENESIS_SLOT <= block <= slot:
            raise RpcError(-32004, f"Block not available for slot {block}")
        return self.sim.ts_at(block)

    # ------------------------------------------------------------ accounts

    def program_accounts(
        self, program: Pubkey, slot: int | None = None
    ) -> Iterable[tuple[Pubkey, model.Account]]:
        """Accounts owned by ``program`` as served now, or as of an older ``slot`` (a wrong-owner
        fault moves one out)."""
        accounts = (
            self.sim.program_accounts()
            if slot is None or slot == self.sim.slot
            else self.sim.program_accounts_at(slot)
        )
        for address, stored in accounts:
            account = self._malformed(address, stored)
            if account.owner == program:
                yield address, account

    def _malformed(self, address: Pubkey, account: model.Account) -> model.Account:
        kind = self.faults.malformed.get(str(address)) if self.faults.malformed else None
        if kind is None:
            return account
        if kind == "truncated":
            return model.Account(
                account.data[: len(account.data) // 2], account.owner, account.lamports
            )
        if kind == "wrong_discriminator":
            flipped = bytes(b ^ 0xFF for b in account.data[:8]) + account.data[8:]
            return model.Account(flipped, account.owner, account.lamports)
        return model.Account(account.data, SYSTEM_PROGRAM, account.lamports)

    def account(self, address: Pubkey, slot: int | None = None) -> model.Account | None:
        """The account as this node serves it now, or as of an older ``slot`` (faults included)."""
        if slot is None or slot == self.sim.slot:
            account = self.sim.account(address)
        else:
            account = self.sim.account_at(address, slot)
        return None if account is None else self._malformed(address, account)

    def render_account(
        self, address: Pubkey, account: model.Account, config: Mapping[str, Json]
    ) -> Json:
        """An account's JSON under a request's ``encoding`` and ``dataSlice``."""
        return self._render_account(account, parse_encoding(config), _data_slice(config))

    def _render(self, address: Pubkey, config: Mapping[str, Json], slot: int) -> Json:
        account = self.account(address, slot)
        return None if account is None else self.render_account(address, account, config)

    def _account_text(
        self,
        address: Pubkey,
        account: model.Account,
        encoding: str,
        data_slice: tuple[int, int] | None,
        *,
        cache: bool = True,
    ) -> str:
        """An account's JSON text, cached per encoding while the account object is unchanged
        (an older slot's accounts are rendered, never cached: they would evict the current)."""
        if not cache or data_slice is not None or encoding not in ("base64", "base64+zstd"):
            return json.dumps(self._render_account(account, encoding, data_slice))
        key = (address, encoding)
        cached = self._texts.get(key)
        if cached is not None and cached[0] is account:
            return cached[1]
        text = json.dumps(self._render_account(account, encoding, None))
        self._texts[key] = (account, text)
        return text

    def warm(self) -> None:
        """Render every program account once, as a node has its accounts ready before serving."""
        for address, account in self.sim.program_accounts():
            self._account_text(address, account, "base64", None)

    def _render_account(
        self, account: model.Account, encoding: str, data_slice: tuple[int, int] | None
    ) -> Json:
        raw = account.data
        if data_slice is not None:
            raw = raw[data_slice[0] : data_slice[0] + data_slice[1]]
        data = _encode_data(raw, encoding, self._zstd)
        return {
            "data": data,
            "executable": False,
            "lamports": account.lamports,
            "owner": str(account.owner),
            "rentEpoch": RENT_EPOCH,
            "space": len(account.data),
        }


# ---------------------------------------------------------------- helpers


def _with_context(slot: int, value: Json) -> Json:
    return {"context": {"apiVersion": API_VERSION, "slot": slot}, "value": value}


def _min_context_error(slot: int) -> RpcError:
    return RpcError(-32016, "Minimum context slot has not been reached", {"contextSlot": slot})


def _check_min_context(config: Mapping[str, Json], slot: int) -> None:
    wanted = config.get("minContextSlot")
    if wanted is None:
        return
    if not isinstance(wanted, int):
        raise invalid_params("Invalid params: minContextSlot must be an integer")
    if wanted > slot:
        raise _min_context_error(slot)


def _param(params: list[Json], index: int, kind: type, what: str) -> Any:
    if (
        len(params) <= index
        or not isinstance(params[index], kind)
        or isinstance(params[index], bool)
    ):
        raise invalid_params(f"Invalid params: expected {what} at position {index}")
    return params[index]


def _config(params: list[Json], index: int) -> Mapping[str, Json]:
    if len(params) <= index or params[index] is None:
        return {}
    config = params[index]
    if not isinstance(config, dict):
        raise invalid_params(f"Invalid params: expected a config object at position {index}")
    return config


def parse_pubkey(text: Json) -> Pubkey:
    """``text`` as a public key; an invalid-params :class:`RpcError` if it is not one."""
    if not isinstance(text, str):
        raise invalid_params("Invalid param: expected a base-58 public key")
    try:
        return Pubkey.from_string(text)
    except ValueError as exc:
        raise invalid_params(f"Invalid param: {exc}") from exc


def parse_encoding(config: Mapping[str, Json]) -> str:
    """The encoding ``config`` asks for: ``binary`` if none, ``base64`` for ``jsonParsed``."""
    encoding = config.get("encoding") or "binary"
    if encoding == "jsonParsed":
        return "base64"  # nodes fall back to base64 for accounts they cannot parse
    if encoding not in ("binary", "base58", "base64", "base64+zstd"):
        raise invalid_params(f"Invalid params: unknown encoding {encoding}")
    return str(encoding)


def _data_slice(config: Mapping[str, Json]) -> tuple[int, int] | None:
    spec = config.get("dataSlice")
    if spec is None:
        return None
    offset, length = (spec.get("offset"), spec.get("length")) if isinstance(spec, dict) else (0, 0)
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
        raise invalid_params("Invalid params: dataSlice needs offset and length")
    return offset, length


def _encode_data(raw: bytes, encoding: str, zstd: zstandard.ZstdCompressor) -> Json:
    if encoding in ("binary", "base58"):
        if len(raw) > MAX_BASE58_BYTES:
            raise RpcError(
                -32600,
                "Encoded binary (base 58) data should be less than 128 bytes, "
                "please use Base64 encoding.",
            )
        text = b58encode(raw).decode()
        return text if encoding == "binary" else [text, "base58"]
    if encoding == "base64":
        return [base64.b64encode(raw).decode(), "base64"]
    return [base64.b64encode(zstd.compress(raw)).decode(), "base64+zstd"]


def parse_filters(spec: Json) -> list[Callable[[bytes], bool]]:
    """getProgramAccounts filters as predicates on account data (``memcmp``, ``dataSize``)."""
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise invalid_params("Invalid params: filters must be a list")
    if len(spec) > MAX_FILTERS:
        raise invalid_params(f"Too many filters provided; max {MAX_FILTERS}")
    out: list[Callable[[bytes], bool]] = []
    for item in spec:
        if (
            isinstance(item, dict)
            and set(item) == {"dataSize"}
            and isinstance(item["dataSize"], int)
        ):
            out.append(_data_size(item["dataSize"]))
        elif isinstance(item, dict) and set(item) == {"memcmp"}:
            out.append(_memcmp(item["memcmp"]))
        else:
            raise invalid_params(f"Invalid params: unknown filter {item!r}")
    return out


def _data_size(size: int) -> Callable[[bytes], bool]:
    return lambda data: len(data) == size


def _memcmp(spec: Json) -> Callable[[bytes], bool]:
    if not isinstance(spec, dict) or not isinstance(spec.get("offset"), int):
        raise invalid_params("Invalid params: memcmp needs offset and bytes")
    offset, text, encoding = spec["offset"], spec.get("bytes"), spec.get("encoding", "base58")
    if not isinstance(text, str):
        raise invalid_params("Invalid params: memcmp needs offset and bytes")
    try:
        if encoding == "base58":
            wanted = b58decode(text)
        elif encoding == "base64":
            wanted = base64.b64decode(text, validate=True)
        else:
            raise invalid_params(f"Invalid params: unknown memcmp encoding {encoding}")
    except ValueError as exc:
        raise invalid_params(f"Invalid params: memcmp bytes: {exc}") from exc
    if len(wanted) > MAX_BASE58_BYTES:
        raise invalid_params("Invalid params: memcmp bytes too long")
    end = offset + len(wanted)
    return lambda data: data[offset:end] == wanted


_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58encode(raw: bytes) -> bytes:
    """Bitcoin-alphabet base 58, as Solana uses it (each leading zero byte becomes a '1')."""
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    n = int.from_bytes(raw, "big")
    digits = []
    while n:
        n, rem = divmod(n, 58)
        digits.append(_B58_ALPHABET[rem])
    return ("1" * zeros + "".join(reversed(digits))).encode()


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises ValueError on a character outside the alphabet."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise ValueError(f"invalid base-58 character {c!r}")
        n = n * 58 + _B58_INDEX[c]
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _transaction_json(tx: ledger.Transaction) -> dict[str, Json]:
    keys = list(tx.account_keys)
    # A forged transaction invokes the forger's program where a real one invokes Drift.
    programs = (model.DRIFT_PROGRAM, model.FORGER_PROGRAM, model.COMPUTE_BUDGET_PROGRAM)
    drift = next(i for i, k in enumerate(keys) if k in programs[:2])
    # SetComputeUnitLimit(1_400_000), then fill_perp_order(order_id: None, maker_order_id: None).
    budget_data = b58encode(bytes([2]) + (1_400_000).to_bytes(4, "little")).decode()
    fill_data = b58encode(FILL_PERP_ORDER_SIGHASH + b"\x00\x00").decode()
    readonly = sum(1 for k in keys if k in programs)
    instructions = [
        {
            "programIdIndex": drift,
            "accounts": [i for i in range(len(keys)) if keys[i] not in programs],
            "data": fill_data,
            "stackHeight": None,
        },
    ]
    if model.COMPUTE_BUDGET_PROGRAM in keys:
        instructions.insert(
            0,
            {
                "programIdIndex": keys.index(model.COMPUTE_BUDGET_PROGRAM),
                "accounts": [],
                "data": budget_data,
                "stackHeight": None,
            },
        )
    oracle_readonly = 1  # the oracle, last of the Drift instruction's accounts
    balances = [1_000_000_000 - 5_000 * i for i in range(len(keys))]
    return {
        "slot": tx.slot,
        "blockTime": tx.block_time,
        "transaction": {
            "signatures": [tx.signature],
            "message": {
                "accountKeys": keys,
                "header": {
                    "numRequiredSignatures": 1,
                    "numReadonlySignedAccounts": 0,
                    "numReadonlyUnsignedAccounts": readonly + oracle_readonly,
                },
                "recentBlockhash": b58encode(
                    hashlib.sha256(tx.slot.to_bytes(8, "little")).digest()
                ).decode(),
                "instructions": instructions,
            },
        },
        "meta": {
            "err": None,
            "status": {"Ok": None},
            "fee": 5_000,
            "preBalances": balances,
            "postBalances": [balances[0] - 5_000, *balances[1:]],
            "innerInstructions": [],
            "logMessages": list(tx.logs),
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": tx.compute_units,
        },
    }
