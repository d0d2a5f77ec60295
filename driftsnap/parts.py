"""The concrete parts, built from :class:`~driftsnap.config.Settings`: the one place that wires.

The daemon, the demo and the CLI ask here for an RPC client's settings, the snapshot reader's, a
clock, the seed files, the database; the flows are handed what they need and never read the
settings themselves. What a setting means is said in ``config``; what is built of it, here.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

from driftsnap import calendar
from driftsnap.chain import clock, rpc, snapshot
from driftsnap.errors import ConfigError
from driftsnap.flows import fills, tick
from driftsnap.store import database, migrations, roles
from driftsnap.store.seeds import Seeds

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime
    from pathlib import Path

    import sqlalchemy as sa
    from pydantic import SecretStr

    from driftsnap import config

RUN_HINT: Final = (
    "no RPC URL: pass --rpc-url URL (or set DRIFTSNAP_RPC_URL) to read a Solana node; "
    "to try driftsnap without one, run `driftsnap demo`, which starts the local simulator"
)
CONNECT_TIMEOUT_S: Final = 5  # a database that is down fails a tick fast instead of hanging it
APPLICATION_NAME: Final = "driftsnap"  # shows the daemon's sessions in pg_stat_activity


def rpc_settings(settings: config.Settings) -> rpc.RpcSettings:
    """The RPC client's settings; a clear error pointing at --rpc-url and demo without a URL."""
    if settings.rpc_url is None:
        raise ConfigError(RUN_HINT)
    return rpc.RpcSettings(
        url=settings.rpc_url.get_secret_value(),
        timeout_s=settings.rpc_timeout_s,
        max_retries=settings.rpc_max_retries,
        rps=settings.rpc_rps,
        gpa_rps=settings.rpc_gpa_rps,
        max_body_bytes=settings.rpc_max_body_mb * rpc.MIB,
    )


def rpc_client(settings: config.Settings, **options: Any) -> rpc.Client:
    """A client of the configured node (``options``: httpx's, e.g. ``event_hooks``)."""
    return rpc.Client(rpc_settings(settings), **options)


def snapshot_settings(settings: config.Settings) -> snapshot.SnapshotSettings:
    """How a snapshot is read and when it is rejected."""
    return snapshot.SnapshotSettings(
        max_slot_gap=settings.max_slot_gap,
        max_skipped_share=settings.max_skipped_share,
        # Following the chain's time, the wall clock says nothing of the block times.
        max_block_time_ahead_s=None if settings.clock == "chain" else 3600.0,
    )


def markets(settings: config.Settings) -> tuple[str | int, ...]:
    """Configured markets (names, or indexes given as digits); empty: the program's paid ones."""
    return tuple(int(m) if m.isdigit() else m for m in settings.markets)


def markets_at(
    settings: config.Settings, program: config.Program, now: datetime
) -> list[str | int]:
    """The markets to read at ``now``: the configured ones, else those paying a pool then."""
    return list(markets(settings)) or program.paid_markets(calendar.Week.containing(now))


def tick_settings(settings: config.Settings, program: config.Program) -> tick.TickSettings:
    """What every tick of the daemon reads, scores and writes."""
    return tick.TickSettings(
        cadence=settings.cadence,
        methods=settings.method_presets(),
        detail=frozenset(m.params_hash for m in settings.detail_presets(program.method)),
        snapshot=snapshot_settings(settings),
        markets=markets(settings),
        max_book_drop=settings.max_book_drop,
        book_drop_min_orders=settings.book_drop_min_orders,
    )


def poll_settings(settings: config.Settings) -> fills.PollSettings:
    """How the daemon's fills job reads."""
    return fills.PollSettings(backfill_slots=settings.fills_backfill_slots)


def data_dir(settings: config.Settings) -> Path:
    """Where the embedded PostgreSQL and the seed files live."""
    return (settings.data_dir or database.default_data_dir()).expanduser()


def seed_files(settings: config.Settings) -> Seeds:
    """The weeks' secret sampling seeds of this machine."""
    return Seeds(data_dir(settings) / "seeds")


