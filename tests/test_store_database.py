"""URLs, secrets, the embedded server and the single-writer lock (store.database, store.locks)."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftsnap.errors import ConfigError
from driftsnap.store import database, locks
from driftsnap.store.errors import ConnectError, LockError, LostLockError

if TYPE_CHECKING:
    from pathlib import Path

SENTINEL = "S3ntinel-pa55word"


def everything_said(exc: BaseException) -> str:
    """All text an exception can end up printing: message, repr and the chained traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://driftsnap:{SENTINEL}@127.0.0.1:1/driftsnap",  # nothing listens on port 1
        f"postgresql://driftsnap:{SENTINEL}@127.0.0.1:notaport/driftsnap",  # malformed
        f"not a url {SENTINEL}",
    ],
)
def test_the_password_never_appears_in_errors_or_logs(
    url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed connection names the server with the password masked, in errors and in logs."""
    caplog.set_level(logging.DEBUG)
    # A malformed URL is bad configuration (exit 2), refused before any connection.
    with pytest.raises(ConfigError if "127.0.0.1:1/" not in url else ConnectError) as info:
        database.open(SecretStr(url))
    said = everything_said(info.value)
    out, err = capsys.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (said, out, err, logged):
        assert SENTINEL not in text
    if "127.0.0.1:1/" in url:
        assert "cannot connect to postgresql://driftsnap:***@127.0.0.1:1/driftsnap" in str(
            info.value
        )


def test_display_masks_the_password_and_keeps_the_rest() -> None:
    """display() gives a psql-ready URL with *** for the password; none when there is none."""
    url = database.parse(SecretStr(f"postgresql://u:{SENTINEL}@db.example:6543/scores"))
    assert url.drivername == "postgresql+psycopg"
    assert database.display(url) == "postgresql://u:***@db.example:6543/scores"
    bare = database.parse("postgresql://postgres:@/driftsnap?host=/tmp/x")
    assert database.display(bare) == "postgresql://postgres@/driftsnap?host=%2Ftmp%2Fx"


def test_a_non_postgres_url_is_refused() -> None:
    """Only postgresql:// (or libpq's postgres://) URLs are accepted; the error names the scheme."""
    with pytest.raises(ConfigError, match="mysql://"):
        database.parse("mysql://u@h/db")
    assert database.parse("postgres://u@h/db").drivername == "postgresql+psycopg"


def test_embedded_server_starts_once_and_is_reused(tmp_path: Path) -> None:
    """start_embedded creates the driftsnap database; a second start reuses the running server."""
    first = database.start_embedded(tmp_path / "data")
    try:
        again = database.start_embedded(tmp_path / "data")
        assert again.url == first.url
        assert first.url.database == database.DATABASE
        db = database.open(None, data_dir=tmp_path / "data")
        try:
            with db.engine.connect() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar() == "driftsnap"
        finally:
            db.engine.dispose()
        assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
    finally:
        first.stop()


def test_only_one_session_holds_the_writer_lock(pg_engine: sa.Engine) -> None:
    """try_acquire succeeds for one session only; holder names it; release frees it for another."""
    with pg_engine.connect() as first, pg_engine.connect() as second:
        assert locks.try_acquire_writer(first)
        assert not locks.try_acquire_writer(second)
        pid = first.execute(sa.select(sa.func.pg_backend_pid())).scalar()
        first.commit()
        assert locks.holder(second) == pid
        second.commit()
        locks.release_writer(first)
        assert locks.try_acquire_writer(second)
        with pytest.raises(LockError, match="does not hold"):
            locks.release_writer(first)
        locks.release_writer(second)


def _held(writer: locks.Writer) -> bool:
    return writer.held  # read anew: a method call changes it, which mypy does not see


def _kill_holder(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        pid = locks.holder(conn)
        conn.execute(sa.select(sa.func.pg_terminate_backend(pid)))
        conn.commit()


def test_one_writer_at_a_time_and_the_next_after_release(pg_engine: sa.Engine) -> None:
    """A second Writer cannot take the lock while the first holds it, and can once it is freed."""
    first, second = locks.Writer(pg_engine), locks.Writer(pg_engine)
    assert first.try_take()
    assert first.held
    assert not second.try_take()
    assert not second.held
    first.release()
    assert not _held(first)
    assert second.try_take()
    second.release()
    with pg_engine.connect() as conn:
        assert locks.holder(conn) is None


def test_a_writer_whose_session_died_takes_the_lock_again(pg_engine: sa.Engine) -> None:
    """ensure() after the lock's session is killed re-takes the free lock on a new session."""
    writer = locks.Writer(pg_engine)
    assert writer.try_take()
    _kill_holder(pg_engine)
    writer.ensure()
    assert writer.held
    with pg_engine.connect() as conn:
        assert locks.holder(conn) is not None
    writer.release()


def test_a_writer_whose_lock_went_to_another_daemon_is_told_so(pg_engine: sa.Engine) -> None:
    """Once another daemon took the lock while this one's session was gone, ensure() raises."""
    writer, other = locks.Writer(pg_engine), locks.Writer(pg_engine)
    assert writer.try_take()
    _kill_holder(pg_engine)
    assert other.try_take()
    with pytest.raises(LostLockError, match="another daemon"):
        writer.ensure()
    assert not _held(writer)
    other.release()
    writer.release()
