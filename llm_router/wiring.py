"""Wiring: the Router with its backends and cache, from the deployed environment
(settings + resource addresses + Secrets Manager) or from explicit parts (`serve`)."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Collection, Mapping, Optional, Union

from . import capabilities
from . import metric_names as m
from .backends import AzureOpenAI, Backend, Bedrock, OpenAICompatible
from .cache import ResponseCache
from .embeddings import CohereEmbeddings, EmbeddingsBackend, OpenAIEmbeddings, TitanEmbeddings
from .limits import Limiter
from .router import Metrics, Router
from .settings import Resources, RouterSettings, TierSettings

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


OPENAI_API = "https://api.openai.com/v1"


class SecretsManagerCredentials:
    """Deployed routers: each provider's credentials from its Secrets Manager secret, read once."""

    def __init__(self, res: Resources):
        self.res = res
        self._read: dict[str, Any] = {}

    def _secret(self, name: str, arn: Optional[str]) -> dict[str, Any]:
        if name not in self._read:
            self._read[name] = secret(arn)
        return self._read[name]

    def azure(self) -> dict[str, Any]:
        """{"endpoint", "apiKey" or "token"}"""
        return self._secret("azure", self.res.azure_openai_secret_arn)

    def openai(self) -> dict[str, Any]:
        """{"apiKey", "baseUrl"?}"""
        return self._secret("openai", self.res.openai_secret_arn)

    def self_hosted_key(self) -> Optional[str]:
        arn = self.res.self_hosted_api_key_secret_arn
        return self._secret("self-hosted", arn).get("value") if arn else None


class EnvironmentCredentials:
    """`serve` with the stack's own backends: credentials from the caller's environment, under the
    names the providers' own SDKs read."""

    AZURE_ENDPOINT, AZURE_KEY, AZURE_TOKEN = "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN"
    OPENAI_KEY, OPENAI_URL = "OPENAI_API_KEY", "OPENAI_BASE_URL"
    #: The key the stack's model servers require (vLLM reads the same variable).
    MODEL_SERVER_KEY = "VLLM_API_KEY"

    def __init__(self, env: Mapping[str, str], azure_endpoint: Optional[str] = None,
                 openai_base_url: Optional[str] = None):
        self.env, self.azure_endpoint, self.openai_base_url = env, azure_endpoint, openai_base_url

    def azure(self) -> dict[str, Any]:
        found = {"endpoint": self.env.get(self.AZURE_ENDPOINT) or self.azure_endpoint,
                 "apiKey": self.env.get(self.AZURE_KEY), "token": self.env.get(self.AZURE_TOKEN)}
        return {k: v for k, v in found.items() if v}

    def openai(self) -> dict[str, Any]:
        found = {"apiKey": self.env.get(self.OPENAI_KEY),
                 "baseUrl": self.env.get(self.OPENAI_URL) or self.openai_base_url}
        return {k: v for k, v in found.items() if v}

    def self_hosted_key(self) -> Optional[str]:
        return self.env.get(self.MODEL_SERVER_KEY) or None


Credentials = Union[SecretsManagerCredentials, EnvironmentCredentials]


def budget_field(tier: TierSettings) -> str:
    """`max_completion_tokens` for the OpenAI API (newer models refuse `max_tokens`) and Azure's
    reasoning deployments; `max_tokens` everywhere else (vLLM, TGI, older Azure deployments)."""
    reasoning = tier.backend in ("openai", "azure-openai") and capabilities.REASONING in capabilities.family(
        tier.backend, tier.model).features
    return "max_completion_tokens" if tier.backend == "openai" or reasoning else "max_tokens"


def backends(settings: RouterSettings, res: Resources, creds: Optional[Credentials] = None,
             only: Optional[Collection[str]] = None) -> dict[str, Backend]:
    """Every tier's backend, or those named in `only` (the quality evaluator builds its judge's
    alone: it may read that tier's secret and no other)."""
    creds = creds or SecretsManagerCredentials(res)
    t = settings.router.timeouts
    timing = {"connect_s": t.connect_s, "read_s": t.read_s}
    self_hosted, provisioned = res.json_map("self_hosted_endpoints"), res.json_map("bedrock_provisioned_arns")
    guardrail = {"id": settings.guardrail.id, "version": settings.guardrail.version} if settings.guardrail else None
    out: dict[str, Backend] = {}
    for tier in settings.tiers:
        name = tier.name
        if only is not None and name not in only:
            continue
        if tier.backend == "bedrock":
            out[name] = Bedrock(provisioned.get(name, tier.model), region=res.region, guardrail=guardrail, timeouts=t,
                                caps=capabilities.for_tier(tier),
                                remote_image_hosts=frozenset(settings.router.remote_image_hosts),
                                prompt_cache=tier.prompt_cache)
        elif tier.backend == "azure-openai":
            azure = creds.azure()
            out[name] = AzureOpenAI(azure["endpoint"], name, api_key=azure.get("apiKey"), token=azure.get("token"),
                                    api_version=tier.api_version or "2024-10-21", budget_field=budget_field(tier),
                                    **timing)
        elif tier.backend == "openai":
            hosted = creds.openai()
            out[name] = OpenAICompatible(hosted.get("baseUrl", OPENAI_API), tier.model, hosted["apiKey"],
                                         budget_field=budget_field(tier), **timing)
        elif tier.backend == "vllm-eks" and self_hosted.get(name):
            out[name] = OpenAICompatible(self_hosted[name], tier.model, creds.self_hosted_key(), **timing)
    return out


