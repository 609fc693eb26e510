"""Audit of semantic hits: sampled off the request path into a bounded queue, re-asked, judged;
`CacheAuditSamples` / `CacheAuditWrong` published (in memory under `serve`, as EMF lines in
Lambda); disagreements kept in the cache, capped and expiring, and read by `cache audit`."""

from __future__ import annotations

import json
import logging
import threading

import openai
from typer.testing import CliRunner

from llm_blueprint.cli import app
from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router import metric_names as m
from llm_router.cache import Scope
from llm_router.cache.audit import Auditor, Disagreements, Job
from llm_router.cache.judge import SAME_ANSWER, CacheJudge
from llm_router.cache.store import CacheHit
from llm_router.settings import AuditSettings
from tests.conftest import running, validated_config
from tests.test_cache import answer, ask, make_cache  # noqa: F401  (fixture)
from tests.test_cache_judge import ScriptedModel

P = {"temperature": 0}
SETTINGS = AuditSettings(sample_rate=1.0, judge_tier="fast", queue_size=4, keep=3, keep_days=14)
runner = CliRunner()


class Metrics(list):
    def __call__(self, name, value):
        self.append((name, value))

    def count(self, name):
        return sum(v for n, v in self if n == name)


def auditor(make, judge_answer="no", fresh="Use the admin console.", **changes):
    import dataclasses

    cache = make()
    reasked: list = []

    def reask(tier, params):
        reasked.append((tier, params))
        return answer(fresh)

    metrics = Metrics()
    judge = ScriptedModel(judge_answer)
    audit = Auditor(dataclasses.replace(SETTINGS, **changes), reask, CacheJudge(judge, "fast"),
                    Disagreements(cache.client, cache.layout.prefix, SETTINGS.keep, SETTINGS.keep_days), metrics)
    cache.auditor = audit
    return cache, audit, metrics, reasked, judge


def test_a_sampled_semantic_hit_is_reasked_judged_and_counted(make_cache):  # noqa: F811
    cache, audit, metrics, reasked, judge = auditor(make_cache)
    scope = Scope("acme", "fast")
    cache.store(cache.lookup(scope, ask("How do I reset my password?"), P), P, answer())
    params = {**P, "messages": ask("How can I reset my password?")}
    hit = cache.lookup(scope, ask("How can I reset my password?"), params).hit
    assert hit.layer == "semantic"
    assert cache.lookup(scope, ask("How do I reset my password?"), P).hit.layer == "exact"  # exact hits: never audited
    assert audit.drain()
    assert reasked == [("fast", params)]  # the tier, with the request's own messages and parameters
    [system, user] = judge.calls[0]["messages"]
    assert system["content"] == SAME_ANSWER and "Use the reset link" in user["content"]
    assert "Use the admin console." in user["content"] and "How can I reset my password?" in user["content"]
    assert (metrics.count(m.CACHE_AUDIT_SAMPLES), metrics.count(m.CACHE_AUDIT_WRONG)) == (1, 1)
    [record] = audit.disagreements.recent()
    assert record["question"] == "How can I reset my password?" and record["cached_question"] == "How do I reset my password?"
    assert record["fresh_answer"] == "Use the admin console." and record["tenant"] == "acme"


def test_agreement_counts_a_sample_and_keeps_nothing(make_cache):  # noqa: F811
    cache, audit, metrics, _, _ = auditor(make_cache, judge_answer="yes")
    job = Job(Scope("acme", "fast"), "q", "q0", 0.93, "a", {})
    assert audit.audit(job) is True
    assert (metrics.count(m.CACHE_AUDIT_SAMPLES), metrics.count(m.CACHE_AUDIT_WRONG)) == (1, 0)
    assert audit.disagreements.recent() == []


def test_only_the_sampled_share_is_audited_and_a_full_queue_drops_instead_of_waiting(make_cache):  # noqa: F811
    cache, audit, metrics, _, _ = auditor(make_cache, sample_rate=0.01, queue_size=2)
    state = cache.lookup(Scope("acme", "fast"), ask("Q?"), P)
    state.hit = CacheHit("semantic", answer(), 0.95, "Q0?")
    audit.chance = lambda: 0.5  # above the 1 % share
    assert not audit.offer(state, P) and audit.queue.qsize() == 0
    audit.chance = lambda: 0.001
    gate = threading.Event()
    audit.reask = lambda tier, params: gate.wait(10) and answer()  # the worker is busy
    results = [audit.offer(state, P) for _ in range(5)]
    assert results.count(True) >= 2 and metrics.count(m.CACHE_AUDIT_DROPPED) == results.count(False) >= 2
    gate.set()
    assert audit.drain()


