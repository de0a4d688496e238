-- Named queries for aliases and reads "as of" a moment (`-- name: x`), $n parameters only.

-- name: aliases_for_keys
-- The aliases of the names a batch touches (the decider's state).
SELECT a.registry, a.space, a.name, a.alias, a.uid, a.version
FROM aliases AS a
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(registry, space, name)
  ON a.registry = k.registry AND a.space = k.space AND a.name = k.name;

-- name: upsert_alias
INSERT INTO aliases (registry, space, name, alias, uid, version, actor, set_at, event_offset)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (registry, space, name, alias) DO UPDATE
SET uid = EXCLUDED.uid, version = EXCLUDED.version, actor = EXCLUDED.actor,
    set_at = EXCLUDED.set_at, event_offset = EXCLUDED.event_offset;

-- name: delete_alias
DELETE FROM aliases WHERE registry = $1 AND space = $2 AND name = $3 AND alias = $4;

-- name: insert_alias_history
INSERT INTO alias_history (event_offset, registry, space, name, alias, action, uid, version,
                           previous_version, actor, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);

-- name: insert_card_change
INSERT INTO card_changes (uid, event_offset) VALUES ($1, $2);

-- name: list_aliases
-- The aliases of one name now ($4: one alias, or NULL for all).
SELECT alias, uid, version, actor, set_at, event_offset
FROM aliases WHERE registry = $1 AND space = $2 AND name = $3 AND ($4::text IS NULL OR alias = $4)
ORDER BY alias;

-- name: list_aliases_as_of
-- The aliases of one name as they were at offset $5 ($4: one alias, or NULL for all): each
-- alias's last event at or below the offset, if that was a set.
SELECT * FROM (
    SELECT DISTINCT ON (alias) alias, action, uid, version, actor, occurred_at AS set_at,
           event_offset
    FROM alias_history
    WHERE registry = $1 AND space = $2 AND name = $3 AND ($4::text IS NULL OR alias = $4)
      AND event_offset <= $5
    ORDER BY alias, event_offset DESC
) AS last WHERE action = 'set' ORDER BY alias;

-- name: alias_at
-- Where one alias pointed at offset $5 (no row, or action 'removed': it did not exist then).
SELECT action, uid, version, actor, occurred_at AS set_at, event_offset
FROM alias_history
WHERE registry = $1 AND space = $2 AND name = $3 AND alias = $4 AND event_offset <= $5
ORDER BY event_offset DESC LIMIT 1;

-- name: alias_history
-- Every move of the aliases of one name, newest first ($4: one alias or NULL; $5: limit).
SELECT event_offset, alias, action, uid, version, previous_version, actor, occurred_at
FROM alias_history
WHERE registry = $1 AND space = $2 AND name = $3 AND ($4::text IS NULL OR alias = $4)
ORDER BY event_offset DESC LIMIT $5;

-- name: aliases_of_uids
-- The aliases pointing at these cards now.
SELECT uid, alias FROM aliases WHERE uid = ANY($1::uuid[]) ORDER BY alias;

-- name: offset_at_time
-- The last event at or before a time (-1: none yet).
SELECT coalesce(
    (SELECT event_offset FROM event_log WHERE occurred_at <= $1
     ORDER BY occurred_at DESC, event_offset DESC LIMIT 1), -1) AS event_offset;

-- name: last_event_offset
SELECT coalesce((SELECT max(event_offset) FROM event_log), -1) AS event_offset;

-- name: get_card_as_of
-- One card as of offset $2 (no row: not registered yet), with the archived record of its last
-- change at or below $2 when it changed after $2 (registry_core/persistence/as_of.py).
SELECT uid, registry, space, name, version, card_type, tags, description, metadata, attributes,
       artifacts, status, created_at, updated_at, command_id, actor, event_offset, h.asof_payload,
       ARRAY(SELECT DISTINCT ah.alias FROM alias_history ah
             WHERE ah.uid = cards.uid AND ah.action = 'set' AND ah.event_offset <= $2
               AND NOT EXISTS (SELECT 1 FROM alias_history nx
                               WHERE nx.registry = ah.registry AND nx.space = ah.space
                                 AND nx.name = ah.name AND nx.alias = ah.alias
                                 AND nx.event_offset > ah.event_offset
                                 AND nx.event_offset <= $2)
             ORDER BY 1) AS aliases
FROM cards
LEFT JOIN LATERAL (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM card_changes y
                             WHERE y.uid = cards.uid AND y.event_offset > $2)
           THEN (SELECT e.payload FROM event_log e
                 WHERE e.event_offset = (SELECT coalesce(max(x.event_offset), cards.event_offset)
                                         FROM card_changes x
                                         WHERE x.uid = cards.uid AND x.event_offset <= $2))
           END AS asof_payload
) AS h ON true
WHERE uid = $1 AND event_offset <= $2;


-- name: alias_card_as_of
-- The card alias $4 of $1/$2/$3 pointed at as of offset $5 - or, with $5 NULL, as of the last
-- event at or before time $6 - with its record and aliases then; one round trip (no row: the
-- alias did not exist then). `at` is the offset the moment resolved to.
WITH o AS (
    SELECT coalesce($5::bigint,
                    (SELECT event_offset FROM event_log WHERE occurred_at <= $6::timestamptz
                     ORDER BY occurred_at DESC, event_offset DESC LIMIT 1),
                    -1) AS at
), a AS (
    SELECT h.action, h.uid FROM alias_history AS h, o
    WHERE h.registry = $1 AND h.space = $2 AND h.name = $3 AND h.alias = $4
      AND h.event_offset <= o.at
    ORDER BY h.event_offset DESC LIMIT 1
)
SELECT cards.uid, cards.registry, cards.space, cards.name, cards.version, cards.card_type,
       cards.tags, cards.description, cards.metadata, cards.attributes, cards.artifacts,
       cards.status, cards.created_at, cards.updated_at, cards.command_id, cards.actor,
       cards.event_offset, h.asof_payload,
       ARRAY(SELECT DISTINCT ah.alias FROM alias_history ah
             WHERE ah.uid = cards.uid AND ah.action = 'set' AND ah.event_offset <= o.at
               AND NOT EXISTS (SELECT 1 FROM alias_history nx
                               WHERE nx.registry = ah.registry AND nx.space = ah.space
                                 AND nx.name = ah.name AND nx.alias = ah.alias
                                 AND nx.event_offset > ah.event_offset
                                 AND nx.event_offset <= o.at)
             ORDER BY 1) AS aliases,
       o.at AS asof_offset
FROM o
CROSS JOIN a
JOIN cards ON cards.uid = a.uid AND a.action = 'set'
LEFT JOIN LATERAL (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM card_changes y
                             WHERE y.uid = cards.uid AND y.event_offset > o.at)
           THEN (SELECT e.payload FROM event_log e
                 WHERE e.event_offset = (SELECT coalesce(max(x.event_offset), cards.event_offset)
                                         FROM card_changes x
                                         WHERE x.uid = cards.uid AND x.event_offset <= o.at))
           END AS asof_payload
) AS h ON true;
