"""What reading the chain can go wrong with, under :class:`driftsnap.errors.DriftsnapError`.

    DriftsnapError
    └── ChainError                   chain data that cannot be turned into a book
        ├── AccountError             an account failed its checks (owner, discriminator, length...)
        │   └── OutOfBoundsError     a market or oracle number the protocol cannot hold: the
        │                            snapshot is returned rejected (``out_of_bounds``)
        ├── SnapshotRejectedError    too large a share of the User accounts was bad: no books
        ├── MarketNotFoundError      a configured market (by name or index) is not on chain
        ├── UnsupportedOracleError   a market's oracle source is one driftsnap cannot price
        ├── OracleError              a market's oracle account is missing or does not decode
        ├── TransactionError         a getTransaction answer without the shape of one
        ├── ReadOnlyError            a call of an RPC method that is not a read (never sent)
        └── RpcError                 the RPC endpoint answered with an error (code, method)
            ├── NodeBehindError      -32005: the node lags the cluster           (retried)
            ├── MinContextSlotError  -32016, or a provider's -32603 saying so    (retried)
            ├── RateLimitedError     HTTP 429; the whole endpoint pauses         (retried)
            ├── RpcTimeoutError      no whole answer within the timeout          (retried)
            ├── TransportError       no JSON-RPC answer: connection refused or reset, an HTTP
            │                        error status, a body that is not JSON-RPC  (5xx and
            │                        connection errors retried; other statuses not)
            └── ResponseTooLargeError  a reply body beyond the configured cap  (not retried)

Single bad User accounts are not raised: they are skipped and counted
(:class:`driftsnap.chain.accounts.Skipped`); only their share decides whether the snapshot stands.
A snapshot whose slots disagree is not an error either: :mod:`driftsnap.chain.snapshot` returns it
rejected, with a reason. An :class:`RpcError` of a retried kind is raised only once the retries
are spent; its ``attempts`` says how many requests were made. No message carries the endpoint's
URL beyond its redacted form (``scheme://host[:port]/…``): the path or query may hold an API key.
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


class OutOfBoundsError(AccountError):
    """A PerpMarket or oracle account holding a number the protocol cannot have (an oracle price
    above any listing's, a confidence beyond it, a slot after the read): reason ``bounds``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="bounds")


class SnapshotRejectedError(ChainError):
    """More than the configured share of accounts was bad, so the snapshot is not trusted."""


class MarketNotFoundError(ChainError):
    """A configured market name or index that no PerpMarket account on chain carries."""

    exit_code = 2  # bad configuration (--market), not a run-time failure


class UnsupportedOracleError(ChainError):
    """A market whose oracle source driftsnap does not decode; the message names the market."""


class OracleError(ChainError):
    """A market's oracle account that is missing, malformed or gives no usable price."""


class TransactionError(ChainError):
    """A ``getTransaction`` answer that lacks a slot or logs: not something a node sends."""


class RpcError(ChainError):
    """A JSON-RPC call that failed; ``code`` is the JSON-RPC error code (or HTTP status) if any.

    ``retryable`` says whether the client tried (or would try) the call again.
    """

    retryable: bool = False

    def __init__(
        self,
        detail: str,
        *,
        method: str,
        endpoint: str,
        code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(f"{method} at {endpoint}: {detail}")
        self.detail = detail
        self.method = method
        self.endpoint = endpoint
        self.code = code
        self.attempts = 1
        if retryable is not None:
            self.retryable = retryable

    def gave_up(self, attempts: int) -> RpcError:
        """This error, marked as the last of ``attempts`` requests."""
        self.attempts = attempts
        self.args = (
            f"{self.method} at {self.endpoint}: {self.detail} (gave up after {attempts} attempts)",
        )
        return self


class NodeBehindError(RpcError):
    """-32005: the node is behind the cluster; another try (or node) may be current."""

    retryable = True


class MinContextSlotError(RpcError):
    """The node has not reached the ``minContextSlot`` asked for (-32016, or -32603 from some
    providers); retried with the same ``minContextSlot``."""

    retryable = True


class RateLimitedError(RpcError):
    """HTTP 429; ``retry_after_s`` is what the endpoint asked for (``None`` when it did not)."""

    retryable = True

    def __init__(
        self, detail: str, *, method: str, endpoint: str, retry_after_s: float | None
    ) -> None:
        super().__init__(detail, method=method, endpoint=endpoint, code=429)
        self.retry_after_s = retry_after_s


class RpcTimeoutError(RpcError):
    """No complete answer within the configured timeout."""

    retryable = True


class TransportError(RpcError):
    """No JSON-RPC answer at all: refused or dropped connection, HTTP error status, not JSON."""

    retryable = True


class ResponseTooLargeError(RpcError):
    """A reply body larger than the client's cap: refused unread past the cap, not retried
    (a node that sends it once sends it again)."""

    retryable = False


class ReadOnlyError(ChainError):
    """driftsnap only reads the chain: a method outside the read allowlist is never sent."""
