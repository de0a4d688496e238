"""Storage, local adapter: a directory - atomic writes (temp file + rename), no symlink escapes."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from registry_core.domain.errors import InvalidArtifact
from registry_core.storage.base import CHUNK, HashingLimiter, ObjectMissing, StoredObject

# The sha256 that put() verified while writing, kept with the file (like the S3 store's object
# metadata), so the worker does not read a staged file a second time to hash it.
SHA256_XATTR = "user.opsml.sha256"


def _remember_sha256(path: Path, sha256: str) -> None:
    try:
        os.setxattr(path, SHA256_XATTR, sha256.encode())
    except OSError:  # file system without user xattrs: stat() reports no hash, callers hash
        pass


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidArtifact(f"key {key!r} points outside the store")
        return path

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, sha256: str, max_bytes: int
    ) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        hasher = HashingLimiter(max_bytes)
        try:
            with open(tmp, "wb") as fh:  # noqa: ASYNC230 - open is cheap; writes go to a thread
                async for chunk in chunks:
                    await asyncio.to_thread(fh.write, hasher.feed(chunk))
            hasher.check(sha256)
            _remember_sha256(tmp, sha256)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return StoredObject(hasher.size, sha256)

    async def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            sha = os.getxattr(path, SHA256_XATTR).decode()
        except OSError:  # no xattr support, or a file not written by put()
            sha = None
        return StoredObject(path.stat().st_size, sha)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: ASYNC230 - open is cheap; reads go to a thread
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectMissing(key) from None
        with fh:
            fh.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = await asyncio.to_thread(
                    fh.read, CHUNK if left is None else min(CHUNK, left)
                )
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def copy(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise ObjectMissing(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            try:
                # Files are never changed in place (put writes a new file and renames it), so a
                # hard link is a copy that costs nothing, whatever the size; the sha256 the
                # writer verified travels with the inode.
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed: copy the bytes
                await asyncio.to_thread(shutil.copyfile, source, tmp)
                sha = (await self.stat(src) or StoredObject(0, None)).sha256
                if sha:
                    _remember_sha256(tmp, sha)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    async def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        await asyncio.to_thread(shutil.rmtree, path, True)
        return count

    async def close(self) -> None:
        return None
