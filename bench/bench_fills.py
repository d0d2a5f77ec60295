"""Fill ingest end to end: list, fetch, parse and store a burst of fill transactions.

    .venv/bin/python bench/bench_fills.py [--transactions 5000] [--rps 1000] [--concurrency 16]

Runs ``fills_flow.poll_once`` in process against an in-process simnet (quiet scenario, one burst of
JIT fills in one slot, so every transaction is one fill) and an embedded PostgreSQL in a
temporary directory (deleted afterwards). Prints the poll's time, transactions per second and
the store write alone (the same fills written again into a fresh database). The simnet shares the
event loop with the reader, so the figures are a floor for what a remote node allows; on
mainnet the provider's rate limit (``rps``) decides. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from driftsnap import logs
from driftsnap.chain import rpc
from driftsnap.flows import fills as fills_flow
from driftsnap.scoring import fill
from driftsnap.simnet import server
from driftsnap.store import database, migrations
from driftsnap.store import fills as store_fills


async def bench(transactions: int, rps: int, concurrency: int, tmp: Path) -> None:
    pg = database.start_embedded(tmp / "pg")
    try:
        engine = database.create_engine(pg.url)
        with engine.begin() as conn:
            migrations.apply(conn)
        async with server.serve("quiet", seed=1) as node:
            node.set_faults(signature_burst=transactions)
            await node.advance(1)
            settings = rpc.RpcSettings(node.url, rps=rps, timeout_s=30.0)
            async with rpc.Client(settings) as client:
                started = time.perf_counter()
                report = await fills_flow.poll_once(
                    client, engine, fills_flow.PollSettings(concurrency=concurrency)
                )
                seconds = time.perf_counter() - started
        print(
            f"poll: {report.transactions} transactions, {report.new_fills} fills, "
            f"{report.pages} pages in {seconds:.2f} s "
            f"({report.transactions / seconds:.0f} tx/s, rps limit {rps})"
        )
        with engine.connect() as conn:
            rows = [
                fill.Fill(*r)
                for r in conn.execute(
                    sa.text(
                        "SELECT f.market_type, f.market_index, f.fill_record_id, f.signature,"
                        " f.event_index, f.slot, extract(epoch FROM f.block_time)::bigint,"
                        " m.pubkey, ma.pubkey, t.pubkey, ta.pubkey, f.base_filled,"
                        " f.quote_filled, f.maker_fee, f.action_explanation"
                        " FROM fills f JOIN accounts m ON m.account_id = f.maker_id"
                        " JOIN accounts ma ON ma.account_id = f.maker_authority_id"
                        " JOIN accounts t ON t.account_id = f.taker_id"
                        " JOIN accounts ta ON ta.account_id = f.taker_authority_id"
                    )
                )
            ]
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE fills"))
        started = time.perf_counter()
        with engine.begin() as conn:
            store_fills.write(conn, rows, watermark=None)
        write_ms = (time.perf_counter() - started) * 1000
        print(f"store write alone: {len(rows)} fills in {write_ms:.0f} ms")
        engine.dispose()
    finally:
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=5_000)
    parser.add_argument("--rps", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.transactions, args.rps, args.concurrency, Path(tmp)))


if __name__ == "__main__":
    main()
