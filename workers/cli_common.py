"""What every `opsml` subcommand shares: settings (optionally from a data directory's server.env)
and one-line errors instead of tracebacks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from registry_core.settings import Settings

SERVER_ENV = "server.env"

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Read the server settings `opsml dev` wrote to DIR/server.env (database, Kafka,"
        " topics, storage) - point an operator command at a local stack.",
        show_default=False,
    ),
]


def load_server_env(data_dir: Path) -> dict[str, str]:
    """Read `<data-dir>/server.env` (KEY=value lines) into the process environment. The file wins
    over variables already set: naming the directory is the more explicit choice."""
    path = data_dir / SERVER_ENV
    if not path.is_file():
        fail(
            f"no {SERVER_ENV} in {data_dir}: `opsml dev --data-dir {data_dir}` writes it when it"
            " starts (is this the directory the stack runs from?)"
        )
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            fail(f"{path}:{number}: expected KEY=value, got {line[:60]!r}")
        values[key.strip()] = value.strip()
    os.environ.update(values)
    return values


def settings(data_dir: Path | None = None) -> Settings:
    from registry_core.logging import configure_logging
    from registry_core.settings import get_settings

    if data_dir is not None:
        load_server_env(data_dir)
        get_settings.cache_clear()
    s = get_settings()
    configure_logging(s.log_format, s.log_level)
    return s


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """An unreachable Kafka or Postgres (or any infrastructure failure) is one line naming the
    address and the setting to fix, not a traceback."""
    from registry_core.errors import InfrastructureError

    try:
        yield
    except InfrastructureError as exc:
        fail(str(exc))
    except OSError as exc:
        if isinstance(exc, ConnectionError) or exc.errno is not None:
            fail(f"{exc} (check OPSML_DATABASE_URL and OPSML_KAFKA_BOOTSTRAP_SERVERS)")
        raise


def run_db(s: Settings, fn: Callable[[Any], Any]) -> Any:
    """Run `fn(conn)` on a migrated connection; an unreachable database is one line."""
    import asyncio

    from registry_core.persistence import db

    async def main() -> Any:
        conn = await db.connect(s.dsn)  # DatabaseUnreachable: one line, below
        try:
            await db.migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    with one_line_errors():
        return asyncio.run(main())
