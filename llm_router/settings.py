"""The settings contract between the stack config and the data plane.

The IaC side (`components/router_settings.py`) builds these objects from the
validated stack config — by keyword, so a field renamed in the schema fails
the plan — and hands them to the router as JSON (`LLM_ROUTER_SETTINGS`). The
data plane parses that JSON with `load()`, which is strict: an unknown key, a
missing key or a value of the wrong type is a `SettingsError` naming its path,
never a silent default. Defaults live in the stack schema only; nothing here
has one.

Frozen dataclasses rather than pydantic: the router Lambda imports this at
every cold start, and pydantic measured +130–150 ms there (README, "Speed").

Deploy-time addresses (endpoints, secret ARNs) are not known when a plan is
reviewed, so they travel apart from the settings, as `Resources` read from
environment variables whose names are declared here once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, TypeVar, Union

from .timeouts import Timeouts

T = TypeVar("T")

SETTINGS_ENV = "LLM_ROUTER_SETTINGS"

BackendKind = Literal["bedrock", "azure-openai", "vllm-eks", "openai"]
#: When a tier's requests use the response cache (`llm_router/cache/policy.py`).
CacheWhen = Literal["never", "deterministic", "repeats", "always"]
EmbeddingsBackendKind = Literal["bedrock", "azure-openai", "openai", "openai-compatible"]


class SettingsError(ValueError):
    """The router's settings do not match the contract (a deployment bug, not a user error)."""


# --------------------------------------------------------------------- tiers
@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    #: Prompt tokens read from the provider's prompt cache; None: priced as input.
    cached_input_per_mtok: Optional[float]
    #: Prompt tokens written to the provider's prompt cache (Bedrock); None: priced as input.
    cache_write_per_mtok: Optional[float]


@dataclass(frozen=True)
class PromptCacheSettings:
    """Where a Bedrock tier puts cache points (`llm_router/prompt_cache.py`)."""

    system: bool
    tools: bool


@dataclass(frozen=True)
class ModelServerSettings:
    """How a self-hosted (vllm-eks) model server runs, as far as what it can do follows from it."""

    engine: Literal["vllm", "tgi"]
    #: vLLM's `--tool-call-parser` (with `--enable-auto-tool-choice`); None: no tool calling.
    tool_call_parser: Optional[str]
    #: vLLM's `--reasoning-parser`; None: no separate reasoning.
    reasoning_parser: Optional[str]
    #: The model takes images (a multimodal model).
    image_input: bool
    max_model_len: int


@dataclass(frozen=True)
class TierSettings:
    """A model alias the router serves, the budgets it enforces and what decides its capabilities
    (`llm_router.capabilities.for_tier`)."""

    name: str
    backend: BackendKind
    model: str
    max_prompt_tokens: int
    max_tokens: int
    min_tokens_per_second: float
    fallback: Optional[str]
    #: None: no price configured (cost metrics count 0).
    price: Optional[Price]
    #: Bedrock: the model family (a family name or model id) when `model` is an opaque ARN.
    family_hint: Optional[str]
    #: azure-openai: the data-plane API version the router calls.
    api_version: Optional[str]
    #: vllm-eks: how its server runs.
    server: Optional[ModelServerSettings]
    prompt_cache: PromptCacheSettings


@dataclass(frozen=True)
class TieringSettings:
    cheap_tier: Optional[str]
    expensive_tier: Optional[str]
    long_prompt_tokens: int
    long_conversation_turns: int
    keywords: tuple[str, ...]
    code_blocks: bool


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int
    max_messages: int


@dataclass(frozen=True)
class RateLimit:
    """None: no limit."""

    requests_per_minute: Optional[int]
    tokens_per_day: Optional[int]


@dataclass(frozen=True)
class RateLimitSettings:
    """`router.rateLimits`: enforced in Valkey by `llm_router.limits`."""

    #: Every key's limits unless the key has its own (stored with it in the API-keys secret).
    per_key: RateLimit
    #: Every tenant's limits (all its keys together) unless `tenants` names it.
    per_tenant: RateLimit
    tenants: dict[str, RateLimit]


@dataclass(frozen=True)
class FrontDoorSettings:
    """`router` in the stack config, as far as the data plane reads it."""

    default_tier: str
    tiering: TieringSettings
    max_tokens_policy: Literal["clamp", "reject"]
    limits: RequestLimits
    #: Derived in one place (`llm_router.timeouts.derive`) from `router.timeoutSeconds`.
    timeouts: Timeouts
    #: Prompt text in logs only when the stack opts in.
    log_prompts: bool
    #: Hosts whose http(s) image URLs a request may carry (the router, or the model server behind
    #: it, fetches them); every other remote image is a 400. Empty: images travel inline only.
    remote_image_hosts: tuple[str, ...]
    rate_limits: RateLimitSettings


# --------------------------------------------------------------------- cache
@dataclass(frozen=True)
class EmbedderSettings:
    provider: Literal["local-minilm", "bedrock-titan-v2", "openai-compatible"]
    model: Optional[str]
    dimensions: int
    url: Optional[str]
    #: One embedding call's budget on the request path (no retries).
    timeout_ms: int


