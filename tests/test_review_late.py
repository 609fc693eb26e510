"""Defects and edge cases found by an adversarial review of the late commits: jobs under their
key's limits on DynamoDB, the shared breaker's tenant shares, the header cap, seed/user checks."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
import valkey
from moto import mock_aws

from llm_blueprint.fake_upstream import FakeUpstream
from llm_router.authorizer import Principal
from llm_router.jobs.blobs import MemoryBlobs
from llm_router.jobs.dynamo import DynamoStore
from llm_router.jobs.records import caller_of, key
from llm_router.jobs.service import JobService
from llm_router.jobs.worker import Worker
from llm_router.limits import Limiter
from llm_router.settings import RateLimit, RateLimitSettings
from tests.jobs_support import REGION, Clock, Sent, create_table, router_for


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as up:
        yield up


def ask(content: str) -> bytes:
    return json.dumps({"model": "fast", "messages": [{"role": "user", "content": content}]}).encode()


@pytest.fixture
def on_dynamo(upstream, valkey_server):
    """A job service and worker on DynamoDB (moto), the router limited per key in the real Valkey."""
    upstream.modes.clear()
    router = router_for(upstream.url, max_receives=3)
    router.limiter = Limiter(valkey.Valkey(port=valkey_server.port),
                             RateLimitSettings(RateLimit(600, None), RateLimit(None, None), {}),
                             prefix=f"rv{uuid.uuid4().hex[:8]}")
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        store, sent, blobs, clock = DynamoStore(create_table(ddb), ddb), Sent(), MemoryBlobs(), Clock()
        service = JobService(router, store, sent, blobs, router.settings.jobs, clock=clock)
        worker = Worker(router, store, sent, blobs, router.settings.jobs, clock=clock, retry_base_s=0.01)
        yield service, worker, store, sent


def test_a_keys_limits_with_nulls_round_trip_through_dynamodb(on_dynamo):
    service, worker, store, sent = on_dynamo
    who = Principal("acme", "key-7", (("requestsPerMinute", None), ("tokensPerDay", 5000)))
    job = service.submit("acme", ask("round trip #rt"), who)
    row = store.get(key("acme", "job", job["id"]))
    assert caller_of(row) == who
    assert not {"key_id", "key_limits"} & set(job) and "key-7" not in json.dumps(service.job("acme", job["id"]))


def test_a_job_refused_by_its_keys_rate_limit_is_retried_then_fails_cleanly(on_dynamo):
    service, worker, store, sent = on_dynamo
    who = Principal("acme", f"key-{uuid.uuid4().hex[:6]}", (("requestsPerMinute", 1),))
    first, second = (service.submit("acme", ask(f"limited {i} #rl"), who) for i in range(2))
    m1, m2 = sent.take("job")
    assert worker.process(m1, 1) is None
    assert service.job("acme", first["id"])["status"] == "succeeded"
    for receives in (1, 2):
        assert worker.process(m2, receives) > 0  # comes back after a backoff
        assert service.job("acme", second["id"])["status"] == "queued"
    assert worker.process(m2, 3) is not None  # used up its deliveries: to the dead-letter queue
    failed = service.job("acme", second["id"])
    assert failed["status"] == "failed" and failed["status_code"] == 429 and failed["attempts"] == 3
    assert failed["error"]["message"].startswith("gave up after 3 attempt(s): Rate limit reached for this API key")


# ------------------------------------------------------------- slo evaluate
@pytest.mark.parametrize("args,says", [
    (["--endpoint", "fast=http://127.0.0.1:9/v1"], "--endpoint needs --own-backends"),
    (["--own-backends", "--endpoint", "fast=http://127.0.0.1:9/v1"], "judge tier is smart"),
])
def test_slo_evaluate_refuses_an_endpoint_it_would_not_judge_with(args, says):
    """`--endpoint TIER=URL` without `--own-backends` was accepted and the samples judged by the
    stand-in lexical judge, as if the team's own model had judged them; with it, an endpoint for
    another tier than the judge tier was ignored just as silently."""
    from typer.testing import CliRunner

    from llm_blueprint.cli import app

    result = CliRunner().invoke(app, ["slo", "evaluate", "examples/quality/samples.jsonl", "--stack", "prod", *args])
    assert result.exit_code == 2 and says in result.output, result.output


# ------------------------------------------------------- reasoning on Claude
def test_reasoning_refused_by_a_claude_tier_too_small_to_think_says_why(upstream):
    """dev's smart tier is Claude Sonnet 4 capped at 1,000 tokens: a reasoning request was told the
    tier 'has no reasoning', which reads as wrong for that model and hides the fix (its maxTokens)."""
    router = router_for(upstream.url)
    body = {"model": "smart", "reasoning_effort": "low", "messages": [{"role": "user", "content": "think #small"}]}
    reply = router.chat(json.dumps(body).encode(), "acme", "rid-think")
    error = reply.body["error"]
    assert reply.status == 400 and error["param"] == "reasoning_effort" and error["code"] == "unsupported_feature"
    assert "maxTokens is below 2048" in error["message"], error["message"]
    listed = {m["id"]: m for m in router.models().body["data"]}
    assert listed["smart"]["capabilities"]["reasoning"] is False  # not offered, and auto never picks it for it


# ------------------------------------------------------------ header cap (431)
def _deployed_headers(user_agent: str) -> dict[str, str]:
    """What Lambda Web Adapter hands the app for a REST API request: the client's headers, API
    Gateway's request context (which repeats the user agent) and the Lambda context."""
    context = {
        "resourceId": "abc123", "resourcePath": "/{proxy+}", "httpMethod": "POST", "stage": "v1",
        "extendedRequestId": "Xy" * 10, "requestTime": "30/Nov/2026:20:00:00 +0000", "path": "/v1/v1/jobs",
        "accountId": "123456789012", "protocol": "HTTP/1.1", "requestTimeEpoch": 1796071877000,
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123", "apiId": "abc123",
        "identity": {"cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                     "sourceIp": "203.0.113.7", "principalOrgId": None, "accessKey": None,
                     "cognitoAuthenticationType": None, "cognitoAuthenticationProvider": None, "userArn": None,
                     "userAgent": user_agent, "user": None, "apiKey": None, "apiKeyId": None, "clientCert": None},
        "authorizer": {"principalId": "key-" + "f" * 12, "tenant": "t" * 128, "keyId": "key-" + "f" * 12,
                       "limits": json.dumps({"requestsPerMinute": None, "tokensPerDay": 10**12}),
                       "integrationLatency": 120}}
    lambda_context = {"request_id": "8f5e3c2a-1111-2222-3333-444455556666", "deadline": 1796071907000,
                      "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:llm-router-prod-abcdef",
                      "xray_trace_id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                      "client_context": None, "identity": None,
                      "env_config": {"function_name": "llm-router-prod-abcdef", "memory": 1024, "version": "$LATEST",
                                     "log_stream": "2026/11/30/[$LATEST]" + "0" * 32,
                                     "log_group": "/aws/lambda/llm-router-prod-abcdef"}}
    return {"user-agent": user_agent, "x-amzn-trace-id": lambda_context["xray_trace_id"],
            "x-forwarded-for": "203.0.113.7, 198.51.100.1", "x-forwarded-proto": "https", "x-forwarded-port": "443",
            "x-amzn-request-context": json.dumps(context), "x-amzn-lambda-context": json.dumps(lambda_context)}


