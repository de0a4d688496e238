-- Named queries (`-- name: x`) of the connection plumbing: advisory locks, migrations,
-- keepalives (registry_core/persistence/db.py). $n parameters only.

-- name: try_advisory_lock
-- The two-int form: ($1 namespace, $2 key); see db.LOCK_NAMESPACE.
SELECT pg_try_advisory_lock($1, $2);

-- name: advisory_lock
SELECT pg_advisory_lock($1, $2);

-- name: advisory_unlock
SELECT pg_advisory_unlock($1, $2);

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version, name) VALUES ($1, $2);

-- name: set_keepalives
-- The session's TCP keepalives (what SET does; SET takes no parameters), in seconds.
SELECT set_config('tcp_keepalives_idle', $1::text, false),
       set_config('tcp_keepalives_interval', $2::text, false),
       set_config('tcp_keepalives_count', $3::text, false);
