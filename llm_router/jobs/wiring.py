"""The job system's parts: DynamoDB, SQS and S3 deployed (addresses from `Resources`), or one
process's memory under `serve` — the same service and worker either way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..router import Router
from ..settings import Resources, RouterSettings, SettingsError
from .blobs import MemoryBlobs, S3Blobs
from .queues import MemoryQueue, SqsQueue
from .service import JobService
from .store import MemoryStore
from .worker import Worker


@dataclass
class Parts:
    store: Any
    queue: Any
    blobs: Any
    bedrock: Any = None


def deployed(router: Router, settings: RouterSettings, res: Resources, with_bedrock: bool = False) -> Parts:
    from .dynamo import DynamoStore

    missing = [Resources.env_name(f) for f in ("jobs_table", "jobs_queue_url", "jobs_bucket") if not getattr(res, f)]
    if missing:
        raise SettingsError(f"jobs are enabled but {', '.join(missing)} is not set")
    parts = Parts(DynamoStore(res.jobs_table, region=res.region), SqsQueue(res.jobs_queue_url, region=res.region),
                  S3Blobs(res.jobs_bucket, region=res.region))
    if with_bedrock and settings.jobs.bedrock_batch and res.jobs_bedrock_role_arn:
        from .bedrock_batch import BedrockBatch

        parts.bedrock = BedrockBatch(router, parts.store, parts.queue, parts.blobs, res.jobs_bedrock_role_arn,
                                     settings.jobs.bedrock_batch_min_records, res.jobs_kms_key_arn, region=res.region)
    return parts


def service(router: Router, parts: Parts) -> JobService:
    return JobService(router, parts.store, parts.queue, parts.blobs, router.settings.jobs)


def worker(router: Router, parts: Parts, **kwargs: Any) -> Worker:
    return Worker(router, parts.store, parts.queue, parts.blobs, router.settings.jobs, bedrock=parts.bedrock, **kwargs)


@dataclass
class LocalJobs:
    """`serve`'s job system: in-process store, queue (worker threads) and blobs."""

    service: JobService
    worker: Worker
    queue: MemoryQueue
    parts: Parts

    def close(self) -> None:
        self.queue.stop()


def local(router: Router, workers: Optional[int] = None, visibility_s: float = 30.0, retry_base_s: float = 1.0,
          bedrock=None, observe=None) -> LocalJobs:
    jobs = router.settings.jobs
    queue = MemoryQueue(workers or jobs.maximum_concurrency, jobs.max_receives, visibility_s, observe)
    parts = Parts(MemoryStore(), queue, MemoryBlobs(), bedrock)
    w = worker(router, parts, retry_base_s=retry_base_s)
    queue.start(w.process, w.dead_letter)
    return LocalJobs(service(router, parts), w, queue, parts)
