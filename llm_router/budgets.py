"""Token budgets per tier: clamp or reject `max_tokens`, fit the prompt by
dropping the oldest turns, never the system prompt or the last user turn.

Fitting is linear in the conversation: each message is counted once and the
running total shrinks as turns are dropped (thousands of tiny messages used to
take seconds when the whole conversation was recounted per drop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .errors import ApiError, bad_request
from .settings import TierSettings
from .tokens import SAFETY, count_message, count_messages


@dataclass
class Fitted:
    messages: list[dict[str, Any]]
    max_tokens: int
    prompt_tokens: int
    capped: list[str]  # what was cut: "max_tokens", "prompt"


def _results_of(messages: list[dict[str, Any]], i: int) -> list[int]:
    """The tool messages answering assistant message `i`'s calls: a result without its
    call (or a call without its result) is invalid, so they are dropped together."""
    ids = {c.get("id") for c in messages[i].get("tool_calls") or [] if isinstance(c, dict)}
    out = []
    for j in range(i + 1, len(messages)):
        m = messages[j]
        if m.get("role") != "tool":
            break
        if not ids or m.get("tool_call_id") in ids:
            out.append(j)
    return out


def fit(tier: TierSettings, messages: list[dict[str, Any]], max_tokens: Optional[int], policy: str,
        fixed: int = 0) -> Fitted:
    """`fixed`: prompt tokens that cannot be dropped besides the messages (tool definitions and
    response schemas: every model reads them as part of the prompt)."""
    capped = []
    if max_tokens is None:
        max_tokens = tier.max_tokens
    elif max_tokens > tier.max_tokens:
        if policy == "reject":
            raise bad_request(f"max_tokens {max_tokens} is above the '{tier.name}' tier budget of {tier.max_tokens}",
                              "max_tokens", "max_tokens_over_budget")
        max_tokens, capped = tier.max_tokens, ["max_tokens"]
    budget = int(tier.max_prompt_tokens / SAFETY)
    counts = [count_message(m) for m in messages]
    tokens = count_messages(messages, counts) + fixed
    if tokens <= budget:
        return Fitted(list(messages), max_tokens, tokens, capped)
    pinned = {i for i, m in enumerate(messages) if m.get("role") in ("system", "developer")}
    pinned.add(max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages) - 1))
    dropped = [False] * len(messages)
    for i in range(len(messages)):  # oldest first
        if tokens <= budget:
            break
        if i in pinned or dropped[i]:
            continue
        group = [i]
        if messages[i].get("role") == "assistant" and messages[i].get("tool_calls"):
            group += [j for j in _results_of(messages, i) if j not in pinned]
        for j in group:
            if not dropped[j]:
                dropped[j] = True
                tokens -= counts[j]
    if tokens > budget:
        raise ApiError(413, f"The prompt needs about {tokens} tokens but the '{tier.name}' tier allows "
                            f"{tier.max_prompt_tokens} (system prompt and last user message cannot be dropped); "
                            "shorten the message or use a tier with a larger budget",
                       "invalid_request_error", "context_length_exceeded", "messages")
    capped.append("prompt")
    return Fitted([m for i, m in enumerate(messages) if not dropped[i]], max_tokens, tokens, capped)
