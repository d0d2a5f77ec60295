-- 0003_close: the week close, its participants and forfeits, and the immutability of a closed week.
--
-- Never edit this file once it has been applied anywhere (see 0001). Mirrored in
-- driftsnap/store/schema.py; the triggers and functions are not (SQLAlchemy does not model them).

-- Makers registered in the database (`driftsnap makers add|remove`). When the program says
-- participants = "registered", a week's participants are the program file's [[participant]]
-- entries plus these rows active that week; under participants = "all" they are recorded only.
-- Weeks are their Monday; from_week and until_week are inclusive, NULL: unbounded.
CREATE TABLE participants (
    authority text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    from_week date,
    until_week date,
    added_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT participants_from_week_check CHECK (extract(isodow FROM from_week) = 1),
    CONSTRAINT participants_until_week_check CHECK (extract(isodow FROM until_week) = 1),
    CONSTRAINT participants_range_check CHECK (until_week >= from_week)
);

-- Forfeits recorded with `driftsnap forfeit` (one row per authority and week; a month is stored
-- as its weeks), applied at the close together with the program file's [[forfeit]] entries.
CREATE TABLE forfeits (
    authority text NOT NULL,
    week_start date NOT NULL,
    reason text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (authority, week_start),
    CONSTRAINT forfeits_monday_check CHECK (extract(isodow FROM week_start) = 1),
    CONSTRAINT forfeits_reason_check CHECK (reason <> '')
);

-- One row per closed week: the canonical result (result_json, whose sha256 is result_sha256)
-- and what it was computed from: the method, the program file, the revealed sampling seed, the
-- Merkle root of the week's stored books and the digest of its fills. digest is the sha256 the
-- close prints (driftsnap.scoring.digest). A forced close keeps its reason and the refusals it
-- overrode (one per line).
CREATE TABLE week_closes (
    week_start date PRIMARY KEY,
    method text NOT NULL,
    params_hash text NOT NULL,
    program_digest text NOT NULL,
    forced boolean NOT NULL,
    force_reason text NOT NULL DEFAULT '',
    overridden text NOT NULL DEFAULT '',
    seed_sha256 text,
    seed text,
    books integer NOT NULL,
    books_root text NOT NULL,
    fills integer NOT NULL,
    fills_digest text NOT NULL,
    result_json text NOT NULL,
    result_sha256 text NOT NULL,
    digest text NOT NULL,
    closed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT week_closes_monday_check CHECK (extract(isodow FROM week_start) = 1),
    CONSTRAINT week_closes_forced_check CHECK (forced = (force_reason <> ''))
);

-- Every maker of every pool of a closed week (pool: a market name, or '*volume'), for SQL users;
-- the same numbers as week_closes.result_json. weight is the exact MMScore or maker volume.
CREATE TABLE week_close_payouts (
    week_start date NOT NULL,
    pool text NOT NULL,
    maker text NOT NULL,
    authority text NOT NULL,
    weight numeric NOT NULL,
    participant boolean NOT NULL,
    reward_micro_usdc bigint NOT NULL,
    PRIMARY KEY (week_start, pool, maker),
    CONSTRAINT week_close_payouts_reward_check CHECK (reward_micro_usdc >= 0)
);

-- ------------------------------------------------------------------ a closed week is immutable

CREATE FUNCTION driftsnap_week_closed(week_start date) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM week_closes AS c WHERE c.week_start = $1)
$$;

CREATE FUNCTION driftsnap_week_of(at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc('week', at AT TIME ZONE 'UTC')::date
$$;

-- The close's own rows: never changed. Payout rows are written before their week_closes row in
-- the close's transaction, so a payout row for a week already closed is refused too.
CREATE FUNCTION driftsnap_refuse_close_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF driftsnap_week_closed(NEW.week_start) THEN
            RAISE EXCEPTION 'week starting % is closed: % cannot gain rows',
                NEW.week_start, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'closed weeks are immutable: % cannot be truncated', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    RAISE EXCEPTION 'week starting % is closed and immutable: % rows cannot be changed',
        OLD.week_start, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER week_closes_immutable BEFORE UPDATE OR DELETE ON week_closes
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_close_change();
CREATE TRIGGER week_closes_no_truncate BEFORE TRUNCATE ON week_closes
    FOR EACH STATEMENT EXECUTE FUNCTION driftsnap_refuse_close_change();
CREATE TRIGGER week_close_payouts_immutable BEFORE INSERT OR UPDATE OR DELETE ON week_close_payouts
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_close_change();
CREATE TRIGGER week_close_payouts_no_truncate BEFORE TRUNCATE ON week_close_payouts
    FOR EACH STATEMENT EXECUTE FUNCTION driftsnap_refuse_close_change();

-- The inputs of a closed week: its books (no new, changed or deleted snapshot), its tick headers,
-- its seed record and its fills. A fill may still move from confirmed to finalized (a forced
-- close before finality), nothing else. New fills of a closed week are not refused: the ingest
-- must not stall on a late transaction; verify-week reports the changed fills digest instead.
CREATE FUNCTION driftsnap_refuse_closed_input() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    week date;
BEGIN
    IF TG_TABLE_NAME = 'fills' THEN
        week := driftsnap_week_of(OLD.block_time);
        IF TG_OP = 'UPDATE' AND to_jsonb(NEW) - 'commitment' = to_jsonb(OLD) - 'commitment' THEN
            RETURN NEW;
        END IF;
    ELSIF TG_TABLE_NAME = 'weeks' THEN
        week := OLD.week_start;
    ELSIF TG_OP = 'INSERT' THEN
        week := driftsnap_week_of(NEW.tick_at);
    ELSE
        week := driftsnap_week_of(OLD.tick_at);
    END IF;
    IF driftsnap_week_closed(week) THEN
        RAISE EXCEPTION 'week starting % is closed and immutable: % rows cannot be changed',
            week, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER snapshots_closed_week BEFORE INSERT OR UPDATE OR DELETE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_closed_input();
CREATE TRIGGER ticks_closed_week BEFORE UPDATE OR DELETE ON ticks
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_closed_input();
CREATE TRIGGER weeks_closed_week BEFORE UPDATE OR DELETE ON weeks
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_closed_input();
CREATE TRIGGER fills_closed_week BEFORE UPDATE OR DELETE ON fills
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_closed_input();
