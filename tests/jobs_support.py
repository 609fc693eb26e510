"""Shared by the job tests: the deployed parts on moto (DynamoDB, SQS, S3), a settable clock, a queue
that records what is sent, and routers in front of the stand-in model server."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from llm_router.jobs.dynamo import HASH_KEY, OWNER_INDEX, OWNER_KEYS, RANGE_KEY, TTL_ATTRIBUTE
from llm_router.wiring import local
from tests.conftest import router_settings_of

REGION = "us-east-1"
#: The dev stack's tiers' models (what the stand-in server echoes back).
FAST = "us.amazon.nova-lite-v1:0"
SMART = "us.anthropic.claude-sonnet-4-20250514-v1:0"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sent:
    """A queue that keeps what is sent (the test delivers it)."""

    def __init__(self):
        self.messages: list[tuple[dict[str, Any], int]] = []

    def send(self, messages: list[dict[str, Any]], delay_s: int = 0) -> None:
        self.messages += [(json.loads(json.dumps(m)), delay_s) for m in messages]

    def take(self, kind: str | None = None) -> list[dict[str, Any]]:
        taken = [m for m, _ in self.messages if kind is None or m["type"] == kind]
        self.messages = [(m, d) for m, d in self.messages if not (kind is None or m["type"] == kind)]
        return taken


def router_for(upstream_url: str, stack: str = "dev", **jobs: Any):
    """An example stack's router on the stand-in server, with some `jobs` settings replaced."""
    settings = router_settings_of(stack)
    settings = dataclasses.replace(settings, jobs=dataclasses.replace(settings.jobs, enabled=True, **jobs))
    router = local(settings, upstream_url)
    router.retry.base_s = 0.001
    return router


def create_table(client, name: str = "jobs") -> str:
    """The job table as the Jobs component declares it."""
    attrs = {HASH_KEY, RANGE_KEY, *OWNER_KEYS}
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in sorted(attrs)],
        KeySchema=[{"AttributeName": HASH_KEY[0], "KeyType": "HASH"}, {"AttributeName": RANGE_KEY[0], "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": OWNER_INDEX, "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": OWNER_KEYS[0][0], "KeyType": "HASH"},
                                               {"AttributeName": OWNER_KEYS[1][0], "KeyType": "RANGE"}]}])
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    return name


def create_queues(sqs, max_receives: int, visibility_s: int = 0) -> tuple[str, str]:
    """The job queue and its dead-letter queue, redriven after `max_receives`."""
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="jobs", Attributes={
        "VisibilityTimeout": str(visibility_s),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})})["QueueUrl"]
    return queue, dlq


def sqs_records(sqs, queue_url: str) -> list[dict[str, Any]]:
    """What the Lambda event source would hand the worker: received messages as SQS event records."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    return [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
             "attributes": m["Attributes"], "eventSource": "aws:sqs", "eventSourceARN": arn} for m in got]


def deliver(sqs, queue_url: str, worker) -> tuple[int, list[dict[str, Any]]]:
    """One poll of the event source: receive, run the handler, delete what succeeded (as Lambda does).
    Returns (records delivered, the records reported as failed)."""
    from llm_router.jobs.handler import records

    batch = sqs_records(sqs, queue_url)
    failed = records(worker, batch, sqs)["batchItemFailures"] if batch else []
    retried = {f["itemIdentifier"] for f in failed}
    for r in batch:
        if r["messageId"] not in retried:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=r["receiptHandle"])
    return len(batch), failed
