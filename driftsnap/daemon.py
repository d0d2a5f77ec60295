"""The snapshot daemon and the wiring of settings onto the concrete parts.

Only this module and the CLI import chain, store and scoring together (import-linter contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftsnap.chain import rpc, snapshot
from driftsnap.errors import ConfigError
from driftsnap.scoring import week

if TYPE_CHECKING:
    from datetime import datetime

    from driftsnap import config

RUN_HINT = (
    "no RPC URL: pass --rpc-url URL (or set DRIFTSNAP_RPC_URL) to read a Solana node; "
    "to try driftsnap without one, run `driftsnap demo`, which starts the local simulator"
)


def rpc_settings(settings: config.Settings) -> rpc.RpcSettings:
    """The RPC client's settings; a clear error pointing at --rpc-url and demo without a URL."""
    if settings.rpc_url is None:
        raise ConfigError(RUN_HINT)
    return rpc.RpcSettings(
        url=settings.rpc_url.get_secret_value(),
        timeout_s=settings.rpc_timeout_s,
        max_retries=settings.rpc_max_retries,
        rps=settings.rpc_rps,
        gpa_rps=settings.rpc_gpa_rps,
    )


def snapshot_settings(settings: config.Settings) -> snapshot.SnapshotSettings:
    return snapshot.SnapshotSettings(
        max_slot_gap=settings.max_slot_gap, max_skipped_share=settings.max_skipped_share
    )


def markets(settings: config.Settings, program: config.Program, now: datetime) -> list[str | int]:
    """Configured markets (names, or indexes given as digits); default: those paying a pool now."""
    if settings.markets:
        return [int(m) if m.isdigit() else m for m in settings.markets]
    pools = program.score_pools(week.Week.containing(now))
    return [market for market, pool in pools.items() if pool > 0]
