-- 0002_fills: maker fills read from the chain's OrderActionRecord events, exactly once.
--
-- Never edit this file once it has been applied anywhere (see 0001). Mirrored in
-- driftsnap/store/schema.py.
--
-- A fill's natural key is the program's own counter: (market_type, market_index, fill_record_id)
-- is unique on chain, so a re-run of an ingest after a crash inserts nothing twice (ON CONFLICT DO
-- NOTHING). Amounts are bigint in QUOTE_PRECISION / BASE_PRECISION as the event carries them.

CREATE TABLE fills (
    market_type text NOT NULL,
    market_index smallint NOT NULL,
    fill_record_id bigint NOT NULL,
    signature text NOT NULL,
    event_index smallint NOT NULL,
    slot bigint NOT NULL,
    block_time timestamptz NOT NULL,
    -- NULL maker: the taker was filled by the AMM; NULL authority: the User account was closed
    -- before driftsnap could read it (its volume cannot be attributed and is reported).
    maker_id integer REFERENCES accounts (account_id),
    maker_authority_id integer REFERENCES accounts (account_id),
    taker_id integer REFERENCES accounts (account_id),
    taker_authority_id integer REFERENCES accounts (account_id),
    base_filled bigint NOT NULL,
    quote_filled bigint NOT NULL,
    maker_fee bigint,
    action_explanation text NOT NULL,
    commitment text NOT NULL,
    PRIMARY KEY (market_type, market_index, fill_record_id),
    CONSTRAINT fills_market_type_check CHECK (market_type IN ('perp', 'spot')),
    CONSTRAINT fills_commitment_check CHECK (commitment IN ('confirmed', 'finalized'))
);
CREATE INDEX fills_block_time_idx ON fills (block_time);
CREATE INDEX fills_signature_idx ON fills (signature);

-- Where each ingest pass stands: the newest signature it has processed with everything older.
-- It is written in the same transaction as the fills it covers. through_slot: every signature of
-- a slot up to it has been processed (the pass reached the head it saw when it started);
-- through_time is that slot's block time when the pass read it.
CREATE TABLE fill_watermarks (
    program text NOT NULL,
    commitment text NOT NULL,
    signature text NOT NULL,
    slot bigint NOT NULL,
    through_slot bigint,
    through_time timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program, commitment),
    CONSTRAINT fill_watermarks_commitment_check CHECK (commitment IN ('confirmed', 'finalized'))
);

-- Transactions whose logs the node cut ("Log truncated"): events after the cut are lost to log
-- parsing, so their fills show up as fill_record_id gaps; this says where they went.
CREATE TABLE fill_truncated (
    signature text PRIMARY KEY,
    slot bigint NOT NULL,
    block_time timestamptz NOT NULL,
    fills_parsed integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Per week: whether the finalized pass has re-checked every fill of the week.
CREATE TABLE fill_weeks (
    week_start date PRIMARY KEY,
    finalized boolean NOT NULL,
    fills integer NOT NULL,
    unconfirmed integer NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fill_weeks_monday_check CHECK (extract(isodow FROM week_start) = 1)
);

-- The Volume Reward pool of a week (micro-USDC; 1,500 USDC in the 2023 program), filled by the
-- daemon from the program file as program_pools is for the score pools.
CREATE TABLE volume_pools (
    week_start date PRIMARY KEY,
    pool_micro_usdc bigint NOT NULL,
    CONSTRAINT volume_pools_pool_check CHECK (pool_micro_usdc >= 0)
);

-- UserStats.maker_volume30d of maker authorities as read at a slot: the program's own running
-- (linearly decaying) maker volume, compared with the ingested fills between two samples.
CREATE TABLE maker_volume_samples (
    authority_id integer NOT NULL REFERENCES accounts (account_id),
    slot bigint NOT NULL,
    block_time timestamptz NOT NULL,
    maker_volume_30d bigint NOT NULL,
    last_maker_volume_30d_ts bigint NOT NULL,
    PRIMARY KEY (authority_id, slot)
);

-- Maker volume per week, authority and market, self-matches (maker authority = taker authority)
-- and fills without a known maker authority excluded (spec section 4). share is of the week's
-- whole volume, so the shares of an authority's markets add up to its volume share, and
-- projected_reward_usdc = floor(pool * share) of each row adds up to within a few micro-USDC of
-- its payout; NULL without a volume_pools row. market is NULL for spot markets.
CREATE VIEW weekly_volume AS
WITH per_market AS (
    SELECT
        date_trunc('week', f.block_time AT TIME ZONE 'UTC')::date AS week_start,
        f.maker_authority_id,
        f.market_type,
        f.market_index,
        count(*) AS fills,
        sum(f.quote_filled)::bigint AS volume,
        max(f.slot) AS last_slot
    FROM fills AS f
    WHERE f.maker_authority_id IS NOT NULL
        AND f.maker_authority_id IS DISTINCT FROM f.taker_authority_id
    GROUP BY 1, 2, 3, 4
), totals AS (
    SELECT p.*, sum(p.volume) OVER (PARTITION BY p.week_start) AS total
    FROM per_market AS p
)
SELECT
    to_char(t.week_start, 'IYYY-"W"IW') AS week,
    a.pubkey AS authority,
    t.market_type,
    t.market_index,
    k.name AS market,
    t.fills,
    t.volume AS volume_quote,
    (t.volume::numeric / t.total)::double precision AS share,
    (v.pool_micro_usdc / 1000000.0)::numeric(20, 6) AS pool_usdc,
    (floor(v.pool_micro_usdc * t.volume::numeric / t.total) / 1000000.0)::numeric(20, 6)
        AS projected_reward_usdc,
    t.last_slot,
    t.week_start
FROM totals AS t
JOIN accounts AS a ON a.account_id = t.maker_authority_id
LEFT JOIN markets AS k ON t.market_type = 'perp' AND k.market_index = t.market_index
LEFT JOIN volume_pools AS v ON v.week_start = t.week_start;

-- The current ISO week (UTC) of weekly_volume.
CREATE VIEW live_volume AS
SELECT * FROM weekly_volume
WHERE week_start = date_trunc('week', now() AT TIME ZONE 'UTC')::date;
