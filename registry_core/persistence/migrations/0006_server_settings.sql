-- What a server registry (OPSML_TRACKING_URI = this database's URI; client/server_transport.py)
-- needs besides the database: where the broker and the topics are, where artifacts are stored,
-- the limits and whether commands must be signed. The worker writes its row at every start, so
-- the database URI is the only setting a server registry needs. No secret is stored here: broker
-- passwords, storage credentials and the grant key come from each process's own environment.
-- Its own schema, like opsml_auth: `opsml replay` rebuilds and swaps `public`, and these are
-- not events (a rebuild's migrations find the table already there and leave it).
CREATE SCHEMA IF NOT EXISTS opsml_server;

CREATE TABLE IF NOT EXISTS opsml_server.settings (
    worker_name        text PRIMARY KEY,          -- OPSML_WORKER_NAME of the worker that wrote it
    server_version     text NOT NULL,
    kafka_bootstrap_servers text NOT NULL,        -- the worker's own (in-perimeter) address
    kafka_security_protocol text NOT NULL,
    kafka_sasl_mechanism text,
    commands_topic     text NOT NULL,
    events_topic       text NOT NULL,
    max_command_bytes  integer NOT NULL,
    storage_uri        text NOT NULL,             -- s3://bucket/prefix or an absolute directory
    s3_endpoint_url    text,
    s3_region          text,
    max_artifact_bytes bigint NOT NULL,
    auth               boolean NOT NULL,          -- the worker requires signed commands
    updated_at         timestamptz NOT NULL DEFAULT now()
);
