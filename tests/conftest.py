"""Shared test configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from hypothesis import settings

from tests import pg

if TYPE_CHECKING:
    from collections.abc import Iterator

# Scoring is fast but CI machines are shared: no per-example deadline, a fixed example budget.
settings.register_profile("driftsnap", deadline=None, max_examples=150, print_blob=True)
settings.load_profile("driftsnap")


# ---------------------------------------------------------------- a real PostgreSQL (tests/pg.py)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pg.Cluster]:
    """The session's server: embedded in a temporary directory, or DRIFTSNAP_TEST_DATABASE_URL."""
    cluster = pg.Cluster.start(tmp_path_factory.mktemp("pg"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: pg.Cluster) -> Iterator[str]:
    """Name of a database with every migration applied, copied for each test."""
    name = pg_cluster.migrated_template()
    yield name
    pg_cluster.drop(name, template=True)


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster, pg_template: str) -> Iterator[sa.URL]:
    """URL of a fresh migrated database, dropped after the test."""
    name = pg_cluster.new_name("test")
    yield pg_cluster.create(name, template=pg_template)
    pg_cluster.drop(name)


@pytest.fixture
def pg_engine(pg_url: sa.URL) -> Iterator[sa.Engine]:
    """An engine on a fresh migrated database."""
    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_empty_url(pg_cluster: pg.Cluster) -> Iterator[sa.URL]:
    """URL of a fresh database without any migration, dropped after the test."""
    name = pg_cluster.new_name("empty")
    yield pg_cluster.create(name)
    pg_cluster.drop(name)
