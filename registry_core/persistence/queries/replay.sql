-- Named queries (`-- name: x`) of `opsml replay` (workers/replay/): reading the event archive,
-- the tracking rows a switch carries over, and republishing. $n parameters only.

-- name: archive_page
SELECT event_offset, payload FROM event_log
WHERE event_offset >= $1 AND event_offset <= $2
ORDER BY event_offset LIMIT $3;

-- name: archive_page_text
-- (payloads as JSON text: the bulk path's input)
SELECT event_offset, payload::text AS payload FROM event_log
WHERE event_offset >= $1 AND event_offset <= $2
ORDER BY event_offset LIMIT $3;

-- name: archive_end
SELECT coalesce(max(event_offset), -1) FROM event_log;

-- name: live_tracking
SELECT name, command_offset, event_offset, max_epoch, claimed_epoch FROM tracking;

-- name: upsert_tracking
INSERT INTO tracking (name, command_offset, event_offset, max_epoch, claimed_epoch)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE SET command_offset = $2, event_offset = $3, max_epoch = $4,
    claimed_epoch = $5, updated_at = now();

-- name: lift_claimed_epoch
-- A recovered registry with no live tracking: the next worker must claim an epoch above every
-- epoch in the log, or its own events would look fenced to the next replay.
UPDATE tracking SET claimed_epoch = GREATEST(claimed_epoch, max_epoch);

-- name: reset_command_offset
-- After a republish the commands topic is new: the worker reads it from offset 0.
UPDATE tracking SET command_offset = -1, updated_at = now() WHERE name = $1;

-- name: switch_lock_timeout
-- (in the switch's transaction: what SET LOCAL does)
SELECT set_config('lock_timeout', '30s', true);

-- name: lock_tracking_exclusive
-- The worker's next projection waits (its tracking update needs the row); readers do not.
LOCK TABLE tracking IN EXCLUSIVE MODE;
