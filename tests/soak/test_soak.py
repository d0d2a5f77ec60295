"""The short reliability campaign, in every test run: a day and a half of chain in a minute."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.soak import campaign

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_the_daemon_survives_faults_kills_restarts_and_a_twin(tmp_path: Path) -> None:
    """Under every simnet fault, SIGKILLs, PostgreSQL restarts and a second daemon, every tick
    has a header, no snapshot is partial, the fills are the chain's, the week closes to the
    truth's digest, memory stays flat and no secret reaches a log."""
    figures = await campaign.run(campaign.Plan(), tmp_path)
    report = "\n".join(figures.lines())
    assert figures.problems == [], report
    assert figures.kills >= 1, report
    assert figures.pg_restarts >= 1, report
    assert figures.twins >= 1, report
    assert figures.ok > 0, report
    assert figures.fills_equal, report
    assert figures.close_digest == figures.truth_digest, report
    assert figures.verified, report
