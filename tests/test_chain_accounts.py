"""Account checks: discriminators and sizes from the IDL, reasons, skip budget, RPC encodings."""

from __future__ import annotations

import base64
import collections
import json
from pathlib import Path

import pytest
import zstandard
from anchorpy.coder.coder import Coder
from anchorpy_core.idl import Idl

from driftsnap import protocol
from driftsnap.chain import accounts, errors, idl

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/mainnet/accounts.json"
_FIXTURE_KIND = {
    accounts.Kind.USER: "User",
    accounts.Kind.PERP_MARKET: "PerpMarket",
}


def test_discriminators_are_anchors() -> None:
    """sha256("account:<Name>")[:8] equals the discriminator anchorpy's coder uses, every kind."""
    coder = Coder(Idl.from_json(idl.text()))
    for kind in accounts.Kind:
        assert accounts.DISCRIMINATORS[kind] == coder.accounts.acc_name_to_discriminator[kind.value]


def test_sizes_from_the_idl_are_the_real_account_sizes() -> None:
    """Every mainnet account of a kind has exactly the size the IDL layout gives that kind."""
    doc = json.loads(FIXTURES.read_text())
    lengths: dict[str, set[int]] = collections.defaultdict(set)
    for entry in doc["accounts"]:
        data = base64.b64decode(entry["data_base64"])
        for kind, disc in accounts.DISCRIMINATORS.items():
            if data[:8] == disc:
                lengths[kind.value].add(len(data))
    assert lengths == {
        "User": {4376},
        "PerpMarket": {1216},
        "PythLazerOracle": {48},
        "PrelaunchOracle": {120},
    }
    assert {k.value: accounts.SIZES[k] for k in accounts.Kind} == {
        k: next(iter(v)) for k, v in lengths.items()
    }


def test_check_names_the_first_failed_rule() -> None:
    """Owner is checked before discriminator, discriminator before length; a good account passes."""
    user = accounts.DISCRIMINATORS[accounts.Kind.USER] + bytes(
        accounts.SIZES[accounts.Kind.USER] - 8
    )
    drift = protocol.DRIFT_PROGRAM_ID
    assert accounts.check(drift, user, accounts.Kind.USER) is None
    assert accounts.check("11111111111111111111111111111111", user, accounts.Kind.USER) == "owner"
    assert accounts.check(drift, user, accounts.Kind.PERP_MARKET) == "discriminator"
    assert accounts.check(drift, user[:-1], accounts.Kind.USER) == "length"
    assert accounts.check(drift, b"", accounts.Kind.USER) == "discriminator"


def test_require_raises_an_account_error_carrying_the_reason() -> None:
    """``require`` turns a failed check into AccountError naming the account and the reason."""
    bad = accounts.RawAccount("Abc", protocol.DRIFT_PROGRAM_ID, bytes(10))
    with pytest.raises(
        errors.AccountError, match=r"Abc is not a Drift User \(discriminator"
    ) as info:
        accounts.require(bad, accounts.Kind.USER)
    assert info.value.reason == "discriminator"
    assert isinstance(info.value, errors.ChainError)


def test_the_snapshot_is_rejected_only_above_the_allowed_share() -> None:
    """2 bad of 100 passes a 2% budget and fails a 1% one, with the reasons in the message."""
    skipped = accounts.Skipped(seen=100)
    skipped.add(accounts.Reason.LENGTH)
    skipped.add(accounts.Reason.OWNER)
    skipped.enforce(0.02)
    with pytest.raises(
        errors.SnapshotRejectedError, match=r"2 of 100 User accounts .*length=1, owner=1"
    ):
        skipped.enforce(0.01)
    accounts.Skipped().enforce(0.0)  # nothing seen, nothing bad


def test_rpc_data_decodes_from_base64_and_base64_zstd() -> None:
    """Both encodings give the same bytes; zstd frames without a content size decode too."""
    data = bytes(range(256)) * 17
    b64 = {"data": [base64.b64encode(data).decode(), "base64"], "owner": "o"}
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    zstd = {"data": [base64.b64encode(streamed).decode(), "base64+zstd"], "owner": "o"}
    assert accounts.from_rpc("k", b64) == accounts.RawAccount("k", "o", data)
    assert accounts.from_rpc("k", zstd) == accounts.RawAccount("k", "o", data)


@pytest.mark.parametrize(
    "account",
    [
        {"data": ["not base64!", "base64"], "owner": "o"},
        {"data": ["AAAA", "base58"], "owner": "o"},
        {"data": ["AAAA", "base64+zstd"], "owner": "o"},
        {"data": "AAAA", "owner": "o"},
        {"owner": "o"},
    ],
)
def test_undecodable_rpc_data_is_an_encoding_error(account: dict[str, object]) -> None:
    """Bad base64, an unknown encoding, a broken zstd frame, a malformed field: reason encoding."""
    with pytest.raises(errors.AccountError) as info:
        accounts.from_rpc("k", account)
    assert info.value.reason == "encoding"


def test_undecodable_program_accounts_are_counted_not_raised() -> None:
    """In a gPA result, a broken item is skipped as ``encoding`` and counted as seen."""
    data = accounts.DISCRIMINATORS[accounts.Kind.USER]
    good = {
        "pubkey": "k",
        "account": {"data": [base64.b64encode(data).decode(), "base64"], "owner": "o"},
    }
    broken = {"pubkey": "b", "account": {"data": ["%%%", "base64"], "owner": "o"}}
    skipped = accounts.Skipped()
    got = accounts.from_program_accounts([good, broken, {"account": {}}], skipped)
    assert got == [accounts.RawAccount("k", "o", data)]
    assert skipped.seen == 2
    assert skipped.by_reason == {accounts.Reason.ENCODING: 2}
