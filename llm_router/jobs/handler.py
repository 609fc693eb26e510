"""The jobs worker's Lambda entry point (`llm_router.jobs.handler.handler`), in the router's zip.

Two events arrive: SQS batches from the event source mapping (scalingConfig.maximumConcurrency
caps how many run at once; a failed record is reported in `batchItemFailures` and comes back
after the delay the worker asked for), and a scheduled sweep that reads the dead-letter queue
and fails the jobs whose messages landed there (the messages stay, for the alarm and for
operators). No HTTP: the worker never faces a client.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Optional

from ..timeouts import for_worker

log = logging.getLogger("llm_router.jobs")

#: Dead letters the sweep reads per invocation at most (10 per receive).
SWEEP_RECEIVES = 50
#: Built once per Lambda environment: the worker, its metrics' flush, the resource addresses, an SQS client.
_built: dict[str, Any] = {}


def _build() -> dict[str, Any]:
    """The worker with the router core given the worker's own deadlines (no API Gateway in front)."""
    import boto3

    from .. import observability, settings, wiring
    from . import wiring as jobs_wiring

    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "llm-router")
    metrics = observability.EmfMetrics(service)
    cfg = settings.from_environment()
    cfg = dataclasses.replace(cfg, router=dataclasses.replace(cfg.router, timeouts=for_worker(cfg.jobs.worker_timeout_s)))
    res = settings.Resources.from_environment()
    router = wiring.from_environment(cfg, res, metrics, observability.lambda_logger(service))
    parts = jobs_wiring.deployed(router, cfg, res, with_bedrock=True)
    return {"worker": jobs_wiring.worker(router, parts), "flush": metrics.flush, "res": res,
            "sqs": boto3.client("sqs", region_name=res.region)}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    if not _built:
        _built.update(_build())
    b = _built
    try:
        if "Records" in event:
            return records(b["worker"], event["Records"], b["sqs"])
        return {"deadLetters": sweep(b["worker"], b["sqs"], b["res"].jobs_dlq_url)}
    finally:
        b["flush"]()


def _queue_url(arn: str) -> Optional[str]:
    """`arn:aws:sqs:<region>:<account>:<name>` → the queue's URL (to delay a retried record)."""
    parts = arn.split(":")
    if len(parts) != 6:
        return None
    return f"https://sqs.{parts[3]}.amazonaws.com/{parts[4]}/{parts[5]}"


def records(worker, batch: list[dict[str, Any]], sqs=None) -> dict[str, Any]:
    """Process SQS records; the ones to retry come back in `batchItemFailures` (partial batch response)."""
    failures = []
    for record in batch:
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            delay = worker.process(json.loads(record["body"]), receives)
        except Exception:  # noqa: BLE001 - this record only: it comes back after the visibility timeout
            log.exception("job message failed", extra={"messageId": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        if delay is None:
            continue
        failures.append({"itemIdentifier": record["messageId"]})
        url = _queue_url(record.get("eventSourceARN", ""))
        if sqs is not None and url and record.get("receiptHandle"):
            try:  # come back after the worker's backoff rather than the (long) visibility timeout
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=record["receiptHandle"],
                                              VisibilityTimeout=int(min(delay, 43_200)))
            except Exception as e:  # noqa: BLE001 - the visibility timeout brings it back anyway
                log.warning("could not delay a retried job message: %s", type(e).__name__)
    return {"batchItemFailures": failures}


def sweep(worker, sqs, dlq_url: Optional[str]) -> int:
    """Fail what the dead letters name; leave the messages where they are (the DLQ alarm and
    operators read them; redriving one re-runs nothing that finished)."""
    if not dlq_url:
        return 0
    seen = 0
    for _ in range(SWEEP_RECEIVES // 10):
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                       WaitTimeSeconds=0, AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        if not messages:
            break
        for msg in messages:
            seen += 1
            try:
                worker.dead_letter(json.loads(msg["Body"]), worker.settings.max_receives)
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("recording a dead letter failed")
    return seen
