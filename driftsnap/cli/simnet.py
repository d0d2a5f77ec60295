"""``simnet``: the local Solana JSON-RPC simulator of a Drift market (its flags live with it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftsnap.cli import args
from driftsnap.simnet import command

if TYPE_CHECKING:
    import argparse

    from driftsnap import config


def add(sub: Any) -> None:
    """Declare ``simnet``."""
    p = args.command(
        sub,
        "simnet",
        summary="serve a simulated Drift market over Solana JSON-RPC on localhost",
        description=(
            "A local Solana JSON-RPC node (HTTP and websocket on one port) serving byte-exact\n"
            "Drift v2 accounts of a simulated market that moves: oracles walk, makers re-quote,\n"
            "takers fill. For trying driftsnap, tests, benchmarks and rehearsing a deployment\n"
            "without an RPC bill. Deterministic from --seed. Read-only: it never signs.\n\n"
            "Ground truth for checking a reader: GET /_simnet/book?slot=S&market=I returns the\n"
            "exact eligible book at slot S in the score-book format; GET /_simnet/fills?from=&to=\n"
            "the fills. Faults can also be set at run time with POST /_simnet/faults."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap simnet                          # default scenario on 127.0.0.1:8899\n"
            "  driftsnap simnet --scenario quiet --fast --port 0\n"
            "  driftsnap simnet --fault-chaos 0.05       # 5% of requests fail like a real node"
        ),
    )
    command.add_arguments(p)
    p.set_defaults(handler=simnet)


def simnet(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap simnet``: serve until interrupted."""
    return command.run(ns)
