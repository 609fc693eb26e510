"""The router over HTTP with the real `openai` client: API shape, validation, tiering,
budgets, cache, faults and fallbacks — against a fake upstream model server."""

from __future__ import annotations

import dataclasses
import json
import time

import httpx
import openai
import pytest

from llm_blueprint.serve import build
from llm_router.timeouts import Timeouts
from tests.conftest import FAST, SMART, running, validated_config

KEY, OTHER_KEY = "sk-test-acme", "sk-test-globex"


class Metrics:
    def __init__(self):
        self.seen: list[tuple[str, float]] = []

    def add(self, name, value, unit="Count", dimensions=None):
        self.seen.append((name, value))

    def count(self, name):
        return sum(v for n, v in self.seen if n == name)


@pytest.fixture(scope="module")
def served(upstream, minilm):
    local = build(validated_config("dev"), upstream.url, {KEY: "acme", OTHER_KEY: "globex"}, embedder=minilm,
                  timeouts=Timeouts(lambda_timeout_s=30, integration_timeout_ms=30000, stream_deadline_s=3, buffered_deadline_s=3,
                                   connect_s=1, read_s=2))
    local.router.metrics = Metrics()
    local.router.cache.auditor = None  # audits pick hits at random and call the upstream (test_cache_audit.py)
    local.router.retry.base_s = 0.01
    with running(local.app) as base:
        yield local, f"{base}/v1"
    local.close()


@pytest.fixture
def client(served, upstream):
    upstream.modes.clear()
    upstream.calls.clear()
    for breaker in served[0].router.breakers.values():
        breaker.success()
    return openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0, timeout=10)


def create(client, content, **kw):
    kw.setdefault("temperature", 0)
    raw = client.chat.completions.with_raw_response.create(messages=[{"role": "user", "content": content}], **kw)
    return raw.parse(), raw.headers


