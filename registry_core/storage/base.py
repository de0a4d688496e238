"""Storage: the artifact store port - what the API and the worker need from a store - and the
hashing every adapter shares. The adapters (local.py, s3.py) import this module, never the
other way round; the factory that picks one from OPSML_STORAGE_URI is factory.py.

tests/integration/test_storage_contract.py holds the port's contract: one abstract test case,
run against every adapter."""

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


class ObjectMissing(FileNotFoundError):
    """No object is stored at this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object is stored at {key!r}")
        self.key = key


class ArtifactStore(Protocol):
    """What the API and the worker need from artifact storage. Keys are relative POSIX paths; a
    key that is absent is `stat() -> None`, and ObjectMissing from `read` and `copy`."""

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, sha256: str, max_bytes: int
    ) -> StoredObject:
        """Stream `chunks` to `key`; fail (leaving nothing) if the bytes exceed `max_bytes` or
        do not hash to `sha256`."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """Size and (if the store kept it) sha256 of `key`; None when nothing is stored there."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes of `key` from `start` to `end` (inclusive), streamed."""
        ...

    async def copy(self, src: str, dst: str) -> None:
        """`dst` becomes a copy of `src`, sha256 included (staging -> the card's place).
        Idempotent: copying the same source over an existing destination is fine."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix/`; returns how many there were."""
        ...

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


async def exists(store: ArtifactStore, key: str) -> bool:
    return await store.stat(key) is not None


async def hash_of(store: ArtifactStore, key: str) -> str:
    digest = hashlib.sha256()
    async for chunk in store.read(key):
        digest.update(chunk)
    return digest.hexdigest()
