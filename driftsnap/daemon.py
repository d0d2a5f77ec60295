"""The snapshot daemon: the loop around the tick flow, standby, the fills job, health.

``driftsnap run`` is :func:`main`: signals set the stop Event, and :func:`run` does the rest::

    open the database (patiently: it may be restarting), check its schema, start the clock
    writer?  no -> standby: ask for the writer lock every LOCK_POLL_S until it comes free
    loop:    ticker.step()             one interval (flows/tick.py): sample, score, write
             too many failures in a row -> exit 1 for the supervisor
    beside:  the fills job             a confirmed poll every fills_poll while the writer
             /metrics /livez /readyz   on --metrics-port

``--once`` goes the same way for one tick: it takes the writer lock without waiting, and exits
after the first interval it samples (0 if an ok snapshot was written). Only one daemon writes per
database; a second waits as standby and takes over when the lock comes free. A snapshot in flight
is abandoned at a stop; a commit in flight is shielded and finishes.

Between ticks it says when the next one is (``next_tick``, ``in_s``): at info on a console (a
TTY, or ``--log-format console``), at debug in JSON, where one line a second would be noise.
Once started, everything the process holds so far (modules, settings, the engine) is frozen out of
the cyclic GC (:func:`gc.freeze`): the collections between ticks then walk only what came later.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from driftsnap import config, logs, metrics, parts, tasks
from driftsnap.chain import accounts, snapshot
from driftsnap.chain.errors import ChainError, MarketNotFoundError
from driftsnap.errors import ConfigError
from driftsnap.flows import fills, tick
from driftsnap.store import database, migrations, snapshots
from driftsnap.store.errors import ConnectError, LockError, StoreError
from driftsnap.store.locks import Writer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    from driftsnap.chain.clock import Clock

log = logs.get(__name__)

LOCK_POLL_S: Final = 1.0  # how often a standby asks for the writer lock
PROBE_TIMEOUT_S: Final = 3.0  # /readyz gives up on the database after this long
READY_AFTER_CADENCES: Final = 3.0  # /readyz: the last ok tick is at most this many cadences old
STARTUP_ATTEMPTS: Final = 5  # schema checks at start while the database is unavailable
STARTUP_RETRY_S: Final = 2.0
UNSCHEDULED_RETRY_S: Final = 5.0  # at most: a week that cannot be opened is retried this soon
# JSON-RPC methods the reader calls: the only values of the metrics' `method` label.
RPC_METHODS: Final = frozenset(
    {"getProgramAccounts", "getMultipleAccounts", "getBlockTime", "getSlot", "getAccountInfo"}
)


class Worker:
    """One running daemon: its database, clock, writer lock, ticker and fills job."""

    def __init__(
        self,
        settings: config.Settings,
        program: config.Program,
        *,
        db: database.Database,
        clock: Clock,
        stop: asyncio.Event,
        registry: metrics.Metrics,
    ) -> None:
        """A daemon on ``db``, keeping ``clock``'s time until ``stop`` is set."""
        self.settings = settings
        self.program = program
        self.db = db
        self.clock = clock
        self.stop = stop
        self.registry = registry
        self.writer = Writer(db.engine)
        # The wait before each tick at info where a person reads the log (see the docstring).
        self.progress = console(settings)

    # ------------------------------------------------------------ the loop

    async def loop(
        self, *, once: bool, on_tick: Callable[[tick.TickReport], None] | None = None
    ) -> int:
        """Tick until stopped (0), or until too many ticks failed in a row (1); with ``once``,
        the first interval sampled decides (0 if an ok snapshot was written)."""
        hooks: dict[str, list[Callable[..., Awaitable[Any]]]] = {
            "request": [self._on_request],
            "response": [self._on_response],
        }
        settings = self.settings
        async with parts.rpc_client(settings, event_hooks=hooks) as client:
            ticker = tick.Ticker(
                parts.tick_settings(settings, self.program),
                self.program,
                engine=self.db.engine,
                client=client,
                clock=self.clock,
                seeds=parts.seed_files(settings),
                writer=self.writer,
                stop=self.stop,
                registry=self.registry,
                on_tick=on_tick,
            )
            try:
                while not self.stop.is_set():
                    if not self.writer.held and not await self._hold_writer(wait=not once):
                        break
                    step = await ticker.step(announce=once or self.progress)
                    if once and step.kind in ("sampled", "unscheduled"):
                        return 0 if step.ok else 1
                    if step.kind == "unscheduled":
                        retry = min(settings.cadence.total_seconds(), UNSCHEDULED_RETRY_S)
                        await tasks.wait_for_event(self.stop, retry)
                    if ticker.failures > settings.max_consecutive_failures:
                        log.error(
                            "daemon_giving_up",
                            failures=ticker.failures,
                            threshold=settings.max_consecutive_failures,
                            reason=ticker.last_failure,
                        )
                        return 1
                if once:
                    log.info("tick_abandoned", reason="stopping")
                return 0
            finally:
                await tasks.shielded(self.writer.release, name="writer-release")
                self.registry.writer.set(0)

    async def _hold_writer(self, *, wait: bool) -> bool:
        """Hold the writer lock; as standby, wait until it comes free. False if stopped first."""
        standby = False
        while not self.stop.is_set():
            try:
                got = await tasks.shielded(self.writer.try_take, name="writer-lock")
            except StoreError as exc:
                if not wait:
                    raise
                log.warning("writer_lock_unavailable", reason=str(exc))
                got = False
            if got:
                self.registry.writer.set(1)
                log.info("writer_active", standby_before=standby)
                return True
            if not wait:
                raise LockError(
                    "another driftsnap writes to this database (it holds the writer lock)"
                )
            if not standby:
                standby = True
                log.info("writer_standby", reason="another daemon holds the writer lock")
            await tasks.wait_for_event(self.stop, LOCK_POLL_S)
        return False

    # ------------------------------------------------------------ maker fills

    async def fills_loop(self) -> None:
        """The fills job every ``fills_poll`` while this daemon is the writer: a task of its
        own, so a backlog of fills never delays a snapshot."""
        every_s = self.settings.fills_poll.total_seconds()
        async with parts.rpc_client(self.settings) as client:
            poller = fills.Poller(
                client, self.db.engine, parts.poll_settings(self.settings), self.registry
            )
            while not self.stop.is_set():
                if self.writer.held:
                    await poller.poll(self.clock.now())
                await tasks.wait_for_event(self.stop, every_s)

    # ------------------------------------------------------------ health and metrics

    async def readiness(self) -> metrics.Readiness:
        """Ready: the database answers and holds a recent ok tick (whichever daemon wrote it)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                now, last_ok = await asyncio.to_thread(self._last_ok)
        except (TimeoutError, StoreError):
            return metrics.readiness(last_ok=None, cadence_s=1, ready_after=1, database_ok=False)
        return metrics.readiness(
            last_ok=last_ok,
            cadence_s=self.settings.cadence.total_seconds(),
            ready_after=READY_AFTER_CADENCES,
            database_ok=True,
            now=now,
        )

    def _last_ok(self) -> tuple[float, float | None]:
        with database.connect(self.db.engine) as conn:
            return snapshots.last_ok(conn)

    async def _on_request(self, request: httpx.Request) -> None:
        request.extensions["driftsnap_started"] = time.perf_counter()

    async def _on_response(self, response: httpx.Response) -> None:
        request = response.request
        started = request.extensions.get("driftsnap_started")
        try:
            method = json.loads(request.content).get("method")
        except (ValueError, AttributeError):
            method = None
        label = method if method in RPC_METHODS else "other"
        if isinstance(started, float):
            self.registry.rpc_seconds.labels(label).observe(time.perf_counter() - started)
        if response.status_code != 200:
            self.registry.rpc_errors.labels(f"http_{response.status_code}").inc()


# ---------------------------------------------------------------------------- starting


def console(settings: config.Settings) -> bool:
    """Whether the log is rendered for a person: logs.configure's choice of renderer."""
    fmt = settings.log_format
    return sys.stderr.isatty() if fmt == "auto" else fmt == "console"


