-- 0009_participant_views: the views share the pools among the week's participants (spec 3-5).
--
-- Never edit this file once it has been applied anywhere (see 0001). Mirrored in
-- driftsnap/store/schema.py (the table; the views as table clauses).
--
-- Until now weekly_scores and weekly_volume shared each pool among all makers, and only the week
-- close applied participants = "registered" and the forfeits. The program's participant rules
-- live in its TOML file, which the database cannot read, so the daemon writes what the file says
-- of each week here when it opens the week (next to program_pools and volume_pools): the mode,
-- and the file's [[participant]] entries active that week and [[forfeit]] entries of that week.
-- The database's own registrations (participants, `driftsnap makers add`) and forfeits
-- (`driftsnap forfeit`) are joined in by the views, as the close joins them, so a registration
-- recorded mid-week shows at once. A week without a row (opened before this migration, or never
-- by a daemon) shares among every maker, as before.
CREATE TABLE program_weeks (
    week_start date PRIMARY KEY,
    participants text NOT NULL,
    registered text[] NOT NULL DEFAULT '{}',
    forfeited text[] NOT NULL DEFAULT '{}',
    CONSTRAINT program_weeks_monday_check CHECK (extract(isodow FROM week_start) = 1),
    CONSTRAINT program_weeks_participants_check CHECK (participants IN ('all', 'registered'))
);
SELECT driftsnap_refuse_truncate_on('program_weeks');

-- Whether authority takes part in the week starting week: not forfeited (the file's or the
-- database's), and registered (the file's or the database's) unless the program pays everyone.
CREATE FUNCTION driftsnap_participates(week date, authority text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT
        NOT ($2 = ANY(coalesce(pw.forfeited, '{}')))
        AND NOT EXISTS (SELECT 1 FROM forfeits AS f WHERE f.week_start = $1 AND f.authority = $2)
        AND (
            coalesce(pw.participants, 'all') = 'all'
            OR $2 = ANY(pw.registered)
            OR EXISTS (
                SELECT 1 FROM participants AS r
                WHERE r.authority = $2
                    AND (r.from_week IS NULL OR r.from_week <= $1)
                    AND (r.until_week IS NULL OR $1 <= r.until_week)
            )
        )
    FROM (SELECT $1 AS week_start) AS w
    LEFT JOIN program_weeks AS pw USING (week_start)
$$;

DROP VIEW live_scores;
DROP VIEW weekly_scores;
DROP VIEW live_volume;
DROP VIEW weekly_volume;

-- Scores of every week so far: one row per week, market, method and maker. participant: whether
-- the maker's authority shares the week's rewards (driftsnap_participates); share is of the
-- participants' scores in the market (0 for the others), as the close computes it; non-
-- participants' liquidity still counts in every snapshot score. projected_reward_usdc =
-- floor(pool * share) in micro-USDC, shown in USDC (within one micro-USDC of the close's
-- largest-remainder payout; 0 for a non-participant); NULL without a program_pools row.
CREATE VIEW weekly_scores AS
WITH makers AS (
    SELECT
        w.*,
        a.pubkey AS maker,
        coalesce(au.pubkey, a.pubkey) AS authority
    FROM week_makers AS w
    JOIN accounts AS a ON a.account_id = w.maker_id
    LEFT JOIN user_accounts AS ua ON ua.user_id = w.maker_id
    LEFT JOIN accounts AS au ON au.account_id = ua.authority_id
), judged AS (
    SELECT m.*, driftsnap_participates(m.week_start, m.authority) AS participant
    FROM makers AS m
), s AS (
    SELECT
        j.*,
        sum(j.score_sum) FILTER (WHERE j.participant)
            OVER (PARTITION BY j.week_start, j.market_index, j.method_id) AS total
    FROM judged AS j
)
SELECT
    to_char(s.week_start, 'IYYY-"W"IW') AS week,
    k.name AS market,
    me.name AS method,
    me.params_hash,
    s.maker,
    s.authority,
    s.participant,
    n.snapshots,
    s.snapshots AS quoted_snapshots,
    s.score_sum::double precision AS score,
    CASE WHEN s.participant AND s.total > 0
        THEN (s.score_sum / s.total)::double precision ELSE 0
    END AS share,
    (p.pool_micro_usdc / 1000000.0)::numeric(20, 6) AS pool_usdc,
    CASE
        WHEN p.pool_micro_usdc IS NULL THEN NULL
        WHEN s.participant AND s.total > 0
            THEN (floor(p.pool_micro_usdc * s.score_sum / s.total) / 1000000.0)::numeric(20, 6)
        ELSE 0::numeric(20, 6)
    END AS projected_reward_usdc,
    s.last_slot,
    s.week_start
FROM s
JOIN week_methods AS n USING (week_start, market_index, method_id)
JOIN markets AS k USING (market_index)
JOIN methods AS me USING (method_id)
LEFT JOIN program_pools AS p ON p.week_start = s.week_start AND p.market = k.name;

-- The current ISO week (UTC) of weekly_scores.
CREATE VIEW live_scores AS
SELECT * FROM weekly_scores
WHERE week_start = date_trunc('week', now() AT TIME ZONE 'UTC')::date;

-- Maker volume per week, authority and market, self-matches (maker authority = taker authority)
-- and fills without a known maker authority excluded (spec section 4). participant as in
-- weekly_scores; share is of the week's participants' whole volume (0 for the others), so the
-- shares of an authority's markets add up to its volume share, and projected_reward_usdc =
-- floor(pool * share) of each row adds up to within a few micro-USDC of its payout; NULL without
-- a volume_pools row. market is NULL for spot markets.
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
), judged AS (
    SELECT
        p.*, a.pubkey AS authority, driftsnap_participates(p.week_start, a.pubkey) AS participant
    FROM per_market AS p
    JOIN accounts AS a ON a.account_id = p.maker_authority_id
), totals AS (
    SELECT
        j.*,
        sum(j.volume) FILTER (WHERE j.participant) OVER (PARTITION BY j.week_start) AS total
    FROM judged AS j
)
SELECT
    to_char(t.week_start, 'IYYY-"W"IW') AS week,
    t.authority,
    t.participant,
    t.market_type,
    t.market_index,
    k.name AS market,
    t.fills,
    t.volume AS volume_quote,
    CASE WHEN t.participant AND t.total > 0
        THEN (t.volume::numeric / t.total)::double precision ELSE 0
    END AS share,
    (v.pool_micro_usdc / 1000000.0)::numeric(20, 6) AS pool_usdc,
    CASE
        WHEN v.pool_micro_usdc IS NULL THEN NULL
        WHEN t.participant AND t.total > 0
            THEN (floor(v.pool_micro_usdc * t.volume::numeric / t.total) / 1000000.0)
                ::numeric(20, 6)
        ELSE 0::numeric(20, 6)
    END AS projected_reward_usdc,
    t.last_slot,
    t.week_start
FROM totals AS t
LEFT JOIN markets AS k ON t.market_type = 'perp' AND k.market_index = t.market_index
LEFT JOIN volume_pools AS v ON v.week_start = t.week_start;

-- The current ISO week (UTC) of weekly_volume.
CREATE VIEW live_volume AS
SELECT * FROM weekly_volume
WHERE week_start = date_trunc('week', now() AT TIME ZONE 'UTC')::date;
