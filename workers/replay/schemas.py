"""Replay schemas: where a rebuild is built (`opsml_rebuild_<n>`), and the atomic switch that
makes it `public` while the old tables are kept as `opsml_old_<n>`.

Why renaming schemas (and not copying tables): the API and the worker name every table without a
schema, so they resolve through `search_path` (`"$user", public`). Renaming a schema sends a
catalog invalidation to every backend; Postgres then re-analyses each cached plan (asyncpg's
prepared statements included) by name before its next use, so every connection of the running
API and worker reads and writes the rebuilt tables from its next statement on, without a restart.
The rebuilt tables have the same columns and types as the old ones (same migrations), so
asyncpg's cached result descriptions stay valid.
"""

from __future__ import annotations

import re

import asyncpg
import structlog

from registry_core.persistence import db, tables
from registry_core.persistence.db import Q

log = structlog.get_logger("opsml.replay")

LIVE_SCHEMA = "public"
REBUILD_PREFIX = "opsml_rebuild_"
OLD_PREFIX = "opsml_old_"

# Tables every migrated schema has. The read tables compared by a replay are discovered from
# the catalog (every table but these two operational ones), so a table a later migration adds is
# rebuilt and compared without touching this package. `tracking` is compared separately: its
# `updated_at` is wall-clock, its command offset and claimed epoch are operational state.
OPERATIONAL_TABLES = tables.OPERATIONAL
REQUIRED_TABLES = ("cards", "event_log", "command_outcomes", *OPERATIONAL_TABLES)

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ReplayError(RuntimeError):
    """The replay cannot go on; the message says what to do."""


def ident(name: str) -> str:
    """A quoted SQL identifier. Only names this module generates (or the fixed table names) reach
    SQL text, and they are checked against a strict pattern first: data never does."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"refusing identifier {name!r}")
    return f'"{name}"'


async def connect_in(dsn: str, schema: str) -> asyncpg.Connection:
    """A connection whose unqualified names resolve in `schema` only: `migrate` and `project`
    then create and write that schema's tables, never `public`'s."""
    ident(schema)
    return await db.connect(dsn, server_settings={"search_path": schema})


async def next_number(conn: asyncpg.Connection) -> int:
    rows = await conn.fetch(Q["replay_schemas"])
    numbers = [int(r["nspname"].rsplit("_", 1)[1]) for r in rows]
    return max(numbers, default=0) + 1


async def tables_in(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch(Q["schema_tables"], schema)
    return {r["table_name"] for r in rows}


async def create_rebuild_schema(dsn: str, live: asyncpg.Connection, schema: str) -> None:
    """Create `schema` and apply every migration inside it (checked: all tables land there)."""
    await live.execute(f"CREATE SCHEMA {ident(schema)}")
    await copy_schema_grants(live, LIVE_SCHEMA, schema)
    conn = await connect_in(dsn, schema)
    try:
        applied = await db.migrate(conn)
    finally:
        await conn.close()
    missing = set(REQUIRED_TABLES) - await tables_in(live, schema)
    if missing:
        raise ReplayError(
            f"migrations did not create {sorted(missing)} in {schema}: a migration names a"
            " schema explicitly; replay needs unqualified SQL"
        )
    log.info("rebuild schema created", schema=schema, migrations=applied)


async def copy_schema_grants(conn: asyncpg.Connection, source: str, target: str) -> None:
    """Give `target` the schema privileges `source` has, so that roles that could use the live
    schema (e.g. a read-only API role) can use the rebuilt one after the switch."""
    rows = await conn.fetch(Q["schema_grants"], source)
    for r in rows:
        if r["privilege_type"] not in ("USAGE", "CREATE"):
            continue
        grantee = "PUBLIC" if r["grantee"] == "PUBLIC" else _quote_role(r["grantee"])
        await conn.execute(f"GRANT {r['privilege_type']} ON SCHEMA {ident(target)} TO {grantee}")


async def copy_table_grants(conn: asyncpg.Connection, source: str, target: str) -> None:
    """Table privileges of the live tables, granted again on the rebuilt ones."""
    rows = await conn.fetch(Q["table_grants"], source, sorted(await tables_in(conn, target)))
    allowed = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}
    for r in rows:
        if r["privilege_type"] not in allowed:
            continue
        grantee = "PUBLIC" if r["grantee"] == "PUBLIC" else _quote_role(r["grantee"])
        await conn.execute(
            f"GRANT {r['privilege_type']} ON {ident(target)}.{ident(r['relname'])} TO {grantee}"
        )


def _quote_role(name: str) -> str:
    # Role names come from pg_roles (the catalog), not from user input; quote them properly.
    return '"' + name.replace('"', '""') + '"'


async def read_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    return sorted(await tables_in(conn, schema) - set(OPERATIONAL_TABLES))


async def primary_key(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(Q["primary_key_columns"], schema, table)
    return [r["attname"] for r in rows]


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    if schema == LIVE_SCHEMA:
        raise ValueError("refusing to drop the live schema")
    await conn.execute(f"DROP SCHEMA IF EXISTS {ident(schema)} CASCADE")


async def rename_schemas(conn: asyncpg.Connection, rebuild: str, old: str) -> None:
    """Inside the caller's transaction: public -> old, rebuild -> public."""
    await conn.execute(f"ALTER SCHEMA {ident(LIVE_SCHEMA)} RENAME TO {ident(old)}")
    await conn.execute(f"ALTER SCHEMA {ident(rebuild)} RENAME TO {ident(LIVE_SCHEMA)}")
