"""What reading the chain can go wrong with, under :class:`driftsnap.errors.DriftsnapError`.

    DriftsnapError
    └── ChainError                   chain data that cannot be turned into a book
        ├── AccountError             an account failed its checks (owner, discriminator, length...)
        ├── SnapshotRejectedError    too large a share of the User accounts was bad: no books
        ├── MarketNotFoundError      a configured market (by name or index) is not on chain
        ├── UnsupportedOracleError   a market's oracle source is one driftsnap cannot price
        └── OracleError              a market's oracle account is missing or does not decode

Single bad User accounts are not raised: they are skipped and counted
(:class:`driftsnap.chain.accounts.Skipped`); only their share decides whether the snapshot stands.
"""

from __future__ import annotations

from driftsnap.errors import DriftsnapError


class ChainError(DriftsnapError):
    """Chain data that cannot be turned into a book."""


class AccountError(ChainError):
    """An account that is not what its address or filter promised.

    ``reason`` is the machine-readable :class:`driftsnap.chain.accounts.Reason` value.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class SnapshotRejectedError(ChainError):
    """More than the configured share of accounts was bad, so the snapshot is not trusted."""


class MarketNotFoundError(ChainError):
    """A configured market name or index that no PerpMarket account on chain carries."""


class UnsupportedOracleError(ChainError):
    """A market whose oracle source driftsnap does not decode; the message names the market."""


class OracleError(ChainError):
    """A market's oracle account that is missing, malformed or gives no usable price."""
