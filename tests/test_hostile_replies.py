"""Replies bounded and sane (issue 15, items 7-9): a hostile node in front of the simnet.

Every reply here comes over HTTP from :mod:`tests.hostile`, a real JSON-RPC server forwarding to
the simulator and rewriting what it answers: bodies too large or endless, a zstd bomb in an
account, numbers no Drift program writes, a book emptied. driftsnap's own code is never replaced.
Memory is measured on a real ``driftsnap books`` process (its ``VmHWM``), killed if it passes
1 GiB, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import os
import struct
import sys
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import pytest_asyncio
import sqlalchemy as sa
import zstandard
from aiohttp import web
from pydantic import SecretStr

from driftsnap import config, parts, protocol
from driftsnap.chain import accounts, clock, errors, idl, markets, rpc, snapshot, users
from driftsnap.errors import ConfigError
from driftsnap.simnet import server
from driftsnap.store import schema
from tests import hostile
from tests.test_chain_rpc import fast
from tests.test_daemon import SteppedClock, finish, run_daemon, settings_for, tick_rows

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import numpy.typing as npt

Json = Any
SCRIPT = Path(sys.executable).parent / "driftsnap"
NAMES = ["SOL-PERP", "BTC-PERP", "ETH-PERP"]
USER_SIZE = accounts.SIZES[accounts.Kind.USER]
LAZER = accounts.DISCRIMINATORS[accounts.Kind.PYTH_LAZER_ORACLE]
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
MIB = 1 << 20
GIB = 1 << 30
LENIENT = snapshot.SnapshotSettings(max_skipped_share=0.2)


# ---------------------------------------------------------------- forging replies


def is_user_gpa(call: hostile.Call) -> bool:
    """Whether ``call`` is the snapshot's getProgramAccounts of User accounts."""
    if call.method != "getProgramAccounts" or len(call.params) < 2:
        return False
    return {"dataSize": USER_SIZE} in call.params[1].get("filters", [])


def account_bytes(account: Json) -> bytes:
    """An account object's data, decoded from base64 (and zstd)."""
    text, encoding = account["data"]
    raw = base64.b64decode(text)
    if encoding == "base64+zstd":
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


def with_data(account: Json, raw: bytes, encoding: str = "base64") -> Json:
    """``account`` holding ``raw`` instead (re-encoded; zstd if asked)."""
    if encoding == "base64+zstd":
        raw = zstandard.ZstdCompressor().compress(raw)
    return {**account, "data": [base64.b64encode(raw).decode(), encoding]}


def forge_users(call: hostile.Call, patch: Callable[[npt.NDArray[np.void]], None]) -> Json:
    """The users' gPA reply with ``patch`` applied, in place, to the decoded User records."""
    result = call.result
    items = result["value"]
    records = np.frombuffer(
        b"".join(account_bytes(i["account"]) for i in items), dtype=users.ACCOUNT_DTYPE
    ).copy()
    patch(records)
    value = [
        {**item, "account": with_data(item["account"], records[k].tobytes())}
        for k, item in enumerate(items)
    ]
    return hostile.result(call, {**result, "value": value})


def users_forged(patch: Callable[[npt.NDArray[np.void]], None]) -> hostile.Rewrite:
    """A rewrite forging every users' gPA reply with ``patch``."""

    def rewrite(call: hostile.Call) -> Json:
        return forge_users(call, patch) if is_user_gpa(call) else None

    return rewrite


def first_users_orders(field: str, value: int) -> Callable[[npt.NDArray[np.void]], None]:
    """A patch setting ``field`` of the first User account's open orders to ``value``."""

    def patch(records: npt.NDArray[np.void]) -> None:
        orders = records["user"]["orders"][0]
        orders[field][orders["status"] == protocol.OrderStatus.OPEN] = value

    return patch