def test_a_judge_without_a_verdict_drops_the_audit_uncounted(make_cache):  # noqa: F811
    cache, audit, metrics, _, _ = auditor(make_cache, judge_answer="Hard to say.")
    assert audit.audit(Job(Scope("acme", "fast"), "q", "q0", 0.93, "a", {})) is None
    assert metrics.count(m.CACHE_AUDIT_SAMPLES) == 0 and metrics.count(m.CACHE_AUDIT_DROPPED) == 1


def test_disagreements_are_capped_per_tenant_expire_and_stay_out_of_logs(make_cache, caplog):  # noqa: F811
    cache, audit, _, _, _ = auditor(make_cache)
    caplog.set_level(logging.WARNING, "llm_router.cache")
    for i in range(5):
        audit.audit(Job(Scope("acme", "fast"), f"secret question {i}", "q0", 0.9, "a", {}, at=1000.0 + i))
    audit.audit(Job(Scope("globex", "smart"), "other question", "q0", 0.9, "a", {}, at=999.0))
    kept = audit.disagreements.recent("acme", limit=10)
    assert [r["question"] for r in kept] == ["secret question 4", "secret question 3", "secret question 2"]
    assert [r["tenant"] for r in audit.disagreements.recent(limit=10)] == ["acme"] * 3 + ["globex"]
    key = audit.disagreements._list("acme")
    assert 0 < cache.client.ttl(key) <= 14 * 86400
    assert "secret question" not in caplog.text and "acme" in str([r.__dict__ for r in caplog.records])
    audit.log_prompts = True
    audit.audit(Job(Scope("acme", "fast"), "opted-in question", "q0", 0.9, "a", {}))
    assert any(getattr(r, "question", None) == "opted-in question" for r in caplog.records)


def test_emf_lines_carry_the_audit_metrics_for_the_alarm(capsys):
    from llm_router.observability import EmfMetrics

    emf = EmfMetrics("llm-router-dev")
    worker = threading.Thread(target=lambda: [emf.add(m.CACHE_AUDIT_SAMPLES, 1), emf.add(m.CACHE_AUDIT_WRONG, 1)])
    worker.start()
    worker.join()
    emf.add(m.REQUESTS, 1)
    emf.flush()
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == m.NAMESPACE and directive["Dimensions"] == [[m.DIMENSION]]
    assert line[m.DIMENSION] == "llm-router-dev"
    assert (line[m.CACHE_AUDIT_SAMPLES], line[m.CACHE_AUDIT_WRONG]) == ([1.0], [1.0])


def test_audit_under_serve_publishes_both_metrics_and_the_cli_shows_the_disagreement(minilm):
    cfg = validated_config("dev")
    cfg.cache.audit.sample_rate = 1.0
    with FakeUpstream() as upstream:
        local = build(cfg, upstream.url, {"sk-audit": "acme"}, embedder=minilm)
        try:
            judge_model = cfg.tier(local.router.settings.cache.audit.judge_tier).model
            upstream.modes[judge_model] = "no"
            with running(local.app) as base:
                client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-audit", max_retries=0, timeout=10)

                def ask_(text):
                    raw = client.chat.completions.with_raw_response.create(
                        model="smart", temperature=0, messages=[{"role": "user", "content": text}])
                    return raw.parse().choices[0].message.content, raw.headers["x-llm-cache"]

                original, _ = ask_("How do I reset my password?")
                served, layer = ask_("How can I reset my password?")
                assert (served, layer) == (original, "semantic")  # the client got the cached answer at once
                assert local.router.cache.auditor.drain()
            metrics = local.router.metrics
            assert metrics.count(m.CACHE_AUDIT_SAMPLES) == 1 and metrics.count(m.CACHE_AUDIT_WRONG) == 1
            smart = cfg.tier("smart").model
            assert [c["model"] for c in upstream.calls[-2:]] == [smart, judge_model]  # re-asked, then judged
            result = runner.invoke(app, ["cache", "audit", "--endpoint", "127.0.0.1", "--port",
                                         str(local.server.port), "--no-tls", "--json"])
            assert result.exit_code == 0, result.output
            [record] = json.loads(result.stdout)
            assert record["question"] == "How can I reset my password?" and record["tier"] == "smart"
            assert record["cached_answer"] == original and "How can I reset" in record["fresh_answer"]
            text = runner.invoke(app, ["cache", "audit", "--endpoint", "127.0.0.1", "--port", str(local.server.port),
                                       "--no-tls", "--tenant", "acme"])
            assert "asked: How can I reset my password?" in text.stdout and "tier smart" in text.stdout
        finally:
            local.close()


def test_the_cli_says_where_the_cache_must_be_reached_from():
    result = runner.invoke(app, ["cache", "audit", "--endpoint", "127.0.0.1", "--port", "1", "--no-tls"])
    assert result.exit_code == 1 and "inside the VPC" in result.stderr
