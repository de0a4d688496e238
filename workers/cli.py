"""The `opsml` command line: run the processes (dev, api, worker, migrate) and query cards."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="opsml-registry: an event-sourced registry for ML artifact cards.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _settings():
    from registry_core.logging import configure_logging
    from registry_core.settings import get_settings

    s = get_settings()
    configure_logging(s.log_format, s.log_level)
    return s


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    data_dir: Annotated[
        Path, typer.Option(help="Where S3 data, credentials and logs live.")
    ] = Path(".opsml"),
    database_url: Annotated[
        str,
        typer.Option(
            envvar="OPSML_DATABASE_URL", help="Postgres URL (database created if missing)."
        ),
    ] = "postgresql://postgres@127.0.0.1:5432/opsml",
    demo: Annotated[
        bool, typer.Option(help="Register a demo RunCard once the stack is up.")
    ] = False,
) -> None:
    """Run the whole stack locally: S3 (SeaweedFS), Kafka (Tansu), Postgres, worker and API."""
    from workers.dev import run_dev

    _settings()
    try:
        code = asyncio.run(run_dev(host, port, data_dir, database_url, demo))
    except (RuntimeError, TimeoutError, OSError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the HTTP read API."""
    import uvicorn

    from workers.api.app import create_app

    s = _settings()
    uvicorn.run(
        create_app(s),
        host=host or s.api_host,
        port=port or s.api_port,
        log_level=s.log_level.lower(),
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run the sequencer worker (a second one waits as hot standby)."""
    from workers.sequencer import Sequencer

    s = _settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Sequencer(s).run(stop)

    asyncio.run(main())


@app.command()
def migrate() -> None:
    """Apply pending database migrations (creating the database if missing)."""
    from registry_core.persistence import db

    s = _settings()

    async def main() -> list[int]:
        await db.ensure_database(s.dsn)
        conn = await db.connect(s.dsn)
        try:
            return await db.migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(main())
    typer.echo(f"applied migrations: {applied}" if applied else "database is up to date")


@app.command("list")
def list_cards(
    registry: Annotated[str, typer.Option(help="data | model | run")],
    space: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    version: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
) -> None:
    """List cards, newest version first (uses OPSML_TRACKING_URI)."""
    from rich.console import Console
    from rich.table import Table

    from client import CardRegistry, RegistryError

    try:
        with CardRegistry(registry) as reg:
            cards = reg.list_cards(space=space, name=name, version=version, limit=limit)
    except RegistryError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    table = Table("space", "name", "version", "uid", "created_at", "tags")
    for c in cards:
        table.add_row(
            c.space, c.name, c.version or "", str(c.uid), str(c.created_at), str(c.tags or "")
        )
    Console().print(table)


@app.command()
def register(
    registry: Annotated[str, typer.Option(help="data | model | run")],
    space: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    version_type: Annotated[str, typer.Option(help="major | minor | patch")] = "minor",
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
) -> None:
    """Register a metadata-only card (handy for smoke tests)."""
    from pydantic import ValidationError

    from client import CardRegistry, RegistryError
    from registry_core.domain.cards import CARD_CLASS_FOR_REGISTRY, RegistryType

    tags = dict(t.split("=", 1) for t in (tag or []) if "=" in t)
    try:
        card_cls = CARD_CLASS_FOR_REGISTRY[RegistryType(registry)]
        card = card_cls(space=space, name=name, tags=tags)
        with CardRegistry(registry) as reg:
            reg.register_card(card, version_type=version_type)
    except (RegistryError, ValidationError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{registry}/{space}/{name} {card.version} uid={card.uid}")


if __name__ == "__main__":
    app()
