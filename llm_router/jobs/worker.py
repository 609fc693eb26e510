"""The worker: one queue message in, the work it names done at most once.

A message names a job, a batch line, or a step of a batch (expand it into line messages,
poll Bedrock, finish it). Running a job or a line is: claim the row (a conditional write:
queued → running, or running with an expired lease → running again), run the same
`Router.chat` / `Router.embed` core a synchronous request runs, and record the outcome with a
write that holds only if this worker's claim still does. So a duplicate delivery finds the
row claimed or finished and does nothing; a crash leaves the claim to expire and the next
delivery retries; a cancellation in between makes the outcome write fail and the answer is
dropped. A line's outcome and its batch's count change in one transaction: the counts are exact.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Optional

from .. import metric_names as m
from ..authorizer import Principal
from ..router import Reply, Router, StreamReply
from ..settings import JobsSettings
from . import batch_files
from .blobs import Blobs
from .queues import Queue
from .records import (BATCH_OPEN, CANCELLED, CANCELLING, CHAT, COMPLETED, EXPIRED, FAILED, FINALIZING, FINISHED, QUEUED,
                      RETRYABLE, RUNNING, SKIPPED, SUCCEEDED, Key, Row, caller_of, derived_id, dumps, key, line_key,
                      loads, new_row)
from .service import stash, unstash
from .store import Conflict, Put, Store, Update, eq, one_of

log = logging.getLogger("llm_router.jobs")

#: Lines a single `expand` message turns into line messages before handing on the rest.
EXPAND_CHUNK = 500
#: Kept on top of the worker timeout before a claim counts as abandoned.
LEASE_MARGIN_S = 30


class Busy(Exception):
    """Another worker holds the row: deliver the message again after `delay` s."""

    def __init__(self, delay: float):
        super().__init__(f"busy for {delay:.0f} s")
        self.delay = delay


class Worker:
    def __init__(self, router: Router, store: Store, queue: Queue, blobs: Blobs, settings: JobsSettings,
                 bedrock=None, clock: Callable[[], float] = time.time, retry_base_s: float = 10.0):
        self.router, self.store, self.queue, self.blobs, self.settings = router, store, queue, blobs, settings
        self.bedrock, self.clock, self.retry_base_s = bedrock, clock, retry_base_s
        self.lease_s = settings.worker_timeout_s + LEASE_MARGIN_S
        self.retention_s = settings.retention_days * 86_400

    # ------------------------------------------------------------ dispatch
    def process(self, message: dict[str, Any], receives: int) -> Optional[float]:
        """Do what `message` names; None when it is done, else seconds until it should come back."""
        handler = {"job": self._job, "line": self._line, "expand": self._expand, "finalize": self._finalize_message,
                   "bedrock": self._bedrock}.get(message.get("type"))
        if handler is None:
            log.error("dropping a message of unknown type %r", message.get("type"))
            return None
        try:
            return handler(message, receives)
        except Busy as b:
            return b.delay

    def backoff(self, receives: int) -> float:
        return min(self.retry_base_s * 2 ** (receives - 1), 900.0)

    def _metric(self, name: str) -> None:
        self.router.safely("metrics", self.router.metrics.add, name, 1)

    # --------------------------------------------------------------- claim
    def _claim(self, k: Key, fresh: Optional[Row] = None) -> Optional[Row]:
        """This worker's claim on a job or line row, or None when there is nothing to do."""
        now = self.clock()
        running = {"status": RUNNING, "lease_until": now + self.lease_s, "started_at": int(now)}
        if fresh is not None:
            try:
                row = {**fresh, **running, "attempt": 1}
                self.store.put_new(row)
                return row
            except Conflict:
                pass
        for _ in range(3):
            try:
                return self.store.update(Update(k, set=running, add={"attempt": 1}, when=(eq("status", QUEUED),)))
            except Conflict:
                pass
            row = self.store.get(k)
            if row is None or row["status"] in FINISHED:
                return None
            if row["status"] == RUNNING:
                if row.get("lease_until", 0) > now:
                    raise Busy(max(1.0, row["lease_until"] - now))
                try:  # the holder died: its lease ran out
                    return self.store.update(Update(k, set=running, add={"attempt": 1},
                                                    when=(eq("status", RUNNING), eq("attempt", row["attempt"]))))
                except Conflict:
                    raise Busy(1.0) from None
        raise Busy(1.0)

    def _run(self, endpoint: str, raw: bytes, who: Principal, request_id: str) -> Reply:
        """The work, under the submitting key's limits (a limit reached is a 429: retried later)."""
        if endpoint == CHAT:
            reply = self.router.chat(raw, who, request_id)
        else:
            reply = self.router.embed(raw, who, request_id)
        if isinstance(reply, StreamReply):  # refused when submitted; never stream from a worker
            reply.cancel()
            return Reply(400, {"error": {"message": "jobs answer whole: drop 'stream'", "type": "invalid_request_error",
                                         "param": "stream", "code": None}})
        return reply

    def _outcome(self, k: Key, reply: Reply, receives: int, attempt: int, blob_prefix: str) -> tuple[dict, bool]:
        """The row fields that record `reply`, and whether the message should come back (a
        retryable failure with deliveries left: the row goes back to queued)."""
        now = int(self.clock())
        error = reply.body.get("error") if reply.status >= 400 else None
        if reply.status in RETRYABLE and receives < self.settings.max_receives:
            return {"status": QUEUED, "status_code": reply.status, "last_error": dumps(error)}, True
        if reply.status < 400:
            fields = {"status": SUCCEEDED, **stash(self.blobs, f"{blob_prefix}/result-{attempt}.json", "result",
                                                  dumps(reply.body))}
        else:
            if reply.status in RETRYABLE:
                error = {**error, "message": f"gave up after {receives} attempt(s): {error.get('message')}"}
            fields = {"status": FAILED, "error": dumps(error)}
        route = {k: v for k, v in reply.headers.items() if k.startswith("x-llm-")}
        return {**fields, "status_code": reply.status, "finished_at": now, "expires_at": now + self.retention_s,
                "route": dumps(route)}, False

    # ---------------------------------------------------------------- jobs
    def _job(self, message: dict[str, Any], receives: int) -> Optional[float]:
        tenant, id_ = message["tenant"], message["id"]
        k = key(tenant, "job", id_)
        row = self._claim(k)
        if row is None:
            return None
        raw = unstash(self.blobs, row, "request").encode()
        reply = self._run(row["endpoint"], raw, caller_of(row), id_)
        fields, again = self._outcome(k, reply, receives, row["attempt"], f"jobs/{id_}")
        try:
            self.store.update(Update(k, set=fields, remove=("lease_until",),
                                     when=(eq("status", RUNNING), eq("attempt", row["attempt"]))))
        except Conflict:  # cancelled, or reclaimed after this claim expired: the answer is not this worker's to give
            log.info("job %s changed while it ran; its answer is dropped", id_)
            return None
        return self._counted(fields["status"], again, receives)

    def _counted(self, status: str, again: bool, receives: int) -> Optional[float]:
        if again:
            self._metric(m.JOBS_RETRIED)
            return self.backoff(receives)
        self._metric(m.JOBS_SUCCEEDED if status == SUCCEEDED else m.JOBS_FAILED)
        if status == FAILED and receives >= self.settings.max_receives:
            return self.backoff(receives)  # used up its deliveries: on to the dead-letter queue
        return None

    # --------------------------------------------------------------- lines
    def _line(self, message: dict[str, Any], receives: int) -> Optional[float]:
        tenant, batch_id, n = message["tenant"], message["batch"], message["line"]
        bk, lk = key(tenant, "batch", batch_id), line_key(tenant, batch_id, n)
        batch = self.store.get(bk)
        if batch is None or batch["status"] not in BATCH_OPEN:
            return None
        fresh = {"pk": lk[0], "sk": lk[1], "kind": "line", "line": n, "custom_id": message["custom_id"]}
        now = self.clock()
        if batch["status"] == CANCELLING or now >= batch["deadline"]:
            reason = "cancelled" if batch["status"] == CANCELLING else "expired"
            self.close_line(bk, lk, fresh, {"status": SKIPPED, "skip_reason": reason}, "skipped")
            self.maybe_finish(bk)
            return None
        row = self._claim(lk, fresh)
        if row is None:
            self.maybe_finish(bk)
            return None
        request = json.loads(self.blobs.get(batch["file_blob"], message["start"], message["end"]))
        reply = self._run(batch["endpoint"], dumps(request["body"]).encode(), caller_of(batch), f"{batch_id}-{n}")
        fields, again = self._outcome(lk, reply, receives, row["attempt"], f"batches/{batch_id}/lines/{n}")
        mine = (eq("status", RUNNING), eq("attempt", row["attempt"]))
        ops: list[Any] = [Update(lk, set=fields, remove=("lease_until",), when=mine)]
        if not again:
            ops.append(Update(bk, add={"completed" if fields["status"] == SUCCEEDED else "failed": 1}))
        try:
            self.store.transact(ops)
        except Conflict:
            log.info("line %s of batch %s changed while it ran; its answer is dropped", n, batch_id)
            return None
        if not again:
            self.maybe_finish(bk)
        return self._counted(fields["status"], again, receives)

    def close_line(self, bk: Key, lk: Key, fresh: Row, fields: dict[str, Any], counter: str) -> bool:
        """Give a line that no worker is running its final state, counted once in its batch."""
        now = int(self.clock())
        fields = {**fields, "finished_at": now}
        try:
            self.store.transact([Put({**fresh, **fields}), Update(bk, add={counter: 1})])
            return True
        except Conflict:
            pass
        row = self.store.get(lk)
        if row is None or row["status"] in FINISHED or (row["status"] == RUNNING and row.get("lease_until", 0) > now):
            return False
        try:
            self.store.transact([Update(lk, set=fields, remove=("lease_until",),
                                        when=(eq("status", row["status"]), eq("attempt", row.get("attempt", 0)))),
                                 Update(bk, add={counter: 1})])
            return True
        except Conflict:
            return False

    # ------------------------------------------------------------- batches
    def _expand(self, message: dict[str, Any], receives: int) -> Optional[float]:
        """Lines [start, start + EXPAND_CHUNK) become line messages; then the next chunk is queued.
        A repeated expand only repeats line messages, which the lines' claims make harmless."""
        tenant, batch_id, start = message["tenant"], message["batch"], message["start"]
        bk = key(tenant, "batch", batch_id)
        batch = self.store.get(bk)
        if batch is None or batch["status"] not in BATCH_OPEN:
            return None
        data = self.blobs.get(batch["file_blob"])
        spans = list(batch_files.spans(data))
        elsewhere: set[int] = set()
        if self.bedrock is not None and batch["endpoint"] == CHAT:
            elsewhere = self.bedrock.lines(batch, spans, data, submit=start == 0)
        total = len(spans)
        if batch["status"] == CANCELLING:
            # Nothing more starts: lines never handed out are skipped at once, in one write.
            rest = sum(1 for n in range(start, total) if n not in elsewhere)
            try:
                self.store.update(Update(bk, set={"expanded": total}, add={"skipped": rest},
                                         when=(eq("expanded", start),)))
            except Conflict:
                pass
            self.maybe_finish(bk)
            return None
        end = min(start + EXPAND_CHUNK, total)
        self.queue.send([{"type": "line", "tenant": tenant, "batch": batch_id, "line": n, "start": s, "end": e,
                          "custom_id": json.loads(data[s:e])["custom_id"]}
                         for n, (_, s, e) in enumerate(spans[start:end], start) if n not in elsewhere])
        try:
            self.store.update(Update(bk, set={"expanded": end}, when=(eq("expanded", start),)))
        except Conflict:
            pass
        if end < total:
            self.queue.send([{"type": "expand", "tenant": tenant, "batch": batch_id, "start": end}])
        else:
            self.maybe_finish(bk)
        return None

    def _bedrock(self, message: dict[str, Any], receives: int) -> Optional[float]:
        bk = key(message["tenant"], "batch", message["batch"])
        batch = self.store.get(bk)
        if batch is None or batch["status"] not in BATCH_OPEN or self.bedrock is None:
            return None
        if self.bedrock.poll(batch):  # still running at Bedrock: look again later
            self.queue.send([message], delay_s=self.bedrock.poll_s)
        self.maybe_finish(bk)
        return None

    def _finalize_message(self, message: dict[str, Any], receives: int) -> Optional[float]:
        bk = key(message["tenant"], "batch", message["batch"])
        batch = self.store.get(bk)
        if batch is not None and batch["status"] == CANCELLING and self.bedrock is not None:
            self.bedrock.stop(batch)
        self.maybe_finish(bk)
        return None

    def maybe_finish(self, bk: Key) -> None:
        """Finish the batch once every request has an outcome (the last line to finish, a
        repeated delivery of it, and a cancellation all come here)."""
        batch = self.store.get(bk)
        if batch is None or batch["status"] not in BATCH_OPEN:
            return
        if batch.get("completed", 0) + batch.get("failed", 0) + batch.get("skipped", 0) < batch["total"]:
            return
        self.finish(batch)

    def finish(self, batch: Row) -> None:
        bk = (batch["pk"], batch["sk"])
        was = batch.get("finishing_from", batch["status"])
        if batch["status"] != FINALIZING:
            try:
                batch = self.store.update(Update(bk, when=(eq("status", batch["status"]),), set={
                    "status": FINALIZING, "finalizing_at": int(self.clock()), "finishing_from": batch["status"]}))
            except Conflict:
                batch = self.store.get(bk)
                if batch is None or batch["status"] != FINALIZING:
                    return
        output, errors, expired = self._results(batch)
        fields: dict[str, Any] = {}
        for which, data in (("output", output), ("error", errors)):
            if data is not None:
                fields[f"{which}_file_id"] = self._output_file(batch, which, data)
        outcome = CANCELLED if was == CANCELLING else EXPIRED if expired else COMPLETED
        now = int(self.clock())
        try:
            self.store.update(Update(bk, when=(eq("status", FINALIZING),), set={
                **fields, "status": outcome, f"{outcome}_at": now, "expires_at": now + self.retention_s}))
        except Conflict:
            pass

    def _results(self, batch: Row) -> tuple[Optional[bytes], Optional[bytes], bool]:
        """The output file (2xx answers) and the error file (everything else), in request order."""
        bid = batch["id"]
        good: list[tuple[int, dict]] = []
        bad: list[tuple[int, dict]] = []
        expired = False
        for row in self.store.lines(batch["pk"]):
            n, cid = row["line"], row["custom_id"]
            if row["status"] == SKIPPED:
                expired |= row.get("skip_reason") == "expired"
                code = "batch_expired" if row.get("skip_reason") == "expired" else "batch_cancelled"
                bad.append((n, batch_files.error_line(bid, n, cid, code, f"the batch was {row.get('skip_reason')} "
                                                      "before this request ran")))
                continue
            if row["status"] not in (SUCCEEDED, FAILED):
                continue
            body = loads(unstash(self.blobs, row, "result")) if row["status"] == SUCCEEDED \
                else {"error": loads(row.get("error"))}
            entry = batch_files.response_line(bid, n, cid, row["status_code"], body)
            (good if row["status"] == SUCCEEDED else bad).append((n, entry))
        if self.bedrock is not None:
            good += self.bedrock.results(batch)
        return batch_files.jsonl(good), batch_files.jsonl(bad), expired

    def _output_file(self, batch: Row, which: str, data: bytes) -> str:
        """Write one of a batch's files; a repeated finish writes the same id and bytes."""
        file_id = derived_id("file", batch["id"], which)
        blob = f"files/{file_id}"
        self.blobs.put(blob, data)
        row = new_row("file", batch["tenant"], file_id, self.clock(), self.retention_s, filename=f"{batch['id']}_{which}.jsonl",
                      purpose="batch_output", bytes=len(data), requests=data.count(b"\n"), urls="{}", blob=blob)
        try:
            self.store.put_new(row)
        except Conflict:
            pass
        return file_id

    # --------------------------------------------------------- dead letters
    def dead_letter(self, message: dict[str, Any], receives: int) -> None:
        """A message that used up its deliveries: its job, line or batch fails with the reason.
        Idempotent (the sweeper may read the same dead letter many times)."""
        kind = message.get("type")
        if kind == "job":
            self._dead_row(key(message["tenant"], "job", message["id"]), receives)
        elif kind == "line":
            tenant, batch_id, n = message["tenant"], message["batch"], message["line"]
            bk, lk = key(tenant, "batch", batch_id), line_key(tenant, batch_id, n)
            row = self.store.get(lk) or {}
            fresh = {"pk": lk[0], "sk": lk[1], "kind": "line", "line": n, "custom_id": message["custom_id"]}
            if self.close_line(bk, lk, fresh, self._dead_fields(row, receives), "failed"):
                self._metric(m.JOBS_FAILED)
            self.maybe_finish(bk)
        elif kind in ("expand", "finalize", "bedrock"):
            bk = key(message["tenant"], "batch", message["batch"])
            now = int(self.clock())
            try:
                self.store.update(Update(bk, when=(one_of("status", *BATCH_OPEN),), set={
                    "status": FAILED, "failed_at": now, "expires_at": now + self.retention_s,
                    "errors": dumps({"message": f"the batch's {kind} step failed on each of {receives} deliveries"})}))
            except Conflict:
                pass

    def _dead_fields(self, row: Row, receives: int) -> dict[str, Any]:
        last = loads(row.get("last_error"))
        why = (f"the last attempt failed with: {last.get('message')}" if isinstance(last, dict)
               else "the worker stopped (crashed or timed out) during each")
        now = int(self.clock())
        return {"status": FAILED, "status_code": row.get("status_code") or 500, "finished_at": now,
                "expires_at": now + self.retention_s,
                "error": dumps({"message": f"given up after {receives} deliveries; {why}", "type": "server_error",
                                "param": None, "code": "dead_lettered"})}

    def _dead_row(self, k: Key, receives: int) -> None:
        row = self.store.get(k)
        now = self.clock()
        if row is None or row["status"] in FINISHED or (row["status"] == RUNNING and row.get("lease_until", 0) > now):
            return
        try:
            self.store.update(Update(k, set=self._dead_fields(row, receives), remove=("lease_until",),
                                     when=(eq("status", row["status"]), eq("attempt", row.get("attempt", 0)))))
            self._metric(m.JOBS_FAILED)
        except Conflict:
            pass

