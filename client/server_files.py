"""A server registry's files: staged straight into the artifact store (each write hashed by the
store, then read back: its size and sha256 must be the declared ones) and downloaded straight
from it, every file verified against its recorded sha256 before it takes its name."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from rich.progress import Progress

from client import transfer
from client.errors import RegistryUnavailable
from registry_core.domain.artifacts import (
    ArtifactRef,
    card_prefix,
    staging_prefix,
    validate_artifact_path,
)
from registry_core.domain.errors import ArtifactIntegrityError, ArtifactTooLarge, CardNotFound
from registry_core.storage import ArtifactStore
from registry_core.storage.base import ObjectMissing


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    """The store's own failures (unreachable, no or wrong credentials) as RegistryUnavailable
    saying what to set; the domain's errors and ObjectMissing pass through."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError as exc:
        raise RegistryUnavailable(
            f"{what}: the artifact store is S3 and this process has no credentials for it; a"
            " server registry uses its own, as the worker and the API do (AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
        ) from exc
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise RegistryUnavailable(
            f"{what}: the artifact store refused ({err.get('Code')}: {err.get('Message')});"
            " check this process's S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        ) from exc
    except PermissionError as exc:
        raise RegistryUnavailable(
            f"{what}: this process may not use the artifact store's directory ({exc}); a server"
            " registry writes and reads it as the worker does"
        ) from exc
    except (BotoCoreError, ConnectionError, TimeoutError) as exc:
        raise RegistryUnavailable(f"{what}: the artifact store is unreachable ({exc})") from exc


async def stage(
    store: ArtifactStore,
    command_id: UUID,
    files: list[tuple[ArtifactRef, Path]],
    max_bytes: int,
    progress: bool | None,
) -> None:
    """Write each file under the command's staging prefix, where the worker looks for it."""

    async def one(bar: Progress | None, item: tuple[ArtifactRef, Path]) -> None:
        ref, path = item
        name = validate_artifact_path(ref.path)
        if ref.size > max_bytes:
            raise ArtifactTooLarge(
                f"{name} is {ref.size} bytes, over the registry's limit of {max_bytes} bytes"
            )
        key = f"{staging_prefix(command_id)}/{name}"
        task = bar.add_task(f"stage {name}", total=ref.size) if bar else None
        with store_errors(f"staging {name}"):
            chunks = transfer._file_chunks(path, bar, task)
            await store.put(key, chunks, sha256=ref.sha256, max_bytes=max_bytes)
            stored = await store.stat(key)
        if stored is None or stored.size != ref.size or stored.sha256 not in (None, ref.sha256):
            raise ArtifactIntegrityError(
                f"{name}: the artifact store holds {stored} after the upload, not"
                f" {ref.size} bytes with sha256 {ref.sha256}; try again"
            )

    await transfer.each_in_parallel(files, sum(ref.size for ref, _ in files), progress, one)


async def download(
    store: ArtifactStore,
    uid: UUID,
    card: dict[str, Any] | None,
    refs: list[ArtifactRef],
    dest: Path,
    progress: bool | None,
) -> list[Path]:
    """Stream each of the card's files into `dest`; a sha256 other than the ref's raises
    ArtifactIntegrityError and leaves no partial file (as the HTTP download does)."""
    if card is None:
        raise CardNotFound(f"no card with uid {uid}")
    prefix = card_prefix(card["registry"], card["space"], card["name"], card["version"])
    recorded = {a["path"] for a in card["artifacts"]}
    for ref in refs:
        if ref.path not in recorded:
            raise CardNotFound(f"card {uid} has no artifact {ref.path!r}")

    async def chunks(ref: ArtifactRef) -> AsyncIterator[bytes]:
        try:
            with store_errors(f"reading {ref.path}"):
                async for chunk in store.read(f"{prefix}/{ref.path}"):
                    yield chunk
        except ObjectMissing as exc:
            raise ArtifactIntegrityError(
                f"{ref.path} of card {uid} is recorded but missing from the artifact store"
            ) from exc

    return await transfer.download_verified(uid, refs, dest, chunks, progress)
