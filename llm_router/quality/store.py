"""Where samples live: JSON Lines objects in S3 under one key per hour, or a local file.

Keys are `samples/YYYY-MM-DD/HH/<time>-<random>.jsonl` (UTC), so the evaluator lists
exactly the hours of its window. The router writes straight to S3 through the VPC's
gateway endpoint (README: "Quality SLO", why not Firehose); objects are encrypted
with the bucket's KMS key by default.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

SAMPLES_PREFIX = "samples/"
HOUR = dt.timedelta(hours=1)


class Sink(Protocol):
    def write(self, records: list[dict[str, Any]]) -> None: ...


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records).encode()


def hour_prefix(at: dt.datetime) -> str:
    return f"{SAMPLES_PREFIX}{at:%Y-%m-%d}/{at:%H}/"


def object_key(at: dt.datetime) -> str:
    return f"{hour_prefix(at)}{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"


class S3Sink:
    """One object per batch. The client is made on first use, in the sender thread, from a
    session of its own (boto3's default session is not safe to share across threads)."""

    def __init__(self, bucket: str, region: Optional[str] = None, client: Any = None):
        self.bucket, self.region, self._client = bucket, region, client

    def write(self, records: list[dict[str, Any]]) -> None:
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client("s3", region_name=self.region)
        self._client.put_object(Bucket=self.bucket, Key=object_key(dt.datetime.now(dt.timezone.utc)),
                                Body=jsonl(records), ContentType="application/x-ndjson")


class FileSink:
    """`serve --samples FILE`: lines appended to a local file (what `slo evaluate` reads)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, records: list[dict[str, Any]]) -> None:
        with self._lock, self.path.open("ab") as f:
            f.write(jsonl(records))


def window(now: dt.datetime, hours: int) -> tuple[dt.datetime, dt.datetime]:
    """The whole hours a run reads: the `hours` before the current one. A run every `hours`
    hours reads each hour once; samples of the current hour wait for the next run."""
    end = now.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    return end - hours * HOUR, end


def keys_in(s3: Any, bucket: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    keys: list[str] = []
    at = start
    while at < end:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=hour_prefix(at)):
            keys += [o["Key"] for o in page.get("Contents", [])]
        at += HOUR
    return keys


def read_window(s3: Any, bucket: str, start: dt.datetime, end: dt.datetime, limit: int,
                rng: Optional[random.Random] = None) -> tuple[list[str], int]:
    """Up to `limit` sample lines from a random subset of the window's objects, and how many
    objects the window held."""
    keys = keys_in(s3, bucket, start, end)
    (rng or random.Random()).shuffle(keys)
    lines: list[str] = []
    for key in keys:
        if len(lines) >= limit:
            break
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
        lines += [line for line in body.splitlines() if line.strip()][: limit - len(lines)]
    return lines, len(keys)


def read_file(path: Path | str) -> Iterator[str]:
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                yield line
