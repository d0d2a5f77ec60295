"""`bench/run.py --quick` end to end, so the benchmark command cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests import pg

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"
FIXED_ROWS = {
    "pipeline.cpu",
    "pipeline.memory",
    "pipeline.agree",
    "floor.cpu",
    "write.rate",
    "close.60s.time",
    "close.60s.disk",
    "close.10s.time",
    "close.10s.disk",
    "scale.growth",
    "storage.default.60s",
    "tick.cpu",
}


@pytest.mark.slow
def test_quick_run_prints_every_row_and_both_paths_agree(
    pg_cluster: pg.Cluster, tmp_path: Path
) -> None:
    """The quick run prints a row for every figure and driftpy's books equal driftsnap's."""
    figures = tmp_path / "figures.json"
    url = pg_cluster.admin_url.render_as_string(hide_password=False)
    done = subprocess.run(  # noqa: S603 -- this repository's own script
        [sys.executable, str(RUN), "--quick", "--json", str(figures), "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(figures.read_text())
    rows = {row["key"]: row for row in doc["rows"]}
    assert rows.keys() >= FIXED_ROWS
    sizes = [key for key in rows if key.startswith("scale.") and key != "scale.growth"]
    assert len(sizes) == 4
    for row in rows.values():
        assert row["what"] in done.stdout
        assert row["result"] in {"PASS", "FAIL", "—"}
    agree = rows["pipeline.agree"]
    assert agree["ok"] is True
    assert agree["values"]["agree"] == agree["values"]["markets"] > 0
    assert doc["figures"]["response"]["orders"] > 0
    whole_tick = rows["tick.cpu"]["values"]  # real ticks of the daemon, each with its CPU
    assert len(whole_tick["cpu_s"]) == len(whole_tick["write_ms"]) == 3
    assert all(s > 0 for s in whole_tick["cpu_s"])
    assert whole_tick["markets"] == 3
    assert whole_tick["orders"] > 0
    for key in ("date", "commit", "cpu", "cores", "ram", "python", "postgresql"):
        assert doc["machine"][key]