@dataclass(frozen=True)
class VerifierSettings:
    """The near-miss verifier's tunables (calibrated defaults: `cache.verifier.DEFAULT`)."""

    #: Texts longer than this are not served semantically (and the checks never run on them).
    max_chars: int
    #: Content words one question may have that the other lacks, when it is reworded.
    max_unmatched: int
    #: Below this word-pair overlap a question counts as reworded; at or above it, a changed
    #: content word is a changed fact ("brake pads" -> "brake discs").
    reworded_below: float


@dataclass(frozen=True)
class CacheTtl:
    default_seconds: int
    tiers: dict[str, int]


@dataclass(frozen=True)
class CacheWhenSettings:
    """`cache.cacheWhen` and its per-tier overrides."""

    default: CacheWhen
    tiers: dict[str, CacheWhen]


@dataclass(frozen=True)
class GreyBandSettings:
    """A model asked "same question?" for candidates just below the similarity threshold."""

    enabled: bool
    #: Candidates from this similarity up to the threshold that the verifier passes are judged.
    lower_threshold: float
    #: The tier asked (the stack's cheapest unless set).
    tier: str
    timeout_ms: int
    #: Verdicts are kept per pair of questions (per scope) this long.
    verdict_ttl_seconds: int


@dataclass(frozen=True)
class AuditSettings:
    """A share of semantic hits re-asked of the model off the request path and judged."""

    #: 0 turns the audit off.
    sample_rate: float
    #: The tier that judges (the stack's cheapest unless set).
    judge_tier: str
    #: Audits waiting at most; more are dropped (counted), never queued on the request path.
    queue_size: int
    #: Disagreements kept per tenant in the cache (newest first), and for how long.
    keep: int
    keep_days: int


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool
    embedder: EmbedderSettings
    similarity_threshold: float
    verifier: VerifierSettings
    #: Answers larger than this (bytes of JSON) are not cached.
    max_entry_bytes: int
    #: At or below it a request is deterministic; above it (or unset) it is sampled.
    max_cacheable_temperature: float
    cache_when: CacheWhenSettings
    grey_band: GreyBandSettings
    audit: AuditSettings
    ttl: CacheTtl
    timeout_ms: int
    ef_runtime: int
    dedicated_indexes: int


# ---------------------------------------------------------------- embeddings
@dataclass(frozen=True)
class EmbeddingModelSettings:
    """An alias served at `/v1/embeddings` (e.g. `embed`)."""

    name: str
    backend: EmbeddingsBackendKind
    model: str
    #: Base URL of an OpenAI-compatible server (openai-compatible only).
    url: Optional[str]
    #: Output dimensions the model can return (empty: only its native size).
    dimensions: tuple[int, ...]
    default_dimensions: int
    #: Any size from 1 up to the native one may be asked for.
    any_smaller: bool
    max_inputs: int
    max_input_tokens: int
    price: Optional[Price]


# ------------------------------------------------------------------- quality
@dataclass(frozen=True)
class QualitySettings:
    """`quality` in the stack config: which answers the router samples for the faithfulness
    SLO, and how the evaluator judges them (README: "Quality SLO")."""

    #: Share of answered requests sampled, 0–1 (0: none).
    sample_rate: float
    #: Tenants whose requests are never sampled.
    opt_out_tenants: tuple[str, ...]
    #: E-mail addresses, phone and card numbers, keys and secrets are masked before a sample
    #: is stored.
    redact: bool
    #: The tier whose model judges faithfulness.
    judge_tier: str
    #: Hours between evaluator runs; each run reads the samples of the hours since the last.
    every_hours: int
    #: Judged samples a run needs before it publishes a score (else it publishes the count only).
    min_samples: int
    #: Samples one run judges at most: a random subset of its window.
    max_samples: int


@dataclass(frozen=True)
class JobsSettings:
    """`jobs` in the stack config: the job API and the Batch API (`llm_router/jobs`)."""

    enabled: bool
    #: Workers at once: the SQS event source's maximumConcurrency deployed, threads under `serve`.
    maximum_concurrency: int
    #: Largest upload `/v1/files` accepts, bytes.
    max_file_bytes: int
    #: Requests one batch input file may hold.
    max_batch_requests: int
    #: Days a finished job, batch or file is kept (the table's TTL, the bucket's expiry).
    retention_days: int
    #: Deliveries of one message before it goes to the dead-letter queue and its job fails.
    max_receives: int
    #: The worker function's timeout, s: a job's model call gets this less a margin.
    worker_timeout_s: int
    #: Batches on Bedrock tiers with at least `bedrock_batch_min_records` requests go to
    #: Bedrock batch inference (CreateModelInvocationJob) instead of the worker.
    bedrock_batch: bool
    bedrock_batch_min_records: int


@dataclass(frozen=True)
class Guardrail:
    id: str
    version: str


