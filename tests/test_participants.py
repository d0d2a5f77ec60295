"""Opt-in by default: the shipped program pays registered makers, and the views apply it.

Under ``participants = "registered"`` the live views (``weekly_scores``, ``weekly_volume``) share
each pool among the week's participants, the program file's and the database's registrations
minus the forfeits, exactly as the week close does (spec 3-5); non-participants' liquidity still
counts in every snapshot score. A close with nobody registered is refused.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from driftsnap import calendar, config
from driftsnap.flows import close as close_flow
from driftsnap.flows import errors as flow_errors
from driftsnap.scoring import settlement
from driftsnap.simnet import server
from driftsnap.store import fills as store_fills
from driftsnap.store import makers, queries, schema, weeks
from driftsnap.store.seeds import Seeds
from tests import test_close, test_daemon

if TYPE_CHECKING:
    from pathlib import Path

WEEK = test_daemon.WEEK  # 2026-W47
MICRO = 1_000_000


def _view(engine: sa.Engine, view: sa.TableClause, week: calendar.Week) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(view).where(view.c.week_start == week.monday)).all())


def _pool_makers(result: dict[str, Any], market: str) -> dict[str, dict[str, Any]]:
    (pool,) = [p for p in result["pools"] if p["market"] == market]
    return {m["maker"]: m for m in pool["makers"]}


def _assert_scores_match_the_close(
    engine: sa.Engine, program: config.Program, week: calendar.Week, result: dict[str, Any]
) -> int:
    """weekly_scores (the program's method) against a close's result; the participants seen."""
    rows = [r for r in _view(engine, schema.weekly_scores, week) if r.method == program.method]
    assert rows
    seen = 0
    for r in rows:
        closed = _pool_makers(result, r.market)[r.maker]
        assert r.participant == closed["participant"], r.maker
        pool = result["terms"]["score_pools"].get(r.market, 0)
        paid = sum(m["weight"] for m in _pool_makers(result, r.market).values() if m["participant"])
        share = Fraction(closed["weight"]) / Fraction(paid) if r.participant and paid else 0
        assert r.share == pytest.approx(float(share), rel=1e-12, abs=1e-15)
        reward = round(r.projected_reward_usdc * MICRO)
        assert abs(reward - closed["reward"]) <= 1, (r.market, r.maker)
        assert r.pool_usdc * MICRO == pool
        seen += r.participant
    # What `driftsnap scores` prints: the close's rewards to the micro-USDC.
    with engine.connect() as conn:
        listed = queries.week_scores(
            conn,
            week,
            pools=program.score_pools(week),
            participants=close_flow.terms(conn, program, week).participants,
            method=program.method,
        )
        from_view = queries.week_scores(
            conn, week, pools=program.score_pools(week), method=program.method
        )
    for s, v in zip(listed, from_view, strict=True):
        closed = _pool_makers(result, s.market)[s.maker]
        assert s.projected_reward_micro_usdc == closed["reward"] == v.projected_reward_micro_usdc
        assert s.participant == closed["participant"] == v.participant
    return seen


@pytest.mark.asyncio
async def test_a_registered_programs_live_views_equal_its_dry_run_close(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """The daemon on the simulator under a registered program: every weekly_scores share,
    participant flag and projected reward is the dry-run close's (rewards within 1 micro-USDC,
    `scores`' exactly), file and database registrations and forfeits included."""
    cadence = timedelta(hours=12)
    async with server.serve("default", seed=5) as sim:
        await sim.advance(5)
        wallets = sim.sim.maker_authorities()
        program_file = tmp_path / "program.toml"
        program_file.write_text(
            'participants = "registered"\n'
            f'[[participant]]\nauthority = "{wallets[0]}"\n'
            f'[[participant]]\nauthority = "{wallets[1]}"\n'
            f'[[forfeit]]\nauthority = "{wallets[1]}"\nweeks = ["{WEEK}"]\nreason = "wash"\n'
        )
        settings = test_daemon.settings_for(
            pg_url, sim.url, tmp_path, cadence=cadence, program_file=program_file
        )
        program = config.load_program(program_file)
        engine = sa.create_engine(pg_url)
        try:
            with engine.begin() as conn:
                makers.add_participant(conn, wallets[2], name="db", from_week=None)
                makers.add_participant(conn, wallets[3], name="db forfeited", from_week=WEEK)
                makers.add_forfeits(conn, wallets[3], [WEEK], reason="self-matching")
                # Registered only from the week after: not a participant of this one.
                makers.add_participant(conn, wallets[4], name="later", from_week=WEEK.next())
            clock, stop = test_daemon.SteppedClock(WEEK.start), asyncio.Event()
            task = await test_daemon.run_daemon(settings, clock, stop)
            for _ in range(timedelta(days=7) // cadence):
                await clock.tick()
                await sim.advance(3)
            assert await test_daemon.finish(task, stop) == 0
            with engine.connect() as conn:
                row = conn.execute(sa.select(schema.program_weeks)).one()
            assert (row.participants, row.registered, row.forfeited) == (
                "registered",
                sorted(wallets[:2]),
                [wallets[1]],
            )
            dry = close_flow.close_week(
                engine,
                program,
                now=WEEK.end + timedelta(minutes=30),
                seeds=Seeds(tmp_path / "seeds"),
                week=WEEK,
                dry_run=True,
            )
            assert dry.result["terms"]["registered"] == sorted(
                [wallets[0], wallets[1], wallets[2], wallets[3]]
            )
            seen = _assert_scores_match_the_close(engine, program, WEEK, dry.result)
            participants = {
                r.authority for r in _view(engine, schema.weekly_scores, WEEK) if r.participant
            }
            assert participants == {wallets[0], wallets[2]}
            assert seen > 0
            # Non-participants still score: their liquidity counts in every snapshot.
            assert any(
                r.score > 0 and not r.participant for r in _view(engine, schema.weekly_scores, WEEK)
            )
        finally:
            engine.dispose()


def test_volume_and_scores_views_apply_the_file_and_the_database(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """weekly_volume shares the volume pool among participants only, each authority's rows
    adding up to its close reward (within a micro-USDC a market); weekly_scores agrees too."""
    built = test_close.build_week(pg_engine, tmp_path)
    week = test_close.WEEK
    volume_makers = sorted({f.maker_authority for f in built.fills if f.maker_authority})
    program = test_close.PROGRAM.model_copy(
        update={
            "participants": "registered",
            "participant": (config.Participant(authority=volume_makers[0]),),
        }
    )
    with pg_engine.begin() as conn:
        makers.add_participant(conn, volume_makers[1], name="", from_week=None)
        makers.add_participant(conn, volume_makers[2], name="", from_week=None)
        makers.add_forfeits(conn, volume_makers[2], [week], reason="wash trading")
        # What the daemon writes when it opens the week.
        weeks.set_pools(conn, week, program.score_pools(week))
        store_fills.set_volume_pool(conn, week, program.volume_pool_for(week))
        weeks.set_participants(conn, week, program.terms(week).participants)
    outcome = test_close.close(pg_engine, built, program, dry_run=True)
    volume = _pool_makers(outcome.result, settlement.VOLUME)
    rows = _view(pg_engine, schema.weekly_volume, week)
    assert {r.authority for r in rows} == set(volume)
    by_authority: dict[str, list[Any]] = {}
    for r in rows:
        by_authority.setdefault(r.authority, []).append(r)
        assert r.participant == volume[r.authority]["participant"]
    assert {a for a, m in volume.items() if m["participant"]} == set(volume_makers[:2])
    for authority, mine in by_authority.items():
        reward = sum(round(r.projected_reward_usdc * MICRO) for r in mine)
        assert 0 <= volume[authority]["reward"] - reward <= len(mine)
        assert sum(r.share for r in mine) == pytest.approx(
            volume[authority]["reward"] / outcome.result["terms"]["volume_pool"], abs=1e-6
        )
    _assert_scores_match_the_close(pg_engine, program, week, outcome.result)


def test_a_program_paying_everyone_and_a_week_without_a_row_share_among_all(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """participants = "all" (and a week no daemon described, as before 0009): every maker not
    forfeited takes part, and the shares of a market add up to 1."""
    built = test_close.build_week(pg_engine, tmp_path)
    week = test_close.WEEK
    rows = _view(pg_engine, schema.weekly_scores, week)
    assert rows
    assert all(r.participant for r in rows)
    everyone = test_close.PROGRAM.model_copy(update={"participants": "all"})
    forfeited = rows[0].authority
    with pg_engine.begin() as conn:
        weeks.set_pools(conn, week, everyone.score_pools(week))
        weeks.set_participants(conn, week, everyone.terms(week).participants)
        makers.add_forfeits(conn, forfeited, [week], reason="wash trading")
    rows = _view(pg_engine, schema.weekly_scores, week)
    assert {r.authority for r in rows if not r.participant} == {forfeited}
    outcome = test_close.close(pg_engine, built, everyone, dry_run=True)
    _assert_scores_match_the_close(pg_engine, everyone, week, outcome.result)
    for market in {r.market for r in rows}:
        mine = [r.share for r in rows if r.market == market and r.method == everyone.method]
        assert sum(mine) == pytest.approx(1.0)


def test_a_registered_close_with_nobody_registered_is_refused(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """The shipped program with no registration: close-week refuses (even forced) with one line
    pointing at `driftsnap makers add`; a dry run lists it; one registration lets it close."""
    built = test_close.build_week(pg_engine, tmp_path)
    program = config.load_program()
    assert program.participants == "registered"
    with pytest.raises(flow_errors.CloseError, match=r"driftsnap makers add AUTHORITY") as caught:
        test_close.close(pg_engine, built, program, force=True, reason="ops")
    assert "\n" not in str(caught.value)
    assert "[[participant]]" in str(caught.value)
    dry = test_close.close(pg_engine, built, program, dry_run=True)
    assert any("driftsnap makers add" in r for r in dry.refusals)
    wallet = sorted({o.authority for o in built.books[0][0].orders})[0]
    with pg_engine.begin() as conn:
        makers.add_participant(conn, wallet, name="", from_week=None)
    outcome = test_close.close(pg_engine, built, program)
    assert outcome.stored
    assert set(outcome.result["payouts"]) == {wallet}
