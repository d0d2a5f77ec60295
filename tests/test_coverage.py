"""Coverage of markets the configuration does not sample: not missed in the views nor the report.

The shipped program names SUI-PERP and ARB-PERP with a score pool of 0; the daemon samples the
paid markets only, so nothing ever reads those two. ``live_coverage``, ``weekly_coverage`` and the
week report must not count their ticks as missed (migration 0010), nor print empty score tables.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftsnap import calendar, cli
from driftsnap.flows import close as close_flow
from driftsnap.simnet import server
from driftsnap.store import makers, queries, schema, weeks
from driftsnap.store.seeds import Seeds
from tests.test_close import PROGRAM, build_week
from tests.test_daemon import SteppedClock, finish, run_daemon, settings_for
from tests.test_report import AFTER, PAST, _check_pngs, cli_env  # noqa: F401 (a fixture)

if TYPE_CHECKING:
    from pathlib import Path

UNPAID = frozenset(m for m, pool in PROGRAM.score_pools(PAST).items() if pool == 0)
PAID = frozenset(m for m, pool in PROGRAM.score_pools(PAST).items() if pool > 0)


def test_the_shipped_program_names_markets_it_does_not_pay() -> None:
    """The premise: the program file lists 0-pool markets next to the paid ones."""
    assert {"SUI-PERP", "ARB-PERP"} == UNPAID
    assert {"SOL-PERP", "BTC-PERP", "ETH-PERP"} == PAID


@pytest.mark.asyncio
async def test_live_coverage_lists_the_sampled_markets_as_weekly_coverage_does(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """The daemon on the simulator records the program's 0-pool markets (program_pools) but
    never samples them: live_coverage lists only the markets it samples, as weekly_coverage."""
    async with server.serve("default", seed=11) as sim:
        await sim.advance(5)
        clock, stop = SteppedClock(datetime.now(UTC)), asyncio.Event()
        task = await run_daemon(settings_for(pg_url, sim.url, tmp_path), clock, stop)
        for _ in range(2):
            await clock.tick()
            await sim.advance(3)
        assert await finish(task, stop) == 0
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            week = calendar.Week.containing(clock.now())
            pools = dict(
                conn.execute(
                    sa.select(
                        schema.program_pools.c.market, schema.program_pools.c.pool_micro_usdc
                    ).where(schema.program_pools.c.week_start == week.monday)
                ).all()
            )
            live = conn.execute(sa.select(schema.live_coverage)).all()
            weekly = queries.week_coverage(conn, week)
            live_week = queries.current_week(conn)
    finally:
        engine.dispose()
    assert {m for m, pool in pools.items() if pool == 0} == UNPAID  # the daemon wrote them
    if live_week != week:  # ticks at most two cadences ahead: past the end of this week
        pytest.skip(f"the ticks are in {week}, the database's clock in {live_week}")
    assert {r.market for r in live} == PAID
    assert sorted((r.market, r.ticks, r.ok, r.rejected, r.missed) for r in live) == [
        (c.market, c.ticks, c.ok, c.rejected, c.missed) for c in weekly
    ]
    assert all(c.ok >= 2 for c in weekly)


def test_the_report_lists_unsampled_markets_once_without_red_bars_or_empty_tables(
    pg_engine: sa.Engine,
    tmp_path: Path,
    cli_env: None,  # noqa: F811 (the fixture)
) -> None:
    """A week sampled from the simulator whose program names 0-pool markets: the report's
    coverage and charts hold only the sampled markets, the page names the others once."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    with pg_engine.begin() as conn:
        # What the daemon writes when it opens the week: every pool of the program file.
        weeks.set_pools(conn, PAST, PROGRAM.score_pools(PAST))
        for i, authority in enumerate(sorted({o.authority for o in built.books[0][0].orders})):
            makers.add_participant(conn, authority, name=f"maker {i}", from_week=None)
        stored = {c.market: c for c in queries.week_coverage(conn, PAST)}
    assert set(stored) == PAID
    outcome = close_flow.close_week(
        pg_engine, PROGRAM, now=AFTER, seeds=Seeds(built.seeds_dir), week=PAST
    )
    assert {p["market"] for p in outcome.result["pools"]} >= UNPAID  # the close reports them
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["not_sampled"] == sorted(UNPAID)
    assert {p["pool"] for p in doc["pools"]} == PAID
    assert {c["market"] for c in doc["coverage"]} == PAID
    assert all(c["missed"] == 0 and c["ok"] == c["ticks"] for c in doc["coverage"])
    page = (out / "index.html").read_text()
    for market in UNPAID:
        assert f"<h3>{market}</h3>" not in page
    assert "Not sampled (pool 0): ARB-PERP, SUI-PERP." in page
    _check_pngs(out, doc)
