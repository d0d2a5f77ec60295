-- 0007_tick_detail: store the truth, derive the rest.
--
-- Never edit this file once it has been applied anywhere (see 0001). Mirrored in
-- driftsnap/store/schema.py (the columns; the views as table clauses).
--
-- Until now each tick wrote one row per maker, bracket, side and method to bracket_cells and one
-- per maker and method to maker_scores: ~85 % of the disk a tick took (issue 16), for detail only
-- the report's drill-down reads. From this migration on a tick stores that detail as five arrays
-- on its snapshot_methods row (one row per tick, market and method): the makers and their scores
-- in the order the scorer gave them, and the non-zero cells as (bracket * 2 + side, maker, size).
-- A row's arrays are written once with it and TOASTed (compressed) by PostgreSQL together: 12
-- bytes a maker score and 14 a cell before compression, against ~60 for a row of the old tables.
-- They stay plain SQL: tick_maker_scores and tick_bracket_cells unnest them (and still show the
-- rows of ticks written before this migration, which stay where they are), and tick_scores /
-- tick_cells name markets, methods and makers for psql. NULL arrays: a tick written before.
ALTER TABLE snapshot_methods
    ADD COLUMN score_makers integer[],
    ADD COLUMN scores double precision[],
    ADD COLUMN cell_keys smallint[],
    ADD COLUMN cell_makers integer[],
    ADD COLUMN cell_sizes bigint[];

-- One row per maker score of every stored tick (as the maker_scores table held them).
CREATE VIEW tick_maker_scores AS
SELECT tick_at, market_index, method_id, maker_id, score FROM maker_scores
UNION ALL
SELECT s.tick_at, s.market_index, s.method_id, u.maker_id, u.score
FROM snapshot_methods AS s
CROSS JOIN LATERAL unnest(s.score_makers, s.scores) AS u (maker_id, score)
WHERE s.scores IS NOT NULL;

-- One row per non-zero bracket cell l(m, x, s) of every stored tick (bracket_cells without its
-- notional, which tick_cells derives from the snapshot's oracle price).
CREATE VIEW tick_bracket_cells AS
SELECT tick_at, market_index, method_id, bracket, side, maker_id, size FROM bracket_cells
UNION ALL
SELECT
    s.tick_at, s.market_index, s.method_id,
    (u.cell_key / 2)::smallint AS bracket, (u.cell_key % 2)::smallint AS side,
    u.maker_id, u.size
FROM snapshot_methods AS s
CROSS JOIN LATERAL unnest(s.cell_keys, s.cell_makers, s.cell_sizes) AS u (cell_key, maker_id, size)
WHERE s.cell_keys IS NOT NULL;

-- For psql: one tick's per-maker scores, e.g.
--   SELECT * FROM tick_scores WHERE tick_at = '2026-11-16 00:00:07+00' AND method = 'drift-2023-08';
CREATE VIEW tick_scores AS
SELECT
    t.tick_at,
    k.name AS market,
    me.name AS method,
    me.params_hash,
    a.pubkey AS maker,
    coalesce(au.pubkey, a.pubkey) AS authority,
    t.score
FROM tick_maker_scores AS t
JOIN markets AS k USING (market_index)
JOIN methods AS me USING (method_id)
JOIN accounts AS a ON a.account_id = t.maker_id
LEFT JOIN user_accounts AS ua ON ua.user_id = t.maker_id
LEFT JOIN accounts AS au ON au.account_id = ua.authority_id;

-- For psql: one tick's bracketed liquidity per maker; notional in micro-USD at the oracle price.
CREATE VIEW tick_cells AS
SELECT
    c.tick_at,
    k.name AS market,
    me.name AS method,
    me.params_hash,
    c.bracket,
    b.name AS bracket_name,
    CASE c.side WHEN 0 THEN 'bid' ELSE 'ask' END AS side,
    a.pubkey AS maker,
    c.size,
    floor(c.size::numeric * s.oracle_price / 1000000000)::bigint AS notional
FROM tick_bracket_cells AS c
JOIN snapshots AS s USING (tick_at, market_index)
JOIN brackets AS b USING (tick_at, market_index, method_id, bracket)
JOIN markets AS k USING (market_index)
JOIN methods AS me USING (method_id)
JOIN accounts AS a ON a.account_id = c.maker_id;

-- Pubkey-keyed book hashes (the README's first known limit): each ok snapshot stores the sha256
-- of its book's canonical form, which names accounts by public key, never by the accounts ids
-- of one database (driftsnap.store.books.canonical_sha256), so a week re-imported elsewhere under
-- other ids has the same Merkle root. NULL: a snapshot written before (its hash is computed from
-- the book when a close needs it). week_closes.books_hash says which leaves a close committed
-- to: 1, the sha256 of the stored bytes (every close made before this migration), 2, the
-- canonical hash (the default from now on).
ALTER TABLE snapshots ADD COLUMN book_sha256 text;
ALTER TABLE week_closes ADD COLUMN books_hash smallint NOT NULL DEFAULT 1;
ALTER TABLE week_closes ALTER COLUMN books_hash SET DEFAULT 2;
ALTER TABLE week_closes ADD CONSTRAINT week_closes_books_hash_check CHECK (books_hash IN (1, 2));

-- Weeks written out by `driftsnap export-week` (the manifest's sha256 identifies the archive):
-- `driftsnap prune` drops the per-tick partitions of a week only once it is closed and here.
CREATE TABLE week_exports (
    week_start date NOT NULL,
    manifest_sha256 text NOT NULL,
    path text NOT NULL,
    exported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (week_start, manifest_sha256),
    CONSTRAINT week_exports_monday_check CHECK (extract(isodow FROM week_start) = 1)
);
SELECT driftsnap_refuse_truncate_on('week_exports');
