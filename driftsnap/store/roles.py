"""Database roles: who may do what to the store, granted table by table.

The **owner** (whoever runs ``driftsnap migrate``: the role of ``DRIFTSNAP_DATABASE_URL``, the
embedded server's superuser) owns the schema. Three login roles own nothing:

``writer`` (``driftsnap_writer``)
    ``driftsnap run``: INSERT and UPDATE on the tables a tick and the fills job write, DELETE on
    none but the week's pools (which the daemon replaces), nothing on a close's tables.
``closer`` (``driftsnap_closer``)
    ``close-week``, ``forfeit``, ``makers add|remove``: the close's rows, the seed's reveal,
    forfeits and registrations.
``reader`` (``driftsnap_reader``)
    every read-only command, people and dashboards: SELECT.

Every role reads every table and view. None holds TRUNCATE, REFERENCES or TRIGGER, and none owns
a table, so none can ALTER one or disable its triggers (migration 0006 also refuses TRUNCATE to
the owner). A role that is a superuser, the owner, or a member of the owner would defeat this:
:func:`create` refuses to use one.

:func:`grant` computes the grants from the catalog (every table, view and week partition in the
schema, and those a later migration adds), so it is re-run by every ``migrate``; it first revokes
everything the role held on them, so the grants are exactly these. Week partitions created later
copy their parent's grants (``driftsnap_create_week_partitions``, migration 0006).

Passwords are set as SCRAM-SHA-256 verifiers computed here: the clear password is never sent in
a statement, where ``log_statement`` would write it to the server's log.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import psycopg
import sqlalchemy as sa
from psycopg import sql

from driftsnap import logs
from driftsnap.errors import ConfigError
from driftsnap.store import schema
from driftsnap.store.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

log = logs.get(__name__)

Role = Literal["owner", "writer", "closer", "reader"]
LoginRole = Literal["writer", "closer", "reader"]
LOGIN_ROLES: Final[tuple[LoginRole, ...]] = ("writer", "closer", "reader")
DEFAULT_NAMES: Final[Mapping[LoginRole, str]] = {
    "writer": "driftsnap_writer",
    "closer": "driftsnap_closer",
    "reader": "driftsnap_reader",
}
PARTITION_FUNCTION: Final = "driftsnap_create_week_partitions(date)"
LEDGER: Final = schema.schema_migrations.name

# A privilege on a table, with its columns (empty: the whole table).
Privilege = tuple[str, tuple[str, ...]]

_INSERT: Final[Privilege] = ("INSERT", ())
_UPDATE: Final[Privilege] = ("UPDATE", ())
_DELETE: Final[Privilege] = ("DELETE", ())
_REVEAL: Final[Privilege] = ("UPDATE", ("seed", "revealed_at"))  # weeks.reveal_seed
# What the closer writes; the writer only reads these.
_CLOSER: Final[Mapping[str, tuple[Privilege, ...]]] = {
    "week_closes": (_INSERT,),
    "week_close_payouts": (_INSERT,),
    "weeks": (_REVEAL,),
    "participants": (_INSERT, _UPDATE, _DELETE),  # makers add (an upsert) and remove
    "forfeits": (_INSERT,),
    "week_exports": (_INSERT,),  # export-week (0007); the writer never touches it
}
# The writer's exceptions to "INSERT and UPDATE": the week's sampling record (the commitment is
# inserted, only the seed's reveal updated), the pools it replaces each tick, a transaction the
# node would not serve, whose row goes once it reads (0005), and a fill, of which only the
# commitment ever changes.
_WRITER: Final[Mapping[str, tuple[Privilege, ...]]] = {
    LEDGER: (),
    "weeks": (_INSERT, _REVEAL),
    "program_pools": (_INSERT, _UPDATE, _DELETE),
    "fill_unread": (_INSERT, _UPDATE, _DELETE),
    "fills": (_INSERT, ("UPDATE", ("commitment",))),  # confirmed -> finalized, nothing else
}


@dataclass(frozen=True, slots=True)
class Names:
    """The login roles' names (the user names of their configured URLs, else the defaults)."""

    writer: str = DEFAULT_NAMES["writer"]
    closer: str = DEFAULT_NAMES["closer"]
    reader: str = DEFAULT_NAMES["reader"]

    def of(self, role: LoginRole) -> str:
        """The name of ``role``."""
        name: str = getattr(self, role)
        return name

    def items(self) -> Iterator[tuple[LoginRole, str]]:
        """Each login role with its name."""
        for role in LOGIN_ROLES:
            yield role, self.of(role)


