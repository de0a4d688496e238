-- Named queries (`-- name: x`) of the API tokens (`opsml_auth.api_tokens`, migration 0004;
-- registry_core/persistence/tokens.py). $n parameters only.

-- name: create_token
INSERT INTO opsml_auth.api_tokens (token_id, name, secret_sha256, scopes, spaces, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
RETURNING token_id, name, scopes, spaces, created_at, expires_at, revoked_at;

-- name: list_tokens
SELECT token_id, name, scopes, spaces, created_at, expires_at, revoked_at
FROM opsml_auth.api_tokens ORDER BY created_at;

-- name: revoke_token
UPDATE opsml_auth.api_tokens SET revoked_at = now()
WHERE token_id = $1 AND revoked_at IS NULL;

-- name: active_token
-- A token that is neither revoked nor expired (TokenCache: one lookup per token per ttl).
SELECT token_id, name, secret_sha256, scopes, spaces FROM opsml_auth.api_tokens
WHERE token_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());
