"""The fills ingest against a hostile node: forged fills, two records for one id, logs cut
without a word, paging that never ends, and one transaction the node errors on.

Every test puts a real HTTP JSON-RPC server (:mod:`tests.hostile`) between driftsnap and the
simnet; it rewrites the simnet's replies as a compromised provider (or a man-in-the-middle on
an ``http://`` URL) would. Nothing of driftsnap's own is replaced.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from solders.pubkey import Pubkey
from solders.signature import Signature

from driftsnap import metrics, protocol
from driftsnap.calendar import Week
from driftsnap.chain import errors, rpc
from driftsnap.chain import fills as chain_fills
from driftsnap.flows import close as close_flow
from driftsnap.flows import errors as flow_errors
from driftsnap.flows import fills as fills_flow
from driftsnap.simnet import layout, model
from driftsnap.store import fills as store_fills
from tests import hostile, test_close
from tests.fills_helpers import run_cli, settings, simnet, stored, truth_rows

if TYPE_CHECKING:
    from pathlib import Path

    from driftsnap.simnet import ledger, server

Json = Any
DRIFT = protocol.DRIFT_PROGRAM_ID
FORGER = str(Pubkey(bytes([7]) * 32))  # the attacker's program
ED25519 = "Ed25519SigVerify111111111111111111111111111"
RETRY = fills_flow.PollSettings(read_attempts=3, retry_backoff_s=0)


def fake_signature(n: int) -> str:
    return str(Signature(bytes([n]) * 64))


def watermark(engine: sa.Engine) -> store_fills.Watermark | None:
    with engine.connect() as conn:
        return store_fills.watermark(conn, DRIFT, "confirmed")


def fill_txs(node: server.SimnetServer) -> list[ledger.Transaction]:
    """The simnet's transactions with fills, oldest first."""
    return [tx for tx in node.sim.ledger.transactions.values() if tx.fills]


def rows_of(node: server.SimnetServer, *txs: ledger.Transaction) -> frozenset[tuple[Any, ...]]:
    """The true fill rows of ``txs``."""
    wanted = {tx.signature for tx in txs}
    return frozenset(r for r in truth_rows(node) if r[3] in wanted)


def week_of(ts: int) -> Week:
    return Week.containing(datetime.fromtimestamp(ts, tz=UTC))


