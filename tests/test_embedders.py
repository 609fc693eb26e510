"""The managed embedders: Titan v2 through boto3 (Stubber) and an OpenAI-compatible /v1/embeddings."""

from __future__ import annotations

import io
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from llm_router.cache.embedders import from_settings
from llm_router.resilience import CircuitOpen, UpstreamError
from llm_router.settings import EmbedderSettings


def titan(dimensions, timeout_ms=1000):
    return EmbedderSettings(provider="bedrock-titan-v2", model=None, dimensions=dimensions, url=None,
                            timeout_ms=timeout_ms)


def test_titan_v2_requests_the_configured_dimensions_and_normalises():
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    payload = json.dumps({"embedding": [3.0, 4.0] + [0.0] * 254}).encode()
    stub.add_response("invoke_model", {"body": StreamingBody(io.BytesIO(payload), len(payload)),
                                       "contentType": "application/json"},
                      {"modelId": "amazon.titan-embed-text-v2:0", "contentType": "application/json",
                       "accept": "application/json", "body": ANY})
    with stub:
        [v] = from_settings(titan(256), client=client).embed(["hello"])
    assert len(v) == 256 and v[:2] == pytest.approx([0.6, 0.8]) and math.isclose(sum(x * x for x in v), 1.0)
    with pytest.raises(ValueError):
        from_settings(titan(384), client=client)


def test_openai_compatible_embeddings_endpoint():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.update(body=body, auth=self.headers.get("authorization"), path=self.path)
            data = [{"index": i, "embedding": [float(i + 1)] * body["dimensions"]} for i, _ in enumerate(body["input"])]
            out = json.dumps({"data": list(reversed(data))}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        emb = from_settings(EmbedderSettings(provider="openai-compatible", model="text-embedding-3-small", dimensions=4,
                                             url=f"http://127.0.0.1:{server.server_port}/v1", timeout_ms=1000),
                            api_key="k")
        vectors = emb.embed(["a", "b"])
    finally:
        server.shutdown()
    assert seen["path"] == "/v1/embeddings" and seen["auth"] == "Bearer k"
    assert seen["body"] == {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4,
                            "encoding_format": "float"}
    assert vectors == [[0.5] * 4, [0.5] * 4]  # ordered by index, unit length


class Counting:
    """A local endpoint that counts requests and answers each with `status` (after `delay_s`)."""

    def __init__(self, status=503, delay_s=0.0):
        self.requests, self.headers = 0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                outer.requests += 1
                outer.headers.append(self.headers.get("authorization"))
                self.rfile.read(int(self.headers.get("content-length", 0)))
                if delay_s:
                    threading.Event().wait(delay_s)
                body = json.dumps({"message": "unavailable"}).encode() if status >= 400 else json.dumps(
                    {"data": [{"index": 0, "embedding": [1.0] * 4}]}).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()


def test_titan_on_the_request_path_makes_one_attempt_within_its_budget_then_breaks_the_circuit(monkeypatch):
    """botocore's `max_attempts: 1` meant one retry: a failing Titan cost every request two calls."""
    down = Counting(503)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", down.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    try:
        emb = from_settings(titan(256, timeout_ms=300), region="us-east-1")
        config = emb.backend.client.meta.config
        assert config.read_timeout == 0.3 and config.connect_timeout == 0.3
        for i in range(5):
            with pytest.raises(UpstreamError):
                emb.embed(["hello"])
            assert down.requests == i + 1  # one call per embedding, never a retry
        with pytest.raises(CircuitOpen):
            emb.embed(["hello"])  # the breaker is open: no call, an immediate miss
        assert down.requests == 5
    finally:
        down.close()


def test_a_hung_titan_costs_one_timeout(monkeypatch):
    hung = Counting(200, delay_s=2.0)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", hung.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    try:
        emb = from_settings(titan(256, timeout_ms=200), region="us-east-1")
        with pytest.raises(UpstreamError) as e:
            emb.embed(["hello"])
        assert e.value.status == 504 and hung.requests == 1
    finally:
        hung.close()


def test_the_lambda_reads_the_openai_compatible_embedder_key_from_secrets_manager(monkeypatch):
    import dataclasses

    from moto import mock_aws

    from llm_router.settings import Resources
    from llm_router.wiring import cache_embedder
    from tests.conftest import router_settings_of

    server = Counting(200)
    settings = router_settings_of("dev")
    settings = dataclasses.replace(settings, cache=dataclasses.replace(settings.cache, embedder=EmbedderSettings(
        provider="openai-compatible", model="text-embedding-3-small", dimensions=4, url=f"{server.url}/v1",
        timeout_ms=1000)))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        with mock_aws():
            sm = boto3.client("secretsmanager", region_name="us-east-1")
            arn = sm.create_secret(Name="embedder", SecretString=json.dumps({"apiKey": "sk-embed-123"}))["ARN"]
            env = {Resources.env_name("cache_embedder_secret_arn"): arn, "AWS_REGION": "us-east-1"}
            embedder = cache_embedder(settings, Resources.from_environment(env))
        embedder.embed(["hello"])
    finally:
        server.close()
    assert server.headers == ["Bearer sk-embed-123"]
