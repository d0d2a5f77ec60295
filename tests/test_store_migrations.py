"""Migrations: applied in order, recorded, re-applied as a no-op, edits and drift refused."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from driftsnap.store import migrations, schema
from driftsnap.store.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def empty_engine(pg_empty_url: sa.URL) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_empty_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def ledger(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        t = schema.schema_migrations
        return [tuple(r) for r in conn.execute(sa.select(t.c.version, t.c.name, t.c.sha256))]


def test_files_are_numbered_from_one_without_gaps() -> None:
    """The repository's migration files are 0001, 0002, ... and the first creates the schema."""
    files = migrations.discover()
    assert [m.version for m in files] == list(range(1, len(files) + 1))
    assert files[0].name == "0001_initial.sql"


def test_apply_runs_every_file_and_records_it(empty_engine: sa.Engine) -> None:
    """On an empty database apply() runs all files and the ledger holds each one's sha256."""
    files = migrations.discover()
    with empty_engine.begin() as conn:
        applied = migrations.apply(conn)
    assert applied == files
    assert ledger(empty_engine) == [(m.version, m.name, m.sha256) for m in files]
    with empty_engine.connect() as conn:
        assert migrations.check(conn).state == "ok"
        assert sa.inspect(conn).has_table("bracket_cells")


def test_reapplying_is_a_no_op(pg_engine: sa.Engine) -> None:
    """apply() on a migrated database applies nothing and leaves the ledger unchanged."""
    before = ledger(pg_engine)
    with pg_engine.begin() as conn:
        assert migrations.apply(conn) == ()
    assert ledger(pg_engine) == before


def test_behind_schema_is_refused_with_the_fix(empty_engine: sa.Engine) -> None:
    """check() on an unmigrated database says to run driftsnap migrate, and applies nothing."""
    with empty_engine.connect() as conn:
        with pytest.raises(SchemaError, match=r"behind .*run driftsnap migrate"):
            migrations.check(conn)
        assert migrations.status(conn).state == "behind"
        assert not sa.inspect(conn).has_table("schema_migrations")


def test_edited_migration_is_detected(pg_engine: sa.Engine) -> None:
    """A file whose content changed after it was applied fails check() and apply() by name."""
    files = migrations.discover()
    edited = (migrations.Migration(1, files[0].name, files[0].sql + "\n-- tweak\n"), *files[1:])
    with pg_engine.connect() as conn:
        assert migrations.status(conn, edited).edited == (files[0].name,)
        with pytest.raises(SchemaError, match=r"0001_initial\.sql was edited"):
            migrations.check(conn, edited)
    with pytest.raises(SchemaError, match="edited"), pg_engine.begin() as conn:
        migrations.apply(conn, edited)


def test_schema_ahead_of_the_code_is_refused(pg_engine: sa.Engine) -> None:
    """A ledger with a version this driftsnap has no file for is 'ahead': upgrade driftsnap."""
    with pg_engine.begin() as conn:
        conn.execute(
            sa.insert(schema.schema_migrations).values(
                version=99, name="0099_future.sql", sha256="0" * 64
            )
        )
    with pg_engine.connect() as conn, pytest.raises(SchemaError, match=r"ahead .*upgrade"):
        migrations.check(conn)


def test_a_new_file_is_pending_then_applied(pg_engine: sa.Engine) -> None:
    """A migration added after the first run is 'behind' until apply() runs just that file."""
    files = migrations.discover()
    extra = migrations.Migration(
        len(files) + 1, "0099_note.sql", "CREATE TABLE note (id integer PRIMARY KEY);"
    )
    with pg_engine.connect() as conn:
        assert migrations.status(conn, (*files, extra)).pending == (extra,)
    with pg_engine.begin() as conn:
        assert migrations.apply(conn, (*files, extra)) == (extra,)
    with pg_engine.connect() as conn:
        assert migrations.check(conn, (*files, extra)).version == extra.version


def test_a_failing_file_applies_nothing(empty_engine: sa.Engine) -> None:
    """If a later file fails, the earlier ones in the same run are rolled back with it."""
    files = migrations.discover()
    broken = migrations.Migration(len(files) + 1, "0099_broken.sql", "CREATE TABLE oops (;")
    with pytest.raises(SchemaError, match=r"0099_broken\.sql failed"), empty_engine.begin() as conn:
        migrations.apply(conn, (*files, broken))
    with empty_engine.connect() as conn:
        assert not sa.inspect(conn).has_table("markets")


def test_concurrent_migrators_apply_each_file_once(empty_engine: sa.Engine) -> None:
    """Two processes migrating at once: one applies, the other waits and finds nothing to do."""
    start = threading.Barrier(2)

    def migrate() -> int:
        start.wait()
        with empty_engine.begin() as conn:
            return len(migrations.apply(conn))

    with ThreadPoolExecutor(2) as pool:
        # result() re-raises a migrator's exception here.
        results = [f.result() for f in [pool.submit(migrate), pool.submit(migrate)]]
    assert sorted(results) == [0, len(migrations.discover())]
    assert len(ledger(empty_engine)) == len(migrations.discover())


def test_discover_refuses_gaps_and_odd_names(tmp_path: Path) -> None:
    """A missing number or a file not named NNNN_name.sql stops discovery with a clear error."""
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="expected migration 0002"):
        migrations.discover(tmp_path)
    (tmp_path / "0003_c.sql").unlink()
    (tmp_path / "2_Bad.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="NNNN_lowercase_name"):
        migrations.discover(tmp_path)
