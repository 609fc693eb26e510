"""Exactly the work asked, once: the stores' conditional writes (one contract, in memory and on
DynamoDB), duplicate delivery, a crash mid-job, cancellation while running, retries into the
dead-letter queue, exact batch counts, expiry — and the deployed path (DynamoDB, SQS with a
redrive policy, S3, the Lambda handler and its dead-letter sweep) on moto."""

from __future__ import annotations

import json
import threading
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from llm_blueprint.fake_upstream import FakeUpstream
from llm_router.jobs import handler
from llm_router.jobs.blobs import MemoryBlobs, S3Blobs
from llm_router.jobs.dynamo import DynamoStore
from llm_router.jobs.queues import MemoryQueue, SqsQueue
from llm_router.jobs.records import key, line_key
from llm_router.jobs.service import JobService
from llm_router.jobs.store import Conflict, MemoryStore, Put, Update, absent, below, eq, one_of
from llm_router.jobs.worker import Worker
from llm_router.router import Reply
from tests.jobs_support import (FAST, REGION, SMART, Clock, Sent, create_queues, create_table, deliver, router_for,
                                sqs_records)



@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def fresh(upstream):
    upstream.modes.clear()
    upstream.calls.clear()
    upstream.slow_s = 3.0
    return upstream


@pytest.fixture(params=["memory", "dynamodb"])
def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        yield DynamoStore(create_table(client), client)


def row(pk: str, sk: str = "job", **fields):
    return {"pk": pk, "sk": sk, **fields}


# ------------------------------------------------------------ store contract
def test_a_row_is_created_once(store):
    store.put_new(row("t#job#1", status="queued", attempt=0))
    with pytest.raises(Conflict):
        store.put_new(row("t#job#1", status="running"))
    assert store.get(("t#job#1", "job"))["status"] == "queued"
    assert store.get(("t#job#2", "job")) is None


def test_updates_hold_only_under_their_condition(store):
    k = ("t#job#1", "job")
    store.put_new(row(*k, status="queued", attempt=0, lease_until=5.5, note="x"))
    after = store.update(Update(k, set={"status": "running", "note": None}, add={"attempt": 1},
                                when=(eq("status", "queued"), below("lease_until", 6), absent("owner"))))
    assert (after["status"], after["attempt"], "note" in after) == ("running", 1, False)
    for when in ((eq("status", "queued"),), (one_of("status", "succeeded", "failed"),), (below("lease_until", 5),),
                 (absent("status"),), (eq("attempt", 0),)):
        with pytest.raises(Conflict):
            store.update(Update(k, set={"status": "done"}, when=when))
    with pytest.raises(Conflict):  # never creates a row
        store.update(Update(("t#job#9", "job"), set={"status": "running"}))
    assert store.get(("t#job#9", "job")) is None
    after = store.update(Update(k, add={"attempt": 2}, remove=("lease_until",), when=(one_of("status", "running"),)))
    assert after["attempt"] == 3 and "lease_until" not in after and store.get(k)["attempt"] == 3


def test_a_transaction_is_all_or_nothing(store):
    batch = ("t#batch#b", "batch")
    store.put_new(row(*batch, completed=0))
    with pytest.raises(Conflict):
        store.transact([Put(row(batch[0], "line#000001", status="succeeded")),
                        Update(batch, add={"completed": 1}, when=(eq("completed", 7),))])
    assert store.get((batch[0], "line#000001")) is None and store.get(batch)["completed"] == 0
    store.transact([Put(row(batch[0], "line#000001", status="succeeded")), Update(batch, add={"completed": 1})])
    with pytest.raises(Conflict):  # the line exists: its count does not move again
        store.transact([Put(row(batch[0], "line#000001", status="succeeded")), Update(batch, add={"completed": 1})])
    assert store.get(batch)["completed"] == 1