@pytest.fixture
def gateway_app(upstream):
    from llm_blueprint.serve import running
    from llm_router.http_app import GatewayAuth, create_app
    from llm_router.jobs.queues import MemoryQueue
    from llm_router.jobs.store import MemoryStore

    upstream.modes.clear()
    router = router_for(upstream.url)
    service = JobService(router, MemoryStore(), MemoryQueue(workers=1, max_receives=3), MemoryBlobs(), router.settings.jobs)
    with running(create_app(router, GatewayAuth(), jobs=service)) as base:
        yield base


def test_the_largest_request_api_gateway_passes_on_stays_under_the_header_cap(gateway_app):
    """API Gateway (REST) takes at most 10,240 bytes of request line and headers; Lambda Web
    Adapter then adds the request context (repeating the user agent) and the Lambda context."""
    import httpx

    from llm_router.http_app import MAX_HEADER_BYTES

    headers = _deployed_headers("u" * 9_500)
    assert sum(len(k) + len(v) for k, v in headers.items()) < MAX_HEADER_BYTES - 8 * 1024  # room to spare
    for path, body in (("/v1/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/jobs", {"model": "fast", "messages": [{"role": "user", "content": "hi"}]})):
        r = httpx.post(f"{gateway_app}{path}", headers=headers, json=body, timeout=20)
        assert r.status_code in (200, 202), (path, r.status_code, r.text)
    over = {**headers, "x-padding": "p" * MAX_HEADER_BYTES}
    for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/batches"), ("GET", "/v1/files/file-" + "0" * 32)):
        r = httpx.request(method, f"{gateway_app}{path}", headers=over, timeout=20)
        assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large", (path, r.text)
    assert httpx.get(f"{gateway_app}/healthz", headers=over).status_code == 200  # no principal, nothing to guard


# -------------------------------------------------------------- jobs show (CLI)
def test_operators_see_which_key_a_job_ran_as_and_clients_never_do(monkeypatch):
    """A job that failed on "Rate limit reached for this API key" named no key anywhere: `jobs show`
    showed the tenant only, so an operator could not tell whose limit to raise (`keys limits`)."""
    from typer.testing import CliRunner

    from llm_blueprint.cli import app

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        table = create_table(ddb)
        router = router_for("http://127.0.0.1:9/v1")
        service = JobService(router, DynamoStore(table, ddb), Sent(), MemoryBlobs(), router.settings.jobs)
        who = Principal("acme", "key-ops", (("tokensPerDay", None),))
        job = service.submit("acme", ask("whose job #ops"), who)
        old = service.submit("acme", ask("before keys were kept #ops"))
        shown = json.loads(CliRunner().invoke(app, ["jobs", "show", job["id"], "--table", table]).stdout)
        older = json.loads(CliRunner().invoke(app, ["jobs", "show", old["id"], "--table", table]).stdout)
        client_view = service.job("acme", job["id"])
    assert (shown["tenant"], shown["key_id"]) == ("acme", "key-ops") and older["key_id"] is None
    assert "key_id" not in client_view and "key-ops" not in json.dumps(client_view)
