-- 0010_coverage: a market that is not sampled by configuration is not "missed".
--
-- Never edit this file once it has been applied anywhere (see 0001). weekly_coverage keeps its
-- columns (driftsnap/store/schema.py mirrors them), so it is replaced in place: live_coverage,
-- which selects from it, and the roles' grants on both stay as they are.
--
-- Until now a market appeared once seen in the week or when program_pools held a row for it,
-- and the daemon writes a row for every market the program file names, pools of 0 included
-- (SUI-PERP and ARB-PERP in the shipped file). The daemon samples the paid markets unless
-- --market names others, so those were listed with every tick missed although nothing was ever
-- meant to read them. Now a market appears once a tick of the week included it (ok or
-- rejected: week_markets), or when the program pays it a score pool that week (pool > 0), so a
-- paid market the daemon could not read at all is still listed, with every tick missed.
CREATE OR REPLACE VIEW weekly_coverage AS
WITH per_market AS (
    SELECT w.week_start, k.name AS market, w.ok, w.rejected, w.last_slot
    FROM week_markets AS w
    JOIN markets AS k USING (market_index)
    UNION ALL
    SELECT p.week_start, p.market, 0, 0, NULL::bigint
    FROM program_pools AS p
    WHERE p.pool_micro_usdc > 0
        AND NOT EXISTS (
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