def test_lines_come_in_order_and_listings_newest_first(store):
    for n in (10, 2, 1):
        store.put_new(row("t#batch#b", f"line#{n:06d}", line=n))
    store.put_new(row("t#batch#other", "line#000003", line=3))
    assert [r["line"] for r in store.lines("t#batch#b")] == [1, 2, 10]
    for i in range(4):
        store.put_new(row(f"t#batch#{i}", "batch", kind="batch", owner="t#batch", created=1000 + i))
    store.put_new(row("u#batch#9", "batch", kind="batch", owner="u#batch", created=5000))
    assert [r["created"] for r in store.owned("t#batch", 2)] == [1003, 1002]
    assert [r["created"] for r in store.owned("t#batch", 10, before=1002)] == [1001, 1000]
    assert [r["created"] for r in store.scan("batch", 2)] == [5000, 1003]


# ------------------------------------------------------------------ worker
def parts(upstream, clock=None, **jobs):
    router = router_for(upstream.url, **jobs)
    store, sent, blobs = MemoryStore(), Sent(), MemoryBlobs()
    clock = clock or Clock()
    service = JobService(router, store, sent, blobs, router.settings.jobs, clock=clock)
    worker = Worker(router, store, sent, blobs, router.settings.jobs, clock=clock, retry_base_s=0.01)
    return service, worker, store, sent


def ask(content: str, model: str = "fast") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}]}).encode()


def calls_for(upstream, content: str) -> int:
    return sum(1 for c in upstream.calls if c.get("messages", [{}])[-1].get("content") == content)


def test_a_duplicate_delivery_runs_the_model_once_and_writes_one_result(fresh):
    service, worker, store, sent = parts(fresh)
    job = service.submit("acme", ask("once only"))
    [message] = sent.take("job")
    assert worker.process(message, 1) is None
    first = service.job("acme", job["id"])
    assert worker.process(message, 2) is None  # SQS delivered it again
    assert service.job("acme", job["id"]) == first
    assert calls_for(fresh, "once only") == 1 and first["attempts"] == 1 and first["status"] == "succeeded"


def test_two_workers_given_the_same_message_at_once_run_it_once(fresh):
    fresh.modes[FAST] = "slow"
    fresh.slow_s = 0.5
    service, worker, store, sent = parts(fresh)
    job = service.submit("acme", ask("concurrent"))
    [message] = sent.take("job")
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(worker.process(message, 1))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done, busy = sorted(outcomes, key=lambda o: o is not None)
    assert done is None and busy > 0  # the loser comes back after the holder's lease
    assert worker.process(message, 2) is None
    assert calls_for(fresh, "concurrent") == 1 and service.job("acme", job["id"])["attempts"] == 1


def test_a_crash_mid_job_leaves_it_retryable_once_its_lease_runs_out(fresh):
    clock = Clock()
    service, worker, store, sent = parts(fresh, clock)
    job = service.submit("acme", ask("crash then work"))
    [message] = sent.take("job")
    with mock.patch.object(worker.router, "chat", side_effect=MemoryError("the worker died")):
        with pytest.raises(MemoryError):
            worker.process(message, 1)
    assert service.job("acme", job["id"])["status"] == "running"
    delay = worker.process(message, 2)  # redelivered while the dead worker's claim still stands
    assert delay == pytest.approx(worker.lease_s, abs=1)
    clock.now += worker.lease_s + 1
    assert worker.process(message, 3) is None
    done = service.job("acme", job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2 and calls_for(fresh, "crash then work") == 1


def test_an_answer_that_arrives_after_cancel_is_dropped(fresh):
    fresh.modes[FAST] = "slow"
    fresh.slow_s = 0.5
    service, worker, store, sent = parts(fresh)
    job = service.submit("acme", ask("cancel me"))
    [message] = sent.take("job")
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(worker.process(message, 1)))
    t.start()
    while service.job("acme", job["id"])["status"] != "running":
        pass
    assert service.cancel_job("acme", job["id"])["status"] == "cancelled"
    t.join()
    after = service.job("acme", job["id"])
    assert outcome == [None] and after["status"] == "cancelled" and after["result"] is None
    assert calls_for(fresh, "cancel me") == 1


