"""The server settings row: what the worker records at start so that a server registry
(`OPSML_TRACKING_URI` = the database's URI) needs no other setting. Secrets are never stored:
broker passwords, storage credentials and the grant key stay in each process's environment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

import registry_core
from registry_core.persistence.db import Q
from registry_core.settings import Settings


@dataclass(frozen=True)
class ServerSettings:
    worker_name: str
    server_version: str
    kafka_bootstrap_servers: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str | None
    commands_topic: str
    events_topic: str
    max_command_bytes: int
    storage_uri: str
    s3_endpoint_url: str | None
    s3_region: str | None
    max_artifact_bytes: int
    auth: bool
    updated_at: datetime


def storage_location(uri: str) -> str:
    """The store as another process must name it: a local directory made absolute (the
    worker's working directory is not the server registry's)."""
    if uri.startswith("s3://"):
        return uri
    return str(Path(uri.removeprefix("file://")).resolve())


async def record(conn: asyncpg.Connection, s: Settings) -> None:
    """Write (or refresh) this worker's row. Called by the active sequencer at every start."""
    await conn.execute(
        Q["record_server_settings"],
        s.worker_name,
        registry_core.__version__,
        s.kafka_bootstrap_servers,
        s.kafka_security_protocol,
        s.kafka_sasl_mechanism,
        s.commands_topic,
        s.events_topic,
        s.max_command_bytes,
        storage_location(s.storage_uri),
        s.s3_endpoint_url,
        s.s3_region,
        s.max_artifact_bytes,
        s.auth_required(),
    )


async def load(conn: asyncpg.Connection | asyncpg.Pool) -> ServerSettings | None:
    """The row of the worker that started last; None when no worker has recorded one (or the
    database predates migration 0006)."""
    try:
        row = await conn.fetchrow(Q["server_settings"])
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return None
    return ServerSettings(**dict(row)) if row is not None else None
