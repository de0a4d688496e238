"""The `opsml` command line: run the processes (dev, api, worker, migrate) and query cards."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from registry_core import eventloop

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
        code = eventloop.run(run_dev(host, port, data_dir, database_url, demo))
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
    s = s.model_copy(update={"api_host": host or s.api_host})
    try:
        application = create_app(s)
    except ValueError as exc:  # access control misconfigured: refuse to start open
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    http: Any = "auto"
    try:  # one socket write per small response (workers/api/wire.py); needs httptools
        from workers.api.wire import CoalescingHttpToolsProtocol

        http = CoalescingHttpToolsProtocol
    except ImportError:
        pass
    uvicorn.run(
        application,
        http=http,
        host=s.api_host,
        port=port or s.api_port,
        log_level=s.log_level.lower(),
        access_log=False,
        loop=eventloop.uvicorn_loop(),
    )


@app.command()
def worker() -> None:
    """Run the sequencer worker (a second one waits as hot standby). It keeps running through
    Postgres or Kafka outages, reconnecting with back-off (workers/sequencer/supervisor.py)."""
    from workers.sequencer.supervisor import supervise

    s = _settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervise(s, stop)

    eventloop.run(main())


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
) -> None:
    """Rebuild every read table from the event log into a fresh schema, verify, switch."""
    from aiokafka.errors import KafkaError
    from rich.console import Console

    from workers.replay import ReplayError
    from workers.replay import replay as run_replay
    from workers.replay import republish as run_republish
    from workers.replay.sources import unreachable

    s = _settings()
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
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    except KafkaError as exc:  # one line naming the address and the setting, not a traceback
        typer.secho(f"error: {unreachable(s, exc)}", fg="red", err=True)
        raise typer.Exit(1) from None
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
    from registry_core.domain.cards import CARD_CLASS_FOR_REGISTRY, registry_type
    from registry_core.domain.errors import summarize_validation

    tags = dict(t.split("=", 1) for t in (tag or []) if "=" in t)
    try:
        card_cls = CARD_CLASS_FOR_REGISTRY[registry_type(registry)]
        card = card_cls(space=space, name=name, tags=tags)
        with CardRegistry(registry) as reg:
            reg.register_card(card, version_type=version_type)
    except ValidationError as exc:
        typer.secho(f"error: {summarize_validation(exc)}", fg="red", err=True)
        raise typer.Exit(1) from None
    except (RegistryError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{registry}/{space}/{name} {card.version} uid={card.uid}")


@app.command()
def download(
    registry: Annotated[str, typer.Option(help="data | model | run | ...")],
    name: Annotated[str, typer.Option()],
    to: Annotated[Path, typer.Option(help="Directory to write the artifacts into.")],
    space: Annotated[str | None, typer.Option()] = None,
    version: Annotated[
        str | None, typer.Option(help="Exact version or constraint ('^1', '1.2.*', '>=1,<2').")
    ] = None,
    uid: Annotated[str | None, typer.Option(help="A card uid (instead of name/version).")] = None,
    prereleases: Annotated[bool, typer.Option(help="Let a pre-release be the newest.")] = False,
) -> None:
    """Download a card's artifacts (newest matching version), each verified by sha256 - e.g. a
    CI build pulling the model it packages into an image. Uses OPSML_TRACKING_URI."""
    from client import CardRegistry, RegistryError

    try:
        with CardRegistry(registry) as reg:
            if uid:
                card = reg.load_card(uid=uid)
            else:
                card = reg.load_card(
                    space=space, name=name, version=version, include_prereleases=prereleases
                )
            paths = reg.download_artifacts(card, to, progress=True)
    except RegistryError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    total = sum(p.stat().st_size for p in paths)
    typer.echo(
        f"{registry}/{card.space}/{card.name} {card.version} (uid {card.uid}):"
        f" {len(paths)} file(s), {total} bytes, sha256 verified -> {to}"
    )


token_app = typer.Typer(
    help="API tokens (talks to the database directly: for operators, and for the first admin"
    " token; with an admin token, the same is at /api/v1/tokens).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


def _with_db(fn):  # type: ignore[no-untyped-def]
    from registry_core.persistence import db

    s = _settings()

    async def main():  # type: ignore[no-untyped-def]
        conn = await db.connect(s.dsn)
        try:
            await db.migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses it, e.g. ci-team-a.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin.")] = "read",
    spaces: Annotated[
        str, typer.Option(help="Comma-separated spaces it may write to; '*' = every space.")
    ] = "*",
    expires_in_days: Annotated[int | None, typer.Option(help="Expiry (default: never).")] = None,
) -> None:
    """Create a token and print it once (only its sha256 is stored)."""
    from datetime import timedelta

    from registry_core.auth import parse_scopes
    from registry_core.domain.errors import RegistryError
    from registry_core.persistence.tokens import create_token

    try:
        wanted = parse_scopes(x for x in scopes.split(",") if x.strip())
        space_list = [x.strip() for x in spaces.split(",") if x.strip()]
        expiry = timedelta(days=expires_in_days) if expires_in_days else None
        token, info = _with_db(lambda c: create_token(c, name, wanted, space_list, expiry))
    except (ValueError, RegistryError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.secho(
        f"created token {info.token_id} ({info.name}): scopes {','.join(info.scopes)},"
        f" spaces {','.join(info.spaces)}. It is shown once; store it now:",
        err=True,
    )
    typer.echo(token)


@token_app.command("list")
def token_list() -> None:
    """List tokens (ids, names, scopes, spaces, dates; never secrets)."""
    from rich.console import Console
    from rich.table import Table

    from registry_core.persistence.tokens import list_tokens

    table = Table("token_id", "name", "scopes", "spaces", "created", "expires", "revoked")
    for t in _with_db(list_tokens):
        table.add_row(
            t.token_id, t.name, ",".join(t.scopes), ",".join(t.spaces),
            f"{t.created_at:%Y-%m-%d %H:%M}", str(t.expires_at or ""), str(t.revoked_at or ""),
        )  # fmt: skip
    Console().print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The id (opsml_<id>_...).")]) -> None:
    """Revoke a token: refused by the API and the worker within OPSML_TOKEN_CACHE_SECONDS."""
    from registry_core.persistence.tokens import revoke_token

    if not _with_db(lambda c: revoke_token(c, token_id)):
        typer.secho(f"error: no active token {token_id}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {token_id}")


if __name__ == "__main__":
    app()
