"""The settings `opsml dev` gives its worker and API: the stack's own (database, Kafka, S3,
topics, API address) over the server settings set in its own environment."""

from __future__ import annotations

import os

from registry_core.settings import Settings
from workers.dev_services import ARTIFACT_BUCKET, S3Server

# The worker's fetch wait while no commands come (the busy wait, 3 ms, is unchanged): with 20 ms
# the idle worker and Tansu polled each other for ~5% of a core; with 150 ms the whole idle stack
# is ~2%. The first registration after a quiet spell of 2 s waits for that fetch, ~75 ms on
# average; back-to-back registrations do not (docs/benchmarks.md, "dev stack").
DEV_IDLE_FETCH_WAIT_MS = 150


def server_settings(
    settings: Settings, *, dsn: str, bootstrap: str, s3: S3Server, host: str, port: int
) -> dict[str, str]:
    """The environment of the worker and the API (and the lines of server.env)."""
    # Server settings set in opsml dev's own environment reach the children too (spawn
    # passes the environment on); server.env carries them, below the stack's own.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("OPSML_") and k[6:].lower() in type(settings).model_fields
    }
    return {
        "OPSML_KAFKA_FETCH_MAX_WAIT_MS": str(DEV_IDLE_FETCH_WAIT_MS),  # unless set
        **inherited,
        "OPSML_DATABASE_URL": dsn,
        "OPSML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OPSML_COMMANDS_TOPIC": settings.commands_topic,
        "OPSML_EVENTS_TOPIC": settings.events_topic,
        "OPSML_STORAGE_URI": f"s3://{ARTIFACT_BUCKET}/",
        "OPSML_S3_ENDPOINT_URL": s3.endpoint,
        "OPSML_API_HOST": host,
        "OPSML_API_PORT": str(port),
        **{k: v for k, v in s3.env().items() if k.startswith("AWS_") and k != "AWS_ENDPOINT"},
    }
