"""The database of an `opsml dev` data directory: its default name (one per directory), the
identity check that ties a database to one directory, and the embedded Postgres fallback."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from registry_core.persistence import db
from workers.dev_files import DevStackError

log = structlog.get_logger("opsml.dev")

# The shared default database of earlier versions; now each data directory gets its own
# (`default_database_url`).
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/opsml"
IDENTITY_COMMENT = "opsml dev data directory "


def default_database_url(data_dir: Path) -> str:
    """The local Postgres database of a data directory when none is given: named after the
    directory (a slug and a hash of its absolute path). One shared default database made every
    new directory inherit another one's registry, whose events its own log does not have: the
    worker refused it ("the broker lost its data") and restarted every 2 s."""
    path = data_dir.expanduser().resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    base = path.parent.name if path.name in ("", ".opsml") else path.name
    slug = re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_")[:32]
    name = f"opsml_{slug}_{digest}" if slug else f"opsml_{digest}"
    return f"{DEFAULT_DATABASE_URL.rsplit('/', 1)[0]}/{name}"


async def claim_database(
    conn: asyncpg.Connection, identity: str, *, data_dir: Path, dsn: str, new_dir: bool
) -> None:
    """Tie the database to the data directory (a comment on the database names its identity),
    or refuse a database that holds another directory's registry: its events are in that
    directory's event log, not in this one."""
    comment = await conn.fetchval(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
        " WHERE datname = current_database()"
    )
    name = await conn.fetchval("SELECT current_database()")
    if comment and comment.startswith(IDENTITY_COMMENT):
        owner = comment[len(IDENTITY_COMMENT) :].strip()
        if owner == identity:
            return
        raise DevStackError(
            f"the database {name} belongs to another opsml dev data directory (identity"
            f" {owner[:8]}), not to {data_dir} (identity {identity[:8]}): its registry's events"
            " are in that directory's event log, not in this one, and the worker would refuse"
            f" it. Either pass --data-dir of the directory it belongs to; or pass --database-url"
            f" with another database; or, to start afresh and lose that registry, drop it:"
            f" {drop_command(dsn, name)}"
        )
    if new_dir and await _has_history(conn):
        raise DevStackError(
            f"the database {name} already holds a registry, and {data_dir} is a new data"
            " directory whose event log does not have its events: the worker would refuse it."
            " Pass --database-url with a new database (created if missing), or the --data-dir"
            f" this database was used with; or, to lose that registry, drop it:"
            f" {drop_command(dsn, name)}"
        )
    if comment:
        log.warning("the database has a comment of its own; not recording the data directory")
        return
    statement = await conn.fetchval(
        "SELECT format('COMMENT ON DATABASE %I IS %L', current_database(), $1::text)",
        IDENTITY_COMMENT + identity,
    )
    try:
        await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        log.warning("cannot record the data directory in the database (not its owner)")


async def _has_history(conn: asyncpg.Connection) -> bool:
    if await conn.fetchval("SELECT to_regclass('event_log')") is None:
        return False
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM event_log)"))


def drop_command(dsn: str, name: str) -> str:
    admin = urlunsplit(urlsplit(dsn)._replace(path="/postgres", query=""))
    return f"""psql '{admin}' -c 'DROP DATABASE "{name}"'"""


async def open_database(
    database_url: str, data_dir: Path, *, explicit: bool
) -> tuple[str, object | None]:
    """The configured Postgres (database created if missing), else an embedded one."""
    try:
        await db.ensure_database(database_url)
        return database_url, None
    except ValueError as exc:
        raise DevStackError(
            f"{exc}: pass --database-url with a name of letters, digits, _"
        ) from None
    except (OSError, ConnectionError) as exc:
        if explicit:
            raise DevStackError(
                f"cannot reach Postgres at {host_of(database_url)} ({exc}): start it, or fix"
                " --database-url / OPSML_DATABASE_URL"
            ) from None
        log.warning("no Postgres on 127.0.0.1:5432; starting an embedded one", error=str(exc))
    except asyncpg.PostgresError as exc:
        raise DevStackError(
            f"Postgres at {host_of(database_url)} refused: {exc}: fix --database-url /"
            " OPSML_DATABASE_URL"
        ) from None
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DevStackError(
            "no Postgres reachable at 127.0.0.1:5432 and the embedded fallback is not installed:"
            " start Postgres, set OPSML_DATABASE_URL, or pip install pgserver"
        ) from exc
    server = pgserver.get_server(str(data_dir / "postgres"), cleanup_mode="stop")
    uri = server.get_uri("opsml")
    await db.ensure_database(uri)
    return uri, server


def host_of(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{parts.path.lstrip('/')}"
