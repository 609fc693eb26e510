"""Bedrock batch inference for large batches on Bedrock tiers, against botocore's Stubber (moto has no
CreateModelInvocationJob): what is submitted, how answers come back into the OpenAI output file,
records Bedrock could not answer going through the worker, small groups staying on the worker,
and cancellation stopping the job."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from llm_router.backends import Bedrock
from llm_router.jobs.bedrock_batch import BedrockBatch
from llm_router.jobs.blobs import MemoryBlobs
from llm_router.jobs.service import JobService
from llm_router.jobs.store import MemoryStore
from llm_router.jobs.worker import Worker
from llm_router.router import Router
from tests.conftest import router_settings_of
from tests.jobs_support import FAST, Sent

ROLE = "arn:aws:iam::123456789012:role/llm-dev-jobs-bedrock-batch"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123"


def converse_answer(text: str) -> dict:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}, "metrics": {"latencyMs": 12}}


@pytest.fixture
def system(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = router_settings_of("dev")
    settings = dataclasses.replace(settings, jobs=dataclasses.replace(
        settings.jobs, enabled=True, bedrock_batch=True, bedrock_batch_min_records=3))
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1")
    control = boto3.client("bedrock", region_name="us-east-1")
    router = Router(settings, {t.name: Bedrock(t.model, client=runtime) for t in settings.tiers})
    store, sent, blobs = MemoryStore(), Sent(), MemoryBlobs()
    bedrock = BedrockBatch(router, store, sent, blobs, ROLE, 3, "arn:aws:kms:us-east-1:123456789012:key/k",
                           client=control, poll_s=60)
    worker = Worker(router, store, sent, blobs, settings.jobs, bedrock=bedrock, retry_base_s=0.01)
    service = JobService(router, store, sent, blobs, settings.jobs)
    with Stubber(runtime) as rt, Stubber(control) as ctl:
        yield service, worker, sent, blobs, rt, ctl


def start(service, sent, lines: list[tuple[str, str, str]]) -> dict:
    data = b"".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": model, "messages": [{"role": "user", "content": text}],
                                         "max_tokens": 5000}}).encode() + b"\n" for cid, model, text in lines)
    f = service.upload("acme", "batch", "in.jsonl", data)
    return service.create_batch("acme", json.dumps({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                    "completion_window": "24h"}).encode())


def bedrock_writes_output(blobs, batch_id: str, answers: dict[int, str], errors: tuple[int, ...] = ()) -> None:
    """What Bedrock leaves under the output prefix when the job ends."""
    out = [json.dumps({"recordId": f"L{n:06d}", "modelInput": {}, "modelOutput": converse_answer(t)})
           for n, t in answers.items()]
    out += [json.dumps({"recordId": f"L{n:06d}", "modelInput": {}, "error": {"errorCode": 500, "errorMessage": "x"}})
            for n in errors]
    prefix = f"batches/{batch_id}/bedrock/fast/output/abc123"
    blobs.put(f"{prefix}/input.jsonl.out", "\n".join(out).encode())
    blobs.put(f"{prefix}/manifest.json.out", b'{"totalRecordCount": 4}')


def run_all(worker, sent) -> None:
    for _ in range(20):
        messages = [m for m in sent.take() if m["type"] != "bedrock"]
        if not messages:
            return
        for m in messages:
            worker.process(m, 1)


def test_a_large_bedrock_group_goes_to_batch_inference_and_its_answers_come_back_as_openai_output(system):
    service, worker, sent, blobs, rt, ctl = system
    lines = [(f"f{i}", "fast", f"fast question {i}") for i in range(4)] + [("s0", "smart", "one smart question")]
    batch = start(service, sent, lines)
    hex_id = batch["id"].removeprefix("batch_")
    ctl.add_response("create_model_invocation_job", {"jobArn": JOB_ARN}, {
        "jobName": f"llm-{hex_id}-fast", "clientRequestToken": f"llm-{hex_id}-fast", "roleArn": ROLE,
        "modelId": FAST, "modelInvocationType": "Converse", "timeoutDurationInHours": 24,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://local/batches/{batch['id']}/bedrock/fast/input.jsonl",
                                                  "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://local/batches/{batch['id']}/bedrock/fast/output/",
                                                     "s3EncryptionKeyId": ANY}}})
    rt.add_response("converse", converse_answer("smart answer"))  # the smart group (1 < 3) runs on the worker
    [expand] = sent.take("expand")
    worker.process(expand, 1)
    records = [json.loads(x) for x in blobs.get(f"batches/{batch['id']}/bedrock/fast/input.jsonl").splitlines()]
    assert [r["recordId"] for r in records] == ["L000000", "L000001", "L000002", "L000003"]
    first = records[0]["modelInput"]
    assert "modelId" not in first and first["messages"] == [{"role": "user", "content": [{"text": "fast question 0"}]}]
    assert first["inferenceConfig"]["maxTokens"] == 800  # the tier's budget, clamped as the route would
    [poll] = [m for m, delay in sent.messages if m["type"] == "bedrock" and delay == 60]
    [smart_line] = sent.take("line")
    assert smart_line["line"] == 4
    worker.process(smart_line, 1)
    assert service.batch("acme", batch["id"])["request_counts"] == {"total": 5, "completed": 1, "failed": 0}

    ctl.add_response("get_model_invocation_job", _job("InProgress"), {"jobIdentifier": JOB_ARN})
    sent.take()
    worker.process(poll, 1)
    assert [m["type"] for m in sent.take()] == ["bedrock"]  # looked again later
    bedrock_writes_output(blobs, batch["id"], {0: "a0", 1: "a1", 3: "a3"}, errors=(2,))
    ctl.add_response("get_model_invocation_job", _job("PartiallyCompleted"), {"jobIdentifier": JOB_ARN})
    rt.add_response("converse", converse_answer("worker answer for 2"))  # the record Bedrock failed, retried
    worker.process(poll, 1)
    run_all(worker, sent)
    done = service.batch("acme", batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    output = {o["custom_id"]: o["response"]["body"] for o in
              map(json.loads, service.content("acme", done["output_file_id"]).splitlines())}
    assert {k: v["choices"][0]["message"]["content"] for k, v in output.items()} == {
        "f0": "a0", "f1": "a1", "f2": "worker answer for 2", "f3": "a3", "s0": "smart answer"}
    assert output["f0"]["object"] == "chat.completion" and output["f0"]["usage"]["total_tokens"] == 8
    assert output["f0"]["model"] == FAST
    rt.assert_no_pending_responses()
    ctl.assert_no_pending_responses()


def test_a_group_below_the_service_minimum_stays_on_the_worker(system):
    service, worker, sent, blobs, rt, ctl = system
    batch = start(service, sent, [("f0", "fast", "a"), ("f1", "fast", "b")])
    for text in ("x", "y"):
        rt.add_response("converse", converse_answer(text))
    run_all(worker, sent)
    assert service.batch("acme", batch["id"])["status"] == "completed"
    ctl.assert_no_pending_responses()  # nothing was submitted to batch inference


def test_cancelling_stops_the_bedrock_job_and_keeps_what_it_answered(system):
    service, worker, sent, blobs, rt, ctl = system
    batch = start(service, sent, [(f"f{i}", "fast", f"q{i}") for i in range(4)])
    ctl.add_response("create_model_invocation_job", {"jobArn": JOB_ARN})
    [expand] = sent.take("expand")
    worker.process(expand, 1)
    poll = next(m for m in sent.take() if m["type"] == "bedrock")
    ctl.add_response("stop_model_invocation_job", {}, {"jobIdentifier": JOB_ARN})
    service.cancel_batch("acme", batch["id"])
    run_all(worker, sent)  # the finalize message stops the job
    assert service.batch("acme", batch["id"])["status"] == "cancelling"
    bedrock_writes_output(blobs, batch["id"], {1: "kept"})
    ctl.add_response("get_model_invocation_job", _job("Stopped"), {"jobIdentifier": JOB_ARN})
    worker.process(poll, 1)
    done = service.batch("acme", batch["id"])
    assert done["status"] == "cancelled" and done["request_counts"] == {"total": 4, "completed": 1, "failed": 0}
    [kept] = [json.loads(x) for x in service.content("acme", done["output_file_id"]).splitlines()]
    assert kept["custom_id"] == "f1" and kept["response"]["body"]["choices"][0]["message"]["content"] == "kept"
    ctl.assert_no_pending_responses()


def _job(status: str) -> dict:
    return {"jobArn": JOB_ARN, "jobName": "j", "modelId": FAST, "roleArn": ROLE, "status": status,
            "submitTime": "2026-01-01T00:00:00Z",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://local/in"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://local/out/"}}}



def test_a_refused_batch_inference_job_leaves_its_requests_to_the_worker(system):
    service, worker, sent, blobs, rt, ctl = system
    batch = start(service, sent, [(f"f{i}", "fast", f"quota {i}") for i in range(3)])
    ctl.add_client_error("create_model_invocation_job", "ServiceQuotaExceededException", "too many jobs")
    for i in range(3):
        rt.add_response("converse", converse_answer(f"worker {i}"))
    run_all(worker, sent)
    done = service.batch("acme", batch["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3
    rt.assert_no_pending_responses()
