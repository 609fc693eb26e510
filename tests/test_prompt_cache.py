"""Provider prompt caching: cache points in the Converse request (botocore's Stubber validates each
request against the pinned service model), `cached_tokens` in the OpenAI usage, buffered and
streamed, through the router over HTTP with the real `openai` client from Bedrock (a local
Converse endpoint) and passed through from an OpenAI-compatible upstream; its cost and metrics."""

from __future__ import annotations

import dataclasses
import json

import openai
import pytest
from openai.types.chat import ChatCompletion

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router import bedrock_map as bm
from llm_router import metric_names as m
from llm_router.authorizer import key_hash
from llm_router.http_app import KeyAuth, create_app
from llm_router.observability import MemoryMetrics
from llm_router.prompt_cache import CACHE_POINT, cost_usd, mark, support
from llm_router.router import Router
from llm_router.settings import Price, PromptCacheSettings, Resources
from llm_router.wiring import backends
from tests.conftest import router_settings_of, running, validated_config
from tests.fake_bedrock import FakeBedrock
from tests.test_bedrock_map import CLAUDE4, LLAMA, NOVA, WEATHER, Stubbed, chat, events, reply, text, user

ON = PromptCacheSettings(system=True, tools=True)
#: About 1,500 tokens of stable instructions: above the 1,024-token minimum of Claude Sonnet 4 and Nova.
POLICY = " ".join(f"Rule {i}: answer questions about the travel policy politely and cite the section." for i in range(110))
LONG_TOOL = {"type": "function", "function": {**WEATHER["function"], "description": POLICY}}


def system(text_: str) -> dict:
    return {"role": "system", "content": text_}


def usage(read: int = 0, write: int = 0, fresh: int = 30, out: int = 7) -> dict:
    u = {"inputTokens": fresh, "outputTokens": out, "totalTokens": fresh + read + write + out}
    if read:
        u["cacheReadInputTokens"] = read
    if write:
        u["cacheWriteInputTokens"] = write
    return u


def test_claude_gets_cache_points_after_long_tools_and_system_prompt_and_reports_cached_tokens():
    s = Stubbed(CLAUDE4)
    s.backend.prompt_cache = ON
    answer = {**reply({"text": "Section 4.2."}), "usage": usage(read=3100)}
    out = s.complete(chat(system(POLICY), user("Can I fly business?"), tools=[LONG_TOOL]), answer)
    sent = s.sent[0]
    assert sent["toolConfig"]["tools"][-1] == CACHE_POINT and "toolSpec" in sent["toolConfig"]["tools"][0]
    assert sent["system"] == [{"text": POLICY}, CACHE_POINT]
    assert "cachePoint" not in json.dumps(sent["messages"])  # the question itself is not a stable prefix
    parsed = ChatCompletion.model_validate(out).usage
    assert (parsed.prompt_tokens, parsed.prompt_tokens_details.cached_tokens) == (3130, 3100)
    assert parsed.total_tokens == 3137


def test_nova_takes_no_cache_point_among_its_tools():
    s = Stubbed(NOVA)
    s.backend.prompt_cache = ON
    s.complete(chat(system(POLICY), user("Can I fly business?"), tools=[LONG_TOOL]), reply({"text": "No."}))
    sent = s.sent[0]
    assert CACHE_POINT not in sent["toolConfig"]["tools"] and sent["system"][-1] == CACHE_POINT


@pytest.mark.parametrize("model,settings,body", [
    (CLAUDE4, ON, chat(system("Be brief."), user("Hi"))),  # below the model's minimum: nothing to cache
    (CLAUDE4, PromptCacheSettings(system=False, tools=False), chat(system(POLICY), user("Hi"))),  # the tier said no
    (CLAUDE4, None, chat(system(POLICY), user("Hi"))),  # a backend built without the setting
    (LLAMA, ON, chat(system(POLICY), user("Hi"))),  # no prompt caching on this model
])
def test_no_cache_point_where_it_would_not_cache(model, settings, body):
    request = mark(bm.converse_request(body, model), model, settings)
    assert "cachePoint" not in json.dumps(request)


def test_each_cached_segment_needs_the_minimum_on_its_own():
    """Tools long enough get their own mark; a short system prompt after them does not."""
    request = mark(bm.converse_request(chat(system("Be brief."), user("Hi"), tools=[LONG_TOOL]), CLAUDE4), CLAUDE4, ON)
    assert request["toolConfig"]["tools"][-1] == CACHE_POINT and CACHE_POINT not in request["system"]
    # Short tools and a long system prompt: one mark, after the system prompt, covering both.
    request = mark(bm.converse_request(chat(system(POLICY), user("Hi"), tools=[WEATHER]), CLAUDE4), CLAUDE4, ON)
    assert CACHE_POINT not in request["toolConfig"]["tools"] and request["system"][-1] == CACHE_POINT
    assert support("arn:aws:bedrock:us-east-1:1:provisioned-model/abc") is None  # an opaque ARN: no marks


