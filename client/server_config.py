"""A server registry's client configuration, read from the database instead of /api/v1/config:
the broker, topics and limits the worker recorded at its start (registry_core/persistence/
server_settings.py), this process's own broker credentials, and - when the grant key is set - a
grant for the token in OPSML_TOKEN, issued exactly as the API issues one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg

import registry_core
from client.errors import RegistryUnavailable
from registry_core.auth import Scope, issue_grant
from registry_core.contracts.http import ClientConfig, CommandGrant, KafkaConfig
from registry_core.persistence import server_settings
from registry_core.persistence.server_settings import ServerSettings
from registry_core.persistence.tokens import TokenCache
from registry_core.settings import ClientSettings, Settings


def no_settings(where: str) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"the database at {where} holds no registry settings: start the registry's worker"
        " (`opsml worker`) on it once - it records the broker, topics and artifact store there -"
        " or check that OPSML_TRACKING_URI names the registry's database"
    )


async def load_settings(conn: asyncpg.Connection | asyncpg.Pool, where: str) -> ServerSettings:
    row = await server_settings.load(conn)
    if row is None:
        raise no_settings(where)
    return row


def _ca_pem(server: Settings) -> str | None:
    return Path(server.kafka_ssl_cafile).read_text() if server.kafka_ssl_cafile else None


async def build_config(
    conn: asyncpg.Connection | asyncpg.Pool,
    row: ServerSettings,
    client: ClientSettings,
    server: Settings | None = None,
) -> ClientConfig:
    """The ClientConfig the API would hand this process (its token's grant included)."""
    server = server or Settings()
    grant = None
    key = server.grant_key_bytes()
    if key is not None and client.token is not None:
        # the token is checked (unknown, revoked, expired: Unauthenticated) as the API's Guard does
        who = await TokenCache(0).authenticate(conn, client.token.get_secret_value())
        if who.has(Scope.WRITE):
            g = issue_grant(key, who, datetime.now(UTC))
            grant = CommandGrant(grant=g.grant, signing_key=g.signing_key, expires_at=g.expires_at)
    password = server.kafka_sasl_password
    return ClientConfig(
        server_version=row.server_version or registry_core.__version__,
        auth=row.auth,
        grant=grant,
        kafka=KafkaConfig(
            bootstrap_servers=row.kafka_bootstrap_servers,
            commands_topic=row.commands_topic,
            events_topic=row.events_topic,
            security_protocol=row.kafka_security_protocol,
            max_message_bytes=row.max_command_bytes,
            sasl_mechanism=row.kafka_sasl_mechanism if server.kafka_sasl_username else None,
            sasl_username=server.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password else None,
            ssl_ca_pem=_ca_pem(server),
        ),
    )


async def read_config(dsn: str, where: str, client: ClientSettings) -> ClientConfig:
    """One look at the database (what `subscribe()` needs from a server registry)."""
    from client.server_transport import database_errors
    from registry_core.persistence import db

    with database_errors(where):
        conn = await db.connect(dsn)
        try:
            return await build_config(conn, await load_settings(conn, where), client)
        finally:
            await conn.close()
