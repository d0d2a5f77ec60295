"""URLs, secrets, the embedded server and the single-writer lock (store.database, store.locks)."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from driftsnap.store import database, locks
from driftsnap.store.errors import ConnectError, LockError

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
    with pytest.raises(ConnectError) as info:
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
    with pytest.raises(ConnectError, match="mysql://"):
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
    """try_acquire succeeds for one session only; acquire times out naming the holder's pid."""
    with pg_engine.connect() as first, pg_engine.connect() as second:
        assert locks.try_acquire_writer(first)
        assert not locks.try_acquire_writer(second)
        pid = first.execute(sa.select(sa.func.pg_backend_pid())).scalar()
        first.commit()
        with pytest.raises(LockError, match=f"server process {pid}"):
            locks.acquire_writer(second, timeout_s=0.2, poll_s=0.05)
        locks.release_writer(first)
        locks.acquire_writer(second, timeout_s=1)
        with pytest.raises(LockError, match="does not hold"):
            locks.release_writer(first)
        locks.release_writer(second)


def test_writer_lock_block_excludes_a_second_daemon(pg_engine: sa.Engine) -> None:
    """Inside writer_lock() a second writer_lock() fails; after the block the lock is free."""
    with locks.writer_lock(pg_engine), pytest.raises(LockError), locks.writer_lock(pg_engine):
        pass
    with pg_engine.connect() as conn:
        assert locks.holder(conn) is None
