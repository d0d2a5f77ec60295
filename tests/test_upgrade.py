"""A database written and closed by an earlier driftsnap, upgraded by this one, still verifies.

The earlier code is the real one: its tree is taken from this repository's history (``git
archive``) and run in its own process against a fresh database, where it migrates, writes a
whole week (tests/test_close.py's ``build_week`` of that version) and closes it. This version
then applies the migrations since and verifies the week: the same result digest, byte for byte,
and the same report figures drawn from the week's detail (two-sided uptime, score series).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from driftsnap.flows import close as close_flow
from driftsnap.scoring import methods
from driftsnap.store import migrations, series
from tests import test_close as tc

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
# The last commits before migrations 0007 (per-maker rows) and 0008 (cell arrays, whole books).
LAYOUTS = {
    "0006": "dccf42ed41d4e3b79f5e91bff503bb6e4d60481f",
    "0007": "94b4cdc83adb9d4e8cf05fd4f699812a8548c5e3",
}

_BUILD = """
import json, pathlib, sys
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from driftsnap.store import migrations, series
from tests import test_close as tc

engine = sa.create_engine(sys.argv[1], poolclass=NullPool)
with engine.begin() as conn:
    migrations.apply(conn)
built = tc.build_week(engine, pathlib.Path(sys.argv[2]))
outcome = tc.close(engine, built)
with engine.connect() as conn:
    mid = series.method_id(conn, tc.METHOD.params_hash)
    both = series.two_sided(conn, tc.WEEK, mid, by_user=False)
    buckets = series.authority_buckets(conn, tc.WEEK, mid, width_s=3600, by_user=False)
print(json.dumps({
    "version": migrations.discover()[-1].version,
    "digest": outcome.close.digest,
    "two_sided": sorted([r.market, r.authority, r.snapshots] for r in both),
    "buckets": sorted([r.market, r.authority, r.bucket, r.value, r.quoted] for r in buckets),
}))
"""


def _tree(commit: str, into: Path) -> Path:
    """The package, tests and migrations of ``commit``, extracted under ``into``."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("needs git and this repository's history")
    found = subprocess.run(  # noqa: S603 (git, fixed arguments)
        [git, "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode:
        pytest.skip(f"commit {commit} is not in this clone's history")
    archive = into / "tree.tar"
    subprocess.run(  # noqa: S603 (git, fixed arguments)
        [git, "-C", str(REPO), "archive", "-o", str(archive), commit,
         "driftsnap", "tests", "migrations"],
        check=True,
    )  # fmt: skip
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


@pytest.fixture
def empty_engine(pg_empty_url: sa.URL) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_empty_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_week_closed_by_an_earlier_layout_verifies_after_the_upgrade(
    layout: str, empty_engine: sa.Engine, tmp_path: Path
) -> None:
    """Migrations since ``layout`` keep the closed week's digest, and its report figures."""
    tree = _tree(LAYOUTS[layout], tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tree), "DRIFTSNAP_ALLOW_ROOT": "true"}
    url = empty_engine.url.render_as_string(hide_password=False)
    run = subprocess.run(  # noqa: S603 (this interpreter, this module's script)
        [sys.executable, "-c", _BUILD, url, str(tmp_path / "old")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    before = json.loads(run.stdout.strip().splitlines()[-1])
    assert before["version"] == int(layout)
    with empty_engine.begin() as conn:
        applied = migrations.apply(conn)
    assert [m.version for m in applied] == list(
        range(int(layout) + 1, migrations.discover()[-1].version + 1)
    )
    verified = close_flow.verify_week(empty_engine, tc.WEEK)
    assert verified.ok, verified.difference
    assert verified.digest == before["digest"]
    with empty_engine.connect() as conn:
        mid = series.method_id(conn, methods.DRIFT_2023_08.params_hash)
        assert mid is not None
        both = series.two_sided(conn, tc.WEEK, mid, by_user=False)
        buckets = series.authority_buckets(conn, tc.WEEK, mid, width_s=3600, by_user=False)
    assert sorted([r.market, r.authority, r.snapshots] for r in both) == before["two_sided"]
    assert (
        sorted([r.market, r.authority, r.bucket, r.value, r.quoted] for r in buckets)
        == before["buckets"]
    )
    assert before["two_sided"]