def accounts_forged(discriminator: bytes, offset: int, value: int, fmt: str) -> hostile.Rewrite:
    """A rewrite writing ``value`` (struct ``fmt``) at ``offset`` of every account that
    getMultipleAccounts serves with ``discriminator``."""

    def rewrite(call: hostile.Call) -> Json:
        result = call.result
        if call.method != "getMultipleAccounts" or not isinstance(result, dict):
            return None
        value_out = []
        for account in result["value"]:
            if account is not None and account_bytes(account)[:8] == discriminator:
                data = bytearray(account_bytes(account))
                struct.pack_into(fmt, data, offset, value)
                value_out.append(with_data(account, bytes(data)))
            else:
                value_out.append(account)
        return hostile.result(call, {**result, "value": value_out})

    return rewrite


def oracles_forged(field: str, value: int, fmt: str) -> hostile.Rewrite:
    """A rewrite writing ``value`` (struct ``fmt``) into ``field`` of every Pyth Lazer oracle."""
    return accounts_forged(LAZER, idl.offset("PythLazerOracle", field), value, fmt)


def block_time(value: Json) -> hostile.Rewrite:
    """A rewrite answering every getBlockTime with ``value``."""

    def rewrite(call: hostile.Call) -> Json:
        return hostile.result(call, value) if call.method == "getBlockTime" else None

    return rewrite


def cancel_market(index: int) -> Callable[[npt.NDArray[np.void]], None]:
    """A patch cancelling every perp order of market ``index`` (the node "lost" them)."""

    def patch(records: npt.NDArray[np.void]) -> None:
        orders = records["user"]["orders"]
        mine = (orders["market_index"] == index) & (
            orders["market_type"] == protocol.MarketType.PERP
        )
        orders["status"][mine] = protocol.OrderStatus.CANCELED

    return patch


def zstd_bomb(size: int) -> bytes:
    """One zstd frame of ``size`` zero bytes, streamed (no content size in its header)."""
    compressor = zstandard.ZstdCompressor().compressobj()
    zeros = bytes(MIB)
    frame = [compressor.compress(zeros) for _ in range(size // MIB)]
    return b"".join([*frame, compressor.flush()])


# ---------------------------------------------------------------- running driftsnap


def env(**extra: str) -> dict[str, str]:
    """A clean environment for a driftsnap process (CI runs as root)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "DRIFTSNAP_ALLOW_ROOT": "true",
        "DRIFTSNAP_LOG_FORMAT": "json",
        # Only to run this file against another tree (PYTHONPATH=tree pytest ...).
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        **extra,
    }


async def driftsnap(*args: str, extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the ``driftsnap`` console script: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(**(extra or {})),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# cli.main as the console script runs it, reporting the process's peak RSS (VmHWM, which execve
# resets, unlike ru_maxrss) to a file as it exits.
_MEASURED = """
import atexit, os, sys
from driftsnap import cli

def _peak():
    with open("/proc/self/status") as status, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])

atexit.register(_peak)
sys.exit(cli.main(sys.argv[1:]))
"""


async def measured(tmp: Path, *args: str, **extra: str) -> tuple[int, str, int]:
    """Run driftsnap with ``args``: exit code, stderr and peak RSS in bytes; killed past 1 GiB."""
    peak_file = tmp / "peak"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MEASURED,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env(PEAK_FILE=str(peak_file), **extra),
    )
    assert proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    deadline = time.monotonic() + 20
    watched = 0
    while proc.returncode is None:
        watched = max(watched, _rss(proc.pid))
        if watched > GIB or time.monotonic() > deadline:
            proc.kill()
            await proc.wait()
            pytest.fail(f"driftsnap killed at {watched / MIB:.0f} MiB RSS (or after 20 s)")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.01)
    err = (await stderr).decode()
    return proc.returncode, err, max(watched, int(peak_file.read_text()) * 1024)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(line for line in status if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) * 1024


def last_line(err: str) -> str:
    """The error line driftsnap ends with; there must be no traceback before it."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest_asyncio.fixture
async def node() -> AsyncIterator[server.SimnetServer]:
    async with server.serve("default", seed=41) as running:
        await running.advance(20)
        yield running


# ================================================================ 7. size limits


