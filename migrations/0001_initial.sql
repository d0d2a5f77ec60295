-- 0001_initial: the store's first schema.
--
-- Never edit this file once it has been applied anywhere: the ledger records its sha256 and
-- `driftsnap run` refuses a database whose applied migrations differ from the files. Change the
-- schema with a new 0002_*.sql, and mirror every change in driftsnap/store/schema.py (a test
-- compares the two).
--
-- Conventions. Times are timestamptz in UTC. Prices are bigint PRICE_PRECISION (1e6 = $1), sizes
-- bigint BASE_PRECISION (1e9 = 1 unit), pools bigint micro-USDC. Every per-tick row is keyed by
-- (tick_at, market_index[, method_id]): the snapshot row of that key holds the slot the numbers
-- were read at, and methods.params_hash the parameters that produced them. The large per-tick
-- tables are partitioned by ISO week (Monday 00:00 UTC) of tick_at, the weekly accumulators by
-- week_start; driftsnap creates each week's partitions in schema driftsnap_partitions on demand.

CREATE SCHEMA driftsnap_partitions;

-- ------------------------------------------------------------------ reference data

CREATE TABLE markets (
    market_index smallint PRIMARY KEY,
    name text NOT NULL UNIQUE
);

-- Every public key driftsnap stores (User accounts and their authorities) gets a small integer id,
-- so the large tables carry 4 bytes instead of 44 characters.
CREATE TABLE accounts (
    account_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pubkey text NOT NULL UNIQUE
);

-- A User account's authority (its wallet). The order-level books carry both ids themselves; this
-- table serves the views of methods that key makers by User account.
CREATE TABLE user_accounts (
    user_id integer PRIMARY KEY REFERENCES accounts (account_id),
    authority_id integer NOT NULL REFERENCES accounts (account_id)
);

-- A scoring method's parameter set: canonical_json is the exact text whose sha256 is params_hash.
CREATE TABLE methods (
    method_id smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    params_hash text NOT NULL UNIQUE,
    name text NOT NULL,
    canonical_json text NOT NULL,
    CONSTRAINT methods_params_hash_check CHECK (params_hash ~ '^[0-9a-f]{64}$')
);

