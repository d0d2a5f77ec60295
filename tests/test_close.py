"""The week close on a real PostgreSQL: payouts, refusals, force, immutability, verify."""

from __future__ import annotations

import csv
import dataclasses
import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftsnap import calendar, config, protocol, sampling
from driftsnap.cli import output
from driftsnap.flows import close as close_flow
from driftsnap.flows import errors as flow_errors
from driftsnap.scoring import book as book_mod
from driftsnap.scoring import fill, methods, payouts, scorer, settlement
from driftsnap.store import closes, makers, snapshots, weeks
from driftsnap.store import fills as store_fills
from driftsnap.store.errors import StoreError
from driftsnap.store.seeds import Seeds
from tests import books, pg

if TYPE_CHECKING:
    from pathlib import Path

WEEK = calendar.Week.containing(pg.MONDAY)  # 2026-W47
CADENCE = timedelta(hours=12)  # 14 ticks: a whole week's schedule, written in a second
TICKS = 14
AFTER = WEEK.end + timedelta(minutes=30)  # when the CronJob runs
SEED = bytes(range(32))
PROGRAM = pg.EVERYONE
METHOD = methods.DRIFT_2023_08


@dataclass(frozen=True)
class Built:
    """What a test week holds: its seed directory, its ok books and its fills."""

    seeds_dir: Path
    books: tuple[tuple[book_mod.Book, ...], ...]
    fills: tuple[fill.Fill, ...]


def _fills(makers: list[str], week: calendar.Week) -> list[fill.Fill]:
    """Fills of three maker authorities over the week, one of them also self-matched."""
    out = []
    for i in range(12):
        authority = makers[i % 3]
        taker_authority = authority if i == 5 else books.key(f"taker-{i}")
        at = week.start + timedelta(hours=10 * i + 1)
        out.append(
            fill.Fill(
                market_type="perp", market_index=i % 3, fill_record_id=100 + i // 3,
                signature=books.key(f"sig-{i}"), event_index=0, slot=1_000 + i,
                block_time=int(at.timestamp()), maker=books.key(f"{authority}/fill"),
                maker_authority=authority, taker=books.key(f"taker-{i}/0"),
                taker_authority=taker_authority, base_filled=10**9,
                quote_filled=(i + 1) * 1_000_000_000, maker_fee=-1, action_explanation="none",
                commitment="finalized",
            )
        )  # fmt: skip
    return out


def build_week(
    engine: sa.Engine,
    tmp_path: Path,
    *,
    missed: frozenset[int] = frozenset(),
    finalized: bool = True,
    save_seed: bool = True,
    week: calendar.Week = WEEK,
) -> Built:
    """A whole week at a 12 h cadence: ticks at the seed's schedule, fills, finality."""
    seeds_dir = tmp_path / "seeds"
    commitment = sampling.commitment(SEED)
    if save_seed:
        seeds_dir.mkdir(parents=True, exist_ok=True)
        Seeds(seeds_dir).path(week, commitment).write_text(SEED.hex() + "\n")
    schedule = sampling.Schedule(week, CADENCE, SEED)
    simulated = pg.simulated_books(TICKS)
    ok_books = []
    with engine.begin() as conn:
        weeks.commit_seed(conn, week, cadence=CADENCE, seed_sha256=commitment)
        for i in range(TICKS):
            at = schedule.sample_at(i)
            if i in missed:
                tick = snapshots.Tick(at=at, interval=i, status="missed", reason="rpc down")
                snapshots.write_tick(conn, tick)
                continue
            tick = snapshots.Tick(
                at=at, interval=i, status="ok", taken_at=at + timedelta(milliseconds=20),
                gpa_slot=1, market_slot=1, duration_ms=20,
            )  # fmt: skip
            snapshots.write_tick(conn, tick, pg.scored(simulated[i]), methods=pg.METHODS)
            ok_books.append(simulated[i])
        makers = sorted({o.authority for o in simulated[0][0].orders})
        fills = _fills(makers, week)
        store_fills.write(conn, fills, watermark=None)
        if finalized:
            mark = store_fills.Watermark(
                protocol.DRIFT_PROGRAM_ID, "finalized", "sig", 10**9, 10**9, week.end
            )
            store_fills.record_finality(conn, week, finalized_through=mark)
    return Built(seeds_dir, tuple(ok_books), tuple(fills))


