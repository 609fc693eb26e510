"""The job API and the Batch API, behind the HTTP routes: check, write the row, enqueue.

Nothing is stored before a request has passed the same checks a synchronous call gets
(body, model alias, budgets), so bad input is a 4xx and leaves nothing half-created. Every
read is by the caller's tenant, whose name is part of the row's key.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from .. import embeddings
from ..authorizer import Principal
from ..errors import ApiError, bad_request, not_found
from ..requests import json_object
from ..router import Router
from ..settings import JobsSettings
from . import batch_files
from .blobs import Blobs
from .queues import Queue
from .records import (BATCH_REQUEST_BYTES, CANCELLED, CANCELLING, CHAT, EMBEDDINGS, ENDPOINTS, FAILED, IN_PROGRESS,
                      QUEUED, RUNNING, Key, Row, batch_view, caller_fields, checked_key, dumps, file_view, job_view,
                      loads, new_id, new_row)
from .store import Conflict, Store, Update, eq, one_of

log = logging.getLogger("llm_router.jobs")

#: JSON larger than this (characters) goes to the blob store; the row keeps its key. DynamoDB
#: items are at most 400 KB.
INLINE_MAX = 100_000
#: The only completion window OpenAI's API accepts.
COMPLETION_WINDOW_S = {"24h": 86_400}
MAX_METADATA = 16
LIST_LIMIT = 100


def stash(blobs: Blobs, blob_key: str, name: str, text: str) -> dict[str, Any]:
    """A JSON text as a row field, or in the blob store when it is large."""
    if len(text) <= INLINE_MAX:
        return {name: text}
    blobs.put(blob_key, text.encode())
    return {f"{name}_blob": blob_key}


def unstash(blobs: Blobs, row: Row, name: str) -> Optional[str]:
    if row.get(f"{name}_blob"):
        return blobs.get(row[f"{name}_blob"]).decode()
    return row.get(name)


def unavailable(what: str) -> ApiError:
    return ApiError(503, f"the job queue did not accept the {what}; nothing will run, retry shortly", "server_error",
                    "queue_unavailable", headers={"retry-after": "5"})


class JobService:
    def __init__(self, router: Router, store: Store, queue: Queue, blobs: Blobs, settings: JobsSettings,
                 clock: Callable[[], float] = time.time):
        self.router, self.store, self.queue, self.blobs, self.settings = router, store, queue, blobs, settings
        self.clock = clock
        self.retention_s = settings.retention_days * 86_400

    # ------------------------------------------------------------ checks
    def check_request(self, endpoint: str, raw: bytes) -> None:
        """What the synchronous route would refuse, refused now (raises ApiError)."""
        r = self.router
        if endpoint == CHAT:
            routed = r.route(raw)
            if routed.body.get("stream"):
                raise bad_request("jobs answer whole: drop 'stream' (poll the job for its result)", "stream")
        else:
            embeddings.parse(raw, r.settings.router.limits.max_body_bytes, r.embedding_models, r.settings.tier_names)

    # -------------------------------------------------------------- jobs
    def submit(self, tenant: str, raw: bytes, caller: Optional[Principal] = None) -> dict[str, Any]:
        body = json_object(raw, self.router.settings.router.limits.max_body_bytes)
        if ("messages" in body) == ("input" in body):
            raise bad_request("a job is a chat-completions body (with 'messages') or an embeddings body (with "
                              "'input')", code="unknown_job_kind")
        endpoint = CHAT if "messages" in body else EMBEDDINGS
        self.check_request(endpoint, raw)
        id_, now = new_id("job"), self.clock()
        row = new_row("job", tenant, id_, now, self.retention_s, endpoint=endpoint, status=QUEUED, attempt=0,
                      **caller_fields(caller), **stash(self.blobs, f"jobs/{id_}/request.json", "request", raw.decode()))
        self.store.put_new(row)
        try:
            self.queue.send([{"type": "job", "tenant": tenant, "id": id_}])
        except Exception:  # noqa: BLE001 - the row must not stay queued with nothing to run it
            log.exception("enqueueing job %s failed", id_)
            self._give_up(row["pk"], row["sk"], "the job queue did not accept the job")
            raise unavailable("job") from None
        return job_view(row)

    def _give_up(self, pk: str, sk: str, message: str) -> None:
        status = FAILED
        try:
            self.store.update(Update((pk, sk), when=(one_of("status", QUEUED, IN_PROGRESS),), set={
                "status": status, "finished_at": int(self.clock()), "failed_at": int(self.clock()),
                "error": dumps({"message": message, "type": "server_error", "code": "queue_unavailable"})}))
        except Conflict:
            pass

    def job(self, tenant: str, id_: str) -> dict[str, Any]:
        row = self._row(tenant, "job", id_)
        result = unstash(self.blobs, row, "result")
        return job_view(row, loads(result))

    def cancel_job(self, tenant: str, id_: str) -> dict[str, Any]:
        return job_view(cancel_job(self.store, checked_key(tenant, "job", id_), int(self.clock()), self.retention_s))

    def _row(self, tenant: str, kind: str, id_: str) -> Row:
        row = self.store.get(checked_key(tenant, kind, id_))
        if row is None:
            raise not_found(f"no {kind} '{id_}'", code=f"{kind}_not_found")
        return row

    # ------------------------------------------------------------- files
    def upload(self, tenant: str, purpose: Optional[str], filename: Optional[str], data: bytes) -> dict[str, Any]:
        if purpose != "batch":
            raise bad_request(f"purpose must be 'batch' (got {purpose!r}); this router stores batch input files only",
                              "purpose", "invalid_purpose")
        if len(data) > self.settings.max_file_bytes:
            raise ApiError(413, f"the file is {len(data)} bytes; the limit is {self.settings.max_file_bytes} "
                           "(jobs.maxFileBytes)", code="file_too_large", param="file")
        summary = batch_files.check(data, self.settings.max_batch_requests, self.check_request)
        id_ = new_id("file")
        blob = f"files/{id_}"
        self.blobs.put(blob, data)  # first: a row never names bytes that are not there
        row = new_row("file", tenant, id_, self.clock(), self.retention_s, filename=filename or "upload.jsonl",
                      purpose="batch", bytes=len(data), requests=summary.requests, urls=dumps(summary.urls), blob=blob)
        self.store.put_new(row)
        return file_view(row)

    def file(self, tenant: str, id_: str) -> dict[str, Any]:
        return file_view(self._row(tenant, "file", id_))

    def content(self, tenant: str, id_: str) -> bytes:
        return self.blobs.get(self._row(tenant, "file", id_)["blob"])

    # ----------------------------------------------------------- batches
    def create_batch(self, tenant: str, raw: bytes, caller: Optional[Principal] = None) -> dict[str, Any]:
        body = json_object(raw, BATCH_REQUEST_BYTES)
        endpoint, window = body.get("endpoint"), body.get("completion_window")
        if endpoint not in ENDPOINTS:
            raise bad_request(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}", "endpoint")
        if window not in COMPLETION_WINDOW_S:
            raise bad_request(f"completion_window must be one of {', '.join(COMPLETION_WINDOW_S)}, got {window!r}",
                              "completion_window")
        metadata = _metadata(body.get("metadata"))
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise bad_request("input_file_id is required: the id `files.create` returned", "input_file_id")
        try:
            source = self._row(tenant, "file", file_id)
        except ApiError as e:
            e.param = "input_file_id"
            raise
        if source["purpose"] != "batch":
            raise bad_request(f"file {file_id} has purpose '{source['purpose']}'; a batch reads a 'batch' file",
                              "input_file_id")
        for url, line in sorted(loads(source["urls"]).items(), key=lambda kv: kv[1]):
            if url != endpoint:
                raise bad_request(f"line {line} of {file_id} has url '{url}', which differs from the batch's endpoint "
                                  f"'{endpoint}'; every line must use the batch's endpoint", "endpoint",
                                  "mismatched_endpoint")
        id_, now = new_id("batch"), self.clock()
        row = new_row("batch", tenant, id_, now, self.retention_s, endpoint=endpoint, input_file_id=file_id,
                      file_blob=source["blob"], completion_window=window, status=IN_PROGRESS,
                      in_progress_at=int(now), deadline=int(now) + COMPLETION_WINDOW_S[window],
                      total=source["requests"], completed=0, failed=0, skipped=0, expanded=0,
                      metadata=dumps(metadata) if metadata is not None else None, **caller_fields(caller))
        row = {k: v for k, v in row.items() if v is not None}
        self.store.put_new(row)
        try:
            self.queue.send([{"type": "expand", "tenant": tenant, "batch": id_, "start": 0}])
        except Exception:  # noqa: BLE001
            log.exception("enqueueing batch %s failed", id_)
            self._give_up(row["pk"], row["sk"], "the job queue did not accept the batch")
            raise unavailable("batch") from None
        return batch_view(row)

    def batch(self, tenant: str, id_: str) -> dict[str, Any]:
        return batch_view(self._row(tenant, "batch", id_))

    def batches(self, tenant: str, limit: int = 20, after: Optional[str] = None) -> dict[str, Any]:
        if not 1 <= limit <= LIST_LIMIT:
            raise bad_request(f"limit must be between 1 and {LIST_LIMIT}", "limit")
        before = self._row(tenant, "batch", after)["created"] if after else None
        rows = self.store.owned(f"{tenant}#batch", limit + 1, before)
        data = [batch_view(r) for r in rows[:limit]]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > limit}

    def cancel_batch(self, tenant: str, id_: str) -> dict[str, Any]:
        return batch_view(cancel_batch(self.store, self.queue, checked_key(tenant, "batch", id_), int(self.clock())))


def cancel_job(store: Store, k: Key, now: int, retention_s: int) -> Row:
    """A queued or running job becomes cancelled (a worker still running it drops its answer);
    cancelling a cancelled job changes nothing; a finished one is a 409."""
    try:
        return store.update(Update(k, when=(one_of("status", QUEUED, RUNNING),), remove=("lease_until",), set={
            "status": CANCELLED, "cancelled_at": now, "finished_at": now, "expires_at": now + retention_s}))
    except Conflict:
        row = store.get(k)
    if row is None:
        raise not_found(f"no job '{k[0].rsplit('#', 1)[-1]}'", code="job_not_found")
    if row["status"] != CANCELLED:
        raise ApiError(409, f"job {row['id']} has already {row['status']}; only queued or running jobs can be cancelled",
                       code="job_not_cancellable")
    return row


def cancel_batch(store: Store, queue: Queue, k: Key, now: int) -> Row:
    """A batch in progress becomes cancelling: no request starts any more, what runs finishes, and
    the worker finishes the batch as cancelled (stopping Bedrock batch jobs on the way)."""
    try:
        row = store.update(Update(k, when=(eq("status", IN_PROGRESS),), set={"status": CANCELLING, "cancelling_at": now}))
    except Conflict:
        row = store.get(k)
        if row is None:
            raise not_found(f"no batch '{k[0].rsplit('#', 1)[-1]}'", code="batch_not_found") from None
        if row["status"] not in (CANCELLING, CANCELLED):
            raise ApiError(409, f"batch {row['id']} is {row['status']}; only a batch in progress can be cancelled",
                           code="batch_not_cancellable") from None
        return row
    try:
        queue.send([{"type": "finalize", "tenant": row["tenant"], "batch": row["id"]}])
    except Exception:  # noqa: BLE001 - lines still check the status; the last one finishes the batch
        log.exception("enqueueing the cancellation of batch %s failed", row["id"])
    return row


def _metadata(value: Any) -> Optional[dict[str, str]]:
    if value is None:
        return None
    if (not isinstance(value, dict) or len(value) > MAX_METADATA
            or not all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                       for k, v in value.items())):
        raise bad_request(f"metadata holds at most {MAX_METADATA} string pairs (keys ≤ 64, values ≤ 512 "
                          "characters)", "metadata")
    return value
