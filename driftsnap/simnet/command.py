"""``driftsnap simnet``: run the simulated node until SIGINT or SIGTERM.

The CLI wires two functions: :func:`add_arguments` fills the subcommand's parser and :func:`run`
serves, printing one line that says where, and returns the exit code. Signals only set the stop
event; shutting down (closing sockets, cancelling the clock) happens in the normal flow.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import time

import pydantic

from driftsnap import errors
from driftsnap.simnet import faults as faults_mod
from driftsnap.simnet import scenarios

# The block time of the first slot with --fixed-time (model.GENESIS_TS, June 2025; the model is
# not imported here: it pulls in the layout, and every `driftsnap` command builds this parser).
# Without it or --genesis-ts the chain's time starts at the wall clock, so that a daemon on the
# wall clock finds its fills and its scores in the same week and its lag metric near zero.
DEFAULT_GENESIS_TS = 1_750_772_100

FAST_TICK_S = 0.02


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simnet`` flags to ``parser``."""
    parser.add_argument(
        "--scenario", choices=sorted(scenarios.SCENARIOS), default="default", help="market set-up"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8899, help="port for HTTP and websocket")
    parser.add_argument("--seed", type=int, default=0, help="the simulation is a function of it")
    parser.add_argument(
        "--slot-ms",
        type=_positive,
        default=400,
        help="simulated milliseconds per slot: block times advance by this much each slot "
        "(and so does the wall clock, unless --fast)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"advance a slot every {FAST_TICK_S * 1000:.0f} ms of wall time, whatever --slot-ms "
        "says: with --slot-ms 60000 a simulated week passes in about 3.5 minutes (run the "
        "daemon with DRIFTSNAP_CLOCK=chain to follow it)",
    )
    genesis = parser.add_mutually_exclusive_group()
    genesis.add_argument(
        "--genesis-ts",
        type=_positive,
        default=None,
        metavar="UNIX_S",
        help="block time of the first slot, in unix seconds (default: now; e.g. just before a "
        "Monday 00:00 UTC to simulate a whole program week)",
    )
    genesis.add_argument(
        "--fixed-time",
        action="store_true",
        help=f"start the chain's time at {DEFAULT_GENESIS_TS} (2025-06-24 13:35 UTC) whatever "
        "the date: the same block times on every run",
    )
    parser.add_argument(
        "--history-slots",
        type=_positive,
        default=None,
        metavar="N",
        help="slots of ground truth kept for /_simnet/book (default: the scenario's)",
    )
    parser.add_argument(
        "--max-transactions",
        type=_positive,
        default=None,
        metavar="N",
        help="transactions the node keeps for getSignaturesForAddress/getTransaction and "
        "/_simnet/fills (default: the scenario's)",
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help="never advance on its own; step with POST /_simnet/step",
    )
    faults = parser.add_argument_group("faults (also settable with POST /_simnet/faults)")
    faults.add_argument(
        "--fault-chaos",
        type=float,
        default=0.0,
        metavar="P",
        help="chance per request of a 429, -32005, -32016 or backwards slot",
    )
    faults.add_argument("--fault-delay-ms", type=int, default=0, help="delay every response")
    faults.add_argument("--fault-retry-after-s", type=int, default=1, help="Retry-After of 429s")
    faults.add_argument(
        "--fault-tx-null-slots",
        type=int,
        default=0,
        metavar="N",
        help="getTransaction is null until a transaction is N slots old",
    )
    faults.add_argument(
        "--fault-malformed",
        type=int,
        default=0,
        metavar="N",
        help="serve N user accounts malformed (truncated, wrong discriminator, wrong owner)",
    )
    faults.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any fault at start, value in JSON: --fault http_429=5 --fault ws_silent=true",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def scenario_from(args: argparse.Namespace) -> scenarios.Scenario:
    """The chosen scenario with the history and transaction-log caps the flags override."""
    chosen = scenarios.SCENARIOS[args.scenario]
    changes = {
        name: value
        for name, value in (
            ("history_slots", args.history_slots),
            ("max_transactions", args.max_transactions),
        )
        if value is not None
    }
    return dataclasses.replace(chosen, **changes)


def genesis_ts(args: argparse.Namespace) -> int:
    """The block time of the first slot: ``--genesis-ts``, the fixed time, or now."""
    if args.genesis_ts is not None:
        return int(args.genesis_ts)
    return DEFAULT_GENESIS_TS if args.fixed_time else int(time.time())


def faults_from(args: argparse.Namespace, sim_users: list[str]) -> faults_mod.Faults:
    """The faults the flags ask for; malformed accounts are the first N users, kinds in turn."""
    kinds: tuple[faults_mod.Malformation, ...] = ("truncated", "wrong_discriminator", "wrong_owner")
    malformed = {u: kinds[i % 3] for i, u in enumerate(sim_users[: args.fault_malformed])}
    settings: dict[str, object] = {
        "chaos": args.fault_chaos,
        "delay_ms": args.fault_delay_ms,
        "retry_after_s": args.fault_retry_after_s,
        "transaction_null_slots": args.fault_tx_null_slots,
        "malformed": malformed,
    }
    for item in args.fault:
        name, sep, text = item.partition("=")
        if not sep:
            raise errors.ConfigError(f"--fault {item!r}: expected NAME=VALUE")
        try:
            settings[name] = json.loads(text)
        except ValueError:
            settings[name] = text  # a bare word: let validation say whether a string fits
    try:
        return faults_mod.Faults().updated(settings)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(f"invalid simnet faults: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop.

    Bad fault flags and an address it cannot listen on raise :class:`~driftsnap.errors.ConfigError`.
    """
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the server pulls in anchorpy and the IDL (~0.5 s), and every
    # `driftsnap` command builds this subcommand's parser.
    from driftsnap.simnet import layout, server  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.manual_clock:
        tick_s: float | None = None
    else:
        tick_s = FAST_TICK_S if args.fast else args.slot_ms / 1000
    try:
        async with server.serve(
            scenario_from(args),
            seed=args.seed,
            host=args.host,
            port=args.port,
            slot_ms=args.slot_ms,
            tick_s=tick_s,
            genesis_ts=genesis_ts(args),
        ) as node:
            users = [str(a) for a in node.sim.users]
            node.set_faults(**faults_from(args, users).model_dump())
            print(  # the one line a user (or a test) waits for
                json.dumps(
                    {
                        "event": "simnet_listening",
                        "rpc": node.url,
                        "ws": node.ws_url,
                        "scenario": args.scenario,
                        "seed": args.seed,
                        "slot": node.sim.slot,
                        "block_time": node.sim.ts,
                        "slot_ms": args.slot_ms,
                        "wall_ms_per_slot": None if tick_s is None else round(tick_s * 1000),
                        "program": str(layout.DRIFT_PROGRAM_ID),
                    }
                ),
                flush=True,
            )
            await stop.wait()
    except OSError as exc:  # the port is taken or the address is not ours
        raise errors.ConfigError(f"simnet cannot listen on {args.host}:{args.port}: {exc}") from exc
    print(json.dumps({"event": "simnet_stopped"}), file=sys.stderr, flush=True)
    return 0
