"""The artifact store port's contract (registry_core/storage/base.py): one abstract test case,
run against every adapter - the local directory and S3 (a real SeaweedFS). A new adapter adds
one subclass here and one branch in registry_core/storage/factory.py."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry_core.domain.errors import ArtifactTooLarge, InvalidArtifact
from registry_core.storage import ArtifactStore, ObjectMissing, exists, hash_of, open_store
from registry_core.storage.local import LocalStore
from registry_core.storage.s3 import PART_SIZE, S3Store
from tests.conftest import S3

pytestmark = pytest.mark.integration


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _read(store: ArtifactStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def _put(store: ArtifactStore, key: str, data: bytes) -> None:
    stored = await store.put(key, _chunks(data), sha256=_sha(data), max_bytes=len(data) + 1)
    assert (stored.size, stored.sha256) == (len(data), _sha(data))


class StoreContract:
    """Every adapter of the port must pass these. Subclasses provide the `store` fixture: a
    fresh, empty store."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[ArtifactStore]:
        raise NotImplementedError
        yield  # (an async generator, like the subclasses' fixtures)

    async def test_a_staged_object_is_stated_and_read_back(self, store: ArtifactStore) -> None:
        data = os.urandom(300_000)
        key = f"staging/{uuid.uuid4()}/model/weights.bin"
        assert not await exists(store, key)
        await _put(store, key, data)
        assert await exists(store, key)
        stat = await store.stat(key)
        assert stat is not None and stat.size == len(data)
        assert stat.sha256 in (_sha(data), None)  # None: the store did not keep it
        assert await _read(store, key) == data
        assert await hash_of(store, key) == _sha(data)

    async def test_an_empty_object_is_an_object(self, store: ArtifactStore) -> None:
        await _put(store, "run/demo/empty/v1.0.0/empty.txt", b"")
        stat = await store.stat("run/demo/empty/v1.0.0/empty.txt")
        assert stat is not None and stat.size == 0
        assert await _read(store, "run/demo/empty/v1.0.0/empty.txt") == b""

    async def test_a_range_is_inclusive_and_may_run_to_the_end(self, store: ArtifactStore) -> None:
        data = bytes(range(256)) * 40
        await _put(store, "data/demo/r/v1.0.0/blob", data)
        assert await _read(store, "data/demo/r/v1.0.0/blob", 10, 19) == data[10:20]
        assert await _read(store, "data/demo/r/v1.0.0/blob", 0, 0) == data[:1]
        assert await _read(store, "data/demo/r/v1.0.0/blob", 10_000) == data[10_000:]
        last = len(data) - 1
        assert await _read(store, "data/demo/r/v1.0.0/blob", last, last) == data[-1:]

    async def test_a_large_object_streams_in_parts(self, store: ArtifactStore) -> None:
        data = os.urandom(PART_SIZE + 123_457)  # past one S3 part: a multipart upload there
        await _put(store, "model/demo/big/v1.0.0/model.bin", data)
        assert await hash_of(store, "model/demo/big/v1.0.0/model.bin") == _sha(data)
        start = PART_SIZE - 5
        got = await _read(store, "model/demo/big/v1.0.0/model.bin", start, start + 9)
        assert got == data[start : start + 10]  # a range across the part boundary

    @pytest.mark.parametrize("size", [1000, PART_SIZE + 10])
    async def test_bytes_that_do_not_hash_to_the_declared_sha256_leave_nothing(
        self, store: ArtifactStore, size: int
    ) -> None:
        data = os.urandom(size)
        with pytest.raises(InvalidArtifact, match="hash to"):
            await store.put("staging/x/file", _chunks(data), sha256=_sha(b"other"), max_bytes=size)
        assert await store.stat("staging/x/file") is None
        # and nothing was left over as a partial upload (a later put of the right bytes works)
        await _put(store, "staging/x/file", data)
        assert await hash_of(store, "staging/x/file") == _sha(data)

    async def test_more_bytes_than_allowed_leave_nothing(self, store: ArtifactStore) -> None:
        data = os.urandom(5000)
        with pytest.raises(ArtifactTooLarge):
            await store.put(
                "staging/y/file", _chunks(data, 1000), sha256=_sha(data), max_bytes=4999
            )
        assert await store.stat("staging/y/file") is None

    async def test_a_put_over_an_existing_object_replaces_it(self, store: ArtifactStore) -> None:
        await _put(store, "staging/z/f", b"first")
        await _put(store, "staging/z/f", b"second!")
        stat = await store.stat("staging/z/f")
        assert stat is not None and stat.size == 7
        assert await _read(store, "staging/z/f") == b"second!"

    async def test_a_missing_object(self, store: ArtifactStore) -> None:
        assert await store.stat("nothing/here") is None
        assert not await exists(store, "nothing/here")
        with pytest.raises(ObjectMissing) as err:
            await _read(store, "nothing/here")
        assert err.value.key == "nothing/here"
        assert isinstance(err.value, FileNotFoundError)  # what callers caught before
        with pytest.raises(ObjectMissing):
            await store.copy("nothing/here", "nothing/there")
        assert await store.stat("nothing/there") is None
        assert await store.delete_prefix("nothing") == 0

    async def test_a_copy_is_finalised_with_its_sha256_and_is_idempotent(
        self, store: ArtifactStore
    ) -> None:
        data = os.urandom(70_000)
        staged = f"staging/{uuid.uuid4()}/model.pkl"
        final = "model/demo/churn/v1.2.0/model.pkl"
        await _put(store, staged, data)
        await store.copy(staged, final)
        await store.copy(staged, final)  # a retried batch copies again
        source, copy = await store.stat(staged), await store.stat(final)
        assert copy is not None and source is not None
        assert copy.size == len(data) and copy.sha256 == source.sha256
        assert await _read(store, final) == data

    async def test_delete_prefix_removes_only_what_is_under_it(self, store: ArtifactStore) -> None:
        for key in ("staging/a/1", "staging/a/sub/2", "staging/ab/3", "staging/b/4"):
            await _put(store, key, key.encode())
        assert await store.delete_prefix("staging/a") == 2
        assert [await exists(store, k) for k in ("staging/a/1", "staging/a/sub/2")] == [False] * 2
        # a sibling whose name starts the same is not under the prefix
        assert await exists(store, "staging/ab/3") and await exists(store, "staging/b/4")
        assert await store.delete_prefix("staging/a") == 0


class TestLocalStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ArtifactStore]:
        store = open_store(str(tmp_path / "artifacts"))
        assert isinstance(store, LocalStore)
        yield store
        await store.close()

    async def test_a_key_cannot_leave_the_directory(self, store: ArtifactStore) -> None:
        with pytest.raises(InvalidArtifact, match="outside the store"):
            await store.stat("../elsewhere")

    async def test_a_file_uri_is_a_directory(self, tmp_path: Path) -> None:
        store = open_store(f"file://{tmp_path}/files")
        assert isinstance(store, LocalStore) and store.root == (tmp_path / "files").resolve()


class TestS3Store(StoreContract):
    @pytest.fixture
    async def store(
        self, s3_server: S3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[ArtifactStore]:
        for name, value in s3_server.env(s3_bucket).items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        store = open_store(f"s3://{s3_bucket}/artifacts", s3_endpoint_url=s3_server.endpoint)
        assert isinstance(store, S3Store) and store.prefix == "artifacts"
        yield store
        await store.close()
