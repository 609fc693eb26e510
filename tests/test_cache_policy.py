"""When the cache is read and written: `cacheWhen` per stack and tier, the temperature, and the
client's Cache-Control — the rule (`llm_router/cache/policy.py`), the store on a real Valkey with
MiniLM, and the router over HTTP with the real `openai` client."""

from __future__ import annotations

import dataclasses

import openai
import pytest

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router.cache import Scope
from llm_router.cache.policy import BOTH, EXACT, NONE, decide, directives
from llm_router.settings import CacheWhenSettings
from tests.conftest import running, validated_config
from tests.test_cache import answer, ask, make_cache  # noqa: F401  (fixture)

ONLY_EXACT = frozenset({EXACT})


@pytest.mark.parametrize("params,when,header,read,write", [
    ({"temperature": 0}, "repeats", None, BOTH, BOTH),
    ({}, "repeats", None, ONLY_EXACT, ONLY_EXACT),  # the SDK's default temperature: exact repeats only
    ({"temperature": 1.0}, "repeats", None, ONLY_EXACT, ONLY_EXACT),
    ({"temperature": 0.3}, "repeats", None, BOTH, BOTH),  # at the limit: deterministic
    ({}, "always", None, BOTH, BOTH),
    ({}, "deterministic", None, NONE, NONE),
    ({"temperature": 0}, "deterministic", None, BOTH, BOTH),
    ({"temperature": 0}, "never", None, NONE, NONE),
    ({"temperature": 0}, "repeats", "no-cache", NONE, BOTH),
    ({}, "repeats", "No-Cache", NONE, ONLY_EXACT),
    ({"temperature": 0}, "always", "no-store", NONE, NONE),
    ({"temperature": 0}, "repeats", "max-age=0, no-store", NONE, NONE),
    ({"temperature": 0, "n": 2}, "always", None, NONE, NONE),
])
def test_one_rule_decides_the_layers(params, when, header, read, write):
    use = decide(params, when, 0.3, header)
    assert (use.read, use.write) == (read, write)
    assert use.bypass == (not read)


def test_cache_control_directives_are_parsed_case_and_argument_blind():
    assert directives(" No-Store , max-age=0") == {"no-store", "max-age"}
    assert directives(None) == directives("") == frozenset()


def _policy(cache_when: str, **tiers: str) -> dict:
    return {"cache_when": CacheWhenSettings(default=cache_when, tiers=dict(tiers))}


def test_default_temperature_repeats_are_served_exactly_never_semantically(make_cache):  # noqa: F811
    cache, scope, sampled = make_cache(**_policy("repeats")), Scope("acme", "fast"), {}
    state = cache.lookup(scope, ask("Write a haiku about rain"), sampled)
    assert state.outcome == "miss" and cache.store(state, sampled, answer("Rain on the roof"))
    again = cache.lookup(scope, ask("Write a haiku about rain"), sampled)
    assert again.outcome == "exact"
    assert cache.lookup(scope, ask("Write a haiku about the rain"), sampled).outcome == "miss"
    # A sampled answer never reaches the semantic index, so a deterministic paraphrase misses too.
    assert cache.lookup(scope, ask("Write a haiku about the rain"), {"temperature": 0}).outcome == "miss"


def test_always_serves_sampled_paraphrases_and_tiers_override_the_stack(make_cache):  # noqa: F811
    cache = make_cache(**_policy("repeats", smart="always", creative="never"))
    for tier in ("smart", "fast", "creative"):
        state = cache.lookup(Scope("acme", tier), ask("How do I reset my password?"), {})
        cache.store(state, {}, answer())
    outcomes = {tier: cache.lookup(Scope("acme", tier), ask("How can I reset my password?"), {}).outcome
                for tier in ("smart", "fast", "creative")}
    assert outcomes == {"smart": "semantic", "fast": "miss", "creative": "bypass"}


def test_deterministic_bypasses_sampled_requests(make_cache):  # noqa: F811
    cache, scope = make_cache(**_policy("deterministic")), Scope("acme", "fast")
    state = cache.lookup(scope, ask("Q?"), {"temperature": 0.9})
    assert state.outcome == "bypass" and not cache.store(state, {"temperature": 0.9}, answer())
    assert ("CacheBypass", 1) in make_cache.metrics
    assert cache.lookup(scope, ask("Q?"), {"temperature": 0.9}).outcome == "bypass"


