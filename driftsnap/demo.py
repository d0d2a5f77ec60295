"""``driftsnap demo``: the whole job on one machine, with nothing to configure.

It starts the simulator (a Drift market served over Solana JSON-RPC, slots advancing in real
time) and an embedded PostgreSQL whose data lives in ``<data dir>/demo`` (``DRIFTSNAP_DATA_DIR``,
default the user data directory), migrates a fresh database, runs the daemon against the simulator
at a short cadence and shows each market's makers with their score, share and projected reward,
refreshed after every tick: a rich Live table on a terminal, a plain table per tick otherwise.
The shipped program pays registered makers only, so the demo registers the simulator's makers
in its database (``driftsnap makers add``'s table) before the daemon starts.

The demo's database is emptied at every start: the simulator starts again from slot 0, and a
database holding last run's later slots would reject every snapshot as going backwards. A
configured ``DRIFTSNAP_DATABASE_URL`` is never used: a demo must not write simulated scores into
a real database.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from sqlalchemy.pool import NullPool

from driftsnap import calendar, config, daemon, logs
from driftsnap.scoring import payouts
from driftsnap.simnet import scenarios, server
from driftsnap.store import database, makers, migrations, queries, roles

if TYPE_CHECKING:
    from pathlib import Path

    from driftsnap.flows import tick

log = logs.get(__name__)

SCENARIOS: Final = tuple(scenarios.SCENARIOS)
SLOT_S: Final = 0.4  # the simulator's slot time, as on mainnet


def data_dir(settings: config.Settings) -> Path:
    """Where the demo's embedded PostgreSQL (and its sampling seeds) live."""
    return (settings.data_dir or database.default_data_dir()).expanduser().resolve() / "demo"


def _fresh_database(directory: Path) -> database.EmbeddedServer:
    """The demo's embedded server, with an empty, migrated ``driftsnap`` database."""
    server_ = database.start_embedded(directory)
    admin = sa.create_engine(
        server_.url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(database.DATABASE)
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
    finally:
        admin.dispose()
    engine = database.create_engine(server_.url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            migrations.apply(conn)
            roles.grant(conn, roles.Names())  # the daemon writes as the writer, as `run` does
    finally:
        engine.dispose()
    return server_


def _register(url: sa.URL, authorities: list[str]) -> None:
    """Register ``authorities`` as participants of every week."""
    engine = database.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for i, authority in enumerate(authorities, start=1):
                makers.add_participant(conn, authority, name=f"simnet maker {i}", from_week=None)
    finally:
        engine.dispose()


def _scores_table(
    engine: sa.Engine, program: config.Program, report: tick.TickReport, n: int
) -> Table | Group:
    w = calendar.Week.containing(report.at)
    with engine.connect() as conn:
        rows = queries.live_scores(conn, pools=program.score_pools(w), method=program.method)
        coverage = {c.market: c for c in queries.live_coverage(conn)}
    title = (
        f"driftsnap demo: tick {n} ({report.status}"
        + (f", slot {report.slot}" if report.slot is not None else "")
        + (f": {report.reason}" if report.reason else "")
        + f"), week {w}, method {program.method}"
    )
    tables: list[Table] = []
    for market in sorted({r.market for r in rows}):
        cov = coverage.get(market)
        table = Table(
            title=f"{market}" + (f": {cov.ok} ok / {cov.ticks} ticks" if cov is not None else ""),
            title_justify="left",
        )
        for name in ("maker", "snapshots", "score", "share", "projected reward (USDC)"):
            table.add_column(name, justify="left" if name == "maker" else "right")
        for r in (r for r in rows if r.market == market):
            reward = r.projected_reward_micro_usdc or 0
            table.add_row(
                r.maker,
                str(r.quoted_snapshots),
                f"{r.score:,.2f}",
                f"{r.share:.2%}",
                f"{reward / payouts.MICRO_USDC:,.2f}",
            )
        tables.append(table)
    if not tables:
        return Table(title=title + ": no scores yet")
    header = Table.grid()
    header.add_row(title)
    return Group(header, *tables)


async def run(
    settings: config.Settings, *, ticks: int | None, scenario: str, stop: asyncio.Event
) -> int:
    """The demo until ``stop`` is set or ``ticks`` ticks are done; the daemon's exit status."""
    program = config.load_program(settings.program_file)
    directory = data_dir(settings)
    console = Console()
    live = console.is_terminal
    if not live:
        console = Console(width=160)  # a pipe or a file: whole maker keys, no 80-column wrap
    print(f"driftsnap demo: embedded PostgreSQL in {directory} (emptied at each start)")
    pg = await asyncio.to_thread(_fresh_database, directory)
    as_role = {r: pg.url.set(username=n) for r, n in roles.Names().items()}
    engine = database.create_engine(as_role["reader"], poolclass=NullPool)
    try:
        # The chain's time starts now, as `driftsnap simnet`'s does: the daemon (on the wall
        # clock) then finds the fills in the week it scores, and its lag metric near zero.
        async with server.serve(
            scenario, tick_s=SLOT_S, slot_ms=round(SLOT_S * 1000), genesis_ts=int(time.time())
        ) as sim:
            # The shipped program pays registered makers only: the demo registers the
            # simulator's, as an operator would with `driftsnap makers add`.
            await asyncio.to_thread(_register, pg.url, sim.sim.maker_authorities())
            print(
                f"driftsnap demo: simulator ({scenario}) at {sim.url}; a tick every "
                f"{settings.cadence.total_seconds():g} s at a random instant; Ctrl-C stops"
            )
            demo_settings = settings.model_copy(
                update={
                    "rpc_url": SecretStr(sim.url),
                    "database_url": SecretStr(pg.url.render_as_string(hide_password=False)),
                    **{
                        f"{r}_database_url": SecretStr(u.render_as_string(hide_password=False))
                        for r, u in as_role.items()
                    },
                    "data_dir": directory,
                    "metrics_port": 0,
                    "markets": (),
                }
            )
            reports: asyncio.Queue[tick.TickReport] = asyncio.Queue()

            async def show() -> None:
                n = 0
                with Live(console=console, auto_refresh=False) if live else _NoLive() as screen:
                    while ticks is None or n < ticks:
                        report = await reports.get()
                        n += 1
                        view = await asyncio.to_thread(_scores_table, engine, program, report, n)
                        if isinstance(screen, Live):
                            screen.update(view, refresh=True)
                        else:
                            console.print(view)
                stop.set()

            async with asyncio.TaskGroup() as tasks:
                shown = tasks.create_task(show(), name="demo-table")
                code = await daemon.run(
                    demo_settings, once=False, stop=stop, on_tick=reports.put_nowait
                )
                shown.cancel()  # the daemon stopped (Ctrl-C, or it gave up): no more ticks
    finally:
        engine.dispose()
        await asyncio.to_thread(pg.stop)
    print(
        f"driftsnap demo: stopped. psql into its data: "
        f'psql "$(DRIFTSNAP_DATA_DIR={directory} driftsnap db url)"'
    )
    return code


class _NoLive:
    """Stands in for rich's Live off a terminal: each tick's table is printed in turn."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def main(settings: config.Settings, *, ticks: int | None, scenario: str) -> int:
    """``driftsnap demo``: SIGINT and SIGTERM stop it cleanly."""

    # INFO lines on stderr would tear the live table; warnings and errors still come through.
    if settings.log_level == "info":
        logs.configure("warning", settings.log_format)

    async def supervised() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await run(settings, ticks=ticks, scenario=scenario, stop=stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    code = asyncio.run(supervised())
    sys.stdout.flush()
    return code
