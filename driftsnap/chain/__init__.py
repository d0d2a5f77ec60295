"""Read-only Solana/Drift access: RPC client, account decoding, books, fills.

Rules of this room (enforced by import-linter in pyproject.toml): it may use ``driftsnap.scoring``
types (a book is what it produces) but never imports ``driftsnap.store``, the daemon or the CLI;
it never holds a private key and never sends a transaction.

From an RPC endpoint to books, one module per step:

    idl          layouts from the IDL driftpy ships: numpy dtypes, discriminators, enum variants
    accounts     program id, the kinds read, check(owner, data, kind), Skipped counts, RPC data
    users        many User accounts at once, as numpy views over their bytes
    eligibility  spec 1.1 (resting limit order, trigger fired, size left, not expired) and prices
    markets      PerpMarket accounts, selection by name or index, oracle prices via driftpy
    books        eligible orders of the configured markets, sorted, as ``scoring.book.Book``
    rpc          our JSON-RPC client over httpx: throttles per method class, the 429 pause of
                 the whole endpoint, retries with backoff, typed errors, a redacted URL
    snapshot     one read: User gPA at slot S, markets and oracles at minContextSlot S, block
                 time, books; rejected (with a reason) when slots disagree or accounts are bad
    fills        Drift program signatures paged to a watermark, transactions, fill events
                 parsed with driftpy's log parser, User authorities, fill counters, UserStats
    errors       ChainError and its subclasses (hierarchy drawn there)

driftpy's decoders and math are the reference: the tests hold every decoded field, verdict and
price equal to ``decode_user``, ``is_resting_limit_order`` and ``get_limit_price``. Its
``DriftClient``, ``UserMap`` and ``DLOB`` are not used: they need a wallet, swallow errors, and the
DLOB's L2/L3 views come out of price order when fixed and oracle-offset orders share a side.
"""