@pytest.mark.asyncio
async def test_a_reply_past_the_cap_is_refused_by_its_content_length_unread(
    node: server.SimnetServer,
) -> None:
    """A 100 MB answer with a 4 MB cap: ResponseTooLargeError at once, naming cap and setting;
    not retried (the node would send it again), and refused unread."""
    huge = b'{"jsonrpc": "2.0", "id": 1, "result": "' + b"x" * (100 * MIB) + b'"}'

    def rewrite(call: hostile.Call) -> Json:
        return huge if call.method == "getVersion" else None

    async with (
        hostile.serve(node.url, rewrite) as proxy,
        rpc.Client(fast(proxy.url, max_body_bytes=4 * MIB)) as client,
    ):
        started = time.monotonic()
        with pytest.raises(errors.ResponseTooLargeError) as info:
            await client.call("getVersion")
        assert time.monotonic() - started < 5
        assert await client.call("getSlot") == node.sim.slot  # the client goes on
    assert not info.value.retryable
    assert info.value.attempts == 1
    assert proxy.calls["getVersion"] == 1
    message = str(info.value)
    assert "\n" not in message
    assert "4 MB" in message
    assert "DRIFTSNAP_RPC_MAX_BODY_MB" in message
    assert "Content-Length" in message


@pytest.mark.asyncio
async def test_an_endless_body_is_read_up_to_the_cap_and_no_further(
    node: server.SimnetServer,
) -> None:
    """A body that never ends (no Content-Length) stops being read at the cap: refused in
    well under the timeout, with memory of the order of the cap."""

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc": "2.0", "id": 1, "result": "'
        chunk = b"x" * (256 * 1024)
        while True:
            yield chunk

    def rewrite(call: hostile.Call) -> Json:
        return endless() if call.method == "getVersion" else None

    async with (
        hostile.serve(node.url, rewrite) as proxy,
        rpc.Client(fast(proxy.url, max_body_bytes=8 * MIB, timeout_s=20)) as client,
    ):
        tracemalloc.start()
        started = time.monotonic()
        with pytest.raises(errors.ResponseTooLargeError, match="more than that arrived"):
            await client.call("getVersion")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 64 * MIB


