"""Token budgets per tier: clamp or reject `max_tokens`, fit the prompt by
dropping the oldest turns, never the system prompt or the last user turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .config import TierConfig
from .errors import ApiError, bad_request
from .tokens import SAFETY, count_messages


@dataclass
class Fitted:
    messages: list[dict[str, Any]]
    max_tokens: int
    prompt_tokens: int
    capped: list[str]  # what was cut: "max_tokens", "prompt"


def fit(tier: TierConfig, messages: list[dict[str, Any]], max_tokens: Optional[int], policy: str) -> Fitted:
    capped = []
    if max_tokens is None:
        max_tokens = tier.max_tokens
    elif max_tokens > tier.max_tokens:
        if policy == "reject":
            raise bad_request(f"max_tokens {max_tokens} is above the '{tier.name}' tier budget of {tier.max_tokens}",
                              "max_tokens", "max_tokens_over_budget")
        max_tokens, capped = tier.max_tokens, ["max_tokens"]
    budget = int(tier.max_prompt_tokens / SAFETY)
    kept = list(messages)
    tokens = count_messages(kept)
    if tokens > budget:
        pinned = {i for i, m in enumerate(messages) if m.get("role") in ("system", "developer")}
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages) - 1)
        pinned.add(last_user)
        droppable = [i for i in range(len(messages)) if i not in pinned]  # oldest first
        dropped: set[int] = set()
        for i in droppable:
            if tokens <= budget:
                break
            dropped.add(i)
            # A tool result without its call (or a call without its result) is invalid: drop them together.
            if messages[i].get("role") == "assistant" and messages[i].get("tool_calls"):
                dropped |= {j for j in droppable if messages[j].get("role") == "tool" and j > i}
            kept = [m for j, m in enumerate(messages) if j not in dropped]
            tokens = count_messages(kept)
        if tokens > budget:
            raise ApiError(413, f"The prompt needs about {tokens} tokens but the '{tier.name}' tier allows "
                                f"{tier.max_prompt_tokens} (system prompt and last user message cannot be dropped); "
                                "shorten the message or use a tier with a larger budget",
                           "invalid_request_error", "context_length_exceeded", "messages")
        capped.append("prompt")
    return Fitted(kept, max_tokens, tokens, capped)
