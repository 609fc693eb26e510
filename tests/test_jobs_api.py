"""The job API and the Batch API through `serve` (in-process store, queue and workers), with the
real `openai` client: batches end to end, jobs over HTTP, tiering/budgets/cache on jobs, tenant
isolation, cancellation, retries into the dead-letter queue, and bad input."""

from __future__ import annotations

import io
import json
import time

import httpx
import openai
import pytest

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from tests.conftest import running, validated_config

KEY_A, KEY_B = "sk-test-jobs-acme", "sk-test-jobs-beta"
FAST = "us.amazon.nova-lite-v1:0"
SMART = "us.anthropic.claude-sonnet-4-20250514-v1:0"


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def served(upstream, minilm):
    local = build(validated_config("dev"), upstream.url, {KEY_A: "acme", KEY_B: "beta"}, embedder=minilm,
                  job_options={"retry_base_s": 0.01, "visibility_s": 0.2})
    local.router.retry.base_s = 0.01
    with running(local.app) as base:
        yield local, base
    local.close()


@pytest.fixture
def base(served, upstream):
    upstream.modes.clear()
    upstream.slow_s = 3.0
    for breaker in served[0].router.breakers.values():
        breaker.success()
    return served[1]


def sdk(base: str, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=20)


def call(method: str, base: str, path: str, key: str = KEY_A, headers: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{base}{path}", headers={"authorization": f"Bearer {key}", **(headers or {})},
                         timeout=20, **kwargs)


def until(fn, done, timeout_s: float = 30.0):
    """Poll `fn` until `done(value)` (a wait, not a timing assertion)."""
    end = time.monotonic() + timeout_s
    while True:
        value = fn()
        if done(value) or time.monotonic() > end:
            return value
        time.sleep(0.02)


def chat_line(cid: str, content: str, model: str = "fast", url: str = "/v1/chat/completions", **body) -> dict:
    """A batch line; sampled hot, so answers are never served from the cache (unless a test asks)."""
    return {"custom_id": cid, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0.9, **body}}


def jsonl(lines: list) -> bytes:
    return "\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines).encode() + b"\n"


def upload(client: openai.OpenAI, lines: list):
    return client.files.create(file=("requests.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")


def finished_batch(client: openai.OpenAI, batch_id: str):
    return until(lambda: client.batches.retrieve(batch_id),
                 lambda b: b.status in ("completed", "failed", "expired", "cancelled"))


def finished_job(base: str, job_id: str, key: str = KEY_A) -> dict:
    return until(lambda: call("GET", base, f"/v1/jobs/{job_id}", key).json(),
                 lambda j: j.get("status") in ("succeeded", "failed", "cancelled"))


# ---------------------------------------------------------------- batches
def test_a_batch_with_the_official_sdk_from_upload_to_output_file(base):
    client = sdk(base)
    lines = [chat_line(f"req-{i}", f"Name river number {i}") for i in range(12)]
    f = upload(client, lines)
    assert (f.object, f.purpose, f.status, f.bytes) == ("file", "batch", "processed", len(jsonl(lines)))
    assert client.files.retrieve(f.id).id == f.id
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "rivers"})
    assert batch.status == "in_progress" and batch.request_counts.total == 12 and batch.metadata == {"job": "rivers"}
    done = finished_batch(client, batch.id)
    assert done.status == "completed" and done.error_file_id is None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (12, 12, 0)
    assert done.completed_at >= done.in_progress_at
    output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in output] == [f"req-{i}" for i in range(12)]
    for i, o in enumerate(output):
        assert o["error"] is None and o["response"]["status_code"] == 200
        assert o["response"]["body"]["choices"][0]["message"]["content"] == f"[{FAST}] answer to: Name river number {i}"
        assert o["id"].startswith("batch_req_") and o["response"]["request_id"] == o["id"]
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert batch.id in [b.id for b in client.batches.list(limit=100)]


