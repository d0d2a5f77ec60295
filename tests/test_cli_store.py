"""The database commands as a user runs them: migrate, db url / db stop, scores."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from driftsnap import calendar
from driftsnap.scoring import payouts
from driftsnap.store import database, makers, migrations, snapshots
from tests import pg

SCRIPT = Path(sys.executable).parent / "driftsnap"
WEEK = calendar.Week.containing(pg.MONDAY)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_LOG_LEVEL": "warning", **env},
        timeout=120,
        check=False,
    )


def _url_env(url: sa.URL) -> dict[str, str]:
    return {"DRIFTSNAP_DATABASE_URL": url.render_as_string(hide_password=False)}


def test_migrate_applies_once_and_then_reports_up_to_date(pg_empty_url: sa.URL) -> None:
    """`driftsnap migrate` applies every migration in order, and a second run applies nothing."""
    files = migrations.discover()
    first = run("migrate", env=_url_env(pg_empty_url))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        *(f"applied {m.version:04d} {m.name}" for m in files),
        f"schema at version {len(files)}: ok",
    ]
    second = run("migrate", env=_url_env(pg_empty_url))
    assert second.stdout.splitlines() == [f"schema at version {len(files)}: ok"]


def test_scores_refuses_a_database_that_is_behind(pg_empty_url: sa.URL) -> None:
    """`driftsnap scores` on an unmigrated database says to run migrate, exit 2-class error."""
    out = run("scores", env=_url_env(pg_empty_url))
    assert out.returncode != 0
    assert "run driftsnap migrate" in out.stderr
    assert "Traceback" not in out.stderr


def test_scores_prints_the_stored_week_in_every_format(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """scores --week shows each maker's share and whether it takes part; under the shipped
    program only the registered makers share, their JSON rewards summing exactly to each pool."""
    simulated = pg.simulated_books(3)
    registered = sorted({o.authority for b in simulated[0] for o in b.orders})[:3]
    with pg_engine.begin() as conn:
        for i, books_ in enumerate(simulated):
            snapshots.write_tick(
                conn,
                pg.ok_tick(pg.MONDAY + timedelta(minutes=i), i),
                pg.scored(books_),
                methods=pg.METHODS,
            )
        for authority in registered:
            makers.add_participant(conn, authority, name="", from_week=None)
    env = _url_env(pg_url)
    out = run(
        "scores", "--week", str(WEEK), "--method", "drift-2023-08", "--format", "json", env=env
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["week"] == str(WEEK)
    by_market: dict[str, list[dict[str, object]]] = {}
    for row in doc["scores"]:
        by_market.setdefault(str(row["market"]), []).append(row)
    assert set(by_market) == {"SOL-PERP", "BTC-PERP", "ETH-PERP"}
    for market, rows in by_market.items():
        paid = sum(round(float(str(r["projected_reward_usdc"])) * 1e6) for r in rows)
        assert paid == payouts.MICRO_USDC * 500, market  # the shipped program: 500 USDC each
        assert abs(sum(float(str(r["share"])) for r in rows) - 1) < 1e-12
        for r in rows:
            assert r["participant"] == (r["authority"] in registered)
            if not r["participant"]:
                assert (r["share"], r["projected_reward_usdc"]) == (0, "0.000000")
        assert any(not r["participant"] and float(str(r["score"])) > 0 for r in rows)
    table = run("scores", "--week", str(WEEK), "--market", "SOL-PERP", env=env)
    assert table.returncode == 0, table.stderr
    assert f"Scores, week {WEEK}" in table.stdout
    assert "BTC-PERP" not in table.stdout
    rows = list(
        csv.DictReader(
            io.StringIO(run("scores", "--week", str(WEEK), "--format", "csv", env=env).stdout)
        )
    )
    assert {r["method"] for r in rows} == {m.name for m in pg.METHODS}
    empty = run("scores", "--week", str(WEEK.next()), env=env)
    assert empty.stdout.strip() == f"no scores stored for week {WEEK.next()}"
    typo = run("scores", "--week", str(WEEK), "--market", "FOO-PERP", env=env)
    assert typo.returncode == 2  # not "no scores stored": a market that does not exist
    assert typo.stderr.strip().splitlines() == [
        "driftsnap: error: --market 'FOO-PERP': no such market (stored: BTC-PERP, ETH-PERP, "
        "SOL-PERP)"
    ]


def test_db_url_starts_the_embedded_server_for_psql_and_db_stop_ends_it(tmp_path: Path) -> None:
    """Without a URL, db url prints a working URL of an embedded server; db stop stops it."""
    env = {"DRIFTSNAP_DATA_DIR": str(tmp_path)}
    out = run("db", "url", env=env)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    assert url.startswith("postgresql://")
    assert f"data in {tmp_path}" in out.stderr
    engine = database.create_engine(database.parse(url))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select current_database()")).scalar_one() == "driftsnap"
    finally:
        engine.dispose()
    stopped = run("db", "stop", env=env)
    assert stopped.stdout.strip() == f"embedded PostgreSQL in {tmp_path}: stopped"
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


def test_db_url_never_prints_the_password() -> None:
    """A configured URL's password is masked in db url's output and in its connection error."""
    secret = "Sentinel-Pa55word-9c1f"  # noqa: S105 (a sentinel, not a credential)
    env = {"DRIFTSNAP_DATABASE_URL": f"postgresql://user:{secret}@127.0.0.1:1/nodb"}
    out = run("db", "url", env=env)
    assert out.returncode != 0
    assert secret not in out.stdout + out.stderr
    assert "driftsnap: error:" in out.stderr


def test_scores_checks_its_arguments_before_starting_a_database(tmp_path: Path) -> None:
    """A bad --week is one line and exit 2 at once: no embedded server is started for it."""
    env = {"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_DATA_DIR": str(tmp_path)}
    out = run("scores", "--week", "2026-47", env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == "driftsnap: error: week must look like 2026-W47, got '2026-47'"
    assert not (tmp_path / "pg").exists()
    assert list(tmp_path.iterdir()) == []  # nothing created in the data directory
