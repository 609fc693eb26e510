"""The response cache against a real Valkey + search module and the real MiniLM embedder."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid

import pytest
import valkey

from llm_router import metric_names as m
from llm_router.cache import ResponseCache, Scope, near_miss
from llm_router.cache.ft_subset import violations
from llm_router.cache.store import connect, why_not_cacheable
from llm_router.settings import CacheTtl
from tests.conftest import cache_settings


class Recorder(valkey.Valkey):
    """A client that remembers every command it sends (FT.* and the rest)."""

    sent: list = []

    def execute_command(self, *args, **kwargs):
        Recorder.sent.append(args)
        return super().execute_command(*args, **kwargs)


def answer(text="Use the reset link on the sign-in page.", finish="stop"):
    return {"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}


def ask(text, system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": text}]


P = {"temperature": 0}


@pytest.fixture
def make_cache(valkey_server, minilm):
    metrics: list[tuple[str, float]] = []

    def make(embedder=minilm, **settings):
        client = Recorder(port=valkey_server.port)
        cache = ResponseCache(client, embedder, cache_settings(**settings), prefix=f"t{uuid.uuid4().hex[:8]}",
                              on_metric=lambda n, v: metrics.append((n, v)))
        assert cache.ensure_index()
        return cache

    make.metrics = metrics
    return make


def put(cache, scope, text, params=P, response=None, system=None):
    state = cache.lookup(scope, ask(text, system), params)
    assert state.hit is None
    assert cache.store(state, params, response or answer())


def test_exact_hit_then_semantic_paraphrase_hit(make_cache):
    cache, scope = make_cache(), Scope("acme", "fast")
    put(cache, scope, "How do I reset my password?")
    exact = cache.lookup(scope, ask("How do I  reset my password?"), P).hit  # whitespace normalised
    assert exact.layer == "exact" and exact.response["choices"][0]["message"]["content"].startswith("Use the reset")
    semantic = cache.lookup(scope, ask("How can I reset my password?"), P).hit
    assert semantic.layer == "semantic" and semantic.similarity >= 0.9
    assert cache.lookup(scope, ask("What is the capital of Australia?"), P).hit is None


def test_knn_reply_carries_no_answers_and_an_entry_gone_since_the_search_is_a_miss(make_cache):
    cache, scope = make_cache(), Scope("acme", "fast")
    put(cache, scope, "How do I reset my password?", response=answer("x" * 20_000))
    Recorder.sent.clear()
    found = cache.candidates(cache.lookup(scope, ask("How can I reset my password?"), P))
    search = [c for c in Recorder.sent if c[0] == "FT.SEARCH"][-1]
    assert "resp" not in search and found[0].question == "How do I reset my password?"
    search_only = cache.candidates
    cache.candidates = lambda state: [cache.client.delete(c.key) and c for c in search_only(state)]  # expires now
    assert cache.lookup(scope, ask("How can I reset my password?"), P).hit is None
    assert ("CacheFailOpen", 1) not in make_cache.metrics


def test_answer_changing_parameters_change_both_keys(make_cache):
    """An answer cut at 100 tokens is not the answer to a request that allows 500, whether the
    question repeats word for word (exact layer) or is a paraphrase (semantic layer)."""
    cache, scope = make_cache(), Scope("acme", "fast")
    short = {"temperature": 0, "max_tokens": 100}
    put(cache, scope, "How do I reset my password?", params=short)
    for params in ({"temperature": 0, "max_tokens": 500}, {"temperature": 0, "max_tokens": 100, "stop": ["\n"]},
                   {"temperature": 0, "max_tokens": 100, "seed": 7}, {"temperature": 0}):
        assert cache.lookup(scope, ask("How do I reset my password?"), params).hit is None, params
        assert cache.lookup(scope, ask("How can I reset my password?"), params).hit is None, params
    same = cache.lookup(scope, ask("How can I reset my password?"), {"temperature": 0.2, "max_tokens": 100}).hit
    assert same.layer == "semantic"  # sampling settings change the wording, not what was asked


def test_oversized_answers_and_overlong_questions_stay_out_of_the_cache(make_cache):
    from llm_router.cache.verifier import DEFAULT

    cache, scope = make_cache(max_entry_bytes=4096, verifier=dataclasses.replace(DEFAULT, max_chars=200)), Scope("acme", "fast")
    state = cache.lookup(scope, ask("How do I reset my password?"), P)
    assert not cache.store(state, P, answer("x" * 5000))
    assert ("CacheEntryTooLarge", 1) in make_cache.metrics
    assert cache.lookup(scope, ask("How do I reset my password?"), P).hit is None
    long_q = "How do I reset my password? " + "Some context about my account. " * 10
    put(cache, scope, long_q)
    assert cache.lookup(scope, ask(long_q), P).hit.layer == "exact"  # the exact layer still serves it
    asked = cache.lookup(scope, ask(long_q.replace("How do I", "How can I")), P)
    assert asked.hit is None and asked.vector is None  # over the cap: not embedded, not served semantically


@pytest.mark.parametrize("stored,asked,reason", [
    ("How do I enable MFA on my account?", "How do I disable MFA on my account?", "opposite"),
    ("How long do I cook a 13 pound turkey?", "How long do I cook a 14 pound turkey?", "number"),
    ("What happened in the markets on March 3?", "What happened in the markets on April 3?", "date"),
    ("What are the best flights to Paris?", "What are the best flights to London?", "content"),
    ("Why can I log in to the VPN?", "Why can't I log in to the VPN?", "negation"),
    ("How do I increase the Lambda timeout?", "How do I decrease the Lambda timeout?", "opposite"),
    ("How do I lock my screen on a Mac?", "How do I unlock my screen on a Mac?", "opposite"),
    ("What is the best way to make money online?", "What is the latest way to make money online?", "content"),
    ("What is the fastest way to lose weight?", "What is the fastest way to lose weight safely?", "content"),
    ("What are the differences between Android and iOS?",
     "What are the differences between Android and iOS? What are their similarities?", "compound"),
])
def test_near_misses_are_never_served(make_cache, stored, asked, reason):
    assert near_miss(asked, stored) == reason
    cache, scope = make_cache(similarity_threshold=0.7), Scope("acme", "fast")
    put(cache, scope, stored)
    [top, *_] = cache.candidates(cache.lookup(scope, ask(asked), P))
    assert top[1] == stored and top[0] >= 0.7  # the embedder does think they are alike …
    assert cache.lookup(scope, ask(asked), P).hit is None  # … and the guard still refuses
    assert ("CacheGuardRejected", 1) in make_cache.metrics


def test_paraphrases_pass_the_guards():
    for a, b in [("How do I reset my password?", "How can I reset my password?"),
                 ("What is the best way to learn Python?", "What's the best way to learn Python?"),
                 ("How do I get more followers on Instagram?", "How can I get more Instagram followers?"),
                 # a short follow-up is not a second question; a cached answer to more than was asked serves
                 ("What were the best movies of 2016? Why?", "Which movies were the best in 2016?"),
                 ("What are the perks of an IAS officer?", "What are the perks of an IAS officer? What do they earn?")]:
        assert near_miss(a, b) is None, (a, b)


def test_tenants_never_see_each_others_entries(make_cache):
    cache = make_cache()
    put(cache, Scope("acme", "fast"), "What is our refund policy?", response=answer("ACME: 30 days."))
    other = Scope("globex", "fast")
    assert cache.lookup(other, ask("What is our refund policy?"), P).hit is None  # exact layer
    assert cache.lookup(other, ask("What's our refund policy?"), P).hit is None  # semantic layer
    assert cache.candidates(cache.lookup(other, ask("What is our refund policy?"), P)) == []
    put(cache, other, "What is our refund policy?", response=answer("Globex: 14 days."))
    hit = cache.lookup(other, ask("What is our refund policy?"), P).hit
    assert hit.response["choices"][0]["message"]["content"] == "Globex: 14 days."


def content(hit):
    return hit.response["choices"][0]["message"]["content"]


def test_scopes_beyond_the_index_budget_share_one_filtered_index_and_stay_isolated(make_cache, valkey_server, minilm):
    cache = make_cache(dedicated_indexes=2)
    tenants = ["acme", "globex", "initech", "umbrella"]
    for t in tenants:
        put(cache, Scope(t, "fast"), "What is our refund policy?", response=answer(f"{t}: refunds"))
    s = cache.layout
    ours = sorted(x.decode() for x in cache.client.execute_command("FT._LIST") if x.decode().startswith(s.prefix))
    assert len(ours) == 3 and s.shared_index in ours  # two dedicated + the shared one, whatever the tenant count
    assert [n for n, _ in make_cache.metrics].count(m.CACHE_SHARED_STORE) == 2
    assert [cache.client.hexists(s.routes_key, Scope(t, "fast").key) for t in tenants] == [True, True, False, False]
    # Another router process (empty memory) finds every scope where the first one put it.
    other = ResponseCache(valkey.Valkey(port=valkey_server.port), minilm, cache.settings, prefix=s.prefix)
    for t in tenants:
        hit = other.lookup(Scope(t, "fast"), ask("What's our refund policy?"), P).hit
        assert hit.layer == "semantic" and content(hit) == f"{t}: refunds"
    # On the shared index the scope filter is the wall between tenants.
    assert other.lookup(Scope("initech", "smart"), ask("What's our refund policy?"), P).hit is None
    put(other, Scope("hooli", "fast"), "How do I export my data?")
    assert [c.question for c in other.candidates(other.lookup(Scope("umbrella", "fast"), ask("How do I export data?"),
                                                               P))] == ["What is our refund policy?"]


def test_a_scope_the_engine_refuses_an_index_for_goes_to_the_shared_index(make_cache):
    class CappedAtShared(Recorder):  # the engine's index cap, reached by someone else
        def execute_command(self, *args, **kwargs):
            if args[0] == "FT.CREATE" and not str(args[1]).endswith("_shared"):
                raise valkey.ResponseError("Index limit reached")
            return super().execute_command(*args, **kwargs)

    cache = make_cache()
    cache.client = CappedAtShared(port=cache.client.connection_pool.connection_kwargs["port"])
    cache._route_script = cache.client.register_script(cache._route_script.script)
    put(cache, Scope("acme", "fast"), "How do I rotate keys?")
    assert cache.index_for(Scope("acme", "fast")) == cache.layout.shared_index
    assert cache.client.hget(cache.layout.routes_key, "#dedicated") == b"0"  # the slot is given back
    assert cache.lookup(Scope("acme", "fast"), ask("How can I rotate keys?"), P).hit.layer == "semantic"


def test_a_starting_router_reclaims_the_slots_of_scopes_with_no_entries_left(make_cache, valkey_server, minilm):
    cache = make_cache(dedicated_indexes=2)
    s = cache.layout
    put(cache, Scope("acme", "fast"), "How do I rotate keys?")
    put(cache, Scope("globex", "fast"), "How do I rotate keys?")
    put(cache, Scope("initech", "fast"), "How do I rotate keys?")  # no slot left: shared
    assert cache.invalidate("acme") == 2  # acme's entries are gone (expiry does the same)
    restarted = ResponseCache(valkey.Valkey(port=valkey_server.port), minilm, cache.settings, prefix=s.prefix)
    assert restarted.ensure_index()
    names = {x.decode() for x in restarted.client.execute_command("FT._LIST")}
    assert s.dedicated_index(Scope("acme", "fast")) not in names  # empty: slot given back
    assert s.dedicated_index(Scope("globex", "fast")) in names  # live: kept
    # acme comes back through the router process that still remembers creating its index:
    # it takes the free slot and creates the index again (else its entries would be unindexed)
    assert cache.lookup(Scope("acme", "fast"), ask("How can I rotate keys?"), P).hit is None
    put(cache, Scope("acme", "fast"), "How do I rotate keys?")
    assert cache.client.hget(s.routes_key, "#dedicated") == b"2"
    assert cache.client.hexists(s.routes_key, Scope("acme", "fast").key)
    hit = cache.lookup(Scope("acme", "fast"), ask("How can I rotate keys?"), P).hit
    assert hit.layer == "semantic"


def test_start_up_drops_only_this_prefix_s_indexes_of_other_versions(make_cache):
    cache = make_cache()
    s, c = cache.layout, cache.client
    stale, foreign = f"{s.prefix}_v3_bedrock_titan_v2_d512_abc", f"x{s.prefix}_v3_other_d8_abc"
    for name in (stale, foreign):
        c.execute_command("FT.CREATE", name, "ON", "HASH", "PREFIX", "1", f"{name}:", "SCHEMA", "ts", "NUMERIC")
    put(cache, Scope("acme", "fast"), "How do I rotate keys?")
    assert ResponseCache(c, cache.embedder, cache.settings, prefix=s.prefix).ensure_index()  # a new router process starts
    names = {x.decode() for x in c.execute_command("FT._LIST")}
    assert stale not in names and foreign in names and s.shared_index in names
    assert s.dedicated_index(Scope("acme", "fast")) in names  # the current version's are kept
    c.execute_command("FT.DROPINDEX", foreign)


def test_tier_and_system_prompt_scope_entries(make_cache):
    cache = make_cache()
    put(cache, Scope("acme", "fast", "You are terse."), "Explain DNS.", system="You are terse.")
    assert cache.lookup(Scope("acme", "smart", "You are terse."), ask("Explain DNS.", "You are terse."), P).hit is None
    assert cache.lookup(Scope("acme", "fast", "You are a pirate."), ask("Explain DNS.", "You are a pirate."),
                        P).hit is None
    assert cache.lookup(Scope("acme", "fast", "You are terse."), ask("Explain DNS.", "You are terse."), P).hit


def test_multi_turn_requests_use_the_exact_layer_only(make_cache):
    cache, scope = make_cache(), Scope("acme", "fast")
    convo = [{"role": "user", "content": "Pick a colour."}, {"role": "assistant", "content": "Blue."},
             {"role": "user", "content": "Why that one?"}]
    state = cache.lookup(scope, convo, P)
    assert state.text is None and cache.store(state, P, answer("Because."))
    assert cache.lookup(scope, convo, P).hit.layer == "exact"
    assert cache.lookup(scope, ask("Why that one?"), P).hit is None


def test_ttl_per_tier(make_cache, valkey_server):
    cache = make_cache(ttl=CacheTtl(default_seconds=3600, tiers={"smart": 120}))
    for tier in ("fast", "smart"):
        put(cache, Scope("acme", tier), f"Tell me about {tier} things")
    client = valkey.Valkey(port=valkey_server.port)
    ttls = {}
    for key in client.scan_iter(f"{cache.layout.prefix}x:*"):
        ttls[client.ttl(key)] = key
    assert any(3590 <= t <= 3600 for t in ttls) and any(110 <= t <= 120 for t in ttls)


def test_invalidation_by_scope(make_cache):
    cache = make_cache()
    put(cache, Scope("acme", "fast"), "What is the SLA?")
    put(cache, Scope("acme", "smart"), "What is the SLA?")
    put(cache, Scope("globex", "fast"), "What is the SLA?")
    assert cache.invalidate("acme", tier="fast") == 2  # exact entry + semantic entry
    assert cache.lookup(Scope("acme", "fast"), ask("What is the SLA?"), P).hit is None
    assert cache.lookup(Scope("acme", "smart"), ask("What is the SLA?"), P).hit
    assert cache.invalidate("acme") == 2
    assert cache.lookup(Scope("globex", "fast"), ask("What is the SLA?"), P).hit


@pytest.mark.parametrize("response,reason", [
    ({"error": {"message": "boom"}}, "error"),
    (answer("I'm sorry, but I can't help with that."), "refusal"),
    (answer("partial", finish="length"), "truncated"),
    (answer("x", finish="content_filter"), "refusal"),
])
def test_never_caches_errors_refusals_or_truncated_answers(make_cache, response, reason):
    assert why_not_cacheable(response) == reason
    cache, scope = make_cache(), Scope("acme", "fast")
    state = cache.lookup(scope, ask("Q?"), P)
    assert cache.store(state, P, response) is False
    assert cache.lookup(scope, ask("Q?"), P).hit is None


def test_n_above_one_is_never_cached(make_cache):
    cache, scope, params = make_cache(), Scope("acme", "fast"), {"temperature": 0, "n": 2}
    state = cache.lookup(scope, ask("Q?"), params)
    assert state.outcome == "bypass" and cache.store(state, params, answer()) is False


def test_degraded_answers_are_not_cached(make_cache):
    cache, scope = make_cache(), Scope("acme", "fast")
    state = cache.lookup(scope, ask("Status?"), P)
    assert cache.store(state, P, answer(), degraded=True) is False
    assert cache.lookup(scope, ask("Status?"), P).hit is None


class FakeEmbedder:
    name = "fake"

    def __init__(self, dimensions):
        self.dimensions = dimensions

    def embed(self, texts):
        return [[1.0] + [0.0] * (self.dimensions - 1) for _ in texts]


def test_index_is_idempotent_and_a_dimension_change_gets_a_new_index(make_cache, valkey_server):
    cache = make_cache()
    assert cache.ensure_index() and cache.ensure_index()
    small = ResponseCache(valkey.Valkey(port=valkey_server.port), FakeEmbedder(8),
                          cache.settings, prefix=cache.layout.prefix)
    assert small.ensure_index()
    assert small.layout.index_name != cache.layout.index_name
    put(cache, Scope("acme", "fast"), "How do I rotate keys?")
    put(small, Scope("acme", "fast"), "How do I rotate certificates?")
    assert cache.lookup(Scope("acme", "fast"), ask("How can I rotate keys?"), P).hit.layer == "semantic"
    # Each index answers with its own entries only: no mixed dimensions in one index.
    hit = small.lookup(Scope("acme", "fast"), ask("How do I rotate certificates now?"), P).hit
    assert hit.layer == "semantic" and [c[1] for c in small.candidates(
        small.lookup(Scope("acme", "fast"), ask("x"), P))] == ["How do I rotate certificates?"]


def test_every_ft_command_sent_is_in_the_common_subset(make_cache):
    Recorder.sent.clear()
    cache = make_cache()
    put(cache, Scope("acme", "fast"), "How do I reset my password?")
    cache.lookup(Scope("acme", "fast"), ask("How can I reset my password?"), P)
    cache.lookup(Scope("t-ü ber:x", "fast", "sys {weird} | prompt"), ask("Odd scope?"), P)
    shared = make_cache(dedicated_indexes=0)  # every scope on the shared index: filtered queries
    put(shared, Scope("t-ü ber:x", "fast", "sys {weird} | prompt"), "How do I reset my password?")
    assert shared.lookup(Scope("t-ü ber:x", "fast", "sys {weird} | prompt"), ask("How can I reset my password?"), P).hit
    ft = [a for a in Recorder.sent if str(a[0]).upper().startswith("FT.")]
    assert any("@scope:" in str(a[2]) for a in ft if a[0] == "FT.SEARCH")
    assert {str(a[0]).upper() for a in ft} == {"FT._LIST", "FT.CREATE", "FT.SEARCH"}
    for args in ft:
        assert violations(args) == [], args


@pytest.mark.parametrize("args,problem", [
    (["FT.CREATE", "i", "ON", "HASH", "SCHEMA", "q", "TEXT"], "field type TEXT"),
    (["FT.CREATE", "{i}", "ON", "HASH", "SCHEMA", "t", "TAG"], "hashtag in index name"),
    (["FT.SEARCH", "i", "@vec:[VECTOR_RANGE 0.2 $v]=>[KNN 1 @vec $v]", "PARAMS", "2", "v", b"x", "DIALECT", "2"],
     "VECTOR_RANGE"),
    (["FT.SEARCH", "i", "*=>[KNN 1 @vec $v AS d]", "PARAMS", "2", "v", b"x", "SORTBY", "d", "DIALECT", "2"], "SORTBY"),
    (["FT.SEARCH", "i", "*=>[KNN 1 @vec $v AS d]", "PARAMS", "2", "v", b"x"], "missing DIALECT 2"),
    (["FT.SEARCH", "i", "*=>[KNN 1 @vec $v]", "PARAMS", "4", "v", b"x", "k", "3", "DIALECT", "2"],
     "PARAMS entry k not used in the query"),
    (["FT.SEARCH", "i", "(@t:{Acme-Corp})=>[KNN 1 @vec $v]", "PARAMS", "2", "v", b"x", "DIALECT", "2"],
     "tag value 'Acme-Corp' outside [a-z0-9_]"),
    (["FT.SEARCH", "i", "@t:{a}", "DIALECT", "2"], "query without a KNN clause"),
    (["FT.AGGREGATE", "i", "*"], "FT.AGGREGATE is not in the common subset"),
])
def test_subset_checker_catches_what_elasticache_rejects(args, problem):
    assert any(v.startswith(problem) for v in violations(args)), violations(args)


def test_fails_open_when_valkey_is_unreachable(minilm):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    metrics = []
    cache = ResponseCache(connect("127.0.0.1", port, timeout_ms=50), minilm, cache_settings(timeout_ms=50),
                          on_metric=lambda n, v: metrics.append(n))
    assert cache.ensure_index() is False
    state = cache.lookup(Scope("acme", "fast"), ask("Anything?"), P)
    assert state.hit is None
    assert cache.store(state, P, answer()) is False
    assert metrics.count(m.CACHE_FAIL_OPEN) == 3


def test_fails_open_within_the_time_budget_when_valkey_hangs(minilm):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def accept():  # accepts and never answers: a stalled node
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    metrics = []
    cache = ResponseCache(connect("127.0.0.1", listener.getsockname()[1], timeout_ms=50), minilm,
                          cache_settings(timeout_ms=50), on_metric=lambda n, v: metrics.append(n))
    started = time.monotonic()
    state = cache.lookup(Scope("acme", "fast"), ask("Anything?"), P)
    elapsed = time.monotonic() - started
    stop.set()
    listener.close()
    assert state.hit is None and m.CACHE_FAIL_OPEN in metrics
    assert elapsed < 1.0  # bounded by the 50 ms budget, not hanging


def test_image_and_tool_call_content_is_part_of_the_key(make_cache):
    cache, scope = make_cache(), Scope("acme", "fast")
    with_image = lambda url: [{"role": "user", "content": [  # noqa: E731
        {"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]}]
    state = cache.lookup(scope, with_image("https://img.example/cat.png"), P)
    assert state.text is None  # never matched semantically
    assert cache.store(state, P, answer("A cat."))
    assert cache.lookup(scope, with_image("https://img.example/cat.png"), P).hit.layer == "exact"
    assert cache.lookup(scope, with_image("https://img.example/dog.png"), P).hit is None
    call = lambda name: [{"role": "user", "content": "Weather?"},  # noqa: E731
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "1", "type": "function", "function": {"name": name, "arguments": "{}"}}]},
                         {"role": "tool", "tool_call_id": "1", "content": "sunny"}]
    state = cache.lookup(scope, call("weather_paris"), P)
    assert cache.store(state, P, answer("Sunny in Paris."))
    assert cache.lookup(scope, call("weather_oslo"), P).hit is None
