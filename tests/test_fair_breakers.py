"""Fair failure accounting: only the upstream's own failures count toward a backend's
circuit breaker, and one tenant's bad traffic never opens it for another — through `serve`
with the real `openai` client."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import FAST, SMART, serve_uncached

KEY_A, KEY_B = "sk-test-tenant-a", "sk-test-tenant-b"


@pytest.fixture(scope="module")
def served(upstream):
    with serve_uncached(upstream.url, {KEY_A: "tenant-a", KEY_B: "tenant-b"}) as served_:
        yield served_


@pytest.fixture
def clients(served, upstream):
    upstream.modes.clear()
    upstream.calls.clear()
    served[0].router.breakers.reset()
    return [openai.OpenAI(base_url=served[1], api_key=k, max_retries=0, timeout=10) for k in (KEY_A, KEY_B)]


def ask(client, content, **kw):
    return client.chat.completions.create(model="fast", temperature=0,
                                          messages=[{"role": "user", "content": content}], **kw)


def test_one_tenants_poison_requests_do_not_deny_service_to_another(clients):
    """The review's finding: requests the model server cannot handle (it answers 500 to
    them, on every backend alike) opened the shared breakers, and every tenant got 503."""
    a, b = clients
    for i in range(3):
        with pytest.raises(openai.InternalServerError) as e:
            ask(a, f"this input breaks the model #fail-500 {i}")
        assert e.value.status_code == 502
    answer = ask(b, "What is DNS?")
    assert answer.choices[0].message.content == f"[{FAST}] answer to: What is DNS?"


def test_streamed_poison_requests_do_not_deny_service_either(clients):
    a, b = clients
    for i in range(3):
        with pytest.raises(openai.InternalServerError):
            list(ask(a, f"stream that breaks the model #fail-500 {i}", stream=True))
    chunks = list(ask(b, "Name a river", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("Name a river")


def test_a_tenants_own_breaker_opens_on_its_failures_and_only_for_it(clients, served):
    a, b = clients
    statuses = []
    for i in range(6):
        with pytest.raises(openai.APIStatusError) as e:
            ask(a, f"poison #fail-500 {i}")
        statuses.append(e.value.status_code)
    assert statuses == [502] * 5 + [503]
    breakers, metrics = served[0].router.breakers, served[0].router.metrics
    assert breakers.state("fast", "tenant-a") == "open" and breakers.state("fast", "tenant-b") == "closed"
    assert metrics.count("CircuitOpened|backend=fast|scope=tenant") == 1
    assert metrics.count("CircuitOpened|backend=fast|scope=backend") == 0
    assert ask(b, "Still here?").choices[0].message.content.endswith("Still here?")


def test_an_outage_seen_by_two_tenants_opens_the_backend_for_everyone(clients, served, upstream):
    a, b = clients
    upstream.modes[FAST] = "error"
    for i in range(3):
        for client in (a, b):  # the fallback answers: nobody sees the outage
            assert ask(client, f"during the outage {i}").choices[0].message.content.startswith(f"[{SMART}]")
    breakers = served[0].router.breakers
    assert breakers["fast"].state == "open" and breakers["smart"].state == "closed"
    assert served[0].router.metrics.count("CircuitOpened|backend=fast|scope=backend") >= 1
    calls = len(upstream.calls)
    ask(b, "after the breaker opened")
    assert [c["model"] for c in upstream.calls[calls:]] == [SMART]  # straight to the fallback


def test_the_upstreams_4xx_for_the_clients_input_is_a_4xx_and_no_failure(clients, served, upstream):
    a, b = clients
    for i in range(6):
        with pytest.raises(openai.BadRequestError) as e:
            ask(a, f"the model validates this away #fail-422 {i}")
        assert e.value.code == "upstream_rejected"
    assert [c["model"] for c in upstream.calls] == [FAST] * 6  # no retry, no fallback for the client's input
    assert all(b.failures == 0 for b in served[0].router.breakers.values())


def test_cancelled_streams_are_nobodys_failure(clients, served, upstream):
    import httpx

    a, _ = clients
    upstream.modes[FAST] = "drip"
    upstream.drip_s = 0.1
    for i in range(6):
        with httpx.stream("POST", f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY_A}"},
                          json={"model": "fast", "stream": True, "messages": [
                              {"role": "user", "content": f"a long answer one two three four {i}"}]}) as r:
            next(r.iter_lines())  # the first event, then hang up
    router = served[0].router
    assert all(b.failures == 0 for b in router.breakers.values())
    upstream.modes.clear()
    assert ask(a, "and now?").choices[0].message.content.endswith("and now?")


def test_a_stream_the_upstream_breaks_counts_against_it(clients, served, upstream):
    a, _ = clients
    upstream.modes[FAST] = "break"
    with pytest.raises(openai.APIError):
        list(ask(a, "one two three four five", stream=True))
    assert served[0].router.breakers.tenant_breaker("fast", "tenant-a", create=False).failures == 1


def test_a_request_counts_once_however_many_attempts_it_made():
    import time

    from llm_router.resilience import CircuitBreaker, RetryPolicy, UpstreamError

    breaker = CircuitBreaker(threshold=2)
    policy = RetryPolicy(attempts=3, sleep=lambda s: None)

    def failing(remaining):
        raise UpstreamError(500, "boom")

    with pytest.raises(UpstreamError):
        policy.run(failing, time.monotonic() + 10, breaker)
    assert breaker.failures == 1 and breaker.state == "closed"

    def rejected(remaining):
        raise UpstreamError(422, "invalid", retryable=False)

    with pytest.raises(UpstreamError):
        policy.run(rejected, time.monotonic() + 10, breaker)
    assert breaker.failures == 1


def test_the_shared_breaker_needs_two_tenants():
    from llm_router.resilience import Breakers

    seen = []
    breakers = Breakers(["fast"], threshold=3, on_change=lambda *change: seen.append(change))
    for _ in range(10):
        breakers.guard("fast", "a").failure()
    assert breakers["fast"].state == "closed" and breakers.state("fast", "a") == "open"
    breakers.guard("fast", "b").failure()
    assert breakers["fast"].state == "open"
    assert seen == [("fast", "tenant", "a", "open"), ("fast", "backend", "b", "open")]
    breakers["fast"].opened_at = -1e9  # long ago: half-open, one trial
    breakers.tenant_breaker("fast", "a").opened_at = -1e9
    guard = breakers.guard("fast", "a")
    assert guard.allow()
    guard.success()
    assert breakers.state("fast", "a") == "closed" and seen[-1] == ("fast", "backend", "a", "closed")
    assert breakers.tenant_breaker("fast", "a", create=False) is None  # a tenant without failures holds nothing
