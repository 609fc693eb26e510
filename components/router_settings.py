"""What the data plane reads from its environment: no secrets, no Outputs.

Pure (no Pulumi import): `llm-blueprint serve` builds the same settings locally.
"""

from __future__ import annotations

from typing import Any

from .schema import StackConfig


def router_settings(cfg: StackConfig) -> dict[str, Any]:
    """What the data plane reads from its environment: no secrets, no Outputs."""
    return {
        "environment": cfg.environment,
        "tiers": [t.model_dump(by_alias=True, exclude={"bedrock", "azure", "vllm"}, exclude_none=True)
                  for t in cfg.serving.tiers],
        "router": cfg.router.model_dump(by_alias=True, exclude={"memory_mb", "reserved_concurrency",
                                                                "provisioned_concurrency", "throttling",
                                                                "log_retention_days"}),
        "cache": cfg.cache.model_dump(by_alias=True, include={"enabled", "embedder", "similarity_threshold",
                                                               "max_cacheable_temperature", "ttl", "timeout_ms",
                                                               "ef_runtime", "dedicated_indexes"}),
        "guardrail": {"id": cfg.serving.bedrock.guardrail_id, "version": cfg.serving.bedrock.guardrail_version},
    }
