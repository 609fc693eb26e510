"""Provider prompt caching: cache points in Bedrock Converse requests, and what cached prompt
tokens cost.

Bedrock caches a prompt prefix only where the request marks it (a `cachePoint` block) and only
when the prefix since the previous mark holds at least the model's minimum of tokens (a mark
placed earlier is accepted and ignored). The stable prefixes of an application's requests are
its tool definitions and its system prompt, so those are what a tier marks
(`serving.tiers[].promptCache`). Claude takes marks in `toolConfig.tools`, `system` and
`messages`; Nova in `system` and `messages` only (a mark in its tools is a ValidationException).
OpenAI, Azure OpenAI and vLLM cache prefixes without marks and report
`usage.prompt_tokens_details.cached_tokens` themselves; the router passes it through.

Converse reports `inputTokens` *without* the cached part: the prompt is
`inputTokens + cacheReadInputTokens + cacheWriteInputTokens` (`bedrock_map.usage`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from .capabilities import bedrock_model_id
from .settings import Price, PromptCacheSettings
from .tokens import count_text

CACHE_POINT = {"cachePoint": {"type": "default"}}


@dataclass(frozen=True)
class Support:
    #: Tokens a cached segment needs at least (Bedrock's "minimum tokens per cache checkpoint").
    min_tokens: int
    #: Accepts a cache point in `toolConfig.tools`.
    tools: bool


#: Models with prompt caching on Bedrock (the prompt-caching guide's table); first match wins.
SUPPORT: tuple[tuple[str, Support], ...] = (
    (r"anthropic\.claude-(haiku|opus)-4-[5-9]", Support(4096, True)),
    (r"anthropic\.claude-(sonnet|opus)-4", Support(1024, True)),
    (r"anthropic\.claude-3-7-sonnet", Support(1024, True)),
    (r"anthropic\.claude-3-5-haiku", Support(2048, True)),
    (r"amazon\.nova-(micro|lite|pro|premier)", Support(1024, False)),
)


def support(model: str) -> Optional[Support]:
    mid = bedrock_model_id(model)
    return next((s for pattern, s in SUPPORT if re.search(pattern, mid)), None)


def _tokens(blocks: list[dict[str, Any]]) -> int:
    return sum(count_text(b["text"]) if "text" in b else count_text(json.dumps(b)) for b in blocks)


def mark(request: dict[str, Any], model: str, settings: Optional[PromptCacheSettings]) -> dict[str, Any]:
    """Add cache points after the tool definitions and after the system prompt, where the tier
    asks for them, the model takes them and the segment is long enough to be cached."""
    found = support(model)
    if settings is None or found is None:
        return request
    pending = 0  # tokens since the last mark
    tools = (request.get("toolConfig") or {}).get("tools")
    if tools:
        pending += _tokens(tools)
        if settings.tools and found.tools and pending >= found.min_tokens:
            tools.append(dict(CACHE_POINT))
            pending = 0
    system = request.get("system")
    if system:
        pending += _tokens(system)
        if settings.system and pending >= found.min_tokens:
            system.append(dict(CACHE_POINT))
    return request


# ----------------------------------------------------------------------------------- accounting

def prompt_cache_tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """(read from, written to) the provider's prompt cache, from an OpenAI usage object."""
    details = usage.get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0), int(details.get("cache_write_tokens") or 0)


def cost_usd(price: Price, usage: dict[str, Any]) -> tuple[float, float]:
    """(what the call cost, what the prompt cache saved against the plain input price)."""
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    read, written = prompt_cache_tokens(usage)
    p_in = price.input_per_mtok
    p_read = p_in if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    p_write = p_in if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    plain = max(0, prompt - read - written)
    cost = plain * p_in + read * p_read + written * p_write + completion * price.output_per_mtok
    saved = read * (p_in - p_read) - written * (p_write - p_in)
    return cost / 1e6, saved / 1e6
