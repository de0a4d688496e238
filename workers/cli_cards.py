"""`opsml list | register | download`: the card commands, through the client (OPSML_TRACKING_URI)
like any data scientist's code."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from registry_core.domain.cards import REGISTRY_ALIASES, RegistryType
from workers.cli_common import fail

REGISTRIES = " | ".join([*(r.value for r in RegistryType), *REGISTRY_ALIASES])
RegistryOption = Annotated[str, typer.Option(help=REGISTRIES)]


def parse_tags(tag: list[str] | None) -> dict[str, str]:
    """`--tag key=value` (repeatable); a tag without `=` is refused, never dropped."""
    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--tag {item!r}: expected key=value (e.g. --tag team=growth)")
        tags[key] = value
    return tags


def list_cards(
    registry: RegistryOption,
    space: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    version: Annotated[
        str | None, typer.Option(help="Exact version or constraint ('^1', '1.2.*', '>=1,<2').")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="key=value, repeatable: cards carrying every tag.")
    ] = None,
    include_deleted: Annotated[bool, typer.Option(help="Also deleted versions.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array of the card records on stdout.")
    ] = False,
) -> None:
    """List cards, newest version first (uses OPSML_TRACKING_URI)."""
    from client import AsyncCardRegistry, RegistryError

    filters: dict[str, Any] = {"space": space, "name": name, "version": version, "limit": limit}
    if tag:
        filters["tags"] = parse_tags(tag)
    if include_deleted:
        filters["include_deleted"] = True

    async def fetch() -> list[Any]:
        async with AsyncCardRegistry(registry) as reg:
            return list(await reg.list_records(**filters))

    try:
        records = asyncio.run(fetch())
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("space", "name", "version", "status", "created_at"):
        table.add_column(column, no_wrap=True)
    table.add_column("tags")
    table.add_column("uid", no_wrap=True, min_width=36)  # whole: it is what people copy
    for r in records:
        tags = ", ".join(f"{k}={v}" for k, v in r.tags.items())
        created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(r.space, r.name, r.version, r.status, created, tags, str(r.uid))
    # Piped, nothing is cut: a terminal's width is not the reader's.
    Console(width=None if sys.stdout.isatty() else 240).print(table)
    if not records:
        typer.secho("no cards match", err=True)


def register(
    registry: RegistryOption,
    space: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    version_type: Annotated[
        str, typer.Option(help="major | minor | patch | pre | build | pre_build")
    ] = "minor",
    version: Annotated[
        str | None, typer.Option(help="An explicit version ('2.0.0') or a line ('2', '2.1').")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
) -> None:
    """Register a metadata-only card (handy for smoke tests)."""
    from pydantic import ValidationError

    from client import CardRegistry, RegistryError
    from registry_core.domain.cards import CARD_CLASS_FOR_REGISTRY, registry_type
    from registry_core.domain.errors import summarize_validation

    tags = parse_tags(tag)
    try:
        card_cls = CARD_CLASS_FOR_REGISTRY[registry_type(registry)]
        card = card_cls(space=space, name=name, tags=tags)
        with CardRegistry(registry) as reg:
            reg.register_card(card, version_type=version_type, version=version)
    except ValidationError as exc:
        fail(summarize_validation(exc))
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"{registry}/{space}/{name} {card.version} uid={card.uid}")


def download(
    registry: Annotated[str | None, typer.Option(help=REGISTRIES)] = None,
    name: Annotated[str | None, typer.Option()] = None,
    to: Annotated[Path, typer.Option(help="Directory to write the artifacts into.")] = Path("."),
    space: Annotated[str | None, typer.Option()] = None,
    version: Annotated[
        str | None, typer.Option(help="Exact version or constraint ('^1', '1.2.*', '>=1,<2').")
    ] = None,
    uid: Annotated[str | None, typer.Option(help="A card uid (instead of name/version).")] = None,
    prereleases: Annotated[bool, typer.Option(help="Let a pre-release be the newest.")] = False,
    lock: Annotated[
        Path | None,
        typer.Option(help="A lock file (opsml lock): every card in it, into --to/<dir>/."),
    ] = None,
) -> None:
    """Download a card's artifacts (newest matching version), each verified by sha256, with a
    card.json describing them (a bundle: client.load_card_dir loads it offline) - e.g. a CI
    build pulling the model it packages into an image. Uses OPSML_TRACKING_URI. Exits 1 when
    no card matches or the card has no files."""
    from client import CardRegistry, RegistryError
    from client.bundle import write_card_json

    if to.exists() and not to.is_dir():
        fail(f"--to {to}: exists and is not a directory (give a directory to write into)")
    if lock is not None:
        if registry or name or uid or space or version:
            fail("--lock downloads what the lock file names: drop --registry/--name/--uid/...")
        from workers.cli_deploy import download_locked

        return download_locked(lock, to)
    if registry is None:
        fail("give --registry (and --name or --uid), or --lock opsml.lock")
    if not uid and not name:
        fail("give --name (with --space and --version) or --uid")
    try:
        with CardRegistry(registry) as reg:
            if uid:
                card = reg.load_card(uid=uid)
            else:
                card = reg.load_card(
                    space=space, name=name, version=version, include_prereleases=prereleases
                )
            if not card.artifacts:
                fail(
                    f"{registry}/{card.space}/{card.name} {card.version} (uid {card.uid}) has no"
                    " files to download"
                )
            paths = reg.download_artifacts(card, to, progress=True)
            write_card_json(card, to)
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    total = sum(p.stat().st_size for p in paths)
    typer.echo(
        f"{registry}/{card.space}/{card.name} {card.version} (uid {card.uid}):"
        f" {len(paths)} file(s), {total} bytes, sha256 verified, card.json -> {to}"
    )
