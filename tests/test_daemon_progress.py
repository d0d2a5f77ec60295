"""Between ticks the daemon says when the next one is: on a TTY at info, in JSON at debug only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from driftsnap.simnet import server
from tests.test_daemon_process import SCRIPT, env_for

if TYPE_CHECKING:
    from pathlib import Path

    import sqlalchemy as sa

pytestmark = pytest.mark.asyncio

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_until(fd: int, done: re.Pattern[str], timeout_s: float) -> str:
    """What arrives on ``fd`` (ANSI colours removed) until ``done`` matches, EOF or timeout."""
    text, end = "", time.monotonic() + timeout_s
    while not done.search(text) and (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the pty's other end closed
            break
        if not chunk:
            break
        text += ANSI.sub("", chunk.decode(errors="replace"))
    return text


def start(env: dict[str, str], stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 -- our own console script, fixed arguments
        [str(SCRIPT), "run", "--cadence", "5s"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(15)


async def test_on_a_tty_the_wait_for_the_next_tick_is_logged_at_info(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """On a TTY (console log, level info) each wait prints `next_tick` with the seconds to go."""
    async with server.serve("default", seed=31, tick_s=0.05) as sim:
        env = env_for(pg_url, sim.url, tmp_path, DRIFTSNAP_LOG_FORMAT="auto")
        parent, child = os.openpty()
        proc = start(env, child)
        os.close(child)
        try:
            pattern = re.compile(r"tick_written.*\n.*next_tick[^\n]*\n", re.S)
            text = await asyncio.to_thread(read_until, parent, pattern, 60)
        finally:
            code = await asyncio.to_thread(stop, proc)
            os.close(parent)
    assert code == 0, text
    waits = re.findall(r"\[info\s*\] next_tick\s+at=\S+ in_s=([\d.]+) interval=\d+", text)
    assert len(waits) >= 2, text  # before the first tick and after it
    assert all(0 <= float(s) <= 10 for s in waits)  # at most two 5 s cadences away


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_in_json_the_wait_is_a_debug_line(pg_url: sa.URL, tmp_path: Path, level: str) -> None:
    """Off a TTY (JSON) the wait is logged at debug: absent at info, a `next_tick` line with
    `in_s` and the instant at debug."""
    async with server.serve("default", seed=32, tick_s=0.05) as sim:
        env = env_for(pg_url, sim.url, tmp_path, DRIFTSNAP_LOG_LEVEL=level)
        read, write = os.pipe()
        proc = start(env, write)
        os.close(write)
        try:
            pattern = re.compile(r'"event": "tick_written".*\n', re.S)
            text = await asyncio.to_thread(read_until, read, pattern, 60)
        finally:
            code = await asyncio.to_thread(stop, proc)
            os.close(read)
    assert code == 0, text
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    assert any(doc.get("event") == "tick_written" for doc in lines), text
    waits = [doc for doc in lines if doc.get("event") == "next_tick"]
    if level == "info":
        assert waits == []
    else:
        assert waits, text
        assert {doc["level"] for doc in waits} == {"debug"}
        assert all(0 <= doc["in_s"] <= 10 and doc["at"] for doc in waits)
