-- 0009: the web UI's name search ("name contains ...", workers/ui/data.py) served by a trigram
-- index, so a rare substring costs ~1 ms instead of a scan of every card of the registry
-- (docs/ui.md). pg_trgm ships with PostgreSQL (contrib); where it cannot be installed (no
-- privilege, no contrib package) the migration still applies and the search scans.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX IF NOT EXISTS cards_name_trgm ON cards USING gin (name gin_trgm_ops);
EXCEPTION
    WHEN insufficient_privilege OR undefined_file OR feature_not_supported OR undefined_object THEN
        RAISE NOTICE 'pg_trgm is not available (%): the UI''s name search will scan', SQLERRM;
END
$$;
