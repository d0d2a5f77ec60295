"""Decode speed: a getProgramAccounts response of 10,000 Users → sorted books for every market.

    .venv/bin/python bench/bench_decode.py [--users 10000] [--markets 30] [--orders-per-user 6]
    .venv/bin/python bench/bench_decode.py --scenario mainnet-scale [--seed 1]

Builds one response: by default synthetic User accounts with positions and open orders of every
kind (fixed and oracle-offset limits, post-only, auctions, trigger orders fired or not, expiring
orders, spot orders); with ``--scenario`` the User accounts of a simnet scenario, whose PerpMarket
and oracle accounts then go through ``markets.decode`` and ``markets.oracle_price`` too. Then it
times, in one process and on the same bytes:

- driftpy's path: ``json.loads``, ``decode_user`` per account (as ``UserMap.sync`` does), one
  ``DLOB`` fed with every order (``insert_order``, as ``DLOB.init_from_usermap`` does; UserMap
  itself needs a ``DriftClient`` and a wallet), then ``get_l3`` for every market;
- driftsnap's path: ``json.loads``, ``accounts.from_program_accounts``, ``users.decode``,
  ``books.build``.

Prints CPU seconds (``time.process_time``, user + system: page faults of fresh buffers count) of
each (driftsnap's as the median of ``--repeat`` runs, driftpy's once: it takes seconds), their
ratio, and driftsnap's peak memory: the ``tracemalloc`` peak of an untimed run (numpy reports its
buffers to tracemalloc) and the process's maximum RSS before driftpy's path runs. Issue 4's
targets: ratio >= 10, driftsnap < 1 s, peak < 500 MB.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import resource
import statistics
import time
import tracemalloc
from typing import Any

import numpy as np
from driftpy.decode.user import decode_user
from driftpy.dlob.dlob import DLOB
from driftpy.types import MarketType, OraclePriceData
from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.chain import accounts, books, markets, users

SLOT = 350_000_000
TS = 1_760_000_000


def _pubkey(seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest()


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
                "owner": accounts.DRIFT_PROGRAM_ID,
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


def scenario_response(
    name: str, seed: int
) -> tuple[bytes, list[markets.PerpMarket], dict[int, int], int, int]:
    """A simnet scenario's Users as a gPA response, its markets and prices, its slot and time."""
    # Imported here: only this mode needs the simulator, and it is not part of what is timed.
    from driftsnap.simnet import model, scenarios  # noqa: PLC0415

    sim = model.Simulator(scenarios.SCENARIOS[name], seed=seed)
    value, by_address = [], {}
    for address, account in sim.program_accounts():
        raw = accounts.RawAccount(str(address), str(account.owner), account.data)
        by_address[raw.pubkey] = raw
        if raw.data[:8] == accounts.DISCRIMINATORS[accounts.Kind.USER]:
            data = [base64.b64encode(raw.data).decode(), "base64"]
            value.append({"pubkey": raw.pubkey, "account": {"data": data, "owner": raw.owner}})
    perp = [
        markets.decode(a)
        for a in by_address.values()
        if a.data[:8] == accounts.DISCRIMINATORS[accounts.Kind.PERP_MARKET]
    ]
    oracle = {m.market_index: markets.oracle_price(m, by_address.get(m.oracle)).price for m in perp}
    response = {"jsonrpc": "2.0", "result": {"context": {"slot": sim.slot}, "value": value}}
    return json.dumps(response).encode(), perp, oracle, sim.slot, sim.ts


def ours(
    body: bytes, perp: list[markets.PerpMarket], oracle: dict[int, int], slot: int, ts: int
) -> int:
    """driftsnap: response bytes → books; returns the number of orders in all books."""
    value = json.loads(body)["result"]["value"]
    skipped = accounts.Skipped()
    raw = accounts.from_program_accounts(value, skipped)
    decoded = users.decode(raw, skipped)
    skipped.enforce(0.01)
    built = books.build(decoded, perp, oracle, slot=slot, ts=ts)
    return sum(len(b.orders) for b in built.values())


def driftpy_path(body: bytes, oracle: dict[int, int], slot: int) -> tuple[int, float]:
    """driftpy: response bytes → decode_user → DLOB → get_l3 per market.

    Returns the number of L3 levels and the CPU seconds spent up to the last ``decode_user``.
    """
    start = time.process_time()
    value = json.loads(body)["result"]["value"]
    decoded = [
        (
            Pubkey.from_string(item["pubkey"]),
            decode_user(base64.b64decode(item["account"]["data"][0])),
        )
        for item in value
    ]
    decode_cpu = time.process_time() - start
    dlob: Any = DLOB()  # type: ignore[no-untyped-call]  # driftpy leaves __init__ unannotated
    for pubkey, account in decoded:
        for order in account.orders:
            dlob.insert_order(order, pubkey, slot)
    total = 0
    for index, price in oracle.items():
        oracle_data = OraclePriceData(price, slot, 0, price, 0, True)
        l3 = dlob.get_l3(index, MarketType.Perp(), slot, oracle_data)
        total += len(l3.bids) + len(l3.asks)
    return total, decode_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--markets", type=int, default=30)
    parser.add_argument("--orders-per-user", type=int, default=6)
    parser.add_argument("--scenario", help="a simnet scenario instead of synthetic users")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="runs of driftsnap's path")
    args = parser.parse_args()

    if args.scenario:
        body, perp, oracle, slot, ts = scenario_response(args.scenario, args.seed)
        source = f"simnet {args.scenario} (seed {args.seed})"
    else:
        body, oracle = synthetic_response(args.users, args.markets, args.orders_per_user)
        perp, slot, ts = perp_markets(oracle), SLOT, TS
        source = "synthetic"
    n_users = len(json.loads(body)["result"]["value"])
    print(f"response: {source}, {len(body) / 1e6:.1f} MB, {n_users} users, {len(perp)} markets")

    ours(body, perp, oracle, slot, ts)  # warm imports and caches outside the measurement
    runs = []
    for _ in range(args.repeat):
        start = time.process_time()
        n_ours = ours(body, perp, oracle, slot, ts)
        runs.append(time.process_time() - start)
    cpu_ours = statistics.median(runs)

    tracemalloc.start()
    ours(body, perp, oracle, slot, ts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    start = time.process_time()
    n_driftpy, cpu_decode = driftpy_path(body, oracle, slot)
    cpu_driftpy = time.process_time() - start

    print(
        f"driftsnap: {cpu_ours:7.3f} s CPU (median of {len(runs)}, max {max(runs):.3f} s), "
        f"{n_ours} orders in books (eligible only)"
    )
    print(
        f"driftpy:   {cpu_driftpy:7.3f} s CPU ({cpu_decode:.3f} s json + decode_user, the rest "
        f"DLOB + get_l3), {n_driftpy} L3 levels"
    )
    print(f"ratio:     {cpu_driftpy / cpu_ours:7.1f}x less CPU (target >= 10x, driftsnap < 1 s)")
    print(
        f"memory:    driftsnap peak {peak / 2**20:.0f} MB traced above the response, "
        f"process max RSS {max_rss_mb:.0f} MB before driftpy's path (target < 500 MB)"
    )


if __name__ == "__main__":
    main()