def test_an_embeddings_batch_answers_like_the_embeddings_route(base):
    client = sdk(base)
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "embed", "input": ["x" * (i + 1)], "dimensions": 256}} for i in range(3)]
    batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    done = finished_batch(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 3
    bodies = [json.loads(line)["response"]["body"] for line in client.files.content(done.output_file_id).text.splitlines()]
    # The stand-in server's first value is the input's length; the router returns the requested size.
    assert [b["data"][0]["embedding"][0] for b in bodies] == [1.0, 2.0, 3.0]
    assert all(len(b["data"][0]["embedding"]) == 256 and b["object"] == "list" for b in bodies)


def test_failed_requests_go_to_the_error_file_with_exact_counts(base, upstream):
    client = sdk(base)
    lines = [chat_line("ok-1", "fine"), chat_line("missing-model", "x", model="no-such-tier"), chat_line("ok-2", "fine too")]
    # An unknown model is refused at upload (line 2), as everything the route would refuse.
    with pytest.raises(openai.BadRequestError) as bad:
        upload(client, lines)
    assert "line 2" in bad.value.body["message"] and "no-such-tier" in bad.value.body["message"]
    upstream.modes[SMART] = upstream.modes[FAST] = "error"
    lines = [chat_line("doomed", "this one fails")]
    batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = finished_batch(client, batch.id)
    assert done.status == "completed" and done.output_file_id is None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 1)
    [err] = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert err["custom_id"] == "doomed" and err["response"]["status_code"] in (502, 503)
    assert "gave up after 3 attempt(s)" in err["response"]["body"]["error"]["message"]


# ------------------------------------------------------------------- jobs
def test_a_job_answers_202_at_once_and_later_the_same_json_a_synchronous_call_returns(base):
    body = {"model": "fast", "messages": [{"role": "user", "content": "Summarise the report #job1"}], "temperature": 0.9}
    r = call("POST", base, "/v1/jobs", json=body)
    assert r.status_code == 202
    queued = r.json()
    assert queued["status"] == "queued" and queued["object"] == "job" and queued["id"].startswith("job_")
    assert r.headers["location"] == f"/v1/jobs/{queued['id']}"
    assert queued["result"] is None and queued["endpoint"] == "/v1/chat/completions"
    done = finished_job(base, queued["id"])
    assert done["status"] == "succeeded" and done["status_code"] == 200 and done["attempts"] == 1
    assert done["started_at"] >= done["created_at"] and done["finished_at"] >= done["started_at"]
    sync = call("POST", base, "/v1/chat/completions", json=body).json()
    assert done["result"]["choices"] == sync["choices"] and done["result"]["object"] == "chat.completion"
    assert done["route"]["x-llm-tier"] == "fast" and done["route"]["x-llm-model"] == FAST


def test_an_embeddings_job(base):
    r = call("POST", base, "/v1/jobs", json={"model": "embed", "input": ["abcd", "ef"], "dimensions": 256})
    done = finished_job(base, r.json()["id"])
    assert done["endpoint"] == "/v1/embeddings" and done["status"] == "succeeded"
    assert [d["embedding"][0] for d in done["result"]["data"]] == [4.0, 2.0]


def test_tiering_budgets_and_the_cache_apply_to_jobs(base):
    code = {"model": "auto", "max_tokens": 50_000, "temperature": 0,
            "messages": [{"role": "user", "content": "Why does this fail?\n```python\nprint(1/0)\n```"}]}
    first = finished_job(base, call("POST", base, "/v1/jobs", json=code).json()["id"])
    route = first["route"]
    assert route["x-llm-tier"] == "smart" and route["x-llm-tier-reason"] == "code"
    assert route["x-llm-budget"] == "max_tokens" and route["x-llm-cache"] == "miss"
    again = finished_job(base, call("POST", base, "/v1/jobs", json=code).json()["id"])
    assert again["route"]["x-llm-cache"] == "exact" and again["result"]["choices"] == first["result"]["choices"]


