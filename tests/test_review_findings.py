"""Defects found by an adversarial review of the front door, security and reliability work,
each reproduced with the real `openai` client (or raw HTTP) against `serve` under uvicorn."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import FAST, serve_uncached

KEY = "sk-review-a"


@pytest.fixture(scope="module")
def served(upstream):
    with serve_uncached(upstream.url, {KEY: "acme"}) as (local, base):
        yield local, base


@pytest.fixture
def client(served, upstream):
    upstream.modes.clear()
    for breaker in served[0].router.breakers.values():
        breaker.success()
    return openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0, timeout=20)


def ask(content):
    return [{"role": "user", "content": content}]


def test_tool_definitions_count_against_the_tiers_prompt_budget(client, upstream):
    """The `fast` tier allows 6,000 prompt tokens; a tool whose description alone is ~40,000
    tokens went to the model (and past the daily token quota's reservation) unchecked."""
    tools = [{"type": "function", "function": {"name": "lookup", "description": "word " * 40_000,
                                               "parameters": {"type": "object", "properties": {}}}}]
    calls = len(upstream.calls)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="fast", messages=ask("hi #tools-budget"), tools=tools)
    assert e.value.status_code == 413 and e.value.code == "context_length_exceeded"
    assert len(upstream.calls) == calls
    small = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    assert client.chat.completions.create(model="fast", messages=ask("hi #tools-small"), tools=small).choices


def test_a_stream_gets_its_usage_chunk_even_when_the_upstream_sends_none(client, upstream):
    """`stream_options.include_usage` promises a usage chunk; servers that ignore the option
    (no usage from upstream) left the client without one."""
    upstream.modes[FAST] = "no-usage"
    chunks = list(client.chat.completions.create(model="fast", messages=ask("count these words #nousage"),
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model="fast", messages=ask("and no usage asked #nousage"),
                                                stream=True))
    assert all(c.usage is None and c.choices for c in plain)


@pytest.fixture(scope="module")
def limited(upstream):
    """`serve` with its Valkey and a key whose own daily token quota applies."""
    from llm_blueprint.serve import build
    from tests.conftest import running, short_deadlines, validated_config

    entries = {KEY: {"tenant": "acme", "id": "key-quota", "limits": {"tokensPerDay": 1_000_000}}}
    local = build(validated_config("dev"), upstream.url, entries, semantic=False, timeouts=short_deadlines())
    with running(local.app) as base:
        yield local, f"{base}/v1"
    local.close()


def test_a_stream_the_client_abandons_still_counts_the_tokens_it_used(limited, upstream):
    """Reading a streamed answer and hanging up before its end refunded the whole daily-quota
    reservation: a client could stream without limit by never waiting for `[DONE]`."""
    import time

    import httpx

    from llm_router import metric_names as m
    from llm_router.authorizer import Principal

    local, base = limited
    upstream.modes.clear()
    upstream.modes[FAST] = "drip"
    upstream.drip_s = 0.1
    metrics, cancelled = local.router.metrics, local.router.metrics.count(m.STREAMS_CANCELLED)
    body = {"model": "fast", "stream": True, "temperature": 0,
            "messages": ask(" ".join(f"w{i}" for i in range(60)) + " #quota-cancel")}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {KEY}"}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        received = [line for line, _ in zip(lines, range(12)) if line.startswith("data: ")]
    assert len(received) >= 5
    deadline = time.monotonic() + 5
    while metrics.count(m.STREAMS_CANCELLED) == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.count(m.STREAMS_CANCELLED) == cancelled + 1
    time.sleep(0.2)  # the relay settles the reservation as it ends
    used = local.router.limiter.usage(Principal("acme", "key-quota"))["key"]["tokensToday"]
    assert used >= 11, used  # at least the prompt the model read, not a full refund


def test_the_request_id_is_api_gateways_and_never_an_unbounded_client_string(served, upstream):
    """Deployed, the router's answers and logs took the client's `x-request-id` (any length) and
    read API Gateway's id from a header nothing sets, so a 500's request id never matched the
    access log's and a client could pick (or bloat) the id that names its requests in the logs."""
    import httpx

    from llm_router.http_app import GatewayAuth, create_app
    from tests.conftest import running

    upstream.modes.clear()
    body = {"model": "fast", "messages": ask("hi #rid")}
    auth = {"authorization": f"Bearer {KEY}"}
    plain = httpx.post(f"{served[1]}/chat/completions", json=body, headers={**auth, "x-request-id": "trace-42.a"})
    assert plain.status_code == 200 and plain.headers["x-request-id"] == "trace-42.a"  # a sane id is kept
    huge = httpx.post(f"{served[1]}/chat/completions", json=body, headers={**auth, "x-request-id": "A" * 5000})
    assert huge.status_code == 200 and 0 < len(huge.headers["x-request-id"]) <= 128
    odd = httpx.post(f"{served[1]}/chat/completions", json=body, headers={**auth, "x-request-id": "a b{}<>"})
    assert odd.status_code == 200 and odd.headers["x-request-id"] != "a b{}<>"

    gateway = create_app(served[0].router, GatewayAuth())
    context = {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
               "authorizer": {"tenant": "acme", "keyId": "key-gw", "principalId": "key-gw"}}
    with running(gateway) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json=body,
                       headers={"x-amzn-request-context": json.dumps(context), "x-request-id": "chosen-by-client"})
        refused = httpx.post(f"{base}/v1/chat/completions", json=body,
                             headers={"x-amzn-request-context": json.dumps({"requestId": "r-401"})})
    assert r.status_code == 200 and r.headers["x-request-id"] == context["requestId"]
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "r-401"


