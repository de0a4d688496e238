-- Named queries (`-- name: x`) on the Postgres catalog, for the replay's schemas, comparison
-- and bulk load (workers/replay/). $n parameters only: schema and table names are data here;
-- where one must be part of a statement's text, workers/replay/schemas.ident quotes it.

-- name: replay_schemas
SELECT nspname FROM pg_namespace WHERE nspname ~ '^opsml_(rebuild|old)_[0-9]+$';

-- name: schema_tables
SELECT table_name FROM information_schema.tables WHERE table_schema = $1;

-- name: schema_columns
SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1;

-- name: table_columns
-- Column name and data type, in column order.
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position;

-- name: primary_key_columns
SELECT a.attname FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = $1 AND c.relname = $2 ORDER BY k.ord;

-- name: schema_grants
SELECT coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type
FROM pg_namespace n, aclexplode(n.nspacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = $1;

-- name: table_grants
-- Privileges on the tables $2 of schema $1, except the owner's own.
SELECT c.relname, coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.grantee <> c.relowner;

-- name: key_constraints
-- Primary keys and unique constraints of schema $1's tables but $2, with their index's
-- definition (contype::text: a "char" column comes back from asyncpg as bytes, b"p" != "p").
SELECT c.relname AS tbl, k.conname AS name, k.contype::text AS type, k.conindid AS idx,
       pg_get_indexdef(k.conindid) AS def
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class i ON i.oid = k.conindid
WHERE n.nspname = $1 AND k.contype IN ('p', 'u') AND c.relname <> ALL($2::text[])
  AND i.relname = k.conname
ORDER BY k.contype, c.relname, k.conname;

-- name: table_indexes
-- Every index of schema $1's tables but $2 (those backing a constraint included).
SELECT t.relname AS tbl, i.relname AS name, pg_get_indexdef(i.oid) AS def, i.oid AS oid
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = $1 AND t.relname <> ALL($2::text[])
ORDER BY t.relname, i.relname;

-- name: set_session
-- SET with a parameter (SET itself takes none): a server setting for this session.
SELECT set_config($1, $2, false);