def test_another_tenant_sees_nothing_and_gets_404s(base):
    client_a, client_b = sdk(base, KEY_A), sdk(base, KEY_B)
    job = call("POST", base, "/v1/jobs", json={"model": "fast", "messages": [{"role": "user", "content": "secret"}]}).json()
    f = upload(client_a, [chat_line("a1", "private")])
    batch = client_a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    finished_batch(client_a, batch.id)
    for method, path in (("GET", f"/v1/jobs/{job['id']}"), ("POST", f"/v1/jobs/{job['id']}/cancel"),
                         ("GET", f"/v1/files/{f.id}"), ("GET", f"/v1/files/{f.id}/content"),
                         ("GET", f"/v1/batches/{batch.id}"), ("POST", f"/v1/batches/{batch.id}/cancel")):
        r = call(method, base, path, KEY_B)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"].endswith("_not_found") and "secret" not in r.text
    with pytest.raises(openai.NotFoundError) as e:
        client_b.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.body["param"] == "input_file_id"
    assert batch.id not in [b.id for b in client_b.batches.list()]
    assert call("GET", base, f"/v1/jobs/{job['id']}", KEY_A).status_code == 200


def test_no_key_no_jobs(base):
    r = httpx.post(f"{base}/v1/jobs", json={"model": "fast", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


# ------------------------------------------------------------------ cancel
def test_cancelling_a_running_job_drops_its_answer(base, upstream, served):
    upstream.modes[FAST] = "slow"
    upstream.slow_s = 1.0
    job = call("POST", base, "/v1/jobs", json={"model": "fast", "messages": [{"role": "user", "content": "slow"}]}).json()
    until(lambda: call("GET", base, f"/v1/jobs/{job['id']}").json(), lambda j: j["status"] == "running")
    cancelled = call("POST", base, f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert served[0].jobs.queue.wait_idle(10)  # the worker has come back from the slow upstream
    after = call("GET", base, f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "cancelled" and after["result"] is None and after["cancelled_at"]
    assert call("POST", base, f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"  # idempotent


def test_a_finished_job_cannot_be_cancelled(base):
    job = call("POST", base, "/v1/jobs", json={"model": "fast", "messages": [{"role": "user", "content": "quick"}]}).json()
    finished_job(base, job["id"])
    r = call("POST", base, f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_cancellable"


def test_cancelling_a_batch_keeps_what_finished_and_skips_the_rest(base, upstream):
    client = sdk(base)
    upstream.modes[FAST] = "slow"
    upstream.slow_s = 0.3
    lines = [chat_line(f"c{i}", f"slow question {i}") for i in range(40)]
    batch = client.batches.create(input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    until(lambda: client.batches.retrieve(batch.id), lambda b: b.request_counts.completed > 0)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = finished_batch(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at
    counts = done.request_counts
    assert 0 < counts.completed < 40 and counts.failed == 0
    output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    skipped = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert len(output) == counts.completed and len(output) + len(skipped) == 40
    assert {s["error"]["code"] for s in skipped} == {"batch_cancelled"} and all(s["response"] is None for s in skipped)
    assert sorted(o["custom_id"] for o in output + skipped) == sorted(f"c{i}" for i in range(40))
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(finished_batch(client, client.batches.create(
            input_file_id=upload(client, [chat_line("z", "z", model="smart")]).id, endpoint="/v1/chat/completions",
            completion_window="24h").id).id)


# -------------------------------------------------- retries, dead letters
def test_a_failing_backend_is_retried_then_the_job_fails_with_its_reason_and_the_message_is_dead_lettered(base, upstream,
                                                                                                         served):
    upstream.modes[FAST] = upstream.modes[SMART] = "error"
    queue = served[0].jobs.queue
    dead_before = len(queue.dead)
    job = call("POST", base, "/v1/jobs", json={"model": "fast", "messages": [{"role": "user", "content": "doomed"}]}).json()
    done = finished_job(base, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 3 and done["status_code"] in (502, 503)
    assert done["error"]["message"].startswith("gave up after 3 attempt(s)")
    assert queue.wait_idle(10)
    assert [m for m in queue.dead[dead_before:] if m.get("id") == job["id"]]


# --------------------------------------------------------------- bad input
def bad_upload(base: str, content: bytes, purpose: str = "batch") -> httpx.Response:
    return call("POST", base, "/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": purpose})


@pytest.mark.parametrize("content,status,words", [
    (jsonl([chat_line("a", "x"), "{not json", chat_line("c", "x")]), 400, ["line 2", "not valid JSON"]),
    (jsonl([chat_line("a", "x"), chat_line("b", "x"), chat_line("a", "y")]), 400,
     ["line 3", "custom_id 'a'", "line 1"]),
    (jsonl([chat_line("a", "x"), {"custom_id": "b", "method": "GET", "url": "/v1/chat/completions", "body": {}}]), 400,
     ["line 2", "method must be POST"]),
    (jsonl([{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}]), 400, ["line 1", "url"]),
    (jsonl([chat_line("a", "x", stream=True)]), 400, ["line 1", "stream"]),
    (jsonl([chat_line("a", "x", max_tokens=-3)]), 400, ["line 1", "max_tokens"]),
    (b"\n\n", 400, ["no requests"]),
])
def test_bad_files_are_refused_with_the_line_and_nothing_is_stored(base, served, content, status, words):
    store = served[0].jobs.parts.store
    files_before = len(store.scan("file", 10_000))
    r = bad_upload(base, content)
    assert r.status_code == status
    error = r.json()["error"]
    assert all(w in error["message"] for w in words), error
    assert error["type"] == "invalid_request_error"
    assert len(store.scan("file", 10_000)) == files_before


def test_a_file_needs_purpose_batch_and_fits_the_size_cap(base, served):
    r = bad_upload(base, jsonl([chat_line("a", "x")]), purpose="fine-tune")
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    cap = served[0].router.settings.jobs.max_file_bytes
    r = bad_upload(base, b"x" * (cap + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    r = call("POST", base, "/v1/files", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]


def test_a_line_whose_url_differs_from_the_batch_endpoint_is_refused_and_no_batch_starts(base, served):
    client = sdk(base)
    lines = [chat_line("a", "x"), {"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                                   "body": {"model": "embed", "input": "x"}}]
    f = upload(client, lines)
    before = (len(served[0].jobs.parts.store.scan("batch", 10_000)), served[0].jobs.queue.deliveries)
    for endpoint, line, url in (("/v1/chat/completions", 2, "/v1/embeddings"), ("/v1/embeddings", 1, "/v1/chat/completions")):
        with pytest.raises(openai.BadRequestError) as e:
            client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
        assert e.value.body["code"] == "mismatched_endpoint"
        assert f"line {line} of {f.id} has url '{url}'" in e.value.body["message"]
    assert (len(served[0].jobs.parts.store.scan("batch", 10_000)), served[0].jobs.queue.deliveries) == before


@pytest.mark.parametrize("body,param", [
    ({"input_file_id": "file-" + "0" * 32, "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ({"input_file_id": "nonsense", "endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ({"input_file_id": "file-" + "0" * 32, "endpoint": "/v1/responses", "completion_window": "24h"}, "endpoint"),
    ({"input_file_id": "file-" + "0" * 32, "endpoint": "/v1/chat/completions", "completion_window": "7d"},
     "completion_window"),
])
def test_bad_batch_requests(base, body, param):
    r = call("POST", base, "/v1/batches", json=body)
    assert r.status_code in (400, 404) and r.json()["error"]["param"] == param


@pytest.mark.parametrize("path", ["/v1/jobs/job_" + "0" * 32, "/v1/jobs/not-a-job", "/v1/batches/batch_" + "1" * 32,
                                  "/v1/files/file-" + "2" * 32 + "/content"])
def test_unknown_ids_are_404s_with_an_openai_error(base, path):
    r = call("GET", base, path)
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("body,code", [
    ({"model": "fast"}, "unknown_job_kind"),
    ({"model": "fast", "messages": [{"role": "user", "content": "x"}], "input": "y"}, "unknown_job_kind"),
    ({"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": True}, None),
    ({"model": "no-such", "messages": [{"role": "user", "content": "x"}]}, "model_not_found"),
    ({"model": "embed", "input": []}, None),
])
def test_bad_jobs_are_refused_before_anything_is_queued(base, served, body, code):
    deliveries = served[0].jobs.queue.deliveries
    jobs_before = len(served[0].jobs.parts.store.scan("job", 10_000))
    r = call("POST", base, "/v1/jobs", json=body)
    assert r.status_code in (400, 404)
    assert code is None or r.json()["error"]["code"] == code
    assert len(served[0].jobs.parts.store.scan("job", 10_000)) == jobs_before
    assert served[0].jobs.queue.deliveries == deliveries
