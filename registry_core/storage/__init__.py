"""Storage: artifact stores behind one small port (base.py) - a local directory (local.py) and S3
(s3.py, aioboto3) - picked by the factory (factory.py).

Keys are relative POSIX paths (`{registry}/{space}/{name}/v{version}/...`, `staging/...`).
Every write is streamed and hashed; the sha256 is checked against what the writer claimed.
"""

from registry_core.storage.base import ArtifactStore, ObjectMissing, StoredObject, exists, hash_of
from registry_core.storage.factory import open_store

__all__ = ["ArtifactStore", "ObjectMissing", "StoredObject", "exists", "hash_of", "open_store"]