def _live_stream():
    """A streamed answer as Bedrock (Claude thinking) or vLLM send it: reasoning, then content with logprobs."""
    from llm_router import sse

    lp = lambda token: {"content": [{"token": token, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}  # noqa: E731
    chunks = [sse.chunk("c1", 7, "m", {"role": "assistant", "content": ""}),
              sse.chunk("c1", 7, "m", {"reasoning_content": "The user wants "}),
              sse.chunk("c1", 7, "m", {"reasoning_content": "a colour."}),
              {**sse.chunk("c1", 7, "m", {"content": "Blue"}), "choices": [
                  {"index": 0, "delta": {"content": "Blue"}, "finish_reason": None, "logprobs": lp("Blue")}]},
              {**sse.chunk("c1", 7, "m", {"content": "."}), "choices": [
                  {"index": 0, "delta": {"content": "."}, "finish_reason": None, "logprobs": lp(".")}]},
              sse.chunk("c1", 7, "m", {}, "stop")]
    return chunks


def _seen(chunks):
    out = {"reasoning": "", "content": "", "tokens": []}
    for c in chunks:
        for choice in c.get("choices") or []:
            delta = choice.get("delta") or {}
            out["reasoning"] += delta.get("reasoning_content") or ""
            out["content"] += delta.get("content") or ""
            out["tokens"] += [t["token"] for t in ((choice.get("logprobs") or {}).get("content") or [])]
    return out


def test_a_cached_stream_replays_the_reasoning_and_logprobs_the_live_one_had():
    """A streamed answer went to the cache without its reasoning (Claude thinking on Bedrock,
    vLLM's reasoning parsers) or logprobs, and a replayed hit dropped both: the cached answer
    differed from the live one."""
    from llm_router import sse

    live = _live_stream()
    answer = sse.Assembler()
    for c in live:
        answer.add(c)
    stored = answer.completion({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    message = stored["choices"][0]["message"]
    assert message["content"] == "Blue." and message["reasoning_content"] == "The user wants a colour."
    assert [t["token"] for t in stored["choices"][0]["logprobs"]["content"]] == ["Blue", "."]
    assert _seen(sse.replay(stored, False)) == _seen(live)
    plain = sse.Assembler()
    for c in [sse.chunk("c2", 7, "m", {"content": "Hi"}), sse.chunk("c2", 7, "m", {}, "stop")]:
        plain.add(c)
    plain_stored = plain.completion({})
    assert "reasoning_content" not in plain_stored["choices"][0]["message"]
    assert plain_stored["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("method,path", [("POST", "/chat/completions/"), ("GET", "/models/"),
                                         ("POST", "/embeddings/")])
def test_a_path_with_a_trailing_slash_is_an_openai_404_not_a_redirect(served, method, path):
    """A trailing slash got a 307 with an empty body to `http://<Host>/v1/…`: deployed, that
    Location drops the stage (`/live`) and the client lands on API Gateway's 403."""
    import httpx

    r = httpx.request(method, f"{served[1]}{path}", headers={"authorization": f"Bearer {KEY}"},
                      json={"model": "fast", "messages": ask("x")} if method == "POST" else None)
    assert r.status_code == 404 and "location" not in r.headers
    assert r.json()["error"]["code"] == "not_found" and path in r.json()["error"]["message"]


def test_an_embeddings_upstream_answering_nonsense_is_a_502_not_a_500(client, upstream, served):
    """A 200 from the embeddings upstream whose vectors were not lists of numbers crashed the
    handler (a 500 with the request id, and the backend's breaker never heard of it)."""
    upstream.modes["amazon.titan-embed-text-v2:0"] = "garbage"
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as e:
            client.embeddings.create(model="embed", input=["one", "two"])
        assert e.value.status_code == 502 and e.value.code == "upstream_error"
    upstream.modes.clear()
    assert len(client.embeddings.create(model="embed", input="fine again").data[0].embedding) == 1024


def test_an_upstream_answering_json_that_is_not_an_object_falls_back_instead_of_a_500(client, upstream):
    """A chat upstream answering 200 with a JSON array (a wrong URL, a proxy's error page in JSON)
    crashed the request into a 500 instead of counting as that backend's failure."""
    from tests.conftest import SMART

    upstream.modes[FAST] = "not-object"
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=ask("shape #notobject"))
    assert raw.headers["x-llm-fallback"] == "fast->smart"
    assert raw.parse().choices[0].message.content.startswith(f"[{SMART}]")


def test_a_stream_whose_first_event_is_not_an_object_falls_back_before_the_first_byte(client, upstream):
    """It became a 200 stream holding only an error event (and a logged traceback) instead of a
    failure of that backend before the first byte, where the fallback can still answer."""
    from tests.conftest import SMART

    upstream.modes[FAST] = "not-object"
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=ask("shape #notobject-s"),
                                                            stream=True)
    assert raw.headers["x-llm-fallback"] == "fast->smart"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text.startswith(f"[{SMART}]")


@pytest.mark.parametrize("headers", [{"x-padding": "a" * 40_000}, {f"x-h{i}": "1" for i in range(5_000)}])
def test_oversized_request_headers_are_a_431_before_anything_runs(served, upstream, headers):
    """httptools (serve's HTTP parser) puts no bound on headers: a 5 MB header or 100,000 headers
    were served a 200. Deployed, API Gateway caps them at 10 KB; the app now refuses more than
    32 KiB itself, before the key is checked or the body read."""
    import httpx

    calls = len(upstream.calls)
    r = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}", **headers},
                   json={"model": "fast", "messages": ask("hi #headers")})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    assert len(upstream.calls) == calls


