"""Artifact storage: one small interface, a local-directory store and an S3 store (aioboto3).

Keys are relative POSIX paths (`{registry}/{space}/{name}/v{version}/...`, `staging/...`).
Every write is streamed and hashed; the sha256 is checked against what the writer claimed.
"""

from registry_core.storage.base import ArtifactStore, StoredObject, open_store

__all__ = ["ArtifactStore", "StoredObject", "open_store"]
