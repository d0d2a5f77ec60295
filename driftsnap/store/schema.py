"""The schema as SQLAlchemy Core tables, mirroring ``migrations/`` (a test proves they agree).

The migrations are the source of truth for the database; these declarations are what the code
queries and writes with, and what ``tests/test_store_schema.py`` compares against a migrated
database (tables, columns, types, nullability, defaults, keys, indexes, checks, partitioning).
Views are declared as lightweight ``table()`` clauses: SQLAlchemy cannot create them, the
migration does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

PARTITION_SCHEMA = "driftsnap_partitions"

TIMESTAMPTZ = sa.DateTime(timezone=True)
DOUBLE: sa.Double[float] = sa.Double()


def _tick_key() -> list[sa.Column[Any]]:
    return [
        sa.Column("tick_at", TIMESTAMPTZ, nullable=False),
        sa.Column("market_index", sa.SmallInteger, nullable=False),
    ]


# The ledger is created by driftsnap.store.migrations itself (it must exist before any file runs).
schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("applied_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

markets = sa.Table(
    "markets",
    metadata,
    sa.Column("market_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False, unique=True),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.Integer, sa.Identity(always=True), primary_key=True),
    sa.Column("pubkey", sa.Text, nullable=False, unique=True),
)

user_accounts = sa.Table(
    "user_accounts",
    metadata,
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("accounts.account_id"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("authority_id", sa.Integer, sa.ForeignKey("accounts.account_id"), nullable=False),
)

methods = sa.Table(
    "methods",
    metadata,
    sa.Column("method_id", sa.SmallInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("params_hash", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("canonical_json", sa.Text, nullable=False),
    sa.CheckConstraint("params_hash ~ '^[0-9a-f]{64}$'", name="methods_params_hash_check"),
)

weeks = sa.Table(
    "weeks",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("cadence", sa.Interval, nullable=False),
    sa.Column("seed_sha256", sa.Text, nullable=False),
    sa.Column("seed", sa.LargeBinary),
    sa.Column("committed_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("revealed_at", TIMESTAMPTZ),
    sa.CheckConstraint("extract(isodow FROM week_start) = 1", name="weeks_monday_check"),
    sa.CheckConstraint("seed_sha256 ~ '^[0-9a-f]{64}$'", name="weeks_seed_sha256_check"),
    sa.CheckConstraint("(seed IS NULL) = (revealed_at IS NULL)", name="weeks_revealed_check"),
)

program_pools = sa.Table(
    "program_pools",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("market", sa.Text, primary_key=True),
    sa.Column("pool_micro_usdc", sa.BigInteger, nullable=False),
    sa.CheckConstraint("pool_micro_usdc >= 0", name="program_pools_pool_check"),
)

# What the program file says of a week's participants (0009_participant_views.sql): the mode and
# the file's registrations and forfeits of that week, written by the daemon; the views join the
# database's own (participants, forfeits).
program_weeks = sa.Table(
    "program_weeks",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("participants", sa.Text, nullable=False),
    sa.Column("registered", sa.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("forfeited", sa.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    sa.CheckConstraint("extract(isodow FROM week_start) = 1", name="program_weeks_monday_check"),
    sa.CheckConstraint(
        "participants IN ('all', 'registered')", name="program_weeks_participants_check"
    ),
)

ticks = sa.Table(
    "ticks",
    metadata,
    sa.Column("tick_at", TIMESTAMPTZ, primary_key=True),
    sa.Column("interval_index", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=sa.text("''")),
    sa.Column("taken_at", TIMESTAMPTZ),
    sa.Column("gpa_slot", sa.BigInteger),
    sa.Column("market_slot", sa.BigInteger),
    sa.Column("markets", sa.SmallInteger, nullable=False),
    sa.Column("orders", sa.Integer, nullable=False),
    sa.Column("makers", sa.Integer, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("written_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("status IN ('ok', 'missed', 'rejected')", name="ticks_status_check"),
    sa.CheckConstraint("status = 'ok' OR reason <> ''", name="ticks_reason_check"),
)

BY_TICK = "RANGE (tick_at)"

snapshots = sa.Table(
    "snapshots",
    metadata,
    *_tick_key(),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=sa.text("''")),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("oracle_price", sa.BigInteger, nullable=False),
    sa.Column("orders", sa.Integer, nullable=False),
    sa.Column("book_format", sa.SmallInteger),
    sa.Column("book", sa.LargeBinary),
    sa.Column("book_sha256", sa.Text),  # 0007: books.canonical_sha256, pubkey-keyed
    # 0008: a format-2 book is a delta against the book of this earlier tick (same market, week).
    sa.Column("book_base", sa.DateTime(timezone=True)),
    sa.PrimaryKeyConstraint("tick_at", "market_index"),
    sa.CheckConstraint("status IN ('ok', 'rejected')", name="snapshots_status_check"),
    sa.CheckConstraint("(status = 'ok') = (book IS NOT NULL)", name="snapshots_book_check"),
    sa.CheckConstraint(
        "(book_format = 2) = (book_base IS NOT NULL) AND book_base < tick_at",
        name="snapshots_book_base_check",
    ),
    postgresql_partition_by=BY_TICK,
)

snapshot_methods = sa.Table(
    "snapshot_methods",
    metadata,
    *_tick_key(),
    sa.Column("method_id", sa.SmallInteger, nullable=False),
    sa.Column("best_bid", sa.BigInteger),
    sa.Column("best_ask", sa.BigInteger),
    sa.Column("makers", sa.Integer, nullable=False),
    # 0007: the tick's per-maker detail (NULL: a tick written before, whose rows are in
    # maker_scores and bracket_cells); cell_keys are bracket * 2 + side.
    sa.Column("score_makers", sa.ARRAY(sa.Integer)),
    sa.Column("scores", sa.ARRAY(DOUBLE)),
    sa.Column("cell_keys", sa.ARRAY(sa.SmallInteger)),
    sa.Column("cell_makers", sa.ARRAY(sa.Integer)),
    sa.Column("cell_sizes", sa.ARRAY(sa.BigInteger)),
    # 0008: per score maker, the sides it had bracketed liquidity on (bit 0 bid, bit 1 ask); a
    # tick written since stores these and no cell arrays (cells are recomputed from the book).
    sa.Column("score_sides", sa.ARRAY(sa.SmallInteger)),
    sa.PrimaryKeyConstraint("tick_at", "market_index", "method_id"),
    postgresql_partition_by=BY_TICK,
)

brackets = sa.Table(
    "brackets",
    metadata,
    *_tick_key(),
    sa.Column("method_id", sa.SmallInteger, nullable=False),
    sa.Column("bracket", sa.SmallInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("weight", DOUBLE, nullable=False),
    sa.Column("total_bid", sa.BigInteger, nullable=False),
    sa.Column("total_ask", sa.BigInteger, nullable=False),
    sa.Column("q", DOUBLE, nullable=False),
    sa.Column("value", DOUBLE, nullable=False),
    sa.Column("bid_price", DOUBLE),
    sa.Column("ask_price", DOUBLE),
    sa.PrimaryKeyConstraint("tick_at", "market_index", "method_id", "bracket"),
    postgresql_partition_by=BY_TICK,
)

bracket_cells = sa.Table(
    "bracket_cells",
    metadata,
    *_tick_key(),
    sa.Column("method_id", sa.SmallInteger, nullable=False),
    sa.Column("bracket", sa.SmallInteger, nullable=False),
    sa.Column("side", sa.SmallInteger, nullable=False),
    sa.Column("maker_id", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("notional", sa.BigInteger, nullable=False),
    sa.CheckConstraint("side IN (0, 1)", name="bracket_cells_side_check"),
    sa.Index("bracket_cells_tick_at_idx", "tick_at", postgresql_using="brin"),
    postgresql_partition_by=BY_TICK,
)

maker_scores = sa.Table(
    "maker_scores",
    metadata,
    *_tick_key(),
    sa.Column("method_id", sa.SmallInteger, nullable=False),
    sa.Column("maker_id", sa.Integer, nullable=False),
    sa.Column("score", DOUBLE, nullable=False),
    sa.Index("maker_scores_tick_at_idx", "tick_at", postgresql_using="brin"),
    postgresql_partition_by=BY_TICK,
)

week_ticks = sa.Table(
    "week_ticks",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("ticks", sa.Integer, nullable=False),
    sa.Column("ok", sa.Integer, nullable=False),
    sa.Column("missed", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
)

week_markets = sa.Table(
    "week_markets",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("market_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("ok", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("last_slot", sa.BigInteger, nullable=False),
)

week_methods = sa.Table(
    "week_methods",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("market_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("method_id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("snapshots", sa.Integer, nullable=False),
    sa.Column("last_slot", sa.BigInteger, nullable=False),
)

week_makers = sa.Table(
    "week_makers",
    metadata,
    sa.Column("week_start", sa.Date, nullable=False),
    sa.Column("market_index", sa.SmallInteger, nullable=False),
    sa.Column("method_id", sa.SmallInteger, nullable=False),
    sa.Column("maker_id", sa.Integer, nullable=False),
    sa.Column("snapshots", sa.Integer, nullable=False),
    sa.Column("score_sum", sa.Numeric(asdecimal=True), nullable=False),
    sa.Column("last_slot", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("week_start", "market_index", "method_id", "maker_id"),
    postgresql_partition_by="RANGE (week_start)",
)

# Tables with weekly partitions, and the column their range is on.
PARTITIONED: dict[str, str] = {
    t.name: str(t.dialect_options["postgresql"]["partition_by"]).split("(")[1].rstrip(")")
    for t in metadata.sorted_tables
    if t.dialect_options["postgresql"]["partition_by"]
}

# ------------------------------------------------------------------------------------ views

weekly_scores = sa.table(
    "weekly_scores",
    sa.column("week", sa.Text),
    sa.column("market", sa.Text),
    sa.column("method", sa.Text),
    sa.column("params_hash", sa.Text),
    sa.column("maker", sa.Text),
    sa.column("authority", sa.Text),
    sa.column("participant", sa.Boolean),
    sa.column("snapshots", sa.Integer),
    sa.column("quoted_snapshots", sa.Integer),
    sa.column("score", DOUBLE),
    sa.column("share", DOUBLE),
    sa.column("pool_usdc", sa.Numeric),
    sa.column("projected_reward_usdc", sa.Numeric),
    sa.column("last_slot", sa.BigInteger),
    sa.column("week_start", sa.Date),
)

weekly_coverage = sa.table(
    "weekly_coverage",
    sa.column("week", sa.Text),
    sa.column("market", sa.Text),
    sa.column("ticks", sa.Integer),
    sa.column("ok", sa.Integer),
    sa.column("rejected", sa.Integer),
    sa.column("missed", sa.Integer),
    sa.column("coverage", sa.Numeric),
    sa.column("last_slot", sa.BigInteger),
    sa.column("week_start", sa.Date),
)

live_scores = sa.table("live_scores", *(sa.column(c.name, c.type) for c in weekly_scores.c))
live_coverage = sa.table("live_coverage", *(sa.column(c.name, c.type) for c in weekly_coverage.c))


# ------------------------------------------------------------------ fills (0002_fills.sql)

fills = sa.Table(
    "fills",
    metadata,
    sa.Column("market_type", sa.Text, primary_key=True),
    sa.Column("market_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("fill_record_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("event_index", sa.SmallInteger, nullable=False),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("block_time", TIMESTAMPTZ, nullable=False),
    sa.Column("maker_id", sa.Integer, sa.ForeignKey("accounts.account_id")),
    sa.Column("maker_authority_id", sa.Integer, sa.ForeignKey("accounts.account_id")),
    sa.Column("taker_id", sa.Integer, sa.ForeignKey("accounts.account_id")),
    sa.Column("taker_authority_id", sa.Integer, sa.ForeignKey("accounts.account_id")),
    sa.Column("base_filled", sa.BigInteger, nullable=False),
    sa.Column("quote_filled", sa.BigInteger, nullable=False),
    sa.Column("maker_fee", sa.BigInteger),
    sa.Column("action_explanation", sa.Text, nullable=False),
    sa.Column("commitment", sa.Text, nullable=False),
    sa.CheckConstraint("market_type IN ('perp', 'spot')", name="fills_market_type_check"),
    sa.CheckConstraint("commitment IN ('confirmed', 'finalized')", name="fills_commitment_check"),
    sa.Index("fills_block_time_idx", "block_time"),
    sa.Index("fills_signature_idx", "signature"),
)

fill_watermarks = sa.Table(
    "fill_watermarks",
    metadata,
    sa.Column("program", sa.Text, primary_key=True),
    sa.Column("commitment", sa.Text, primary_key=True),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("through_slot", sa.BigInteger),
    sa.Column("through_time", TIMESTAMPTZ),
    sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(
        "commitment IN ('confirmed', 'finalized')", name="fill_watermarks_commitment_check"
    ),
)

fill_truncated = sa.Table(
    "fill_truncated",
    metadata,
    sa.Column("signature", sa.Text, primary_key=True),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("block_time", TIMESTAMPTZ, nullable=False),
    sa.Column("fills_parsed", sa.Integer, nullable=False),
    sa.Column("recorded_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

fill_weeks = sa.Table(
    "fill_weeks",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("finalized", sa.Boolean, nullable=False),
    sa.Column("fills", sa.Integer, nullable=False),
    sa.Column("unconfirmed", sa.Integer, nullable=False),
    sa.Column("checked_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("extract(isodow FROM week_start) = 1", name="fill_weeks_monday_check"),
)

# ------------------------------------------------------- fills trust (0005_fills_trust.sql)

fill_conflicts = sa.Table(
    "fill_conflicts",
    metadata,
    sa.Column("market_type", sa.Text, primary_key=True),
    sa.Column("market_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("fill_record_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("signature", sa.Text, primary_key=True),
    sa.Column("event_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("block_time", TIMESTAMPTZ, nullable=False),
    sa.Column("maker", sa.Text),
    sa.Column("maker_authority", sa.Text),
    sa.Column("taker", sa.Text),
    sa.Column("taker_authority", sa.Text),
    sa.Column("base_filled", sa.BigInteger, nullable=False),
    sa.Column("quote_filled", sa.BigInteger, nullable=False),
    sa.Column("maker_fee", sa.BigInteger),
    sa.Column("action_explanation", sa.Text, nullable=False),
    sa.Column("commitment", sa.Text, nullable=False),
    sa.Column("recorded_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("market_type IN ('perp', 'spot')", name="fill_conflicts_market_type_check"),
    sa.Index("fill_conflicts_block_time_idx", "block_time"),
)

fill_rejected = sa.Table(
    "fill_rejected",
    metadata,
    sa.Column("signature", sa.Text, primary_key=True),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("block_time", TIMESTAMPTZ, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("fills_claimed", sa.Integer, nullable=False),
    sa.Column("recorded_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
)

fill_unread = sa.Table(
    "fill_unread",
    metadata,
    sa.Column("signature", sa.Text, primary_key=True),
    sa.Column("slot", sa.BigInteger, nullable=False),
    sa.Column("block_time", TIMESTAMPTZ),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("unreadable", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("first_seen", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("next_attempt_at", TIMESTAMPTZ, nullable=False),
    sa.CheckConstraint("kind IN ('error', 'cut')", name="fill_unread_kind_check"),
    sa.CheckConstraint("attempts >= 1", name="fill_unread_attempts_check"),
)

fill_counters = sa.Table(
    "fill_counters",
    metadata,
    sa.Column("market_type", sa.Text, primary_key=True),
    sa.Column("market_index", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("slot", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("block_time", TIMESTAMPTZ, nullable=False),
    sa.Column("next_fill_record_id", sa.BigInteger, nullable=False),
    sa.CheckConstraint("market_type IN ('perp', 'spot')", name="fill_counters_market_type_check"),
    sa.Index("fill_counters_block_time_idx", "block_time"),
)

volume_pools = sa.Table(
    "volume_pools",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("pool_micro_usdc", sa.BigInteger, nullable=False),
    sa.CheckConstraint("pool_micro_usdc >= 0", name="volume_pools_pool_check"),
)

maker_volume_samples = sa.Table(
    "maker_volume_samples",
    metadata,
    sa.Column(
        "authority_id",
        sa.Integer,
        sa.ForeignKey("accounts.account_id"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("slot", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("block_time", TIMESTAMPTZ, nullable=False),
    sa.Column("maker_volume_30d", sa.BigInteger, nullable=False),
    sa.Column("last_maker_volume_30d_ts", sa.BigInteger, nullable=False),
)

weekly_volume = sa.table(
    "weekly_volume",
    sa.column("week", sa.Text),
    sa.column("authority", sa.Text),
    sa.column("participant", sa.Boolean),
    sa.column("market_type", sa.Text),
    sa.column("market_index", sa.SmallInteger),
    sa.column("market", sa.Text),
    sa.column("fills", sa.BigInteger),
    sa.column("volume_quote", sa.BigInteger),
    sa.column("share", DOUBLE),
    sa.column("pool_usdc", sa.Numeric),
    sa.column("projected_reward_usdc", sa.Numeric),
    sa.column("last_slot", sa.BigInteger),
    sa.column("week_start", sa.Date),
)
live_volume = sa.table("live_volume", *(sa.column(c.name, c.type) for c in weekly_volume.c))

# ------------------------------------------------- one tick's detail (0007_tick_detail.sql)

tick_maker_scores = sa.table(
    "tick_maker_scores",
    sa.column("tick_at", TIMESTAMPTZ),
    sa.column("market_index", sa.SmallInteger),
    sa.column("method_id", sa.SmallInteger),
    sa.column("maker_id", sa.Integer),
    sa.column("score", DOUBLE),
)

tick_bracket_cells = sa.table(
    "tick_bracket_cells",
    sa.column("tick_at", TIMESTAMPTZ),
    sa.column("market_index", sa.SmallInteger),
    sa.column("method_id", sa.SmallInteger),
    sa.column("bracket", sa.SmallInteger),
    sa.column("side", sa.SmallInteger),
    sa.column("maker_id", sa.Integer),
    sa.column("size", sa.BigInteger),
)

tick_maker_sides = sa.table(
    "tick_maker_sides",
    sa.column("tick_at", TIMESTAMPTZ),
    sa.column("market_index", sa.SmallInteger),
    sa.column("method_id", sa.SmallInteger),
    sa.column("maker_id", sa.Integer),
    sa.column("bid", sa.Boolean),
    sa.column("ask", sa.Boolean),
)

tick_scores = sa.table(
    "tick_scores",
    sa.column("tick_at", TIMESTAMPTZ),
    sa.column("market", sa.Text),
    sa.column("method", sa.Text),
    sa.column("params_hash", sa.Text),
    sa.column("maker", sa.Text),
    sa.column("authority", sa.Text),
    sa.column("score", DOUBLE),
)

tick_cells = sa.table(
    "tick_cells",
    sa.column("tick_at", TIMESTAMPTZ),
    sa.column("market", sa.Text),
    sa.column("method", sa.Text),
    sa.column("params_hash", sa.Text),
    sa.column("bracket", sa.SmallInteger),
    sa.column("bracket_name", sa.Text),
    sa.column("side", sa.Text),
    sa.column("maker", sa.Text),
    sa.column("size", sa.BigInteger),
    sa.column("notional", sa.BigInteger),
)

VIEWS = (
    weekly_scores,
    live_scores,
    weekly_coverage,
    live_coverage,
    weekly_volume,
    live_volume,
    tick_maker_scores,
    tick_bracket_cells,
    tick_scores,
    tick_cells,
    tick_maker_sides,
)


# ------------------------------------------------------------- the week close (0003_close.sql)
# Its triggers (a closed week's rows are immutable) live in the migration only.


def _monday_check(column: str, name: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"extract(isodow FROM {column}) = 1", name=name)


participants = sa.Table(
    "participants",
    metadata,
    sa.Column("authority", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, server_default=sa.text("''")),
    sa.Column("from_week", sa.Date),
    sa.Column("until_week", sa.Date),
    sa.Column("added_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    _monday_check("from_week", "participants_from_week_check"),
    _monday_check("until_week", "participants_until_week_check"),
    sa.CheckConstraint("until_week >= from_week", name="participants_range_check"),
)

forfeits = sa.Table(
    "forfeits",
    metadata,
    sa.Column("authority", sa.Text, primary_key=True),
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    _monday_check("week_start", "forfeits_monday_check"),
    sa.CheckConstraint("reason <> ''", name="forfeits_reason_check"),
)

week_closes = sa.Table(
    "week_closes",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("params_hash", sa.Text, nullable=False),
    sa.Column("program_digest", sa.Text, nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("force_reason", sa.Text, nullable=False, server_default=sa.text("''")),
    sa.Column("overridden", sa.Text, nullable=False, server_default=sa.text("''")),
    sa.Column("seed_sha256", sa.Text),
    sa.Column("seed", sa.Text),
    sa.Column("books", sa.Integer, nullable=False),
    sa.Column("books_root", sa.Text, nullable=False),
    sa.Column("fills", sa.Integer, nullable=False),
    sa.Column("fills_digest", sa.Text, nullable=False),
    sa.Column("result_json", sa.Text, nullable=False),
    sa.Column("result_sha256", sa.Text, nullable=False),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("closed_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    # 0007: the leaves' book hash, 1 = sha256 of the stored bytes, 2 = books.canonical_sha256.
    sa.Column("books_hash", sa.SmallInteger, nullable=False, server_default=sa.text("2")),
    _monday_check("week_start", "week_closes_monday_check"),
    sa.CheckConstraint("forced = (force_reason <> '')", name="week_closes_forced_check"),
    sa.CheckConstraint("books_hash IN (1, 2)", name="week_closes_books_hash_check"),
)

week_close_payouts = sa.Table(
    "week_close_payouts",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("pool", sa.Text, primary_key=True),
    sa.Column("maker", sa.Text, primary_key=True),
    sa.Column("authority", sa.Text, nullable=False),
    sa.Column("weight", sa.Numeric(asdecimal=True), nullable=False),
    sa.Column("participant", sa.Boolean, nullable=False),
    sa.Column("reward_micro_usdc", sa.BigInteger, nullable=False),
    sa.CheckConstraint("reward_micro_usdc >= 0", name="week_close_payouts_reward_check"),
)


# ------------------------------------------------------------ exports (0007_tick_detail.sql)

week_exports = sa.Table(
    "week_exports",
    metadata,
    sa.Column("week_start", sa.Date, primary_key=True),
    sa.Column("manifest_sha256", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("exported_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    _monday_check("week_start", "week_exports_monday_check"),
)
