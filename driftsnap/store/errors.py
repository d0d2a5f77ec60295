"""What the store can go wrong with, under :class:`driftsnap.errors.DriftsnapError`.

    DriftsnapError
    └── StoreError               anything about the database the daemon cannot work around
        ├── ConnectError         a malformed database URL, or a server that cannot be reached
        │                        or went away while in use
        ├── QueryError           a statement the server refused (a closed week's trigger, a
        │                        constraint, a lock timeout)
        ├── EmbeddedServerError  the embedded PostgreSQL could not be initialised or started
        ├── SchemaError          migrations behind or ahead of this driftsnap, or one edited
        ├── LockError            another driftsnap holds the single-writer lock
        │   └── LostLockError    the writer's lock went to another daemon while its session
        │                        was gone
        └── IntegrityError       data that contradicts what is stored (a market renamed, a seed
                                 that does not match its commitment, ...)

Code above the store never sees a driver exception: connections and transactions taken through
:func:`driftsnap.store.database.connect` and :func:`~driftsnap.store.database.begin` turn
SQLAlchemy's and psycopg's errors into these. No message ever contains a database password: URLs
are rendered with it masked and driver messages are scrubbed before they are wrapped.
"""

from __future__ import annotations

from driftsnap.errors import DriftsnapError


class StoreError(DriftsnapError):
    """The database could not be used as asked."""


class ConnectError(StoreError):
    """A malformed database URL, or a server that refused or did not answer."""


class QueryError(StoreError):
    """A statement the server refused; the message is the server's first line."""


class EmbeddedServerError(StoreError):
    """The embedded PostgreSQL could not be initialised or started; the message says where."""


class SchemaError(StoreError):
    """The database schema does not match this driftsnap's migrations."""


class LockError(StoreError):
    """The single-writer advisory lock is held by another session."""


class LostLockError(LockError):
    """Another daemon took the writer lock while this one's session was gone."""


class IntegrityError(StoreError):
    """Data that contradicts what the database already holds."""
