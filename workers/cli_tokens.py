"""`opsml token ...`: API tokens, straight against the database (for operators, and for the first
admin token; with an admin token, the same is at /api/v1/tokens)."""

from __future__ import annotations

from typing import Annotated

import typer

from workers.cli_common import DataDirOption, fail, run_db, settings

token_app = typer.Typer(
    help="API tokens (talks to the database directly: for operators, and for the first admin"
    " token; with an admin token, the same is at /api/v1/tokens).",
    no_args_is_help=True,
)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses it, e.g. ci-team-a.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin.")] = "read",
    spaces: Annotated[
        str, typer.Option(help="Comma-separated spaces it may write to; '*' = every space.")
    ] = "*",
    expires_in_days: Annotated[int | None, typer.Option(help="Expiry (default: never).")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a token and print it once (only its sha256 is stored)."""
    from datetime import timedelta

    from registry_core.auth import parse_scopes
    from registry_core.domain.errors import RegistryError
    from registry_core.persistence.tokens import create_token

    s = settings(data_dir)
    try:
        wanted = parse_scopes(x for x in scopes.split(",") if x.strip())
        space_list = [x.strip() for x in spaces.split(",") if x.strip()]
        expiry = timedelta(days=expires_in_days) if expires_in_days else None
        token, info = run_db(s, lambda c: create_token(c, name, wanted, space_list, expiry))
    except (ValueError, RegistryError) as exc:
        fail(str(exc))
    typer.secho(
        f"created token {info.token_id} ({info.name}): scopes {','.join(info.scopes)},"
        f" spaces {','.join(info.spaces)}. It is shown once; store it now:",
        err=True,
    )
    typer.echo(token)


@token_app.command("list")
def token_list(data_dir: DataDirOption = None) -> None:
    """List tokens (ids, names, scopes, spaces, dates; never secrets)."""
    from rich.console import Console
    from rich.table import Table

    from registry_core.persistence.tokens import list_tokens

    table = Table("token_id", "name", "scopes", "spaces", "created", "expires", "revoked")
    for t in run_db(settings(data_dir), list_tokens):
        table.add_row(
            t.token_id, t.name, ",".join(t.scopes), ",".join(t.spaces),
            f"{t.created_at:%Y-%m-%d %H:%M}", str(t.expires_at or ""), str(t.revoked_at or ""),
        )  # fmt: skip
    Console().print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The id (opsml_<id>_...).")],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a token: refused by the API and the worker within OPSML_TOKEN_CACHE_SECONDS."""
    from registry_core.persistence.tokens import revoke_token

    if not run_db(settings(data_dir), lambda c: revoke_token(c, token_id)):
        fail(f"no active token {token_id}")
    typer.echo(f"revoked {token_id}")