async def reply_of(client: rpc.Client, signature: str) -> dict[str, Json]:
    """The simnet's own getTransaction answer for ``signature``."""
    config = {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
    answer = await client.call("getTransaction", [signature, config])
    assert isinstance(answer, dict)
    return answer


def reencoded(line: str, **changes: Any) -> str:
    """A ``Program data:`` fill event line with some fields of the record changed."""
    raw = base64.b64decode(line.removeprefix("Program data: "))
    fields = dict(layout.fields_of(layout.coder().events.parse(raw).data))
    fields.update(changes)
    event = layout.encode_event("OrderActionRecord", fields)
    return "Program data: " + base64.b64encode(event).decode()


def event_lines(reply: dict[str, Json]) -> list[int]:
    lines = reply["meta"]["logMessages"]
    return [i for i, line in enumerate(lines) if line.startswith("Program data: ")]


# ---------------------------------------------------------------- forgeries of one real reply


def without_drift(reply: dict[str, Json]) -> dict[str, Json]:
    """The message never names Drift (its key is the forger's); the logs still say Drift ran."""
    out = copy.deepcopy(reply)
    keys = out["transaction"]["message"]["accountKeys"]
    keys[keys.index(DRIFT)] = FORGER
    return out


def misplaced(reply: dict[str, Json]) -> dict[str, Json]:
    """Drift is an account of the message, but the instruction the logs say is Drift's calls
    the forger's program."""
    out = copy.deepcopy(reply)
    message = out["transaction"]["message"]
    message["accountKeys"].append(FORGER)
    drift = message["accountKeys"].index(DRIFT)
    (ix,) = [i for i in message["instructions"] if i["programIdIndex"] == drift]
    ix["programIdIndex"] = len(message["accountKeys"]) - 1
    return out


def wrongly_closed(reply: dict[str, Json]) -> dict[str, Json]:
    """Drift CPIs into the forger's program (a real inner instruction), whose frame a "Drift
    success" line closes: the events that follow are the forger's, not Drift's."""
    out = copy.deepcopy(reply)
    message = out["transaction"]["message"]
    message["accountKeys"].append(FORGER)
    drift_ix = next(
        n
        for n, ix in enumerate(message["instructions"])
        if message["accountKeys"][ix["programIdIndex"]] == DRIFT
    )
    out["meta"]["innerInstructions"] = [
        {
            "index": drift_ix,
            "instructions": [
                {
                    "programIdIndex": len(message["accountKeys"]) - 1,
                    "accounts": [],
                    "data": "",
                    "stackHeight": 2,
                }
            ],
        }
    ]
    lines = out["meta"]["logMessages"]
    first, last = event_lines(out)[0], event_lines(out)[-1]
    out["meta"]["logMessages"] = [
        *lines[:first],
        f"Program {FORGER} invoke [2]",
        f"Program {DRIFT} success",
        *lines[first : last + 1],
        f"Program {FORGER} success",
        *lines[last + 1 :],
    ]
    return out


@pytest.mark.asyncio
async def test_fills_of_transactions_that_do_not_run_drift_are_rejected(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """A fill counts only inside a Drift frame the message really runs: a forged 1,000,000 USDC
    fill in a transaction that never invokes Drift, logs that put Drift where the message runs
    another program, and events after a frame closed by the wrong program are all rejected,
    recorded and reported; every other fill is stored exactly."""
    async with simnet("default", seed=61) as (node, client):
        await node.advance(30)
        txs = fill_txs(node)
        no_drift, wrong_place, wrong_close = txs[3], txs[6], txs[9]
        template = await reply_of(client, txs[-1].signature)
        fake = fake_signature(1)
        forged = without_drift(template)
        forged["transaction"]["signatures"] = [fake]
        at = event_lines(forged)[0]
        record = layout.coder().events.parse(
            base64.b64decode(forged["meta"]["logMessages"][at].removeprefix("Program data: "))
        )
        forged["meta"]["logMessages"][at] = reencoded(
            forged["meta"]["logMessages"][at],
            fill_record_id=record.data.fill_record_id + 10**6,  # no real record has it
            quote_asset_amount_filled=10**12,  # 1,000,000 USDC of volume
        )
        forgeries = {
            no_drift.signature: without_drift,
            wrong_place.signature: misplaced,
            wrong_close.signature: wrongly_closed,
        }
        injected = False

        def rewrite(call: hostile.Call) -> Json:
            nonlocal injected
            if call.method == "getSignaturesForAddress" and not injected and call.result:
                injected = True
                head = call.result[0]
                entry = {**head, "signature": fake}
                return hostile.result(call, [entry, *call.result])
            if call.method == "getTransaction":
                signature = call.params[0]
                if signature == fake:
                    return hostile.result(call, forged)
                if signature in forgeries:
                    return hostile.result(call, forgeries[signature](call.result))
            return None

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as lying,
        ):
            report = await fills_flow.poll_once(lying, pg_engine)
    assert injected
    lost = rows_of(node, no_drift, wrong_place, wrong_close)
    assert stored(pg_engine) == truth_rows(node, lost=lost)
    assert all(row[11] != 10**12 for row in stored(pg_engine))
    with pg_engine.connect() as conn:
        volume = store_fills.week_volume(conn, week_of(node.sim.ts))
        rejected = {r.signature: r for r in store_fills.rejected(conn, week_of(node.sim.ts))}
    assert max(volume.values()) < 10**12
    assert set(report.rejected_signatures) == set(rejected) == {fake, *forgeries}
    assert "never names" in rejected[fake].reason
    assert rejected[fake].fills_claimed == len(template_fills := event_lines(template))
    assert template_fills
    assert "never names" in rejected[no_drift.signature].reason
    assert "the message says" in rejected[wrong_place.signature].reason
    assert "closes a frame of" in rejected[wrong_close.signature].reason
    assert rejected[wrong_close.signature].fills_claimed == len(wrong_close.fills)
    assert report.caught_up  # rejected is read: the watermark passes it
    code, _, err = await run_cli("fills", "check", url=pg_url)
    assert code == 1
    for signature in (fake, *forgeries):
        assert f"transaction {signature}" in err
    assert "rejected" in err


@pytest.mark.asyncio
async def test_drift_loaded_from_a_lookup_table_is_trusted(pg_engine: sa.Engine) -> None:
    """Keys are the static ones, then the loaded writable, then the loaded readonly: a Drift
    instruction whose program comes from a lookup table is Drift's, and a precompile's
    instruction before it has no frame in the logs; its fills are read."""
    async with simnet("default", seed=67) as (node, _):
        await node.advance(20)
        txs = fill_txs(node)
        moved = {tx.signature for tx in txs[::3]}
        other = str(Pubkey(bytes([9]) * 32))

        def rewrite(call: hostile.Call) -> Json:
            if call.method != "getTransaction" or call.params[0] not in moved:
                return None
            out = copy.deepcopy(call.result)
            message = out["transaction"]["message"]
            keys = message["accountKeys"]
            drift = keys.index(DRIFT)
            keys[drift] = other  # the static key is not Drift any more...
            loaded = len(keys) + 1  # ...Drift is the second loaded readonly address
            out["meta"]["loadedAddresses"] = {"writable": [], "readonly": [FORGER, DRIFT]}
            for ix in message["instructions"]:
                if ix["programIdIndex"] == drift:
                    ix["programIdIndex"] = loaded
            # A signature check first (Swift orders carry one): a precompile logs no frame.
            keys.append(ED25519)
            ed25519 = {"programIdIndex": len(keys) - 1, "accounts": [], "data": ""}
            for ix in message["instructions"]:
                if ix["programIdIndex"] >= len(keys) - 1:
                    ix["programIdIndex"] += 1  # loaded addresses come after every static key
            message["instructions"].insert(0, ed25519)
            return hostile.result(call, out)

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as looked_up,
        ):
            report = await fills_flow.poll_once(looked_up, pg_engine)
    assert moved
    assert report.rejected_signatures == ()
    assert stored(pg_engine) == truth_rows(node)