@dataclass(frozen=True)
class RouterSettings:
    environment: Literal["dev", "staging", "prod"]
    tiers: tuple[TierSettings, ...]
    router: FrontDoorSettings
    cache: CacheSettings
    embeddings: tuple[EmbeddingModelSettings, ...]
    guardrail: Optional[Guardrail]
    quality: QualitySettings
    jobs: JobsSettings

    def tier(self, name: str) -> TierSettings:
        return next(t for t in self.tiers if t.name == name)

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)


# ----------------------------------------------------------------- resources
def _env(name: str) -> Any:
    return field(metadata={"env": name})


@dataclass(frozen=True)
class Resources:
    """Addresses known only once deployed, one environment variable each."""

    region: Optional[str] = _env("AWS_REGION")
    cache_endpoint: Optional[str] = _env("CACHE_ENDPOINT")
    cache_secret_arn: Optional[str] = _env("CACHE_SECRET_ARN")
    azure_openai_secret_arn: Optional[str] = _env("AZURE_OPENAI_SECRET_ARN")
    openai_secret_arn: Optional[str] = _env("OPENAI_SECRET_ARN")
    #: JSON {"apiKey": …}: the OpenAI-compatible cache embedder's key.
    cache_embedder_secret_arn: Optional[str] = _env("CACHE_EMBEDDER_SECRET_ARN")
    #: JSON: tier → base URL of its in-cluster server.
    self_hosted_endpoints: Optional[str] = _env("SELF_HOSTED_ENDPOINTS")
    self_hosted_api_key_secret_arn: Optional[str] = _env("SELF_HOSTED_API_KEY_SECRET_ARN")
    #: JSON: tier → provisioned-throughput ARN.
    bedrock_provisioned_arns: Optional[str] = _env("BEDROCK_PROVISIONED_ARNS")
    api_keys_secret_arn: Optional[str] = _env("API_KEYS_SECRET_ARN")
    #: The bucket quality samples go to (router) and are read from (evaluator).
    quality_samples_bucket: Optional[str] = _env("QUALITY_SAMPLES_BUCKET")
    #: The job API's DynamoDB table, SQS queue (URL) and dead-letter queue, S3 bucket and KMS key.
    jobs_table: Optional[str] = _env("JOBS_TABLE")
    jobs_queue_url: Optional[str] = _env("JOBS_QUEUE_URL")
    jobs_dlq_url: Optional[str] = _env("JOBS_DLQ_URL")
    jobs_bucket: Optional[str] = _env("JOBS_BUCKET")
    jobs_kms_key_arn: Optional[str] = _env("JOBS_KMS_KEY_ARN")
    #: The service role Bedrock batch inference assumes to read inputs and write outputs.
    jobs_bedrock_role_arn: Optional[str] = _env("JOBS_BEDROCK_ROLE_ARN")

    @classmethod
    def env_name(cls, field_name: str) -> str:
        return next(f.metadata["env"] for f in dataclasses.fields(cls) if f.name == field_name)

    @classmethod
    def from_environment(cls, env: Optional[Mapping[str, str]] = None) -> "Resources":
        env = os.environ if env is None else env
        return cls(**{f.name: env.get(f.metadata["env"]) or None for f in dataclasses.fields(cls)})

    def json_map(self, field_name: str) -> dict[str, str]:
        value = getattr(self, field_name)
        try:
            data = json.loads(value) if value else {}
        except ValueError as e:
            raise SettingsError(f"{self.env_name(field_name)}: not JSON") from e
        if not isinstance(data, dict):
            raise SettingsError(f"{self.env_name(field_name)}: expected a JSON object")
        return data


# ---------------------------------------------------------------- load/dump
def dump(obj: Any) -> dict[str, Any]:
    """Plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def load(cls: type[T], data: Any, path: str = "settings") -> T:
    """Parse `data` into `cls`, strictly: every field present, no others, types as declared."""
    return _value(cls, data, path)


def from_environment(env: Optional[Mapping[str, str]] = None) -> RouterSettings:
    env = os.environ if env is None else env
    text = env.get(SETTINGS_ENV)
    if not text:
        raise SettingsError(f"{SETTINGS_ENV} is not set")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SettingsError(f"{SETTINGS_ENV} is not JSON: {e}") from e
    return load(RouterSettings, data)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _value(tp: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _value(inner[0], value, path)
    if origin is Literal:
        if value not in args:
            raise SettingsError(f"{path}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise SettingsError(f"{path}: expected a list, got {type(value).__name__}")
        item = args[0]
        items = [_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{path}: expected an object, got {type(value).__name__}")
        return {str(k): _value(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SettingsError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise SettingsError(f"{path}: unsupported type {_type_name(tp)}")  # a contract bug


def _dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise SettingsError(f"{path}: expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise SettingsError(f"{path}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    missing = [n for n in names if n not in value]
    if missing:
        raise SettingsError(f"{path}: missing field(s) {', '.join(missing)}")
    return cls(**{n: _value(hints[n], value[n], f"{path}.{n}") for n in names})
