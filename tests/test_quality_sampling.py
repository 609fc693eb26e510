"""Quality sampling in the router: rate and opt-outs (fixed seeds), what a sample holds,
PII redaction, and that sampling never holds up or costs an answer."""

from __future__ import annotations

import dataclasses
import json
import random
import threading

import openai
import pytest

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router import metric_names as m
from llm_router.observability import MemoryMetrics
from llm_router.quality import opted_out
from llm_router.quality.redact import CARD, EMAIL, PHONE, SECRET, SSN, redact
from llm_router.quality.sampler import Pending, Sampler, record
from tests.conftest import router_settings_of, running, validated_config

KEY, OPTED_OUT_KEY = "sk-test-acme", "sk-test-private"
RAG = "Context: the Eiffel Tower is 330 metres tall. Write to press@example.com for photos."


def quality(**changes):
    return dataclasses.replace(router_settings_of("dev").quality, **changes)


class Memory:
    """A sink that keeps what it is given."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, records):
        self.records += records


# -------------------------------------------------------------------- rate
@pytest.mark.parametrize("rate", [0.01, 0.2])
def test_sample_rate_holds_over_many_requests(rate):
    sampler = Sampler(quality(sample_rate=rate), Memory(), MemoryMetrics(), rng=random.Random(20261120))
    n = 200_000
    chosen = sum(sampler.chooses("acme") for _ in range(n))
    sd = (n * rate * (1 - rate)) ** 0.5
    assert abs(chosen - n * rate) < 4 * sd, (chosen, n * rate)


def test_rate_zero_never_and_one_always():
    never = Sampler(quality(sample_rate=0.0), Memory(), MemoryMetrics(), rng=random.Random(1))
    always = Sampler(quality(sample_rate=1.0), Memory(), MemoryMetrics(), rng=random.Random(1))
    assert not any(never.chooses("acme") for _ in range(10_000))
    assert all(always.chooses("acme") for _ in range(10_000))


def test_opted_out_tenants_and_requests_are_never_sampled():
    sampler = Sampler(quality(sample_rate=1.0, opt_out_tenants=("private",)), Memory(), MemoryMetrics(),
                      rng=random.Random(3))
    assert not any(sampler.chooses("private") for _ in range(10_000))
    assert not any(sampler.chooses("acme", consent=False) for _ in range(10_000))
    assert sampler.chooses("acme")
    # The opt-out decision comes before the draw: opted-out traffic does not shift other tenants' sample.
    a = Sampler(quality(sample_rate=0.3), Memory(), MemoryMetrics(), rng=random.Random(9))
    b = Sampler(quality(sample_rate=0.3, opt_out_tenants=("private",)), Memory(), MemoryMetrics(),
                rng=random.Random(9))
    seq_a = [a.chooses("acme") for _ in range(1000)]
    seq_b = []
    for _ in range(1000):
        b.chooses("private")
        seq_b.append(b.chooses("acme"))
    assert seq_a == seq_b


@pytest.mark.parametrize("value,out", [("off", True), ("OFF", True), (" false ", True), ("0", True), ("no", True),
                                       ("on", False), ("1", False), ("", False), (None, False)])
def test_request_header_opt_out_values(value, out):
    assert opted_out(value) is out


# ------------------------------------------------------------------ record
def pending(messages, answer="It is 330 metres tall.", **kw):
    return Pending(kw.get("request_id", "r1"), "acme", "smart", "model-x", "model", messages, answer, 1_790_000_000.0)


def test_a_sample_holds_the_context_the_question_and_the_answer():
    messages = [{"role": "system", "content": "Answer from the context only."},
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "tool", "tool_call_id": "t1", "content": "The Eiffel Tower is 330 metres tall."},
                {"role": "user", "content": [{"type": "text", "text": "How tall is it?"}]}]
    r = record(pending(messages), mask=True)
    assert r["context"] == ["Answer from the context only.", "The Eiffel Tower is 330 metres tall."]
    assert r["question"] == "How tall is it?" and r["answer"] == "It is 330 metres tall."
    assert (r["id"], r["tenant"], r["tier"], r["model"], r["source"]) == ("r1", "acme", "smart", "model-x", "model")
    assert r["at"].startswith("2026-") and r["redacted"] is True


def test_nothing_to_judge_is_not_a_sample():
    no_context = [{"role": "user", "content": "How tall is the Eiffel Tower?"}]
    assert record(pending(no_context), mask=True) is None
    with_context = [{"role": "system", "content": RAG}, {"role": "user", "content": "How tall?"}]
    assert record(pending(with_context, answer="  "), mask=True) is None  # a tool call: no text to judge
    assert record(pending(with_context), mask=True) is not None


def test_samples_are_masked_unless_the_stack_turns_it_off():
    messages = [{"role": "system", "content": RAG}, {"role": "user", "content": "Call me on +1 (415) 555-0100"}]
    masked = record(pending(messages, answer="Mail press@example.com."), mask=True)
    assert EMAIL in masked["context"][0] and "press@example.com" not in json.dumps(masked)
    assert masked["question"] == f"Call me on {PHONE}" and masked["answer"] == f"Mail {EMAIL}."
    raw = record(pending(messages, answer="Mail press@example.com."), mask=False)
    assert "press@example.com" in raw["context"][0] and raw["redacted"] is False


# --------------------------------------------------------------- redaction
@pytest.mark.parametrize("text,expected", [
    ("write to jane.doe+news@mail.example.co.uk today", f"write to {EMAIL} today"),
    ("call +44 20 7946 0958 or (415) 555-0100 or 415.555.0100", f"call {PHONE} or {PHONE} or {PHONE}"),
    ("Berlin office: 030 12345678", f"Berlin office: {PHONE}"),
    ("card 4111 1111 1111 1111, exp 12/29", f"card {CARD}, exp 12/29"),
    ("card 5500-0000-0000-0004", f"card {CARD}"),
    ("ssn 123-45-6789", f"ssn {SSN}"),
    ("key AKIAIOSFODNN7EXAMPLE", f"key {SECRET}"),
    ("use sk-proj-abcdefghijklmnopqrstuvwx", f"use {SECRET}"),
    ("password: hunter2!x and api_key=abc123def456", f"password: {SECRET} and api_key={SECRET}"),
    ("my token is ghp_abcdefghijklmnopqrstuvwxyz0123456789", f"my token is {SECRET}"),
    ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJlMTIz", f"Authorization: Bearer {SECRET}"),
    ("postgres://admin:s3cret@db.internal:5432/app", f"postgres://{SECRET}@db.internal:5432/app"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- done", f"{SECRET} done"),
])
def test_redaction_masks_personal_data_and_secrets(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "Released 2024-01-15, version 1.2.3, build 20240115.",
    "It costs $1,299.99 or 1.299,99 EUR; 3.14159265 is pi.",
    "Port 8080, HTTP 404, 10.0.0.1, year 2024, 12/31/2024.",
    "Order 1234567890123456 shipped (not a valid card number).",
    "The tower is 330 metres tall and weighs 10,100 tonnes.",
    "Call the function with max_tokens=1024 and temperature 0.2.",
])
def test_redaction_leaves_facts_a_judge_needs(text):
    assert redact(text) == text


def test_the_same_value_masks_alike_in_context_and_answer():
    context, answer = redact("Support: help@acme.example, +1 415 555 0100"), redact("Mail help@acme.example.")
    assert EMAIL in context and EMAIL in answer


# ------------------------------------------------------- never on the path
class Blocking:
    """A sink that holds its first write until released (a slow S3)."""

    def __init__(self):
        self.release, self.entered = threading.Event(), threading.Event()
        self.records: list[dict] = []

    def write(self, records):
        self.entered.set()
        self.release.wait(10)
        self.records += records


def offer(sampler, n, **kw):
    messages = [{"role": "system", "content": RAG}, {"role": "user", "content": "How tall?"}]
    return [sampler.offer(tenant="acme", request_id=f"r{i}", tier="smart", model="x", source="model",
                          messages=messages, answer="330 metres.", **kw) for i in range(n)]


def test_a_full_queue_drops_and_counts_instead_of_waiting():
    sink, metrics = Blocking(), MemoryMetrics()
    sampler = Sampler(quality(sample_rate=1.0), sink, metrics, rng=random.Random(1), queue_size=2)
    assert offer(sampler, 1) == [True]
    assert sink.entered.wait(5)  # the sender holds that one in the slow sink
    # The queue takes two more; the rest are dropped at once (a blocking put would hang this test).
    assert offer(sampler, 5) == [True, True, False, False, False]
    assert metrics.count(m.QUALITY_SAMPLES_DROPPED) == 3 and sampler.dropped == 3
    sink.release.set()
    assert sampler.flush(5)
    assert [r["id"] for r in sink.records] == ["r0", "r0", "r1"]  # offer() numbers each call's samples from r0


class Failing:
    def write(self, records):
        raise ConnectionError("S3 unreachable")


def test_a_failing_sink_loses_the_batch_counts_it_and_keeps_sending():
    metrics = MemoryMetrics()
    sampler = Sampler(quality(sample_rate=1.0), Failing(), metrics, rng=random.Random(1))
    offer(sampler, 3)
    sampler.flush(5)
    assert metrics.count(m.QUALITY_SAMPLES_DROPPED) == 3  # reported from the calling thread
    sampler.sink = Memory()
    offer(sampler, 1)
    sampler.flush(5)
    assert len(sampler.sink.records) == 1 and sampler.stored == 1


# ------------------------------------------------------- through the router
@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def served(upstream):
    local = build(validated_config("dev"), upstream.url, {KEY: "acme", OPTED_OUT_KEY: "private"}, cache=False)
    sink = Memory()
    local.router.sampler = Sampler(quality(sample_rate=1.0, opt_out_tenants=("private",)), sink,
                                   local.router.metrics, rng=random.Random(5))
    with running(local.app) as base:
        yield local, f"{base}/v1", sink
    local.close()


def ask(base, key, question, stream=False, headers=None, system=RAG):
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=10)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    kw = dict(model="smart", messages=messages, temperature=0, extra_headers=headers or {})
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
                       if c.choices)
    return client.chat.completions.create(**kw).choices[0].message.content


def test_router_samples_buffered_and_streamed_answers_and_honours_opt_outs(served):
    local, base, sink = served
    sink.records.clear()
    buffered = ask(base, KEY, "How tall is the tower? #buffered")
    streamed = ask(base, KEY, "How tall is the tower? #streamed", stream=True)
    ask(base, KEY, "Keep me out #header", headers={"x-llm-quality-sample": "off"})
    ask(base, OPTED_OUT_KEY, "Keep me out #tenant")
    ask(base, KEY, "No context here #plain", system=None)
    assert local.router.sampler.flush(5)
    by_question = {r["question"]: r for r in sink.records}
    assert set(by_question) == {"How tall is the tower? #buffered", "How tall is the tower? #streamed"}
    # The answer as the client got it, masked like the context (the stand-in echoes the system prompt).
    assert by_question["How tall is the tower? #buffered"]["answer"] == buffered.replace("press@example.com", EMAIL)
    assert by_question["How tall is the tower? #streamed"]["answer"] == streamed.replace("press@example.com", EMAIL)
    r = by_question["How tall is the tower? #streamed"]
    assert r["context"] == [RAG.replace("press@example.com", EMAIL)]
    assert r["tenant"] == "acme" and r["tier"] == "smart" and r["source"] == "model" and r["id"]


def test_a_broken_sampler_never_costs_the_answer(served):
    local, base, _ = served
    sampler = local.router.sampler

    class Broken:
        def offer(self, **kw):
            raise RuntimeError("sampler bug")

    local.router.sampler = Broken()
    try:
        before = local.router.metrics.count(m.SIDE_EFFECT_ERRORS)
        assert ask(base, KEY, "Still answered? #broken")
        assert ask(base, KEY, "Still answered? #broken-stream", stream=True)
        assert local.router.metrics.count(m.SIDE_EFFECT_ERRORS) == before + 2
    finally:
        local.router.sampler = sampler