# ---------------------------------------------------------------- two records for one id


@pytest.mark.asyncio
async def test_a_second_record_for_a_fill_id_is_kept_flagged_and_refuses_the_close(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """A forged record listed just before the real one takes the id: both are kept, the id is
    flagged, `fills check` names it and exits 1, the close refuses the week; a re-read of the
    same records afterwards is no conflict and stores nothing twice."""
    async with simnet("default", seed=62) as (node, client):
        await node.advance(30)
        victim = fill_txs(node)[-3]  # recent: on the first page of the listing
        real = await reply_of(client, victim.signature)
        fake = fake_signature(2)
        forged = copy.deepcopy(real)
        forged["transaction"]["signatures"] = [fake]
        at = event_lines(forged)[0]
        true_fill = victim.fills[0]
        forged["meta"]["logMessages"][at] = reencoded(
            forged["meta"]["logMessages"][at], quote_asset_amount_filled=true_fill.quote * 1000
        )
        injected = False

        def rewrite(call: hostile.Call) -> Json:
            nonlocal injected
            if call.method == "getSignaturesForAddress" and not injected and call.result:
                injected = True
                page = list(call.result)
                where = next(i for i, e in enumerate(page) if e["signature"] == victim.signature)
                page.insert(where + 1, {**page[where], "signature": fake})  # listed older
                return hostile.result(call, page)
            if call.method == "getTransaction" and call.params[0] == fake:
                return hostile.result(call, forged)
            return None

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as lying,
        ):
            report = await fills_flow.poll_once(lying, pg_engine)
            key = ("perp", true_fill.market_index, true_fill.fill_record_id)
            week = week_of(victim.block_time)
            code, _, err = await run_cli("fills", "check", url=pg_url)
            assert code == 1
            assert f"#{key[2]} has two records" in err
            with pg_engine.connect() as conn:
                problems = close_flow.fill_problems(conn, week)
                found = store_fills.conflicts(conn, week)
            assert any(
                "two different records" in p and f"perp-{key[1]} #{key[2]}" in p for p in problems
            )
            assert [(c.market_type, c.market_index, c.fill_record_id) for c in found] == [key]
            (conflict,) = found
            # The forged record came first and holds the id; the chain's is kept beside it.
            assert (conflict.stored_signature, conflict.other.signature) == (fake, victim.signature)
            assert conflict.other.quote_filled == true_fill.quote
            assert conflict.other.maker == str(true_fill.maker)
            assert report.conflicts == (key,)
            # Read everything again (as after a crash): the same records are no conflict.
            before = stored(pg_engine)
            with pg_engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM fill_watermarks"))
            again = await fills_flow.poll_once(lying, pg_engine)
    assert again.new_fills == 0
    assert again.conflicts == ()
    assert stored(pg_engine) == before
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fill_conflicts")).scalar_one() == 1


