"""Read-only Solana/Drift access: RPC client, account decoding, books, fills.

Rules of this room (enforced by import-linter in pyproject.toml): it may use ``driftsnap.scoring``
types (a book is what it produces) but never imports ``driftsnap.store``, the daemon or the CLI;
it never holds a private key and never sends a transaction.
"""
