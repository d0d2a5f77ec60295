"""Week-level records: partitions, the sampling seed's commitment and reveal, the program's pools
and participants.

Each ISO week gets its own partition of every large table, in schema ``driftsnap_partitions``
(e.g. ``bracket_cells_2026w47``), created on demand by :func:`ensure_partitions`: when the week is
opened and, for safety, before each tick is written. There is no default partition, so a row of
a week without partitions fails loudly instead of landing in a catch-all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql as pg

from driftsnap.store import database, schema
from driftsnap.store.errors import IntegrityError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import date, timedelta

    from driftsnap.calendar import Week
    from driftsnap.scoring.settlement import Participants


def partition_name(table: str, week: Week) -> str:
    """The name of ``week``'s partition of ``table``, e.g. ``bracket_cells_2026w47``."""
    return f"{table}_{week.year}w{week.number:02d}"


def ensure_partitions(conn: sa.Connection, week: Week) -> None:
    """Create ``week``'s partition of every partitioned table unless they exist."""
    names = [partition_name(t, week) for t in schema.PARTITIONED]
    # One catalog lookup per tick in the common case. All names are checked, not one: a table
    # added by a later migration needs its partition even for a week that already has the rest.
    missing = conn.execute(
        sa.text(
            "SELECT count(*) FROM unnest(CAST(:names AS text[])) AS n WHERE to_regclass(n) IS NULL"
        ),
        {"names": [f"{schema.PARTITION_SCHEMA}.{n}" for n in names]},
    ).scalar_one()
    if not missing:
        return
    # Only a table's owner may create a partition of it, and the daemon's role (the writer) owns
    # nothing: migration 0006's function creates them as the owner (the same names and bounds as
    # below, with the parent's grants). Before 0006 the caller is the owner and runs the DDL.
    function = conn.execute(
        sa.text("SELECT to_regprocedure('driftsnap_create_week_partitions(date)') IS NOT NULL")
    ).scalar_one()
    if function:
        conn.execute(
            sa.text("SELECT driftsnap_create_week_partitions(:monday)"), {"monday": week.monday}
        )
        return
    # DDL takes no bind parameters: compose it with psycopg's sql module (quoted identifiers,
    # escaped literals) rather than formatting text.
    with database.driver(conn).cursor() as cur:
        for (table, column), name in zip(schema.PARTITIONED.items(), names, strict=True):
            if column == "week_start":
                low, high = week.monday.isoformat(), week.next().monday.isoformat()
            else:
                low, high = week.start.isoformat(), week.end.isoformat()
            # Accumulator rows are updated every tick: leave room on each page for a second
            # version of every row, so each update stays on its page (HOT, no index entry) and
            # the previous tick's versions are pruned in place. At 70 % a third of the updates
            # left the page and the upsert took twice as long (bench/bench_store.py).
            options = sql.SQL(" WITH (fillfactor = 50)" if column == "week_start" else "")
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}"
                ).format(
                    sql.Identifier(schema.PARTITION_SCHEMA, name),
                    sql.Identifier(table),
                    sql.Literal(low),
                    sql.Literal(high),
                    options,
                )
            )


def partitions(conn: sa.Connection, table: str) -> list[str]:
    """Names of the partitions of ``table``, oldest week first."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:table) ORDER BY c.relname"
        ),
        {"table": table},
    )
    return [r for (r,) in rows]


@dataclass(frozen=True, slots=True)
class WeekRecord:
    """A week's sampling record: cadence, seed commitment, and the seed once revealed."""

    week_start: date
    cadence: timedelta
    seed_sha256: str
    seed: bytes | None


def commit_seed(conn: sa.Connection, week: Week, *, cadence: timedelta, seed_sha256: str) -> None:
    """Record ``week``'s sampling commitment and create its partitions; idempotent.

    Committing the same hash again is harmless (a restarted daemon); a different hash or cadence
    for a week already committed is an :class:`IntegrityError`: the schedule must not change once
    the week has started.
    """
    ensure_partitions(conn, week)
    table = schema.weeks
    conn.execute(
        pg.insert(table)
        .values(week_start=week.monday, cadence=cadence, seed_sha256=seed_sha256)
        .on_conflict_do_nothing(index_elements=[table.c.week_start])
    )
    stored = conn.execute(
        sa.select(table.c.seed_sha256, table.c.cadence).where(table.c.week_start == week.monday)
    ).one()
    if (stored.seed_sha256, stored.cadence) != (seed_sha256, cadence):
        raise IntegrityError(
            f"week {week} is already committed to seed sha256 {stored.seed_sha256[:16]}... at "
            f"cadence {stored.cadence}; a week's sampling cannot change once it has started"
        )


def reveal_seed(conn: sa.Connection, week: Week, seed: bytes) -> None:
    """Store ``week``'s seed after checking it against the commitment; idempotent."""
    table = schema.weeks
    row = conn.execute(
        sa.select(table.c.seed_sha256, table.c.seed).where(table.c.week_start == week.monday)
    ).first()
    if row is None:
        raise IntegrityError(f"week {week} has no committed seed to reveal")
    if hashlib.sha256(seed).hexdigest() != row.seed_sha256:
        raise IntegrityError(f"the seed given for week {week} does not match its commitment")
    if row.seed is None:
        conn.execute(
            sa.update(table)
            .where(table.c.week_start == week.monday)
            .values(seed=seed, revealed_at=sa.func.now())
        )


def record(conn: sa.Connection, week: Week) -> WeekRecord | None:
    """What is stored about ``week``'s sampling, if it was opened."""
    table = schema.weeks
    row = conn.execute(
        sa.select(table.c.week_start, table.c.cadence, table.c.seed_sha256, table.c.seed).where(
            table.c.week_start == week.monday
        )
    ).first()
    if row is None:
        return None
    return WeekRecord(row.week_start, row.cadence, row.seed_sha256, row.seed)


def set_pools(conn: sa.Connection, week: Week, pools: Mapping[str, int]) -> None:
    """Replace ``week``'s score pools (micro-USDC per market), which the views project with."""
    table = schema.program_pools
    conn.execute(sa.delete(table).where(table.c.week_start == week.monday))
    if pools:
        conn.execute(
            sa.insert(table),
            [
                {"week_start": week.monday, "market": m, "pool_micro_usdc": p}
                for m, p in sorted(pools.items())
            ],
        )


def set_participants(conn: sa.Connection, week: Week, participants: Participants) -> None:
    """Record what the program file says of ``week``'s participants, which the views share the
    pools among: everyone (``registered is None``) or its registrations, minus its forfeits. The
    database's own registrations and forfeits are not copied: the views join them as they are."""
    table = schema.program_weeks
    values = {
        "participants": "all" if participants.registered is None else "registered",
        "registered": sorted(participants.registered or ()),
        "forfeited": sorted(participants.forfeited),
    }
    conn.execute(
        pg.insert(table)
        .values(week_start=week.monday, **values)
        .on_conflict_do_update(index_elements=[table.c.week_start], set_=values)
    )
