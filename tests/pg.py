"""A real PostgreSQL for the store tests.

By default the session starts the embedded server (``driftsnap.store.database.start_embedded``)
in a temporary directory; with ``DRIFTSNAP_TEST_DATABASE_URL`` set (a superuser URL, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``) it uses that server instead. Either way the
session migrates one template database, and each test gets a fresh ``CREATE DATABASE ... TEMPLATE``
copy of it, dropped afterwards. Database names carry the pid, so sessions can share a server.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from driftsnap import config
from driftsnap.scoring import bookfile, methods, scorer
from driftsnap.simnet import model, scenarios, truth
from driftsnap.store import database, migrations, snapshots

if TYPE_CHECKING:
    from driftsnap.scoring import book as book_mod

ENV = "DRIFTSNAP_TEST_DATABASE_URL"


@dataclass
class Cluster:
    """A PostgreSQL server the tests may create and drop databases on."""

    admin_url: sa.URL
    embedded: database.EmbeddedServer | None = None
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def start(cls, tmp: Path) -> Cluster:
        given = os.environ.get(ENV)
        if given:
            return cls(admin_url=database.parse(given))
        server = database.start_embedded(tmp / "embedded")
        cluster = cls(admin_url=server.url.set(database="postgres"), embedded=server)
        # A throw-away test server: durability buys nothing and CREATE DATABASE checkpoints.
        with cluster.admin() as conn:
            conn.exec_driver_sql("ALTER SYSTEM SET fsync = off")
            conn.exec_driver_sql("ALTER SYSTEM SET synchronous_commit = off")
            conn.exec_driver_sql("ALTER SYSTEM SET full_page_writes = off")
            conn.exec_driver_sql("SELECT pg_reload_conf()")
        return cluster

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()

    def admin(self) -> sa.Connection:
        engine = sa.create_engine(self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        return engine.connect()

    def new_name(self, kind: str) -> str:
        return f"driftsnap_{kind}_{os.getpid()}_{next(self._names)}"

    def url(self, name: str) -> sa.URL:
        return self.admin_url.set(database=name)

    def create(self, name: str, template: str | None = None) -> sa.URL:
        with self.admin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            clause = f" TEMPLATE {quote(template)}" if template else ""
            for attempt in itertools.count():
                try:
                    conn.exec_driver_sql(f"CREATE DATABASE {quote(name)}{clause}")
                    break
                except sa.exc.OperationalError as exc:
                    # "source database is being accessed by other users": an autovacuum worker
                    # (on template1, or on a server the tests share) holds it for a moment.
                    in_use = getattr(exc.orig, "sqlstate", None) == "55006"
                    if not in_use or attempt >= 50:
                        raise
                    time.sleep(0.1)
        return self.url(name)

    def drop(self, name: str, *, template: bool = False) -> None:
        with self.admin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            if template:  # a template cannot be dropped
                conn.exec_driver_sql(f"ALTER DATABASE {quote(name)} WITH IS_TEMPLATE false")
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)")

    def migrated_template(self) -> str:
        """A new database with every migration applied, ready to be copied."""
        name = self.new_name("template")
        engine = sa.create_engine(self.create(name), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                migrations.apply(conn)
        finally:
            # CREATE DATABASE ... TEMPLATE refuses a template with open connections.
            engine.dispose()
        with self.admin() as conn:
            # No new connections, so autovacuum leaves it alone and copies never wait.
            conn.exec_driver_sql(
                f"ALTER DATABASE {conn.dialect.identifier_preparer.quote(name)}"
                " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            )
        return name


# ---------------------------------------------------------------- ticks to write

METHODS: tuple[methods.Method, ...] = tuple(methods.PRESETS.values())
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47
# The shipped program paying every maker: for the tests about something else than who takes part
# (the shipped one pays registered makers only). `DRIFTSNAP_PROGRAM_FILE` for the CLI's.
EVERYONE_FILE = Path(__file__).with_name("everyone.toml")
EVERYONE = config.load_program(EVERYONE_FILE)


@functools.cache
def simulated_books(ticks: int, seed: int = 7) -> tuple[tuple[book_mod.Book, ...], ...]:
    """The default scenario's books (3 markets, ~10 makers, ~260 orders) at ``ticks`` slots."""
    sim = model.Simulator(scenarios.DEFAULT, seed=seed)
    out = []
    for _ in range(ticks):
        for _ in range(5):
            sim.step()
        out.append(tuple(bookfile.from_dict(b) for b in truth.books(sim, sim.slot)))
    return tuple(out)


def scored(books: tuple[book_mod.Book, ...]) -> list[snapshots.MarketSnapshot]:
    """Each book with its scores under every preset method."""
    return [snapshots.MarketSnapshot(b, tuple(scorer.score(b, m) for m in METHODS)) for b in books]


def ok_tick(at: datetime, interval: int = 0) -> snapshots.Tick:
    return snapshots.Tick(
        at=at, interval=interval, status="ok", taken_at=at + timedelta(milliseconds=20),
        gpa_slot=1, market_slot=1, duration_ms=20,
    )  # fmt: skip