def embedders(settings: RouterSettings, res: Resources,
              creds: Optional[Credentials] = None) -> dict[str, EmbeddingsBackend]:
    """The `/v1/embeddings` aliases' backends, with credentials from Secrets Manager (or `creds`)."""
    creds = creds or SecretsManagerCredentials(res)
    out: dict[str, EmbeddingsBackend] = {}
    for e in settings.embeddings:
        if e.backend == "bedrock":
            cls = TitanEmbeddings if e.model.startswith("amazon.titan-embed") else CohereEmbeddings
            out[e.name] = cls(e.model, region=res.region)
        elif e.backend == "azure-openai":
            azure = creds.azure()
            out[e.name] = OpenAIEmbeddings.azure(azure["endpoint"], e.name, azure.get("apiKey"))
        elif e.backend == "openai":
            hosted = creds.openai()
            out[e.name] = OpenAIEmbeddings.at(hosted.get("baseUrl", OPENAI_API), e.model, hosted["apiKey"],
                                              send_dimensions=e.any_smaller)
        else:
            out[e.name] = OpenAIEmbeddings.at(e.url, e.model, send_dimensions=e.any_smaller)
    return out


class StartupError(Exception):
    """What a router cannot start without, every problem at once."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def missing(settings: RouterSettings, res: Resources, creds: EnvironmentCredentials) -> list[str]:
    """Each tier (and embeddings alias) whose credentials or endpoint the environment lacks, with
    the variable or option that would supply it — found at start-up, not at the first request."""
    e = EnvironmentCredentials
    kinds = [(t.name, t.backend) for t in settings.tiers] + [(m.name, m.backend) for m in settings.embeddings]
    problems: list[str] = []
    if any(kind == "bedrock" for _, kind in kinds) and not _aws_credentials(res.region):
        names = ", ".join(n for n, kind in kinds if kind == "bedrock")
        problems.append(f"{names} (bedrock): no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or log in with `aws sso login`")
    for name, kind in kinds:
        if kind == "azure-openai":
            azure = creds.azure()
            if "endpoint" not in azure:
                problems.append(f"{name} (azure-openai): no endpoint; set {e.AZURE_ENDPOINT}")
            if "apiKey" not in azure and "token" not in azure:
                problems.append(f"{name} (azure-openai): no credential; set {e.AZURE_KEY} or {e.AZURE_TOKEN}")
        elif kind == "openai" and "apiKey" not in creds.openai():
            problems.append(f"{name} (openai): no API key; set {e.OPENAI_KEY}")
    self_hosted = res.json_map("self_hosted_endpoints")
    for t in settings.tiers:
        if t.backend == "vllm-eks" and t.name not in self_hosted:
            problems.append(f"{t.name} (vllm-eks): no endpoint; pass --endpoint {t.name}=URL (e.g. a port-forward "
                            "of its model server: http://127.0.0.1:8000/v1)")
    return problems


def _aws_credentials(region: Optional[str]) -> bool:
    import boto3

    return boto3.Session(region_name=region).get_credentials() is not None


def cache(settings: RouterSettings, res: Resources, metrics: Metrics) -> Optional[ResponseCache]:
    """The response cache, or None: a cache that cannot be reached or authenticated at
    start-up leaves the router working uncached (logged and counted), never failing."""
    if not settings.cache.enabled or not res.cache_endpoint:
        return None
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
        embedder = cache_embedder(settings, res)
    except Exception as e:  # noqa: BLE001 - no embedder: the exact layer still works
        log.warning("semantic cache disabled: embedder unavailable (%s)", type(e).__name__)
        embedder = None
    response_cache = ResponseCache(client, embedder, settings.cache, on_metric=lambda n, v: metrics.add(n, v))
    response_cache.ensure_index()
    return response_cache


def cache_embedder(settings: RouterSettings, res: Resources):
    """The cache's embedder, with its API key from Secrets Manager (an OpenAI-compatible one)."""
    from .cache.embedders import from_settings

    key = secret(res.cache_embedder_secret_arn).get("apiKey")
    return from_settings(settings.cache.embedder, region=res.region, api_key=key)