-- A program week: the sampling seed is committed (sha256) when the week starts and revealed at
-- its close, so anyone can recompute the tick times (driftsnap.sampling.verify).
CREATE TABLE weeks (
    week_start date PRIMARY KEY,
    cadence interval NOT NULL,
    seed_sha256 text NOT NULL,
    seed bytea,
    committed_at timestamptz NOT NULL DEFAULT now(),
    revealed_at timestamptz,
    CONSTRAINT weeks_monday_check CHECK (extract(isodow FROM week_start) = 1),
    CONSTRAINT weeks_seed_sha256_check CHECK (seed_sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT weeks_revealed_check CHECK ((seed IS NULL) = (revealed_at IS NULL))
);

-- The score pool of each market in force for a week (micro-USDC), filled by the daemon from the
-- program file; the views compute projected rewards from it.
CREATE TABLE program_pools (
    week_start date NOT NULL,
    market text NOT NULL,
    pool_micro_usdc bigint NOT NULL,
    PRIMARY KEY (week_start, market),
    CONSTRAINT program_pools_pool_check CHECK (pool_micro_usdc >= 0)
);

-- ------------------------------------------------------------------ per tick

-- One row per cadence tick, whatever happened. tick_at is the scheduled sample instant (the
-- natural key: a re-run after a crash computes the same one), taken_at when the daemon read.
CREATE TABLE ticks (
    tick_at timestamptz PRIMARY KEY,
    interval_index integer NOT NULL,
    status text NOT NULL,
    reason text NOT NULL DEFAULT '',
    taken_at timestamptz,
    gpa_slot bigint,
    market_slot bigint,
    markets smallint NOT NULL,
    orders integer NOT NULL,
    makers integer NOT NULL,
    duration_ms integer NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ticks_status_check CHECK (status IN ('ok', 'missed', 'rejected')),
    CONSTRAINT ticks_reason_check CHECK (status = 'ok' OR reason <> '')
);

-- The book facts of one market at one tick, and its order-level book: one zstd-compressed
-- column-wise array of (user id, authority id, flags, price, size, order id) per snapshot, enough
-- to recompute any week under any method. A rejected market keeps its facts and reason only.
CREATE TABLE snapshots (
    tick_at timestamptz NOT NULL,
    market_index smallint NOT NULL,
    status text NOT NULL,
    reason text NOT NULL DEFAULT '',
    slot bigint NOT NULL,
    ts bigint NOT NULL,
    oracle_price bigint NOT NULL,
    orders integer NOT NULL,
    book_format smallint,
    book bytea,
    PRIMARY KEY (tick_at, market_index),
    CONSTRAINT snapshots_status_check CHECK (status IN ('ok', 'rejected')),
    CONSTRAINT snapshots_book_check CHECK ((status = 'ok') = (book IS NOT NULL))
) PARTITION BY RANGE (tick_at);

-- Per snapshot and method: the best prices the method saw (they differ: mm-scoring falls back to
-- the oracle for an empty side) and how many makers it scored.
CREATE TABLE snapshot_methods (
    tick_at timestamptz NOT NULL,
    market_index smallint NOT NULL,
    method_id smallint NOT NULL,
    best_bid bigint,
    best_ask bigint,
    makers integer NOT NULL,
    PRIMARY KEY (tick_at, market_index, method_id)
) PARTITION BY RANGE (tick_at);

-- Per snapshot, method and bracket (or mm-scoring level): L per side, Q, V.
CREATE TABLE brackets (
    tick_at timestamptz NOT NULL,
    market_index smallint NOT NULL,
    method_id smallint NOT NULL,
    bracket smallint NOT NULL,
    name text NOT NULL,
    weight double precision NOT NULL,
    total_bid bigint NOT NULL,
    total_ask bigint NOT NULL,
    q double precision NOT NULL,
    value double precision NOT NULL,
    bid_price double precision,
    ask_price double precision,
    PRIMARY KEY (tick_at, market_index, method_id, bracket)
) PARTITION BY RANGE (tick_at);

-- Per-maker bracketed liquidity l(m, x, s), non-zero cells only; side 0 = bid, 1 = ask; notional
-- in micro-USD at the snapshot's oracle price. The two largest tables have no primary key on
-- purpose: their rows are written once, by COPY, under the tick's primary key (a second write of
-- a tick stops there), and a unique index would double their size and halve the write speed. A
-- BRIN index on tick_at finds one tick's rows in a week partition for a few kB.
CREATE TABLE bracket_cells (
    tick_at timestamptz NOT NULL,
    market_index smallint NOT NULL,
    method_id smallint NOT NULL,
    bracket smallint NOT NULL,
    side smallint NOT NULL,
    maker_id integer NOT NULL,
    size bigint NOT NULL,
    notional bigint NOT NULL,
    CONSTRAINT bracket_cells_side_check CHECK (side IN (0, 1))
) PARTITION BY RANGE (tick_at);
CREATE INDEX bracket_cells_tick_at_idx ON bracket_cells USING brin (tick_at);

-- Per-maker snapshot scores, zero scores included (every maker with an order in the book).
CREATE TABLE maker_scores (
    tick_at timestamptz NOT NULL,
    market_index smallint NOT NULL,
    method_id smallint NOT NULL,
    maker_id integer NOT NULL,
    score double precision NOT NULL
) PARTITION BY RANGE (tick_at);
CREATE INDEX maker_scores_tick_at_idx ON maker_scores USING brin (tick_at);

-- ------------------------------------------------------------------ weekly accumulators
-- Updated in the tick's transaction, so the live views and the week close read thousands of rows.

CREATE TABLE week_ticks (
    week_start date PRIMARY KEY,
    ticks integer NOT NULL,
    ok integer NOT NULL,
    missed integer NOT NULL,
    rejected integer NOT NULL
);

CREATE TABLE week_markets (
    week_start date NOT NULL,
    market_index smallint NOT NULL,
    ok integer NOT NULL,
    rejected integer NOT NULL,
    last_slot bigint NOT NULL,
    PRIMARY KEY (week_start, market_index)
);

-- n(market, week) per method: the successful snapshots it scored.
CREATE TABLE week_methods (
    week_start date NOT NULL,
    market_index smallint NOT NULL,
    method_id smallint NOT NULL,
    snapshots integer NOT NULL,
    last_slot bigint NOT NULL,
    PRIMARY KEY (week_start, market_index, method_id)
);

