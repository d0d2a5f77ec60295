"""``driftsnap simnet`` as the CLI runs it: flags, one line saying where, a clean stop on SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys

import aiohttp
import pytest

from driftsnap import errors
from driftsnap.simnet import command, server
from tests import simnet_helpers as h

ENTRY = (
    "import argparse, sys\n"
    "from driftsnap.simnet import command\n"
    "parser = argparse.ArgumentParser()\n"
    "command.add_arguments(parser)\n"
    "sys.exit(command.run(parser.parse_args(sys.argv[1:])))\n"
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_and_defaults() -> None:
    """The subcommand defaults to the default scenario on port 8899 at 400 ms slots."""
    args = _parse()
    assert (args.scenario, args.port, args.seed, args.slot_ms, args.fast) == (
        "default",
        8899,
        0,
        400,
        False,
    )
    args = _parse("--scenario", "quiet", "--fast", "--fault-chaos", "0.1", "--fault-malformed", "3")
    faults = command.faults_from(args, ["a", "b", "c", "d"])
    assert faults.chaos == 0.1
    assert faults.malformed == {"a": "truncated", "b": "wrong_discriminator", "c": "wrong_owner"}
    with pytest.raises(SystemExit):
        _parse("--scenario", "nope")


def test_generic_fault_flags() -> None:
    """--fault NAME=VALUE sets any fault; unknown names and bad values are a ConfigError."""
    args = _parse("--fault", "http_429=5", "--fault", "ws_silent=true", "--fault", "malformed={}")
    faults = command.faults_from(args, [])
    assert (faults.http_429, faults.ws_silent) == (5, True)
    for bad in ("nope=1", "http_429=-1", "chaos=high", "http_429"):
        with pytest.raises(errors.ConfigError):
            command.faults_from(_parse("--fault", bad), [])


@pytest.mark.asyncio
async def test_run_serves_until_sigint() -> None:
    """run() prints where it listens, advances slots in --fast mode and exits 0 on SIGINT."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        ENTRY,
        "--scenario",
        "quiet",
        "--port",
        "0",
        "--fast",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        ready = json.loads(line)
        assert ready["event"] == "simnet_listening"
        async with aiohttp.ClientSession() as session:
            first = (await h.call(session, ready["rpc"], "getSlot"))["result"]
            assert first >= ready["slot"]
            slot = first
            # The clock runs in wall time in this mode: wait (bounded) until it has moved.
            for _ in range(500):
                slot = (await h.call(session, ready["rpc"], "getSlot"))["result"]
                if slot > first:
                    break
                await asyncio.sleep(0.01)
            assert slot > first
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0
    assert b"simnet_stopped" in stderr


@pytest.mark.asyncio
async def test_in_process_clock_ticks_and_stops_with_the_block() -> None:
    """serve(tick_s=...) advances slots on its own and stops listening when the block ends."""
    async with server.serve("quiet", seed=1, tick_s=0.005) as node:
        start = node.sim.slot
        # Wall-clock ticks: wait (bounded) for a few of them.
        for _ in range(500):
            if node.sim.slot >= start + 3:
                break
            await asyncio.sleep(0.005)
        assert node.sim.slot >= start + 3
        url = node.url
    assert not node.listening
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await h.call(session, url, "getSlot")


def test_a_taken_port_is_a_config_error() -> None:
    """run() on a port something else listens on raises ConfigError naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = _parse("--scenario", "quiet", "--port", str(port), "--manual-clock")
        with pytest.raises(errors.ConfigError, match=f"127.0.0.1:{port}"):
            command.run(args)


@pytest.mark.asyncio
async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    """An exception raised while serving leaves serve() unwrapped, after the server stopped."""
    with pytest.raises(LookupError, match="boom"):
        async with server.serve("quiet", seed=1, tick_s=0.01) as node:
            raise LookupError("boom")
    assert not node.listening
