"""`driftsnap demo` end to end: simulator, embedded PostgreSQL, daemon and the scores table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from driftsnap.simnet import model, scenarios

SCRIPT = Path(sys.executable).parent / "driftsnap"


def test_demo_runs_two_ticks_and_prints_each_markets_makers(tmp_path: Path) -> None:
    """`demo --ticks 2` exits 0 after two tables listing each market's simulated makers, with
    their shares: the demo registers them, as the shipped program pays registered makers only."""
    out = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), "demo", "--ticks", "2", "--cadence", "1s"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_DATA_DIR": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"embedded PostgreSQL in {tmp_path / 'demo'}" in out.stdout
    assert "driftsnap demo: tick 1 (ok, slot " in out.stdout
    assert "driftsnap demo: tick 2 (ok, slot " in out.stdout
    assert "tick 3" not in out.stdout
    # The demo's simulator is the default scenario from seed 0: its makers are known here.
    sim = model.Simulator(scenarios.DEFAULT, seed=0)
    state = sim.state_at(sim.slot)
    assert state is not None
    authorities = {str(user.authority) for user in state.users.values()}
    last_table = out.stdout.split("driftsnap demo: tick 2")[1]
    for market in ("SOL-PERP", "BTC-PERP", "ETH-PERP"):
        section = last_table.split(f"{market}: 2 ok / 2 ticks")[1].split("-PERP:")[0]
        assert any(a in section for a in authorities), market
        # The demo registered the simulator's makers: the shipped program pays them.
        assert re.search(r"\b(?!0\.00%)\d+\.\d\d%", section), market
    assert not (tmp_path / "pgdata").exists()  # only the demo's own directory is used
