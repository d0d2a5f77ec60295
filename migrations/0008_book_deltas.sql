-- 0008_book_deltas: consecutive books share most of their orders; cells are derived.
--
-- Never edit this file once it has been applied anywhere (see 0001). Mirrored in
-- driftsnap/store/schema.py.
--
-- Books. A market's book a minute later holds mostly the same resting orders (at mainnet scale
-- in the simulator ~60 % of them, field for field). From this migration on a snapshot's book may
-- be stored as format 2, a delta against an earlier ok snapshot of the same market in the same
-- week, named by book_base: the orders of the base still there (a bit each), the positions of
-- the new ones (a bit each) and the new orders' columns (driftsnap.store.books). The first
-- snapshot of a market in a week and every 60th after is stored whole (format 1), so a week's
-- partition decodes on its own (export, prune) and reading one book reads at most 60 rows.
-- book_sha256 stays the canonical hash of the whole book, so closes and their Merkle roots are
-- unchanged; rows stored before stay format 1.
ALTER TABLE snapshots ADD COLUMN book_base timestamptz;
ALTER TABLE snapshots ADD CONSTRAINT snapshots_book_base_check
    CHECK ((book_format = 2) = (book_base IS NOT NULL) AND book_base < tick_at);

-- Cells. The bracket cells l(m, x, s) of every maker were ~half of a tick's stored detail and
-- are a function of the stored book and the tick's brackets: from this migration on a tick
-- stores, for the methods whose detail it keeps, each maker's score and which sides it had
-- bracketed liquidity on (score_sides: bit 0 bid, bit 1 ask, aligned with score_makers), and no
-- cell arrays; `driftsnap` recomputes a tick's cells from its book when asked (the report's
-- drill-down, read_scores). Ticks stored before keep their cells (tick_bracket_cells).
ALTER TABLE snapshot_methods ADD COLUMN score_sides smallint[];

-- Which sides each maker had bracketed liquidity on, per tick: from the sides arrays (0008),
-- else from the stored cells (0007 arrays and the rows of ticks stored before).
CREATE VIEW tick_maker_sides AS
SELECT
    s.tick_at, s.market_index, s.method_id, u.maker_id,
    (u.sides & 1) <> 0 AS bid, (u.sides & 2) <> 0 AS ask
FROM snapshot_methods AS s
CROSS JOIN LATERAL unnest(s.score_makers, s.score_sides) AS u (maker_id, sides)
WHERE s.score_sides IS NOT NULL
UNION ALL
SELECT tick_at, market_index, method_id, maker_id, bool_or(side = 0), bool_or(side = 1)
FROM tick_bracket_cells
GROUP BY tick_at, market_index, method_id, maker_id;