def privileges(table: str, role: LoginRole, *, view: bool = False) -> tuple[Privilege, ...]:
    """What ``role`` may do to ``table`` (a table's name, or a partition's parent's) beyond
    SELECT. A table no rule names (a later migration's) is the writer's to INSERT and UPDATE."""
    if view or role == "reader":
        return ()
    if role == "closer":
        return _CLOSER.get(table, ())
    if table in _CLOSER and table not in _WRITER:
        return ()
    return _WRITER.get(table, (_INSERT, _UPDATE))


# ---------------------------------------------------------------------------- the catalog


@dataclass(frozen=True, slots=True)
class Relation:
    """A table, view or partition driftsnap created: where it is, and what rules apply to it."""

    schema: str
    name: str
    base: str  # the parent table of a partition, else the name itself
    view: bool


@dataclass(frozen=True, slots=True)
class Session:
    """Who a connection is: its user, whether a superuser, and the schema's owner."""

    user: str
    superuser: bool
    owner: str | None  # None: no driftsnap schema in this database yet

    @property
    def owns(self) -> bool:
        """Whether the session can alter the schema (it is the owner, or a superuser)."""
        return self.superuser or self.user == self.owner


def session(conn: sa.Connection) -> Session:
    """Who ``conn`` is connected as."""
    row = conn.execute(
        sa.text(
            "SELECT current_user AS who, r.rolsuper AS superuser,"
            " (SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c"
            "  WHERE c.oid = to_regclass(:ledger)) AS owner"
            " FROM pg_roles AS r WHERE r.rolname = current_user"
        ),
        {"ledger": LEDGER},
    ).one()
    return Session(row.who, bool(row.superuser), row.owner)


def relations(conn: sa.Connection) -> list[Relation]:
    """Every table, view and week partition of the driftsnap schema (the ledger's schema) that
    the ledger's owner owns: another application's tables in a shared schema are left alone."""
    rows = conn.execute(
        sa.text(
            "SELECT n.nspname, c.relname, coalesce(p.relname, c.relname) AS base,"
            " c.relkind IN ('v', 'm') AS view"
            " FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid"
            " LEFT JOIN pg_class AS p ON p.oid = i.inhparent"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm')"
            "  AND c.relowner = (SELECT relowner FROM pg_class WHERE oid = to_regclass(:ledger))"
            "  AND (c.relnamespace = (SELECT relnamespace FROM pg_class"
            "       WHERE oid = to_regclass(:ledger)) OR n.nspname = :partitions)"
            " ORDER BY n.nspname, c.relname"
        ),
        {"ledger": LEDGER, "partitions": schema.PARTITION_SCHEMA},
    )
    return [Relation(s, n, b, bool(v)) for s, n, b, v in rows]


def existing(conn: sa.Connection, names: Names) -> tuple[LoginRole, ...]:
    """The login roles of ``names`` that exist on this server."""
    found = set(
        conn.execute(
            sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
            {"names": [n for _, n in names.items()]},
        ).scalars()
    )
    return tuple(role for role, name in names.items() if name in found)


