"""The `opsml` command line: run the processes (dev, api, worker, migrate, replay); the card and
token commands live in `cli_cards` and `cli_tokens`, what they share in `cli_common`."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from registry_core import eventloop
from workers import cli_cards, cli_deploy
from workers.cli_alias import alias_app
from workers.cli_common import DataDirOption, fail, one_line_errors, settings
from workers.cli_tokens import token_app
from workers.cli_webhooks import webhooks_app

app = typer.Typer(
    help="opsml-registry: an event-sourced registry for ML artifact cards.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    data_dir: Annotated[
        Path, typer.Option(help="Where S3 data, credentials and logs live.")
    ] = Path(".opsml"),
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="OPSML_DATABASE_URL",
            help="Postgres URL (default: a database of the data directory's own on"
            " 127.0.0.1:5432, created if missing).",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Register a demo RunCard once the stack is up.")
    ] = False,
) -> None:
    """Run the whole stack locally: S3 (SeaweedFS), Kafka (Tansu), Postgres, worker and API."""
    from workers.dev import run_dev

    settings()
    try:
        code = eventloop.run(run_dev(host, port, data_dir, database_url, demo))
    except (RuntimeError, TimeoutError, OSError) as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the HTTP read API."""
    import uvicorn

    from workers.api.app import create_app

    s = settings(data_dir)
    s = s.model_copy(update={"api_host": host or s.api_host})
    try:
        application = create_app(s)
    except ValueError as exc:  # access control misconfigured: refuse to start open
        fail(str(exc), 2)
    http: Any = "auto"
    try:  # one socket write per small response (workers/api/wire.py); needs httptools
        from workers.api.wire import CoalescingHttpToolsProtocol

        http = CoalescingHttpToolsProtocol
    except ImportError:
        pass
    from registry_core.logging import uvicorn_log_config

    uvicorn.run(
        application,
        http=http,
        host=s.api_host,
        port=port or s.api_port,
        log_level=s.log_level.lower(),
        # JSON mode (production): uvicorn's error and access lines are JSON objects with the
        # request id; the pretty dev default keeps access lines off, as before
        log_config=uvicorn_log_config(s.log_format),
        access_log=s.log_format == "json",
        loop=eventloop.uvicorn_loop(),
        # Open long-polls end after this: Ctrl-C / SIGTERM stops the API in about a second.
        timeout_graceful_shutdown=1,
    )