-- MMScore(m, market) so far. score_sum is numeric, fed with the exact decimal value of each float
-- score: the sum is exact whatever the order of the ticks, and its float8 cast is the correctly
-- rounded total that driftsnap.scoring.week computes in memory, bit for bit.
CREATE TABLE week_makers (
    week_start date NOT NULL,
    market_index smallint NOT NULL,
    method_id smallint NOT NULL,
    maker_id integer NOT NULL,
    snapshots integer NOT NULL,
    score_sum numeric NOT NULL,
    last_slot bigint NOT NULL,
    PRIMARY KEY (week_start, market_index, method_id, maker_id)
) PARTITION BY RANGE (week_start);

-- ------------------------------------------------------------------ views for users

-- Scores of every week so far: one row per week, market, method and maker. share is of all makers'
-- scores in the market (participants = all); registered-only programs and forfeits are applied at
-- the week close. projected_reward_usdc = floor(pool * share) in micro-USDC, shown in USDC (within
-- one micro-USDC of the week close's largest-remainder payout); NULL without a program_pools row.
CREATE VIEW weekly_scores AS
SELECT
    to_char(s.week_start, 'IYYY-"W"IW') AS week,
    k.name AS market,
    me.name AS method,
    me.params_hash,
    a.pubkey AS maker,
    coalesce(au.pubkey, a.pubkey) AS authority,
    n.snapshots,
    s.snapshots AS quoted_snapshots,
    s.score_sum::double precision AS score,
    CASE WHEN s.total > 0 THEN (s.score_sum / s.total)::double precision ELSE 0 END AS share,
    (p.pool_micro_usdc / 1000000.0)::numeric(20, 6) AS pool_usdc,
    CASE WHEN s.total > 0
        THEN (floor(p.pool_micro_usdc * s.score_sum / s.total) / 1000000.0)::numeric(20, 6)
    END AS projected_reward_usdc,
    s.last_slot,
    s.week_start
FROM (
    SELECT
        w.*,
        sum(w.score_sum) OVER (PARTITION BY w.week_start, w.market_index, w.method_id) AS total
    FROM week_makers AS w
) AS s
JOIN week_methods AS n USING (week_start, market_index, method_id)
JOIN markets AS k USING (market_index)
JOIN methods AS me USING (method_id)
JOIN accounts AS a ON a.account_id = s.maker_id
LEFT JOIN user_accounts AS ua ON ua.user_id = s.maker_id
LEFT JOIN accounts AS au ON au.account_id = ua.authority_id
LEFT JOIN program_pools AS p ON p.week_start = s.week_start AND p.market = k.name;

-- The current ISO week (UTC) of weekly_scores.
CREATE VIEW live_scores AS
SELECT * FROM weekly_scores
WHERE week_start = date_trunc('week', now() AT TIME ZONE 'UTC')::date;

-- Ticks per week and market: ok (a scored snapshot), rejected (the whole tick, or this market's
-- book), missed (no data for the market: the tick failed or did not include it). Markets appear
-- once seen in the week, or when the program gives them a pool that week.
CREATE VIEW weekly_coverage AS
WITH per_market AS (
    SELECT w.week_start, k.name AS market, w.ok, w.rejected, w.last_slot
    FROM week_markets AS w
    JOIN markets AS k USING (market_index)
    UNION ALL
    SELECT p.week_start, p.market, 0, 0, NULL::bigint
    FROM program_pools AS p
    WHERE NOT EXISTS (
        SELECT 1
        FROM week_markets AS w
        JOIN markets AS k USING (market_index)
        WHERE w.week_start = p.week_start AND k.name = p.market
    )
)
SELECT
    to_char(t.week_start, 'IYYY-"W"IW') AS week,
    m.market,
    t.ticks,
    m.ok,
    t.rejected + m.rejected AS rejected,
    t.ticks - m.ok - t.rejected - m.rejected AS missed,
    round(m.ok::numeric / nullif(t.ticks, 0), 4) AS coverage,
    m.last_slot,
    t.week_start
FROM week_ticks AS t
JOIN per_market AS m USING (week_start);

-- The current ISO week (UTC) of weekly_coverage.
CREATE VIEW live_coverage AS
SELECT * FROM weekly_coverage
WHERE week_start = date_trunc('week', now() AT TIME ZONE 'UTC')::date;
