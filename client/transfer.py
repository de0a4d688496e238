"""Artifact transfer for the client: serialise a card's objects, hash, upload what the registry
does not have yet, and download-and-verify. Everything streams in 1 MiB chunks, so memory stays
flat whatever the file size."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from client import exports, interfaces, retry
from client.cards import pending_files
from registry_core.domain.artifacts import ArtifactRef, validate_artifact_path
from registry_core.domain.cards import Card, DataCard, ModelCard
from registry_core.domain.errors import ArtifactIntegrityError

CHUNK = 1024 * 1024
CardT = TypeVar("CardT", bound=Card)
T = TypeVar("T")
X = TypeVar("X")
PROGRESS_MIN_BYTES = 16 * 1024 * 1024
PARALLEL = 4


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def prepared(card: Card) -> Iterator[tuple[list[tuple[ArtifactRef, Path]], dict[str, Any]]]:
    """Serialise the card's objects into a temporary directory; yield (manifest with local
    files, attributes learnt while serialising). The directory is removed afterwards."""
    has_objects = (isinstance(card, DataCard) and card.data is not None) or (
        isinstance(card, ModelCard) and (card.model is not None or card.sample_data is not None)
    )
    attached = pending_files(card)
    if not has_objects and not attached:
        yield [], {}  # metadata only: no temporary directory, no hashing
        return
    tmp = Path(tempfile.mkdtemp(prefix="opsml-upload-"))
    try:
        files: dict[str, Path] = {}
        attrs: dict[str, Any] = {}
        if isinstance(card, DataCard) and card.data is not None:
            name, learnt = interfaces.save_table(card.data, tmp, "data")
            files[name] = tmp / name
            attrs |= learnt
        if isinstance(card, ModelCard) and card.model is not None:
            names, learnt = interfaces.save_model(card.model, tmp)
            if learnt["framework"] == "torch":
                exports.check_init_kwargs(card.model, card.model_init_kwargs)
            files |= {n: tmp / n for n in names}
            attrs |= learnt
            names, learnt = exports.make_exports(card, learnt, tmp)
            files |= {n: tmp / n for n in names}
            attrs |= learnt
        if isinstance(card, ModelCard) and card.sample_data is not None:
            name, learnt = interfaces.save_table(card.sample_data, tmp, "sample_data")
            files[name] = tmp / name
            attrs["sample_data_type"] = learnt["data_type"]
            attrs["feature_map"] = learnt["feature_map"]
        for name, local in attached.items():
            files[validate_artifact_path(name)] = Path(local)
        manifest = [
            (ArtifactRef(path=name, sha256=sha256_of(p), size=p.stat().st_size), p)
            for name, p in sorted(files.items())
        ]
        yield manifest, attrs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _progress(total: int, enabled: bool | None) -> Progress | None:
    show = enabled if enabled is not None else (sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES)
    if not show:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


async def each_in_parallel(
    items: Sequence[X],
    total: int,
    progress: bool | None,
    one: Callable[[Progress | None, X], Awaitable[T]],
) -> list[T]:
    """Run `one(bar, item)` for every item, PARALLEL at a time, under one progress bar of
    `total` bytes (shown per `_progress`); the results in the items' order."""
    bar = _progress(total, progress)
    limit = asyncio.Semaphore(PARALLEL)

    async def limited(item: X) -> T:
        async with limit:
            return await one(bar, item)

    if bar:
        bar.start()
    try:
        return list(await asyncio.gather(*(limited(item) for item in items)))
    finally:
        if bar:
            bar.stop()


async def _file_chunks(path: Path, progress: Progress | None, task: Any) -> AsyncIterator[bytes]:
    with open(path, "rb") as fh:  # noqa: ASYNC230 - reads go to a thread
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
            yield chunk


