"""Numbered, never-edited SQL migrations, applied in order and recorded in a ledger.

Files are ``migrations/NNNN_name.sql`` (plain SQL, versions 1, 2, 3, ... without gaps). The ledger,
``schema_migrations``, records each applied file's version, name and sha256. :func:`apply` runs
the pending files in the caller's transaction under an advisory lock, so two processes migrating
at once apply each file once and a failing file leaves the database as it was. :func:`check` is
what ``driftsnap run`` calls: it refuses a database that is behind (``run driftsnap migrate``),
ahead (a newer driftsnap migrated it) or whose applied migrations were edited since.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psycopg
import sqlalchemy as sa

from driftsnap import logs
from driftsnap.store import database, locks, schema
from driftsnap.store.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logs.get(__name__)


def _directory() -> Path:
    """The repository's ``migrations/`` in a source checkout or an editable install; else the
    copy a wheel installs under ``<prefix>/share/driftsnap/migrations`` (the container image)."""
    source = Path(__file__).resolve().parents[2] / "migrations"  # driftsnap/store/migrations.py
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "driftsnap" / "migrations"


DIRECTORY = _directory()

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, file name and SQL text."""

    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        """The hex sha256 of the SQL, as the ledger records it."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = DIRECTORY) -> tuple[Migration, ...]:
    """The migration files of ``directory`` in order; :class:`SchemaError` on gaps or odd names."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix == ".sql")
    except OSError as exc:
        raise SchemaError(f"cannot read the migrations in {directory}: {exc.strerror}") from None
    found: list[Migration] = []
    for path in paths:
        match = _FILE_RE.match(path.name)
        if match is None:
            raise SchemaError(f"{path}: a migration is named NNNN_lowercase_name.sql")
        found.append(Migration(int(match[1]), path.name, path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise SchemaError(
                f"{directory}: expected migration {expected:04d}, found {migration.name}"
            )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Status:
    """Where a database stands against the migration files."""

    applied: tuple[int, ...]
    pending: tuple[Migration, ...]
    unknown: tuple[int, ...]  # applied versions this driftsnap has no file for
    edited: tuple[str, ...]  # applied files whose content changed since

    @property
    def state(self) -> Literal["ok", "behind", "ahead", "edited"]:
        """``edited``, ``ahead`` (unknown versions), ``behind`` (files pending) or ``ok``."""
        if self.edited:
            return "edited"
        if self.unknown:
            return "ahead"
        return "behind" if self.pending else "ok"

    @property
    def version(self) -> int:
        """The highest applied version (0 on a fresh database)."""
        return max(self.applied, default=0)


def _ledger(conn: sa.Connection) -> dict[int, tuple[str, str]]:
    name = schema.schema_migrations.name
    exists, readable, user = conn.execute(
        sa.text(
            "SELECT to_regclass(:t) IS NOT NULL, CASE WHEN to_regclass(:t) IS NOT NULL"
            " THEN has_table_privilege(to_regclass(:t), 'SELECT') END, current_user"
        ),
        {"t": name},
    ).one()
    if not exists:
        return {}
    if not readable:
        # A role of `driftsnap db roles` before `migrate` granted it anything.
        raise SchemaError(
            f"role {user} has no privileges on this database yet: run driftsnap migrate "
            "(or driftsnap db roles) as the schema owner, which grants the roles theirs"
        )
    rows = conn.execute(
        sa.select(
            schema.schema_migrations.c.version,
            schema.schema_migrations.c.name,
            schema.schema_migrations.c.sha256,
        )
    )
    return {version: (name, sha) for version, name, sha in rows}


def _compare(ledger: dict[int, tuple[str, str]], files: Sequence[Migration]) -> Status:
    by_version = {m.version: m for m in files}
    edited = tuple(
        name
        for version, (name, sha) in sorted(ledger.items())
        if version in by_version and by_version[version].sha256 != sha
    )
    return Status(
        applied=tuple(sorted(ledger)),
        pending=tuple(m for m in files if m.version not in ledger),
        unknown=tuple(sorted(v for v in ledger if v not in by_version)),
        edited=edited,
    )


def status(conn: sa.Connection, files: Sequence[Migration] | None = None) -> Status:
    """Compare the ledger with the migration files (default: :func:`discover`)."""
    return _compare(_ledger(conn), discover() if files is None else files)


def _raise_for(state: Status, files: Sequence[Migration]) -> None:
    latest = files[-1].version if files else 0
    if state.edited:
        raise SchemaError(
            f"migration {', '.join(state.edited)} was edited after it was applied to this "
            "database (its sha256 differs from the ledger); restore the file and add a new one"
        )
    if state.unknown:
        raise SchemaError(
            f"database schema is ahead of this driftsnap (version {state.version}, this driftsnap "
            f"knows up to {latest}): upgrade driftsnap"
        )
    if state.pending:
        raise SchemaError(
            f"database schema is behind (version {state.version} of {latest}): "
            "run driftsnap migrate"
        )


def check(conn: sa.Connection, files: Sequence[Migration] | None = None) -> Status:
    """The status if the schema is current; else a :class:`SchemaError` saying what to do."""
    files = discover() if files is None else files
    state = status(conn, files)
    _raise_for(state, files)
    return state


def apply(conn: sa.Connection, files: Sequence[Migration] | None = None) -> tuple[Migration, ...]:
    """Apply the pending migrations in the caller's transaction; returns those applied.

    Call as ``with engine.begin() as conn: migrations.apply(conn)``. Re-applying is a no-op; an
    edited or unknown applied migration raises :class:`SchemaError` before anything runs.
    """
    files = discover() if files is None else files
    # The transaction-scoped lock serialises concurrent migrators; the ledger is read after it,
    # so the second one sees what the first applied.
    locks.lock_migrations(conn)
    schema.schema_migrations.create(conn, checkfirst=True)
    state = status(conn, files)
    if state.edited or state.unknown:
        _raise_for(state, files)
    driver = database.driver(conn)
    for migration in state.pending:
        # Straight to psycopg: a file holds many statements, which only its simple-query path
        # (a query without parameters) accepts; SQLAlchemy would also read ':name' as a bind.
        try:
            driver.execute(migration.sql.encode())
        except psycopg.Error as exc:
            # The caller's transaction is failed: this and every file before it roll back.
            raise SchemaError(f"migration {migration.name} failed: {exc}") from exc
        conn.execute(
            sa.insert(schema.schema_migrations).values(
                version=migration.version, name=migration.name, sha256=migration.sha256
            )
        )
        log.info("migration_applied", version=migration.version, name=migration.name)
    return state.pending
