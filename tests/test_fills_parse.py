"""Parsing a transaction's logs into fills: driftpy's parser, guarded event by event."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from driftsnap.chain import fills
from driftsnap.simnet import ledger, model, scenarios


@pytest.fixture(scope="module")
def two_fill_tx() -> ledger.Transaction:
    """A simulated transaction with two fill events (a taker crossing two makers)."""
    sim = model.Simulator(scenarios.DEFAULT, seed=3)
    for _ in range(500):
        sim.step()
        found = [tx for tx in sim.ledger.transactions.values() if len(tx.fills) >= 2]
        if found:
            return found[0]
    raise AssertionError("no two-fill transaction in 500 slots")


def answer(tx: ledger.Transaction, logs: list[str], err: Any = None) -> dict[str, Any]:
    """A getTransaction answer of ``tx`` with ``logs``: its message runs the compute budget
    program, then Drift (the logs are held against it)."""
    keys = list(tx.account_keys)
    programs = [model.COMPUTE_BUDGET_PROGRAM, model.DRIFT_PROGRAM]
    return {
        "slot": tx.slot,
        "blockTime": tx.block_time,
        "transaction": {
            "signatures": [tx.signature],
            "message": {
                "accountKeys": keys,
                "instructions": [
                    {"programIdIndex": keys.index(p), "accounts": [], "data": ""} for p in programs
                ],
            },
        },
        "meta": {
            "err": err,
            "logMessages": logs,
            "innerInstructions": [],
            "loadedAddresses": {"writable": [], "readonly": []},
        },
    }


def test_every_fill_event_becomes_a_fill(two_fill_tx: ledger.Transaction) -> None:
    """Each OrderActionRecord Fill of the logs is a Fill with the truth's fields."""
    tx = two_fill_tx
    parsed = fills.parse(tx.signature, answer(tx, list(tx.logs)))
    assert (parsed.failed, parsed.truncated, parsed.decode_errors) == (False, False, 0)
    assert [
        (f.market_index, f.fill_record_id, f.maker, f.taker, f.base_filled, f.quote_filled)
        for f in parsed.fills
    ] == [(f.market_index, f.fill_record_id, f.maker, f.taker, f.base, f.quote) for f in tx.fills]
    assert [f.event_index for f in parsed.fills] == [0, 1]
    assert all(f.maker_fee is not None and f.maker_fee <= 0 for f in parsed.fills)
    assert {f.action_explanation for f in parsed.fills} <= {
        "OrderFilledWithMatch",
        "OrderFilledWithMatchJit",
    }


def test_an_undecodable_event_is_counted_and_the_others_are_read(
    two_fill_tx: ledger.Transaction,
) -> None:
    """A Drift event whose bytes do not decode (another version) costs only itself."""
    tx = two_fill_tx
    logs = list(tx.logs)
    first = next(i for i, line in enumerate(logs) if line.startswith("Program data: "))
    raw = base64.b64decode(logs[first].removeprefix("Program data: "))
    logs[first] = "Program data: " + base64.b64encode(raw[:20]).decode()  # cut short
    parsed = fills.parse(tx.signature, answer(tx, logs))
    assert parsed.decode_errors == 1
    assert [f.fill_record_id for f in parsed.fills] == [tx.fills[1].fill_record_id]
    assert parsed.fills[0].event_index == 1  # indexes stay those of the logs


def test_an_unknown_event_is_counted(two_fill_tx: ledger.Transaction) -> None:
    """An event with a discriminator the IDL does not have (a newer program) is counted."""
    tx = two_fill_tx
    logs = list(tx.logs)
    first = next(i for i, line in enumerate(logs) if line.startswith("Program data: "))
    raw = base64.b64decode(logs[first].removeprefix("Program data: "))
    logs[first] = "Program data: " + base64.b64encode(b"\xff" * 8 + raw[8:]).decode()
    parsed = fills.parse(tx.signature, answer(tx, logs))
    assert parsed.decode_errors == 1
    assert len(parsed.fills) == 1


def test_truncated_logs_keep_what_came_before_the_cut(two_fill_tx: ledger.Transaction) -> None:
    """Logs ending in 'Log truncated' mark the transaction; events before the cut are read."""
    tx = two_fill_tx
    logs = [*tx.logs[:5], "Log truncated"]
    parsed = fills.parse(tx.signature, answer(tx, logs))
    assert parsed.truncated
    assert [f.fill_record_id for f in parsed.fills] == [tx.fills[0].fill_record_id]


def test_a_failed_transaction_carries_no_fills(two_fill_tx: ledger.Transaction) -> None:
    """A transaction with meta.err yields no fills although its logs show fill events."""
    tx = two_fill_tx
    parsed = fills.parse(tx.signature, answer(tx, list(tx.logs), {"InstructionError": [1, 0]}))
    assert parsed.failed
    assert parsed.fills == ()


def test_events_outside_the_drift_program_are_ignored(two_fill_tx: ledger.Transaction) -> None:
    """A 'Program data' line of another program (a CPI caller) is not a Drift event."""
    tx = two_fill_tx
    other = "Other111111111111111111111111111111111111111"
    data = next(line for line in tx.logs if line.startswith("Program data: "))
    logs = [f"Program {other} invoke [1]", data, f"Program {other} success", *tx.logs]
    parsed = fills.parse(tx.signature, answer(tx, logs))
    assert parsed.decode_errors == 0
    assert len(parsed.fills) == len(tx.fills)