def chain_clock(settings: config.Settings) -> clock.ChainClock:
    """The chain's time, read from the configured node (with a client of its own)."""
    return clock.ChainClock(rpc_settings(settings))


def daemon_clock(settings: config.Settings) -> clock.ChainClock | clock.SystemClock:
    """The clock ``DRIFTSNAP_CLOCK`` names; use it as an async context manager."""
    return chain_clock(settings) if settings.clock == "chain" else clock.SystemClock()


def role_url(settings: config.Settings, role: roles.Role) -> SecretStr | None:
    """The URL ``role`` connects with: its own (``DRIFTSNAP_<ROLE>_DATABASE_URL``), else
    ``DRIFTSNAP_DATABASE_URL``; ``None`` when none is set at all (the embedded server)."""
    own: dict[roles.Role, SecretStr | None] = {
        "owner": None,
        "writer": settings.writer_database_url,
        "closer": settings.closer_database_url,
        "reader": settings.reader_database_url,
    }
    return own[role] or settings.database_url


def external(settings: config.Settings) -> bool:
    """Whether any database URL is set (else the embedded server is used)."""
    return any(
        u is not None
        for u in (
            settings.database_url,
            settings.writer_database_url,
            settings.closer_database_url,
            settings.reader_database_url,
        )
    )


def _login_urls(settings: config.Settings) -> list[tuple[roles.LoginRole, sa.URL | None]]:
    given: dict[roles.LoginRole, SecretStr | None] = {
        "writer": settings.writer_database_url,
        "closer": settings.closer_database_url,
        "reader": settings.reader_database_url,
    }
    return [(role, None if url is None else database.parse(url)) for role, url in given.items()]


def role_names(settings: config.Settings) -> roles.Names:
    """The login roles' names: the user names of their URLs where set, else the defaults."""
    return roles.names_from(
        (role, None if url is None else url.username) for role, url in _login_urls(settings)
    )


def role_passwords(settings: config.Settings) -> dict[roles.LoginRole, str | None]:
    """The passwords in the login roles' URLs, which ``db roles`` sets (never printed)."""
    return {
        role: None if url is None or url.password is None else str(url.password)
        for role, url in _login_urls(settings)
    }


def open_database(
    settings: config.Settings,
    *,
    keep_running: bool = False,
    daemon: bool = False,
    role: roles.Role | None = None,
) -> database.Database:
    """The database (embedded when no URL is set), connected as ``role``: default the writer for
    the daemon, else the owner. The daemon's fails fast when the server is down and names itself
    in ``pg_stat_activity``.

    With the embedded server a login role connects by its default name (the server trusts local
    connections); with URLs, as the role's own URL (else ``DRIFTSNAP_DATABASE_URL``): connecting
    as the role itself, not ``SET ROLE`` from an owner's session, which a compromised process
    could ``RESET``.
    """
    role = role or ("writer" if daemon else "owner")
    options = (
        {
            "connect_args": {
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_NAME,
            }
        }
        if daemon
        else {}
    )
    url = role_url(settings, role)
    user = None
    if url is None and external(settings):
        own = "" if role == "owner" else f"DRIFTSNAP_{role.upper()}_DATABASE_URL or "
        raise ConfigError(
            f"this command connects as the database {role}: set {own}DRIFTSNAP_DATABASE_URL"
        )
    if url is None and role != "owner":
        user = roles.DEFAULT_NAMES[role]
    return database.open(
        url, data_dir=settings.data_dir, keep_running=keep_running, user=user, **options
    )


@contextlib.contextmanager
def open_store(
    settings: config.Settings, *, role: roles.Role = "reader"
) -> Iterator[database.Database]:
    """The database connected as ``role`` (default the reader: pass the role a command writes
    as) with its schema checked (a stale one is refused), closed at the end."""
    db = open_database(settings, role=role)
    try:
        with database.connect(db.engine) as conn:
            migrations.check(conn)
        yield db
    finally:
        db.close()
