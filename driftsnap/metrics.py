"""The daemon's health and metrics endpoint: ``/metrics``, ``/livez``, ``/readyz``.

Metrics live in a registry of their own (not prometheus-client's global one), so two daemons in
one process (tests) never share counters. No label carries a maker, an authority or a URL: labels
are bounded sets (status, error kind, RPC method, market), so cardinality stays small and no
secret can leak through a label value.

``/livez`` answers 200 while the process serves requests. ``/readyz`` answers 200 only when the
database is reachable and the last ok tick is recent (``ready_after`` cadences at most), else 503
with the reason, so a container probe (``driftsnap healthcheck``) can tell a daemon that is up
from one that is scoring.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from driftsnap import __version__

TICK_STATUSES = ("ok", "rejected", "missed", "late", "failed")
FILL_ANOMALIES = ("rejected", "unreadable", "conflict", "paging")
TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)


class Metrics:
    """Every metric the daemon exports."""

    def __init__(
        self, *, rpc_error_kinds: Iterable[str] = (), skip_reasons: Iterable[str] = ()
    ) -> None:
        """Every metric, those with known label values at 0: the ticks' statuses, the fills'
        outcomes and anomalies, and the ``rpc_error_kinds`` and ``skip_reasons`` given (the
        chain's, which this module does not import)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ticks = Counter("driftsnap_ticks", "Cadence ticks by outcome.", ["status"], registry=r)
        self.tick_seconds = Histogram(
            "driftsnap_tick_duration_seconds",
            "Time from the sample instant to the committed write.",
            buckets=TICK_BUCKETS,
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "driftsnap_rpc_request_duration_seconds",
            "RPC request latency by method.",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.rpc_errors = Counter(
            "driftsnap_rpc_errors", "RPC errors by kind.", ["kind"], registry=r
        )
        self.last_ok_slot = Gauge(
            "driftsnap_last_ok_slot", "Slot of the last snapshot written.", registry=r
        )
        self.last_ok_time = Gauge(
            "driftsnap_last_ok_timestamp_seconds",
            "Unix time of the last snapshot written.",
            registry=r,
        )
        self.snapshot_lag = Gauge(
            "driftsnap_snapshot_lag_seconds",
            "Age of the chain data (block time) when the last snapshot was written.",
            registry=r,
        )
        self.orders = Gauge(
            "driftsnap_book_orders", "Eligible orders in the last book.", ["market"], registry=r
        )
        self.skipped_accounts = Counter(
            "driftsnap_skipped_accounts", "Accounts skipped as malformed.", ["reason"], registry=r
        )
        self.fills_ingested = Counter(
            "driftsnap_fills_ingested", "New fill records stored.", registry=r
        )
        self.fills_polls = Counter(
            "driftsnap_fills_polls", "Fill polls by outcome.", ["status"], registry=r
        )
        self.fills_null_pending = Gauge(
            "driftsnap_fills_null_pending",
            "Listed transactions the node returned null for, holding the watermark back.",
            registry=r,
        )
        self.fills_truncated = Counter(
            "driftsnap_fills_truncated_transactions",
            "Transactions whose logs were truncated (their fills may be incomplete).",
            registry=r,
        )
        self.fills_watermark_slot = Gauge(
            "driftsnap_fills_watermark_slot", "Slot up to which every fill is stored.", registry=r
        )
        self.fills_anomalies = Counter(
            "driftsnap_fills_anomalies",
            "What the node served that the fills ingest would not believe, by kind: rejected "
            "(logs contradict the message), unreadable (retries spent), conflict (two records "
            "for one fill id), paging (a listing that does not page down).",
            ["kind"],
            registry=r,
        )
        self.fills_retrying = Gauge(
            "driftsnap_fills_retrying",
            "Transactions not served readably, retried, holding the watermark back.",
            registry=r,
        )
        self.writer = Gauge(
            "driftsnap_writer", "1 while this daemon holds the database writer lock.", registry=r
        )
        self.build_info = Gauge(
            "driftsnap_build_info",
            "Always 1: the running driftsnap's version and Python, as labels.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        # A labelled counter has no series until its first increment, so a dashboard shows "No
        # data" where it should show 0: every label value known in advance starts at 0.
        for counter, values in (
            (self.ticks, TICK_STATUSES),
            (self.fills_polls, ("ok", "failed")),
            (self.fills_anomalies, FILL_ANOMALIES),
            (self.rpc_errors, rpc_error_kinds),
            (self.skipped_accounts, skip_reasons),
        ):
            for value in values:
                counter.labels(value)

    def render(self) -> bytes:
        """Every metric in Prometheus's text format, as ``/metrics`` serves it."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a daemon is ready, and the reason ``/readyz`` gives."""

    ready: bool
    reason: str


ReadinessProbe = Callable[[], Awaitable[Readiness]]


def readiness(
    *,
    last_ok: float | None,
    cadence_s: float,
    ready_after: float,
    database_ok: bool,
    now: float | None = None,
) -> Readiness:
    """Whether the daemon is doing its job: database reachable and a recent ok tick."""
    if not database_ok:
        return Readiness(False, "database unreachable")
    if last_ok is None:
        return Readiness(False, "no snapshot written yet")
    age = (time.time() if now is None else now) - last_ok
    if age > ready_after * cadence_s:
        return Readiness(False, f"last snapshot written {age:.0f} s ago")
    return Readiness(True, "ok")


def application(metrics: Metrics, probe: ReadinessProbe) -> web.Application:
    """The aiohttp app serving the three endpoints."""

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        state = await probe()
        return web.json_response(
            {"status": "ready" if state.ready else "not ready", "reason": state.reason},
            status=200 if state.ready else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


def probe(url: str, *, timeout_s: float = 5.0) -> Readiness:
    """GET a daemon's ``/readyz``: what ``driftsnap healthcheck`` asks for a container probe."""
    try:
        response = httpx.get(url, timeout=timeout_s, trust_env=False)
    except httpx.HTTPError as exc:
        return Readiness(False, f"no answer: {type(exc).__name__}")
    try:
        reason = str(response.json().get("reason", ""))
    except (ValueError, AttributeError):
        reason = f"HTTP {response.status_code}, not a driftsnap /readyz answer"
    return Readiness(response.status_code == 200, reason)