def recompute(built: Built, terms: settlement.WeekTerms) -> settlement.WeekResult:
    """The week from the books as the simulator made them and the fills as written."""
    acc = settlement.WeekAccumulator(METHOD.aggregation)
    for tick in built.books:
        for b in tick:
            acc.add(scorer.score(b, METHOD))
    volume: dict[str, int] = {}
    for f in built.fills:
        if f.maker_authority is not None and f.maker_authority != f.taker_authority:
            volume[f.maker_authority] = volume.get(f.maker_authority, 0) + f.quote_filled
    return settlement.settle(terms, acc, volume, method=METHOD.name, params_hash=METHOD.params_hash)


def close(
    engine: sa.Engine, built: Built, program: config.Program = PROGRAM, **kw: object
) -> close_flow.Outcome:
    return close_flow.close_week(
        engine,
        program,
        now=AFTER,
        seeds=Seeds(built.seeds_dir),
        week=WEEK,
        **kw,  # type: ignore[arg-type]
    )


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


# ---------------------------------------------------------------- the result


def test_close_pays_what_an_independent_recomputation_pays(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """A closed week's payouts equal the spec recomputed from the simulator's books and fills."""
    built = build_week(pg_engine, tmp_path)
    outcome = close(pg_engine, built)
    expected = recompute(built, PROGRAM.terms(WEEK))
    assert outcome.stored
    assert not outcome.already
    assert outcome.source == "accumulators"
    assert outcome.result["payouts"] == expected.payouts()
    assert outcome.result["payouts"]
    for pool in outcome.result["pools"]:
        if pool["pool"]:
            assert pool["paid"] == pool["pool"], pool["market"]
    assert sum(outcome.result["payouts"].values()) == 3 * 500_000_000 + 1_500_000_000
    volume = next(p for p in outcome.result["pools"] if p["market"] == settlement.VOLUME)
    self_matched = built.fills[5]
    assert {m["maker"]: m["weight"] for m in volume["makers"]}[self_matched.maker_authority] == sum(
        f.quote_filled
        for f in built.fills
        if f.maker_authority == self_matched.maker_authority and f is not self_matched
    )
    assert outcome.close.books == TICKS * 3
    assert outcome.close.fills == len(built.fills)
    assert outcome.close.seed == SEED.hex()
    with pg_engine.connect() as conn:
        record = weeks.record(conn, WEEK)
        assert record is not None
        assert record.seed == SEED
        rows = closes.payout_rows(conn, WEEK)
    assert sum(r.reward_micro_usdc for r in rows) == sum(expected.payouts().values())


def test_books_and_accumulators_give_the_same_digest(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """Re-scoring the stored order-level books gives the digest the accumulators gave."""
    built = build_week(pg_engine, tmp_path)
    from_books = close(pg_engine, built, dry_run=True, method=METHOD.name)
    closed = close(pg_engine, built)
    assert from_books.source == "books"
    assert closed.source == "accumulators"
    assert from_books.close.digest == closed.close.digest


def test_a_second_close_returns_the_stored_digest(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """Closing a closed week again returns the stored result and writes nothing."""
    built = build_week(pg_engine, tmp_path)
    first = close(pg_engine, built)
    rows = count(pg_engine, "week_close_payouts")
    again = close(pg_engine, built)
    assert again.already
    assert not again.stored
    assert again.close.digest == first.close.digest
    assert again.result == first.result
    assert count(pg_engine, "week_close_payouts") == rows
    with pytest.raises(flow_errors.CloseError, match="closed under drift-2023-08"):
        close(pg_engine, built, method="drift-mm-scoring")


def test_concurrent_closes_store_one_result(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """Two closes started together store one result and both return its digest."""
    built = build_week(pg_engine, tmp_path)
    barrier = threading.Barrier(2)
    outcomes: list[close_flow.Outcome] = []

    def run() -> None:
        barrier.wait()
        outcomes.append(close(pg_engine, built))

    threads = [threading.Thread(target=run, name=f"close-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 2
    assert sorted(o.stored for o in outcomes) == [False, True]
    assert outcomes[0].close.digest == outcomes[1].close.digest
    assert count(pg_engine, "week_closes") == 1


def test_dry_run_under_another_method_stores_nothing(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """--dry-run --method computes from the books under that method and stores nothing."""
    built = build_week(pg_engine, tmp_path)
    outcome = close(pg_engine, built, dry_run=True, method="drift-mm-scoring")
    assert outcome.close.params_hash == methods.DRIFT_MM_SCORING.params_hash
    assert outcome.result["payouts"]
    assert count(pg_engine, "week_closes") == 0
    with pg_engine.connect() as conn:
        record = weeks.record(conn, WEEK)
    assert record is not None
    assert record.seed is None


# ---------------------------------------------------------------- refusals and force


def test_a_week_that_has_not_ended_is_refused_even_forced(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """A running week cannot be closed, forced or not, and the default is the last one."""
    with pytest.raises(flow_errors.WeekNotEndedError, match="has not ended"):
        close_flow.close_week(
            pg_engine, PROGRAM, now=WEEK.end - timedelta(seconds=1), seeds=Seeds(tmp_path),
            week=WEEK, force=True, reason="impatient",
        )  # fmt: skip
    built = build_week(pg_engine, tmp_path)
    outcome = close_flow.close_week(pg_engine, PROGRAM, now=AFTER, seeds=Seeds(built.seeds_dir))
    assert outcome.week == WEEK


def test_low_coverage_is_refused_until_forced_with_a_reason(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """Coverage under 95% refuses with what to do; --force needs a reason, which is stored."""
    built = build_week(pg_engine, tmp_path, missed=frozenset({0, 1, 2}))
    with pytest.raises(flow_errors.CloseRefusedError, match=r"SOL-PERP: 11 of 14 ticks ok") as err:
        close(pg_engine, built)
    assert "--force --reason" in str(err.value)
    dry = close(pg_engine, built, dry_run=True)
    assert any(r.startswith("SOL-PERP: 11 of 14") for r in dry.refusals)
    assert count(pg_engine, "week_closes") == 0
    with pytest.raises(flow_errors.CloseError, match="needs --reason"):
        close(pg_engine, built, force=True)
    outcome = close(pg_engine, built, min_coverage=0.75)
    assert not outcome.close.forced
    assert count(pg_engine, "week_closes") == 1


def test_force_stores_the_reason_and_the_overridden_refusals(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """A forced close keeps its reason and every refusal it overrode."""
    built = build_week(pg_engine, tmp_path, missed=frozenset({3}), finalized=False)
    with pytest.raises(flow_errors.CloseRefusedError) as err:
        close(pg_engine, built)
    assert "not finalized" in str(err.value)
    assert "13 of 14" in str(err.value)
    outcome = close(pg_engine, built, force=True, reason="RPC outage; approved by ops")
    with pg_engine.connect() as conn:
        stored = closes.stored(conn, WEEK)
    assert stored is not None
    assert stored.forced
    assert stored.force_reason == "RPC outage; approved by ops"
    assert any("not finalized" in r for r in stored.overridden)
    assert any("13 of 14" in r for r in stored.overridden)
    assert stored.digest == outcome.close.digest


def test_fill_gaps_and_a_missing_seed_are_refused(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """A gap in fill record ids and a seed nobody can reveal each refuse the close."""
    built = build_week(pg_engine, tmp_path, save_seed=False)
    with pg_engine.begin() as conn:
        gap = dataclasses.replace(built.fills[0], fill_record_id=110, signature=books.key("late"))
        store_fills.write(conn, [gap], watermark=None)
    with pytest.raises(flow_errors.CloseRefusedError) as err:
        close(pg_engine, built)
    message = str(err.value)
    assert "fill record(s) missing" in message
    assert "fills check" in message
    assert "seed of 2026-W47 is not revealed" in message


def test_ticks_off_their_schedule_are_refused(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """A tick taken far from its seed-drawn instant refuses the close (sampling check)."""
    built = build_week(pg_engine, tmp_path)
    late = WEEK.start + timedelta(days=6, hours=23, minutes=59)
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ticks SET taken_at = :late WHERE interval_index = 4"), {"late": late}
        )
    with pytest.raises(flow_errors.CloseRefusedError, match="not taken at their scheduled instant"):
        close(pg_engine, built)


# ---------------------------------------------------------------- participants, pause


def test_forfeits_redistribute_to_the_other_participants(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """A forfeited maker gets nothing and its share goes to the others; each pool still pays."""
    built = build_week(pg_engine, tmp_path)
    baseline = recompute(built, PROGRAM.terms(WEEK)).payouts()
    top = max(baseline, key=lambda a: baseline[a])
    with pg_engine.begin() as conn:
        makers.add_forfeits(conn, top, [WEEK], reason="self-matching")
    outcome = close(pg_engine, built)
    terms = PROGRAM.terms(WEEK)
    expected = recompute(
        built,
        settlement.WeekTerms(
            week=WEEK, score_pools=terms.score_pools, volume_pool=terms.volume_pool,
            participants=settlement.Participants(forfeited=frozenset({top})),
        ),
    ).payouts()  # fmt: skip
    assert top not in outcome.result["payouts"]
    assert outcome.result["payouts"] == expected
    assert sum(expected.values()) == sum(baseline.values())
    assert outcome.result["terms"]["forfeited"] == [top]


def test_registered_participants_come_from_the_file_and_the_database(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """Under participants = registered, the file's and the database's makers share the pools."""
    built = build_week(pg_engine, tmp_path)
    wallets = sorted({o.authority for b in built.books[0] for o in b.orders})
    program = PROGRAM.model_copy(
        update={
            "participants": "registered",
            "participant": (config.Participant(authority=wallets[0]),),
        }
    )
    with pg_engine.begin() as conn:
        makers.add_participant(conn, wallets[1], name="second", from_week=WEEK)
        makers.add_participant(conn, wallets[2], name="gone", from_week=None)
        makers.remove_participant(conn, wallets[2], from_week=WEEK)
    outcome = close(pg_engine, built, program)
    assert outcome.result["terms"]["registered"] == sorted(wallets[:2])
    assert set(outcome.result["payouts"]) <= set(wallets[:2])
    assert sum(outcome.result["payouts"].values()) == 3 * 500_000_000 + 1_500_000_000


def test_a_paused_week_pays_nothing_and_says_why(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """A week the program pauses closes with every pool at 0 and the pause reason."""
    program = PROGRAM.model_copy(
        update={"paused": (config.Pause(week=WEEK, reason="holiday pause"),)}
    )
    # No snapshots at all: a paused week needs no coverage, no seed, no fills.
    outcome = close_flow.close_week(pg_engine, program, now=AFTER, seeds=Seeds(tmp_path), week=WEEK)
    assert outcome.result["paused"] is True
    assert outcome.result["pause_reason"] == "holiday pause"
    assert outcome.result["payouts"] == {}
    assert all(p["pool"] == 0 for p in outcome.result["pools"])


# ---------------------------------------------------------------- immutability


def test_a_closed_weeks_rows_cannot_change(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """The database refuses UPDATE, DELETE and TRUNCATE of a closed week's result and inputs."""
    built = build_week(pg_engine, tmp_path)
    close(pg_engine, built)
    refused = [
        "UPDATE week_closes SET digest = 'x'",
        "DELETE FROM week_closes",
        "TRUNCATE week_closes",
        "UPDATE week_close_payouts SET reward_micro_usdc = reward_micro_usdc + 1",
        "DELETE FROM week_close_payouts",
        "UPDATE snapshots SET oracle_price = oracle_price + 1",
        "DELETE FROM snapshots",
        "DELETE FROM ticks",
        "UPDATE weeks SET cadence = '1 hour'",
        "UPDATE fills SET quote_filled = quote_filled * 2",
        "DELETE FROM fills",
    ]
    for statement in refused:
        with pytest.raises(sa.exc.DBAPIError, match="closed"), pg_engine.begin() as conn:
            conn.execute(sa.text(statement))
    with pytest.raises(sa.exc.DBAPIError, match="cannot gain rows"), pg_engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO week_close_payouts VALUES (:w, 'SOL-PERP', 'x', 'x', 1, true, 1)"),
            {"w": WEEK.monday},
        )
    at = WEEK.start + timedelta(hours=3)
    with pytest.raises(StoreError, match="closed"), pg_engine.begin() as conn:
        snapshots.write_tick(conn, pg.ok_tick(at), pg.scored(built.books[0]), methods=pg.METHODS)
    # Nor a header without a snapshot: a late `missed` tick would change the closed coverage.
    missed = snapshots.Tick(at=at, interval=3, status="missed", reason="late writer")
    with pytest.raises(StoreError, match="closed"), pg_engine.begin() as conn:
        snapshots.write_tick(conn, missed)
    # Finality may still arrive after a forced close: only the commitment may move.
    with pg_engine.begin() as conn:
        conn.execute(sa.text("UPDATE fills SET commitment = 'confirmed'"))
    # Another week is not affected.
    with pg_engine.begin() as conn:
        nxt = WEEK.next().start + timedelta(hours=1)
        assert snapshots.write_tick(
            conn, pg.ok_tick(nxt), pg.scored(built.books[0]), methods=pg.METHODS
        )


# ---------------------------------------------------------------- verify


def test_verify_passes_on_a_closed_week_and_catches_tampering(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """verify-week matches an untouched week and names the first difference after tampering."""
    built = build_week(pg_engine, tmp_path)
    with pytest.raises(flow_errors.NotClosedError, match="not closed"):
        close_flow.verify_week(pg_engine, WEEK)
    close(pg_engine, built)
    report = close_flow.verify_week(pg_engine, WEEK)
    assert report.ok, report.difference
    assert (report.books, report.fills) == (TICKS * 3, len(built.fills))

    def tamper(statement: str) -> None:
        # A superuser can switch the triggers off; verify-week is what catches it then.
        with pg_engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.execute(sa.text(statement))

    tamper("UPDATE week_close_payouts SET reward_micro_usdc = reward_micro_usdc + 1"
           " WHERE reward_micro_usdc > 0 AND pool = 'ETH-PERP'")  # fmt: skip
    report = close_flow.verify_week(pg_engine, WEEK)
    assert report.difference is not None
    assert "week_close_payouts" in report.difference
    tamper("UPDATE week_close_payouts SET reward_micro_usdc = reward_micro_usdc - 1"
           " WHERE reward_micro_usdc > 0 AND pool = 'ETH-PERP'")  # fmt: skip
    assert close_flow.verify_week(pg_engine, WEEK).ok
    tamper(
        "UPDATE snapshots SET oracle_price = oracle_price + 1 WHERE tick_at = "
        "(SELECT min(tick_at) FROM snapshots) AND market_index = 0"
    )
    report = close_flow.verify_week(pg_engine, WEEK)
    assert report.difference is not None
    assert report.difference.startswith("books_root")


def test_verify_reports_a_changed_fill(pg_engine: sa.Engine, tmp_path: Path) -> None:
    """A stored fill changed after the close shows as a fills digest difference."""
    built = build_week(pg_engine, tmp_path)
    close(pg_engine, built)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("UPDATE fills SET quote_filled = 1 WHERE fill_record_id = 101"))
    report = close_flow.verify_week(pg_engine, WEEK)
    assert report.difference is not None
    assert report.difference.startswith("fills_digest")


# ---------------------------------------------------------------- payout files


def test_payout_files_hold_every_payout_in_usdc_and_micro_usdc(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """The CSV and JSON payout files add up to the result, with the digests in the JSON."""
    built = build_week(pg_engine, tmp_path)
    outcome = close(pg_engine, built)
    csv_path, json_path = output.write_payout_files(outcome, tmp_path / "out")
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["authority"]: int(r["total_micro_usdc"]) for r in rows} == outcome.result["payouts"]
    for r in rows:
        parts = [v for k, v in r.items() if k.startswith("score_") or k == "volume_usdc"]
        assert sum(round(float(s) * 1_000_000) for s in parts) == int(r["total_micro_usdc"])
    doc = json.loads(json_path.read_text())
    assert doc["digest"] == outcome.close.digest
    assert doc["books_root"] == outcome.close.books_root
    assert doc["seed"] == SEED.hex()
    assert sum(p["total_micro_usdc"] for p in doc["payouts"]) == 3_000_000_000
    assert all(p["total_usdc"] == payouts.usdc(p["total_micro_usdc"]) for p in doc["payouts"])


def test_makers_and_forfeits_are_stored_per_week(pg_engine: sa.Engine) -> None:
    """Registrations end before the removal week; forfeits are stored per week with a reason."""
    a, b = books.key("maker-a"), books.key("maker-b")
    with pg_engine.begin() as conn:
        makers.add_participant(conn, a, name="A", from_week=WEEK.previous())
        makers.add_participant(conn, b, name="B", from_week=WEEK)
        assert makers.remove_participant(conn, a, from_week=WEEK)
        assert makers.remove_participant(conn, b, from_week=WEEK)
        assert not makers.remove_participant(conn, books.key("nobody"), from_week=WEEK)
        makers.add_forfeits(conn, a, [WEEK, WEEK.next()], reason="wash trading")
        listed = makers.participants(conn)
        forfeits = makers.forfeits(conn)
    assert [(p.authority, p.from_week, p.until_week) for p in listed] == [
        (a, WEEK.previous(), WEEK.previous())
    ]
    assert listed[0].active(WEEK.previous())
    assert not listed[0].active(WEEK)
    assert [(f.week, f.reason) for f in forfeits] == [
        (WEEK, "wash trading"),
        (WEEK.next(), "wash trading"),
    ]
