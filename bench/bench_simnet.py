"""How fast the simnet serves ``mainnet-scale`` getProgramAccounts (target: under 2 s).

Run: ``python bench/bench_simnet.py [--repeat N] [--seed S]``. Starts a simnet in-process on a free
port, then times whole HTTP round trips (request sent to last byte received) of the calls a reader
makes: every User account (dataSize + memcmp on the discriminator) in ``base64`` and in
``base64+zstd``, and all PerpMarkets. The first call of each kind also pays for encoding; later
ones hit the per-account cache, as a long-running node would after its first poll.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

from driftsnap.simnet import layout, rpc, server

USER_DISCRIMINATOR = rpc.b58encode(layout.account_discriminator("User")).decode()
USER_FILTERS = [
    {"dataSize": layout.USER_SIZE},
    {"memcmp": {"offset": 0, "bytes": USER_DISCRIMINATOR}},
]


async def _time_call(
    session: aiohttp.ClientSession, url: str, params: list[Any]
) -> tuple[float, int, int]:
    """(seconds, response bytes, accounts) of one getProgramAccounts round trip."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "getProgramAccounts", "params": params}
    started = time.perf_counter()
    async with session.post(url, json=body) as resp:
        raw = await resp.read()
    elapsed = time.perf_counter() - started
    return elapsed, len(raw), len(json.loads(raw)["result"])


async def main(repeat: int, seed: int) -> None:
    started = time.perf_counter()
    async with server.serve("mainnet-scale", seed=seed) as node:
        built = time.perf_counter() - started
        users = len(node.sim.users)
        orders = sum(u.open_orders for u in node.sim.users.values())
        print(
            f"mainnet-scale: {users} users, {orders} open orders, {len(node.sim.markets)} markets"
            f" (built in {built:.1f} s)"
        )
        program = str(layout.DRIFT_PROGRAM_ID)
        cases: dict[str, list[Any]] = {
            "users base64": [program, {"encoding": "base64", "filters": USER_FILTERS}],
            "users base64+zstd": [program, {"encoding": "base64+zstd", "filters": USER_FILTERS}],
            "perp markets": [program, {"encoding": "base64", "filters": [{"dataSize": 1216}]}],
        }
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name, params in cases.items():
                times = []
                for i in range(repeat):
                    if i:
                        await node.advance(1)  # a new slot between polls, as in real use
                    elapsed, size, count = await _time_call(session, node.url, params)
                    times.append(elapsed)
                print(
                    f"getProgramAccounts {name:18s} {count:6d} accounts {size / 1e6:7.1f} MB"
                    f"  first {times[0]:.2f} s  median {statistics.median(times):.2f} s"
                    f"  max {max(times):.2f} s"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    asyncio.run(main(cli.repeat, cli.seed))
