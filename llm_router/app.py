"""Wiring: the Router with its backends, cache and embedder, from the
environment (Lambda) or from explicit arguments (`llm-blueprint serve`)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

from .backends import AzureOpenAI, Backend, Bedrock, OpenAICompatible
from .cache import CacheSettings, ResponseCache
from .config import RouterConfig
from .router import Metrics, Router

log = logging.getLogger("llm_router")


def _secret(arn: Optional[str]) -> dict[str, Any]:
    if not arn:
        return {}
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    try:
        return json.loads(value)
    except ValueError:
        return {"value": value}


def backends_from_environment(config: RouterConfig, env: dict[str, str]) -> dict[str, Backend]:
    region = env.get("AWS_REGION")
    self_hosted = json.loads(env.get("SELF_HOSTED_ENDPOINTS") or "{}")
    provisioned = json.loads(env.get("BEDROCK_PROVISIONED_ARNS") or "{}")
    azure: dict[str, Any] = {}
    hosted: dict[str, Any] = {}
    out: dict[str, Backend] = {}
    for name, tier in config.tiers.items():
        if tier.backend == "bedrock":
            out[name] = Bedrock(provisioned.get(name, tier.model), region=region, guardrail=config.guardrail)
        elif tier.backend == "azure-openai":
            azure = azure or _secret(env.get("AZURE_OPENAI_SECRET_ARN"))
            out[name] = AzureOpenAI(azure["endpoint"], name, api_key=azure.get("apiKey"), token=azure.get("token"))
        elif tier.backend == "openai":
            hosted = hosted or _secret(env.get("OPENAI_SECRET_ARN"))
            out[name] = OpenAICompatible(hosted.get("baseUrl", "https://api.openai.com/v1"), tier.model,
                                         hosted["apiKey"])
        elif tier.backend == "vllm-eks" and self_hosted.get(name):
            out[name] = OpenAICompatible(self_hosted[name], tier.model)
    return out


def cache_from_environment(config: RouterConfig, env: dict[str, str], metrics: Metrics) -> Optional[ResponseCache]:
    if not config.cache.get("enabled", True) or not env.get("CACHE_ENDPOINT"):
        return None
    from .cache.embedders import from_settings
    from .cache.store import connect

    settings = CacheSettings.from_router_settings(config.cache)
    password = _secret(env.get("CACHE_SECRET_ARN")).get("value")
    client = connect(env["CACHE_ENDPOINT"], 6379, password, tls=True, timeout_ms=settings.timeout_ms)
    try:
        embedder = from_settings(config.cache.get("embedder", {}), region=env.get("AWS_REGION"))
    except Exception:  # noqa: BLE001 - no embedder: the exact layer still works
        log.warning("semantic cache disabled: embedder unavailable")
        embedder = None
    cache = ResponseCache(client, embedder, settings, on_metric=lambda n, v: metrics.add(n, v))
    cache.ensure_index()
    return cache


def from_environment(metrics: Metrics, env: Optional[dict[str, str]] = None) -> Router:
    env = dict(os.environ if env is None else env)
    config = RouterConfig.from_settings(json.loads(env.get("LLM_ROUTER_SETTINGS") or "{}"))
    return Router(config, backends_from_environment(config, env), cache_from_environment(config, env, metrics),
                  metrics, log)


def local(config: RouterConfig, upstream: str, cache: Optional[ResponseCache] = None,
          metrics: Optional[Metrics] = None, api_key: Optional[str] = None) -> Router:
    """Every tier served by one OpenAI-compatible upstream (vLLM, TGI, a fake in tests)."""
    backends = {name: OpenAICompatible(upstream, tier.model, api_key) for name, tier in config.tiers.items()}
    return Router(config, backends, cache, metrics, log)
