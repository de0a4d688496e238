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

-- name: insert_event
INSERT INTO event_log
    (event_offset, event_id, event_type, command_id, epoch, schema_version, applied, occurred_at,
     payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb);

-- name: insert_card
INSERT INTO cards
    (uid, registry, space, name, version, major, minor, patch, pre_key, card_type, tags,
     description, metadata, attributes, status, created_at, command_id, actor, event_offset)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14::jsonb, $15, $16,
        $17, $18, $19);

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

-- name: get_outcomes
SELECT o.command_id, o.status, o.uid, o.version, o.error_code, o.reason, o.event_offset,
       o.decided_at
FROM command_outcomes AS o WHERE o.command_id = ANY($1::uuid[]);

-- name: get_card
SELECT uid, registry, space, name, version, card_type, tags, description, metadata, attributes,
       status, created_at, command_id, actor, event_offset
FROM cards WHERE uid = $1;
