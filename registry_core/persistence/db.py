"""Connections, named queries and forward-only migrations."""

from __future__ import annotations

import re
import socket
from importlib import resources
from typing import Any

import asyncpg
import orjson
import structlog

from registry_core.errors import DatabaseUnreachable, database_address

log = structlog.get_logger(__name__)

# Advisory lock keys (two-int form, namespace 0x0p5 "opsml").
LOCK_NAMESPACE = 0x0905
MIGRATION_LOCK = 1
SEQUENCER_LOCK = 2


def load_queries() -> dict[str, str]:
    """Every `-- name: x` block of every `queries/*.sql` file, by name. The names share one
    namespace across files (a file is a room: registry.sql the projection and reads, replay.sql,
    catalog.sql, tokens.sql, migrations.sql, ...); a name defined twice is refused here, at
    import, rather than one block silently winning."""
    queries: dict[str, str] = {}
    where: dict[str, str] = {}
    root = resources.files("registry_core.persistence").joinpath("queries")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for block in re.split(r"^-- name: ", entry.read_text(), flags=re.MULTILINE)[1:]:
            name, _, body = block.partition("\n")
            name = name.strip()
            if name in queries:
                raise RuntimeError(
                    f"query {name!r} is defined in both {where[name]} and {entry.name}"
                )
            queries[name], where[name] = body.strip(), entry.name
    return queries


Q = load_queries()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("jsonb", "json"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode() if not isinstance(v, str) else v,
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """A connection with the JSON codecs. No server at the address (refused, unknown host, no
    answer): DatabaseUnreachable, one line naming the address and OPSML_DATABASE_URL - still an
    OSError for callers that retry on those (the worker's supervisor)."""
    try:
        conn = await asyncpg.connect(dsn, **kwargs)
    except OSError as exc:
        raise unreachable(dsn, exc) from exc
    await _init_connection(conn)
    return conn


def unreachable(dsn: str, exc: BaseException) -> DatabaseUnreachable:
    address = database_address(dsn)
    return DatabaseUnreachable(
        f"cannot reach Postgres at {address} (the setting {DatabaseUnreachable.setting}):"
        f" {exc or type(exc).__name__}",
        address=address,
    )


# Probes on a long-lived connection that may sit idle: a peer that vanished without closing it
# (a network partition, a host that lost power) is noticed after ~idle + interval * count seconds
# while the connection is idle (with data unacknowledged, TCP's retransmission timeout decides).
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 10, 5, 3


async def keep_alive(conn: asyncpg.Connection) -> None:
    """TCP keepalives at both ends of `conn`, for the connections that wait rather than query:
    the sequencer's lock-holding connection and the API's outcome listener. Without them such a
    connection outlives a silent peer for hours (Linux's default is 2 h before the first probe):
    this side would never see it closed (the sequencer's idle check, the listener's watchdog),
    and the server would keep the session - and the sequencer's advisory lock, which a standby
    waits for. Set with SET rather than as start-up parameters, which PgBouncer refuses. A Unix
    socket needs none of it (the server ignores the settings there)."""
    transport = getattr(conn, "_transport", None)  # asyncpg has no public handle on the socket
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:  # best effort: a platform without these options keeps its defaults
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),  # Linux (macOS: TCP_KEEPALIVE, left at default)
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError as exc:
        log.warning("TCP keepalives not set on this side", error=str(exc))
    seconds = (KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
    await conn.execute(Q["set_keepalives"], *(str(v) for v in seconds))


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, init=_init_connection, **kwargs)
    assert pool is not None
    return pool


def migration_files() -> list[tuple[int, str, str]]:
    root = resources.files("registry_core.persistence").joinpath("migrations")
    found = []
    for entry in root.iterdir():
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations in order, each in its own transaction. Safe to run concurrently
    from several processes (serialised by an advisory lock)."""
    applied_now: list[int] = []
    await conn.execute(Q["advisory_lock"], LOCK_NAMESPACE, MIGRATION_LOCK)
    try:
        await conn.execute(Q["create_migrations_table"])
        done = {r["version"] for r in await conn.fetch(Q["applied_migrations"])}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(Q["record_migration"], version, name)
            applied_now.append(version)
            log.info("migration applied", version=version, name=name)
    finally:
        await conn.execute(Q["advisory_unlock"], LOCK_NAMESPACE, MIGRATION_LOCK)
    return applied_now


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it does not exist (connecting to `postgres`).
    Returns True when it was created."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    except OSError as exc:
        raise unreachable(dsn, exc) from exc
    else:
        await conn.close()
        return False
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    dbname = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", dbname):
        raise ValueError(f"refusing to create a database with name {dbname!r}")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')  # identifier checked above
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    log.info("database created", database=dbname)
    return True
