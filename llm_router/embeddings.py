"""`/v1/embeddings`: OpenAI's request and response shapes over Bedrock (Titan Text
Embeddings v2, Cohere Embed), Azure OpenAI and OpenAI-compatible servers.

The backends here also serve the semantic cache's embedder (`cache/embedders.py`),
so one client per provider exists in the data plane.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, Optional, Protocol, Sequence

from .backends import bedrock_error, post_json
from .errors import ApiError, bad_request
from .requests import json_object
from .resilience import UpstreamError
from .settings import EmbeddingModelSettings
from .tokens import count_text, reported

ENCODINGS = ("float", "base64")


def checked(vectors: Any, count: int) -> list[list[float]]:
    """The upstream's vectors, or its failure (counted against it) when they are not one list
    of numbers per input: a 200 with nonsense must not crash the request."""
    if not isinstance(vectors, list) or len(vectors) != count or not all(
            isinstance(v, list) and v and isinstance(v[0], (int, float)) for v in vectors):
        raise UpstreamError(502, "embeddings upstream sent something other than one vector per input",
                            retryable=False)
    return vectors


def _parsed(resp: Any) -> Any:
    """A Bedrock InvokeModel answer's JSON body, or the upstream's failure."""
    try:
        return json.loads(resp["body"].read())
    except (KeyError, TypeError, ValueError) as e:
        raise UpstreamError(502, "embeddings upstream sent an answer that is not JSON", retryable=False) from e


class EmbeddingsBackend(Protocol):
    kind: str

    def embed(self, texts: Sequence[str], dimensions: int, timeout_s: float) -> tuple[list[list[float]], int]:
        """Vectors in input order, and the prompt tokens the provider counted."""


class TitanEmbeddings:
    """Titan Text Embeddings v2 on Bedrock: one text per call; 256, 512 or 1024 dimensions."""

    kind = "bedrock"

    def __init__(self, model: str = "amazon.titan-embed-text-v2:0", client=None, region: Optional[str] = None,
                 read_timeout_s: float = 10.0):
        self.model = model
        self.client = client or _bedrock(region, read_timeout_s)

    def embed(self, texts, dimensions, timeout_s):
        vectors, tokens = [], 0
        for text in texts:
            try:
                resp = self.client.invoke_model(
                    modelId=self.model, contentType="application/json", accept="application/json",
                    body=json.dumps({"inputText": text, "dimensions": dimensions, "normalize": True}))
            except Exception as e:  # noqa: BLE001 - botocore's errors, in the router's terms
                raise bedrock_error(e) from e
            data = _parsed(resp)
            vectors += checked([data.get("embedding") if isinstance(data, dict) else None], 1)
            tokens += reported(data.get("inputTextTokenCount"))
        return vectors, tokens


class CohereEmbeddings:
    """Cohere Embed on Bedrock: up to 96 texts per call."""

    kind = "bedrock"

    def __init__(self, model: str, client=None, region: Optional[str] = None):
        self.model = model
        self.client = client or _bedrock(region)

    def embed(self, texts, dimensions, timeout_s):
        request: dict[str, Any] = {"texts": list(texts), "input_type": "search_document", "embedding_types": ["float"]}
        if self.model.startswith("cohere.embed-v4"):
            request["output_dimension"] = dimensions
        try:
            resp = self.client.invoke_model(modelId=self.model, contentType="application/json",
                                            accept="application/json", body=json.dumps(request))
        except Exception as e:  # noqa: BLE001
            raise bedrock_error(e) from e
        data = _parsed(resp)
        found = data.get("embeddings") if isinstance(data, dict) else None
        vectors = found.get("float") if isinstance(found, dict) else found
        return checked(vectors, len(texts)), sum(count_text(t) for t in texts)  # Cohere on Bedrock counts none


class OpenAIEmbeddings:
    """Any `/v1/embeddings` endpoint: the OpenAI API, an in-cluster server, or (with
    `azure=True`, `url` being the deployment's) Azure OpenAI."""

    kind = "openai-compatible"

    def __init__(self, url: str, model: str, api_key: Optional[str] = None, azure: bool = False,
                 send_dimensions: bool = True):
        self.url, self.model = url, model
        self.kind = "azure-openai" if azure else "openai-compatible"
        self.headers = ({"api-key": api_key} if azure else {"authorization": f"Bearer {api_key}"}) if api_key else {}
        self.send_dimensions = send_dimensions

    @classmethod
    def at(cls, base_url: str, model: str, api_key: Optional[str] = None, **kw) -> "OpenAIEmbeddings":
        return cls(base_url.rstrip("/") + "/embeddings", model, api_key, **kw)

    @classmethod
    def azure(cls, endpoint: str, deployment: str, api_key: Optional[str] = None,
              api_version: str = "2024-10-21") -> "OpenAIEmbeddings":
        url = f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/embeddings?api-version={api_version}"
        return cls(url, deployment, api_key, azure=True)

    def embed(self, texts, dimensions, timeout_s):
        body: dict[str, Any] = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        if self.send_dimensions:
            body["dimensions"] = dimensions
        data = post_json(self.url, body, self.headers, timeout_s)
        try:
            rows = sorted(data["data"], key=lambda d: d["index"])
            vectors = [row["embedding"] for row in rows]
        except (KeyError, TypeError) as e:
            raise UpstreamError(502, "embeddings upstream sent an unexpected body") from e
        if len(vectors) != len(texts):
            raise UpstreamError(502, f"embeddings upstream returned {len(vectors)} vectors for {len(texts)} inputs")
        usage = data.get("usage")
        return checked(vectors, len(texts)), reported(usage.get("prompt_tokens") if isinstance(usage, dict) else 0)


def _bedrock(region: Optional[str], read_timeout_s: float = 10.0):
    """One attempt per call (botocore's `max_attempts` counts retries, so 1 meant two calls): the
    router's own retry policy, or none on the cache's request path, decides about retrying."""
    import boto3
    from botocore.config import Config

    return boto3.client("bedrock-runtime", region_name=region, config=Config(
        retries={"total_max_attempts": 1}, connect_timeout=min(2.0, read_timeout_s), read_timeout=read_timeout_s))


# ------------------------------------------------------------------ request
def parse(raw: bytes, max_bytes: int, models: dict[str, EmbeddingModelSettings],
          chat_aliases: Sequence[str]) -> tuple[EmbeddingModelSettings, list[str], str, int]:
    """(model, inputs, encoding, dimensions) of an embeddings request, or a 4xx."""
    body = json_object(raw, max_bytes)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise bad_request("'model' is required: an embeddings model alias", "model", "model_required")
    model = models.get(name)
    if model is None:
        allowed = ", ".join(models) or "none (this stack serves no embeddings models)"
        if name in chat_aliases:
            raise bad_request(f"'{name}' is a chat model; embeddings models here: {allowed}", "model",
                              "not_an_embeddings_model")
        raise ApiError(404, f"The model '{name}' does not exist; embeddings models here: {allowed}",
                       code="model_not_found", param="model")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise bad_request("'input' must be a string or a non-empty array of strings", "input")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise bad_request(f"input[{i}] must be a string (token arrays are not accepted)", f"input[{i}]")
        if not text:
            raise bad_request(f"input[{i}] is empty", f"input[{i}]")
    if len(texts) > model.max_inputs:
        raise bad_request(f"'{name}' takes at most {model.max_inputs} inputs per request; got {len(texts)}", "input",
                          "too_many_inputs")
    for i, text in enumerate(texts):
        tokens = count_text(text)
        if tokens > model.max_input_tokens:
            raise bad_request(f"input[{i}] is about {tokens} tokens; '{name}' takes at most {model.max_input_tokens}",
                              f"input[{i}]", "input_too_long")
    encoding = body.get("encoding_format", "float")
    if encoding not in ENCODINGS:
        raise bad_request(f"'encoding_format' must be one of {', '.join(ENCODINGS)}", "encoding_format")
    dimensions = body.get("dimensions", model.default_dimensions)
    allowed_dims = (1 <= dimensions <= model.dimensions[0]) if model.any_smaller and isinstance(dimensions, int) \
        else dimensions in model.dimensions
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not allowed_dims:
        sizes = f"1..{model.dimensions[0]}" if model.any_smaller else ", ".join(map(str, model.dimensions))
        raise bad_request(f"'{name}' returns {sizes} dimensions", "dimensions", "invalid_dimensions")
    return model, texts, encoding, dimensions


def response(alias: str, vectors: list[list[float]], encoding: str, prompt_tokens: int) -> dict[str, Any]:
    def encode(v: list[float]):
        if encoding == "float":
            return v
        return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()

    return {"object": "list", "model": alias,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
