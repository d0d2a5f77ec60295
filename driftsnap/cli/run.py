"""``run``, ``healthcheck`` and ``demo``: the daemon, its probe, and the whole job locally."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftsnap import daemon, demo, metrics
from driftsnap.cli import args

if TYPE_CHECKING:
    import argparse

    from driftsnap import config


def add(sub: Any) -> None:
    """Declare ``run``, ``healthcheck`` and ``demo``."""
    p = args.command(
        sub,
        "run",
        summary="the snapshot daemon: sample, score and store the books on a cadence",
        description=(
            "Every cadence interval, at an instant drawn from the week's committed seed, read\n"
            "the books from the RPC node, score them with every method and write everything to\n"
            "the database in one transaction. Failed ticks are recorded as missed when service\n"
            "returns; more than DRIFTSNAP_MAX_CONSECUTIVE_FAILURES in a row exit 1. One daemon\n"
            "writes per database; a second waits as standby. SIGTERM/SIGINT stop it (exit 0).\n"
            "The schema must be current (`driftsnap migrate`). Metrics and health on\n"
            "--metrics-port: /metrics, /livez, /readyz."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap run --rpc-url https://api.mainnet-beta.solana.com\n"
            "  driftsnap run --rpc-url $RPC --market SOL-PERP --cadence 30s --metrics-port 9200\n"
            "  driftsnap run --rpc-url $RPC --once        # one tick, at the next committed\n"
            "                                             # sample instant; exit 0 if ok\n"
            "  driftsnap demo                             # no RPC node? the local simulator"
        ),
    )
    args.add_reader(p)
    args.from_setting(
        p.add_argument("--cadence", metavar="DURATION", help="60s, 5m... dividing the week"),
        "cadence",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help=(
            "take one tick, at the next sample instant of the committed schedule (at most two "
            "cadences away, so it verifies at the week close like any other), and exit"
        ),
    )
    args.from_setting(
        p.add_argument(
            "--clock",
            choices=["wall", "chain"],
            help=(
                "where the daemon's time comes from: the wall clock, or the chain's block time "
                "(getSlot, getBlockTime), to follow a simulated chain running fast "
                "(driftsnap simnet --fast)"
            ),
        ),
        "clock",
    )
    args.from_setting(
        p.add_argument(
            "--metrics-port", type=int, metavar="N", help="metrics and health port, 0: off"
        ),
        "metrics_port",
    )
    p.set_defaults(handler=run)

    p = args.command(
        sub,
        "healthcheck",
        summary="ask a running daemon's /readyz: exit 0 if ready, 1 if not (container probes)",
        description=(
            "GET /readyz of a running daemon: ready when its database answers and holds an ok\n"
            "tick from the last few cadences. Exit 0 if ready, 1 otherwise."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap healthcheck\n"
            "  driftsnap healthcheck --url http://127.0.0.1:9200"
        ),
    )
    args.from_setting(
        p.add_argument("--url", metavar="URL", help="the daemon's metrics endpoint"),
        "metrics_host",
        "metrics_port",
        show=metrics_url,
    )
    p.set_defaults(handler=healthcheck)

    p = args.command(
        sub,
        "demo",
        summary="the whole job locally: simulator, embedded PostgreSQL, daemon, live scores",
        description=(
            "Start the local simulator (a Drift market over Solana JSON-RPC) and an embedded\n"
            "PostgreSQL, run the daemon against them at a short cadence and show each market's\n"
            "makers with their score, share and projected reward, updated every tick.\n"
            "The database lives in <data dir>/demo (DRIFTSNAP_DATA_DIR, default the user data\n"
            "directory) and starts empty on every run; DRIFTSNAP_DATABASE_URL is not used.\n"
            "Ctrl-C stops it."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap demo\n"
            "  driftsnap demo --ticks 3 --cadence 2s\n"
            "  driftsnap demo --scenario mainnet-scale --cadence 30s"
        ),
    )
    p.add_argument(
        "--ticks", type=args.positive, metavar="N", help="stop after N ticks (default: never)"
    )
    p.add_argument(
        "--cadence", metavar="DURATION", default="5s", help="60s, 5m... dividing the week"
    )
    p.add_argument(
        "--scenario", choices=sorted(demo.SCENARIOS), default="default", help="the simulated market"
    )
    p.set_defaults(handler=run_demo)


def run(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap run``."""
    return daemon.main(settings, once=ns.once)


def healthcheck(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap healthcheck``: 0 if the daemon is ready, 1 if not."""
    url = str(ns.url or metrics_url(settings)).rstrip("/") + "/readyz"
    state = metrics.probe(url)
    print(f"{url}: {'ready' if state.ready else 'not ready'} ({state.reason})")
    return 0 if state.ready else 1


def metrics_url(settings: config.Settings) -> str:
    """Where a daemon with ``settings`` serves its metrics and health, as seen from this host."""
    # A wildcard listen address is not one to connect to: probe the loopback instead.
    wildcard = settings.metrics_host in ("0.0.0.0", "::")  # noqa: S104
    host = "127.0.0.1" if wildcard else settings.metrics_host
    return f"http://{host}:{settings.metrics_port}"


def run_demo(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap demo``."""
    return demo.main(settings, ticks=ns.ticks, scenario=ns.scenario)