def cache_checks(router: Router) -> Router:
    """The grey band's judge and the audit of semantic hits, when the stack turns them on; both
    ask the router's own tier backends."""
    response_cache, s = router.cache, router.settings.cache
    if response_cache is None:
        return router
    from .cache.audit import Auditor, Disagreements
    from .cache.grey_band import GreyBand
    from .cache.judge import CacheJudge

    band, audit = s.grey_band, s.audit
    if band.enabled and band.tier in router.backends:
        response_cache.grey_band = GreyBand(band, CacheJudge(router.backends[band.tier], band.tier))
    if audit.sample_rate and audit.judge_tier in router.backends:
        deadline = router.settings.router.timeouts.buffered_deadline_s

        def reask(tier: str, params: dict[str, Any]) -> dict[str, Any]:
            return router.backends[tier].complete(params, deadline)

        response_cache.auditor = Auditor(
            audit, reask, CacheJudge(router.backends[audit.judge_tier], audit.judge_tier),
            Disagreements(response_cache.client, response_cache.layout.prefix, audit.keep, audit.keep_days),
            response_cache.metric, judge_timeout_s=deadline, log_prompts=router.settings.router.log_prompts)
    return router


def sampler(settings: RouterSettings, res: Resources, metrics: Metrics):
    """The quality sampler writing to the stack's sample bucket, or None (sampling off)."""
    if settings.quality.sample_rate <= 0 or not res.quality_samples_bucket:
        return None
    from .quality.sampler import Sampler
    from .quality.store import S3Sink

    return Sampler(settings.quality, S3Sink(res.quality_samples_bucket, res.region), metrics)


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
    return cache_checks(Router(settings, backends(settings, res), response_cache, metrics, log_ or log,
                               embedders=embedders(settings, res), sampler=sampler(settings, res, metrics),
                               limiter=limiter(settings, res, metrics, response_cache)))


def own(settings: RouterSettings, region: Optional[str], endpoints: Mapping[str, str],
        env: Optional[Mapping[str, str]] = None, azure_endpoint: Optional[str] = None,
        openai_base_url: Optional[str] = None, response_cache: Optional[ResponseCache] = None,
        metrics: Optional[Metrics] = None) -> Router:
    """`serve` with the stack's own backends: Bedrock through boto3 with the caller's AWS credentials
    (botocore honours AWS_ENDPOINT_URL_BEDROCK_RUNTIME), Azure OpenAI and the OpenAI API with keys
    from the environment, self-hosted tiers at `endpoints` (tier → base URL). Raises
    `StartupError` naming everything missing."""
    res, creds = _from_caller(settings, region, endpoints, env, azure_endpoint, openai_base_url)
    return Router(settings, backends(settings, res, creds), response_cache, metrics, log,
                  embedders=embedders(settings, res, creds))


def own_backend(settings: RouterSettings, tier: str, region: Optional[str], endpoints: Mapping[str, str],
                env: Optional[Mapping[str, str]] = None, azure_endpoint: Optional[str] = None,
                openai_base_url: Optional[str] = None) -> Backend:
    """One tier's own backend with the caller's credentials (`slo evaluate` judges with it): only
    that tier's credentials must be present."""
    alone = dataclasses.replace(settings, tiers=(settings.tier(tier),), embeddings=())
    res, creds = _from_caller(alone, region, endpoints, env, azure_endpoint, openai_base_url)
    return backends(settings, res, creds, only=(tier,))[tier]


def _from_caller(settings: RouterSettings, region: Optional[str], endpoints: Mapping[str, str],
                 env: Optional[Mapping[str, str]], azure_endpoint: Optional[str],
                 openai_base_url: Optional[str]) -> tuple[Resources, EnvironmentCredentials]:
    import os

    creds = EnvironmentCredentials(os.environ if env is None else env, azure_endpoint, openai_base_url)
    res = dataclasses.replace(Resources.from_environment({}), region=region,
                              self_hosted_endpoints=json.dumps(dict(endpoints)))
    problems = missing(settings, res, creds)
    if problems:
        raise StartupError(problems)
    return res, creds


def local(settings: RouterSettings, upstream: str, response_cache: Optional[ResponseCache] = None,
          metrics: Optional[Metrics] = None, api_key: Optional[str] = None, sampler=None,
          limits: Optional[Limiter] = None) -> Router:
    """Every tier served by one OpenAI-compatible upstream (vLLM, TGI, a fake in tests)."""
    t = settings.router.timeouts
    served = {tier.name: OpenAICompatible(upstream, tier.model, api_key, connect_s=t.connect_s,
                                          read_s=t.read_s) for tier in settings.tiers}
    embedding = {e.name: OpenAIEmbeddings.at(upstream, e.model, api_key) for e in settings.embeddings}
    return cache_checks(Router(settings, served, response_cache, metrics, log, embedders=embedding, sampler=sampler,
                               limiter=limits))