def test_models_lists_auto_tiers_and_embeddings(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["auto", "fast", "smart", "embed"]


def test_completion_shape_usage_and_headers(client, upstream):
    resp, headers = create(client, "What is DNS? #shape", model="fast")
    assert resp.object == "chat.completion" and resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content.startswith(f"[{FAST}]")
    assert resp.usage.prompt_tokens == 11 and resp.usage.total_tokens == 18
    assert headers["x-llm-tier"] == "fast" and headers["x-llm-tier-reason"] == "requested"
    assert headers["x-llm-backend"] == "openai-compatible" and headers["x-llm-model"] == FAST
    assert headers["x-llm-cache"] == "miss" and headers["x-request-id"]


def test_auto_tiering_reads_the_prompt(client):
    _, simple = create(client, "What time zone is Lisbon in? #tier1", model="auto")
    _, hard = create(client, "Compare Postgres and DynamoDB for an order ledger, step by step. #tier2", model="auto")
    _, code = create(client, "Why does this fail?\n```python\nprint(1/0)\n```", model="auto")
    assert (simple["x-llm-tier"], simple["x-llm-tier-reason"]) == ("fast", "simple")
    assert hard["x-llm-tier"] == "smart" and hard["x-llm-tier-reason"].startswith("keyword:")
    assert (code["x-llm-tier"], code["x-llm-tier-reason"]) == ("smart", "code")


def test_exact_then_semantic_cache_hits_and_tenant_isolation(client, served, upstream):
    create(client, "How do I reset my password?", model="fast")
    n = len(upstream.calls)
    _, exact = create(client, "How do I reset my password?", model="fast")
    _, semantic = create(client, "How can I reset my password?", model="fast")
    assert exact["x-llm-cache"] == "exact" and semantic["x-llm-cache"] == "semantic"
    assert float(semantic["x-llm-cache-similarity"]) >= 0.9
    assert len(upstream.calls) == n  # neither reached the model
    other = openai.OpenAI(base_url=served[1], api_key=OTHER_KEY, max_retries=0)
    _, theirs = create(other, "How do I reset my password?", model="fast")
    assert theirs["x-llm-cache"] == "miss" and len(upstream.calls) == n + 1


def test_sampled_requests_get_exact_repeats_only(client, upstream):
    create(client, "Write a haiku about rain. #sampled", model="fast", temperature=1.0)
    _, again = create(client, "Write a haiku about rain. #sampled", model="fast", temperature=1.0)
    _, reworded = create(client, "Write a haiku about the rain. #sampled", model="fast", temperature=1.0)
    assert (again["x-llm-cache"], reworded["x-llm-cache"]) == ("exact", "miss")


def test_unauthenticated_is_401(served):
    bad = openai.OpenAI(base_url=served[1], api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize("payload,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b'{"model": "fast", "messages": []}', 400, "missing_messages"),
    (b'{"model": "fast"}', 400, "missing_messages"),
    (b'{"model": "fast", "messages": [{"role": "wizard", "content": "x"}]}', 400, "invalid_role"),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "temperature": 7}', 400, None),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400, None),
    (b'{"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, None),
    (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
    (b"[1, 2]", 400, "invalid_json"),
])
def test_bad_requests_get_4xx_with_an_openai_error_body(served, payload, status, code):
    r = httpx.post(f"{served[1]}/chat/completions", content=payload,
                   headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and "Traceback" not in r.text
    if code:
        assert err["code"] == code


def test_oversized_body_is_413(served):
    big = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 300_000}]}).encode()
    r = httpx.post(f"{served[1]}/chat/completions", content=big, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_max_tokens_above_budget_is_clamped(client, upstream):
    _, headers = create(client, "Tell me about clamps. #clamp", model="fast", max_tokens=5000)
    assert headers["x-llm-budget"] == "max_tokens" and upstream.calls[-1]["max_tokens"] == 800


def test_max_tokens_above_budget_rejected_when_configured(served):
    router = served[0].router
    clamp = router.settings
    router.settings = dataclasses.replace(clamp, router=dataclasses.replace(clamp.router, max_tokens_policy="reject"))
    try:
        r = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                       json={"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000})
        assert r.status_code == 400 and r.json()["error"]["code"] == "max_tokens_over_budget"
    finally:
        router.settings = clamp


def test_prompt_is_fitted_by_dropping_oldest_turns(client, upstream):
    history = []
    for i in range(40):
        history += [{"role": "user", "content": f"turn {i} " + "lorem ipsum dolor sit amet " * 40},
                    {"role": "assistant", "content": "noted " * 50}]
    messages = [{"role": "system", "content": "Be brief."}, *history, {"role": "user", "content": "Sum up. #fit"}]
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=messages, temperature=0)
    assert raw.headers["x-llm-budget"] == "prompt"
    sent = upstream.calls[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."} and sent[-1]["content"] == "Sum up. #fit"
    assert len(sent) < len(messages) and "turn 39" in json.dumps(sent) and "turn 0 " not in json.dumps(sent)


def test_last_turn_too_long_is_413(client):
    with pytest.raises(openai.APIStatusError) as e:
        create(client, "word " * 8000, model="fast")
    assert e.value.status_code == 413 and e.value.code == "context_length_exceeded"


def test_fallback_keeps_clients_whole_and_degraded_answers_uncached(client, served, upstream):
    upstream.modes[FAST] = "error"
    resp, headers = create(client, "Fallback please #fb", model="fast")
    assert resp.choices[0].message.content.startswith(f"[{SMART}]")
    assert headers["x-llm-fallback"] == "fast->smart" and headers["x-llm-model"] == SMART
    _, again = create(client, "Fallback please #fb", model="fast")
    assert again["x-llm-cache"] == "miss"  # a degraded answer is never cached
    assert served[0].router.metrics.count("Fallbacks") >= 2


def test_throttling_is_retried_honouring_retry_after(client, upstream, served):
    upstream.modes[FAST] = "throttle"
    upstream.throttle_times[FAST] = 1
    resp, headers = create(client, "Throttle once #thr", model="fast")
    assert resp.choices[0].message.content.startswith(f"[{FAST}]") and "x-llm-fallback" not in headers
    assert served[0].router.metrics.count("UpstreamThrottled") >= 1


def test_slow_upstream_falls_back_within_the_deadline(client, upstream):
    upstream.modes[FAST] = "slow"
    upstream.slow_s = 5.0
    started = time.monotonic()
    resp, headers = create(client, "Slow one #slow", model="fast")
    elapsed = time.monotonic() - started
    assert headers["x-llm-fallback"] == "fast->smart" and resp.choices[0].message.content.startswith(f"[{SMART}]")
    assert elapsed < 4.5  # bounded by the router's 3 s deadline, not the upstream's 5 s


def test_all_backends_failing_is_a_clean_5xx_then_the_circuit_opens(client, upstream, served):
    upstream.modes[FAST] = upstream.modes[SMART] = "error"
    statuses = []
    for i in range(6):
        with pytest.raises(openai.APIStatusError) as e:
            create(client, f"Everything is down {i}", model="fast")
        statuses.append(e.value.status_code)
        assert "Traceback" not in e.value.response.text
    assert statuses == [502] * 5 + [503]  # five failed requests open the tenant's breakers
    breakers = served[0].router.breakers
    assert breakers.state("fast", "acme") == "open" and breakers["fast"].state == "closed"
    other = openai.OpenAI(base_url=served[1], api_key=OTHER_KEY, max_retries=0)
    # The first tenant counts for at most 3 of the 5 failures: a second tenant must fail twice
    # before it is an outage, which opens the backend for everyone.
    for i, state in enumerate(("closed", "open")):
        with pytest.raises(openai.APIStatusError) as e:
            create(other, f"Everything is down for us too {i}", model="fast")
        assert e.value.status_code == 502 and breakers["fast"].state == state


def test_truncated_answers_are_not_cached(client, upstream):
    upstream.modes[FAST] = "truncate"
    _, first = create(client, "Cut me off #trunc", model="fast")
    upstream.modes[FAST] = "ok"
    _, second = create(client, "Cut me off #trunc", model="fast")
    assert first["x-llm-cache"] == second["x-llm-cache"] == "miss"
