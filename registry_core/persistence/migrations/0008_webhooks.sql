-- Webhooks (docs/events.md, "Webhooks"): endpoints an operator registers, the delivery process's
-- position in `opsml.events`, one delivery per (endpoint, event) and every attempt at it.
-- Its own schema, like opsml_auth: these are operator configuration and delivery state, not
-- events (an endpoint's signing secret must never be on the log every subscriber reads), so
-- `opsml replay` neither rebuilds nor compares nor swaps them; a rebuild's migrations find the
-- tables already there and leave them.
CREATE SCHEMA IF NOT EXISTS opsml_webhooks;

CREATE TABLE IF NOT EXISTS opsml_webhooks.endpoints (
    endpoint_id   text PRIMARY KEY,                 -- wh_<12 hex>
    url           text NOT NULL,
    description   text,
    event_types   text[] NOT NULL DEFAULT '{}',     -- empty: every type but sequencer_started
    registry      text,                             -- glob patterns (fnmatch); NULL: any
    space         text,
    name          text,
    alias         text,                             -- only events with a matching `alias` field
    secret        text NOT NULL,                    -- whsec_<base64>: signs every delivery
    previous_secret text,                           -- the rotated-out secret, still signing ...
    previous_secret_expires_at timestamptz,         -- ... until then (two valid secrets)
    enabled       boolean NOT NULL DEFAULT true,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The delivery process's position: the next offset of `opsml.events` to fan out and the epoch
-- fence's highest epoch, committed in the same transaction as the deliveries they produced.
CREATE TABLE IF NOT EXISTS opsml_webhooks.cursor (
    name        text PRIMARY KEY,
    position    bigint NOT NULL,
    max_epoch   integer NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS opsml_webhooks.deliveries (
    endpoint_id   text NOT NULL REFERENCES opsml_webhooks.endpoints ON DELETE CASCADE,
    event_offset  bigint NOT NULL,
    event_id      uuid NOT NULL,                    -- the webhook-id: the receiver's idempotency key
    event_type    text NOT NULL,
    body          text NOT NULL,                    -- the exact bytes sent (and signed)
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    round_start   integer NOT NULL DEFAULT 0,       -- attempts before the last redelivery request
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error    text,
    last_response text,                             -- bounded (OPSML_WEBHOOK_RESPONSE_MAX_BYTES)
    last_latency_ms double precision,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    PRIMARY KEY (endpoint_id, event_offset)
);
-- An endpoint's lane: its oldest undelivered delivery first.
CREATE INDEX IF NOT EXISTS deliveries_pending
    ON opsml_webhooks.deliveries (endpoint_id, event_offset) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS opsml_webhooks.attempts (
    endpoint_id   text NOT NULL,
    event_offset  bigint NOT NULL,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    status_code   integer,                          -- NULL: no HTTP answer (see error)
    error         text,
    response      text,                             -- bounded
    latency_ms    double precision NOT NULL,
    PRIMARY KEY (endpoint_id, event_offset, attempt),
    FOREIGN KEY (endpoint_id, event_offset)
        REFERENCES opsml_webhooks.deliveries ON DELETE CASCADE
);
