"""Decode speed: one getProgramAccounts response of User accounts → books → scores, two ways.

    .venv/bin/python bench/bench_decode.py [--scenario mainnet-scale] [--users N] [--seed 1]
    .venv/bin/python bench/bench_decode.py --synthetic [--users 10000] [--markets 30]

Builds one response and times, in this process and on the same bytes:

- driftsnap's path (:func:`driftsnap_pipeline`): ``json.loads``, ``accounts.from_program_accounts``,
  ``users.decode``, ``books.build``, then ``scorer.score`` under every method;
- driftpy's path (:func:`driftpy_pipeline`): what ``UserMap.sync`` does with the response (see
  :func:`usermap_sync`), ``UserMap.get_DLOB``, ``DLOB.get_l3`` per market less the orders it
  serves that spec 1.1 excludes (see :func:`_l3_book`), then the same scoring;
- the floor (:func:`floor`): ``json.loads`` and base64 of every account, nothing else.

By default the response is the one the simulator serves for a scenario (built without HTTP by the
simnet's own JSON-RPC node, :func:`simnet_response`), whose PerpMarket and oracle accounts give the
markets and prices (``--users`` scales the scenario's authorities to about that many User
accounts); ``--synthetic`` builds User accounts with open orders of every kind instead.
Prints CPU seconds (``time.process_time``) of each path, their ratio and whether both produced the
same books and scores. ``bench/run.py`` runs each side in a fresh process for its memory figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import gc
import hashlib
import importlib.metadata
import json
import statistics
import time
from typing import TYPE_CHECKING, Any, Final

import jsonrpcclient
import numpy as np
from driftpy.accounts.types import DataAndSlot
from driftpy.decode.user import decode_user
from driftpy.drift_client import DriftClient
from driftpy.math.orders import is_resting_limit_order
from driftpy.types import MarketType, OraclePriceData
from driftpy.user_map.user_map import UserMap
from driftpy.user_map.user_map_config import PollingConfig, UserMapConfig
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.chain import accounts, books, idl, markets, snapshot, users
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import bookfile, methods, scorer
from driftsnap.simnet import faults, model, scenarios
from driftsnap.simnet import rpc as simnet_rpc

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from driftsnap.scoring import result

SLOT = 350_000_000
TS = 1_760_000_000
METHODS: Final = tuple(methods.PRESETS.values())
# usermap_sync copies UserMap.sync of this driftpy release; another release may do otherwise.
DRIFTPY_REPLICATED: Final = "0.8.89"


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A getProgramAccounts response's bytes and what else a snapshot reads at its slot."""

    body: bytes
    markets: tuple[markets.PerpMarket, ...]
    oracle: dict[int, int]  # market index -> oracle price at ``slot``
    slot: int
    ts: int

    def meta(self) -> dict[str, Any]:
        """Everything but the body, as JSON (for a worker process)."""
        return {
            "markets": [dataclasses.asdict(m) for m in self.markets],
            "oracle": {str(k): v for k, v in self.oracle.items()},
            "slot": self.slot,
            "ts": self.ts,
        }

    @classmethod
    def from_meta(cls, body: bytes, meta: Mapping[str, Any]) -> Response:
        return cls(
            body=body,
            markets=tuple(markets.PerpMarket(**m) for m in meta["markets"]),
            oracle={int(k): int(v) for k, v in meta["oracle"].items()},
            slot=int(meta["slot"]),
            ts=int(meta["ts"]),
        )

    def accounts(self) -> int:
        return len(json.loads(self.body)["result"]["value"])


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a path produced: a book per market index, its scores per method, CPU per stage."""

    books: dict[int, book_mod.Book]
    scores: dict[int, tuple[result.SnapshotScore, ...]]
    stages: dict[str, float]


# ---------------------------------------------------------------- responses


def _pubkey(seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest()


def scaled(scenario: scenarios.Scenario, users_wanted: int) -> scenarios.Scenario:
    """``scenario`` with about ``users_wanted`` User accounts (authorities scaled to match)."""
    cycle = scenario.sub_accounts
    per_authority = sum(cycle) / len(cycle)
    authorities = max(1, round((users_wanted - scenario.takers) / per_authority))
    return dataclasses.replace(
        scenario, name=f"{scenario.name}@{users_wanted}", authorities=authorities
    )


def _memcmp(offset: int, data: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"memcmp": {"offset": offset, "bytes": encoded, "encoding": "base64"}}


# The filters driftsnap's reader sends (chain/snapshot.py): User accounts with an open order.
USER_FILTERS: Final = [
    {"dataSize": accounts.SIZES[accounts.Kind.USER]},
    _memcmp(0, accounts.DISCRIMINATORS[accounts.Kind.USER]),
    _memcmp(idl.offset("User", "has_open_order"), b"\x01"),
]


def simnet_response(scenario: scenarios.Scenario, *, seed: int = 1, steps: int = 5) -> Response:
    """The bytes the simulator serves for the reader's getProgramAccounts of User accounts.

    The simnet's JSON-RPC node answers the request directly (``Node.call`` and ``response_text``
    are what its HTTP server sends), after ``steps`` slots so that auctions and fills are under
    way. Markets and oracle prices are decoded from the simulator's accounts by driftsnap.
    """
    sim = model.Simulator(scenario, seed=seed)
    for _ in range(steps):
        sim.step()
    node = simnet_rpc.Node(sim, faults.Faults(), seed=seed)
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "getProgramAccounts",
        "params": [
            protocol.DRIFT_PROGRAM_ID,
            {"encoding": "base64", "withContext": True, "filters": USER_FILTERS},
        ],
    }
    body = simnet_rpc.response_text(node.call(request)).encode()
    by_address = {
        str(address): accounts.RawAccount(str(address), str(account.owner), account.data)
        for address, account in sim.program_accounts()
    }
    perp_kind = accounts.DISCRIMINATORS[accounts.Kind.PERP_MARKET]
    perp = sorted(
        (markets.decode(a) for a in by_address.values() if a.data[:8] == perp_kind),
        key=lambda m: m.market_index,
    )
    oracle = {m.market_index: markets.oracle_price(m, by_address.get(m.oracle)).price for m in perp}
    return Response(body, tuple(perp), oracle, sim.slot, sim.ts)


def synthetic_response(
    n_users: int, n_markets: int, orders_per_user: int, seed: int = 4
) -> tuple[bytes, dict[int, int]]:
    """The JSON bytes of a gPA response, and the oracle price of each perp market."""
    rng = np.random.default_rng(seed)
    oracle = {i: int(rng.integers(100_000, 100_000_000_000)) for i in range(n_markets)}
    records = np.zeros(n_users, dtype=users.ACCOUNT_DTYPE)
    records["discriminator"] = int.from_bytes(accounts.DISCRIMINATORS[accounts.Kind.USER], "little")
    user = records["user"]
    user["authority"] = np.frombuffer(
        b"".join(_pubkey(f"authority-{i // 2}") for i in range(n_users)), dtype=np.uint8
    ).reshape(n_users, 32)
    user["sub_account_id"] = np.arange(n_users) % 2
    # Real makers hold positions: driftpy's decoder reads every non-empty one.
    user["spot_positions"]["scaled_balance"][:, 0] = rng.integers(1, 10**12, n_users)
    user["perp_positions"]["base_asset_amount"][:, :3] = rng.integers(1, 10**12, (n_users, 3))
    user["perp_positions"]["market_index"][:, :3] = rng.integers(0, n_markets, (n_users, 3))

    shape = (n_users, orders_per_user)
    orders = user["orders"][:, :orders_per_user]
    market = rng.integers(0, n_markets, shape)
    long = rng.random(shape) < 0.5
    reference = np.vectorize(oracle.__getitem__)(market)
    distance = (reference * rng.uniform(0.0, 0.02, shape)).astype(np.int64)
    kind = rng.random(shape)
    floating = kind < 0.3
    orders["status"] = protocol.OrderStatus.OPEN
    orders["market_type"] = np.where(
        kind > 0.97, protocol.MarketType.SPOT, protocol.MarketType.PERP
    )
    orders["market_index"] = market
    orders["order_type"] = np.where(
        kind > 0.9, protocol.OrderType.TRIGGER_LIMIT, protocol.OrderType.LIMIT
    )
    orders["trigger_condition"] = np.where(
        kind > 0.94, protocol.TriggerCondition.TRIGGERED_ABOVE, protocol.TriggerCondition.ABOVE
    )
    orders["direction"] = np.where(long, protocol.Direction.LONG, protocol.Direction.SHORT)
    signed = np.where(long, -distance, distance)
    orders["price"] = np.where(floating, 0, reference + signed)
    orders["trigger_price"] = orders["price"]
    orders["oracle_price_offset"] = np.where(floating, signed, 0)
    orders["base_asset_amount"] = rng.integers(1, 1000, shape) * 10**8
    orders["base_asset_amount_filled"] = np.where(
        rng.random(shape) < 0.1, orders["base_asset_amount"], 0
    )
    orders["post_only"] = rng.random(shape) < 0.7
    orders["slot"] = SLOT - rng.integers(0, 5_000, shape)
    orders["auction_duration"] = np.where(rng.random(shape) < 0.2, 20, 0)
    orders["max_ts"] = np.where(rng.random(shape) < 0.2, TS + rng.integers(-60, 60, shape), 0)
    orders["order_id"] = np.arange(orders_per_user) + 1

    value = [
        {
            "pubkey": str(Pubkey(_pubkey(f"user-{i}"))),
            "account": {
                "data": [base64.b64encode(records[i].tobytes()).decode(), "base64"],
                "executable": False,
                "lamports": 31_347_840,
                "owner": protocol.DRIFT_PROGRAM_ID,
                "rentEpoch": 18_446_744_073_709_551_615,
                "space": accounts.SIZES[accounts.Kind.USER],
            },
        }
        for i in range(n_users)
    ]
    response = {"jsonrpc": "2.0", "result": {"context": {"slot": SLOT}, "value": value}, "id": 1}
    return json.dumps(response).encode(), oracle


def perp_markets(oracle: dict[int, int]) -> list[markets.PerpMarket]:
    return [
        markets.PerpMarket(
            pubkey=str(Pubkey(_pubkey(f"market-{i}"))),
            market_index=i,
            name=f"M{i}-PERP",
            status="Active",
            contract_type="Perpetual",
            oracle=str(Pubkey(_pubkey(f"oracle-{i}"))),
            oracle_source="PythLazer",
            order_tick_size=1,
            order_step_size=1,
            min_order_size=1,
            next_fill_record_id=1,
        )
        for i in oracle
    ]


# ---------------------------------------------------------------- the paths


def _score(
    built: Mapping[int, book_mod.Book], methods_: Sequence[methods.Method]
) -> dict[int, tuple[result.SnapshotScore, ...]]:
    return {i: tuple(scorer.score(b, m) for m in methods_) for i, b in built.items()}


def driftsnap_pipeline(response: Response, methods_: Sequence[methods.Method] = METHODS) -> Outcome:
    """driftsnap: response bytes → User accounts → books → scores (as ``snapshot.take`` and the
    daemon do after the RPC reads)."""
    start = time.process_time()
    with snapshot.paused_gc():
        value = json.loads(response.body)["result"]["value"]
        skipped = accounts.Skipped()
        decoded = users.decode_program_accounts(value, skipped, slot=response.slot)
        del value  # the JSON tree is freed before the books are built, as snapshot.take does
        skipped.enforce(0.01)
        decoded_at = time.process_time()
        built = books.build(
            decoded, response.markets, response.oracle, slot=response.slot, ts=response.ts
        )
        built_at = time.process_time()
        scores = _score(built, methods_)
        done = time.process_time()
    stages = {
        "decode": decoded_at - start,
        "books": built_at - decoded_at,
        "score": done - built_at,
    }
    return Outcome(built, scores, stages)


def floor(body: bytes) -> int:
    """The least any reader does: parse the JSON and base64-decode every account; bytes decoded."""
    value = json.loads(body)["result"]["value"]
    return sum(len(binascii.a2b_base64(item["account"]["data"][0])) for item in value)


def offline_drift_client() -> tuple[DriftClient, AsyncClient]:
    """A DriftClient as a UserMap needs one, with a throw-away wallet and no server behind it.

    Nothing here talks to a node: the client only holds the program and its IDL. Close the
    returned connection when done.
    """
    installed = importlib.metadata.version("driftpy")
    if installed != DRIFTPY_REPLICATED:
        raise SystemExit(
            f"bench_decode replicates UserMap.sync of driftpy {DRIFTPY_REPLICATED}, but driftpy "
            f"{installed} is installed: re-read driftpy/user_map/user_map.py and update it"
        )
    connection = AsyncClient("http://127.0.0.1:9")  # the discard port: never contacted
    return DriftClient(connection, Keypair()), connection


async def usermap_sync(usermap: UserMap, body: bytes) -> None:
    """``UserMap.sync`` of driftpy 0.8.89 from the point its HTTP response has arrived.

    ``sync`` posts the getProgramAccounts request itself, then does exactly this:
    ``jsonrpcclient.parse(resp.json())``; for every account, ``base64.b64decode`` then
    ``decode_user``, kept in a dict by pubkey (and the raw bytes in ``usermap.raw``); then for
    every pubkey ``add_pubkey`` (a ``DriftUser`` with a cached account subscriber) with the
    decoded account, ``update_data`` again, and ``await asyncio.sleep(0)``; then a pass over the
    map dropping accounts no longer returned, again yielding once per account. Only the request
    and its transport are left out; ``sync``'s ``except Exception: print(...)`` is too, so that a
    failure here fails the benchmark instead of leaving the map empty.
    """
    parsed = jsonrpcclient.parse(json.loads(body))
    if not isinstance(parsed, jsonrpcclient.Ok):
        raise TypeError(f"getProgramAccounts failed: {parsed}")
    slot = int(parsed.result["context"]["slot"])
    usermap.latest_slot = slot
    decoded: dict[str, Any] = {}
    raw: dict[str, bytes] = {}
    for program_account in parsed.result["value"]:
        pubkey = program_account["pubkey"]
        raw_bytes = base64.b64decode(program_account["account"]["data"][0])
        decoded[str(pubkey)] = decode_user(raw_bytes)
        raw[str(pubkey)] = raw_bytes
    usermap.raw = raw
    for pubkey, user_account in decoded.items():
        if pubkey not in usermap.user_map:
            await usermap.add_pubkey(Pubkey.from_string(pubkey), DataAndSlot(slot, user_account))
        usermap.user_map[pubkey].account_subscriber.update_data(DataAndSlot(slot, user_account))
        await asyncio.sleep(0)
    stale = []
    for key in list(usermap.user_map):
        if key not in decoded:
            usermap.user_map[key].unsubscribe()  # type: ignore[no-untyped-call]  # unannotated
            stale.append(key)
        await asyncio.sleep(0)
    for key in stale:
        del usermap.user_map[key]


def _l3_book(
    l3: Any,
    market: markets.PerpMarket,
    response: Response,
    *,
    authority_of: dict[str, str],
    usermap: UserMap,
    suspects: Mapping[tuple[str, int], Any],
) -> book_mod.Book:
    """An L3 book as a driftsnap ``Book``, without the orders that ``get_l3`` serves and spec 1.1
    leaves out (see ``driftsnap/chain/eligibility.py``): unpriced ones; expired ones, whatever
    the order type (driftpy's ``is_order_expired`` never expires trigger orders); and oracle-offset
    orders still in their auction, which the DLOB files as floating limits without asking
    ``is_resting_limit_order``. ``suspects`` holds the orders that may be either of the last two.
    """
    orders = []
    for side, levels in ((book_mod.Side.BID, l3.bids), (book_mod.Side.ASK, l3.asks)):
        for level in levels:
            user = str(level.maker)
            order = suspects.get((user, level.order_id))
            if order is not None and (
                (order.max_ts and response.ts > order.max_ts)
                or not is_resting_limit_order(order, response.slot)
            ):
                continue
            if level.price is None or level.price <= 0:
                continue
            authority = authority_of.get(user)
            if authority is None:
                authority = authority_of[user] = str(usermap.get_user_authority(user))
            orders.append(
                book_mod.Order(user, authority, side, level.price, level.size, level.order_id)
            )
    return book_mod.Book(
        market=market.name,
        market_index=market.market_index,
        slot=response.slot,
        ts=response.ts,
        oracle_price=response.oracle[market.market_index],
        orders=tuple(orders),
    )


async def driftpy_pipeline(
    client: DriftClient, response: Response, methods_: Sequence[methods.Method] = METHODS
) -> Outcome:
    """driftpy: response bytes → UserMap → DLOB → ``get_l3`` per market → the same scoring."""
    start = time.process_time()
    usermap = UserMap(UserMapConfig(client, PollingConfig(frequency=60)))
    await usermap_sync(usermap, response.body)
    synced_at = time.process_time()
    # DLOB.init_from_usermap: insert_order for each of the 32 order slots of every user.
    dlob = await usermap.get_DLOB(response.slot)
    inserted_at = time.process_time()
    suspects = {
        (key, order.order_id): order
        for key, user in usermap.user_map.items()
        for order in user.get_user_account().orders
        if order.max_ts or (order.oracle_price_offset and order.auction_duration)
    }
    authority_of: dict[str, str] = {}
    built = {}
    for market in response.markets:
        price = response.oracle[market.market_index]
        oracle = OraclePriceData(price, response.slot, 0, price, 0, True)
        l3 = dlob.get_l3(market.market_index, MarketType.Perp(), response.slot, oracle)
        built[market.market_index] = _l3_book(
            l3, market, response, authority_of=authority_of, usermap=usermap, suspects=suspects
        )
    built_at = time.process_time()
    scores = _score(built, methods_)
    done = time.process_time()
    stages = {
        "usermap": synced_at - start,
        "dlob": inserted_at - synced_at,
        "l3": built_at - inserted_at,
        "score": done - built_at,
    }
    return Outcome(built, scores, stages)


# ---------------------------------------------------------------- comparing


def _sha(doc: object) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _bracket(x: result.BracketLiquidity) -> list[Any]:
    return [
        x.name, x.weight, x.total_bid, x.total_ask, x.q, x.value,
        dict(x.maker_bid), dict(x.maker_ask), x.bid_price, x.ask_price,
    ]  # fmt: skip


def fingerprint(outcome: Outcome) -> dict[str, dict[str, Any]]:
    """Per market: its order count and digests of its book and of each method's scores.

    Books are compared as the same orders on each side (sorted by side, price, User account and
    order id): driftpy's ``get_l3`` merges resting and floating orders out of price order (see
    ``driftsnap/chain/books.py``). Scores do not depend on the listing order, so they are
    compared whole: every maker's score, best bid and ask, and every bracket's sums.
    """
    out = {}
    for index, book in outcome.books.items():
        doc = bookfile.to_dict(book)
        doc["orders"].sort(
            key=lambda o: (o["side"], -o["price"] if o["side"] == "bid" else o["price"],
                           o["user"], o["order_id"])
        )  # fmt: skip
        scores = {
            s.method: {
                "best": [s.best_bid, s.best_ask],
                "scores": dict(s.scores),
                "brackets": [_bracket(x) for x in s.brackets],
            }
            for s in outcome.scores[index]
        }
        out[book.market] = {
            "orders": len(book.orders),
            "book": _sha(doc),
            "scores": {name: _sha(doc) for name, doc in scores.items()},
        }
    return out


def differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """Markets whose books or scores differ between two fingerprints (empty: all agree)."""
    out = []
    for market in sorted(set(ours) | set(theirs)):
        a, b = ours.get(market), theirs.get(market)
        if a is None or b is None:
            out.append(f"{market}: only one side has a book")
        elif a["book"] != b["book"]:
            out.append(f"{market}: books differ ({a['orders']} vs {b['orders']} orders)")
        elif a["scores"] != b["scores"]:
            methods_ = sorted(m for m in a["scores"] if a["scores"][m] != b["scores"].get(m))
            out.append(f"{market}: scores differ under {', '.join(methods_)}")
    return out


# ---------------------------------------------------------------- the command


def _median_cpu(fn: Any, repeat: int) -> tuple[float, Any]:
    runs, last = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        last = fn()
        runs.append(time.process_time() - start)
    return statistics.median(runs), last


async def _driftpy_runs(response: Response, repeat: int) -> tuple[float, Outcome]:
    client, connection = offline_drift_client()
    try:
        runs, last = [], None
        for _ in range(repeat):
            gc.collect()
            start = time.process_time()
            last = await driftpy_pipeline(client, response)
            runs.append(time.process_time() - start)
        assert last is not None
        return statistics.median(runs), last
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(scenarios.SCENARIOS), default="mainnet-scale")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--synthetic", action="store_true", help="synthetic users instead")
    parser.add_argument("--users", type=int, help="User accounts (default: the scenario's; 10,000)")
    parser.add_argument("--markets", type=int, default=30, help="with --synthetic")
    parser.add_argument("--orders-per-user", type=int, default=6, help="with --synthetic")
    parser.add_argument("--repeat", type=int, default=5, help="runs of driftsnap's path")
    parser.add_argument("--driftpy-repeat", type=int, default=1, help="runs of driftpy's path")
    args = parser.parse_args()

    if args.synthetic:
        n_users = args.users or 10_000
        body, oracle = synthetic_response(n_users, args.markets, args.orders_per_user)
        response = Response(body, tuple(perp_markets(oracle)), oracle, SLOT, TS)
        source = "synthetic"
    else:
        scenario = scenarios.SCENARIOS[args.scenario]
        if args.users:
            scenario = scaled(scenario, args.users)
        response = simnet_response(scenario, seed=args.seed)
        source = f"simnet {scenario.name} (seed {args.seed})"
    print(
        f"response: {source}, {len(response.body) / 1e6:.1f} MB, {response.accounts()} users, "
        f"{len(response.markets)} markets, {len(METHODS)} methods"
    )
    driftsnap_pipeline(response)  # warm imports and caches outside the measurement
    cpu_ours, ours = _median_cpu(lambda: driftsnap_pipeline(response), args.repeat)
    cpu_floor, _ = _median_cpu(lambda: floor(response.body), args.repeat)
    cpu_theirs, theirs = asyncio.run(_driftpy_runs(response, args.driftpy_repeat))
    stages = ", ".join(f"{k} {v:.3f}" for k, v in ours.stages.items())
    print(f"driftsnap: {cpu_ours:7.3f} s CPU (median of {args.repeat}; {stages})")
    stages = ", ".join(f"{k} {v:.3f}" for k, v in theirs.stages.items())
    print(f"driftpy:   {cpu_theirs:7.3f} s CPU ({stages})")
    print(f"floor:     {cpu_floor:7.3f} s CPU (json.loads + base64 of every account)")
    print(
        f"ratios:    driftpy / driftsnap {cpu_theirs / cpu_ours:.1f}x (target >= 10x); "
        f"driftsnap / floor {cpu_ours / cpu_floor:.1f}x (target <= 5x)"
    )
    diff = differences(fingerprint(ours), fingerprint(theirs))
    agree = len(ours.books) - len(diff)
    print(f"books and scores agree in {agree} of {len(ours.books)} markets")
    for line in diff[:5]:
        print(f"  {line}")
    if diff:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
