-- 0005_fills_trust: what the fills ingest refused to believe, could not read, or found twice.
--
-- Never edit this file once it has been applied anywhere (see 0001). Mirrored in
-- driftsnap/store/schema.py.
--
-- The node is not trusted: every table here is something `driftsnap fills check` reports (and
-- exits 1 for) until it is resolved, so no fill can be lost or replaced without a word.

-- A second, different record for one (market_type, market_index, fill_record_id): the program's
-- counter makes the id unique on chain, so two records for it mean one of them is not the
-- chain's. fills keeps the first stored; this keeps every other one, whole (accounts as text,
-- so the row stands on its own). A record re-read from the same signature and event index with
-- the same facts is the same record, never a conflict. close-week refuses a week with one
-- until --force --reason.
CREATE TABLE fill_conflicts (
    market_type text NOT NULL,
    market_index smallint NOT NULL,
    fill_record_id bigint NOT NULL,
    signature text NOT NULL,
    event_index smallint NOT NULL,
    slot bigint NOT NULL,
    block_time timestamptz NOT NULL,
    maker text,
    maker_authority text,
    taker text,
    taker_authority text,
    base_filled bigint NOT NULL,
    quote_filled bigint NOT NULL,
    maker_fee bigint,
    action_explanation text NOT NULL,
    commitment text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market_type, market_index, fill_record_id, signature, event_index),
    CONSTRAINT fill_conflicts_market_type_check CHECK (market_type IN ('perp', 'spot'))
);
CREATE INDEX fill_conflicts_block_time_idx ON fill_conflicts (block_time);

-- Transactions whose logs contradict their message (a Drift frame the message does not run,
-- an event outside Drift's own frame, unbalanced frames): none of their fills are stored.
-- fills_claimed is how many fill events the logs carried.
CREATE TABLE fill_rejected (
    signature text PRIMARY KEY,
    slot bigint NOT NULL,
    block_time timestamptz NOT NULL,
    reason text NOT NULL,
    fills_claimed integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Transactions the node would not serve readably: an error for that one signature, an answer
-- without the shape of a transaction (kind 'error'), or the logs of a Drift transaction cut
-- without a "Log truncated" marker or missing (kind 'cut'). The watermark waits before one
-- while it is retried (attempts, next_attempt_at); once the attempts are spent it is
-- unreadable and the ingest moves on, but it is retried now and then until it reads, when its
-- row goes. block_time is the listing's (NULL when the node gave none).
CREATE TABLE fill_unread (
    signature text PRIMARY KEY,
    slot bigint NOT NULL,
    block_time timestamptz,
    kind text NOT NULL,
    reason text NOT NULL,
    attempts integer NOT NULL,
    unreadable boolean NOT NULL DEFAULT false,
    first_seen timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL,
    CONSTRAINT fill_unread_kind_check CHECK (kind IN ('error', 'cut')),
    CONSTRAINT fill_unread_attempts_check CHECK (attempts >= 1)
);

-- The perp markets' next_fill_record_id as the daemon read it now and then: the chain's own
-- count of fills, so a week in which a counter moved but no fill was stored is a gap.
CREATE TABLE fill_counters (
    market_type text NOT NULL,
    market_index smallint NOT NULL,
    slot bigint NOT NULL,
    block_time timestamptz NOT NULL,
    next_fill_record_id bigint NOT NULL,
    PRIMARY KEY (market_type, market_index, slot),
    CONSTRAINT fill_counters_market_type_check CHECK (market_type IN ('perp', 'spot'))
);
CREATE INDEX fill_counters_block_time_idx ON fill_counters (block_time);
