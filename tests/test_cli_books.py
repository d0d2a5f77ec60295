"""`driftsnap books` as a user runs it against an RPC node (the simnet, over real HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from driftsnap.simnet import server, truth

SCRIPT = Path(sys.executable).parent / "driftsnap"
SENTINEL = "ApiKey-Sentinel-4242"


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _orders(doc: dict[str, object]) -> set[tuple[object, ...]]:
    orders = doc["orders"]
    assert isinstance(orders, list)
    return {
        (o["user"], o["authority"], o["side"], o["price"], o["size"], o["order_id"]) for o in orders
    }


@pytest.mark.asyncio
async def test_books_writes_each_markets_ground_truth_book(tmp_path: Path) -> None:
    """books --out writes one file per program market, equal to the simnet's book at that slot."""
    async with server.serve("default", seed=5) as node:
        await node.advance(30)
        url = f"{node.url}/?api-key={SENTINEL}"
        code, out, err = await run(
            "--log-level", "debug", "books", "--rpc-url", url, "--out", str(tmp_path)
        )
        assert code == 0, err
        assert out == ""
        written = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
        # The program pays SOL/BTC/ETH-PERP, so those are the default markets.
        assert set(written) == {"SOL-PERP", "BTC-PERP", "ETH-PERP"}
        slot = node.sim.slot
        for index, market in node.sim.markets.items():
            doc = written[market.name]
            want = truth.book(node.sim, slot, index)
            assert (doc["slot"], doc["oracle_price"], doc["ts"]) == (
                want["slot"],
                want["oracle_price"],
                want["ts"],
            )
            assert _orders(doc) == _orders(want)
        orders = sum(len(d["orders"]) for d in written.values())
        assert f"slot {slot}: 3 book(s), {orders} eligible orders" in err
        assert SENTINEL not in out + err


@pytest.mark.asyncio
async def test_books_to_stdout_scores_with_score_book(tmp_path: Path) -> None:
    """Without --out the books print as JSON; one of them scores with score-book unchanged."""
    async with server.serve("default", seed=6) as node:
        await node.advance(10)
        code, out, err = await run("books", "--rpc-url", node.url, "--market", "0")
        assert code == 0, err
        docs = json.loads(out)
        assert list(docs) == ["SOL-PERP"]
        path = tmp_path / "sol.json"
        path.write_text(json.dumps(docs["SOL-PERP"]))
        code, out, err = await run("score-book", str(path), "--format", "json")
        assert code == 0, err
        scored = json.loads(out)
        assert scored["slot"] == node.sim.slot
        assert scored["scores"]
        assert max(scored["scores"].values()) > 0


@pytest.mark.asyncio
async def test_books_errors_are_one_line_and_name_the_problem() -> None:
    """No URL points at --rpc-url and demo; an unknown market lists the real ones; exit 2."""
    code, _, err = await run("books")
    assert code == 2
    assert "pass --rpc-url URL" in err
    assert "driftsnap demo" in err
    async with server.serve("quiet", seed=1) as node:
        code, _, err = await run("books", "--rpc-url", node.url, "--market", "NOPE-PERP")
    assert code == 2  # a market the chain does not have is configuration
    assert err.strip().splitlines()[-1].startswith("driftsnap: error: perp market(s) 'NOPE-PERP'")
    assert "0=SOL-PERP" in err


@pytest.mark.asyncio
async def test_books_against_a_dead_node_fails_without_leaking_the_key() -> None:
    """A refused connection is a typed error after retries; the URL's key never appears."""
    code, out, err = await run(
        "--log-level",
        "debug",
        "books",
        "--rpc-url",
        f"http://127.0.0.1:1/v2/{SENTINEL}",
        env={"DRIFTSNAP_RPC_MAX_RETRIES": "1"},
    )
    assert code != 0
    assert "http://127.0.0.1:1/…" in err
    assert SENTINEL not in out + err