def test_one_tenants_poison_plus_one_blip_of_another_does_not_open_the_backend_for_everyone(upstream):
    """Tenant A's five poison requests counted five failures on the backend's shared breaker;
    one failed request of tenant B then made "two tenants" and opened it: every tenant was
    pushed off the tier for 30 s (here to the fallback; a tier without one answers 503)."""
    from tests.conftest import SMART

    keys = {"sk-poison-a": "tenant-a", "sk-blip-b": "tenant-b", "sk-bystander-c": "tenant-c"}
    with serve_uncached(upstream.url, keys) as (local, base):
        upstream.modes.clear()
        a, b, c = (openai.OpenAI(base_url=base, api_key=k, max_retries=0, timeout=10) for k in keys)
        for i in range(5):
            with pytest.raises(openai.InternalServerError):
                a.chat.completions.create(model="fast", messages=ask(f"poison #fail-500 {i}"), temperature=0)
        upstream.modes[FAST] = "error"  # one blip, seen by B alone (the fallback answers it)
        blip = b.chat.completions.with_raw_response.create(model="fast", messages=ask("blip"), temperature=0)
        assert blip.headers["x-llm-fallback"] == "fast->smart"
        upstream.modes.clear()
        served = c.chat.completions.with_raw_response.create(model="fast", messages=ask("bystander"), temperature=0)
        assert "x-llm-fallback" not in served.headers, "tenant C was turned away from fast"
        assert served.parse().model != SMART and local.router.breakers["fast"].state == "closed"
        assert local.router.breakers.state("fast", "tenant-a") == "open"  # A is still held back


def test_a_job_runs_under_the_limits_of_the_key_that_submitted_it(limited, upstream):
    """Jobs ran as the key "-" with the stack's per-key limits: a key's own quota did not see the
    tokens its jobs used, and every key of a tenant shared one bucket for them."""
    import time

    import httpx

    from llm_router.authorizer import Principal

    local, base = limited
    upstream.modes.clear()
    auth = {"authorization": f"Bearer {KEY}"}
    before = local.router.limiter.usage(Principal("acme", "key-quota"))["key"]["tokensToday"]
    job = httpx.post(f"{base}/jobs", headers=auth, timeout=10, json={
        "model": "fast", "temperature": 0, "messages": ask("count my job's tokens against my key #job-key")}).json()
    deadline = time.monotonic() + 10
    while (state := httpx.get(f"{base}/jobs/{job['id']}", headers=auth).json())["status"] != "succeeded":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    used = local.router.limiter.usage(Principal("acme", "key-quota"))["key"]["tokensToday"] - before
    assert used >= state["result"]["usage"]["total_tokens"] > 0
    assert local.router.limiter.usage(Principal("acme", "-"))["key"]["tokensToday"] == 0


@pytest.mark.parametrize("extra, param", [
    ({"seed": "42"}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"),
    ({"user": ["a", ["b"]]}, "user"), ({"user": "u" * 300}, "user"),
])
def test_seed_and_user_are_checked_before_any_backend_sees_them(served, upstream, extra, param):
    """`seed` and `user` went to the model server unchecked (nested lists included): its answer
    decided what the client saw, and Bedrock dropped them silently."""
    import httpx

    calls = len(upstream.calls)
    r = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "fast", "messages": ask("x #seed-user"), **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert len(upstream.calls) == calls
