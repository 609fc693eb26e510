"""The router's view of the stack config (handed over as JSON by the Router component)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class TierConfig:
    name: str
    backend: str
    model: str
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024
    min_tokens_per_second: float = 40.0
    fallback: Optional[str] = None
    price_in: float = 0.0
    price_out: float = 0.0


@dataclass(frozen=True)
class TieringConfig:
    cheap_tier: Optional[str] = None
    expensive_tier: Optional[str] = None
    long_prompt_tokens: int = 600
    long_conversation_turns: int = 8
    keywords: tuple[str, ...] = ("compare", "analyse", "analyze", "explain in detail", "step by step", "prove",
                                 "design", "trade-off", "tradeoff", "refactor")
    code_blocks: bool = True


@dataclass(frozen=True)
class RouterConfig:
    tiers: dict[str, TierConfig]
    default_tier: str = "auto"
    tiering: TieringConfig = TieringConfig()
    max_tokens_policy: str = "clamp"
    max_body_bytes: int = 256 * 1024
    timeout_s: float = 29.0
    log_prompts: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    guardrail: dict[str, Any] = field(default_factory=dict)
    environment: str = "dev"

    @classmethod
    def from_settings(cls, s: dict[str, Any]) -> "RouterConfig":
        tiers = {}
        for t in s.get("tiers", []):
            price = t.get("price") or {}
            tiers[t["name"]] = TierConfig(
                t["name"], t["backend"], t["model"], t.get("maxPromptTokens", 4096), t.get("maxTokens", 1024),
                t.get("minTokensPerSecond", 40.0), t.get("fallback"), price.get("inputPerMTok", 0.0),
                price.get("outputPerMTok", 0.0))
        r = s.get("router", {})
        tg = r.get("tiering", {})
        tiering = TieringConfig(tg.get("cheapTier"), tg.get("expensiveTier"), tg.get("longPromptTokens", 600),
                                tg.get("longConversationTurns", 8),
                                tuple(k.lower() for k in tg.get("keywords", TieringConfig.keywords)),
                                tg.get("codeBlocks", True))
        return cls(tiers, r.get("defaultTier", "auto"), tiering, r.get("maxTokensPolicy", "clamp"),
                   r.get("maxBodyBytes", 256 * 1024), float(r.get("timeoutSeconds", 29)), r.get("logPrompts", False),
                   s.get("cache", {}), s.get("guardrail") or {}, s.get("environment", "dev"))
