-- Named queries (`-- name: x`) of the webhooks (`opsml_webhooks`, migration 0008;
-- workers/webhooks/store.py). $n parameters only.

-- name: wh_create_endpoint
-- created_at is the time the row is written, after the table lock (not the transaction's
-- start): see wh_lock_endpoints.
INSERT INTO opsml_webhooks.endpoints
    (endpoint_id, url, description, event_types, registry, space, name, alias, secret, enabled,
     created_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp(), clock_timestamp())
RETURNING *;

-- name: wh_lock_endpoints
-- The fan-out reads the endpoints under this lock, in its own transaction: a registration
-- (ROW EXCLUSIVE) waits for the fan-out to commit or is committed before it reads, so an event
-- that occurred after an endpoint's created_at is never matched against a list without it.
LOCK TABLE opsml_webhooks.endpoints IN SHARE MODE;

-- name: wh_list_endpoints
SELECT * FROM opsml_webhooks.endpoints ORDER BY created_at, endpoint_id;

-- name: wh_get_endpoint
SELECT * FROM opsml_webhooks.endpoints WHERE endpoint_id = $1;

-- name: wh_update_endpoint
-- Every field given (the API merges the change into the stored row first).
UPDATE opsml_webhooks.endpoints
SET url = $2, description = $3, event_types = $4, registry = $5, space = $6, name = $7,
    alias = $8, enabled = $9, updated_at = now()
WHERE endpoint_id = $1
RETURNING *;

-- name: wh_rotate_secret
UPDATE opsml_webhooks.endpoints
SET previous_secret = secret, previous_secret_expires_at = now() + $3::interval, secret = $2,
    updated_at = now()
WHERE endpoint_id = $1
RETURNING *;

-- name: wh_delete_endpoint
DELETE FROM opsml_webhooks.endpoints WHERE endpoint_id = $1;

-- name: wh_cursor
SELECT position, max_epoch FROM opsml_webhooks.cursor WHERE name = $1;

-- name: wh_save_cursor
INSERT INTO opsml_webhooks.cursor (name, position, max_epoch) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET position = EXCLUDED.position, max_epoch = EXCLUDED.max_epoch, updated_at = now();

-- name: wh_insert_delivery
-- A repeated fan-out (a crash before the cursor's commit) adds nothing.
INSERT INTO opsml_webhooks.deliveries (endpoint_id, event_offset, event_id, event_type, body)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (endpoint_id, event_offset) DO NOTHING;

-- name: wh_next_deliveries
-- An endpoint's lane: its oldest pending deliveries (per-endpoint order is event order).
SELECT endpoint_id, event_offset, event_id, event_type, body, attempts, round_start,
       next_attempt_at, now() AS db_now
FROM opsml_webhooks.deliveries
WHERE endpoint_id = $1 AND status = 'pending'
ORDER BY event_offset LIMIT $2;

-- name: wh_lanes_with_work
-- Endpoints (enabled) with anything pending: the process's wake-up check.
SELECT DISTINCT d.endpoint_id FROM opsml_webhooks.deliveries d
JOIN opsml_webhooks.endpoints e USING (endpoint_id)
WHERE d.status = 'pending' AND e.enabled;

-- name: wh_settle_delivery
-- After an attempt, in one statement: the attempt into the log, and the delivery's new state
-- ($3 the status, $4 seconds until the next try while pending).
WITH logged AS (
    INSERT INTO opsml_webhooks.attempts
        (endpoint_id, event_offset, attempt, status_code, error, response, latency_ms)
    VALUES ($1, $2, $5, $6, $7, $8, $9)
    ON CONFLICT DO NOTHING
)
UPDATE opsml_webhooks.deliveries
SET attempts = $5, status = $3, next_attempt_at = now() + $4 * interval '1 second',
    last_status_code = $6, last_error = $7, last_response = $8, last_latency_ms = $9,
    delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END
WHERE endpoint_id = $1 AND event_offset = $2;

-- name: wh_list_deliveries
SELECT endpoint_id, event_offset, event_id, event_type, status, attempts, next_attempt_at,
       last_status_code, last_error, last_response, last_latency_ms, created_at, delivered_at
FROM opsml_webhooks.deliveries
WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2) AND event_offset > $3
ORDER BY event_offset LIMIT $4;

-- name: wh_get_delivery
SELECT endpoint_id, event_offset, event_id, event_type, status, attempts, next_attempt_at,
       last_status_code, last_error, last_response, last_latency_ms, created_at, delivered_at
FROM opsml_webhooks.deliveries WHERE endpoint_id = $1 AND event_offset = $2;

-- name: wh_delivery_attempts
SELECT attempt, attempted_at, status_code, error, response, latency_ms
FROM opsml_webhooks.attempts WHERE endpoint_id = $1 AND event_offset = $2 ORDER BY attempt;

-- name: wh_redeliver
-- Send again (delivered or dead alike), now, with a fresh attempt budget.
UPDATE opsml_webhooks.deliveries
SET status = 'pending', next_attempt_at = now(), round_start = attempts
WHERE endpoint_id = $1 AND event_offset = $2
RETURNING event_offset;

-- name: wh_redeliver_dead
UPDATE opsml_webhooks.deliveries
SET status = 'pending', next_attempt_at = now(), round_start = attempts
WHERE endpoint_id = $1 AND status = 'dead'
RETURNING event_offset;

-- name: wh_prune_delivered
-- The delivery log's retention: delivered deliveries older than $1 (their attempts cascade).
DELETE FROM opsml_webhooks.deliveries
WHERE status = 'delivered' AND delivered_at < now() - $1::interval;

-- name: wh_delivery_counts
SELECT endpoint_id, status, count(*) AS n FROM opsml_webhooks.deliveries
WHERE status <> 'delivered' GROUP BY endpoint_id, status;