def test_no_cache_refreshes_the_entry_and_no_store_leaves_it_alone(make_cache):  # noqa: F811
    cache, scope, p = make_cache(), Scope("acme", "fast"), {"temperature": 0}
    cache.store(cache.lookup(scope, ask("Status?"), p), p, answer("old"))
    fresh = cache.lookup(scope, ask("Status?"), p, "no-cache")
    assert fresh.outcome == "bypass" and cache.store(fresh, p, answer("new"))
    hit = cache.lookup(scope, ask("Status?"), p).hit
    assert hit.response["choices"][0]["message"]["content"] == "new"
    private = cache.lookup(scope, ask("Status?"), p, "no-store")
    assert private.outcome == "bypass" and not cache.store(private, p, answer("secret"))
    assert cache.lookup(scope, ask("Status?"), p).hit.response["choices"][0]["message"]["content"] == "new"


# ------------------------------------------------------------------------------------ over HTTP

KEY = "sk-test-policy"


@pytest.fixture(scope="module")
def served(minilm):
    with FakeUpstream() as upstream:
        cfg = validated_config("dev")
        local = build(cfg, upstream.url, {KEY: "acme"}, embedder=minilm)
        local.router.cache.auditor = None  # audits pick hits at random and call the upstream (test_cache_audit.py)
        with running(local.app) as base:
            yield local, openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=10), upstream
        local.close()


def create(client, content, **kw):
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": content}], **kw)
    return raw.parse(), raw.headers


def test_an_ordinary_sdk_call_repeated_is_served_from_the_cache(served):
    _, client, upstream = served
    first, h1 = create(client, "What is a VPN, in one line? #default-temp")  # no temperature: the SDK default
    calls = len(upstream.calls)
    again, h2 = create(client, "What is a VPN, in one line? #default-temp")
    assert (h1["x-llm-cache"], h2["x-llm-cache"]) == ("miss", "exact")
    assert len(upstream.calls) == calls and again.choices[0].message.content == first.choices[0].message.content
    streamed = client.chat.completions.create(model="fast", stream=True,
                                              messages=[{"role": "user", "content": "What is a VPN, in one line? #default-temp"}])
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == first.choices[0].message.content
    assert len(upstream.calls) == calls
    _, paraphrase = create(client, "What's a VPN, in one line? #default-temp")
    assert paraphrase["x-llm-cache"] == "miss"  # sampled: no semantic hit under the default `repeats`


def test_no_cache_and_no_store_headers_through_the_sdk(served):
    local, client, upstream = served
    create(client, "Where is the office? #headers", temperature=0)
    calls = len(upstream.calls)
    _, fresh = create(client, "Where is the office? #headers", temperature=0,
                      extra_headers={"Cache-Control": "no-cache"})
    assert fresh["x-llm-cache"] == "bypass" and len(upstream.calls) == calls + 1
    _, private = create(client, "Where is the office now? #headers-private", temperature=0,
                        extra_headers={"Cache-Control": "no-store"})
    assert private["x-llm-cache"] == "bypass"
    _, later = create(client, "Where is the office now? #headers-private", temperature=0)
    assert later["x-llm-cache"] == "miss" and len(upstream.calls) == calls + 3  # no-store wrote nothing
    _, cached = create(client, "Where is the office? #headers", temperature=0)
    assert cached["x-llm-cache"] == "exact" and len(upstream.calls) == calls + 3


def test_a_tier_set_to_never_bypasses_the_cache(served):
    local, client, upstream = served
    settings = local.router.cache.settings
    local.router.cache.settings = dataclasses.replace(
        settings, cache_when=CacheWhenSettings(default="repeats", tiers={"fast": "never"}))
    try:
        calls = len(upstream.calls)
        for _ in range(2):
            _, headers = create(client, "Hello there #never", temperature=0)
            assert headers["x-llm-cache"] == "bypass"
        assert len(upstream.calls) == calls + 2
    finally:
        local.router.cache.settings = settings
