"""The migrated schema is exactly the schema the code declares (driftsnap.store.schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from driftsnap.store import schema

if TYPE_CHECKING:
    from tests import pg


def describe(conn: sa.Connection) -> dict[str, Any]:
    """Everything about the public schema's tables that matters, partitions aside."""
    inspector = sa.inspect(conn)
    partitions = set(
        conn.exec_driver_sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relispartition"
        ).scalars()
    )
    tables: dict[str, Any] = {}
    for name in sorted(set(inspector.get_table_names()) - partitions):
        tables[name] = {
            "columns": [
                (
                    c["name"],
                    str(c["type"]),
                    c["nullable"],
                    c.get("default"),
                    c["identity"]["always"] if "identity" in c else None,
                )
                for c in inspector.get_columns(name)
            ],
            "primary_key": inspector.get_pk_constraint(name),
            "foreign_keys": sorted(
                (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys(name)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(name)
            ),
            "indexes": sorted(
                (
                    i["name"],
                    tuple(str(c) for c in i["column_names"]),
                    i["unique"],
                    i.get("dialect_options", {}).get("postgresql_using"),
                )
                for i in inspector.get_indexes(name)
            ),
            "checks": sorted(
                (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(name)
            ),
            "partition_key": conn.execute(
                sa.text("SELECT pg_get_partkeydef(to_regclass(:t))"), {"t": name}
            ).scalar(),
        }
    return tables


def test_migrated_schema_equals_declared_schema(pg_cluster: pg.Cluster, pg_url: sa.URL) -> None:
    """Applying all migrations yields the tables, keys, indexes and checks schema.py declares."""
    declared_name = pg_cluster.new_name("declared")
    declared_engine = sa.create_engine(pg_cluster.create(declared_name), poolclass=NullPool)
    migrated_engine = sa.create_engine(pg_url, poolclass=NullPool)
    try:
        with declared_engine.begin() as conn:
            schema.metadata.create_all(conn)
            declared = describe(conn)
        with migrated_engine.connect() as conn:
            migrated = describe(conn)
    finally:
        declared_engine.dispose()
        migrated_engine.dispose()
        pg_cluster.drop(declared_name)
    assert set(migrated) == set(schema.metadata.tables)
    assert migrated["bracket_cells"]["partition_key"] == "RANGE (tick_at)"
    for name in sorted(migrated):
        assert migrated[name] == declared[name], name


def test_views_have_the_declared_columns(pg_engine: sa.Engine) -> None:
    """Each view the migrations create has exactly the columns its schema.py clause declares."""
    with pg_engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert set(inspector.get_view_names()) == {v.name for v in schema.VIEWS}
        for view in schema.VIEWS:
            columns = [c["name"] for c in inspector.get_columns(view.name)]
            assert columns == [c.name for c in view.c], view.name
