"""`opsml alias set | rm | ls | history`: aliases of a card name, through the client
(OPSML_TRACKING_URI) like any data scientist's code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from workers.cli_cards import RegistryOption
from workers.cli_common import fail

T = TypeVar("T")

alias_app = typer.Typer(
    help="Aliases of a card name (prod, staging, ...): point one at a version, move it, remove"
    " it, list them (now or as of a moment) and show where each pointed over time.",
    no_args_is_help=True,
)
SpaceOption = Annotated[str, typer.Option(help="The card's space.")]
NameOption = Annotated[str, typer.Option(help="The card's name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="An event offset (1234) or an ISO 8601 time ('2026-12-01T14:00:00Z'): as the"
        " registry was then.",
    ),
]


def _run(registry: str, call: Callable[[Any], Awaitable[T]]) -> T:
    from client import AsyncCardRegistry, RegistryError

    async def go() -> T:
        async with AsyncCardRegistry(registry) as reg:
            return await call(reg)

    try:
        return asyncio.run(go())
    except (RegistryError, ValueError) as exc:
        fail(str(exc))


@alias_app.command("set")
def alias_set(
    alias: Annotated[str, typer.Argument(help="The alias, e.g. prod.")],
    registry: RegistryOption,
    space: SpaceOption,
    name: NameOption,
    version: Annotated[str, typer.Option(help="The exact version the alias points at.")],
) -> None:
    """Point ALIAS at a version (a new alias, or a move; the history keeps the old place)."""
    out = _run(registry, lambda reg: reg.set_alias(alias, space=space, name=name, version=version))
    typer.echo(f"{alias} -> {space}/{name} {out.version} (uid {out.uid}, event {out.event_offset})")


@alias_app.command("rm")
def alias_rm(
    alias: Annotated[str, typer.Argument(help="The alias to remove.")],
    registry: RegistryOption,
    space: SpaceOption,
    name: NameOption,
) -> None:
    """Remove ALIAS from the card name."""
    out = _run(registry, lambda reg: reg.remove_alias(alias, space=space, name=name))
    typer.echo(f"removed {alias} (it pointed at {out.version}; event {out.event_offset})")


@alias_app.command("ls")
def alias_ls(
    registry: RegistryOption,
    space: SpaceOption,
    name: NameOption,
    as_of: AsOfOption = None,
    as_json: JsonOption = False,
) -> None:
    """The aliases of the card name and the versions they point at."""
    found = _run(registry, lambda reg: reg.list_aliases(space=space, name=name, as_of=as_of))
    if as_json:
        typer.echo(json.dumps([a.model_dump(mode="json") for a in found], indent=2))
        return
    if not found:
        typer.echo(f"{space}/{name} has no aliases" + (f" as of {as_of}" if as_of else ""))
    for a in found:
        when = a.set_at.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{a.alias}\t{a.version}\t{a.uid}\tset {when} by {a.actor or '-'}")


@alias_app.command("history")
def alias_history(
    registry: RegistryOption,
    space: SpaceOption,
    name: NameOption,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Every move of the card name's aliases, newest first (when, who, which versions)."""
    moves = _run(
        registry,
        lambda reg: reg.alias_history(space=space, name=name, alias=alias, limit=limit),
    )
    if as_json:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in moves], indent=2))
        return
    for m in moves:
        when = m.occurred_at.strftime("%Y-%m-%d %H:%M:%S")
        what = (
            f"set {m.previous_version or '(new)'} -> {m.version}"
            if m.action == "set"
            else f"removed (was {m.version})"
        )
        typer.echo(f"{m.event_offset}\t{when}\t{m.alias}\t{what}\tby {m.actor or '-'}")
