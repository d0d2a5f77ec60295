-- A closed week's tick headers are its coverage: refuse a new header too, not only a changed or
-- deleted one. (0003 refused INSERT of snapshots but let a `missed` header without snapshots be
-- added to a closed week, which would change its coverage after the close.) The daemon never
-- writes into a closed week; this makes the database say so for every other writer.
DROP TRIGGER ticks_closed_week ON ticks;
CREATE TRIGGER ticks_closed_week BEFORE INSERT OR UPDATE OR DELETE ON ticks
    FOR EACH ROW EXECUTE FUNCTION driftsnap_refuse_closed_input();
