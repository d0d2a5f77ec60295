"""What the store can go wrong with, under :class:`driftsnap.errors.DriftsnapError`.

    DriftsnapError
    └── StoreError               anything about the database the daemon cannot work around
        ├── ConnectError         a malformed database URL, or a server that cannot be reached
        ├── EmbeddedServerError  the embedded PostgreSQL could not be initialised or started
        ├── SchemaError          migrations behind or ahead of this driftsnap, or one edited
        ├── LockError            another driftsnap holds the single-writer lock
        └── IntegrityError       data that contradicts what is stored (a market renamed, a seed
                                 that does not match its commitment, ...)

No message ever contains a database password: URLs are rendered with it masked and driver
messages are scrubbed before they are wrapped (see :mod:`driftsnap.store.database`).
"""

from __future__ import annotations

from driftsnap.errors import DriftsnapError


class StoreError(DriftsnapError):
    """The database could not be used as asked."""


class ConnectError(StoreError):
    """A malformed database URL, or a server that refused or did not answer."""


class EmbeddedServerError(StoreError):
    """The embedded PostgreSQL could not be initialised or started; the message says where."""


class SchemaError(StoreError):
    """The database schema does not match this driftsnap's migrations."""


class LockError(StoreError):
    """The single-writer advisory lock is held by another session."""


class IntegrityError(StoreError):
    """Data that contradicts what the database already holds."""