def _subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


def new_metrics() -> metrics.Metrics:
    """The daemon's metrics, every error kind a tick can count and every skip reason at 0."""
    kinds = {tick.kind_of(c) for c in _subclasses(ChainError)}
    kinds |= {f"http_{status}" for status in (429, 500, 502, 503, 504)}
    return metrics.Metrics(
        rpc_error_kinds=sorted(kinds), skip_reasons=[r.value for r in accounts.Reason]
    )


async def _start_metrics(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen before the loop starts: a port in use fails the start, not a running daemon."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}); "
            "set --metrics-port (0 turns the endpoint off)"
        ) from None
    log.info("metrics_listening", url=f"http://{host}:{port}/metrics")
    return runner


async def _serve_metrics(runner: web.AppRunner, done: asyncio.Event) -> None:
    try:
        await done.wait()
    finally:
        await runner.cleanup()


def _checked(settings: config.Settings) -> database.Database:
    """The daemon's database with its schema checked; a server that fails meanwhile (it
    restarts as we start) is a one-line ConnectError, never a driver traceback."""
    db = parts.open_database(settings, daemon=True)
    try:
        with database.connect(db.engine) as conn:
            migrations.check(conn)
    except ConnectError as exc:
        db.close()
        raise ConnectError(f"cannot check the database schema at start: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db


async def _open_patiently(settings: config.Settings, stop: asyncio.Event) -> database.Database:
    """The database, its schema checked; retried for a few seconds while the server is
    unavailable (restarting as the daemon starts), as the loop rides out an outage. A schema
    that is behind fails at once; a server still down after the retries is a one-line error."""
    for attempt in itertools.count(1):
        try:
            return await asyncio.to_thread(_checked, settings)
        except ConnectError as exc:
            if attempt == STARTUP_ATTEMPTS or stop.is_set():
                raise
            log.warning("database_unavailable_at_start", reason=str(exc), attempt=attempt)
        await tasks.wait_for_event(stop, STARTUP_RETRY_S)
    raise AssertionError("itertools.count() ended")  # pragma: no cover (it never does)


async def _check_markets(settings: config.Settings) -> None:
    """Refuse to start (exit 2, naming the markets the chain has) on a ``--market`` the chain
    does not have; every tick would fail until the supervisor gave up. A node that does not
    answer now is an outage the loop rides out: it does not stop the start."""
    wanted = parts.markets(settings)
    if not wanted:
        return
    try:
        async with parts.rpc_client(settings) as client:
            await snapshot.configured_markets(client, parts.snapshot_settings(settings), wanted)
    except MarketNotFoundError:
        raise
    except ChainError as exc:
        log.warning("markets_unchecked_at_start", reason=str(exc)[:300])


async def run(
    settings: config.Settings,
    *,
    once: bool,
    stop: asyncio.Event,
    clock: Clock | None = None,
    on_tick: Callable[[tick.TickReport], None] | None = None,
    registry: metrics.Metrics | None = None,
) -> int:
    """Run the daemon until ``stop`` is set (or for one tick): 0 on a clean stop, 1 after too
    many failures in a row (or a failed ``once``). Startup problems raise DriftsnapError."""
    endpoint = parts.rpc_settings(settings).endpoint  # no URL: RUN_HINT before anything starts
    program = config.load_program(settings.program_file)
    async with contextlib.AsyncExitStack() as owned:
        time_of: Clock
        if clock is None:
            time_of = await owned.enter_async_context(parts.daemon_clock(settings))
        else:
            time_of = clock
        db = await _open_patiently(settings, stop)  # a schema that is behind: refuse to start
        owned.push_async_callback(asyncio.to_thread, db.close)
        await _check_markets(settings)
        log.info("clock_starting", clock=type(time_of).__name__, rpc=endpoint)
        if await time_of.start(stop):
            registry = registry or new_metrics()
            worker = Worker(settings, program, db=db, clock=time_of, stop=stop, registry=registry)
            log.info(
                "daemon_started",
                cadence_s=settings.cadence.total_seconds(),
                methods=[m.name for m in settings.method_presets()],
                database=database.display(db.url),
                rpc=endpoint,
                clock=type(time_of).__name__,
                now=time_of.now().isoformat(),
                once=once,
            )
            # What start-up built lives as long as the process: out of the collector's sight.
            gc.collect()
            gc.freeze()
            try:
                code = await _supervise(worker, once=once, on_tick=on_tick)
            finally:
                gc.unfreeze()
        else:
            code = 0
    log.info("daemon_stopped", exit_code=code)
    return code


async def _supervise(
    worker: Worker, *, once: bool, on_tick: Callable[[tick.TickReport], None] | None
) -> int:
    """The tick loop, the fills job and the metrics endpoint as one task group; the loop's
    status. The other two end with the loop, whichever way it ends."""
    settings = worker.settings
    done = asyncio.Event()
    runner = None
    if settings.metrics_port:
        app = metrics.application(worker.registry, worker.readiness)
        runner = await _start_metrics(app, settings.metrics_host, settings.metrics_port)

    async def fills_job() -> None:
        stopper = asyncio.create_task(done.wait(), name="fills-stop-watch")
        job = asyncio.create_task(worker.fills_loop(), name="fills-poller")
        try:
            await asyncio.wait({stopper, job}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            job.cancel()
            results = await asyncio.gather(stopper, job, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def tick_loop() -> int:
        try:
            return await worker.loop(once=once, on_tick=on_tick)
        finally:
            done.set()

    try:
        async with asyncio.TaskGroup() as group:
            if runner is not None:
                group.create_task(_serve_metrics(runner, done), name="metrics-server")
            loop_task = group.create_task(tick_loop(), name="tick-loop")
            if settings.fills and not once:
                group.create_task(fills_job(), name="fills-loop")
    except BaseExceptionGroup as group_error:
        # The task group wraps a lone failure (a ConfigError of the metrics port, say): unwrap
        # it so the CLI turns it into its one line.
        if len(group_error.exceptions) == 1:
            raise group_error.exceptions[0] from None
        raise
    return loop_task.result()


def refuse_root(settings: config.Settings, *, euid: int) -> None:
    """A read-only scorer needs no privilege: refuse uid 0 unless DRIFTSNAP_ALLOW_ROOT says so."""
    if euid == 0 and not settings.allow_root:
        raise ConfigError(
            "refusing to run the daemon as root: run it as an ordinary user (the container "
            "image uses uid 10001), or set DRIFTSNAP_ALLOW_ROOT=true if you mean it"
        )


def main(settings: config.Settings, *, once: bool) -> int:
    """``driftsnap run``: the daemon in its own event loop; SIGTERM and SIGINT set its stop."""
    parts.rpc_settings(settings)  # no node: the hint comes first, there is nothing to refuse yet
    refuse_root(settings, euid=os.geteuid())

    async def supervised() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopping, stop, sig)
        try:
            return await run(settings, once=once, stop=stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(supervised())


def _stopping(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("daemon_stopping", signal=sig.name)
    stop.set()
