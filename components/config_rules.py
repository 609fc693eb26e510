"""Validation of a raw stack config: structure, cross-field rules, secrets.

`validate()` is the single entry point. It lists every problem at once, each
with its key path, the bad value and what is allowed, and raises
`ConfigError` before any resource is declared.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import math
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterator, Optional

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from llm_router import timeouts

from . import schema as s

SECRET_PLACEHOLDER = "[secret]"

#: Credential shapes that must never sit in a stack file as plaintext.
CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"(?i)(password|secret|token|api[_-]?key)\s*[=:]\s*\S{8,}"),
]


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    value: Any = None
    allowed: Optional[str] = None

    def render(self) -> str:
        parts = [f"{self.path}: {self.message}"]
        if self.value is not None:
            parts.append(f"got {_show(self.value)}")
        if self.allowed:
            parts.append(f"allowed: {self.allowed}")
        return "; ".join(parts)


class ConfigError(Exception):
    """A stack config that must not be deployed. Carries every problem."""

    def __init__(self, stack_file: str, problems: list[Problem]):
        self.stack_file = stack_file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        lines = [f"{self.stack_file}: invalid stack config ({n} problem{'s' if n != 1 else ''}); nothing was provisioned"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _show(value: Any) -> str:
    text = repr(value)
    if any(p.search(text) for p in CREDENTIAL_PATTERNS):
        return "[redacted credential]"
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------ structure
def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return "aws:region" if out == "region" else out


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] to reach a model, list or dict type."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1:
        return _unwrap(args[0])
    return tp


def _field(model: type[BaseModel], key: Any):
    """The field a config key (its camelCase alias) names, or None."""
    return next((f for n, f in model.model_fields.items() if (f.alias or n) == key), None)


def _model_at(loc: tuple) -> Optional[type[BaseModel]]:
    """The model class that owns the key at `loc` (for listing allowed keys)."""
    tp: Any = s.StackConfig
    for part in loc[:-1]:
        tp = _unwrap(tp)
        if isinstance(part, int) or typing.get_origin(tp) in (list, dict):
            args = typing.get_args(tp)
            tp = args[-1] if args else Any
            if isinstance(part, int):
                continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = _field(tp, part)
            if field is None:
                return None
            tp = field.annotation
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _range(loc: tuple) -> Optional[str]:
    """A number field's whole allowed range ("5 ≤ value ≤ 1024"), not just the bound it broke."""
    model = _model_at(loc)
    field = _field(model, loc[-1]) if model else None
    if field is None:
        return None
    low = high = ""
    for m in field.metadata:
        if getattr(m, "ge", None) is not None:
            low = f"{m.ge} ≤ "
        if getattr(m, "gt", None) is not None:
            low = f"{m.gt} < "
        if getattr(m, "le", None) is not None:
            high = f" ≤ {m.le}"
        if getattr(m, "lt", None) is not None:
            high = f" < {m.lt}"
    return f"{low}value{high}" if low or high else None


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _structural(err: dict) -> Problem:
    loc = tuple(err["loc"])
    path = _path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc)
        keys = _allowed_keys(model) if model else []
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return Problem(path, f"unknown key{hint}", allowed=", ".join(keys) or None)
    if kind == "missing":
        return Problem(path, "required key is missing")
    allowed = None
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        allowed = str(ctx["expected"])
    msg = err["msg"].removeprefix("Value error, ")
    if "pattern" in ctx:
        msg, allowed = "wrong format", f"text matching {ctx['pattern']}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        allowed = _range(loc) or allowed
    return Problem(path, msg, value=err.get("input"), allowed=allowed)


