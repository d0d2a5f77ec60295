"""PostgreSQL advisory locks: one writing daemon per database, one migrator, one close at a time.

The writer lock is session-level: it is held by one connection for as long as that connection
lives, so the daemon keeps a dedicated connection open (:class:`Writer`) and loses the lock
only if that connection dies, in which case the server releases it for the next daemon. The
migration and close locks are transaction-level and go with the commit or rollback.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from driftsnap import logs
from driftsnap.store import database
from driftsnap.store.errors import LockError, LostLockError

log = logs.get(__name__)


def _key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


WRITER = _key("driftsnap/writer")
MIGRATIONS = _key("driftsnap/migrations")
CLOSE = _key("driftsnap/close")  # its own: a close never waits for the writer, only for a close


def lock_migrations(conn: sa.Connection) -> None:
    """Wait for the migration lock; it is released when the current transaction ends."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATIONS)))


def lock_close(conn: sa.Connection) -> None:
    """Wait for the close lock (two closes, or a close and a forfeit, run one after the other);
    it is released when the current transaction ends."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLOSE)))


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


def release_writer(conn: sa.Connection) -> None:
    """Release the writer lock held by ``conn``'s session; :class:`LockError` if it held none."""
    released = bool(conn.execute(sa.select(sa.func.pg_advisory_unlock(WRITER))).scalar())
    conn.commit()
    if not released:
        raise LockError("this session does not hold the writer lock")


class Writer:
    """This process's claim to be the database's one writer: the writer lock, held by a session
    of its own for as long as the process writes.

    ``held`` says whether the process is the writer. The lock's session may die with the server
    (a restart): the process is still the writer, and :meth:`ensure`, called before each write,
    takes the lock again on a new session, unless another daemon took it meanwhile
    (:class:`LostLockError`: this one is then standby again). Every method blocks: call them in
    a worker thread.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn: sa.Connection | None = None
        self._pid: int | None = None
        self.held = False

    def try_take(self) -> bool:
        """Take the writer lock if it is free; whether this process now holds it."""
        try:
            self.held = self._take()
        except database.DRIVER_ERRORS as exc:
            raise database.error(self._engine.url, exc) from None
        return self.held

    def ensure(self) -> None:
        """Check that the lock's session still holds it; take it again if that session died and
        the lock is free; :class:`LostLockError` if another daemon holds it now.

        A lock lost between this check and the commit is harmless: ticks are keyed by their
        instant and intervals checked, so two writers cannot store one interval twice.
        """
        conn = self._conn
        if conn is not None:
            try:
                pid = holder(conn)
                conn.commit()
                if pid == self._pid:
                    return
            except database.DRIVER_ERRORS:
                pass  # the session died with the server: see whether the lock can be had again
            conn.invalidate()
            conn.close()
            self._conn = None
        try:
            taken = self._take()
        except database.DRIVER_ERRORS as exc:
            raise database.error(self._engine.url, exc) from None
        if not taken:
            self.held = False
            raise LostLockError("another daemon holds the writer lock now")
        log.info("writer_lock_reacquired")

    def release(self) -> None:
        """Give the lock up (a session that died has lost it already)."""
        conn, self._conn = self._conn, None
        self.held = False
        if conn is None:
            return
        try:
            release_writer(conn)
            log.info("writer_released")
        except (*database.DRIVER_ERRORS, LockError):
            conn.invalidate()  # the server releases a dead session's lock by itself
        finally:
            conn.close()

    def _take(self) -> bool:
        conn = self._engine.connect()
        try:
            got = try_acquire_writer(conn)
            if got:
                self._pid = conn.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
                conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True
