-- Named queries (`-- name: x`) of the server settings row (registry_core/persistence/server_settings.py).

-- name: record_server_settings
INSERT INTO opsml_server.settings (
    worker_name, server_version, kafka_bootstrap_servers, kafka_security_protocol,
    kafka_sasl_mechanism, commands_topic, events_topic, max_command_bytes, storage_uri,
    s3_endpoint_url, s3_region, max_artifact_bytes, auth, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
ON CONFLICT (worker_name) DO UPDATE SET
    server_version = EXCLUDED.server_version,
    kafka_bootstrap_servers = EXCLUDED.kafka_bootstrap_servers,
    kafka_security_protocol = EXCLUDED.kafka_security_protocol,
    kafka_sasl_mechanism = EXCLUDED.kafka_sasl_mechanism,
    commands_topic = EXCLUDED.commands_topic,
    events_topic = EXCLUDED.events_topic,
    max_command_bytes = EXCLUDED.max_command_bytes,
    storage_uri = EXCLUDED.storage_uri,
    s3_endpoint_url = EXCLUDED.s3_endpoint_url,
    s3_region = EXCLUDED.s3_region,
    max_artifact_bytes = EXCLUDED.max_artifact_bytes,
    auth = EXCLUDED.auth,
    updated_at = now();

-- name: server_settings
-- The row of the worker that started last (one sequencer is active at a time).
SELECT worker_name, server_version, kafka_bootstrap_servers, kafka_security_protocol,
       kafka_sasl_mechanism, commands_topic, events_topic, max_command_bytes, storage_uri,
       s3_endpoint_url, s3_region, max_artifact_bytes, auth, updated_at
FROM opsml_server.settings ORDER BY updated_at DESC LIMIT 1;
