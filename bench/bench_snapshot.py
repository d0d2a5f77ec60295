"""How long one ``snapshot.take`` costs end to end against the ``mainnet-scale`` simnet.

Run: ``python bench/bench_snapshot.py [--repeat N] [--seed S]``. Starts a simnet in-process on a
free port and takes a snapshot of every perp market N times, one slot apart, through the real
client (throttles out of the way). Reported: the whole call, the RPC part (requests and JSON
parsing, which share this process with the simnet serving them) and what is left without RPC
(decoding the User accounts and building the books).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from driftsnap.chain import rpc, snapshot
from driftsnap.simnet import server


async def main(repeat: int, seed: int) -> None:
    started = time.perf_counter()
    async with server.serve("mainnet-scale", seed=seed) as node:
        print(
            f"mainnet-scale: {len(node.sim.users)} users, {len(node.sim.markets)} markets "
            f"(built in {time.perf_counter() - started:.1f} s)"
        )
        settings = rpc.RpcSettings(node.url, timeout_s=120, rps=1000, gpa_rps=1000)
        rows: list[dict[str, float]] = []
        async with rpc.Client(settings) as client:
            wanted: tuple[int, ...] = ()  # every market, found by name once, then by index
            last: int | None = None
            for i in range(repeat):
                if i:
                    await node.advance(1)  # a new slot between polls, as in real use
                snap = await snapshot.take(
                    client, snapshot.SnapshotSettings(), wanted, last_slot=last
                )
                if not snap.ok:
                    raise SystemExit(f"snapshot rejected: {snap.rejection}: {snap.detail}")
                wanted, last = snap.market_indexes, snap.slot
                ms = dict(snap.durations_ms)
                rows.append(ms)
                print(
                    f"slot {snap.slot}: {snap.users} users, {snap.orders} orders, "
                    f"{len(snap.books)} books; total {ms['total']:.0f} ms, rpc {ms['rpc']:.0f} ms, "
                    f"decode {ms['decode']:.0f} ms, books {ms['books']:.0f} ms"
                )
    for key in ("total", "rpc", "decode", "books"):
        values = [row[key] for row in rows]
        print(f"{key:6s} median {statistics.median(values):7.1f} ms  max {max(values):7.1f} ms")
    without_rpc = [row["decode"] + row["books"] for row in rows]
    print(f"without RPC median {statistics.median(without_rpc):.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    asyncio.run(main(cli.repeat, cli.seed))
