"""The one function that turns a validated stack config into the router's settings.

Pure (no Pulumi import): `llm-blueprint serve` builds the same settings locally.
Every field is set here by keyword from the schema, so a renamed schema field
fails the plan instead of becoming a default in the router.
"""

from __future__ import annotations

from typing import Optional

from llm_router import settings as rs
from llm_router.timeouts import derive

from .schema import EMBEDDING_MODELS, EmbeddingModel, JobsConfig, Price, StackConfig


def _price(p: Optional[Price]) -> Optional[rs.Price]:
    return None if p is None else rs.Price(input_per_mtok=p.input_per_mtok, output_per_mtok=p.output_per_mtok)


def _embeddings(e: EmbeddingModel) -> rs.EmbeddingModelSettings:
    spec = EMBEDDING_MODELS.get(e.model)
    native = spec.dimensions if spec else (e.dimensions,)
    return rs.EmbeddingModelSettings(
        name=e.name, backend=e.backend, model=e.model, url=e.url, dimensions=tuple(native),
        default_dimensions=e.dimensions or native[0], max_inputs=e.max_inputs or (spec.max_inputs if spec else 2048),
        max_input_tokens=spec.max_input_tokens if spec else 8192, any_smaller=bool(spec and spec.any_smaller),
        price=_price(e.price))


def router_settings(cfg: StackConfig) -> rs.RouterSettings:
    """What the data plane reads: no secrets, no Outputs."""
    r, c, t = cfg.router, cfg.cache, cfg.router.tiering
    b = cfg.serving.bedrock
    return rs.RouterSettings(
        environment=cfg.environment,
        tiers=tuple(rs.TierSettings(
            name=tier.name, backend=tier.backend, model=tier.model, max_prompt_tokens=tier.max_prompt_tokens,
            max_tokens=tier.max_tokens, min_tokens_per_second=tier.min_tokens_per_second, fallback=tier.fallback,
            price=_price(tier.price)) for tier in cfg.serving.tiers),
        router=rs.FrontDoorSettings(
            default_tier=r.default_tier,
            tiering=rs.TieringSettings(
                cheap_tier=t.cheap_tier, expensive_tier=t.expensive_tier, long_prompt_tokens=t.long_prompt_tokens,
                long_conversation_turns=t.long_conversation_turns, keywords=tuple(k.lower() for k in t.keywords),
                code_blocks=t.code_blocks),
            max_tokens_policy=r.max_tokens_policy,
            limits=rs.RequestLimits(max_body_bytes=r.max_body_bytes, max_messages=r.max_messages),
            timeouts=derive(r.timeout_seconds, r.endpoint_type),
            log_prompts=r.log_prompts),
        cache=rs.CacheSettings(
            enabled=c.enabled,
            embedder=rs.EmbedderSettings(provider=c.embedder.provider, model=c.embedder.model,
                                         dimensions=c.embedder.dimensions, url=c.embedder.url),
            similarity_threshold=c.similarity_threshold,
            verifier=rs.VerifierSettings(max_chars=c.verifier.max_question_chars, max_unmatched=c.verifier.max_unmatched,
                                         reworded_below=c.verifier.reworded_below),
            max_entry_bytes=c.max_entry_bytes, max_cacheable_temperature=c.max_cacheable_temperature,
            ttl=rs.CacheTtl(default_seconds=c.ttl.default_seconds, tiers=dict(c.ttl.tiers)),
            timeout_ms=c.timeout_ms, ef_runtime=c.ef_runtime, dedicated_indexes=c.dedicated_indexes),
        embeddings=tuple(_embeddings(e) for e in cfg.serving.embeddings),
        guardrail=rs.Guardrail(id=b.guardrail_id, version=b.guardrail_version) if b.guardrail_id else None,
        jobs=_jobs(cfg.jobs, r.timeout_seconds),
    )


def _jobs(j: JobsConfig, router_timeout_s: int) -> rs.JobsSettings:
    return rs.JobsSettings(
        enabled=j.enabled, maximum_concurrency=j.maximum_concurrency, max_file_bytes=j.max_file_bytes,
        max_batch_requests=j.max_batch_requests, retention_days=j.retention_days, max_receives=j.max_receives,
        worker_timeout_s=j.worker_timeout_seconds or router_timeout_s, bedrock_batch=j.bedrock_batch,
        bedrock_batch_min_records=j.bedrock_batch_min_records)