def test_a_client_error_fails_at_once_and_is_not_retried(fresh):
    service, worker, store, sent = parts(fresh)
    job = service.submit("acme", ask("refused upstream"))
    [message] = sent.take("job")
    refusal = Reply(400, {"error": {"message": "the model rejected the request", "type": "invalid_request_error",
                                    "param": None, "code": "upstream_rejected"}})
    with mock.patch.object(worker.router, "chat", return_value=refusal):
        assert worker.process(message, 1) is None
    failed = service.job("acme", job["id"])
    assert failed["status"] == "failed" and failed["status_code"] == 400 and failed["attempts"] == 1
    assert failed["error"]["code"] == "upstream_rejected"


def test_retries_then_failure_with_the_reason_then_the_dead_letter_queue(fresh):
    fresh.modes[FAST] = fresh.modes[SMART] = "error"
    router = router_for(fresh.url, max_receives=3)
    store, blobs = MemoryStore(), MemoryBlobs()
    queue = MemoryQueue(workers=2, max_receives=3, visibility_s=0.05)
    worker = Worker(router, store, queue, blobs, router.settings.jobs, retry_base_s=0.01)
    service = JobService(router, store, queue, blobs, router.settings.jobs)
    queue.start(worker.process, worker.dead_letter)
    try:
        job = service.submit("acme", ask("always fails"))
        assert queue.wait_idle(30)
    finally:
        queue.stop()
    failed = service.job("acme", job["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 3
    message = failed["error"]["message"]  # the backend's own error: failing, or its circuit open
    assert message.startswith("gave up after 3 attempt(s): ") and "backend" in message
    assert [m["id"] for m in queue.dead] == [job["id"]] and queue.deliveries == 3


def test_a_worker_that_crashes_on_every_delivery_fails_the_job_through_the_dead_letter_queue(fresh):
    router = router_for(fresh.url, max_receives=2)
    store, blobs = MemoryStore(), MemoryBlobs()
    clock = Clock()
    queue = MemoryQueue(workers=1, max_receives=2, visibility_s=0.01)
    worker = Worker(router, store, queue, blobs, router.settings.jobs, clock=clock)
    worker.lease_s = -1  # every claim has run out by the next delivery
    service = JobService(router, store, queue, blobs, router.settings.jobs, clock=clock)
    with mock.patch.object(router, "chat", side_effect=RuntimeError("segfault")):
        queue.start(worker.process, worker.dead_letter)
        try:
            job = service.submit("acme", ask("never answers"))
            assert queue.wait_idle(30)
        finally:
            queue.stop()
    failed = service.job("acme", job["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "dead_lettered"
    assert "given up after 2 deliveries" in failed["error"]["message"] and "crashed or timed out" in failed["error"]["message"]
    assert len(queue.dead) == 1


# --------------------------------------------------------------- batches
def batch_of(service, sent, worker, n: int, tenant: str = "acme"):
    data = b"".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": json.loads(ask(f"line {i}"))}).encode() + b"\n" for i in range(n))
    f = service.upload(tenant, "batch", "in.jsonl", data)
    batch = service.create_batch(tenant, json.dumps({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                     "completion_window": "24h"}).encode())
    [expand] = sent.take("expand")
    worker.process(expand, 1)
    return batch, sent.take("line")


def test_batch_lines_delivered_twice_are_counted_once(fresh):
    service, worker, store, sent = parts(fresh)
    batch, lines = batch_of(service, sent, worker, 5)
    assert [m["line"] for m in lines] == [0, 1, 2, 3, 4]
    for m in lines + lines[::-1]:
        worker.process(m, 1)
    done = service.batch("acme", batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    output = service.content("acme", done["output_file_id"]).splitlines()
    assert [json.loads(x)["custom_id"] for x in output] == [f"c{i}" for i in range(5)]
    assert sum(calls_for(fresh, f"line {i}") for i in range(5)) == 5


def test_a_repeated_expand_repeats_messages_but_never_work(fresh):
    service, worker, store, sent = parts(fresh)
    batch, lines = batch_of(service, sent, worker, 3)
    worker.process({"type": "expand", "tenant": "acme", "batch": batch["id"], "start": 0}, 2)
    again = sent.take("line")
    assert [m["line"] for m in again] == [0, 1, 2]
    for m in lines + again:
        worker.process(m, 1)
    assert service.batch("acme", batch["id"])["request_counts"]["completed"] == 3


def test_a_dead_lettered_line_fails_and_the_batch_still_finishes(fresh):
    service, worker, store, sent = parts(fresh)
    batch, lines = batch_of(service, sent, worker, 3)
    worker.process(lines[0], 1)
    worker.process(lines[1], 1)
    worker.dead_letter(lines[2], 3)
    worker.dead_letter(lines[2], 3)  # the sweep reads the same dead letter again
    done = service.batch("acme", batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    [err] = [json.loads(x) for x in service.content("acme", done["error_file_id"]).splitlines()]
    assert err["custom_id"] == "c2" and err["response"]["body"]["error"]["code"] == "dead_lettered"


def test_a_batch_past_its_window_expires_with_what_finished(fresh):
    clock = Clock()
    service, worker, store, sent = parts(fresh, clock)
    batch, lines = batch_of(service, sent, worker, 3)
    worker.process(lines[0], 1)
    clock.now += 86_400 + 1
    for m in lines[1:]:
        worker.process(m, 1)
    done = service.batch("acme", batch["id"])
    assert done["status"] == "expired" and done["expired_at"] and done["request_counts"]["completed"] == 1
    codes = [json.loads(x)["error"]["code"] for x in service.content("acme", done["error_file_id"]).splitlines()]
    assert codes == ["batch_expired", "batch_expired"]


def test_cancelling_during_expansion_skips_every_request_not_yet_run(fresh):
    service, worker, store, sent = parts(fresh)
    data = b"".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": json.loads(ask(f"q{i}"))}).encode() + b"\n" for i in range(1200))
    f = service.upload("acme", "batch", "big.jsonl", data)
    batch = service.create_batch("acme", json.dumps({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                     "completion_window": "24h"}).encode())
    [expand] = sent.take("expand")
    worker.process(expand, 1)  # the first 500 lines are handed out
    handed_out = sent.take("line")
    assert len(handed_out) == 500
    service.cancel_batch("acme", batch["id"])
    for m in sent.take():  # the next expand skips the 700 not handed out in one write; then the finish
        worker.process(m, 1)
    assert service.batch("acme", batch["id"])["status"] == "cancelling"  # 500 are still in flight
    for m in handed_out:
        worker.process(m, 1)
    done = service.batch("acme", batch["id"])
    assert done["status"] == "cancelled" and done["request_counts"] == {"total": 1200, "completed": 0, "failed": 0}
    assert not any(calls_for(fresh, f"q{i}") for i in range(1200))


# ------------------------------------------------------- deployed, on moto
@pytest.fixture
def aws(fresh):
    with mock_aws():
        ddb, sqs, s3 = (boto3.client(s, region_name=REGION) for s in ("dynamodb", "sqs", "s3"))
        s3.create_bucket(Bucket="jobs-files")
        queue_url, dlq_url = create_queues(sqs, max_receives=3)
        router = router_for(fresh.url, max_receives=3)
        store, queue, blobs = DynamoStore(create_table(ddb), ddb), SqsQueue(queue_url, sqs), S3Blobs("jobs-files", s3)
        service = JobService(router, store, queue, blobs, router.settings.jobs)
        worker = Worker(router, store, queue, blobs, router.settings.jobs, retry_base_s=0)
        yield service, worker, sqs, queue_url, dlq_url


def test_deployed_a_job_runs_from_sqs_and_a_redelivered_record_does_nothing(aws, fresh):
    service, worker, sqs, queue_url, _ = aws
    job = service.submit("acme", ask("via sqs"))
    [record] = sqs_records(sqs, queue_url)
    assert handler.records(worker, [record], sqs) == {"batchItemFailures": []}
    assert handler.records(worker, [record], sqs) == {"batchItemFailures": []}  # at-least-once: delivered again
    done = service.job("acme", job["id"])
    assert done["status"] == "succeeded" and calls_for(fresh, "via sqs") == 1
    assert done["result"]["choices"][0]["message"]["content"] == f"[{FAST}] answer to: via sqs"


def test_deployed_failures_retry_then_land_in_the_dlq_and_the_sweep_fails_the_job(aws, fresh):
    service, worker, sqs, queue_url, dlq_url = aws
    job = service.submit("acme", ask("crashes every time"))
    with mock.patch.object(worker.router, "chat", side_effect=RuntimeError("boom")):
        worker.lease_s = -1
        for _ in range(3):
            delivered, failed = deliver(sqs, queue_url, worker)
            assert delivered == 1 and len(failed) == 1
        assert deliver(sqs, queue_url, worker) == (0, [])  # moved to the dead-letter queue on the next receive
    assert service.job("acme", job["id"])["status"] == "running"
    assert handler.sweep(worker, sqs, dlq_url) == 1
    failed = service.job("acme", job["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "dead_lettered"
    worker.dead_letter(json.loads(json.dumps({"type": "job", "tenant": "acme", "id": job["id"]})), 3)
    assert service.job("acme", job["id"]) == failed  # a later sweep reading it again changes nothing
    attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages",
                                                                        "ApproximateNumberOfMessagesNotVisible"])
    assert sum(map(int, attrs["Attributes"].values())) == 1  # the dead letter stays for the alarm


def test_deployed_a_batch_over_s3_and_dynamodb(aws, fresh):
    service, worker, sqs, queue_url, _ = aws
    data = b"".join(json.dumps({"custom_id": f"d{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": json.loads(ask(f"deployed {i}"))}).encode() + b"\n" for i in range(7))
    f = service.upload("beta", "batch", "in.jsonl", data)
    batch = service.create_batch("beta", json.dumps({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                     "completion_window": "24h"}).encode())
    for _ in range(10):
        if deliver(sqs, queue_url, worker)[0] == 0:
            break
    done = service.batch("beta", batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 7, "completed": 7, "failed": 0}
    assert len(service.content("beta", done["output_file_id"]).splitlines()) == 7
    assert [b["id"] for b in service.batches("beta")["data"]] == [batch["id"]] and not service.batches("acme")["data"]
    with pytest.raises(Exception) as e:
        service.batch("acme", batch["id"])
    assert getattr(e.value, "status", None) == 404


def test_the_lambda_entry_point_builds_from_the_environment_and_sweeps(fresh, monkeypatch):
    from llm_router.settings import Resources, dump

    with mock_aws():
        ddb, sqs = boto3.client("dynamodb", region_name=REGION), boto3.client("sqs", region_name=REGION)
        queue_url, dlq_url = create_queues(sqs, max_receives=3)
        settings = router_for(fresh.url).settings
        env = {"LLM_ROUTER_SETTINGS": json.dumps(dump(settings)), "AWS_REGION": REGION,
               Resources.env_name("jobs_table"): create_table(ddb), Resources.env_name("jobs_queue_url"): queue_url,
               Resources.env_name("jobs_dlq_url"): dlq_url, Resources.env_name("jobs_bucket"): "jobs-files"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(handler, "_built", {})
        sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"type": "job", "tenant": "t", "id": "job_" + "0" * 32}))
        assert handler.handler({"source": "aws.events"}) == {"deadLetters": 1}
        event = {"Records": [{"messageId": "m1", "body": json.dumps({"type": "nonsense"}), "attributes": {}}]}
        assert handler.handler(event) == {"batchItemFailures": []}
        assert handler._built["worker"].router.settings.router.timeouts.buffered_deadline_s == \
            settings.jobs.worker_timeout_s - 10


def test_a_record_to_retry_comes_back_after_the_workers_backoff():
    assert handler._queue_url("arn:aws:sqs:eu-west-1:123456789012:llm-prod-jobs") == \
        "https://sqs.eu-west-1.amazonaws.com/123456789012/llm-prod-jobs"

    class Worker_:
        def process(self, message, receives):
            return 42.0

    sqs = mock.Mock()
    out = handler.records(Worker_(), [{"messageId": "m", "receiptHandle": "h", "body": "{}", "attributes": {},
                                       "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q"}], sqs)
    assert out == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    sqs.change_message_visibility.assert_called_once_with(
        QueueUrl="https://sqs.eu-west-1.amazonaws.com/123456789012/q", ReceiptHandle="h", VisibilityTimeout=42)


def test_line_keys_keep_tenants_apart():
    assert key("acme", "job", "job_1")[0] != key("beta", "job", "job_1")[0]
    assert line_key("acme", "batch_1", 3) == ("acme#batch#batch_1", "line#000003")


def test_deployed_the_official_sdk_runs_a_batch_on_dynamodb_sqs_and_s3(aws, fresh):
    """The router's app with the deployed parts (as in Lambda, on moto) and the worker's handler
    fed from the queue: files.create → batches.create → batches.retrieve → files.content."""
    import io

    import openai

    from llm_router.authorizer import key_hash
    from llm_router.http_app import KeyAuth, create_app
    from tests.conftest import running

    service, worker, sqs, queue_url, _ = aws
    app = create_app(service.router, KeyAuth({key_hash("sk-deployed"): "acme"}), jobs=service)
    with running(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-deployed", max_retries=0)
        lines = [{"custom_id": f"x{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": json.loads(ask(f"sdk deployed {i}"))} for i in range(4)]
        f = client.files.create(file=("in.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                                purpose="batch")
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        while deliver(sqs, queue_url, worker)[0]:
            pass
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed" and done.request_counts.completed == 4
        output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        assert [o["response"]["body"]["choices"][0]["message"]["content"] for o in output] == \
            [f"[{FAST}] answer to: sdk deployed {i}" for i in range(4)]


def test_a_router_whose_job_resources_are_missing_still_answers_chat_and_says_why_jobs_fail():
    """The Lambda app with jobs enabled (prod) but no JOBS_* environment: chat works, jobs are a 503."""
    import httpx

    from tests.test_router_adapters import GATEWAY, lambda_app  # noqa: F401 - the fixture, started here

    gen = lambda_app.__wrapped__()
    base, _, _ = next(gen)
    try:
        chat = httpx.post(f"{base}/v1/chat/completions", headers=GATEWAY, timeout=30,
                          json={"model": "fast", "messages": [{"role": "user", "content": "still here"}]})
        assert chat.status_code == 200
        job = httpx.post(f"{base}/v1/jobs", headers=GATEWAY, json=json.loads(ask("x")), timeout=30)
        assert job.status_code == 503 and job.json()["error"]["code"] == "jobs_unavailable"
    finally:
        gen.close()


def test_the_worker_imports_no_pulumi():
    import subprocess
    import sys

    from llm_blueprint import offline

    code = ("import sys, llm_router.jobs.handler, llm_router.jobs.wiring, llm_router.jobs.dynamo, "
            "llm_router.jobs.bedrock_batch, llm_router.jobs.http; "
            "sys.exit(any(m.split('.')[0] in ('pulumi', 'pulumi_aws', 'components', 'llm_blueprint') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=offline.PROJECT_DIR).returncode == 0


def test_large_requests_and_answers_live_in_the_blob_store_and_read_back_whole(fresh):
    service, worker, store, sent = parts(fresh)
    body = {"model": "embed", "input": [f"text {i}" for i in range(32)], "dimensions": 1024}
    job = service.submit("acme", json.dumps(body).encode())
    [message] = sent.take("job")
    worker.process(message, 1)
    row = store.get(key("acme", "job", job["id"]))
    assert row["result_blob"] == f"jobs/{job['id']}/result-1.json" and "result" not in row  # DynamoDB items ≤ 400 KB
    done = service.job("acme", job["id"])
    assert len(done["result"]["data"]) == 32 and all(len(d["embedding"]) == 1024 for d in done["result"]["data"])
    turns = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i} " + "word " * 600} for i in range(41)]
    long_prompt = json.dumps({"model": "fast", "temperature": 0.9, "messages": turns}).encode()  # budgets drop old turns
    big = service.submit("acme", long_prompt)
    assert store.get(key("acme", "job", big["id"]))["request_blob"] == f"jobs/{big['id']}/request.json"
    [message] = sent.take("job")
    worker.process(message, 1)
    assert service.job("acme", big["id"])["status"] == "succeeded"
