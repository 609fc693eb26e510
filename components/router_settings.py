"""The one function that turns a validated stack config into the router's settings.

Pure (no Pulumi import): `llm-blueprint serve` builds the same settings locally.
Every field is set here by keyword from the schema, so a renamed schema field
fails the plan instead of becoming a default in the router.
"""

from __future__ import annotations

from typing import Optional

from llm_router import settings as rs
from llm_router.timeouts import derive

from .schema import (EMBEDDING_MODELS, EmbeddingModel, JobsConfig, PriceConfig, RateLimitConfig, StackConfig, Tier,
                     VllmTier)


def _price(p: Optional[PriceConfig]) -> Optional[rs.Price]:
    return None if p is None else rs.Price(input_per_mtok=p.input_per_mtok, output_per_mtok=p.output_per_mtok,
                                           cached_input_per_mtok=p.cached_input_per_mtok,
                                           cache_write_per_mtok=p.cache_write_per_mtok)


def cheapest_tier(cfg: StackConfig) -> str:
    """The tier that judges for the cache: the lowest priced (input + output), else the tiering's
    cheap tier, else the first."""
    priced = [t for t in cfg.serving.tiers if t.price is not None]
    if priced:
        return min(priced, key=lambda t: t.price.input_per_mtok + t.price.output_per_mtok).name
    return cfg.router.tiering.cheap_tier or cfg.serving.tiers[0].name


def _limit(limit: RateLimitConfig) -> rs.RateLimit:
    return rs.RateLimit(requests_per_minute=limit.requests_per_minute, tokens_per_day=limit.tokens_per_day)


def _embeddings(e: EmbeddingModel) -> rs.EmbeddingModelSettings:
    spec = EMBEDDING_MODELS.get(e.model)
    native = spec.dimensions if spec else (e.dimensions,)
    return rs.EmbeddingModelSettings(
        name=e.name, backend=e.backend, model=e.model, url=e.url, dimensions=tuple(native),
        default_dimensions=e.dimensions or native[0], max_inputs=e.max_inputs or (spec.max_inputs if spec else 2048),
        max_input_tokens=spec.max_input_tokens if spec else 8192, any_smaller=bool(spec and spec.any_smaller),
        price=_price(e.price))


def _server(tier: Tier) -> Optional[rs.ModelServerSettings]:
    if tier.backend != "vllm-eks":
        return None
    v = tier.vllm or VllmTier()
    return rs.ModelServerSettings(engine=v.engine, tool_call_parser=v.tool_call_parser,
                                  reasoning_parser=v.reasoning_parser, image_input=v.image_input,
                                  max_model_len=v.max_model_len)


def _azure_api_version(cfg: StackConfig, tier: Tier) -> Optional[str]:
    account = cfg.serving.azure_openai
    return account.api_version if tier.backend == "azure-openai" and account else None


def router_settings(cfg: StackConfig) -> rs.RouterSettings:
    """What the data plane reads: no secrets, no Outputs."""
    r, c, t = cfg.router, cfg.cache, cfg.router.tiering
    b, q = cfg.serving.bedrock, cfg.quality
    return rs.RouterSettings(
        environment=cfg.environment,
        tiers=tuple(rs.TierSettings(
            name=tier.name, backend=tier.backend, model=tier.model, max_prompt_tokens=tier.max_prompt_tokens,
            max_tokens=tier.max_tokens, min_tokens_per_second=tier.min_tokens_per_second, fallback=tier.fallback,
            price=_price(tier.price), family_hint=tier.bedrock.family_hint if tier.bedrock else None,
            api_version=_azure_api_version(cfg, tier), server=_server(tier),
            prompt_cache=rs.PromptCacheSettings(system=tier.prompt_cache.system, tools=tier.prompt_cache.tools))
            for tier in cfg.serving.tiers),
        router=rs.FrontDoorSettings(
            default_tier=r.default_tier,
            tiering=rs.TieringSettings(
                cheap_tier=t.cheap_tier, expensive_tier=t.expensive_tier, long_prompt_tokens=t.long_prompt_tokens,
                long_conversation_turns=t.long_conversation_turns, keywords=tuple(k.lower() for k in t.keywords),
                code_blocks=t.code_blocks),
            max_tokens_policy=r.max_tokens_policy,
            limits=rs.RequestLimits(max_body_bytes=r.max_body_bytes, max_messages=r.max_messages),
            timeouts=derive(r.timeout_seconds, r.endpoint_type),
            log_prompts=r.log_prompts,
            remote_image_hosts=tuple(r.remote_image_hosts),
            rate_limits=rs.RateLimitSettings(
                per_key=_limit(r.rate_limits.per_key), per_tenant=_limit(r.rate_limits.per_tenant),
                tenants={name: _limit(v) for name, v in r.rate_limits.tenants.items()})),
        cache=rs.CacheSettings(
            enabled=c.enabled,
            embedder=rs.EmbedderSettings(provider=c.embedder.provider, model=c.embedder.model,
                                         dimensions=c.embedder.dimensions, url=c.embedder.url,
                                         timeout_ms=c.embedder.timeout_ms),
            similarity_threshold=c.similarity_threshold,
            verifier=rs.VerifierSettings(max_chars=c.verifier.max_question_chars, max_unmatched=c.verifier.max_unmatched,
                                         reworded_below=c.verifier.reworded_below),
            max_entry_bytes=c.max_entry_bytes, max_cacheable_temperature=c.max_cacheable_temperature,
            cache_when=rs.CacheWhenSettings(default=c.cache_when, tiers={
                name: t.cache_when for name, t in c.tiers.items() if t.cache_when is not None}),
            grey_band=rs.GreyBandSettings(
                enabled=c.grey_band.enabled, lower_threshold=c.grey_band.lower_threshold,
                tier=c.grey_band.tier or cheapest_tier(cfg), timeout_ms=c.grey_band.timeout_ms,
                verdict_ttl_seconds=c.grey_band.verdict_ttl_seconds),
            audit=rs.AuditSettings(
                sample_rate=c.audit.sample_rate, judge_tier=c.audit.judge_tier or cheapest_tier(cfg),
                queue_size=c.audit.queue_size, keep=c.audit.keep, keep_days=c.audit.keep_days),
            ttl=rs.CacheTtl(default_seconds=c.ttl.default_seconds, tiers=dict(c.ttl.tiers)),
            timeout_ms=c.timeout_ms, ef_runtime=c.ef_runtime, dedicated_indexes=c.dedicated_indexes),
        embeddings=tuple(_embeddings(e) for e in cfg.serving.embeddings),
        guardrail=rs.Guardrail(id=b.guardrail_id, version=b.guardrail_version) if b.guardrail_id else None,
        quality=rs.QualitySettings(
            sample_rate=q.sample_rate, opt_out_tenants=tuple(q.opt_out_tenants), redact=q.redact,
            judge_tier=cfg.judge_tier().name, every_hours=q.every_hours, min_samples=q.min_samples,
            max_samples=q.max_samples),
        jobs=_jobs(cfg.jobs, r.timeout_seconds),
    )


def _jobs(j: JobsConfig, router_timeout_s: int) -> rs.JobsSettings:
    return rs.JobsSettings(
        enabled=j.enabled, maximum_concurrency=j.maximum_concurrency, max_file_bytes=j.max_file_bytes,
        max_batch_requests=j.max_batch_requests, retention_days=j.retention_days, max_receives=j.max_receives,
        worker_timeout_s=j.worker_timeout_seconds or router_timeout_s, bedrock_batch=j.bedrock_batch,
        bedrock_batch_min_records=j.bedrock_batch_min_records)
