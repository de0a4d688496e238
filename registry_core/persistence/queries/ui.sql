-- Named queries (`-- name: x`) of the web UI (workers/ui/), $n parameters only. Each is served
-- by an existing index; docs/ui.md has the page times with 100k cards.

-- name: ui_space_counts
-- The overview's table: cards, names and deleted cards per registry and space. A full scan
-- (~100k rows): workers/ui/data.py caches it for a second and the live feed refreshes it.
SELECT registry, space, count(*) AS cards, count(DISTINCT name) AS names,
       count(*) FILTER (WHERE status = 'deleted') AS deleted, max(created_at) AS last_at
FROM cards GROUP BY registry, space ORDER BY registry, space;

-- name: ui_recent_events
-- The newest events of the log (a backward scan of its primary key), with the card fields a
-- feed line shows; $1 = before this offset (NULL: from the end), $2 = how many, $3 = event
-- types (NULL: all).
SELECT e.event_offset, e.event_type, e.occurred_at, e.applied,
       e.payload #>> '{card,uid}' AS uid, e.payload #>> '{card,registry}' AS registry,
       e.payload #>> '{card,space}' AS space, e.payload #>> '{card,name}' AS name,
       e.payload #>> '{card,version}' AS version,
       coalesce(e.payload ->> 'error_code', '') AS error_code
FROM event_log AS e
WHERE ($1::bigint IS NULL OR e.event_offset < $1::bigint)
  AND ($3::text[] IS NULL OR e.event_type = ANY($3::text[]))
ORDER BY e.event_offset DESC
LIMIT $2;

-- name: ui_name_counts
-- Versions (all, and deleted) of the names on one page of the names list.
SELECT c.space, c.name, count(*) AS versions, count(*) FILTER (WHERE c.status = 'deleted') AS deleted
FROM cards AS c
JOIN unnest($2::text[], $3::text[]) AS k(space, name) ON c.space = k.space AND c.name = k.name
WHERE c.registry = $1
GROUP BY c.space, c.name;

-- name: ui_card_brief
-- What a live notice says about the cards of some commands (registered, updated, deleted).
SELECT o.command_id, o.status, o.uid, o.registry, o.space, o.name, o.version, o.decided_at
FROM command_outcomes AS o
WHERE o.command_id = ANY($1::uuid[]) AND o.status <> 'rejected';

