-- Every statement that writes or deletes bars announces the symbols it touched on the channel
-- `mirai_bars` (one notification per symbol, delivered at commit, never for a rolled-back
-- transaction): each replica's bars cache drops those symbols' pages. Statement-level, so a
-- 200,000-row import costs one pass over its rows, not a trigger call per row.
CREATE FUNCTION bars_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirai_bars', symbol) FROM (SELECT DISTINCT symbol FROM changed) AS s;
    RETURN NULL;
END
$$;

-- A trigger with transition tables serves one event, hence three.
CREATE TRIGGER bars_inserted AFTER INSERT ON bars
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION bars_changed();
CREATE TRIGGER bars_updated AFTER UPDATE ON bars
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION bars_changed();
CREATE TRIGGER bars_deleted AFTER DELETE ON bars
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION bars_changed();