@app.command()
def worker(
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /livez, /readyz and /metrics on this port (OPSML_WORKER_HEALTH_PORT;"
            " default: off).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the sequencer worker (a second one waits as hot standby). It keeps running through
    Postgres or Kafka outages, reconnecting with back-off (workers/sequencer/supervisor.py)."""
    from workers.sequencer import health
    from workers.sequencer.supervisor import supervise

    s = settings(data_dir)
    port = health_port if health_port is not None else s.worker_health_port
    health.STATUS.lock_retry_seconds = s.lock_retry_seconds

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = None
        if port is not None:
            try:
                probe = health.KafkaProbe(
                    s.kafka_bootstrap_servers, {s.commands_topic, s.events_topic},
                    s.kafka_client_kwargs(),
                )  # fmt: skip
                server = await health.start(s.worker_health_host, port, probe)
            except OSError as exc:  # the port is taken: one line naming the setting
                fail(str(exc), 2)
        try:
            await supervise(s, stop)
        finally:
            if server is not None:
                server.close()

    with one_line_errors():
        eventloop.run(main())


@app.command()
def migrate(data_dir: DataDirOption = None) -> None:
    """Apply pending database migrations (creating the database if missing)."""
    from registry_core.persistence import db

    s = settings(data_dir)

    async def main() -> list[int]:
        await db.ensure_database(s.dsn)
        conn = await db.connect(s.dsn)
        try:
            return await db.migrate(conn)
        finally:
            await conn.close()

    with one_line_errors():
        applied = asyncio.run(main())
    message = f"applied migrations: {applied}" if applied else "database is up to date"
    if s.log_format == "json":  # a production job's every line is a JSON object
        import structlog

        structlog.get_logger("opsml.migrate").info(message, applied=applied)
    else:
        typer.echo(message)


@app.command()
def replay(
    source: Annotated[
        str, typer.Option(help="kafka (the log, from offset 0) | archive (Postgres event_log)")
    ] = "kafka",
    verify_only: Annotated[
        bool,
        typer.Option(
            help="Rebuild, print the differences from the live, switch nothing. Exit 0: identical"
            " and the live projection is at the end of the log; 1: different; 2: identical, but"
            " the live projection is behind the log (events published and not projected)."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Switch even when the rebuild differs from the live tables.")
    ] = False,
    keep: Annotated[
        bool, typer.Option(help="Keep the rebuild schema when nothing is switched.")
    ] = False,
    republish: Annotated[
        bool,
        typer.Option(help="Write the archive back into an EMPTY events topic (lost broker data)."),
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Events per projection transaction.")] = 2000,
    bulk: Annotated[
        bool,
        typer.Option(
            help="COPY into index-free tables, indexes rebuilt after (fast). --no-bulk: the live"
            " projection batch by batch (slow; the reference the bulk path is checked against)."
        ),
    ] = True,
    data_dir: DataDirOption = None,
) -> None:
    """Rebuild every read table from the event log into a fresh schema, verify, switch."""
    from aiokafka.errors import KafkaError
    from rich.console import Console

    from registry_core.errors import InfrastructureError
    from workers.replay import ReplayError
    from workers.replay import replay as run_replay
    from workers.replay import republish as run_republish
    from workers.replay.sources import unreachable

    s = settings(data_dir)
    console = Console(stderr=True)
    try:
        if republish:
            rep = asyncio.run(run_republish(s, console=console))
            typer.echo(
                f"republished {rep.events} events ({rep.gaps} gap placeholders) in"
                f" {rep.seconds:.1f}s; the worker will read {s.commands_topic} from offset 0"
            )
            return
        if source not in ("kafka", "archive"):
            raise ReplayError(f"--source must be kafka or archive, not {source!r}")
        result = asyncio.run(
            run_replay(
                s, source=source, verify_only=verify_only, force=force, keep=keep,  # type: ignore[arg-type]
                batch_size=batch_size, console=console, bulk=bulk,
            )
        )  # fmt: skip
    except ReplayError as exc:
        fail(str(exc))
    except InfrastructureError as exc:  # one line naming the address and the setting
        fail(str(exc))
    except KafkaError as exc:
        fail(unreachable(s, exc))
    st = result.stats
    for diff in result.diffs:
        typer.echo(diff.describe())
    typer.echo(
        f"replayed {st.events} events ({st.applied} applied, {st.fenced} fenced,"
        f" {st.undecodable} skipped) in {st.seconds:.1f}s = {st.rate:,.0f} events/s"
    )
    behind = result.behind
    if behind is not None:
        first, last = behind
        typer.echo(
            f"the live projection is behind the log by {last - first + 1} events (offsets"
            f" {first}..{last}): published to {s.events_topic} and not projected; the tables"
            " above are compared up to offset"
            f" {first - 1}. Is the worker running? If it keeps stopping, its log names the cause."
        )
    if result.switched:
        typer.echo(
            f"switched: the rebuilt tables are live; the old ones are kept in schema"
            f" {result.old_schema} (DROP SCHEMA {result.old_schema} CASCADE when satisfied)"
        )
    elif verify_only:
        if not result.identical:
            typer.echo("DIFFERENT")
            raise typer.Exit(1)
        if behind is not None:
            typer.echo("BEHIND (identical up to the live projection's position)")
            raise typer.Exit(2)
        typer.echo("identical")


app.command("list")(cli_cards.list_cards)
app.command()(cli_cards.register)
app.command()(cli_cards.download)
app.command()(cli_deploy.lock)
app.add_typer(token_app, name="token")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(alias_app, name="alias")


if __name__ == "__main__":
    app()