def test_close_refuses_a_week_with_two_records_for_a_fill_id_until_forced(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """close-week refuses a week while one of its fill ids has two different records; with
    --force and a reason it closes, keeping the reason and the refusal it overrode."""
    built = test_close.build_week(pg_engine, tmp_path)
    chosen = built.fills[4]
    other = dataclasses.replace(
        chosen, signature=fake_signature(3), quote_filled=chosen.quote_filled * 1000
    )
    with pg_engine.begin() as conn:
        store_fills.write(conn, [other], watermark=None)
    with pytest.raises(flow_errors.CloseRefusedError) as refused:
        test_close.close(pg_engine, built)
    why = f"perp-{chosen.market_index} #{chosen.fill_record_id}"
    assert "two different records" in str(refused.value)
    assert why in str(refused.value)
    with pytest.raises(flow_errors.CloseError, match="--reason"):
        test_close.close(pg_engine, built, force=True)
    outcome = test_close.close(pg_engine, built, force=True, reason="the chain's record is ours")
    assert outcome.close.forced
    assert any("two different records" in r and why in r for r in outcome.close.overridden)
    # The record stored first is the one paid: the conflict changed nothing silently.
    assert outcome.result == test_close.close(pg_engine, built).result


# ---------------------------------------------------------------- logs cut without a marker


@pytest.mark.asyncio
async def test_logs_cut_without_a_marker_or_missing_are_not_read(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """A Drift transaction whose logs end inside Drift's frame (no "Log truncated"), or whose
    logs are null, holds the watermark and is asked again; one that reads on a retry is stored,
    one the node keeps cutting is recorded unreadable, reported, and passed."""
    async with simnet("default", seed=63) as (node, _):
        await node.advance(30)
        txs = fill_txs(node)
        cut, nulled = txs[5], txs[10]
        served: collections.Counter[str] = collections.Counter()

        def rewrite(call: hostile.Call) -> Json:
            if call.method != "getTransaction" or not isinstance(call.result, dict):
                return None
            signature = call.params[0]
            served[signature] += 1
            out = copy.deepcopy(call.result)
            if signature == cut.signature:  # always, and never saying so
                out["meta"]["logMessages"] = out["meta"]["logMessages"][:5]
            elif signature == nulled.signature and served[signature] == 1:
                out["meta"]["logMessages"] = None
            else:
                return None
            return hostile.result(call, out)

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as cutting,
        ):
            first = await fills_flow.poll_once(cutting, pg_engine, RETRY)
            mark = watermark(pg_engine)
            assert mark is None or mark.slot <= cut.slot
            assert mark is None or mark.signature != cut.signature
            assert not first.caught_up
            assert set(first.retrying_signatures) == {cut.signature, nulled.signature}
            # What the node served whole is stored, before the two and after them.
            assert stored(pg_engine) == truth_rows(node, lost=rows_of(node, cut, nulled))
            second = await fills_flow.poll_once(cutting, pg_engine, RETRY)
            assert not second.caught_up
            third = await fills_flow.poll_once(cutting, pg_engine, RETRY)
    assert nulled.signature in second.recovered_signatures  # its logs came whole on try 2
    assert third.unreadable_signatures == (cut.signature,)
    assert third.caught_up
    assert stored(pg_engine) == truth_rows(node, lost=rows_of(node, cut))
    with pg_engine.connect() as conn:
        (unread,) = store_fills.unread_of_week(conn, week_of(cut.block_time))
    assert (unread.signature, unread.kind, unread.unreadable) == (cut.signature, "cut", True)
    assert "no success line" in unread.reason
    code, _, err = await run_cli("fills", "check", url=pg_url)
    assert code == 1
    assert f"transaction {cut.signature}" in err
    assert "unreadable after 3 attempts" in err


# ---------------------------------------------------------------- the chain's counters


@pytest.mark.asyncio
async def test_counters_that_moved_while_nothing_was_stored_are_a_gap(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """A node that lists no signature at all: nothing is stored, but the markets' counters the
    daemon sampled moved, so `fills check` reports every fill after the first sample as
    missing (with and without the chain) and exits 1, instead of "no fills stored"."""
    async with simnet("default", seed=64) as (node, _):
        with pg_engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO markets (market_index, name) VALUES (:i, :n)"),
                [{"i": i, "n": m.name} for i, m in node.sim.markets.items()],
            )

        def rewrite(call: hostile.Call) -> Json:
            if call.method == "getSignaturesForAddress":
                return hostile.result(call, [])
            return None

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as silent,
        ):
            poller = fills_flow.Poller(
                silent,
                pg_engine,
                fills_flow.PollSettings(counter_every_s=0),
                metrics.Metrics(),
            )
            await node.advance(3)
            await poller.poll(datetime.now(UTC))
            await node.advance(40)
            await poller.poll(datetime.now(UTC))
            with_chain = await run_cli(
                "fills", "check", "--rpc-url", proxy.url, "--format", "json", url=pg_url
            )
    code, out, err = with_chain
    assert code == 1, err
    assert "no fills stored" not in out
    assert stored(pg_engine) == []
    with pg_engine.connect() as conn:
        first_sample = conn.execute(sa.text("SELECT min(slot) FROM fill_counters")).scalar_one()
    assert first_sample is not None
    names = {i: m.name for i, m in node.sim.markets.items()}
    expected = {
        (names[r[1]], r[2]) for r in truth_rows(node) if r[4] > first_sample
    }  # every fill after the first read of the counters
    assert expected
    without_chain = await run_cli("fills", "check", "--format", "json", url=pg_url)
    for code, out, err in (with_chain, without_chain):
        assert code == 1, err
        rows = json.loads(out)
        reported = {(r["market"], i) for r in rows for a, b in r["gaps"] for i in range(a, b + 1)}
        assert reported == expected
        assert all(r["fills"] == 0 for r in rows)
        assert "no fills stored" not in out


