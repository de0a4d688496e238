"""`opsml lock` and `opsml download --lock`: a deploy spec pinned to exact card versions, and
the CI step that fetches exactly them (client/deploy.py; docs/deployment.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from workers.cli_common import fail

EXIT_STALE = 1
EXIT_ERROR = 2


def lock(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="The deploy spec: a TOML file with \\[\\[cards]] tables, or a pyproject.toml"
            " with \\[\\[tool.opsml.deploy.cards]] (default: opsml-deploy.toml, else"
            " pyproject.toml).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The lock file to write (or --check).")
    ] = Path("opsml.lock"),
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Write nothing; exit 1 when the lock is stale (a newer version matches, an alias"
            " moved, or the spec changed), 2 when a locked card was deleted or the spec cannot"
            " be resolved.",
        ),
    ] = False,
) -> None:
    """Resolve every card of a deploy spec to its exact version, uid and files' sha256 and write
    the lock file (uses OPSML_TRACKING_URI)."""
    from client.deploy import DeployError, check_lock, find_spec, read_lock, read_spec, resolve
    from client.deploy import write_lock as write
    from registry_core.domain.errors import RegistryError

    try:
        path = find_spec(spec)
        entries = read_spec(path)
        if check:
            stale = asyncio.run(check_lock(entries, read_lock(output)))
        else:
            locked = asyncio.run(resolve(entries))
    except DeployError as exc:
        fail(str(exc), EXIT_ERROR)
    except (RegistryError, ValueError) as exc:
        fail(str(exc), EXIT_ERROR)
    if check:
        if stale:
            for line in stale:
                typer.echo(f"stale: {line}")
            typer.secho(
                f"{output} is stale: run `opsml lock {path} -o {output}`", fg="red", err=True
            )
            raise typer.Exit(EXIT_STALE)
        typer.echo(f"{output} is up to date with {path} ({len(entries)} card(s))")
        return
    write(output, locked)
    for c in locked:
        typer.echo(
            f"{c.dir}: {c.registry}/{c.space}/{c.name} {c.version} (uid {c.uid},"
            f" {len(c.files)} file(s))"
        )
    typer.echo(f"wrote {output}")


def download_locked(lock_file: Path, to: Path) -> None:
    """`opsml download --lock FILE --to DIR`: every locked card into DIR/<dir>/, verified."""
    from client.deploy import DeployError, download_locked, read_lock
    from registry_core.domain.errors import RegistryError

    try:
        done = asyncio.run(download_locked(read_lock(lock_file), to))
    except DeployError as exc:
        fail(str(exc), EXIT_ERROR)
    except (RegistryError, ValueError) as exc:
        fail(str(exc))
    for c, where in done:
        total = sum(int(f["size"]) for f in c.files)
        typer.echo(
            f"{c.registry}/{c.space}/{c.name} {c.version} (uid {c.uid}): {len(c.files)} file(s),"
            f" {total} bytes, sha256 verified against {lock_file} -> {where}"
        )
