"""The storage port and the factory that picks an adapter from OPSML_STORAGE_URI."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from registry_core.domain.errors import ArtifactTooLarge, InvalidArtifact

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    size: int
    sha256: str | None  # None when the store did not record it (compute with `hash_of`)


class ArtifactStore(Protocol):
    """What the API and the worker need from artifact storage."""

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, sha256: str, max_bytes: int
    ) -> StoredObject:
        """Stream `chunks` to `key`; fail (leaving nothing) if the bytes exceed `max_bytes` or
        do not hash to `sha256`."""
        ...

    async def stat(self, key: str) -> StoredObject | None: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes of `key` from `start` to `end` (inclusive), streamed."""
        ...

    async def copy(self, src: str, dst: str) -> None:
        """Idempotent: copying the same source over an existing destination is fine."""
        ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def close(self) -> None: ...


class HashingLimiter:
    """Hashes and counts bytes as they stream past, and enforces the size limit."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    def feed(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise ArtifactTooLarge(
                f"artifact is larger than the registry's limit of {self.max_bytes} bytes"
            )
        self.digest.update(chunk)
        return chunk

    def check(self, expected: str) -> str:
        got = self.digest.hexdigest()
        if got != expected:
            raise InvalidArtifact(
                f"uploaded bytes hash to {got}, not the declared sha256 {expected}; the upload"
                " was corrupted or the file changed while uploading - upload it again"
            )
        return got


async def hash_of(store: ArtifactStore, key: str) -> str:
    digest = hashlib.sha256()
    async for chunk in store.read(key):
        digest.update(chunk)
    return digest.hexdigest()


def open_store(
    uri: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None
) -> ArtifactStore:
    """`s3://bucket/prefix` -> S3Store; `file:///path` or a plain path -> LocalStore."""
    if uri.startswith("s3://"):
        from registry_core.storage.s3 import S3Store

        bucket, _, prefix = uri[5:].partition("/")
        return S3Store(bucket, prefix, endpoint_url=s3_endpoint_url, region=s3_region)
    from registry_core.storage.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))
