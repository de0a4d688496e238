"""Storage: the factory - the one place that knows every adapter and picks one from
OPSML_STORAGE_URI (a new adapter is one more branch here and one more subclass of the contract
test)."""

from __future__ import annotations

from registry_core.storage.base import ArtifactStore


def open_store(
    uri: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None
) -> ArtifactStore:
    """`s3://bucket/prefix` -> S3Store; `file:///path` or a plain path -> LocalStore."""
    if uri.startswith("s3://"):
        from registry_core.storage.s3 import S3Store  # (aioboto3 loads only when used)

        bucket, _, prefix = uri[5:].partition("/")
        return S3Store(bucket, prefix, endpoint_url=s3_endpoint_url, region=s3_region)
    from registry_core.storage.local import LocalStore

    return LocalStore(uri.removeprefix("file://"))