# -------------------------------------------------------------- cross-field
Rule = Callable[..., Iterator[Problem]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    """Register a cross-field rule; its parameter names are the sections it reads. A name
    that is no section would silently never run the rule, so it fails at import."""
    sections = {*s.StackConfig.model_fields, "environment"}
    unknown = [p for p in inspect.signature(fn).parameters if p not in sections]
    if unknown:
        raise TypeError(f"config rule {fn.__name__} reads {', '.join(unknown)}, which is no section of the "
                        f"stack config (allowed: {', '.join(sorted(sections))})")
    RULES.append(fn)
    return fn


def _stricter(path: str, slo: s.HigherIsBetter | s.LowerIsBetter, higher: bool, unit: str) -> Iterator[Problem]:
    ok = slo.objective > slo.sla if higher else slo.objective < slo.sla
    if not ok:
        word = "above" if higher else "below"
        yield Problem(
            f"{path}.objective",
            f"SLO must be stricter than its SLA ({slo.sla:g}{unit}): objective must be {word} the SLA",
            value=slo.objective,
        )


@rule
def slo_stricter_than_sla(slo: s.SloConfig) -> Iterator[Problem]:
    yield from _stricter("slo.availability", slo.availability, True, "%")
    yield from _stricter("slo.errorRate", slo.error_rate, False, "%")
    yield from _stricter("slo.latency.p50", slo.latency.p50, False, " s")
    yield from _stricter("slo.latency.p95", slo.latency.p95, False, " s")
    yield from _stricter("slo.faithfulness", slo.faithfulness, True, "")
    yield from _stricter("slo.ttftP95Ms", slo.ttft_p95_ms, False, " ms")
    if slo.latency.p50.objective > slo.latency.p95.objective:
        yield Problem("slo.latency.p50.objective", "P50 objective cannot exceed the P95 objective", slo.latency.p50.objective)


@rule
def tier_references(serving: s.ServingConfig, router: s.RouterConfig) -> Iterator[Problem]:
    names = [t.name for t in serving.tiers]
    allowed = ", ".join(names)
    for i, n in enumerate(names):
        if names.index(n) != i:
            yield Problem(f"serving.tiers[{i}].name", "duplicate tier name", n, allowed="unique names")
    for i, t in enumerate(serving.tiers):
        if t.fallback is not None and t.fallback not in names:
            yield Problem(f"serving.tiers[{i}].fallback", "names no tier", t.fallback, allowed)
        elif t.fallback == t.name:
            yield Problem(f"serving.tiers[{i}].fallback", "a tier cannot fall back to itself", t.fallback, allowed)
    if router.default_tier != "auto" and router.default_tier not in names:
        yield Problem("router.defaultTier", "names no tier", router.default_tier, f"auto, {allowed}")
    for key in ("cheap_tier", "expensive_tier"):
        value = getattr(router.tiering, key)
        if value is not None and value not in names:
            alias = s.TieringRules.model_fields[key].alias
            yield Problem(f"router.tiering.{alias}", "names no tier", value, allowed)


@rule
def backend_blocks(serving: s.ServingConfig) -> Iterator[Problem]:
    block_for = {"bedrock": "bedrock", "azure-openai": "azure", "vllm-eks": "vllm"}
    for i, t in enumerate(serving.tiers):
        for backend, block in block_for.items():
            if getattr(t, block) is not None and t.backend != backend:
                yield Problem(f"serving.tiers[{i}].{block}", f"settings for backend '{backend}' on a '{t.backend}' tier")
        if t.backend == "azure-openai":
            if serving.azure_openai is None:
                yield Problem("serving.azureOpenai", f"required because tier '{t.name}' uses azure-openai")
            if t.azure is None:
                yield Problem(f"serving.tiers[{i}].azure", "required for an azure-openai tier (modelVersion, sku, capacity)")
        if t.backend == "bedrock":
            yield from _bedrock_model(f"serving.tiers[{i}].model", t.model)
    if any(t.backend == "openai" for t in serving.tiers) and serving.openai is None:
        yield Problem("serving.openai", "required because a tier uses openai (apiKey, set as a secret)")
    if serving.tiers and any(t.backend == "vllm-eks" for t in serving.tiers) and serving.eks is None:
        yield Problem("serving.eks", "required because a tier uses vllm-eks")
    bedrock = serving.bedrock
    if (bedrock.guardrail_id is None) != (bedrock.guardrail_version is None):
        yield Problem("serving.bedrock.guardrailVersion", "guardrailId and guardrailVersion go together (a published version)")


#: Families that Bedrock serves on demand only through an inference profile.
PROFILE_ONLY = (
    "anthropic.claude-3-7", "anthropic.claude-sonnet-4", "anthropic.claude-opus-4",
    "anthropic.claude-3-5-haiku", "anthropic.claude-haiku-4", "meta.llama3-2", "meta.llama3-3",
    "meta.llama4", "amazon.nova-premier", "deepseek.", "mistral.pixtral",
)
BEDROCK_MODEL = re.compile(
    r"^(?:(?P<geo>us|eu|apac|us-gov|jp|au|ca|global)\.)?(?P<model>[a-z0-9-]+\.[a-z0-9._-]+(:\d+)?(:[a-z0-9]+)?)$"
)
BEDROCK_PROFILE_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d{12}:(application-)?inference-profile/[A-Za-z0-9.:_-]+$")


def _bedrock_model(path: str, model: str) -> Iterator[Problem]:
    if BEDROCK_PROFILE_ARN.match(model):
        return
    m = BEDROCK_MODEL.match(model)
    if not m:
        yield Problem(
            path, "not a Bedrock model id or inference profile", model,
            "provider.model-v1:0, a geo-prefixed profile id like us.anthropic.claude-sonnet-4-20250514-v1:0, or an inference-profile ARN",
        )
    elif m["geo"] is None and m["model"].startswith(PROFILE_ONLY):
        yield Problem(
            path, "this model is served on demand only through an inference profile", model,
            f"a geo-prefixed profile id such as us.{model}",
        )


@rule
def prod_warm_replicas(environment: str, serving: s.ServingConfig) -> Iterator[Problem]:
    if environment != "prod":
        return
    for i, t in enumerate(serving.tiers):
        if t.backend == "vllm-eks":
            warm = (t.vllm or s.VllmTier()).replicas.min
            if warm < 2:
                yield Problem(f"serving.tiers[{i}].vllm.replicas.min", "prod keeps at least 2 warm replicas", warm, "≥ 2")


@rule
def prod_images_pinned_by_digest(environment: str, serving: s.ServingConfig) -> Iterator[Problem]:
    """A tag can be moved to other content; a digest cannot (README: Pinning images)."""
    if environment != "prod" or not any(t.backend == "vllm-eks" for t in serving.tiers):
        return
    allowed = f"{s.IMAGE_DIGEST_FORM}, e.g. {s.ENGINE_IMAGES['vllm']}"
    for i, t in enumerate(serving.tiers):
        if t.backend == "vllm-eks":
            image = (t.vllm or s.VllmTier()).effective_image()
            if not s.IMAGE_DIGEST.search(image):
                yield Problem(f"serving.tiers[{i}].vllm.image", "prod pins container images by digest "
                              "(the tag alone may later name other content)", image, allowed)
    agent = (serving.eks.metrics_agent_image if serving.eks else None) or s.METRICS_AGENT_IMAGE
    if not s.IMAGE_DIGEST.search(agent):
        yield Problem("serving.eks.metricsAgentImage", "prod pins container images by digest "
                      "(the tag alone may later name other content)", agent,
                      f"{s.IMAGE_DIGEST_FORM}, e.g. {s.METRICS_AGENT_IMAGE}@sha256:…")


@rule
def replicas_ordered(serving: s.ServingConfig) -> Iterator[Problem]:
    for i, t in enumerate(serving.tiers):
        if t.vllm and t.vllm.replicas.max < t.vllm.replicas.min:
            yield Problem(f"serving.tiers[{i}].vllm.replicas.max", "must be ≥ replicas.min", t.vllm.replicas.max)
        for j, w in enumerate(t.vllm.prescale if t.vllm else []):
            if not t.vllm.replicas.min <= w.replicas <= t.vllm.replicas.max:
                yield Problem(f"serving.tiers[{i}].vllm.prescale[{j}].replicas", "must lie within replicas.min..max",
                              w.replicas, f"{t.vllm.replicas.min}..{t.vllm.replicas.max}")
        if t.vllm and t.vllm.engine == "tgi" and t.vllm.weights == "s3":
            yield Problem(f"serving.tiers[{i}].vllm.weights", "TGI cannot stream weights from S3", "s3", "pvc")
    eks = serving.eks
    if eks and not (eks.gpu_nodes_min <= (eks.gpu_nodes_desired or eks.gpu_nodes_min) <= eks.gpu_nodes_max):
        yield Problem("serving.eks.gpuNodesDesired", "must satisfy gpuNodesMin ≤ desired ≤ gpuNodesMax", eks.gpu_nodes_desired)


#: vLLM's parsers for model families whose output format is known (vLLM's tool-calling and
#: reasoning guides): a parser of another family leaves the calls or the reasoning in the answer
#: text, so the tier would advertise what it cannot deliver. Models not listed take any name.
TOOL_CALL_PARSERS = (
    (r"llama-?4", ("llama4_pythonic", "llama4_json")),
    (r"llama-?3\.[123]", ("llama3_json", "pythonic")),
    (r"qwen", ("hermes", "qwen3_coder", "qwen3_xml")),
    (r"hermes", ("hermes",)),
    (r"mistral|mixtral|ministral|codestral", ("mistral",)),
    (r"deepseek-v3", ("deepseek_v3", "deepseek_v31")),
    (r"granite-20b-functioncalling", ("granite-20b-fc",)),
    (r"granite", ("granite",)),
    (r"gpt-oss", ("openai",)),
    (r"internlm", ("internlm",)),
    (r"jamba", ("jamba",)),
    (r"phi-4-mini", ("phi4_mini_json",)),
)
REASONING_PARSERS = (
    (r"deepseek-r1|qwq", ("deepseek_r1",)),
    (r"qwen3", ("qwen3", "deepseek_r1")),
    (r"granite", ("granite",)),
)


def _parser_family(model: str, table) -> Optional[tuple[str, ...]]:
    m = model.lower().rsplit("/", 1)[-1]
    return next((names for pattern, names in table if re.search(pattern, m)), None)


@rule
def model_server_features(serving: s.ServingConfig) -> Iterator[Problem]:
    """A self-hosted tier advertises tools, reasoning or images only when its server delivers them:
    vLLM started with a parser that fits the model, never TGI; and its budgets fit the model length."""
    for i, t in enumerate(serving.tiers):
        if t.backend != "vllm-eks" or t.vllm is None:
            continue
        v, path = t.vllm, f"serving.tiers[{i}].vllm"
        for key, value, table, what in (("toolCallParser", v.tool_call_parser, TOOL_CALL_PARSERS, "tool-call"),
                                        ("reasoningParser", v.reasoning_parser, REASONING_PARSERS, "reasoning")):
            if value is None:
                continue
            if v.engine != "vllm":
                yield Problem(f"{path}.{key}", f"only vLLM has a {what} parser; TGI tiers are text-only in the "
                              "router's capability table", value, "engine: vllm, or no parser")
            elif (names := _parser_family(t.model, table)) and value not in names:
                yield Problem(f"{path}.{key}", f"vLLM's {what} parser for {t.model} is {' or '.join(names)}; another "
                              "leaves its output in the answer text", value, ", ".join(names))
        if v.image_input and v.engine != "vllm":
            yield Problem(f"{path}.imageInput", "TGI tiers are text-only in the router's capability table", True,
                          "engine: vllm")
        if t.max_prompt_tokens + t.max_tokens > v.max_model_len:
            yield Problem(f"serving.tiers[{i}].maxPromptTokens", f"the prompt and completion budgets "
                          f"({t.max_prompt_tokens} + {t.max_tokens}) exceed the server's maxModelLen "
                          f"({v.max_model_len}): the server would refuse requests the router lets through",
                          t.max_prompt_tokens + t.max_tokens, f"≤ {v.max_model_len}, or a larger vllm.maxModelLen")


@rule
def bedrock_family_hints(serving: s.ServingConfig) -> Iterator[Problem]:
    from llm_router import capabilities

    for i, t in enumerate(serving.tiers):
        hint = t.bedrock.family_hint if t.bedrock else None
        if hint is None:
            continue
        try:
            capabilities.of("bedrock", t.model, family_hint=hint)
        except ValueError:
            yield Problem(f"serving.tiers[{i}].bedrock.familyHint", "names no Bedrock model family", hint,
                          ", ".join(f.name for f in capabilities.BEDROCK_FAMILIES) + ", or a model id of one")


@rule
def budgets_fit_timeouts(serving: s.ServingConfig, router: s.RouterConfig) -> Iterator[Problem]:
    """A tier's whole budget, at its slowest expected speed, must fit the streamed deadline."""
    t = timeouts.derive(router.timeout_seconds, router.endpoint_type)
    for i, tier in enumerate(serving.tiers):
        worst = timeouts.seconds_for(tier.max_tokens, tier.min_tokens_per_second)
        if worst <= t.stream_deadline_s:
            continue
        fit = timeouts.tokens_within(t.stream_deadline_s, tier.min_tokens_per_second)
        raise_budget = router.timeout_seconds < timeouts.STREAM_MAX_S
        yield Problem(
            f"serving.tiers[{i}].maxTokens",
            f"at the tier's worst case of {tier.min_tokens_per_second:g} tokens/s this budget takes {worst:.0f} s, "
            f"over the {t.stream_deadline_s:g} s a streamed answer may run (router.timeoutSeconds "
            f"{router.timeout_seconds} s less {timeouts.STREAM_MARGIN_S} s to end the stream cleanly; API Gateway "
            f"streams for at most {timeouts.STREAM_MAX_S} s). A buffered (non-streamed) answer has only "
            f"{t.buffered_deadline_s:g} s: it sends nothing until it is complete, and API Gateway drops a connection "
            f"silent for {timeouts.IDLE_TIMEOUT_S[router.endpoint_type]} s",
            tier.max_tokens,
            f"≤ {fit}" + (f", or a larger router.timeoutSeconds (≤ {timeouts.STREAM_MAX_S})" if raise_budget else ""),
        )


@rule
def private_endpoint_clients(router: s.RouterConfig) -> Iterator[Problem]:
    if router.private_client_cidrs and router.endpoint_type != "private":
        yield Problem("router.privateClientCidrs", "only a private endpoint admits client networks; a regional one "
                      "is reached over the internet", router.private_client_cidrs, "router.endpointType: private")


@rule
def embeddings_models(serving: s.ServingConfig) -> Iterator[Problem]:
    tiers = {t.name for t in serving.tiers}
    seen: set[str] = set()
    for i, e in enumerate(serving.embeddings):
        path = f"serving.embeddings[{i}]"
        if e.name in seen or e.name in tiers:
            yield Problem(f"{path}.name", "a model alias must be unique across tiers and embeddings", e.name)
        seen.add(e.name)
        spec = s.EMBEDDING_MODELS.get(e.model)
        if spec is None and e.dimensions is None:
            yield Problem(f"{path}.dimensions", f"required: the router does not know the size of '{e.model}'",
                          allowed=f"an integer, or a known model: {', '.join(s.EMBEDDING_MODELS)}")
        elif spec is not None and e.dimensions is not None and e.dimensions not in spec.dimensions and not (
                spec.any_smaller and e.dimensions <= spec.dimensions[0]):
            sizes = f"1..{spec.dimensions[0]}" if spec.any_smaller else ", ".join(map(str, spec.dimensions))
            yield Problem(f"{path}.dimensions", f"'{e.model}' does not return this size", e.dimensions, sizes)
        if spec is not None and e.max_inputs is not None and e.max_inputs > spec.max_inputs:
            yield Problem(f"{path}.maxInputs", f"'{e.model}' takes at most {spec.max_inputs} inputs per request",
                          e.max_inputs, f"1 ≤ value ≤ {spec.max_inputs}")
        if e.backend == "bedrock" and not e.model.startswith(("amazon.titan-embed", "cohere.embed")):
            yield Problem(f"{path}.model", "not a Bedrock embeddings model", e.model,
                          ", ".join(m for m in s.EMBEDDING_MODELS if "." in m))
        if (e.url is not None) != (e.backend == "openai-compatible"):
            yield Problem(f"{path}.url", "an openai-compatible embeddings model needs url; other backends take none",
                          e.url)
        if (e.azure is not None) != (e.backend == "azure-openai"):
            yield Problem(f"{path}.azure", "an azure-openai embeddings model needs its deployment block (modelVersion, "
                          "sku, capacity); other backends take none")
        if e.backend == "azure-openai" and serving.azure_openai is None:
            yield Problem("serving.azureOpenai", f"required because embeddings model '{e.name}' uses azure-openai")
        if e.backend == "openai" and serving.openai is None:
            yield Problem("serving.openai", f"required because embeddings model '{e.name}' uses openai")


@rule
def cache_dimensions(cache: s.CacheConfig, serving: s.ServingConfig) -> Iterator[Problem]:
    emb = cache.embedder
    dims = s.EMBEDDER_DIMENSIONS.get(emb.provider)
    if dims and emb.dimensions not in dims:
        yield Problem("cache.embedder.dimensions", f"does not match embedder '{emb.provider}'", emb.dimensions,
                      " or ".join(map(str, dims)))
    if emb.provider == "openai-compatible":
        if not emb.url or not emb.model:
            yield Problem("cache.embedder.url", "openai-compatible embedders need url and model")
        native = s.OPENAI_EMBEDDING_DIMENSIONS.get(emb.model or "")
        if native and emb.dimensions > native:
            yield Problem("cache.embedder.dimensions", f"'{emb.model}' returns at most {native} dimensions",
                          emb.dimensions, f"≤ {native}")
    if cache.enabled and emb.provider == "local-minilm":
        yield Problem("cache.embedder.provider", "local-minilm needs torch, which the router Lambda does not carry; "
                      "it runs only under `llm-blueprint serve` and `cache eval`", "local-minilm",
                      "bedrock-titan-v2 or openai-compatible")
    names = {t.name for t in serving.tiers}
    for tier in cache.ttl.tiers:
        if tier not in names:
            yield Problem(f"cache.ttl.tiers.{tier}", "names no tier", tier, ", ".join(sorted(names)))


@rule
def cache_engine(cache: s.CacheConfig) -> Iterator[Problem]:
    major, minor = map(int, cache.engine_version.split("."))
    if (major, minor) < (8, 2):
        yield Problem("cache.engineVersion", "vector search needs ElastiCache for Valkey 8.2 or later",
                      cache.engine_version, "≥ 8.2")
        return
    most = s.search_index_limit(cache.engine_version) - 2
    if cache.dedicated_indexes is not None and cache.dedicated_indexes > most:
        yield Problem("cache.dedicatedIndexes", f"Valkey {cache.engine_version} allows {most + 2} search indexes per "
                      "cluster: one is the shared index and one stays free for a version change",
                      cache.dedicated_indexes, f"0 ≤ value ≤ {most}")


@rule
def cache_checks(cache: s.CacheConfig, serving: s.ServingConfig) -> Iterator[Problem]:
    """Per-tier cache overrides, the grey band and the audit name real tiers; the band sits below
    the threshold; an embedder key belongs to an OpenAI-compatible embedder."""
    names = sorted(t.name for t in serving.tiers)
    named = [(f"cache.tiers.{t}", t) for t in cache.tiers]
    named += [("cache.greyBand.tier", cache.grey_band.tier), ("cache.audit.judgeTier", cache.audit.judge_tier)]
    for path, tier in named:
        if tier is not None and tier not in names:
            yield Problem(path, "names no tier", tier, ", ".join(names))
    if cache.grey_band.enabled and cache.grey_band.lower_threshold >= cache.similarity_threshold:
        yield Problem("cache.greyBand.lowerThreshold", "the grey band lies below cache.similarityThreshold",
                      cache.grey_band.lower_threshold, f"< {cache.similarity_threshold:g}")
    if cache.embedder.api_key is not None and cache.embedder.provider != "openai-compatible":
        yield Problem("cache.embedder.apiKey", "only an openai-compatible embedder takes a key",
                      allowed="remove it, or use provider openai-compatible")


@rule
def quality_sampling(environment: str, quality: s.QualityConfig, serving: s.ServingConfig) -> Iterator[Problem]:
    names = [t.name for t in serving.tiers]
    if quality.judge_tier is not None and quality.judge_tier not in names:
        yield Problem("quality.judgeTier", "names no tier", quality.judge_tier, ", ".join(names))
    if environment == "prod" and quality.sample_rate == 0:
        yield Problem("quality.sampleRate", "prod measures its faithfulness SLO: without samples its alarm would "
                      "watch nothing (opt tenants out with quality.optOutTenants instead)", 0, "0 < value ≤ 1")
    if environment == "prod" and not quality.redact:
        yield Problem("quality.redact", "prod masks personal data and secrets before a sample is stored", False, "true")
    if quality.every_hours > quality.window_days * 24:
        yield Problem("quality.everyHours", f"the evaluator must run at least once in the alarm's window of "
                      f"{quality.window_days} day(s)", quality.every_hours, f"≤ {quality.window_days * 24}")
    if quality.min_samples > quality.max_samples:
        yield Problem("quality.minSamples", f"a run judges at most quality.maxSamples ({quality.max_samples}) "
                      "samples, so it could never publish a score", quality.min_samples, f"≤ {quality.max_samples}")


@rule
def rate_limits_counted(router: s.RouterConfig, cache: s.CacheConfig) -> Iterator[Problem]:
    if cache.enabled:
        return
    r = router.rate_limits
    limits = [("perKey", r.per_key), ("perTenant", r.per_tenant), *((f"tenants.{n}", v) for n, v in r.tenants.items())]
    for where, limit in limits:
        for name, value in (("requestsPerMinute", limit.requests_per_minute), ("tokensPerDay", limit.tokens_per_day)):
            if value is not None:
                yield Problem(f"router.rateLimits.{where}.{name}", "limits are counted in the cache's Valkey, and "
                              "cache.enabled is false", value, "null, or cache.enabled: true")


@rule
def prod_cache_resilience(environment: str, cache: s.CacheConfig) -> Iterator[Problem]:
    if environment == "prod" and cache.enabled:
        if cache.multi_az is False:
            yield Problem("cache.multiAz", "prod caches are Multi-AZ with automatic failover", False, "true")
        if cache.nodes is not None and cache.nodes < 2:
            yield Problem("cache.nodes", "prod caches keep at least 2 nodes", cache.nodes, "≥ 2")


@rule
def prod_private(environment: str, serving: s.ServingConfig) -> Iterator[Problem]:
    if environment != "prod":
        return
    az = serving.azure_openai
    if az is not None and az.private is False:
        yield Problem("serving.azureOpenai.private", "prod Azure OpenAI accounts are private", False, "true")
    if serving.eks is not None and "0.0.0.0/0" in serving.eks.public_access_cidrs:
        yield Problem("serving.eks.publicAccessCidrs", "prod API endpoints are private or CIDR-restricted", "0.0.0.0/0")


@rule
def prod_waf(environment: str, router: s.RouterConfig) -> Iterator[Problem]:
    if environment == "prod" and router.waf.enabled is False:
        yield Problem("router.waf.enabled", "prod API stages sit behind a WAF web ACL (policy apigw-prod-waf)", False,
                      "true (the prod default)")


@rule
def azure_reachable(environment: str, serving: s.ServingConfig, network: s.NetworkConfig) -> Iterator[Problem]:
    az = serving.azure_openai
    private = az.private if az is not None and az.private is not None else environment == "prod"
    if az is not None and not private and network.nat_gateways == "none":
        yield Problem("network.natGateways", "a public Azure OpenAI account is reached through the NAT's addresses "
                      "(its firewall admits only them)", "none", "single or per-az, or serving.azureOpenai.private: true")


@rule
def jobs_fit(jobs: s.JobsConfig, serving: s.ServingConfig) -> Iterator[Problem]:
    """Batch inference needs Bedrock tiers, and a job's model call must fit the worker's timeout."""
    if jobs.bedrock_batch and not jobs.enabled:
        yield Problem("jobs.bedrockBatch", "Bedrock batch inference runs batches, which need jobs.enabled: true", True,
                      "false, or jobs.enabled: true")
    if jobs.bedrock_batch and not any(t.backend == "bedrock" for t in serving.tiers):
        yield Problem("jobs.bedrockBatch", "no tier uses bedrock, so no batch could go to Bedrock batch inference",
                      True, "false")
    if not jobs.enabled or jobs.worker_timeout_seconds is None:
        return  # the router's budget: the streamed-deadline rule already holds every tier to it
    deadline = timeouts.for_worker(jobs.worker_timeout_seconds).buffered_deadline_s
    for tier in serving.tiers:
        worst = timeouts.seconds_for(tier.max_tokens, tier.min_tokens_per_second)
        if worst > deadline:
            yield Problem(
                "jobs.workerTimeoutSeconds",
                f"tier '{tier.name}' may take {worst:.0f} s for its {tier.max_tokens} tokens at "
                f"{tier.min_tokens_per_second:g} tokens/s; a job's model call gets the worker timeout less "
                f"{timeouts.STREAM_MARGIN_S} s ({deadline:g} s)", jobs.worker_timeout_seconds,
                f"≥ {math.ceil(worst) + timeouts.STREAM_MARGIN_S} (≤ {timeouts.LAMBDA_MAX_S})")


@rule
def exemptions_unique(exemptions: list[s.ExemptionConfig]) -> Iterator[Problem]:
    """One exemption per resource and rule: two could disagree on reason and expiry."""
    seen: dict[tuple, int] = {}
    for i, e in enumerate(exemptions):
        key = (e.rule, e.resource, e.type)
        if key in seen:
            yield Problem(f"exemptions[{i}]", f"exempts the same resource from the same rule as exemptions[{seen[key]}]")
        seen.setdefault(key, i)


# ------------------------------------------------------------------ secrets
def _secret_paths(model: type[BaseModel], value: Any, prefix: str) -> Iterator[str]:
    """Paths of `Secret` fields that hold a value."""
    if not isinstance(value, dict):
        return
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in value:
            continue
        tp = _unwrap(field.annotation)
        path = f"{prefix}.{key}" if prefix else key
        if tp is s.Secret:
            yield path
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            yield from _secret_paths(tp, value[key], path)
        elif typing.get_origin(tp) is list:
            item = _unwrap(typing.get_args(tp)[0])
            if isinstance(item, type) and issubclass(item, BaseModel) and isinstance(value[key], list):
                for i, v in enumerate(value[key]):
                    yield from _secret_paths(item, v, f"{path}[{i}]")


def _strings(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{prefix}[{i}]")


def plaintext_secrets(raw: dict, secret_keys: set[str]) -> Iterator[Problem]:
    for path in _secret_paths(s.StackConfig, raw, ""):
        if path.split(".")[0].split("[")[0] not in secret_keys:
            yield Problem(path, f"secrets never sit in plaintext: set it with `pulumi config set --secret --path {path} …`")
    for key, value in raw.items():
        if key in secret_keys:
            continue
        for path, text in _strings(value, key):
            if any(p.search(text) for p in CREDENTIAL_PATTERNS):
                yield Problem(path, "looks like a credential in plaintext: remove it and use `pulumi config set --secret` "
                                    "or a Secrets Manager reference")


# -------------------------------------------------------------- cross-stack
def logging_owner_conflicts(owners: list[tuple[str, Optional[str], str]]) -> dict[str, str]:
    """Stacks that own Bedrock invocation logging in the same account+region.

    `owners` holds (stack, account id or None, region). An unknown account (no
    `aws:allowedAccountIds`) is taken to be the same account: the setting is
    one per account+region, and a silent overwrite is the failure to prevent.
    """
    conflicts: dict[str, str] = {}
    for i, (stack, account, region) in enumerate(owners):
        for other, other_account, other_region in owners[:i] + owners[i + 1:]:
            same_account = account is None or other_account is None or account == other_account
            if region == other_region and same_account:
                where = f"account {account or other_account or '(unknown)'}, {region}"
                conflicts[stack] = f"stacks {', '.join(sorted({stack, other}))} both own Bedrock invocation logging in {where}"
    return conflicts


# ---------------------------------------------------------------- defaults
def apply_environment_defaults(cfg: s.StackConfig) -> s.StackConfig:
    """Fill the `None` fields whose default depends on the environment."""
    prod = cfg.is_prod
    net = cfg.network
    if net.availability_zones is None:
        net.availability_zones = 3 if prod else 2
    if cfg.cache.multi_az is None:
        cfg.cache.multi_az = prod
    if cfg.router.waf.enabled is None:
        cfg.router.waf.enabled = prod
    if cfg.jobs.worker_timeout_seconds is None:
        cfg.jobs.worker_timeout_seconds = cfg.router.timeout_seconds
    if cfg.cache.nodes is None:
        cfg.cache.nodes = 2 if prod or cfg.cache.multi_az else 1
    if cfg.cache.dedicated_indexes is None:
        cfg.cache.dedicated_indexes = s.search_index_limit(cfg.cache.engine_version) - 2
    az = cfg.serving.azure_openai
    if az is not None and az.private is None:
        az.private = prod
    eks = cfg.serving.eks
    if eks is not None and eks.gpu_nodes_desired is None:
        eks.gpu_nodes_desired = eks.gpu_nodes_min
    return cfg


# ------------------------------------------------------------------ entry
@functools.cache
def _adapter(field_name: str) -> TypeAdapter:
    """A validator for one top-level section, keeping its Field constraints."""
    field = s.StackConfig.model_fields[field_name]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata, Field())])


