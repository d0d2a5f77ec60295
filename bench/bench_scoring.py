"""Scoring speed: one book of 5,000 orders from 50 makers, every method.

    .venv/bin/python bench/bench_scoring.py [--orders 5000] [--makers 50] [--repeat 200]

Prints the median and p95 wall time per book, split into building the columnar view and the
scoring itself, and the ratio to the 10 ms target of issue 2. A benchmark, not a test: figures
depend on the machine; the target is "well under 10 ms" on the project's 2-core machines.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time

from solders.pubkey import Pubkey

from driftsnap import protocol
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import methods, scorer

TARGET_MS = 10.0


def synthetic_book(n_orders: int, n_makers: int, seed: int = 1) -> book_mod.Book:
    """A book around $150 with orders spread over 0-150 bps, sizes $100-$50k, both sides."""
    rng = random.Random(seed)
    oracle = 150 * protocol.PRICE_PRECISION
    makers = [str(Pubkey(hashlib.sha256(f"m{i}".encode()).digest())) for i in range(n_makers)]
    orders = []
    for i in range(n_orders):
        side = book_mod.Side.BID if i % 2 else book_mod.Side.ASK
        offset = int(oracle * rng.uniform(0.0, 0.015))
        price = oracle - offset if side is book_mod.Side.BID else oracle + offset
        maker = makers[rng.randrange(n_makers)]
        size = rng.randint(1, 330) * 10**9 // 1000 * 1000
        orders.append(book_mod.Order(maker, maker, side, price, max(size, 1), i))
    return book_mod.Book("SOL-PERP", 0, 1, 1_700_000_000, oracle, tuple(orders))


def measure(fn: object, repeat: int) -> list[float]:
    assert callable(fn)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--makers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    book = synthetic_book(args.orders, args.makers)
    print(f"book: {args.orders} orders, {args.makers} makers; {args.repeat} runs each")
    columns = measure(lambda: book.columns("authority", include_vamm=False), args.repeat)
    print(f"{'columnar view':24s} median {statistics.median(columns):6.2f} ms")
    for method in methods.PRESETS.values():
        scorer.score(book, method)  # warm caches
        times = measure(lambda m=method: scorer.score(book, m), args.repeat)
        med = statistics.median(times)
        p95 = statistics.quantiles(times, n=20)[-1]
        print(
            f"{method.name:24s} median {med:6.2f} ms  p95 {p95:6.2f} ms  "
            f"= {med / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms target"
        )


if __name__ == "__main__":
    main()
