"""PostgreSQL advisory locks: one writing daemon per database, one migrator at a time.

The writer lock is session-level: it is held by one connection for as long as that connection
lives, so the daemon keeps a dedicated connection open (:func:`writer_lock`) and loses the lock
only if that connection dies, in which case the server releases it for the next daemon. The
migration lock is transaction-level and goes with the migration's commit or rollback.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftsnap import logs
from driftsnap.store.errors import LockError

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logs.get(__name__)


def _key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


WRITER = _key("driftsnap/writer")
MIGRATIONS = _key("driftsnap/migrations")


def lock_migrations(conn: sa.Connection) -> None:
    """Wait for the migration lock; it is released when the current transaction ends."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATIONS)))


def holder(conn: sa.Connection, key: int = WRITER) -> int | None:
    """Backend pid of the session holding advisory lock ``key``, if any."""
    # A bigint key is stored as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    pid: int | None = conn.execute(
        sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"high": high, "low": low},
    ).scalar()
    return pid


def try_acquire_writer(conn: sa.Connection) -> bool:
    """Take the writer lock for ``conn``'s session if it is free; ``False`` if another holds it."""
    got = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(WRITER))).scalar())
    # The lock is the session's, not the transaction's: end the transaction so the lock connection
    # does not sit "idle in transaction" for the daemon's lifetime.
    conn.commit()
    return got


def acquire_writer(conn: sa.Connection, *, timeout_s: float, poll_s: float = 0.5) -> None:
    """Take the writer lock, waiting up to ``timeout_s``; :class:`LockError` naming the holder."""
    deadline = time.monotonic() + timeout_s
    while not try_acquire_writer(conn):
        if time.monotonic() >= deadline:
            pid = holder(conn)
            conn.commit()
            who = f"server process {pid}" if pid is not None else "another session"
            raise LockError(
                f"another driftsnap writes to this database ({who} holds the writer lock); "
                "only one daemon may write per database"
            )
        time.sleep(poll_s)


def release_writer(conn: sa.Connection) -> None:
    """Release the writer lock held by ``conn``'s session; :class:`LockError` if it held none."""
    released = bool(conn.execute(sa.select(sa.func.pg_advisory_unlock(WRITER))).scalar())
    conn.commit()
    if not released:
        raise LockError("this session does not hold the writer lock")


@contextlib.contextmanager
def writer_lock(engine: sa.Engine, *, timeout_s: float = 0.0) -> Iterator[sa.Connection]:
    """Hold the writer lock on a dedicated connection for the ``with`` block.

    The yielded connection is the lock's; write ticks on other connections of the engine.
    """
    with engine.connect() as conn:
        acquire_writer(conn, timeout_s=timeout_s)
        log.info("writer_lock_acquired")
        try:
            yield conn
        finally:
            try:
                release_writer(conn)
            except (sa.exc.DBAPIError, LockError):
                # The session is broken or lost the lock: close it rather than return it to the
                # pool, so that no pooled session can keep holding the lock.
                conn.invalidate()
