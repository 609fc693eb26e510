"""Per-key and per-tenant limits on the real Valkey: exact under concurrency, OpenAI's
headers and 429 body read by the official client, token reservations settled with the
answer's usage, and the limiter failing open when Valkey is gone."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import valkey

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build, free_port
from llm_router import metric_names as m
from llm_router.authorizer import Principal, allow_policy, authenticate, key_hash
from llm_router.errors import ApiError
from llm_router.limits import Limiter, duration
from llm_router.settings import RateLimit, RateLimitSettings
from tests.conftest import config_problems, example_config, running, validated_config

NONE = RateLimit(None, None)
FAST = "us.amazon.nova-lite-v1:0"


def limits(per_key=NONE, per_tenant=NONE, tenants=None) -> RateLimitSettings:
    return RateLimitSettings(per_key, per_tenant, tenants or {})


@pytest.fixture
def client(valkey_server):
    return valkey.Valkey(port=valkey_server.port)


def who(tenant=None, key=None, **own) -> Principal:
    return Principal(tenant or f"t-{uuid.uuid4().hex[:8]}", key or f"key-{uuid.uuid4().hex[:8]}",
                     tuple(own.items()))


def admitted(limiter: Limiter, principal: Principal, n: int, tokens: int = 0, threads: int = 16) -> list:
    def one(_):
        try:
            return limiter.admit(principal, tokens)
        except ApiError as e:
            return e

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("limit,parallel", [(1, 10), (7, 40), (25, 60)])
def test_parallel_requests_against_a_limit_of_m_admit_exactly_m(client, limit, parallel):
    limiter = Limiter(client, limits(per_key=RateLimit(limit, None)))
    results = admitted(limiter, who(), parallel)
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(results) - len(refused) == limit
    assert {(e.status, e.code, e.type) for e in refused} == {(429, "rate_limit_exceeded", "requests")}


def test_separate_routers_share_the_count(client, valkey_server):
    """Two Lambdas: two clients, two limiters, one Valkey."""
    settings = limits(per_key=RateLimit(10, None))
    principal = who()
    a = Limiter(client, settings)
    b = Limiter(valkey.Valkey(port=valkey_server.port), settings)
    results = admitted(a, principal, 15) + admitted(b, principal, 15)
    assert sum(not isinstance(r, ApiError) for r in results) == 10


def test_a_tenants_keys_share_its_limit_and_each_key_has_its_own(client):
    limiter = Limiter(client, limits(per_key=RateLimit(3, None), tenants={"acme": RateLimit(5, None)}))
    one, two = who("acme", "key-one-" + uuid.uuid4().hex[:6]), who("acme", "key-two-" + uuid.uuid4().hex[:6])
    client.delete(*limiter.keys(one))
    first = admitted(limiter, one, 6)
    assert sum(not isinstance(r, ApiError) for r in first) == 3  # the key's limit
    second = admitted(limiter, two, 6)
    assert sum(not isinstance(r, ApiError) for r in second) == 2  # what the tenant has left
    assert "tenant" in next(r for r in second if isinstance(r, ApiError)).message


def test_a_keys_own_limits_replace_the_stack_default(client):
    limiter = Limiter(client, limits(per_key=RateLimit(2, None)))
    assert sum(not isinstance(r, ApiError) for r in admitted(limiter, who(requestsPerMinute=5), 9)) == 5
    unlimited = who(requestsPerMinute=None)
    tickets = admitted(limiter, unlimited, 9)
    assert all(t.headers == {} for t in tickets)  # no limit: no Valkey call, no headers


def test_headers_count_down_and_reset_like_openais(client):
    limiter = Limiter(client, limits(per_key=RateLimit(60, 10_000)))
    principal = who()
    first, second = limiter.admit(principal, 1000), limiter.admit(principal, 500)
    assert first.headers["x-ratelimit-limit-requests"] == "60"
    assert first.headers["x-ratelimit-remaining-requests"] == "59"
    assert second.headers["x-ratelimit-remaining-requests"] == "58"
    assert first.headers["x-ratelimit-reset-requests"] in ("1s", "999ms", "1000ms")
    assert first.headers["x-ratelimit-limit-tokens"] == "10000"
    assert (first.headers["x-ratelimit-remaining-tokens"], second.headers["x-ratelimit-remaining-tokens"]) == (
        "9000", "8500")
    assert first.headers["x-ratelimit-reset-tokens"].endswith("s")


def test_a_reservation_is_replaced_by_the_answers_usage(client):
    limiter = Limiter(client, limits(per_key=RateLimit(None, 10_000)))
    principal = who()
    ticket = limiter.admit(principal, 6_000)  # prompt + max_tokens, reserved
    with pytest.raises(ApiError) as e:
        limiter.admit(principal, 6_000)  # does not fit in what is left
    assert e.value.type == "tokens" and e.value.headers["x-should-retry"] == "false"
    assert int(e.value.headers["retry-after"]) >= 1
    ticket.settle(1_200)  # what the answer used
    ticket.settle(5_000)  # settles once
    assert limiter.admit(principal, 6_000).headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1_200 - 6_000)
    assert limiter.usage(principal)["key"]["tokensToday"] == 7_200


def test_the_limiter_fails_open_when_valkey_is_unreachable():
    seen = []
    dead = valkey.Valkey(port=free_port(), socket_timeout=0.05, socket_connect_timeout=0.05)
    limiter = Limiter(dead, limits(per_key=RateLimit(1, 100)), on_metric=lambda n, v: seen.append(n))
    tickets = [limiter.admit(who("acme", "key-x"), 10) for _ in range(3)]
    assert all(t.headers == {} for t in tickets)
    assert seen == [m.RATE_LIMIT_FAIL_OPEN] * 3


@pytest.mark.parametrize("ms,text", [(0, "0ms"), (20, "20ms"), (1000, "1s"), (1500, "1.5s"), (360_000, "6m0s"),
                                     (3_723_000, "1h2m3s")])
def test_durations_read_like_openais(ms, text):
    assert duration(ms) == text


# ----------------------------------------------------------------- end to end
KEY, OTHER, EMBEDDER = "sk-test-limited", "sk-test-other", "sk-test-embedder"


@pytest.fixture(scope="module")
def served():
    entries = {KEY: {"tenant": "acme", "id": f"key-{uuid.uuid4().hex[:8]}", "limits": {"requestsPerMinute": 3}},
               OTHER: {"tenant": "globex", "id": f"key-{uuid.uuid4().hex[:8]}",
                       "limits": {"tokensPerDay": 500}},
               EMBEDDER: {"tenant": "initech", "id": f"key-{uuid.uuid4().hex[:8]}",
                          "limits": {"requestsPerMinute": 2}}}
    with FakeUpstream() as upstream:
        local = build(validated_config("dev"), upstream.url, entries, embedder=_Unit())
        with running(local.app) as base:
            yield local, f"{base}/v1"
        local.close()


class _Unit:
    name, dimensions = "unit", 384

    def embed(self, texts):
        return [[1.0] + [0.0] * 383 for _ in texts]


def test_the_openai_client_reads_the_headers_and_gets_a_429(served):
    client = openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0)
    remaining = []
    for i in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": f"limited {i}"}])
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-limit-requests"] == "3" and raw.headers["x-ratelimit-reset-requests"]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "one more"}])
    assert e.value.status_code == 429 and e.value.code == "rate_limit_exceeded"
    assert e.value.body["message"].startswith("Rate limit reached for this API key")
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert e.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert served[0].router.metrics.count(m.RATE_LIMITED) >= 1


def test_a_daily_token_quota_counts_the_answers_and_stops_the_client_retrying(served):
    client = openai.OpenAI(base_url=served[1], api_key=OTHER, max_retries=2)
    raw = client.chat.completions.with_raw_response.create(
        model="fast", max_tokens=100, messages=[{"role": "user", "content": "a small question"}])
    left = int(raw.headers["x-ratelimit-remaining-tokens"])
    assert raw.headers["x-ratelimit-limit-tokens"] == "500" and left < 500 - 100
    streamed = list(client.chat.completions.create(model="fast", max_tokens=100, stream=True,
                                                   messages=[{"role": "user", "content": "and a stream"}]))
    assert streamed
    refused = served[0].router.metrics.count(m.RATE_LIMITED)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="fast", max_tokens=800, messages=[{"role": "user", "content": "big"}])
    assert e.value.type == "tokens" and e.value.response.headers["x-should-retry"] == "false"
    assert served[0].router.metrics.count(m.RATE_LIMITED) == refused + 1  # the SDK did not retry
    usage = served[0].router.limiter.usage(Principal("globex", authenticate(f"Bearer {OTHER}", served[0].keys).key_id))
    assert 0 < usage["key"]["tokensToday"] < 2 * 118  # what the two answers used, not their reservations


def test_embeddings_count_against_the_same_limits(served):
    client = openai.OpenAI(base_url=served[1], api_key=EMBEDDER, max_retries=0)
    first = client.embeddings.with_raw_response.create(model="embed", input="hello")
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    client.embeddings.create(model="embed", input="again")
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="embed", input="once more")


# ----------------------------------------------------------- where limits live
def test_a_keys_limits_travel_from_the_secret_through_the_authorizer():
    from starlette.requests import Request

    from llm_router.http_app import GatewayAuth

    entry = {"tenant": "acme", "id": "key-1", "limits": {"requestsPerMinute": 30, "tokensPerDay": None, "x": 1}}
    principal = authenticate("Bearer sk-1", {key_hash("sk-1"): entry})
    assert principal.limits == (("requestsPerMinute", 30), ("tokensPerDay", None))
    context = allow_policy(principal, "arn:aws:execute-api:us-east-1:1:abc/live/POST/v1/chat/completions")["context"]
    assert all(isinstance(v, str) for v in context.values())  # API Gateway takes strings, numbers, booleans
    request = Request({"type": "http", "headers": [(b"x-amzn-request-context",
                                                   json.dumps({"authorizer": context}).encode())]})
    assert GatewayAuth()(request) == principal


def test_limits_need_the_cache_valkey():
    config = example_config("dev")
    config["llm-blueprint:cache"]["enabled"] = False
    problems = config_problems(config)
    assert [p.path for p in problems] == ["router.rateLimits.perKey.requestsPerMinute"]
    config["llm-blueprint:router"]["rateLimits"] = {"perKey": {"requestsPerMinute": None}}
    from components import config_rules
    from tests.conftest import raw_stack_config

    assert config_rules.validate(*raw_stack_config(config)).router.rate_limits.per_key.requests_per_minute is None


def test_keys_carry_their_limits_from_the_cli_to_the_router(secret, valkey_server):  # noqa: F811
    from typer.testing import CliRunner

    from llm_blueprint.cli import app
    from tests.test_keys import add, allowed, event, stored

    runner = CliRunner()
    arn, _ = secret
    made = runner.invoke(app, ["keys", "add", "--tenant", "acme", "--secret-id", arn, "--requests-per-minute", "30",
                               "--tokens-per-day", "none"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    [entry] = stored(arn).values()
    assert entry["limits"] == {"requestsPerMinute": 30, "tokensPerDay": None}
    context = allowed(event(f"Bearer {key}"))["context"]
    assert json.loads(context["limits"]) == {"requestsPerMinute": 30, "tokensPerDay": None}
    changed = runner.invoke(app, ["keys", "limits", "--key-id", entry["id"], "--secret-id", arn,
                                  "--requests-per-minute", "default", "--tokens-per-day", "50000"])
    assert changed.exit_code == 0 and "stack default" in changed.stdout and "50,000" in changed.stdout
    assert stored(arn)[key_hash(key)]["limits"] == {"tokensPerDay": 50000}
    bad = runner.invoke(app, ["keys", "limits", "--key-id", entry["id"], "--secret-id", arn,
                              "--requests-per-minute", "-3"])
    assert bad.exit_code == 2
    _, plain_id = add(arn, "globex")
    assert runner.invoke(app, ["keys", "limits", "--key-id", plain_id, "--secret-id", arn,
                               "--requests-per-minute", "2"]).exit_code == 0
    Limiter(valkey.Valkey(port=valkey_server.port), validated_settings().router.rate_limits).admit(
        Principal("globex", plain_id, (("requestsPerMinute", 2),)), 0)
    listed = runner.invoke(app, ["keys", "list", "--secret-id", arn, "--json", "--stack", "dev",
                                 "--valkey-url", f"redis://127.0.0.1:{valkey_server.port}"])
    assert listed.exit_code == 0, listed.output
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows[entry["id"]]["limits"] == {"tokensPerDay": 50000}
    assert rows[entry["id"]]["usage"]["key"]["tokensPerDay"] == 50000
    assert rows[entry["id"]]["usage"]["key"]["requestsPerMinute"] == 600  # the dev stack's per-key default
    assert rows[plain_id]["usage"]["key"]["requestsLeft"] == 1
    table = runner.invoke(app, ["keys", "list", "--secret-id", arn, "--stack", "dev",
                                "--valkey-url", f"redis://127.0.0.1:{valkey_server.port}"])
    assert table.exit_code == 0 and "tokens today" in table.stdout and "0 of 50,000" in table.stdout


def validated_settings():
    from components.router_settings import router_settings

    return router_settings(validated_config("dev"))


from tests.test_keys import secret  # noqa: E402,F401  (the moto Secrets Manager fixture)