def _without_bad_keys(name: str, value: Any, error: ValidationError) -> Any:
    """The section parsed with its offending keys dropped, so cross-field rules
    can still run on the rest; None when that does not parse either."""
    value = copy.deepcopy(value)
    for err in error.errors():
        *parents, last = err["loc"] or (None,)
        node = value
        for part in parents:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(last, None)
    try:
        return _adapter(name).validate_python(value)
    except ValidationError:
        return None


def validate(raw: dict, secret_keys: set[str] | frozenset[str] = frozenset(), stack_file: str = "stack config") -> s.StackConfig:
    """Parse a raw stack config (top-level keys without the project prefix).

    Raises `ConfigError` listing every problem. Cross-field rules run for every
    section that parsed, so a typo in one block does not hide a rule broken in
    another.
    """
    problems: list[Problem] = list(plaintext_secrets(raw, set(secret_keys)))
    parsed: dict[str, Any] = {}
    for name, field in s.StackConfig.model_fields.items():
        key = field.alias or name
        if key not in raw:
            if field.is_required():
                problems.append(Problem(_path((key,)), "required key is missing"))
            else:
                parsed[name] = field.get_default(call_default_factory=True)
            continue
        try:
            parsed[name] = _adapter(name).validate_python(raw[key])
        except ValidationError as e:
            problems += [_structural({**err, "loc": (key, *err["loc"])}) for err in e.errors()]
            lenient = _without_bad_keys(name, raw[key], e)
            if lenient is not None:
                parsed[name] = lenient
    known = {f.alias or n for n, f in s.StackConfig.model_fields.items()}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(key, f"unknown key{hint}", allowed=", ".join(sorted(known))))
    for fn in RULES:
        needs = list(inspect.signature(fn).parameters)
        if all(n in parsed for n in needs):
            problems += fn(**{n: parsed[n] for n in needs})
    if problems:
        raise ConfigError(stack_file, problems)
    return apply_environment_defaults(s.StackConfig.model_validate(raw))