@pytest.mark.asyncio
async def test_a_gzip_bomb_is_inflated_no_further_than_the_cap(tmp_path: Path) -> None:
    """gzip (the one encoding asked for) is inflated in bounded steps: 128 MiB of zeros in a
    128 KB body is refused at the cap; an encoding not asked for is refused outright."""
    bomb = gzip.compress(bytes(GIB // 8), compresslevel=9)
    small = gzip.compress(b'{"jsonrpc": "2.0", "id": 1, "result": 7}')
    bodies = {"bomb": (bomb, "gzip"), "small": (small, "gzip"), "zstd": (b"x", "zstd")}

    async def handle(request: web.Request) -> web.Response:
        body, encoding = bodies[request.match_info["what"]]
        return web.Response(body=body, headers={"Content-Encoding": encoding})

    app = web.Application()
    app.router.add_post("/{what}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = hostile._free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        base = f"http://127.0.0.1:{port}"
        async with rpc.Client(fast(f"{base}/small", max_body_bytes=MIB)) as client:
            assert await client.call("getSlot") == 7
        async with rpc.Client(fast(f"{base}/bomb", max_body_bytes=MIB)) as client:
            tracemalloc.start()
            with pytest.raises(errors.ResponseTooLargeError):
                await client.call("getSlot")
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < 16 * MIB
        async with rpc.Client(fast(f"{base}/zstd", max_body_bytes=MIB)) as client:
            with pytest.raises(errors.TransportError, match="content encoding 'zstd'") as info:
                await client.call("getSlot")
            assert not info.value.retryable
    finally:
        await runner.cleanup()


def test_the_cap_is_a_setting_of_256_mb_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRIFTSNAP_RPC_MAX_BODY_MB reaches the client, in MB of 2**20 bytes; 256 by default."""
    url = SecretStr("http://127.0.0.1:1")
    assert parts.rpc_settings(config.Settings(rpc_url=url)).max_body_bytes == 256 * MIB
    settings = config.load_settings(rpc_url=url, rpc_max_body_mb=64)
    assert parts.rpc_settings(settings).max_body_bytes == 64 * MIB
    assert rpc.RpcSettings("http://x").max_body_bytes == rpc.DEFAULT_MAX_BODY_BYTES == 256 * MIB
    monkeypatch.setenv("DRIFTSNAP_RPC_MAX_BODY_MB", "0")
    with pytest.raises(ConfigError, match="DRIFTSNAP_RPC_MAX_BODY_MB"):
        config.load_settings(rpc_url=url)


def test_a_zstd_bomb_is_refused_after_the_size_of_its_kind() -> None:
    """A 1 GiB frame in a 32 KB account is refused (reason length) having inflated one byte
    more than a User holds, whether or not the frame declares its size; a small one decodes."""
    bomb = {"data": [base64.b64encode(zstd_bomb(GIB)).decode(), "base64+zstd"], "owner": "o"}
    declared = zstandard.ZstdCompressor().compress(bytes(64 * MIB))
    lying = {"data": [base64.b64encode(declared).decode(), "base64+zstd"], "owner": "o"}
    tracemalloc.start()
    started = time.monotonic()
    for account in (bomb, lying):
        with pytest.raises(errors.AccountError, match="more than the 4,376 bytes") as info:
            accounts.from_rpc("k", account, max_size=USER_SIZE)
        assert info.value.reason == "length"
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 16 * MIB
    user = bytes(USER_SIZE)
    fine = {"data": [base64.b64encode(zstandard.ZstdCompressor().compress(user)).decode(),
                     "base64+zstd"], "owner": "o"}  # fmt: skip
    assert accounts.from_rpc("k", fine, max_size=USER_SIZE).data == user
    long_text = {"data": ["A" * 8000, "base64"], "owner": "o"}
    with pytest.raises(errors.AccountError, match="characters of base64"):
        accounts.from_rpc("k", long_text, max_size=USER_SIZE)


def _endless_gpa(call: hostile.Call) -> Json:
    if not is_user_gpa(call):
        return None

    async def body() -> AsyncIterator[bytes]:
        item = b'{"pubkey": "x", "account": {"data": ["' + b"A" * 6000 + b'", "base64"]}},'
        yield (
            b'{"jsonrpc": "2.0", "id": %d, "result": {"context": {"slot": 1}, "value": ['
            % (call.reply["id"])
        )
        while True:
            yield item * 64

    return body()


def _hundred_mb_gpa(call: hostile.Call) -> Json:
    if not is_user_gpa(call):
        return None
    result = {**call.result, "value": [], "padding": "x" * (100 * MIB)}
    return hostile.result(call, result)


def _bombed_gpa(call: hostile.Call) -> Json:
    if not is_user_gpa(call):
        return None
    items = list(call.result["value"])
    bomb = base64.b64encode(zstd_bomb(GIB)).decode()
    items[0] = {**items[0], "account": {**items[0]["account"], "data": [bomb, "base64+zstd"]}}
    return hostile.result(call, {**call.result, "value": items})


@pytest.mark.parametrize(
    ("rewrite", "expect"),
    [
        (_endless_gpa, "reply larger than 16 MB"),
        (_hundred_mb_gpa, "reply larger than 16 MB"),
        (_bombed_gpa, "bad_accounts"),
    ],
    ids=["endless body", "100 MB reply", "1 GiB zstd bomb"],
)
@pytest.mark.asyncio
async def test_books_stays_under_1_gb_and_says_why_in_one_line(
    node: server.SimnetServer, tmp_path: Path, rewrite: hostile.Rewrite, expect: str
) -> None:
    """`driftsnap books` against an endless body, a 100 MB reply (16 MB cap) and a User account
    holding a 1 GiB zstd bomb: exit 1 with one error line, peak RSS far below 1 GB."""
    async with hostile.serve(node.url, rewrite) as proxy:
        code, err, peak = await measured(
            tmp_path,
            "books",
            "--rpc-url",
            proxy.url,
            DRIFTSNAP_RPC_MAX_BODY_MB="16",
            DRIFTSNAP_RPC_MAX_RETRIES="0",
            DRIFTSNAP_RPC_TIMEOUT_S="15",
        )
    line = last_line(err)
    assert code == 1, err
    assert line.startswith("driftsnap: error: ")
    assert expect in line
    if rewrite is _bombed_gpa:
        assert "length=1" in line
    print(f"peak RSS {peak / MIB:.0f} MiB")  # shown with -s, for the record
    assert peak < GIB // 2, f"peak RSS {peak / MIB:.0f} MiB"


# ================================================================ 8. absurd numbers


@pytest.mark.parametrize(
    ("rewrite", "expect"),
    [
        (oracles_forged("price", I64_MAX, "<q"), "out_of_bounds): SOL-PERP oracle"),
        (oracles_forged("exponent", -(2**31), "<i"), "exponent -2147483648 is out of bounds"),
        (oracles_forged("conf", U64_MAX, "<Q"), "confidence"),
        (oracles_forged("posted_slot", U64_MAX, "<Q"), "oracle slot"),
        (users_forged(first_users_orders("base_asset_amount", U64_MAX)), "bounds=1"),
        (users_forged(first_users_orders("slot", 2**62)), "bounds=1"),
        (block_time(10**30), "block time 1e+30 is out of bounds"),
        (block_time(1e30), "block time 1e+30 is not a number of seconds"),
        (block_time(int(time.time()) + 86_400), "after the wall clock"),
    ],
    ids=[
        "oracle price i64 max",
        "oracle exponent i32 min",
        "oracle confidence u64 max",
        "oracle slot u64 max",
        "order size u64 max",
        "order placed in the future",
        "block time 10**30",
        "block time 1e30 (a float)",
        "block time tomorrow",
    ],
)
@pytest.mark.asyncio
async def test_books_refuses_numbers_no_program_writes_in_one_line(
    node: server.SimnetServer, rewrite: hostile.Rewrite, expect: str
) -> None:
    """Today's books exits 0 with a crossed book or an impossible time for these: now exit 1,
    one line naming the number, no traceback."""
    async with hostile.serve(node.url, rewrite) as proxy:
        code, out, err = await driftsnap("books", "--rpc-url", proxy.url)
    line = last_line(err)
    assert code == 1, err
    assert out == ""
    assert line.startswith("driftsnap: error: snapshot at slot ")
    assert expect in line


@pytest.mark.asyncio
async def test_an_order_beyond_i64_is_a_bad_account_counted_with_its_reason(
    node: server.SimnetServer,
) -> None:
    """A User with an open order of 2**64 - 1 is skipped as ``bounds``: under the threshold the
    snapshot stands without it; the book of the others is the truth."""
    forged: list[str] = []

    def rewrite(call: hostile.Call) -> Json:
        if not is_user_gpa(call):
            return None
        forged.append(call.result["value"][0]["pubkey"])
        return forge_users(call, first_users_orders("base_asset_amount", U64_MAX))

    async with (
        hostile.serve(node.url, rewrite) as proxy,
        rpc.Client(fast(proxy.url)) as client,
    ):
        snap = await snapshot.take(client, LENIENT, NAMES)
        strict = await snapshot.take(client, snapshot.SnapshotSettings(), NAMES)
    assert snap.ok, snap.detail
    assert snap.skipped == {"bounds": 1}
    assert snap.users == snap.accounts_seen - 1
    assert forged[0] not in {o.user for b in snap.books.values() for o in b.orders}
    assert all(o.size <= I64_MAX for b in snap.books.values() for o in b.orders)
    assert strict.rejection == snapshot.Rejection.BAD_ACCOUNTS
    assert "(bounds=1)" in strict.detail


@pytest.mark.asyncio
async def test_an_absurd_market_counter_is_an_out_of_bounds_rejection(
    node: server.SimnetServer,
) -> None:
    """A PerpMarket whose next_fill_record_id is past i64 (storage would overflow): rejected."""
    rewrite = accounts_forged(
        accounts.DISCRIMINATORS[accounts.Kind.PERP_MARKET],
        idl.offset("PerpMarket", "next_fill_record_id"),
        U64_MAX,
        "<Q",
    )
    async with (
        hostile.serve(node.url, rewrite) as proxy,
        rpc.Client(fast(proxy.url)) as client,
    ):
        snap = await snapshot.take(client, LENIENT, [0, 1, 2])
    assert snap.rejection == snapshot.Rejection.OUT_OF_BOUNDS
    assert f"next_fill_record_id {U64_MAX} is beyond i64" in snap.detail


def test_block_times_and_slots_are_held_to_what_a_chain_can_say() -> None:
    """From Solana's genesis to 2100, and not past the wall clock by more than allowed."""
    now = 1_800_000_000
    assert clock.block_time_problem(now, now=now, max_ahead_s=60) is None
    assert clock.block_time_problem(now + 61, now=now, max_ahead_s=60) is not None
    assert clock.block_time_problem(now + 10**6, now=now) is None  # a chain ahead: the clock's
    for bad in (0, -1, clock.SOLANA_GENESIS_TS - 1, clock.MAX_BLOCK_TIME, 10**30, 1.5, "1", True):
        assert clock.block_time_problem(bad) is not None, bad
    assert clock.slot_problem(348_900_700) is None
    for not_slot in (-1, 2**53, U64_MAX, 1.0, None, True):
        assert clock.slot_problem(not_slot) is not None, not_slot
    assert markets.MAX_ORACLE_PRICE == 10**15


@pytest.mark.asyncio
async def test_the_chain_clock_takes_an_absurd_block_time_for_no_answer(
    node: server.SimnetServer,
) -> None:
    """getBlockTime answering 10**30 made the chain clock's now() raise (the daemon died on its
    first tick); now the clock waits, as for a node that does not answer, and then goes on."""
    async with (
        hostile.serve(node.url, block_time(10**30)) as proxy,
        clock.ChainClock(fast(proxy.url)) as chain,
    ):
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        assert not await chain.start(stop)
        proxy.rewrite = None
        assert await chain.start(asyncio.Event())
        assert chain.now().timestamp() == node.sim.ts_at(chain.slot or 0)


@pytest.mark.parametrize(
    "rewrite",
    [
        users_forged(first_users_orders("base_asset_amount", U64_MAX)),
        users_forged(first_users_orders("base_asset_amount", I64_MAX)),
        oracles_forged("price", I64_MAX, "<q"),
        block_time(10**30),
    ],
    ids=["order size u64 max", "order size i64 max", "oracle price i64 max", "block time 1e30"],
)
@pytest.mark.asyncio
async def test_the_daemon_records_a_rejected_tick_and_goes_on(
    pg_url: sa.URL, tmp_path: Path, rewrite: hostile.Rewrite
) -> None:
    """The daemon crashed on its first tick with these; now the tick is rejected with its
    reason, and the next one, from an honest reply, is ok."""
    async with server.serve("default", seed=43) as sim, hostile.serve(sim.url, rewrite) as proxy:
        await sim.advance(5)
        clock_, stop = SteppedClock(), asyncio.Event()
        settings = settings_for(pg_url, proxy.url, tmp_path, max_skipped_share=0.01)
        task = await run_daemon(settings, clock_, stop)
        await clock_.tick()
        proxy.rewrite = None
        await sim.advance(3)
        await clock_.tick()
        assert await finish(task, stop) == 0
    rows = tick_rows(pg_url)
    assert [r.status for r in rows] == ["rejected", "ok"], rows
    assert rows[0].reason.split(":")[0] in ("bad_accounts", "out_of_bounds", "unscorable")


@pytest.mark.asyncio
async def test_run_once_with_an_absurd_order_size_writes_a_rejected_tick_without_traceback(
    pg_url: sa.URL, node: server.SimnetServer, tmp_path: Path
) -> None:
    """`run --once` died with an OverflowError traceback on an order of 2**64 - 1: now it
    writes the tick as rejected and exits 1 (not ok) with no traceback."""
    rewrite = users_forged(first_users_orders("base_asset_amount", U64_MAX))
    async with hostile.serve(node.url, rewrite) as proxy:
        code, _, err = await driftsnap(
            "run",
            "--once",
            "--cadence",
            "2s",
            extra={
                "DRIFTSNAP_DATABASE_URL": pg_url.render_as_string(hide_password=False),
                "DRIFTSNAP_RPC_URL": proxy.url,
                "DRIFTSNAP_DATA_DIR": str(tmp_path),
                "DRIFTSNAP_METRICS_PORT": "0",
                "DRIFTSNAP_FILLS": "false",
            },
        )
    assert "Traceback" not in err, err
    assert "OverflowError" not in err
    assert code == 1, err
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            t = schema.ticks
            rows = conn.execute(sa.select(t.c.status, t.c.reason)).all()
    finally:
        engine.dispose()
    assert [status for status, _ in rows] == ["rejected"]
    assert rows[0].reason.startswith("bad_accounts: ")
    assert "(bounds=1)" in rows[0].reason


# ================================================================ 9. books that cannot be right


@pytest.mark.asyncio
async def test_an_empty_program_accounts_answer_is_a_rejected_snapshot(
    node: server.SimnetServer,
) -> None:
    """No User account at all was an ok snapshot with 0 orders; now it is rejected (no_users),
    and `books` says so in one line."""

    def rewrite(call: hostile.Call) -> Json:
        return hostile.result(call, {**call.result, "value": []}) if is_user_gpa(call) else None

    async with hostile.serve(node.url, rewrite) as proxy:
        async with rpc.Client(fast(proxy.url)) as client:
            snap = await snapshot.take(client, LENIENT, NAMES)
        code, _, err = await driftsnap("books", "--rpc-url", proxy.url)
    assert snap.rejection == snapshot.Rejection.NO_USERS
    assert not snap.books
    assert "no User account" in snap.detail
    assert code == 1
    assert "rejected (no_users)" in last_line(err)


@pytest.mark.asyncio
async def test_a_market_that_loses_its_orders_at_once_is_a_rejected_tick(
    pg_url: sa.URL, tmp_path: Path
) -> None:
    """SOL-PERP's orders vanish from one reply: that tick is rejected (book_collapse) with the
    counts; the same book again is judged against it and stands (a market that really emptied
    costs one tick); the honest reply after is ok."""
    async with server.serve("default", seed=44) as sim, hostile.serve(sim.url) as proxy:
        await sim.advance(5)
        clock_, stop = SteppedClock(), asyncio.Event()
        task = await run_daemon(settings_for(pg_url, proxy.url, tmp_path), clock_, stop)
        await clock_.tick()
        proxy.rewrite = users_forged(cancel_market(0))
        for _ in range(2):
            await sim.advance(3)
            await clock_.tick()
        proxy.rewrite = None
        await sim.advance(3)
        await clock_.tick()
        assert await finish(task, stop) == 0
    rows = tick_rows(pg_url)
    assert [r.status for r in rows] == ["ok", "rejected", "ok", "ok"], rows
    assert rows[1].reason.startswith("book_collapse: SOL-PERP has 0 orders, ")
    assert "DRIFTSNAP_MAX_BOOK_DROP" in rows[1].reason
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            s = schema.snapshots
            orders = dict(
                conn.execute(
                    sa.select(s.c.market_index, s.c.orders).where(s.c.tick_at == rows[2].tick_at)
                ).all()
            )
    finally:
        engine.dispose()
    assert orders[0] == 0
    assert orders[1] > 0


@pytest.mark.asyncio
async def test_the_drop_threshold_is_a_setting(pg_url: sa.URL, tmp_path: Path) -> None:
    """DRIFTSNAP_MAX_BOOK_DROP=1 never rejects a drop; the defaults are 90 % of at least 50."""
    defaults = parts.tick_settings(config.Settings(), config.load_program())
    assert (defaults.max_book_drop, defaults.book_drop_min_orders) == (0.9, 50)
    async with server.serve("default", seed=45) as sim, hostile.serve(sim.url) as proxy:
        await sim.advance(5)
        clock_, stop = SteppedClock(), asyncio.Event()
        settings = settings_for(pg_url, proxy.url, tmp_path, max_book_drop=1.0)
        task = await run_daemon(settings, clock_, stop)
        await clock_.tick()
        proxy.rewrite = users_forged(cancel_market(0))
        await sim.advance(3)
        await clock_.tick()
        assert await finish(task, stop) == 0
    assert [r.status for r in tick_rows(pg_url)] == ["ok", "ok"]
