"""`opsml webhooks ...`: the delivery process (`run`), and endpoints and their delivery log
straight against the database (for operators; with an admin token, the same is at
/api/v1/webhooks)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from registry_core import eventloop
from workers.cli_common import DataDirOption, fail, one_line_errors, run_db, settings

webhooks_app = typer.Typer(
    help="Webhooks: run the delivery process; manage endpoints and deliveries (talks to the"
    " database directly; with an admin token, the same is at /api/v1/webhooks).",
    no_args_is_help=True,
)


@webhooks_app.command("run")
def run(data_dir: DataDirOption = None) -> None:
    """Deliver events to the registered endpoints (one process per registry: it keeps its
    position in Postgres). Runs through Postgres or Kafka outages; SIGTERM stops it."""
    from workers.webhooks.service import run_webhooks

    s = settings(data_dir)

    async def main() -> None:
        task = asyncio.create_task(run_webhooks(s))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    with one_line_errors():
        eventloop.run(main())


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST the events (http or https).")],
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="An event type (repeatable; default all).")
    ] = None,
    registry: Annotated[str | None, typer.Option(help="Registry pattern, e.g. model.")] = None,
    space: Annotated[str | None, typer.Option(help="Space pattern, e.g. team-*.")] = None,
    name: Annotated[str | None, typer.Option(help="Card name pattern.")] = None,
    alias: Annotated[str | None, typer.Option(help="Only alias events of this alias.")] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register an endpoint and print its signing secret once."""
    from workers.webhooks import store
    from workers.webhooks.endpoints import WebhookError, checked

    s = settings(data_dir)
    fields: dict[str, Any] = {
        "url": url, "description": description, "event_types": event_type or [],
        "registry": registry, "space": space, "name": name, "alias": alias, "enabled": True,
    }  # fmt: skip
    try:
        asyncio.run(checked(fields, allow_private=s.webhook_allow_private))
    except WebhookError as exc:
        fail(str(exc))
    row = run_db(s, lambda c: store.create_endpoint(c, **fields, created_by="cli"))
    typer.secho(
        f"created webhook endpoint {row['endpoint_id']} -> {row['url']}. Its signing secret is"
        " shown once; give it to the receiver now:",
        err=True,
    )
    typer.echo(row["secret"])


@webhooks_app.command("ls")
def ls(data_dir: DataDirOption = None) -> None:
    """List endpoints with their filters and how many deliveries are pending or dead."""
    from rich.console import Console
    from rich.table import Table

    from workers.webhooks import store

    async def rows(conn: Any) -> tuple[list[Any], dict[tuple[str, str], int]]:
        return await store.list_endpoints(conn), await store.open_counts(conn)

    table = Table("endpoint_id", "url", "filters", "enabled", "pending", "dead")
    endpoints, counts = run_db(settings(data_dir), rows)
    for e in endpoints:
        filters = ", ".join(
            f"{k}={e[k]}" for k in ("registry", "space", "name", "alias") if e[k] is not None
        )
        if e["event_types"]:
            filters = ", ".join(filter(None, [f"types={'|'.join(e['event_types'])}", filters]))
        table.add_row(
            e["endpoint_id"], e["url"], filters or "(all events)", str(e["enabled"]),
            str(counts.get((e["endpoint_id"], "pending"), 0)),
            str(counts.get((e["endpoint_id"], "dead"), 0)),
        )  # fmt: skip
    Console().print(table)


@webhooks_app.command("rm")
def rm(endpoint_id: str, data_dir: DataDirOption = None) -> None:
    """Delete an endpoint with its deliveries."""
    from workers.webhooks import store

    if not run_db(settings(data_dir), lambda c: store.delete_endpoint(c, endpoint_id)):
        fail(f"no webhook endpoint {endpoint_id}")
    typer.echo(f"deleted {endpoint_id}")


@webhooks_app.command("redeliver")
def redeliver(
    endpoint_id: str,
    offset: Annotated[
        int | None, typer.Argument(help="The event offset (default: every dead delivery).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Send a delivery again (or every dead-lettered one of the endpoint)."""
    from workers.webhooks import store

    got = run_db(settings(data_dir), lambda c: store.redeliver(c, endpoint_id, offset))
    if offset is not None and not got:
        fail(f"no delivery of event offset {offset} to {endpoint_id}")
    typer.echo(f"{len(got)} deliveries queued again")