async def upload(
    http: httpx.AsyncClient,
    command_id: UUID,
    files: list[tuple[ArtifactRef, Path]],
    *,
    progress: bool | None = None,
    timeout: float = 600.0,
) -> None:
    async def one(bar: Progress | None, item: tuple[ArtifactRef, Path]) -> None:
        ref, path = item
        task = bar.add_task(f"upload {ref.path}", total=ref.size) if bar else None
        # re-sent (a fresh stream) if the API restarts: the staging key is this command's
        resp = await retry.send(
            http,
            "PUT",
            f"/api/v1/staging/{command_id}/{ref.path}",
            fresh=lambda: {"content": _file_chunks(path, bar, task)},
            headers={"X-Content-SHA256": ref.sha256, "Content-Length": str(ref.size)},
            timeout=timeout,
        )
        if resp.status_code >= 400:
            raise _error(resp)

    await each_in_parallel(files, sum(ref.size for ref, _ in files), progress, one)


async def download(
    http: httpx.AsyncClient,
    uid: UUID,
    refs: list[ArtifactRef],
    dest: Path,
    *,
    progress: bool | None = None,
    timeout: float = 600.0,
) -> list[Path]:
    """Stream every artifact into `dest` through the read API, verifying each sha256; a
    mismatch raises ArtifactIntegrityError and leaves no partial file."""

    async def chunks(ref: ArtifactRef) -> AsyncIterator[bytes]:
        async with http.stream(
            "GET", f"/api/v1/cards/{uid}/artifacts/{ref.path}", timeout=timeout
        ) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise _error(resp)
            async for chunk in resp.aiter_bytes(CHUNK):
                yield chunk

    return await download_verified(uid, refs, dest, chunks, progress)


async def download_verified(
    uid: UUID,
    refs: list[ArtifactRef],
    dest: Path,
    chunks: Callable[[ArtifactRef], AsyncIterator[bytes]],
    progress: bool | None,
) -> list[Path]:
    """Write each ref's bytes (from `chunks`, any source) to `<name>.part`, and give the file
    its name only once its sha256 is the recorded one; a mismatch raises
    ArtifactIntegrityError and leaves no partial file. Up to PARALLEL files at once."""
    dest.mkdir(parents=True, exist_ok=True)

    async def one(bar: Progress | None, ref: ArtifactRef) -> Path:
        target = dest / validate_artifact_path(ref.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        task = bar.add_task(f"download {ref.path}", total=ref.size) if bar else None
        try:
            with open(part, "wb") as fh:  # noqa: ASYNC230 - writes go to a thread
                async for chunk in chunks(ref):
                    digest.update(chunk)
                    await asyncio.to_thread(fh.write, chunk)
                    if bar is not None and task is not None:
                        bar.advance(task, len(chunk))
            if digest.hexdigest() != ref.sha256:
                raise ArtifactIntegrityError(
                    f"{ref.path} of card {uid}: downloaded bytes hash to"
                    f" {digest.hexdigest()}, the registry recorded {ref.sha256}; the stored"
                    " file is corrupt or was changed - do not use it, tell the registry's"
                    " operators"
                )
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return target

    return await each_in_parallel(refs, sum(r.size for r in refs), progress, one)


def rebuild(card: CardT, directory: Path) -> CardT:
    """Fill the card's objects (data, model, sample data) from its downloaded files."""
    names = {a.path for a in card.artifacts}
    if isinstance(card, DataCard):
        for name in ("data.parquet", "data.npy"):
            if name in names:
                card.data = interfaces.load_table(directory / name, card.data_type)
    if isinstance(card, ModelCard):
        if card.model_format:
            card.model = interfaces.load_model(directory, card.attributes())
        for name in ("sample_data.parquet", "sample_data.npy"):
            if name in names:
                card.sample_data = interfaces.load_table(directory / name, card.sample_data_type)
    return card


def _error(resp: httpx.Response) -> Exception:
    from registry_core.domain.errors import RegistryError, error_from_code

    try:
        body = resp.json()
    except ValueError:
        body = {"detail": resp.text}
    err: RegistryError = error_from_code(body.get("error_code"), str(body.get("detail")))
    return err
