"""The managed embedders: Titan v2 through boto3 (Stubber) and an OpenAI-compatible /v1/embeddings."""

from __future__ import annotations

import io
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from llm_router.cache.embedders import from_settings
from llm_router.settings import EmbedderSettings


def titan(dimensions):
    return EmbedderSettings(provider="bedrock-titan-v2", model=None, dimensions=dimensions, url=None)


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
                                             url=f"http://127.0.0.1:{server.server_port}/v1"), api_key="k")
        vectors = emb.embed(["a", "b"])
    finally:
        server.shutdown()
    assert seen["path"] == "/v1/embeddings" and seen["auth"] == "Bearer k"
    assert seen["body"] == {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4,
                            "encoding_format": "float"}
    assert vectors == [[0.5] * 4, [0.5] * 4]  # ordered by index, unit length
