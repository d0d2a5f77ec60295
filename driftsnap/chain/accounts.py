"""Drift accounts as raw bytes: the program id, what each kind must look like, and the checks.

An account is trusted only when its owner is the Drift program, its first 8 bytes are the anchor
discriminator of the expected kind and its length is exactly that kind's size. The discriminator
alone is not enough: a program upgrade that grows an account keeps the discriminator, and reading
the new layout with the old offsets would give wrong orders silently.
"""

from __future__ import annotations

import binascii
import collections
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import zstandard

from driftsnap import protocol
from driftsnap.chain import errors, idl

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


class Kind(enum.StrEnum):
    """Drift account kinds driftsnap reads; the value is the IDL account name."""

    USER = "User"
    PERP_MARKET = "PerpMarket"
    PYTH_LAZER_ORACLE = "PythLazerOracle"
    PRELAUNCH_ORACLE = "PrelaunchOracle"


DISCRIMINATORS: Final = {kind: idl.discriminator(kind.value) for kind in Kind}
SIZES: Final = {kind: 8 + idl.dtype(kind.value).itemsize for kind in Kind}


class Reason(enum.StrEnum):
    """Why an account was not used."""

    OWNER = "owner"  # not owned by the Drift program
    DISCRIMINATOR = "discriminator"  # another account kind, or not an anchor account at all
    LENGTH = "length"  # right kind, wrong size: another program version's layout
    ENCODING = "encoding"  # the RPC's data field could not be decoded
    ENUM = "enum"  # an open order with an enum byte the IDL does not define
    DUPLICATE = "duplicate"  # the same address twice in one response


@dataclass(frozen=True, slots=True)
class RawAccount:
    """One account as an RPC returns it: address, owner program and data bytes."""

    pubkey: str
    owner: str
    data: bytes


def check(owner: str, data: bytes, kind: Kind) -> Reason | None:
    """The first reason the account cannot be read as ``kind``, or ``None`` when it can."""
    if owner != protocol.DRIFT_PROGRAM_ID:
        return Reason.OWNER
    if data[:8] != DISCRIMINATORS[kind]:
        return Reason.DISCRIMINATOR
    if len(data) != SIZES[kind]:
        return Reason.LENGTH
    return None


def require(account: RawAccount, kind: Kind) -> bytes:
    """The account's data, or :class:`~driftsnap.chain.errors.AccountError` naming what is wrong."""
    reason = check(account.owner, account.data, kind)
    if reason is not None:
        raise errors.AccountError(
            f"account {account.pubkey} is not a Drift {kind.value} ({reason.value}: owner "
            f"{account.owner}, {len(account.data)} bytes)",
            reason=reason.value,
        )
    return account.data


@dataclass(slots=True)
class Skipped:
    """Accounts skipped in one read, by reason, against the number of accounts seen."""

    seen: int = 0
    by_reason: collections.Counter[Reason] = field(default_factory=collections.Counter)

    def add(self, reason: Reason, count: int = 1) -> None:
        """Count ``count`` more accounts skipped for ``reason`` (``seen`` is counted apart)."""
        self.by_reason[reason] += count

    @property
    def total(self) -> int:
        """The number of accounts skipped, whatever the reason."""
        return sum(self.by_reason.values())

    def share(self) -> float:
        """The share of the accounts seen that were skipped (0.0 when none were seen)."""
        return self.total / self.seen if self.seen else 0.0

    def enforce(self, max_share: float, *, what: str = "User accounts") -> None:
        """Reject the snapshot when more than ``max_share`` of the accounts were bad."""
        if self.share() > max_share:
            reasons = ", ".join(f"{r.value}={n}" for r, n in sorted(self.by_reason.items()))
            raise errors.SnapshotRejectedError(
                f"{self.total} of {self.seen} {what} were bad ({reasons}), more than the "
                f"allowed share {max_share:.2%}"
            )


def from_rpc(
    pubkey: str, account: Mapping[str, Any], decompressor: zstandard.ZstdDecompressor | None = None
) -> RawAccount:
    """A ``getProgramAccounts``/``getMultipleAccounts`` account object in JSON, decoded.

    ``data`` is ``[text, "base64"]`` or ``[text, "base64+zstd"]``; anything else raises
    :class:`~driftsnap.chain.errors.AccountError` with reason ``encoding``.
    """
    try:
        text, encoding = account["data"]
        raw = binascii.a2b_base64(text, strict_mode=True)
        if encoding == "base64+zstd":
            # Solana's zstd frames need not record their content size: stream-decode them.
            stream = (decompressor or zstandard.ZstdDecompressor()).decompressobj()
            raw = stream.decompress(raw)
            if not stream.eof or stream.unused_data:
                raise ValueError("not exactly one complete zstd frame")
        elif encoding != "base64":
            raise ValueError(f"unsupported encoding {encoding!r}")
        return RawAccount(pubkey=pubkey, owner=str(account["owner"]), data=raw)
    except (KeyError, TypeError, ValueError, binascii.Error, zstandard.ZstdError) as exc:
        raise errors.AccountError(
            f"account {pubkey}: undecodable data ({exc})", reason=Reason.ENCODING.value
        ) from exc


def from_program_accounts(items: Iterable[Any], skipped: Skipped) -> list[RawAccount]:
    """The ``value`` list of a ``getProgramAccounts`` result, decoded.

    An item that does not decode is counted in ``skipped`` (seen, reason ``encoding``) and left
    out; the accounts returned are counted as seen by whoever checks them next.
    """
    out: list[RawAccount] = []
    decompressor = zstandard.ZstdDecompressor()
    for item in items:
        try:
            out.append(from_rpc(str(item["pubkey"]), item["account"], decompressor))
        except (KeyError, TypeError, errors.AccountError):
            skipped.seen += 1
            skipped.add(Reason.ENCODING)
    return out
