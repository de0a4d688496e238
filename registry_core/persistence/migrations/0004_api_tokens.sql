-- API tokens live in their own schema: `opsml replay` rebuilds and swaps the `public` schema
-- (the event-sourced tables), and tokens are not events - a replay must not lose them.
CREATE SCHEMA IF NOT EXISTS opsml_auth;

CREATE TABLE IF NOT EXISTS opsml_auth.api_tokens (
    token_id      text PRIMARY KEY,            -- the public part of the token
    name          text NOT NULL,
    secret_sha256 text NOT NULL,               -- sha256 of the secret part; the secret is never stored
    scopes        text[] NOT NULL,             -- read | write | admin
    spaces        text[] NOT NULL,             -- spaces it may write to; '*' = every space
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);
