"""Bedrock batch inference for large batches on Bedrock tiers (`jobs.bedrockBatch`).

When a chat batch starts, each request is checked, tiered and fitted exactly as the worker
would (`Router.route`). Requests that land on one Bedrock tier, when there are at least
`bedrockBatchMinRecords` of them (the service's minimum per job), go to one
`CreateModelInvocationJob` in the Converse format: the records are the Converse requests the
router's Bedrock backend would send, written to S3 with Bedrock's service role allowed to read
them. Every other request runs through the worker. A poll message comes back until the job
ends; then each answer is mapped to the OpenAI completion the synchronous route returns, and
records Bedrock could not answer run through the worker instead (or are skipped if the batch
was cancelled). These requests are not looked up in, or written to, the response cache.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from ..backends import Bedrock
from ..bedrock_map import chat_completion
from ..errors import ApiError
from ..router import Router
from . import batch_files
from .blobs import Blobs
from .queues import Queue
from .records import CANCELLING, Row, dumps, loads
from .store import Conflict, Store, Update, absent, eq

log = logging.getLogger("llm_router.jobs")

#: How often a running Bedrock batch job is looked at, s (SQS's longest delay).
POLL_S = 900
ENDED = ("Completed", "PartiallyCompleted", "Stopped", "Failed", "Expired")
RUNNING = ("Submitted", "Validating", "Scheduled", "InProgress")


def record_id(line: int) -> str:
    return f"L{line:06d}"


class BedrockBatch:
    def __init__(self, router: Router, store: Store, queue: Queue, blobs: Blobs, role_arn: str, min_records: int,
                 kms_key_arn: Optional[str] = None, client=None, region: Optional[str] = None, poll_s: int = POLL_S):
        if client is None:
            import boto3

            client = boto3.client("bedrock", region_name=region)
        self.router, self.store, self.queue, self.blobs, self.client = router, store, queue, blobs, client
        self.role_arn, self.min_records, self.kms_key_arn, self.poll_s = role_arn, min_records, kms_key_arn, poll_s

    def _prefix(self, batch: Row, tier: str) -> str:
        return f"batches/{batch['id']}/bedrock/{tier}"

    # ------------------------------------------------------------ submit
    def lines(self, batch: Row, spans: list[tuple[int, int, int]], data: bytes, submit: bool) -> set[int]:
        """The requests Bedrock batch inference answers for this batch; with `submit`, start its
        jobs first (idempotent: a repeated start finds the jobs it recorded)."""
        state = loads(batch.get("bedrock"))
        if state is None and submit:
            state = self._submit(batch, spans, data)
        if not state:
            return set()
        return {n for tier in state for n in self._handled(batch, tier)}

    def _handled(self, batch: Row, tier: str) -> list[int]:
        return json.loads(self.blobs.get(f"{self._prefix(batch, tier)}/lines.json"))

    def _submit(self, batch: Row, spans: list[tuple[int, int, int]], data: bytes) -> dict[str, Any]:
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for n, (_, start, end) in enumerate(spans):
            body = json.loads(data[start:end])["body"]
            try:
                routed = self.router.route(dumps(body).encode())
            except ApiError:
                continue  # the worker reports it, as the synchronous route would
            backend = self.router.backends.get(routed.tier.name)
            if isinstance(backend, Bedrock):
                request = backend.request(routed.upstream, backend.plan(routed.upstream))
                request.pop("modelId")
                groups.setdefault(routed.tier.name, []).append((n, request))
        state: dict[str, Any] = {}
        for tier, records in sorted(groups.items()):
            if len(records) < self.min_records:
                continue
            prefix = self._prefix(batch, tier)
            self.blobs.put(f"{prefix}/input.jsonl", b"".join(
                dumps({"recordId": record_id(n), "modelInput": r}).encode() + b"\n" for n, r in records))
            self.blobs.put(f"{prefix}/lines.json", dumps([n for n, _ in records]).encode())
            name = f"llm-{batch['id'].removeprefix('batch_')}-{tier}"
            output: dict[str, Any] = {"s3Uri": self.blobs.uri(f"{prefix}/output/")}
            if self.kms_key_arn:
                output["s3EncryptionKeyId"] = self.kms_key_arn
            try:
                job = self.client.create_model_invocation_job(
                    jobName=name[:63], clientRequestToken=name, roleArn=self.role_arn,
                    modelId=self.router.backends[tier].model, modelInvocationType="Converse",
                    inputDataConfig={"s3InputDataConfig": {"s3Uri": self.blobs.uri(f"{prefix}/input.jsonl"),
                                                           "s3InputFormat": "JSONL"}},
                    outputDataConfig={"s3OutputDataConfig": output}, timeoutDurationInHours=24)
            except Exception as e:  # noqa: BLE001 - a quota, a model without batch support: the worker runs them
                log.warning("batch %s: Bedrock batch inference refused %s (%s); the worker runs it", batch["id"], tier,
                            getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__)
                continue
            state[tier] = {"arn": job["jobArn"], "state": "submitted", "records": len(records)}
        bk = (batch["pk"], batch["sk"])
        try:
            self.store.update(Update(bk, set={"bedrock": dumps(state)}, when=(absent("bedrock"),)))
        except Conflict:
            current = self.store.get(bk) or {}
            return loads(current.get("bedrock")) or {}
        if state:
            self.queue.send([{"type": "bedrock", "tenant": batch["tenant"], "batch": batch["id"]}], delay_s=self.poll_s)
        return state

    # -------------------------------------------------------------- poll
    def poll(self, batch: Row) -> bool:
        """Collect the jobs that ended; True while any still runs."""
        state = loads(batch.get("bedrock")) or {}
        waiting = False
        for tier, job in sorted(state.items()):
            if job["state"] != "submitted":
                continue
            found = self.client.get_model_invocation_job(jobIdentifier=job["arn"])
            if found["status"] in ENDED:
                self._collect(batch, tier)
                batch = self.store.get((batch["pk"], batch["sk"])) or batch
            else:
                waiting = True
        return waiting

    def stop(self, batch: Row) -> None:
        for job in (loads(batch.get("bedrock")) or {}).values():
            if job["state"] == "submitted":
                try:
                    self.client.stop_model_invocation_job(jobIdentifier=job["arn"])
                except Exception as e:  # noqa: BLE001 - it may have ended meanwhile; the poll collects it either way
                    log.warning("stopping Bedrock job %s: %s", job["arn"], type(e).__name__)

    def _answers(self, batch: Row, tier: str) -> dict[int, dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        for blob in self.blobs.keys(f"{self._prefix(batch, tier)}/output/"):
            if not blob.endswith(".jsonl.out"):
                continue
            for line in self.blobs.get(blob).splitlines():
                record = json.loads(line) if line.strip() else {}
                rid = record.get("recordId", "")
                if rid.startswith("L") and rid[1:].isdigit() and "modelOutput" in record and not record.get("error"):
                    answers[int(rid[1:])] = record["modelOutput"]
        return answers

    def _collect(self, batch: Row, tier: str) -> None:
        """Map a finished job's answers back; queue (or skip, when cancelling) what it did not answer."""
        data = self.blobs.get(batch["file_blob"])
        spans = list(batch_files.spans(data))
        answers = self._answers(batch, tier)
        backend = self.router.backends[tier]
        results, missing = [], []
        for n in self._handled(batch, tier):
            _, start, end = spans[n]
            line = json.loads(data[start:end])
            try:
                routed = self.router.route(dumps(line["body"]).encode())
                completion = chat_completion(answers[n], backend.model, backend.plan(routed.upstream))
            except Exception:  # noqa: BLE001 - no usable answer (none, malformed): the worker asks again
                missing.append(n)
                continue
            results.append({"line": n, "custom_id": line["custom_id"], "body": completion})
        prefix = self._prefix(batch, tier)
        self.blobs.put(f"{prefix}/results.jsonl", b"".join(dumps(r).encode() + b"\n" for r in results))
        cancelling = batch["status"] == CANCELLING
        if missing and not cancelling:  # before the count: a repeated collect re-sends, never loses them
            self.queue.send([{"type": "line", "tenant": batch["tenant"], "batch": batch["id"], "line": n,
                              "start": spans[n][1], "end": spans[n][2],
                              "custom_id": json.loads(data[spans[n][1]:spans[n][2]])["custom_id"]} for n in missing])
        state = loads(batch["bedrock"])
        state[tier] = {**state[tier], "state": "collected", "answered": len(results), "retried": len(missing)}
        add = {"completed": len(results), **({"skipped": len(missing)} if cancelling and missing else {})}
        try:
            self.store.update(Update((batch["pk"], batch["sk"]), set={"bedrock": dumps(state)}, add=add,
                                     when=(eq("bedrock", batch["bedrock"]),)))
        except Conflict:
            log.info("batch %s: Bedrock results for %s were collected already", batch["id"], tier)

    def results(self, batch: Row) -> list[tuple[int, dict[str, Any]]]:
        """Output-file entries for the answers Bedrock gave."""
        out = []
        for tier, job in (loads(batch.get("bedrock")) or {}).items():
            if job["state"] != "collected":
                continue
            for line in self.blobs.get(f"{self._prefix(batch, tier)}/results.jsonl").splitlines():
                r = json.loads(line)
                out.append((r["line"], batch_files.response_line(batch["id"], r["line"], r["custom_id"], 200, r["body"])))
        return out