def test_streamed_usage_counts_cache_reads_and_writes():
    chunks = list(bm.stream_chunks(events(text(0, "Hi")), CLAUDE4, "c", 1, True))
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    evs = events(text(0, "Hi"))
    evs[-1]["metadata"]["usage"] = usage(read=2000, write=500, fresh=12, out=4)
    last = list(bm.stream_chunks(evs, CLAUDE4, "c", 1, True))[-1]["usage"]
    assert last == {"prompt_tokens": 2512, "completion_tokens": 4, "total_tokens": 2516,
                    "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 500}}


def test_cost_bills_cache_reads_and_writes_at_their_prices():
    claude = Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3, cache_write_per_mtok=3.75)
    u = {"prompt_tokens": 3000, "completion_tokens": 100,
         "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 500}}
    cost, saved = cost_usd(claude, u)
    assert cost == pytest.approx((500 * 3.0 + 2000 * 0.3 + 500 * 3.75 + 100 * 15.0) / 1e6)
    assert saved == pytest.approx((2000 * 2.7 - 500 * 0.75) / 1e6)
    unpriced = dataclasses.replace(claude, cached_input_per_mtok=None, cache_write_per_mtok=None)
    assert cost_usd(unpriced, u) == (pytest.approx((3000 * 3.0 + 100 * 15.0) / 1e6), 0.0)


# ----------------------------------------------------------------------------------- over HTTP

KEY = "sk-test-prompt-cache"


@pytest.fixture
def bedrock_router(monkeypatch):
    """The router wired as in Lambda (its Bedrock backends from the stack's settings), every call
    going to a local Converse endpoint."""
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        for k, v in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(k, v)
        settings = router_settings_of("dev")
        metrics = MemoryMetrics()
        router = Router(settings, backends(settings, Resources.from_environment({"AWS_REGION": "us-east-1"})), None, metrics)
        with running(create_app(router, KeyAuth({key_hash(KEY): "acme"}))) as base:
            yield fake, openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=10), metrics


def test_bedrock_tier_marks_the_prefix_and_the_client_sees_cached_tokens(bedrock_router):
    fake, client, metrics = bedrock_router
    fake.replies.append({**reply({"text": "Economy, per section 4."}), "usage": usage(read=1600)})
    resp = client.chat.completions.create(model="smart", messages=[system(POLICY), user("Can I fly business?")],
                                          temperature=0)
    assert resp.usage.prompt_tokens == 1630 and resp.usage.prompt_tokens_details.cached_tokens == 1600
    op, model, sent = fake.calls[0]
    assert op == "converse" and sent["system"][-1] == CACHE_POINT
    assert metrics.count(m.PROMPT_TOKENS_CACHED) == 1600
    # The dev stack prices Claude's cache reads at 0.30 / MTok against 3.00 for input.
    assert metrics.count(m.PROMPT_CACHE_SAVINGS_USD) == pytest.approx(1600 * 2.7 / 1e6)
    assert metrics.count(m.ESTIMATED_COST_USD) == pytest.approx((30 * 3.0 + 1600 * 0.3 + 7 * 15.0) / 1e6)

    fake.replies.append(events(text(0, "Economy."), tokens=(30, 2)))
    fake.replies[-1][-1]["metadata"]["usage"] = usage(read=1600, out=2)
    stream = client.chat.completions.create(model="smart", messages=[system(POLICY), user("And to Tokyo?")],
                                            stream=True, stream_options={"include_usage": True})
    last = [c for c in stream][-1]
    assert last.usage.prompt_tokens_details.cached_tokens == 1600 and fake.calls[1][0] == "converse-stream"
    assert fake.calls[1][2]["system"][-1] == CACHE_POINT


def test_cached_tokens_from_an_openai_compatible_upstream_pass_through():
    with FakeUpstream() as upstream:
        upstream.cached_tokens = 8
        local = build(validated_config("dev"), upstream.url, {KEY: "acme"}, cache=False)
        with running(local.app) as base:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=10)
            resp = client.chat.completions.create(model="fast", messages=[user("Hi")])
            stream = client.chat.completions.create(model="fast", messages=[user("Hi again")], stream=True,
                                                    stream_options={"include_usage": True})
            last = [c for c in stream][-1]
    assert resp.usage.prompt_tokens_details.cached_tokens == 8 and last.usage.prompt_tokens_details.cached_tokens == 8
    assert local.router.metrics.count(m.PROMPT_TOKENS_CACHED) == 16