# ---------------------------------------------------------------- paging that never ends


@pytest.mark.asyncio
async def test_a_node_ignoring_before_is_stopped_at_the_second_page(pg_engine: sa.Engine) -> None:
    """A node that answers every page with the first one (it ignores `before`) gets two calls,
    not an endless loop: the poll fails with a clear error and nothing moves."""
    async with simnet("quiet", seed=65) as (node, _):
        node.set_faults(signature_burst=2_500)
        await node.advance(2)
        first_page: list[Json] = []

        def rewrite(call: hostile.Call) -> Json:
            if call.method != "getSignaturesForAddress":
                return None
            if "before" not in call.params[1]:
                first_page[:] = call.result
                return None
            return hostile.result(call, first_page)

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as stuck,
        ):
            with pytest.raises(chain_fills.PagingError, match="repeats signature"):
                await asyncio.wait_for(fills_flow.poll_once(stuck, pg_engine), 15)
            assert proxy.calls["getSignaturesForAddress"] == 2
    assert len(first_page) == chain_fills.MAX_SIGNATURES
    assert stored(pg_engine) == []
    assert watermark(pg_engine) is None


@pytest.mark.asyncio
async def test_pages_going_up_or_without_end_are_refused(pg_engine: sa.Engine) -> None:
    """A page whose slots go up is refused; so is a listing that never ends (fresh signatures
    on every page), after the poll's bound on calls. The daemon's job counts and logs both and
    goes on; no watermark moves."""
    async with simnet("default", seed=68) as (node, _):
        await node.advance(30)
        mode = "reversed"
        endless = 0

        def rewrite(call: hostile.Call) -> Json:
            nonlocal endless
            if call.method != "getSignaturesForAddress":
                return None
            if mode == "reversed":
                return hostile.result(call, list(reversed(call.result)))
            endless += 1
            slot = 10**9 - endless
            page = [
                {"signature": str(Signature(endless.to_bytes(4, "big") + bytes([n]) * 60)),
                 "slot": slot, "err": None, "blockTime": node.sim.ts}
                for n in range(100)
            ]  # fmt: skip
            return hostile.result(call, page)

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as lying,
        ):
            with pytest.raises(chain_fills.PagingError, match="goes up"):
                await asyncio.wait_for(fills_flow.poll_once(lying, pg_engine), 15)
            mode = "endless"
            registry = metrics.Metrics()
            poller = fills_flow.Poller(
                lying, pg_engine, fills_flow.PollSettings(max_pages=25), registry
            )
            await asyncio.wait_for(poller.poll(datetime.now(UTC)), 15)
    assert endless == 25
    exported = registry.render().decode()
    assert 'driftsnap_fills_polls_total{status="failed"} 1.0' in exported
    assert 'driftsnap_fills_anomalies_total{kind="paging"} 1.0' in exported
    assert stored(pg_engine) == []
    assert watermark(pg_engine) is None


