"""Where file contents and large bodies live: S3 deployed, memory under `serve`."""

from __future__ import annotations

import threading
from typing import Optional, Protocol


class Blobs(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str, start: Optional[int] = None, end: Optional[int] = None) -> bytes:
        """The object, or bytes [start, end) of it."""

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str) -> list[str]: ...

    def uri(self, key: str) -> str:
        """How another AWS service (Bedrock batch inference) names the object."""


class MemoryBlobs:
    def __init__(self):
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[key] = bytes(data)

    def get(self, key: str, start: Optional[int] = None, end: Optional[int] = None) -> bytes:
        with self._lock:
            data = self._data[key]
        return data[start:end] if start is not None else data

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self._data if k.startswith(prefix))

    def uri(self, key: str) -> str:
        return f"s3://local/{key}"


class S3Blobs:
    """Objects in the jobs bucket, encrypted by the bucket's default KMS key."""

    def __init__(self, bucket: str, client=None, region: Optional[str] = None):
        if client is None:
            import boto3

            client = boto3.client("s3", region_name=region)
        self.bucket, self.client = bucket, client

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str, start: Optional[int] = None, end: Optional[int] = None) -> bytes:
        extra = {"Range": f"bytes={start}-{end - 1}"} if start is not None and end is not None and end > start else {}
        if start is not None and end is not None and end <= start:
            return b""
        return self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"
