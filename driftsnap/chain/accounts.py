"""Drift accounts as raw bytes: the program id, what each kind must look like, and the checks.

An account is trusted only when its owner is the Drift program, its first 8 bytes are the anchor
discriminator of the expected kind and its length is exactly that kind's size. The discriminator
alone is not enough: a program upgrade that grows an account keeps the discriminator, and reading
the new layout with the old offsets would give wrong orders silently.

Decoding is bounded too: account data is never decoded or inflated past the size the caller
expects (a User is 4,376 bytes; by default Solana's own 10 MiB limit), so a zstd frame that would
inflate a few kilobytes into a gigabyte is refused after ``max_size + 1`` bytes.
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
# Solana's MAX_PERMITTED_DATA_LENGTH: no account holds more, whatever its program.
MAX_ACCOUNT_BYTES: Final = 10 * 1024 * 1024


class Reason(enum.StrEnum):
    """Why an account was not used."""

    OWNER = "owner"  # not owned by the Drift program
    DISCRIMINATOR = "discriminator"  # another account kind, or not an anchor account at all
    LENGTH = "length"  # right kind, wrong size: another program version's layout
    ENCODING = "encoding"  # the RPC's data field could not be decoded
    ENUM = "enum"  # an open order with an enum byte the IDL does not define
    DUPLICATE = "duplicate"  # the same address twice in one response
    BOUNDS = "bounds"  # an open order with a number the protocol cannot hold (see users.py)


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
    pubkey: str,
    account: Mapping[str, Any],
    decompressor: zstandard.ZstdDecompressor | None = None,
    *,
    max_size: int = MAX_ACCOUNT_BYTES,
) -> RawAccount:
    """A ``getProgramAccounts``/``getMultipleAccounts`` account object in JSON, decoded.

    ``data`` is ``[text, "base64"]`` or ``[text, "base64+zstd"]``; anything else raises
    :class:`~driftsnap.chain.errors.AccountError` with reason ``encoding``. Data longer than
    ``max_size`` bytes (decoded, or inflated) raises it with reason ``length``, without being
    decoded or inflated past that.
    """
    try:
        text, encoding = account["data"]
        # zstd never grows data by more than about 1/128 (ZSTD_compressBound), nor base64 by
        # more than 4/3: longer text cannot hold an account of max_size.
        if isinstance(text, str) and len(text) > max_text(max_size):
            raise _too_long(pubkey, max_size, f"{len(text):,} characters of base64")
        raw = binascii.a2b_base64(text, strict_mode=True)
        if encoding == "base64+zstd":
            raw = _inflate(raw, decompressor or zstandard.ZstdDecompressor(), pubkey, max_size)
        elif encoding != "base64":
            raise ValueError(f"unsupported encoding {encoding!r}")
        if len(raw) > max_size:
            raise _too_long(pubkey, max_size, f"{len(raw):,} bytes")
        return RawAccount(pubkey=pubkey, owner=str(account["owner"]), data=raw)
    except (KeyError, TypeError, ValueError, binascii.Error, zstandard.ZstdError) as exc:
        raise errors.AccountError(
            f"account {pubkey}: undecodable data ({exc})", reason=Reason.ENCODING.value
        ) from exc


def _inflate(
    raw: bytes, decompressor: zstandard.ZstdDecompressor, pubkey: str, max_size: int
) -> bytes:
    """A zstd frame, inflated; :class:`AccountError` (length) past ``max_size``.

    A frame that records its content size is inflated into a buffer of that size (zstd will
    not write past it), refused unread if the size is too large; Solana's frames need not record
    it, and those get a buffer of ``max_size + 1`` bytes. Either way nothing is allocated past
    the bound, whatever the frame says or holds.
    """
    declared = zstandard.frame_content_size(raw)  # -1: not recorded
    if declared > max_size:
        raise _too_long(pubkey, max_size, f"a zstd frame of {declared:,} bytes")
    try:
        data: bytes = decompressor.decompress(raw, max_output_size=max_size + 1)
    except zstandard.ZstdError:
        # Broken, or larger than the buffer: a bounded read says which.
        reader = decompressor.stream_reader(raw, read_across_frames=False)
        if len(reader.read(max_size + 1)) > max_size:
            raise _too_long(pubkey, max_size, "a zstd frame that inflates further") from None
        raise
    return data


def max_text(max_size: int) -> int:
    """The most base64 characters that can hold an account of ``max_size`` bytes (zstd or not)."""
    compressed = max_size + max_size // 128 + 1024
    return 4 * ((compressed + 2) // 3)


def _too_long(pubkey: str, max_size: int, what: str) -> errors.AccountError:
    return errors.AccountError(
        f"account {pubkey}: data of {what}, more than the {max_size:,} bytes expected",
        reason=Reason.LENGTH.value,
    )


def from_program_accounts(
    items: Iterable[Any], skipped: Skipped, *, max_size: int = MAX_ACCOUNT_BYTES
) -> list[RawAccount]:
    """The ``value`` list of a ``getProgramAccounts`` result, decoded.

    An item that does not decode is counted in ``skipped`` (seen, reason ``encoding``, or
    ``length`` past ``max_size`` bytes) and left out; the accounts returned are counted as seen
    by whoever checks them next.
    """
    out: list[RawAccount] = []
    decompressor = zstandard.ZstdDecompressor()
    for item in items:
        try:
            out.append(
                from_rpc(str(item["pubkey"]), item["account"], decompressor, max_size=max_size)
            )
        except (KeyError, TypeError):
            skipped.seen += 1
            skipped.add(Reason.ENCODING)
        except errors.AccountError as exc:
            skipped.seen += 1
            skipped.add(Reason(exc.reason))
    return out