# ---------------------------------------------------------------- one transaction in error


@pytest.mark.asyncio
async def test_one_transaction_the_node_errors_on_costs_only_itself(
    pg_engine: sa.Engine, pg_url: sa.URL
) -> None:
    """An RPC error for one signature, and an answer that is not a transaction for another:
    the rest is stored, the watermark waits before them while they are retried, one that
    answers on a retry is stored, the other is recorded unreadable (reported, passed) and is
    stored once the node serves it."""
    async with simnet("default", seed=66) as (node, _):
        await node.advance(30)
        txs = fill_txs(node)
        erring, garbled = txs[4], txs[8]
        healed = False
        served: collections.Counter[str] = collections.Counter()

        def rewrite(call: hostile.Call) -> Json:
            if call.method != "getTransaction":
                return None
            signature = call.params[0]
            served[signature] += 1
            if signature == erring.signature and not healed:
                return hostile.error(call, -32603, "Internal error")
            if signature == garbled.signature and served[signature] == 1:
                return hostile.result(call, ["not", "a", "transaction"])
            return None

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as flaky,
        ):
            first = await fills_flow.poll_once(flaky, pg_engine, RETRY)
            assert stored(pg_engine) == truth_rows(node, lost=rows_of(node, erring, garbled))
            mark = watermark(pg_engine)
            assert mark is None or mark.slot <= erring.slot
            assert mark is None or mark.signature != erring.signature
            assert not first.caught_up
            assert set(first.retrying_signatures) == {erring.signature, garbled.signature}
            second = await fills_flow.poll_once(flaky, pg_engine, RETRY)
            third = await fills_flow.poll_once(flaky, pg_engine, RETRY)
            assert garbled.signature in second.recovered_signatures
            assert third.unreadable_signatures == (erring.signature,)
            assert third.caught_up
            assert stored(pg_engine) == truth_rows(node, lost=rows_of(node, erring))
            with pg_engine.connect() as conn:
                (unread,) = store_fills.unread_of_week(conn, week_of(erring.block_time))
            assert (unread.signature, unread.kind, unread.unreadable) == (
                erring.signature,
                "error",
                True,
            )
            assert "Internal error" in unread.reason
            code, _, err = await run_cli("fills", "check", url=pg_url)
            assert code == 1
            assert f"transaction {erring.signature}" in err
            healed = True
            fourth = await fills_flow.poll_once(flaky, pg_engine, RETRY)
    assert erring.signature in fourth.recovered_signatures
    assert stored(pg_engine) == truth_rows(node)
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fill_unread")).scalar_one() == 0
    code, _, err = await run_cli("fills", "check", url=pg_url)
    assert code == 0, err


@pytest.mark.asyncio
async def test_a_node_failing_every_transaction_spends_no_attempts(pg_engine: sa.Engine) -> None:
    """When not one transaction of a batch is served, the node is failing, not a transaction:
    the poll fails as a whole and no transaction is counted towards unreadable."""
    async with simnet("default", seed=69) as (node, _):
        await node.advance(10)

        def rewrite(call: hostile.Call) -> Json:
            if call.method == "getTransaction":
                return hostile.error(call, -32603, "Internal error")
            return None

        async with (
            hostile.serve(node.url, rewrite) as proxy,
            rpc.Client(settings(proxy.url)) as down,
        ):
            for _ in range(RETRY.read_attempts + 1):
                with pytest.raises(errors.TransactionError, match="served readably"):
                    await fills_flow.poll_once(down, pg_engine, RETRY)
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fill_unread")).scalar_one() == 0
    assert stored(pg_engine) == []
    assert node.sim.slot > model.GENESIS_SLOT
