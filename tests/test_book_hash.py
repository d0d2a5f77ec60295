"""Issue 16, piece 2: a close's book hashes name accounts by public key, not by database id."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from driftsnap.flows import close as close_flow
from driftsnap.store import schema
from tests.test_close import WEEK, build_week, close

if TYPE_CHECKING:
    from pathlib import Path

    from tests import pg


def _copy_close(source: sa.Engine, target: sa.Engine) -> None:
    """Copy the stored close of WEEK (its row and payouts) from ``source`` into ``target``."""
    with source.connect() as conn:
        head = conn.execute(sa.select(schema.week_closes)).mappings().one()
        payouts = conn.execute(sa.select(schema.week_close_payouts)).mappings().all()
    with target.begin() as conn:
        conn.execute(sa.insert(schema.week_close_payouts), [dict(r) for r in payouts])
        conn.execute(sa.insert(schema.week_closes).values(**head))


def test_a_week_reimported_under_other_ids_verifies(
    pg_cluster: pg.Cluster, pg_template: str, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """The same ticks written into a database whose accounts got other ids: the same Merkle
    root and digest, and the first database's close verifies there."""
    built = build_week(pg_engine, tmp_path / "a")
    first = close(pg_engine, built)
    name = pg_cluster.new_name("reimport")
    other = sa.create_engine(pg_cluster.create(name, template=pg_template))
    try:
        with other.begin() as conn:  # shift every id the ticks will get
            conn.execute(sa.insert(schema.accounts), [{"pubkey": f"x{i}"} for i in range(17)])
        again = build_week(other, tmp_path / "b")
        with pg_engine.connect() as a, other.connect() as b:
            key = sa.select(schema.accounts.c.pubkey, schema.accounts.c.account_id)
            ids_a, ids_b = dict(a.execute(key).all()), dict(b.execute(key).all())
            assert all(ids_a[k] != ids_b[k] for k in ids_a)
            raw = sa.select(schema.snapshots.c.book).order_by("tick_at", "market_index")
            assert a.execute(raw).scalars().all() != b.execute(raw).scalars().all()
        assert close(other, again, dry_run=True).close.digest == first.close.digest
        _copy_close(pg_engine, other)
        checked = close_flow.verify_week(other, WEEK)
        assert checked.ok, checked.difference
        assert checked.digest == first.close.digest
    finally:
        other.dispose()
        pg_cluster.drop(name)
