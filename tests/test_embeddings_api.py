"""`/v1/embeddings` through `serve` with the real `openai` client, the Bedrock
embeddings backends with botocore's Stubber, and the `serving.embeddings` config rules."""

from __future__ import annotations

import io
import json

import boto3
import httpx
import openai
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router.embeddings import CohereEmbeddings, TitanEmbeddings
from tests.conftest import config_problems, example_config, running, validated_config

KEY = "sk-test-embed"


@pytest.fixture(scope="module")
def served():
    with FakeUpstream() as upstream:
        local = build(validated_config("dev"), upstream.url, {KEY: "acme"}, cache=False)
        with running(local.app) as base:
            yield openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0), base, upstream


def test_embeddings_with_the_sdk_defaults_and_floats(served):
    client, _, upstream = served
    resp = client.embeddings.create(model="embed", input=["one", "three"])  # the SDK asks for base64
    assert [len(d.embedding) for d in resp.data] == [1024, 1024]
    assert [d.embedding[0] for d in resp.data] == [3.0, 5.0]  # in input order, decoded from base64 float32
    assert resp.usage.prompt_tokens == 6 and resp.model == "embed"
    floats = client.embeddings.create(model="embed", input="hello", encoding_format="float", dimensions=256)
    assert len(floats.data[0].embedding) == 256 and floats.data[0].embedding[0] == 5.0
    assert upstream.calls[-1]["dimensions"] == 256


def test_models_lists_the_embeddings_alias(served):
    assert "embed" in [m.id for m in served[0].models.list().data]


@pytest.mark.parametrize("body,status,param", [
    ({"model": "embed", "input": []}, 400, "input"),
    ({"model": "embed", "input": ["ok", 7]}, 400, "input[1]"),
    ({"model": "embed", "input": [[1, 2, 3]]}, 400, "input[0]"),
    ({"model": "embed", "input": [""]}, 400, "input[0]"),
    ({"model": "embed", "input": ["x"] * 33}, 400, "input"),
    ({"model": "embed", "input": ["word " * 9000]}, 400, "input[0]"),
    ({"model": "embed", "input": "x", "dimensions": 300}, 400, "dimensions"),
    ({"model": "embed", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": "fast", "input": "x"}, 400, "model"),
    ({"model": "nope", "input": "x"}, 404, "model"),
    ({"input": "x"}, 400, "model"),
])
def test_bad_embeddings_requests_are_4xx_with_an_openai_error_body(served, body, status, param):
    r = httpx.post(f"{served[1]}/v1/embeddings", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == status and r.json()["error"]["param"] == param, r.text


def test_an_embeddings_alias_on_the_chat_route_names_what_is_allowed(served):
    with pytest.raises(openai.BadRequestError) as e:
        served[0].chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "not_a_chat_model" and "auto, fast, smart" in e.value.message


def test_embeddings_need_a_key(served):
    r = httpx.post(f"{served[1]}/v1/embeddings", json={"model": "embed", "input": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def _bedrock():
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _body(payload: dict) -> dict:
    raw = json.dumps(payload).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def test_titan_embeds_one_text_per_call_and_counts_tokens():
    client = _bedrock()
    stub = Stubber(client)
    for n in (2, 3):
        stub.add_response("invoke_model", _body({"embedding": [0.1] * 256, "inputTextTokenCount": n}),
                          {"modelId": "amazon.titan-embed-text-v2:0", "contentType": "application/json",
                           "accept": "application/json", "body": ANY})
    with stub:
        vectors, tokens = TitanEmbeddings(client=client).embed(["a b", "c d e"], 256, 5)
    assert len(vectors) == 2 and tokens == 5


def test_cohere_embeds_a_batch_and_asks_v4_for_its_size():
    client = _bedrock()
    stub = Stubber(client)
    stub.add_response("invoke_model", _body({"embeddings": {"float": [[0.2] * 512, [0.3] * 512]}}),
                      {"modelId": "cohere.embed-v4:0", "contentType": "application/json",
                       "accept": "application/json", "body": ANY})
    stub.add_client_error("invoke_model", "ThrottlingException", http_status_code=429)
    with stub:
        vectors, _ = CohereEmbeddings("cohere.embed-v4:0", client=client).embed(["x", "y"], 512, 5)
        assert [v[0] for v in vectors] == [0.2, 0.3]
        from llm_router.resilience import UpstreamError

        with pytest.raises(UpstreamError) as e:
            CohereEmbeddings("cohere.embed-v4:0", client=client).embed(["x"], 512, 5)
    assert e.value.status == 429 and e.value.retryable


@pytest.mark.parametrize("entry,path,fragment", [
    ({"name": "fast", "backend": "bedrock", "model": "amazon.titan-embed-text-v2:0"}, "serving.embeddings[0].name",
     "unique"),
    ({"name": "vec", "backend": "bedrock", "model": "amazon.titan-embed-text-v2:0", "dimensions": 300},
     "serving.embeddings[0].dimensions", "1024, 512, 256"),
    ({"name": "vec", "backend": "openai-compatible", "model": "bge-large"}, "serving.embeddings[0].dimensions",
     "required"),
    ({"name": "vec", "backend": "bedrock", "model": "us.anthropic.claude-sonnet-4-20250514-v1:0"},
     "serving.embeddings[0].model", "not a Bedrock embeddings model"),
    ({"name": "vec", "backend": "openai", "model": "text-embedding-3-small"}, "serving.openai", "required"),
    ({"name": "vec", "backend": "bedrock", "model": "cohere.embed-english-v3", "maxInputs": 500},
     "serving.embeddings[0].maxInputs", "at most 96"),
])
def test_embeddings_config_errors_name_the_key(entry, path, fragment):
    config = example_config("dev")
    config["llm-blueprint:serving"]["embeddings"] = [entry]
    found = [p for p in config_problems(config) if p.path == path]
    assert found and fragment in found[0].render(), [p.render() for p in config_problems(config)]
