"""The grey band: a model asked "same question?" for a candidate just below the threshold that the
verifier passes — on a real Valkey with MiniLM, with a scripted judge (a stand-in model cannot
judge); then over HTTP with the stand-in model server answering as the judge tier."""

from __future__ import annotations

import dataclasses
import threading
import time

import openai
import pytest

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router import metric_names as m
from llm_router.cache import Scope
from llm_router.cache.grey_band import GreyBand
from llm_router.cache.judge import SAME_QUESTION, CacheJudge, CacheJudgeError, verdict
from llm_router.cache.store import Candidate, grey_candidate
from llm_router.settings import GreyBandSettings
from tests.conftest import running, validated_config
from tests.test_cache import answer, ask, make_cache  # noqa: F401  (fixture)

P = {"temperature": 0}
STORED = "How do I reset my password?"
IN_BAND = "Password reset: how does it work?"  # MiniLM 0.69 to STORED; the verifier passes it
NEAR_MISS = "How do I disable my password?"  # 0.74, refused by the verifier (content)
BAND = GreyBandSettings(enabled=True, lower_threshold=0.65, tier="fast", timeout_ms=500, verdict_ttl_seconds=3600)


class ScriptedModel:
    """A tier backend whose answer the test sets ("yes", "no", anything), optionally slow."""

    kind, model = "scripted", "judge"

    def __init__(self, answer_: str = "yes", delay_s: float = 0.0):
        self.answer, self.delay_s, self.calls = answer_, delay_s, []
        self.released = threading.Event()

    def complete(self, body, timeout_s):
        self.calls.append(body)
        if self.delay_s:
            self.released.wait(self.delay_s)
        return {"choices": [{"message": {"role": "assistant", "content": self.answer}, "finish_reason": "stop"}]}


def banded(make, model: ScriptedModel, **band):
    cache = make()
    cache.grey_band = GreyBand(dataclasses.replace(BAND, **band), CacheJudge(model, "fast"))
    scope = Scope("acme", "fast")
    state = cache.lookup(scope, ask(STORED), P)
    assert cache.store(state, P, answer())
    return cache, scope


def test_the_judge_turns_a_grey_band_candidate_into_a_hit_once_per_pair(make_cache):  # noqa: F811
    model = ScriptedModel("Yes.")
    cache, scope = banded(make_cache, model)
    hit = cache.lookup(scope, ask(IN_BAND), P).hit
    assert hit.layer == "semantic" and 0.65 <= hit.similarity < 0.90 and len(model.calls) == 1
    [system, user] = model.calls[0]["messages"]
    assert system["content"] == SAME_QUESTION and IN_BAND in user["content"] and STORED in user["content"]
    assert cache.lookup(scope, ask(IN_BAND), P).hit.layer == "semantic"
    assert len(model.calls) == 1  # the verdict is cached per pair
    assert (m.CACHE_JUDGE_HITS, 1) in make_cache.metrics and (m.CACHE_JUDGE_CALLS, 1) in make_cache.metrics


def test_a_no_is_a_miss_and_is_remembered_too(make_cache):  # noqa: F811
    model = ScriptedModel("no")
    cache, scope = banded(make_cache, model)
    assert cache.lookup(scope, ask(IN_BAND), P).hit is None
    assert cache.lookup(scope, ask(IN_BAND), P).hit is None and len(model.calls) == 1


def test_the_verifier_still_refuses_near_misses_before_any_judge_is_asked(make_cache):  # noqa: F811
    model = ScriptedModel("yes")
    cache, scope = banded(make_cache, model)
    assert cache.lookup(scope, ask(NEAR_MISS), P).hit is None and model.calls == []
    assert cache.lookup(scope, ask("What is the capital of Australia?"), P).hit is None and model.calls == []


def test_a_slow_judge_costs_at_most_its_budget_and_its_late_verdict_is_kept(make_cache):  # noqa: F811
    model = ScriptedModel("yes", delay_s=30)
    cache, scope = banded(make_cache, model, timeout_ms=200)
    assert cache.lookup(scope, ask(IN_BAND), P).hit is None  # no verdict within 200 ms: a miss
    assert (m.CACHE_JUDGE_FAILED, 1) in make_cache.metrics
    verdicts = f"{cache.layout.prefix}j:*"
    assert not cache.client.keys(verdicts)  # the judge is still thinking
    model.released.set()  # its verdict arrives after the request gave up waiting
    for _ in range(200):
        if cache.client.keys(verdicts):
            break
        time.sleep(0.02)
    assert cache.lookup(scope, ask(IN_BAND), P).hit.layer == "semantic" and len(model.calls) == 1


@pytest.mark.parametrize("reply", ["Maybe.", "", "The questions are similar."])
def test_an_answer_that_is_neither_yes_nor_no_is_no_verdict(reply):
    with pytest.raises(CacheJudgeError):
        verdict({"choices": [{"message": {"content": reply}}]})
    assert verdict({"choices": [{"message": {"content": " NO, they differ."}}]}) is False


def test_a_failing_judge_opens_its_own_breaker_and_costs_misses_not_errors(make_cache):  # noqa: F811
    class Down(ScriptedModel):
        def complete(self, body, timeout_s):
            self.calls.append(body)
            raise ConnectionError("judge down")

    model = Down()
    cache, scope = banded(make_cache, model)
    for i in range(7):
        cache.client.delete(*cache.client.keys(f"{cache.layout.prefix}j:*") or ["none"])
        assert cache.lookup(scope, ask(IN_BAND), P).hit is None
    assert len(model.calls) == 5  # then the breaker is open: no more calls
    assert ("CacheFailOpen", 1) not in make_cache.metrics


def test_grey_candidate_picks_the_best_in_band_with_the_same_parameters():
    c = [Candidate(0.95, STORED, "a", 0.0), Candidate(0.8, "What is the capital of France?", "b", 0.0, "p1"),
         Candidate(0.78, IN_BAND, "c", 0.0), Candidate(0.5, STORED, "d", 0.0)]
    assert grey_candidate(STORED, c, 0.7, 0.9).key == "c"  # a: above the band; b: other parameters
    assert grey_candidate(STORED, c, 0.79, 0.9) is None


def test_grey_band_over_http_with_the_stand_in_model_as_judge(minilm):
    cfg = validated_config("dev")
    cfg.cache.grey_band.enabled, cfg.cache.grey_band.lower_threshold = True, 0.65
    cfg.cache.audit.sample_rate = 0
    with FakeUpstream() as upstream:
        local = build(cfg, upstream.url, {"sk-grey": "acme"}, embedder=minilm)
        try:
            with running(local.app) as base:
                client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-grey", max_retries=0, timeout=10)

                def ask_(text):
                    raw = client.chat.completions.with_raw_response.create(
                        model="smart", temperature=0, messages=[{"role": "user", "content": text}])
                    return raw.headers["x-llm-cache"]

                assert ask_(STORED) == "miss"
                judge_model = cfg.tier(local.router.settings.cache.grey_band.tier).model
                upstream.modes[judge_model] = "yes"
                calls = len(upstream.calls)
                assert ask_(IN_BAND) == "semantic"
                [judged] = upstream.calls[calls:]  # the judge tier only: the answer came from the cache
                assert judged["model"] == judge_model and judged["messages"][0]["content"] == SAME_QUESTION
                assert ask_(IN_BAND) == "semantic" and len(upstream.calls) == calls + 1  # verdict cached
                assert local.router.metrics.count(m.CACHE_JUDGE_HITS) == 2
        finally:
            local.close()
