"""``python -m tests.soak`` (or ``scripts/soak``): the reliability campaign at any length.

    scripts/soak                              the CI run: 1.5 simulated days, about a minute
    scripts/soak --simulated-days 8           a whole program week and more, about 5 minutes
    scripts/soak --simulated-days 8 --seed 3 --keep   another draw; keep the logs and database

Prints the figures and exits 0 when every check passed, 1 with the problems otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from driftsnap import logs
from tests.soak import campaign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = campaign.Plan()
    parser.add_argument(
        "--simulated-days",
        type=float,
        default=defaults.simulated_days,
        help="chain time the run covers; it ends 12 h after Monday 00:00 of 2026-W48 and closes "
        "2026-W47, so 7.5 or more samples that whole week (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="the simnet's and the campaign's draws"
    )
    parser.add_argument(
        "--cadence-min",
        type=float,
        default=defaults.cadence.total_seconds() / 60,
        help="the daemon's cadence in simulated minutes (default: %(default)s)",
    )
    parser.add_argument(
        "--event-every-s",
        type=float,
        default=defaults.event_every_s,
        help="wall seconds between chaos events, on average",
    )
    parser.add_argument(
        "--wall-budget-s", type=float, default=None, help="give up after this long (default: "
        "ten times the chain's own run time)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if not 1 <= args.simulated_days <= 60:
        parser.error("--simulated-days must be between 1 and 60")
    plan = campaign.Plan(
        seed=args.seed,
        simulated_days=args.simulated_days,
        cadence=timedelta(minutes=args.cadence_min),
        event_every_s=args.event_every_s,
    )
    budget = args.wall_budget_s or 10 * plan.slots * plan.tick_s + 300
    plan = dataclasses.replace(plan, wall_budget_s=budget)
    logs.configure("warning")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="driftsnap-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        figures = asyncio.run(campaign.run(plan, workdir))
    finally:
        if args.keep or args.workdir is not None:
            print(f"soak: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
