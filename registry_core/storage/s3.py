"""Storage, S3 adapter (aioboto3): multipart uploads for large files (bounded memory), streamed
and ranged downloads, server-side copies. The sha256 is kept in object metadata."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from registry_core.storage.base import HashingLimiter, ObjectMissing, StoredObject

PART_SIZE = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB (except the last)
_MISSING = ("404", "NoSuchKey", "NotFound")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region or "us-east-1"
        self._stack = AsyncExitStack()
        self._client: Any = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def client(self) -> Any:
        if self._client is None:
            session = aioboto3.Session()
            self._client = await self._stack.enter_async_context(
                session.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=Config(retries={"max_attempts": 5, "mode": "standard"}),
                )
            )
        return self._client

    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, sha256: str, max_bytes: int
    ) -> StoredObject:
        s3 = await self.client()
        k = self._key(key)
        hasher = HashingLimiter(max_bytes)
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                buffer += hasher.feed(chunk)
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        created = await s3.create_multipart_upload(
                            Bucket=self.bucket, Key=k, Metadata={"sha256": sha256}
                        )
                        upload_id = created["UploadId"]
                    part, buffer = bytes(buffer[:PART_SIZE]), buffer[PART_SIZE:]
                    resp = await s3.upload_part(
                        Bucket=self.bucket,
                        Key=k,
                        UploadId=upload_id,
                        PartNumber=len(parts) + 1,
                        Body=part,
                    )
                    parts.append({"PartNumber": len(parts) + 1, "ETag": resp["ETag"]})
            hasher.check(sha256)
            if upload_id is None:
                await s3.put_object(
                    Bucket=self.bucket, Key=k, Body=bytes(buffer), Metadata={"sha256": sha256}
                )
            else:
                if buffer or not parts:
                    resp = await s3.upload_part(
                        Bucket=self.bucket,
                        Key=k,
                        UploadId=upload_id,
                        PartNumber=len(parts) + 1,
                        Body=bytes(buffer),
                    )
                    parts.append({"PartNumber": len(parts) + 1, "ETag": resp["ETag"]})
                await s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=k, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id = None
        finally:
            if upload_id is not None:
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=upload_id)
        return StoredObject(hasher.size, sha256)

    async def stat(self, key: str) -> StoredObject | None:
        s3 = await self.client()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return StoredObject(int(head["ContentLength"]), head.get("Metadata", {}).get("sha256"))

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        s3 = await self.client()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            resp = await s3.get_object(**args)
        except ClientError as exc:
            if _missing(exc):
                raise ObjectMissing(key) from None
            raise
        body = resp["Body"]
        try:
            async for chunk in body.iter_chunks(1024 * 1024):
                yield chunk
        finally:
            body.close()

    async def copy(self, src: str, dst: str) -> None:
        s3 = await self.client()
        try:
            await s3.copy_object(
                Bucket=self.bucket,
                Key=self._key(dst),
                CopySource={"Bucket": self.bucket, "Key": self._key(src)},
                MetadataDirective="COPY",
            )
        except ClientError as exc:
            if _missing(exc):
                raise ObjectMissing(src) from None
            raise

    async def delete_prefix(self, prefix: str) -> int:
        s3 = await self.client()
        deleted = 0
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix) + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                deleted += len(keys)
        return deleted

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
