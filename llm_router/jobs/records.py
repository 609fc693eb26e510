"""Rows, keys and ids of jobs, files, batches and batch lines, and their OpenAI-shaped views.

A row's partition key starts with its tenant, so a request can only ever address rows of the
tenant whose key it carries: another tenant's id is simply not found (404, never 403).
Structured values (request bodies, results, errors) are stored as JSON text; rows hold only
strings, numbers, booleans and None.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any, Optional

from ..authorizer import Principal
from ..errors import not_found

Key = tuple[str, str]
Row = dict[str, Any]

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"
ENDPOINTS = (CHAT, EMBEDDINGS)

# Jobs and batch lines: queued → running → succeeded | failed (| cancelled: jobs; skipped: lines).
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, SKIPPED = "queued", "running", "succeeded", "failed", "cancelled", "skipped"
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED, SKIPPED})
# Batches (OpenAI's statuses).
IN_PROGRESS, FINALIZING, COMPLETED, EXPIRED, CANCELLING = "in_progress", "finalizing", "completed", "expired", "cancelling"
BATCH_OPEN = frozenset({IN_PROGRESS, CANCELLING, FINALIZING})

ID_FORMS = {"job": re.compile(r"^job_[0-9a-f]{32}$"), "batch": re.compile(r"^batch_[0-9a-f]{32}$"),
            "file": re.compile(r"^file-[0-9a-f]{32}$")}
ID_PREFIXES = {"job": "job_", "batch": "batch_", "file": "file-"}
#: A batch request is a few ids and a little metadata.
BATCH_REQUEST_BYTES = 64 * 1024
#: Statuses that may be retried: throttling, the backend failing or timing out.
RETRYABLE = frozenset({429, 500, 502, 503, 504})


def new_id(kind: str) -> str:
    return ID_PREFIXES[kind] + uuid.uuid4().hex


def derived_id(kind: str, *parts: str) -> str:
    """The same id for the same parts: a retried step writes the same row, never a second one."""
    return ID_PREFIXES[kind] + hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def key(tenant: str, kind: str, id_: str) -> Key:
    return f"{tenant}#{kind}#{id_}", kind


def line_key(tenant: str, batch_id: str, line: int) -> Key:
    return key(tenant, "batch", batch_id)[0], f"line#{line:06d}"


def checked_key(tenant: str, kind: str, id_: str) -> Key:
    """The key of a row a client names; a malformed id is as unknown as a missing one."""
    if not isinstance(id_, str) or not ID_FORMS[kind].match(id_):
        raise not_found(f"no {kind} '{id_}'", code=f"{kind}_not_found")
    return key(tenant, kind, id_)


def new_row(kind: str, tenant: str, id_: str, now: float, retention_s: int, **fields: Any) -> Row:
    pk, sk = key(tenant, kind, id_)
    return {"pk": pk, "sk": sk, "kind": kind, "tenant": tenant, "id": id_, "owner": f"{tenant}#{kind}",
            "created": int(now * 1000), "created_at": int(now), "expires_at": int(now) + retention_s, **fields}


def caller_fields(who: Optional[Principal]) -> dict[str, Any]:
    """The key a job or batch was submitted with, kept so its work runs under that key's limits."""
    if who is None:
        return {}
    return {"key_id": who.key_id, "key_limits": dumps([list(limit) for limit in who.limits])}


def caller_of(row: Row) -> Principal:
    """Who a job's or batch's work runs as: its submitter's key (rows from before keys were kept:
    the tenant, under the stack's per-key limits)."""
    limits = tuple((name, limit) for name, limit in loads(row.get("key_limits")) or ())
    return Principal(row["tenant"], row.get("key_id", "-"), limits)


def loads(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------- views
def job_view(row: Row, result: Any = None) -> dict[str, Any]:
    """`GET /v1/jobs/{id}`: status, times, and when done the answer or the error."""
    out = {"id": row["id"], "object": "job", "endpoint": row["endpoint"], "status": row["status"],
           "created_at": row["created_at"], "started_at": row.get("started_at"),
           "finished_at": row.get("finished_at"), "cancelled_at": row.get("cancelled_at"),
           "attempts": row.get("attempt", 0), "status_code": row.get("status_code"),
           "result": result, "error": loads(row.get("error")),
           # What served it, as the synchronous route's x-llm-* headers say (tier, backend, model, cache).
           "route": loads(row.get("route"))}
    return out


def file_view(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
            "filename": row["filename"], "purpose": row["purpose"], "status": "processed",
            "status_details": None, "expires_at": row["expires_at"]}


def batch_view(row: Row) -> dict[str, Any]:
    total = row["total"]
    times = {f"{name}_at": row.get(f"{name}_at") for name in (
        "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")}
    return {"id": row["id"], "object": "batch", "endpoint": row["endpoint"], "errors": None,
            "input_file_id": row["input_file_id"], "completion_window": row["completion_window"],
            "status": row["status"], "output_file_id": row.get("output_file_id"),
            "error_file_id": row.get("error_file_id"), "created_at": row["created_at"],
            "expires_at": row["deadline"], **times,
            "request_counts": {"total": total, "completed": row.get("completed", 0), "failed": row.get("failed", 0)},
            "metadata": loads(row.get("metadata"))}
