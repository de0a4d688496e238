"""Artifact files: staged uploads before a command is published, the already-stored check that
lets a client skip an upload, and verified (ranged) downloads of a card's files."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from registry_core.contracts.http import ErrorBody, KnownArtifacts, KnownArtifactsQuery, StagedFile
from registry_core.domain.artifacts import (
    SHA256_RE,
    card_prefix,
    staging_prefix,
    validate_artifact_path,
)
from registry_core.domain.errors import ArtifactTooLarge, CardNotFound, InvalidArtifact, clip
from registry_core.persistence import read
from workers.api.deps import PoolDep, SettingsDep, StoreDep
from workers.api.ranges import bounded_int, parse_range

router = APIRouter(tags=["artifacts"])


@router.put(
    "/api/v1/staging/{command_id}/{path:path}",
    response_model=StagedFile,
    status_code=201,
    responses={413: {"model": ErrorBody}},
)
async def stage_artifact(
    request: Request,
    command_id: UUID,
    path: str,
    x_content_sha256: Annotated[str, Header(description="sha256 of the body, hex")],
    store: StoreDep,
    s: SettingsDep,
) -> StagedFile:
    """Upload one artifact file into the staging area of a command that is about to be
    published. The body streams to storage (bounded memory); the declared sha256 is
    checked and a mismatch leaves nothing behind."""
    validate_artifact_path(path)
    sha = x_content_sha256.strip().lower()
    if not SHA256_RE.fullmatch(sha):
        raise InvalidArtifact("X-Content-SHA256 must be 64 hex characters")
    declared = request.headers.get("content-length") or ""
    if declared.isascii() and declared.isdigit() and bounded_int(declared) > s.max_artifact_bytes:
        raise ArtifactTooLarge(
            f"{path} is {clip(declared, 30)} bytes, over the registry's limit of"
            f" {s.max_artifact_bytes} bytes"
        )
    key = f"{staging_prefix(command_id)}/{path}"
    stored = await store.put(key, request.stream(), sha256=sha, max_bytes=s.max_artifact_bytes)
    return StagedFile(path=path, sha256=sha, size=stored.size)


@router.post("/api/v1/artifacts/known", response_model=KnownArtifacts)
async def known_artifacts(query: KnownArtifactsQuery, pool: PoolDep) -> KnownArtifacts:
    rows = await read.known_artifacts(pool, query.registry, query.space, query.sha256)
    return KnownArtifacts(known=sorted({r["sha256"] for r in rows}))


@router.get(
    "/api/v1/cards/{uid}/artifacts/{path:path}",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "a byte range"},
        404: {"model": ErrorBody},
        416: {"model": ErrorBody, "description": "a Range this file cannot satisfy"},
    },
)
async def download_artifact(
    request: Request, uid: UUID, path: str, pool: PoolDep, store: StoreDep
) -> Response:
    """Stream one artifact of a card (or its `card.json`). Honours `Range: bytes=a-b`; the
    whole file's sha256 is in `X-Content-SHA256` for the client to verify."""
    row = await read.get_card(pool, uid)
    if row is None:
        raise CardNotFound(f"no card with uid {uid}")
    prefix = card_prefix(row["registry"], row["space"], row["name"], row["version"])
    if path == "card.json":
        stat = await store.stat(f"{prefix}/card.json")
        if stat is None:
            raise CardNotFound(f"card {uid} has no card.json in storage")
        size, sha = stat.size, stat.sha256 or ""
    else:
        ref = next((a for a in row["artifacts"] if a["path"] == path), None)
        if ref is None:
            raise CardNotFound(f"card {uid} has no artifact {path!r}")
        size, sha = int(ref["size"]), ref["sha256"]
    key = f"{prefix}/{path}"
    headers = {"Accept-Ranges": "bytes", "X-Content-SHA256": sha}
    wanted = request.headers.get("range")
    if wanted:
        try:
            start, end = parse_range(wanted, size)
        except ValueError as exc:
            return JSONResponse(
                {"detail": str(exc), "error_code": "range_not_satisfiable"},
                status_code=416, headers={"Content-Range": f"bytes */{size}"},
            )  # fmt: skip
        headers |= {"Content-Range": f"bytes {start}-{end}/{size}",
                    "Content-Length": str(end - start + 1)}  # fmt: skip
        return StreamingResponse(
            store.read(key, start, end), status_code=206, headers=headers,
            media_type="application/octet-stream",
        )  # fmt: skip
    headers["Content-Length"] = str(size)
    return StreamingResponse(
        store.read(key), headers=headers, media_type="application/octet-stream"
    )
