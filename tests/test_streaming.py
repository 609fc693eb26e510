"""Streamed chat through `serve` with the real `openai` client: SSE exactly as OpenAI
sends it, no buffering, usage, cache replay, mid-stream failures, cancellation on
disconnect, fallback before the first byte."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from llm_blueprint.serve import build
from llm_router import metric_names as m
from llm_router.timeouts import Timeouts
from tests.conftest import FAST, SMART, running, validated_config

KEY = "sk-test-stream"


@pytest.fixture(scope="module")
def served(upstream, minilm):
    local = build(validated_config("dev"), upstream.url, {KEY: "acme"}, embedder=minilm,
                  timeouts=Timeouts(lambda_timeout_s=30, integration_timeout_ms=30000, stream_deadline_s=10, buffered_deadline_s=3,
                                   connect_s=1, read_s=2))
    local.router.retry.base_s = 0.01
    local.router.cache.auditor = None  # audits pick hits at random and call the upstream (test_cache_audit.py)
    with running(local.app) as base:
        yield local, f"{base}/v1"
    local.close()


@pytest.fixture
def client(served, upstream):
    upstream.modes.clear()
    upstream.drip_s = 0.2
    for breaker in served[0].router.breakers.values():
        breaker.success()
    return openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0, timeout=20)


def ask(content):
    return [{"role": "user", "content": content}]


def test_stream_is_openai_shaped_with_usage_only_when_asked(client):
    chunks = list(client.chat.completions.create(model="fast", messages=ask("Name three rivers #s1"), stream=True,
                                                 temperature=0, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[{FAST}] answer to: Name three rivers #s1"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.prompt_tokens == 11 and usage.usage.completion_tokens > 0
    plain = list(client.chat.completions.create(model="fast", messages=ask("Name three lakes #s1"), stream=True))
    assert all(c.usage is None and c.choices for c in plain)  # the router asked upstream for usage; the client did not


def test_chunks_reach_the_client_before_the_upstream_has_finished(client, upstream):
    upstream.modes[FAST] = "drip"
    upstream.drip_s = 0.3
    started = time.monotonic()
    arrivals = []
    stream = client.chat.completions.create(model="fast", messages=ask("one two three four five six #drip"),
                                            stream=True)
    for c in stream:
        if c.choices and c.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    # The fake sends a word every 0.3 s: a buffering proxy would deliver every word at the end.
    assert len(arrivals) >= 8
    assert arrivals[-1] - arrivals[0] >= 0.3 * (len(arrivals) - 2)


def test_a_streamed_answer_is_cached_and_replayed_as_a_stream(client, upstream):
    question = ask("How do I rotate an access key? #replay")
    first = client.chat.completions.with_raw_response.create(model="fast", messages=question, stream=True,
                                                              temperature=0)
    assert first.headers["x-llm-cache"] == "miss"
    original = "".join(c.choices[0].delta.content or "" for c in first.parse() if c.choices)
    calls = len(upstream.calls)
    again = client.chat.completions.with_raw_response.create(model="fast", messages=question, stream=True,
                                                              temperature=0, stream_options={"include_usage": True})
    assert again.headers["x-llm-cache"] == "exact" and again.headers["content-type"].startswith("text/event-stream")
    chunks = list(again.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == original
    assert chunks[-1].usage is not None
    buffered = client.chat.completions.with_raw_response.create(model="fast", messages=question, temperature=0)
    assert buffered.headers["x-llm-cache"] == "exact" and buffered.parse().choices[0].message.content == original
    assert len(upstream.calls) == calls  # neither reached the model


def test_a_stream_that_breaks_midway_ends_with_an_openai_error_and_is_not_cached(client, upstream, served):
    upstream.modes[FAST] = "break"
    before = served[0].router.metrics.count(m.STREAM_ERRORS)
    received = []
    with pytest.raises(openai.APIError) as e:
        for c in client.chat.completions.create(model="fast", messages=ask("alpha beta gamma delta #brk"),
                                                stream=True, temperature=0):
            received.append(c)
    assert received and "mid-stream" in str(e.value)
    assert served[0].router.metrics.count(m.STREAM_ERRORS) == before + 1
    upstream.modes[FAST] = "ok"
    again = client.chat.completions.with_raw_response.create(model="fast", messages=ask("alpha beta gamma delta #brk"),
                                                              stream=True, temperature=0)
    assert again.headers["x-llm-cache"] == "miss"  # the broken answer was never written
    list(again.parse())


def test_a_client_that_disconnects_cancels_the_upstream_request(served, upstream):
    upstream.modes[FAST] = "drip"
    upstream.drip_s = 0.2
    aborted = upstream.aborted
    metrics = served[0].router.metrics
    cancelled = metrics.count(m.STREAMS_CANCELLED)  # before: the relay may record the cancel at once
    body = {"model": "fast", "stream": True, "messages": ask(" ".join(["word"] * 60) + " #cancel")}
    with httpx.stream("POST", f"{served[1]}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {KEY}"}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        next(lines)
    deadline = time.monotonic() + 5  # the fake notices at its next write; the relay when its read fails
    while (upstream.aborted == aborted or metrics.count(m.STREAMS_CANCELLED) == cancelled) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.aborted == aborted + 1
    assert metrics.count(m.STREAMS_CANCELLED) == cancelled + 1


def test_fallback_happens_before_the_first_byte(client, upstream):
    upstream.modes[FAST] = "error"
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=ask("Fall back #sfb"), stream=True)
    assert raw.headers["x-llm-fallback"] == "fast->smart" and raw.headers["x-llm-model"] == SMART
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text.startswith(f"[{SMART}]")


def test_every_backend_failing_before_the_first_byte_is_a_plain_error_reply(client, upstream):
    upstream.modes[FAST] = upstream.modes[SMART] = "error"
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="fast", messages=ask("Nothing works #sdown"), stream=True)
    assert e.value.status_code == 502 and e.value.response.headers["content-type"] == "application/json"


def test_time_to_first_byte_is_measured_per_tier_and_backend(client, served):
    list(client.chat.completions.create(model="fast", messages=ask("Measure me #ttft"), stream=True))
    metrics = served[0].router.metrics
    assert metrics.count(m.TIME_TO_FIRST_TOKEN_MS) > 0
    assert any(k.startswith(f"{m.TIME_TO_FIRST_TOKEN_MS}|backend=openai-compatible|tier=fast")
               for k in metrics.values)


@pytest.mark.parametrize("extra,param", [
    ({"stream": "yes"}, "stream"),
    ({"stream": True, "stream_options": {"include_usage": True, "chunk_size": 4}}, "stream_options"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
])
def test_bad_stream_parameters_are_400s(served, extra, param):
    r = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "fast", "messages": ask("x"), **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_the_openapi_document_is_valid_and_lists_exactly_the_app_s_routes(served):
    from openapi_spec_validator import validate as validate_spec
    from starlette.routing import Route

    def unique(pairs):  # a repeated key is silently dropped by every JSON reader but one
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), keys
        return dict(pairs)

    doc = json.loads(httpx.get(f"{served[1].removesuffix('/v1')}/openapi.json").text, object_pairs_hook=unique)
    validate_spec(doc)
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert {p["name"] for p in chat["parameters"]} == {"Cache-Control", "x-llm-quality-sample"}
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routes = {(r.path, method) for r in served[0].app.routes if isinstance(r, Route)
              for method in r.methods - {"HEAD"}}
    assert documented == routes
