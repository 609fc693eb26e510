"""What makes two requests the same: normalisation, scope and keys.

Tag values on ElastiCache must be `[a-z0-9_]`, so every scope field is a hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from ..tokens import content_text

#: Parameters that change the answer; everything else (user, stream, metadata) does not.
ANSWER_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "tools",
                 "tool_choice", "response_format", "n", "presence_penalty", "frequency_penalty", "logit_bias",
                 "reasoning_effort", "parallel_tool_calls", "logprobs", "top_logprobs")
#: Of those, the ones a semantic hit must also share: an answer cut at 100 tokens, stopped at
#: "\n", or seeded differently is another answer to the same question. Sampling settings
#: (temperature, top_p, penalties) are left out: they vary the wording, not what is asked.
SEMANTIC_PARAMS = ("max_tokens", "max_completion_tokens", "stop", "seed", "tools", "tool_choice", "response_format",
                   "n", "logit_bias", "reasoning_effort", "logprobs", "top_logprobs")
_SPACE = re.compile(r"\s+")


def _h(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _non_text(message: dict[str, Any]) -> list[Any]:
    """Images, audio, files: they change the answer, so they belong in the key verbatim."""
    content = message.get("content")
    parts = content if isinstance(content, list) else []
    return [p for p in parts if not (isinstance(p, dict) and p.get("type") == "text")]


@dataclass(frozen=True)
class Scope:
    """Who may share an entry: same tenant, same tier/model, same system prompt."""

    tenant: str
    tier: str
    system: str = ""

    @property
    def tags(self) -> dict[str, str]:
        return {"tenant": _h(self.tenant), "tier": _h(self.tier), "sys": _h(self.system)}

    @property
    def key(self) -> str:
        """One tag for the whole scope: a KNN filter on one posting list, not an intersection of three."""
        return _h(f"{self.tenant}\x00{self.tier}\x00{self.system}", 24)


def system_prompt(messages: list[dict[str, Any]]) -> str:
    return "\n".join(_norm(content_text(m)) for m in messages if m.get("role") in ("system", "developer"))


def exact_key(scope: Scope, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Hash of the normalised conversation, scope and answer-changing parameters."""
    canonical = {
        "scope": [scope.tenant, scope.tier],
        "messages": [[m.get("role"), _norm(content_text(m)), _non_text(m), m.get("tool_calls"), m.get("name"),
                      m.get("tool_call_id")] for m in messages],
        "params": {k: params[k] for k in ANSWER_PARAMS if params.get(k) is not None},
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def semantic_text(messages: list[dict[str, Any]]) -> Optional[str]:
    """The question to match semantically: only single-turn requests qualify,
    since earlier turns change what the last one means."""
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    if len(turns) != 1 or turns[0].get("role") != "user" or _non_text(turns[0]):
        return None  # a question about an image is not its caption's paraphrase
    text = _norm(content_text(turns[0]))
    return text or None


def semantic_params(params: dict[str, Any]) -> str:
    """A short hash of the answer-changing parameters a semantic hit must match ("" when none is set,
    which is also what entries written before this field read as)."""
    chosen = {k: params[k] for k in SEMANTIC_PARAMS if params.get(k) is not None}
    return _h(json.dumps(chosen, sort_keys=True, separators=(",", ":"))) if chosen else ""
