"""close-week, verify-week, makers and forfeit as a user runs them (the console script)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftsnap import calendar
from tests import books, pg
from tests.test_cli_store import run
from tests.test_close import build_week

if TYPE_CHECKING:
    from pathlib import Path

# Long past on any clock the tests run under: the CLI takes the wall clock's time.
PAST = calendar.Week(2025, 10)


def _env(url: sa.URL, data_dir: Path) -> dict[str, str]:
    return {
        "DRIFTSNAP_DATABASE_URL": url.render_as_string(hide_password=False),
        "DRIFTSNAP_DATA_DIR": str(data_dir),
        "DRIFTSNAP_PROGRAM_FILE": str(pg.EVERYONE_FILE),
    }


def test_close_week_prints_and_stores_once_and_verify_week_checks_it(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """close-week exits 0 with the digest and files; again: the same digest; verify exits 0/1."""
    build_week(pg_engine, tmp_path, week=PAST)
    env = _env(pg_url, tmp_path)
    out = tmp_path / "payouts"
    first = run("close-week", "--week", str(PAST), "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"week {PAST}: closed — method drift-2023-08, 42 books")
    digest = next(
        line.split()[1] for line in first.stdout.splitlines() if line.startswith("digest")
    )
    assert (out / f"payouts-{PAST}.csv").exists()
    doc = json.loads((out / f"payouts-{PAST}.json").read_text())
    assert doc["digest"] == digest
    again = run("close-week", "--week", str(PAST), "--format", "json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["digest"] == digest
    verified = run("verify-week", "--week", str(PAST), env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"week {PAST}: ok")
    assert digest in verified.stdout
    with pg_engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("UPDATE snapshots SET ts = ts + 1 WHERE market_index = 1"))
    tampered = run("verify-week", "--week", str(PAST), env=env)
    assert tampered.returncode == 1
    assert tampered.stdout.startswith(f"week {PAST}: MISMATCH — books_root: stored ")


def test_close_week_refusals_say_what_to_do(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """An unended week, missing data and a reasonless force each exit 1 with one clear line."""
    env = _env(pg_url, tmp_path)
    future = run("close-week", "--week", "2099-W01", env=env)
    assert future.returncode == 1
    assert "has not ended" in future.stderr
    assert "close the last completed week" in future.stderr
    build_week(pg_engine, tmp_path, week=PAST, missed=frozenset({1, 2}), finalized=False)
    refused = run("close-week", "--week", str(PAST), env=env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "not finalized" in refused.stderr
    assert "`driftsnap fills finalize --week" in refused.stderr  # a hint naming a real command
    assert "SOL-PERP: 12 of 14 ticks ok" in refused.stderr
    assert "--force --reason TEXT" in refused.stderr
    reasonless = run("close-week", "--week", str(PAST), "--force", env=env)
    assert reasonless.returncode == 1
    assert "needs --reason" in reasonless.stderr
    forced = run("close-week", "--week", str(PAST), "--force", "--reason", "ops ok", env=env)
    assert forced.returncode == 0, forced.stderr
    assert "forced: ops ok" in forced.stdout
    assert "overridden: the fills of" in forced.stdout


def test_the_coverage_threshold_comes_from_the_environment_and_the_flag_wins(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """DRIFTSNAP_CLOSE_MIN_COVERAGE sets the threshold for every close; --min-coverage overrides
    it for one run; a share outside 0..1 is one line, exit 2, from either."""
    build_week(pg_engine, tmp_path, week=PAST, missed=frozenset({1, 2}))  # 12 of 14 ok: 85.7 %
    env = _env(pg_url, tmp_path)
    strict = run("close-week", "--week", str(PAST), "--dry-run", env=env)
    assert strict.returncode == 0, strict.stderr
    assert "SOL-PERP: 12 of 14 ticks ok (85.7% < 95%" in strict.stdout
    lenient = {**env, "DRIFTSNAP_CLOSE_MIN_COVERAGE": "0.8"}
    allowed = run("close-week", "--week", str(PAST), "--dry-run", env=lenient)
    assert allowed.returncode == 0, allowed.stderr
    assert "12 of 14" not in allowed.stdout
    flag = run("close-week", "--week", str(PAST), "--dry-run", "--min-coverage", "0.9", env=lenient)
    assert "SOL-PERP: 12 of 14 ticks ok (85.7% < 90%" in flag.stdout
    bad_flag = run("close-week", "--week", str(PAST), "--min-coverage", "95", env=lenient)
    assert bad_flag.returncode == 2  # argparse: the usage, then the line that names the problem
    assert bad_flag.stderr.splitlines()[-1].endswith(
        "must be a share from 0 to 1, e.g. 0.95 (got '95')"
    )
    bad_env = {**env, "DRIFTSNAP_CLOSE_MIN_COVERAGE": "1.5"}
    bad = run("close-week", "--week", str(PAST), "--dry-run", env=bad_env)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1, bad.stderr
    assert "DRIFTSNAP_CLOSE_MIN_COVERAGE: input should be less than or equal to 1" in bad.stderr


def test_makers_and_forfeit_commands(pg_url: sa.URL, tmp_path: Path) -> None:
    """Bad pubkeys exit 2; registrations and a month's forfeit are listed back."""
    env = _env(pg_url, tmp_path)
    bad = run("makers", "add", "not-a-key", env=env)
    assert bad.returncode == 2
    assert "not a base58 public key: 'not-a-key'" in bad.stderr
    who = books.key("acme")
    shipped = {k: v for k, v in env.items() if k != "DRIFTSNAP_PROGRAM_FILE"}
    added = run("makers", "add", who, "--name", "Acme", "--from-week", "2026-W48", env=shipped)
    assert added.returncode == 0, added.stderr
    assert added.stderr == ""  # the shipped program pays the registered makers: no note
    again = run("makers", "add", who, "--name", "Acme", "--from-week", "2026-W48", env=env)
    assert again.returncode == 0, again.stderr
    assert 'participants = "all"' in again.stderr  # a program paying every maker says so
    forfeited = run("forfeit", who, "--month", "2026-11", "--reason", "wash trading", env=env)
    assert forfeited.returncode == 0, forfeited.stderr
    listed = run("makers", "list", "--format", "json", env=env)
    doc = json.loads(listed.stdout)
    assert doc["registered"] == [
        {"authority": who, "name": "Acme", "from_week": "2026-W48", "until_week": None}
    ]
    assert [f["week"] for f in doc["forfeits"]] == [f"2026-W{n}" for n in range(45, 50)]
    bad_forfeit = run("forfeit", "xyz", "--week", "2026-W47", "--reason", "r", env=env)
    assert bad_forfeit.returncode == 2


def test_a_forfeit_of_a_closed_week_is_refused(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """A forfeit cannot reach a week that is already closed and paid."""
    build_week(pg_engine, tmp_path, week=PAST)
    env = _env(pg_url, tmp_path)
    assert run("close-week", "--week", str(PAST), env=env).returncode == 0
    late = run("forfeit", books.key("acme"), "--week", str(PAST), "--reason", "late", env=env)
    assert late.returncode == 1
    assert "already closed" in late.stderr


def test_close_commands_document_themselves() -> None:
    """Each new command's --help has a description and examples."""
    for command in ("close-week", "verify-week", "makers", "forfeit"):
        shown = run(command, "--help", env={})
        assert shown.returncode == 0
        assert "examples:" in shown.stdout, command
