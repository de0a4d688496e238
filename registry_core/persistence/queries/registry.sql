-- Named queries (`-- name: x`), $n parameters only.

-- name: claim_epoch
INSERT INTO tracking (name, claimed_epoch) VALUES ($1, 1)
ON CONFLICT (name) DO UPDATE SET claimed_epoch = tracking.claimed_epoch + 1, updated_at = now()
RETURNING command_offset, event_offset, max_epoch, claimed_epoch;

-- name: get_tracking
SELECT command_offset, event_offset, max_epoch, claimed_epoch FROM tracking WHERE name = $1;

-- name: lock_tracking
SELECT command_offset, event_offset, max_epoch, claimed_epoch FROM tracking WHERE name = $1
FOR UPDATE;

-- name: update_tracking
UPDATE tracking
SET command_offset = GREATEST(command_offset, $2), event_offset = GREATEST(event_offset, $3),
    max_epoch = GREATEST(max_epoch, $4), updated_at = now()
WHERE name = $1;

-- name: project_batch
-- The whole common part of a batch in ONE statement (one round trip, and its own transaction
-- when no other statement is needed): the fenced tracking update, the event archive, the new
-- cards, the outcomes and the NOTIFYs. Rows arrive as one JSON array per table (orjson on the
-- client, json_populate_recordset here: no per-row execute, no per-value encoding in Python).
-- Every insert is conditioned on the tracking update having matched: if another sequencer
-- claimed a newer epoch ($5), nothing is written and `ok` is false. The UPDATE takes the
-- tracking row's lock, which claim_epoch needs too, so a concurrent claim waits or fences us.
WITH t AS (
    UPDATE tracking
    SET command_offset = GREATEST(command_offset, $2), event_offset = GREATEST(event_offset, $3),
        max_epoch = GREATEST(max_epoch, $4), updated_at = now()
    WHERE name = $1 AND ($5::integer IS NULL OR claimed_epoch = $5::integer)
    RETURNING 1
), ev AS (
    INSERT INTO event_log
        (event_offset, event_id, event_type, command_id, epoch, schema_version, applied,
         occurred_at, payload)
    SELECT r.event_offset, r.event_id, r.event_type, r.command_id, r.epoch, r.schema_version,
           r.applied, r.occurred_at, r.payload
    FROM json_populate_recordset(NULL::event_log, $6::json) AS r
    WHERE EXISTS (SELECT 1 FROM t)
), c AS (
    INSERT INTO cards
        (uid, registry, space, name, version, major, minor, patch, pre_key, card_type, tags,
         description, metadata, attributes, status, created_at, command_id, actor, event_offset,
         artifacts)
    SELECT r.uid, r.registry, r.space, r.name, r.version, r.major, r.minor, r.patch, r.pre_key,
           r.card_type, r.tags, r.description, r.metadata, r.attributes, r.status, r.created_at,
           r.command_id, r.actor, r.event_offset, r.artifacts
    FROM json_populate_recordset(NULL::cards, $7::json) AS r
    WHERE EXISTS (SELECT 1 FROM t)
), o AS (
    INSERT INTO command_outcomes
        (command_id, status, uid, version, error_code, reason, registry, space, name,
         command_offset, event_offset, decided_at)
    SELECT r.command_id, r.status, r.uid, r.version, r.error_code, r.reason, r.registry, r.space,
           r.name, r.command_offset, r.event_offset, r.decided_at
    FROM json_populate_recordset(NULL::command_outcomes, $8::json) AS r
    WHERE EXISTS (SELECT 1 FROM t)
    ON CONFLICT (command_id) DO NOTHING
), n AS (
    SELECT pg_notify('opsml_outcomes', chunk) FROM unnest($9::text[]) AS chunk
    WHERE EXISTS (SELECT 1 FROM t)
)
SELECT EXISTS (SELECT 1 FROM t) AS ok, (SELECT count(*) FROM n) AS notified;

-- name: set_aside_event
-- An event the read tables refuse (projection.project, "Poison events" in docs/architecture.md):
-- archived with applied = false and nothing else, with project_batch's fenced tracking update.
-- The payload comes as a parameter cast to json, which keeps any JSON text (json_populate_recordset
-- de-escapes the whole document and refuses `\u0000` even for a json column). With $6 NULL (the
-- archive refuses the row too) only the offsets move.
WITH t AS (
    UPDATE tracking
    SET command_offset = GREATEST(command_offset, $2), event_offset = GREATEST(event_offset, $3),
        max_epoch = GREATEST(max_epoch, $4), updated_at = now()
    WHERE name = $1 AND ($5::integer IS NULL OR claimed_epoch = $5::integer)
    RETURNING 1
), ev AS (
    INSERT INTO event_log
        (event_offset, event_id, event_type, command_id, epoch, schema_version, applied,
         occurred_at, payload)
    SELECT $3, $6::uuid, $7::text, $8::uuid, $9::integer, $10::integer, false,
           $11::timestamptz, $12::json
    WHERE EXISTS (SELECT 1 FROM t) AND $6::uuid IS NOT NULL
)
SELECT EXISTS (SELECT 1 FROM t) AS ok;