# ---------------------------------------------------------------------------- passwords


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, 7677), which
    ``ALTER ROLE ... PASSWORD`` accepts as is. (SASLprep is the identity on ASCII passwords; a
    non-ASCII one is hashed as its UTF-8 bytes, as PostgreSQL does when SASLprep refuses it.)"""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


# ---------------------------------------------------------------------------- creating, granting


@contextlib.contextmanager
def _cursor(conn: sa.Connection) -> Iterator[psycopg.Cursor[Any]]:
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise SchemaError(f"expected a psycopg 3 connection, got {type(raw).__name__}")
    with raw.cursor() as cur:
        yield cur


def ensure(conn: sa.Connection, names: Names) -> list[str]:
    """Create each role of ``names`` that does not exist (LOGIN, no password, no attribute);
    the names created. Another process creating one at the same time is no error."""
    made = []
    for _, name in names.items():
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name}
        ).first()
        if exists is not None:
            continue
        with _cursor(conn) as cur:
            try:
                # A savepoint: a concurrent CREATE ROLE must not fail the caller's transaction.
                with cur.connection.transaction():
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateObject:
                continue
        made.append(name)
    return made


def create(
    conn: sa.Connection, names: Names, passwords: Mapping[LoginRole, str | None]
) -> tuple[list[str], list[str]]:
    """Create the roles that do not exist and set the passwords given (``db roles``); the names
    created, and those whose password was set. Needs CREATEROLE. A role that is a superuser, the
    owner or a member of the owner is refused (:class:`ConfigError`): connecting as it would give
    back what the roles take away."""
    me = session(conn)
    if me.owner is None:
        raise SchemaError("this database has no driftsnap schema yet: run driftsnap migrate first")
    check(conn, names, owner=me.owner)  # before creating anything
    made = ensure(conn, names)
    check(conn, names, owner=me.owner)
    changed = []
    for role, name in names.items():
        password = passwords.get(role)
        if password:
            with _cursor(conn) as cur:
                cur.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(name), sql.Literal(scram_verifier(password))
                    )
                )
            changed.append(name)
    return made, changed


def check(conn: sa.Connection, names: Names, *, owner: str) -> None:
    """:class:`ConfigError` if a role of ``names`` is a superuser, ``owner``, or a member of it."""
    seen: dict[str, LoginRole] = {}
    for role, name in names.items():
        if name in seen:
            raise ConfigError(
                f"the {seen[name]} and the {role} are both role {name}: give each its own role"
            )
        seen[name] = role
        row = conn.execute(
            sa.text(
                "SELECT rolsuper, pg_has_role(rolname, :owner, 'MEMBER') AS member"
                " FROM pg_roles WHERE rolname = :name"
            ),
            {"name": name, "owner": owner},
        ).first()
        if row is None:
            continue
        what = "the schema owner" if name == owner else None
        what = what or ("a superuser" if row.rolsuper else None)
        what = what or (f"a member of the schema owner {owner}" if row.member else None)
        if what:
            raise ConfigError(
                f"the {role} role {name} is {what}: it could alter tables and disable their "
                "triggers; connect the "
                f"{role} as a role of its own (DRIFTSNAP_{role.upper()}_DATABASE_URL)"
            )


def grant(conn: sa.Connection, names: Names, to: Iterable[LoginRole] = LOGIN_ROLES) -> int:
    """Grant the roles ``to`` exactly their privileges on every relation of the schema (see
    :func:`privileges`), revoking whatever else they held there; the number of relations.

    Run as the owner (or a superuser), in the caller's transaction; the roles must exist.
    """
    me = session(conn)
    if me.owner is None:
        raise SchemaError("this database has no driftsnap schema yet: run driftsnap migrate first")
    check(conn, names, owner=me.owner)
    wanted = set(to)
    chosen = [(role, name) for role, name in names.items() if role in wanted]
    rels = relations(conn)
    if not rels or not chosen:
        return 0
    everyone = [sql.Identifier(n) for _, n in chosen]
    schemas = sorted({r.schema for r in rels} | {schema.PARTITION_SCHEMA})
    by_privilege: dict[tuple[str, Privilege], list[Relation]] = {}
    for role, name in chosen:
        for rel in rels:
            for privilege in privileges(rel.base, role, view=rel.view):
                by_privilege.setdefault((name, privilege), []).append(rel)
    with _cursor(conn) as cur:
        cur.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(s) for s in schemas), sql.SQL(", ").join(everyone)
            )
        )
        targets = sql.SQL(", ").join(sql.Identifier(r.schema, r.name) for r in rels)
        everyone_sql = sql.SQL(", ").join(everyone)
        cur.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(targets, everyone_sql))
        cur.execute(sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(targets, everyone_sql))
        for (name, (verb, columns)), on in sorted(by_privilege.items()):
            cur.execute(
                sql.SQL("GRANT {}{} ON TABLE {} TO {}").format(
                    sql.SQL(verb),  # a constant of this module, never input
                    sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
                    if columns
                    else sql.SQL(""),
                    sql.SQL(", ").join(sql.Identifier(r.schema, r.name) for r in on),
                    sql.Identifier(name),
                )
            )
        function = conn.execute(
            sa.select(sa.func.to_regprocedure(PARTITION_FUNCTION).is_not(None))
        ).scalar_one()
        if function and "writer" in dict(chosen):
            cur.execute(
                sql.SQL(
                    "GRANT EXECUTE ON FUNCTION driftsnap_create_week_partitions(date) TO {}"
                ).format(sql.Identifier(names.writer))
            )
    log.info("roles_granted", relations=len(rels), roles=[n for _, n in chosen])
    return len(rels)


def summary(names: Names) -> list[str]:
    """One line per role: what it may do (``db roles`` prints them)."""
    return [
        f"{names.writer}: run (INSERT/UPDATE of ticks, books, scores, fills; no DELETE, "
        "no TRUNCATE, owns nothing)",
        f"{names.closer}: close-week, forfeit, makers add|remove (the close's rows, forfeits, "
        "registrations)",
        f"{names.reader}: every read-only command (SELECT)",
    ]


def names_from(usernames: Iterable[tuple[LoginRole, str | None]]) -> Names:
    """:class:`Names` with the given user names where set, the defaults elsewhere."""
    given = {role: name for role, name in usernames if name}
    return Names(**{role: given.get(role, DEFAULT_NAMES[role]) for role in LOGIN_ROLES})
