-- 0006_roles: least privilege. The daemon writes as a role of its own, which owns nothing.
--
-- Never edit this file once it has been applied anywhere (see 0001). Nothing here is mirrored in
-- driftsnap/store/schema.py (functions and triggers only).
--
-- The owner of the schema (whoever runs `driftsnap migrate`) can ALTER a table, DISABLE its
-- triggers and then rewrite a closed week; so can a superuser. The daemon (`run`) therefore
-- connects as driftsnap_writer, the week close as driftsnap_closer and every read-only command as
-- driftsnap_reader: roles that own no table, so they cannot alter one or disable its triggers,
-- and hold no TRUNCATE. The roles are cluster-wide and their passwords secrets, so this file
-- names none of them: `driftsnap db roles` creates them, and `driftsnap migrate` grants them
-- their privileges table by table (driftsnap/store/roles.py), including on tables a later
-- migration adds.
--
-- What this file adds for every role, the owner included:
-- 1. No TRUNCATE of anything driftsnap stores: row triggers (0003, 0004) do not fire on TRUNCATE,
--    which emptied a closed week in one statement. A later migration that adds a table calls
--    driftsnap_refuse_truncate_on('the_table') for it.
-- 2. Week partitions created by a function that runs as the owner: PostgreSQL lets only a
--    table's owner create a partition of it, and the writer must not be the owner.

CREATE FUNCTION driftsnap_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of % refused: driftsnap never truncates its records (a closed week '
        'is immutable; drop the database to start over)', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;

-- Give ``rel`` its BEFORE TRUNCATE trigger unless it has it. Statement triggers of a partitioned
-- table are not cloned to its partitions, and a partition can be truncated by its own name: each
-- partition gets the trigger too.
CREATE FUNCTION driftsnap_refuse_truncate_on(rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'driftsnap_no_truncate'
    ) THEN
        EXECUTE format(
            'CREATE TRIGGER driftsnap_no_truncate BEFORE TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION driftsnap_refuse_truncate()', rel
        );
    END IF;
END
$$;
REVOKE ALL ON FUNCTION driftsnap_refuse_truncate_on(regclass) FROM PUBLIC;

-- Every table and partition driftsnap has created so far (those of 0005 included: the tables the
-- migrating role owns in driftsnap's schemas), except the migration ledger.
DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
            AND c.relname <> 'schema_migrations'
            AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
            AND n.nspname IN (current_schema(), 'driftsnap_partitions')
        ORDER BY n.nspname, c.relname
    LOOP
        PERFORM driftsnap_refuse_truncate_on(rel);
    END LOOP;
END
$$;

-- Create the partitions of the week starting ``monday`` of every partitioned table that lacks
-- one; returns how many it created. Mirrors driftsnap.store.weeks (names like
-- bracket_cells_2026w47; accumulators by week_start with fillfactor 50, the rest by tick_at from
-- Monday 00:00 UTC). SECURITY DEFINER: it runs as the owner, for the writer, and can do nothing
-- but this; each new partition gets its parent's SELECT/INSERT/UPDATE/DELETE grants (a partition
-- written by its own name checks its own privileges) and the TRUNCATE trigger.
CREATE FUNCTION driftsnap_create_week_partitions(monday date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    parent record;
    grant_ record;
    part text;
    target regclass;
    low text;
    high text;
    made integer := 0;
BEGIN
    IF monday IS NULL OR extract(isodow FROM monday) <> 1 THEN
        RAISE EXCEPTION 'week partitions start on a Monday, not %', monday
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR parent IN
        SELECT c.oid::regclass AS rel, c.relname, a.attname, c.relacl, c.relowner
        FROM pg_partitioned_table AS p
        JOIN pg_class AS c ON c.oid = p.partrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
        WHERE n.nspname = current_schema() AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        part := format('%s_%sw%s', parent.relname, to_char(monday, 'IYYY'), to_char(monday, 'IW'));
        CONTINUE WHEN to_regclass(format('driftsnap_partitions.%I', part)) IS NOT NULL;
        IF parent.attname = 'week_start' THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS driftsnap_partitions.%I PARTITION OF %s '
                'FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 50)',
                part, parent.rel, monday, monday + 7
            );
        ELSE
            low := (monday::timestamp AT TIME ZONE 'UTC')::text;
            high := ((monday + 7)::timestamp AT TIME ZONE 'UTC')::text;
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS driftsnap_partitions.%I PARTITION OF %s '
                'FOR VALUES FROM (%L) TO (%L)',
                part, parent.rel, low, high
            );
        END IF;
        target := format('driftsnap_partitions.%I', part)::regclass;
        FOR grant_ IN
            SELECT DISTINCT acl.privilege_type, r.rolname
            FROM aclexplode(parent.relacl) AS acl
            JOIN pg_roles AS r ON r.oid = acl.grantee
            WHERE acl.grantee <> parent.relowner
                AND acl.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
        LOOP
            EXECUTE format('GRANT %s ON %s TO %I', grant_.privilege_type, target, grant_.rolname);
        END LOOP;
        PERFORM driftsnap_refuse_truncate_on(target);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;
REVOKE ALL ON FUNCTION driftsnap_create_week_partitions(date) FROM PUBLIC;