-- name: insert_event
INSERT INTO event_log
    (event_offset, event_id, event_type, command_id, epoch, schema_version, applied, occurred_at,
     payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb);

-- name: insert_card
INSERT INTO cards
    (uid, registry, space, name, version, major, minor, patch, pre_key, card_type, tags,
     description, metadata, attributes, status, created_at, command_id, actor, event_offset,
     artifacts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14::jsonb, $15, $16,
        $17, $18, $19, $20::jsonb);

-- name: insert_artifact
INSERT INTO artifacts (registry, space, sha256, key, size, uid) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING;

-- name: delete_artifacts_of
DELETE FROM artifacts WHERE uid = ANY($1::uuid[]);

-- name: known_artifacts
SELECT DISTINCT ON (sha256) sha256, key, size FROM artifacts
WHERE registry = $1 AND space = $2 AND sha256 = ANY($3::text[]);

-- name: insert_outcome
INSERT INTO command_outcomes
    (command_id, status, uid, version, error_code, reason, registry, space, name, command_offset,
     event_offset, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (command_id) DO NOTHING;

-- name: notify_outcomes
SELECT pg_notify('opsml_outcomes', chunk) FROM unnest($1::text[]) AS chunk;

-- name: known_outcomes
SELECT command_id FROM command_outcomes WHERE command_id = ANY($1::uuid[]);

-- name: versions_for_keys
SELECT c.registry, c.space, c.name, c.version
FROM cards AS c
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(registry, space, name)
  ON c.registry = k.registry AND c.space = k.space AND c.name = k.name;

-- name: get_outcome
SELECT o.command_id, o.status, o.uid, o.version, o.error_code, o.reason, o.event_offset,
       o.decided_at
FROM command_outcomes AS o WHERE o.command_id = $1;

-- name: get_outcome_with_card
SELECT o.command_id, o.status, o.uid, o.version, o.error_code, o.reason, o.event_offset,
       o.decided_at,
       CASE WHEN c.uid IS NULL THEN NULL ELSE jsonb_build_object(
           'uid', c.uid, 'registry', c.registry, 'space', c.space, 'name', c.name,
           'version', c.version, 'card_type', c.card_type, 'tags', c.tags,
           'description', c.description, 'metadata', c.metadata, 'attributes', c.attributes,
           'artifacts', c.artifacts, 'status', c.status, 'created_at', c.created_at,
           'updated_at', c.updated_at, 'command_id', c.command_id, 'actor', c.actor,
           'event_offset', c.event_offset) END AS card
FROM command_outcomes AS o
LEFT JOIN cards AS c ON c.uid = o.uid AND o.status <> 'rejected'
WHERE o.command_id = $1;

-- name: get_outcomes
SELECT o.command_id, o.status, o.uid, o.version, o.error_code, o.reason, o.event_offset,
       o.decided_at
FROM command_outcomes AS o WHERE o.command_id = ANY($1::uuid[]);

-- name: get_card
SELECT uid, registry, space, name, version, card_type, tags, description, metadata, attributes,
       artifacts, status, created_at, updated_at, command_id, actor, event_offset
FROM cards WHERE uid = $1;

-- name: get_cards
SELECT uid, registry, space, name, version, card_type, tags, description, metadata, attributes,
       artifacts, status, created_at, updated_at, command_id, actor, event_offset
FROM cards WHERE uid = ANY($1::uuid[]);

-- name: rewrite_card
UPDATE cards SET tags = $2::jsonb, description = $3, metadata = $4::jsonb, attributes = $5::jsonb,
                 status = $6, updated_at = $7
WHERE uid = $1;

-- name: clear_lineage
DELETE FROM lineage WHERE uid = ANY($1::uuid[]);

-- name: insert_lineage
INSERT INTO lineage (uid, ref_uid, field) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING;

-- name: clear_metrics
DELETE FROM run_metrics WHERE uid = ANY($1::uuid[]);

-- name: insert_metric
INSERT INTO run_metrics (uid, seq, name, step, value, logged_at) VALUES ($1, $2, $3, $4, $5, $6);

-- name: lineage_upstream
SELECT l.field, l.ref_uid AS uid FROM lineage AS l WHERE l.uid = $1;

-- name: lineage_downstream
SELECT l.field, l.uid AS uid FROM lineage AS l WHERE l.ref_uid = $1;

-- name: run_metrics
SELECT m.uid, m.name, m.step, m.value, m.logged_at
FROM run_metrics AS m
WHERE m.uid = ANY($1::uuid[]) AND ($2::text[] IS NULL OR m.name = ANY($2::text[]))
ORDER BY m.uid, m.name, m.step NULLS FIRST, m.seq;
