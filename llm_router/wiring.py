"""Wiring: the Router with its backends and cache, from the deployed environment
(settings + resource addresses + Secrets Manager) or from explicit parts (`serve`)."""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from . import metric_names as m
from .backends import AzureOpenAI, Backend, Bedrock, OpenAICompatible
from .cache import ResponseCache
from .embeddings import CohereEmbeddings, EmbeddingsBackend, OpenAIEmbeddings, TitanEmbeddings
from .limits import Limiter
from .router import Metrics, Router
from .settings import Resources, RouterSettings

log = logging.getLogger("llm_router")


def secret(arn: Optional[str]) -> dict[str, Any]:
    """A Secrets Manager secret as a dict (a plain string becomes {"value": …})."""
    if not arn:
        return {}
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    try:
        data = json.loads(value)
    except ValueError:
        return {"value": value}
    return data if isinstance(data, dict) else {"value": value}


def backends(settings: RouterSettings, res: Resources) -> dict[str, Backend]:
    t = settings.router.timeouts
    timing = {"connect_s": t.connect_s, "read_s": t.read_s}
    self_hosted, provisioned = res.json_map("self_hosted_endpoints"), res.json_map("bedrock_provisioned_arns")
    azure: dict[str, Any] = {}
    hosted: dict[str, Any] = {}
    self_hosted_key: Optional[str] = None
    out: dict[str, Backend] = {}
    for tier in settings.tiers:
        name = tier.name
        if tier.backend == "bedrock":
            guardrail = {"id": settings.guardrail.id, "version": settings.guardrail.version} if settings.guardrail else None
            out[name] = Bedrock(provisioned.get(name, tier.model), region=res.region, guardrail=guardrail, timeouts=t)
        elif tier.backend == "azure-openai":
            azure = azure or secret(res.azure_openai_secret_arn)
            out[name] = AzureOpenAI(azure["endpoint"], name, api_key=azure.get("apiKey"), token=azure.get("token"),
                                    **timing)
        elif tier.backend == "openai":
            hosted = hosted or secret(res.openai_secret_arn)
            out[name] = OpenAICompatible(hosted.get("baseUrl", "https://api.openai.com/v1"), tier.model,
                                         hosted["apiKey"], **timing)
        elif tier.backend == "vllm-eks" and self_hosted.get(name):
            if self_hosted_key is None and res.self_hosted_api_key_secret_arn:
                self_hosted_key = secret(res.self_hosted_api_key_secret_arn).get("value")
            out[name] = OpenAICompatible(self_hosted[name], tier.model, self_hosted_key, **timing)
    return out


def embedders(settings: RouterSettings, res: Resources) -> dict[str, EmbeddingsBackend]:
    """The `/v1/embeddings` aliases' backends, with credentials from Secrets Manager."""
    out: dict[str, EmbeddingsBackend] = {}
    for e in settings.embeddings:
        if e.backend == "bedrock":
            cls = TitanEmbeddings if e.model.startswith("amazon.titan-embed") else CohereEmbeddings
            out[e.name] = cls(e.model, region=res.region)
        elif e.backend == "azure-openai":
            azure = secret(res.azure_openai_secret_arn)
            out[e.name] = OpenAIEmbeddings.azure(azure["endpoint"], e.name, azure.get("apiKey"))
        elif e.backend == "openai":
            hosted = secret(res.openai_secret_arn)
            out[e.name] = OpenAIEmbeddings.at(hosted.get("baseUrl", "https://api.openai.com/v1"), e.model,
                                              hosted["apiKey"], send_dimensions=e.any_smaller)
        else:
            out[e.name] = OpenAIEmbeddings.at(e.url, e.model, send_dimensions=e.any_smaller)
    return out


def cache(settings: RouterSettings, res: Resources, metrics: Metrics) -> Optional[ResponseCache]:
    """The response cache, or None: a cache that cannot be reached or authenticated at
    start-up leaves the router working uncached (logged and counted), never failing."""
    if not settings.cache.enabled or not res.cache_endpoint:
        return None
    from .cache.embedders import from_settings
    from .cache.store import connect

    try:
        password = secret(res.cache_secret_arn).get("value")
        client = connect(res.cache_endpoint, 6379, password, tls=True, timeout_ms=settings.cache.timeout_ms)
        client.ping()
    except Exception as e:  # noqa: BLE001 - no cache is better than no router
        log.error("cache disabled at start-up: %s", type(e).__name__)
        metrics.add(m.CACHE_FAIL_OPEN, 1)
        return None
    try:
        embedder = from_settings(settings.cache.embedder, region=res.region)
    except Exception as e:  # noqa: BLE001 - no embedder: the exact layer still works
        log.warning("semantic cache disabled: embedder unavailable (%s)", type(e).__name__)
        embedder = None
    response_cache = ResponseCache(client, embedder, settings.cache, on_metric=lambda n, v: metrics.add(n, v))
    response_cache.ensure_index()
    return response_cache


def limiter(settings: RouterSettings, res: Resources, metrics: Metrics,
            response_cache: Optional[ResponseCache]) -> Optional[Limiter]:
    """Per-key and per-tenant limits, counted in the cache's Valkey (the cache's client when it
    has one; else a client of its own, which fails open while Valkey is unreachable)."""
    if not res.cache_endpoint:
        return None
    if response_cache is not None:
        client = response_cache.client
    else:
        from .cache.store import connect

        try:
            password = secret(res.cache_secret_arn).get("value")
        except Exception as e:  # noqa: BLE001 - no limits is better than no router
            log.error("rate limits off at start-up: %s", type(e).__name__)
            metrics.add(m.RATE_LIMIT_FAIL_OPEN, 1)
            return None
        client = connect(res.cache_endpoint, 6379, password, tls=True, timeout_ms=settings.cache.timeout_ms)
    return Limiter(client, settings.router.rate_limits, on_metric=lambda n, v: metrics.add(n, v))


def from_environment(settings: RouterSettings, res: Resources, metrics: Metrics, log_=None) -> Router:
    response_cache = cache(settings, res, metrics)
    return Router(settings, backends(settings, res), response_cache, metrics, log_ or log,
                  embedders=embedders(settings, res), limiter=limiter(settings, res, metrics, response_cache))


def local(settings: RouterSettings, upstream: str, response_cache: Optional[ResponseCache] = None,
          metrics: Optional[Metrics] = None, api_key: Optional[str] = None,
          limits: Optional[Limiter] = None) -> Router:
    """Every tier served by one OpenAI-compatible upstream (vLLM, TGI, a fake in tests)."""
    t = settings.router.timeouts
    served = {tier.name: OpenAICompatible(upstream, tier.model, api_key, connect_s=t.connect_s,
                                          read_s=t.read_s) for tier in settings.tiers}
    embedding = {e.name: OpenAIEmbeddings.at(upstream, e.model, api_key) for e in settings.embeddings}
    return Router(settings, served, response_cache, metrics, log, embedders=embedding, limiter=limits)
